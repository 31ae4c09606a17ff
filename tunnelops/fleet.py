"""The other sites of the inventory: a site that would collide with one of them on a shared
host is refused before any SSH connection (issue 11), in one line, with the fix.

Two site files that name the same VPS and the same homes are copies of one deployment
(another file name, another known_hosts or sudo user, a variant a test makes): they are not
two sites side by side, and are not compared. Whether such a copy really is the site on the
host is the host's record to say (steps.sites). Two sites that share the VPS but not their
homes must differ in interface, listen port, subnet and public ports; two that share a home
in interface, routing table, rule priorities, ports and containers (tunnelops.claims).
"""

from __future__ import annotations

from pathlib import Path

from tunnelops.claims import conflict, home_claim, hub_claim
from tunnelops.inventory.read import load
from tunnelops.locations import EXAMPLE_NAME
from tunnelops.model.hosts import HomeSpec, same_host
from tunnelops.model.site import Site


class Collision(ValueError):
    """One line: which site collides with which, where, and the fix."""


def others(path: Path) -> list[tuple[Path, Site]]:
    """Every other site file of the inventory directory, loaded (an unreadable one raises
    its own one-line InventoryError: a collision with it could not be ruled out)."""
    directory = path.parent
    if not directory.is_dir():
        return []
    return [(p, load(p)) for p in sorted(directory.glob("*.toml"))
            if p.name != EXAMPLE_NAME and p.resolve() != path.resolve()]


def _shares_vps(a: Site, b: Site) -> bool:
    return same_host(a.vps.host, b.vps.host) or (
        a.vps.public_ip is not None and a.vps.public_ip == b.vps.public_ip) or (
        _resolved(a) == _resolved(b))


def _resolved(site: Site) -> str:
    """The VPS's host as ssh reaches it (an alias's HostName: two aliases of one VPS are one
    VPS), read from the site's ssh_config on the laptop."""
    from tunnelops.remote import ssh_host  # paramiko/fabric: only when there are two sites

    try:
        return ssh_host(str(site.vps.host), site.ssh_config)
    except Exception:  # an ssh_config that cannot be read: the host as written
        return str(site.vps.host)


def _twin(home: HomeSpec, site: Site) -> HomeSpec | None:
    return next((h for h in site.homes if same_host(h.host, home.host)), None)


def copies(a: Site, b: Site) -> bool:
    """One deployment described twice: the same VPS and the same homes."""
    return _shares_vps(a, b) and len(a.homes) == len(b.homes) and all(
        _twin(h, b) is not None for h in a.homes)


def check(site: Site, path: Path, sites: list[tuple[Path, Site]]) -> None:
    """Raise Collision if SITE (in PATH) takes what another site of the inventory holds on a
    host they share."""
    for other_path, other in sites:
        if copies(site, other):
            continue
        where = f"{path.name}: "
        if _shares_vps(site, other):
            c = conflict(hub_claim(site), hub_claim(other))
            if c is not None:
                raise Collision(f"{where}{c[0]} on VPS {site.vps.host} is site "
                                f"{other.name!r}'s too ({other_path.name}): {c[1]}")
        for home in site.homes:
            twin = _twin(home, other)
            if twin is None:
                continue
            c = conflict(home_claim(site, home.name), home_claim(other, twin.name))
            if c is not None:
                raise Collision(f"{where}{c[0]} on home {home.host} is site "
                                f"{other.name!r}'s too ({other_path.name}): {c[1]}")
