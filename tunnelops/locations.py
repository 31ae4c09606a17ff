"""Where tunnelops keeps things on the laptop: the inventory, the lab's state. Pure given
its inputs (the environment, the current directory, the home directory), so the order is
unit-tested as it is documented in the README."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_INVENTORY = "TUNNELOPS_INVENTORY"
EXAMPLE_NAME = "example.toml"  # shipped as an example: never a site


@dataclass(frozen=True)
class InventoryDir:
    path: Path
    source: str  # how it was chosen, for messages: "--inventory", "$TUNNELOPS_INVENTORY", ...


def has_sites(directory: Path) -> bool:
    """A directory holds site files: *.toml other than the shipped example."""
    try:
        return any(p.name != EXAMPLE_NAME for p in directory.glob("*.toml"))
    except OSError:
        return False


def config_dir(env: Mapping[str, str], home: Path) -> Path:
    """~/.config/tunnelops, or under $XDG_CONFIG_HOME (the spec ignores a relative one)."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config"
    return base / "tunnelops"


def state_dir(env: Mapping[str, str], home: Path) -> Path:
    """~/.local/state/tunnelops, or under $XDG_STATE_HOME."""
    xdg = env.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".local" / "state"
    return base / "tunnelops"


def find_inventory(flag: str | None, *, env: Mapping[str, str], cwd: Path, home: Path,
                   project: Path | None = None) -> InventoryDir:
    """The inventory directory, first match wins:
    1. --inventory DIR; 2. $TUNNELOPS_INVENTORY (both taken as given, even if empty);
    3. ./inventory when it holds site files; 4. ~/.config/tunnelops ($XDG_CONFIG_HOME).
    With sites in neither 3 nor 4, a new site goes to ./inventory if that directory exists
    (a checkout, or one the user made), else to ~/.config/tunnelops.
    `project`: whose inventory/ counts as ./inventory (`inv` passes its checkout, since it
    finds tasks.py from any directory below it); relative paths are taken from cwd."""
    if flag:
        return InventoryDir(cwd / Path(flag).expanduser(), "--inventory")
    if env.get(ENV_INVENTORY):
        return InventoryDir(cwd / Path(env[ENV_INVENTORY]).expanduser(), f"${ENV_INVENTORY}")
    local, user = (project or cwd) / "inventory", config_dir(env, home)
    if has_sites(local):
        return InventoryDir(local, "./inventory")
    if has_sites(user):
        return InventoryDir(user, "the user's config directory")
    if local.is_dir():
        return InventoryDir(local, "./inventory, no site yet")
    return InventoryDir(user, "the user's config directory, no site yet")


def inventory_from_environment(flag: str | None, project: Path | None = None) -> InventoryDir:
    return find_inventory(flag, env=os.environ, cwd=Path.cwd(), home=Path.home(),
                          project=project)
