"""The nftables VPS's own table, `inet tunnelops-host`: the firewall the sites on it share.

nftables runs every base chain hooked at a point, and a packet must get through all of them:
an `accept` ends one chain only. So the default-deny of the VPS (input and forward, policy
drop) cannot be any site's table -- the first site's would drop the second site's WireGuard
port and forwarding. It is this one table, whose rules are the same for every site (SSH
rate-limited, WireGuard, the tunnels' traffic, home egress to the WAN, DNATed services into
the tunnels); what differs per site is data: its interface in `tunnels`, its listen port in
`wireguard`, one element each, commented with the site's interface. Each site's own table
(render.nftables.vps_ruleset) has its NAT and its service port sets.

The file never deletes the table: `add table`/`add set`/`add chain` create what is missing
and `flush chain` + `add rule` replace the rules, all in one `nft -f` transaction, so a
reload keeps the sets' elements (every site's, and the SSH rate limiter's memory). Its
trailing `add element` lines are every site's on the host (from the sites' records), so the
file loaded at boot brings them all back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tunnelops.naming import HOST_FAMILY_TABLE as TABLE
from tunnelops.render.nftables import (
    ICMP_TYPES,
    ICMPV6_TYPES,
    MANAGED,
    SSH_RATE,
    SYN_ONLY,
    set_elements,
)

SETS = {"tunnels": "ifname", "wireguard": "inet_service"}


@dataclass(frozen=True, order=True)
class HubSite:
    """What the host's table holds of one site: its tunnel interface and WireGuard port
    (elements commented with the site's name)."""

    iface: str
    listen_port: int
    site: str = ""


def elements(sites: Sequence[HubSite]) -> dict[str, list[tuple[str, str]]]:
    """Each set's elements, (value as nft lists it, comment), sorted as nft lists them."""
    return {"tunnels": sorted((s.iface, s.site) for s in sites),
            "wireguard": sorted(((str(s.listen_port), s.site) for s in sites),
                                key=lambda e: int(e[0]))}


def element_text(set_name: str, value: str, comment: str) -> str:
    shown = f'"{value}"' if SETS[set_name] == "ifname" else value
    return f'{shown} comment "{comment}"' if comment else shown


def add_element(set_name: str, value: str, comment: str) -> str:
    return f"add element {TABLE} {set_name} {{ {element_text(set_name, value, comment)} }}"


def delete_element(set_name: str, value: str) -> str:
    shown = f'"{value}"' if SETS[set_name] == "ifname" else value
    return f"delete element {TABLE} {set_name} {{ {shown} }}"


def host_ruleset(wan_iface: str, ssh_port: int, sites: Sequence[HubSite]) -> str:
    wan, t = f'"{wan_iface}"', TABLE
    input_rules = [
        "ct state established,related accept",
        "ct state invalid drop",
        "iif lo accept",
        'iifname @tunnels accept comment "the homes"',
        f"icmp type {{ {ICMP_TYPES} }} accept",
        f"icmpv6 type {{ {ICMPV6_TYPES} }} accept",
        'ip6 saddr fe80::/10 udp dport 546 accept comment "dhcpv6 replies"',
        # Connection attempts only (SYN without ACK): when this table's first load turns
        # conntrack on, the connections already open (our own SSH session) are picked up
        # mid-stream and their in-flight packets are `ct state new` too; counted, they use
        # up the burst and the next real connection (the guard's proof) is dropped.
        f"tcp dport {ssh_port} {SYN_ONLY} ct state new update @ssh_new4 "
        f'{{ ip saddr limit rate over {SSH_RATE} }} drop comment "ssh rate limit"',
        f"tcp dport {ssh_port} {SYN_ONLY} ct state new update @ssh_new6 "
        f'{{ ip6 saddr limit rate over {SSH_RATE} }} drop comment "ssh rate limit"',
        f'tcp dport {ssh_port} accept comment "ssh"',
        'udp dport @wireguard accept comment "wireguard"',
    ]
    forward_rules = [
        "ct state established,related accept",
        "ct state invalid drop",
        f'iifname @tunnels oifname {wan} accept comment "home egress through the VPS"',
        # Only connections a site's prerouting DNATed (only its service ports), into a tunnel.
        f'iifname {wan} oifname @tunnels ct status dnat accept comment "services"',
    ]
    lines = [
        MANAGED,
        f"add table {t}",
        f"add set {t} ssh_new4 {{ type ipv4_addr; flags dynamic, timeout; timeout 1m; }}",
        f"add set {t} ssh_new6 {{ type ipv6_addr; flags dynamic, timeout; timeout 1m; }}",
        *(f"add set {t} {name} {{ type {kind}; }}" for name, kind in SETS.items()),
        f"add chain {t} input {{ type filter hook input priority filter; policy drop; }}",
        f"add chain {t} forward {{ type filter hook forward priority filter; policy drop; }}",
        f"flush chain {t} input",
        *(f"add rule {t} input {r}" for r in input_rules),
        f"flush chain {t} forward",
        *(f"add rule {t} forward {r}" for r in forward_rules),
        *(add_element(name, v, c) for name, elems in elements(sites).items()
          for v, c in elems),
    ]
    return "\n".join(lines) + "\n"


def host_elements(text: str) -> dict[str, list[tuple[str, str]]]:
    """The elements a host file adds: set -> [(value, comment)] (ifnames unquoted)."""
    out: dict[str, list[tuple[str, str]]] = {name: [] for name in SETS}
    for name, elems in set_elements(text).items():
        if name in SETS:
            out[name] = [(v.strip('"'), c) for v, c in elems]
    return out


def base(text: str) -> str:
    return "".join(x for x in text.splitlines(keepends=True) if not x.startswith("add element "))


def with_sites(text: str, sites: Sequence[HubSite]) -> str:
    """TEXT (a host file) with the elements of SITES only (the rules as they are)."""
    return base(text) + "".join(f"{add_element(name, v, c)}\n"
                                for name, elems in elements(sites).items() for v, c in elems)
