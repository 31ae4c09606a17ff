"""A site file changed in place: under the inventory's lock, compare-and-swap against
anything else writing it (an editor), and what bootstrap discovered about the VPS."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path

from tunnelops.inventory.read import load, loads
from tunnelops.inventory.schema import InventoryError
from tunnelops.inventory.write import dumps, write_atomic
from tunnelops.model.site import Site
from tunnelops.model.values import ModelError


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """The inventory's lock (flock on its directory: no file is made, and a site file replaced
    by rename stays covered): every read-modify-write of a site file by tunnelops happens
    under it, so two commands never lose each other's changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update(path: str | os.PathLike[str], change: Callable[[Site], Site]) -> Site:
    """Apply `change` to the site as the file says it NOW, and save the result: under the
    file's lock, and compare-and-swap against anything else writing it meanwhile (an editor):
    the change is applied again to what the file became. Returns the new site."""
    path = Path(path)
    with locked(path):
        while True:
            before = path.read_text(encoding="utf-8")
            new = change(loads(before, str(path), path.stem))
            text = dumps(new, before, path.stem)
            if path.read_text(encoding="utf-8") != before:
                continue  # changed under us by something that does not take the lock
            if text != before:
                write_atomic(path, text)
            return new


def update_discovered(path: str | os.PathLike[str], public_ip: IPv4Address | str | None,
                      wan_interface: str | None) -> Site:
    """Record what bootstrap discovered about the VPS (None: not discovered, keep what the
    file says); rewrites the file only if something changed. Returns the updated site."""
    changes: dict[str, object] = {}
    if public_ip is not None:
        changes["public_ip"] = public_ip
    if wan_interface is not None:
        changes["wan_interface"] = wan_interface

    def change(site: Site) -> Site:
        try:
            vps = dataclasses.replace(site.vps, **changes)  # type: ignore[arg-type]
        except ModelError as err:
            raise InventoryError(f"{path}: discovered value rejected: {err}") from None
        return dataclasses.replace(site, vps=vps)

    # what every re-run finds: the file already says it (read, not rendered, to know that)
    current = load(path)
    if change(current) == current:
        return current
    return update(path, change)
