"""What a site holds on one host, and when two sites' holdings collide. Pure.

Two sites side by side on a host must never touch each other (issue 11): each has its own
interface, and on the VPS its own WireGuard listen port, tunnel subnet and public ports; on
a home its own routing table, rule priorities, opened ports and containers. A Claim is that,
for one site on one host; `conflict` says whether two claims collide, and the fix.

Claims come from two places, so that a collision is refused before anything changes:
- the inventory: the other site files of the same inventory (tunnelops.fleet, before SSH);
- the host: the record each site leaves there (tunnelops.steps.sites), so a site of another
  laptop's inventory is refused too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from ipaddress import IPv4Network

from tunnelops.model.ports import PortSpec
from tunnelops.model.site import Site


@dataclass(frozen=True)
class Claim:
    site: str  # the site's name, as its inventory says
    iface: str
    kind: str  # "hub" or "home"
    subnet: str
    address: str  # this host's address in the tunnel
    home: str = ""  # at a home: its name in the site
    listen_port: int | None = None  # the hub's WireGuard port
    ports: tuple[str, ...] = ()  # public ports (hub) or ports opened to the tunnel (home)
    peers: tuple[str, ...] = ()  # public keys of the other end(s) of the tunnel
    route_table: int | None = None  # home: policy routing table
    rule_priorities: tuple[int, ...] = ()  # home
    containers: tuple[str, ...] = ()  # home: USER/CONTAINER
    client_ip: str = ""  # the hub: its client_ip mode (a firewalld VPS's trusted zone is shared)
    ssh_port: int | None = None  # the hub: the VPS's SSH port (the host's table lets it in)
    wan: str = ""  # the hub: its WAN interface, when known

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Claim | None:
        """None for a record that cannot be read (it is then ignored, never trusted)."""
        try:
            data = json.loads(text)
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                          if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return None


def hub_claim(site: Site, peers: tuple[str, ...] = (), wan: str | None = None) -> Claim:
    t = site.tunnel
    return Claim(site.name, t.interface, "hub", str(t.subnet), str(t.vps_address),
                 listen_port=t.listen_port,
                 ports=tuple(str(p) for s in site.services for p in s.ports), peers=peers,
                 client_ip=site.client_ip, ssh_port=site.vps.ssh_port,
                 wan=wan or site.vps.wan_interface or "")


def home_claim(site: Site, home: str, peers: tuple[str, ...] = ()) -> Claim:
    t = site.link(home)
    services = site.services_of(home)
    return Claim(site.name, t.interface, "home", str(t.subnet), str(t.home_address),
                 home=home, ports=tuple(str(p) for s in services for p in s.ports),
                 peers=peers, route_table=t.route_table, rule_priorities=t.rule_priorities,
                 containers=tuple(f"{s.user}/{s.container_name}" for s in services))


def _ports(claim: Claim) -> list[PortSpec]:
    out = []
    for text in claim.ports:
        try:
            out.append(PortSpec.parse(text))
        except ValueError:
            continue
    return out


def _free_iface(*claims: Claim) -> str:
    used = {c.iface for c in claims}
    return next(f"wg{n}" for n in range(1, 100) if f"wg{n}" not in used)


def _free_subnet(*claims: Claim) -> str:
    nets = [IPv4Network(c.subnet) for c in claims]
    return next(str(n) for n in (IPv4Network(f"192.168.{i}.0/24") for i in range(3, 255))
                if not any(n.overlaps(x) for x in nets))


def conflict(mine: Claim, theirs: Claim) -> tuple[str, str] | None:
    """(what MINE takes that THEIRS holds, the fix in the inventory of MINE), or None. Both
    of one kind of host (a VPS, or a home)."""
    if mine.iface == theirs.iface:
        return (f"interface {mine.iface}",
                f"set [tunnel] interface to another, e.g. {_free_iface(mine, theirs)}")
    if mine.kind == "hub" and None not in (mine.ssh_port, theirs.ssh_port) \
            and mine.ssh_port != theirs.ssh_port:
        return (f"the VPS's SSH port as {mine.ssh_port}/tcp (theirs: {theirs.ssh_port}/tcp)",
                "the VPS's firewall, which its sites share, lets one SSH port in: reach it on "
                f"{theirs.ssh_port} (the host's port, or ssh_config's Port)")
    if mine.kind == "hub" and mine.wan and theirs.wan and mine.wan != theirs.wan:
        return (f"the WAN interface {mine.wan} (theirs: {theirs.wan})",
                f"set [vps] wan_interface = \"{theirs.wan}\"")
    if mine.kind == "hub" and mine.listen_port == theirs.listen_port:
        free = max(mine.listen_port or 0, theirs.listen_port or 0) + 1
        return (f"WireGuard listen port {mine.listen_port}/udp",
                f"set [tunnel] listen_port to another, e.g. {free}")
    if IPv4Network(mine.subnet).overlaps(IPv4Network(theirs.subnet)):
        return (f"tunnel subnet {mine.subnet} (theirs: {theirs.subnet})",
                f"set [tunnel] subnet to a free range, e.g. subnet = "
                f"\"{_free_subnet(mine, theirs)}\"")
    for port in _ports(mine):
        for other in _ports(theirs):
            if port.overlaps(other):
                where = "forwarded" if mine.kind == "hub" else "opened"
                return (f"port {port} ({where} there as {other})",
                        "give the service another port")
    if mine.kind == "home":
        if mine.route_table == theirs.route_table:
            return (f"routing table {mine.route_table}",
                    f"set [tunnel] route_table to another, e.g. {(mine.route_table or 0) + 1}")
        if set(mine.rule_priorities) & set(theirs.rule_priorities):
            free = max(mine.rule_priorities + theirs.rule_priorities) + 1
            return (f"policy rule priorities {', '.join(map(str, mine.rule_priorities))}",
                    f"set [tunnel] rule_priority to another, e.g. {free}")
        for c in mine.containers:
            if c in theirs.containers:
                user, _, name = c.partition("/")
                return (f"container {name} of user {user}",
                        "give the service another name, or another user")
    return None
