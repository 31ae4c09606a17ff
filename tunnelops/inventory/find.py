"""Which site file: by the site's name, else by its hosts, else the only one; every site file
of the inventory directory."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from tunnelops.inventory.read import loads
from tunnelops.inventory.schema import InventoryError
from tunnelops.locations import EXAMPLE_NAME
from tunnelops.model.values import ModelError, check_name


def _candidates(inventory_dir: Path) -> list[Path]:
    return sorted(p for p in inventory_dir.glob("*.toml") if p.name != EXAMPLE_NAME)


def site_files(inventory_dir: str | os.PathLike[str]) -> list[Path]:
    """Every site file of the inventory (example.toml aside), by name."""
    directory = Path(inventory_dir)
    return _candidates(directory) if directory.is_dir() else []


def _hosts(path: Path) -> tuple[object, list[object]]:
    """(the VPS host, every home's host) as the file writes them."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InventoryError(f"{path}: cannot read it ({err}): fix or remove it") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        loads(text, str(path), path.stem)  # raises the located syntax error
        raise  # pragma: no cover - loads always raises for undecodable text
    vps, home, homes = data.get("vps"), data.get("home"), data.get("homes")
    tables = [home] if isinstance(home, dict) else homes if isinstance(homes, list) else []
    return (vps.get("host") if isinstance(vps, dict) else None,
            [t.get("host") for t in tables if isinstance(t, dict)])


def find_site(inventory_dir: str | os.PathLike[str], vps: str | None = None,
              home: str | None = None, site: str | None = None) -> Path | None:
    """The inventory file for a site: by name, else by its hosts, else the only one.
    None when there is none yet (bootstrap then creates one)."""
    directory = Path(inventory_dir)
    if site is not None:
        try:
            check_name(site, "site name")
        except ModelError as err:
            raise InventoryError(f"--site: {err}") from None
        path = directory / f"{site}.toml"
        return path if path.exists() else None
    candidates = _candidates(directory) if directory.is_dir() else []
    if vps is not None or home is not None:
        matches = []
        for path in candidates:
            vps_host, home_hosts = _hosts(path)
            if (vps is None or vps_host == vps) and (home is None or home in home_hosts):
                matches.append(path)
        if len(matches) > 1:
            names = ", ".join(p.name for p in matches)
            raise InventoryError(f"several sites in {directory} match these hosts ({names}): "
                                 "pass --site NAME")
        return matches[0] if matches else None
    if len(candidates) > 1:
        names = ", ".join(p.stem for p in candidates)
        raise InventoryError(f"several sites in {directory} ({names}): pass --site NAME")
    return candidates[0] if candidates else None
