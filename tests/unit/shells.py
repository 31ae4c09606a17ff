"""The shells host scripts are run by in unit tests: root's login shell runs them on a host,
bash (Debian, Fedora) or BusyBox ash (Alpine); sh is dash here."""

from __future__ import annotations

import base64
import shutil

SHELLS = [["sh"]] + [s for s in (["bash"], ["busybox", "sh"]) if shutil.which(s[0])]
# a WireGuard private key is 32 random bytes in base64; this one exists only in these tests
SECRET = base64.b64encode(bytes(range(1, 33))).decode()
