"""Site inventory files: inventory/NAME.toml <-> model.Site.

Reading uses tomllib and rejects unknown keys, so a typo is an error rather than a silently
ignored setting. Every error is one line, `FILE:LINE: what is wrong: how to fix it`; the line
is found by scanning the text for the offending table, key and (for ports) value.
Writing uses tomlkit on the existing document so the user's comments, key order and layout
survive, and replaces the file atomically.

One module a concern: schema.py (the keys and kinds a file may have, InventoryError), lines.py
(an error's line), read.py (load, loads), write.py (dumps, save), edit.py (locked, update,
update_discovered: a file changed in place), find.py (find_site, site_files), new.py
(new_site). This module is the public face: their names, importable from here.
"""

from __future__ import annotations

from tunnelops.inventory.edit import locked, update, update_discovered
from tunnelops.inventory.find import find_site, site_files
from tunnelops.inventory.new import new_site
from tunnelops.inventory.read import load, loads
from tunnelops.inventory.schema import ARRAYS, REQUIRED, SCHEMA, InventoryError
from tunnelops.inventory.write import dumps, save

__all__ = [
    "ARRAYS",
    "REQUIRED",
    "SCHEMA",
    "InventoryError",
    "dumps",
    "find_site",
    "load",
    "loads",
    "locked",
    "new_site",
    "save",
    "site_files",
    "update",
    "update_discovered",
]
