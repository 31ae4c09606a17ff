"""Where a lab instance keeps its state: this checkout's .lab/ (or the user's state
directory for an installed tunnelops), the machine-wide registry of names under /run, and
the JSON records written there (owner.json, up.json)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tunnelops.locations import state_dir

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
CHECKOUT = (PROJECT / "pyproject.toml").exists()  # else an installed tunnelops
# the first line of the site file the lab writes: `down` removes only a file that says it
INVENTORY_HEADER = "# The lab site: written by"


def default_root() -> Path:
    if "TUNNELOPS_LAB_DIR" in os.environ:
        return Path(os.environ["TUNNELOPS_LAB_DIR"])
    return PROJECT / ".lab" if CHECKOUT else state_dir(os.environ, Path.home()) / "lab"


def registry() -> Path:
    """Machine-wide: which state directory owns each instance name (on /run: gone at boot,
    like the namespaces it describes)."""
    return Path(os.environ.get("TUNNELOPS_LAB_REGISTRY", "/run/tunnelops-lab"))


def project_label() -> str:
    return str(PROJECT) if CHECKOUT else f"tunnelops installed in {sys.prefix}"


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

