"""nftables rulesets, one table per site on a host (`inet tunnelops-wg0`, named for the
site's tunnel interface: tunnelops.naming), loaded with `nft -f FILE`.

Each file starts with `table inet tunnelops-wg0` then `delete table inet tunnelops-wg0`:
creating the table first makes the delete succeed whether or not it existed, so one `nft -f`
replaces exactly this site's table in a single atomic transaction and never flushes anyone
else's rules -- another site's table included.

Service ports are data, not rules: static rules match named interval sets, one pair per home
on the VPS (`svc_udp_home`, `svc_tcp_home`: `udp dport @svc_udp_home dnat ip to HOME`), one
pair at home (`svc_tcp`, `svc_udp`); the ports are the sets' elements, in trailing `add
element` lines, one per set, each element commented with its service's name. So the file's
BASE (everything but those lines) depends on the homes, not on the services, and adding or
removing a port -- or moving it to another home -- changes elements of the live table (`nft
add element ...`) instead of reloading it: counters and the SSH rate limiter's sets survive.

vps_ruleset and the host's own table (render.nfthost) do what the seed's awall policies do;
home_ruleset limits what may come in through the tunnel to the service ports, for home
servers without firewalld (its chain accepts what does not come from its tunnel, so the
tables of sites side by side at one home never drop each other's traffic).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from tunnelops.model.hosts import DEFAULT_HOME
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.tunnel import Tunnel
from tunnelops.naming import Names

MANAGED = "# Managed by tunnelops: local edits are overwritten."
# the named set holding each protocol's service ports (at home; the VPS's are per home)
SVC_SETS = {"tcp": "svc_tcp", "udp": "svc_udp"}
ADD_ELEMENT = "add element "
_SET_RE = re.compile(r"svc_(tcp|udp)(?:_[A-Za-z0-9_-]+)?")


def table_of(t: Tunnel) -> str:
    """The site's table, family and name: `inet tunnelops-wg0`."""
    return Names(t.interface).nft_family_table


def home_sets(home: str) -> dict[str, str]:
    """A home's service port sets on the VPS, by protocol."""
    return {proto: f"{name}_{home}" for proto, name in SVC_SETS.items()}


def set_proto(name: str) -> str | None:
    """The protocol of a service port set (svc_udp, svc_udp_home2...), None if it is none."""
    m = _SET_RE.fullmatch(name)
    return m.group(1) if m else None

ICMP_TYPES = "echo-request, destination-unreachable, time-exceeded, parameter-problem"
# Neighbour discovery must pass or IPv6 on the WAN stops working.
ICMPV6_TYPES = ("echo-request, destination-unreachable, packet-too-big, time-exceeded, "
                "parameter-problem, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert")

# The seed's awall conn-limit {count 3, interval 20}: 3 new connections per 20 s per source
# address, i.e. 9/minute with a burst of 3.
SSH_RATE = "9/minute burst 3 packets"
SYN_ONLY = "tcp flags & (syn | ack) == syn"


@dataclass(frozen=True, order=True)
class Element:
    """One element of a service port set: a port or a port range, and the service's name."""

    first: int
    last: int
    comment: str = ""

    @classmethod
    def of(cls, port: PortSpec, service: str) -> Element:
        return cls(port.first, port.last, service)

    @property
    def key(self) -> str:
        """What nft needs to find the element (e.g. to delete it): 12345 or 27015-27020."""
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    @property
    def nft(self) -> str:
        return f'{self.key} comment "{self.comment}"' if self.comment else self.key


def _header(table: str) -> list[str]:
    return [MANAGED, f"table {table}", f"delete table {table}", f"table {table} {{"]


def _chain(name: str, hook: str, policy: str, rules: list[str]) -> list[str]:
    kind, where = hook.split(" ", 1)
    return [
        f"    chain {name} {{",
        f"        type {kind} hook {where}; policy {policy};",
        *(f"        {rule}" for rule in rules),
        "    }",
    ]


def _svc_sets(names: Sequence[str], *, counter: bool = False) -> list[str]:
    """COUNTER: each element counts what matches it (`status` reads the counts)."""
    return [line for name in names for line in (
        f"    set {name} {{",
        "        type inet_service",
        "        flags interval",
        *(["        counter"] if counter else []),
        "    }")]


def service_elements(services: Sequence[Service],
                     homes: Sequence[str] | None = None) -> dict[str, list[Element]]:
    """Each service port set's elements, in port order (the order nft lists them in): the
    sets of each of HOMES on the VPS (by each service's home), else home's own pair."""
    sets = ({proto: name for proto, name in SVC_SETS.items()} if homes is None else None)
    out: dict[str, list[Element]] = (
        {name: [] for name in SVC_SETS.values()} if homes is None else
        {name: [] for h in homes for name in home_sets(h).values()})
    for svc in services:
        names = sets or home_sets(svc.home or DEFAULT_HOME)
        for port in svc.ports:
            out.setdefault(names[port.proto], []).append(Element.of(port, svc.name))
    return {name: sorted(elems) for name, elems in out.items()}


def add_element(table: str, set_name: str, elements: Sequence[Element]) -> str:
    return f"{ADD_ELEMENT}{table} {set_name} {{ {', '.join(e.nft for e in elements)} }}"


def delete_element(table: str, set_name: str, elements: Sequence[Element]) -> str:
    return f"delete element {table} {set_name} {{ {', '.join(e.key for e in elements)} }}"


def _element_lines(table: str, elements: Mapping[str, list[Element]]) -> list[str]:
    return [add_element(table, name, elems) for name, elems in elements.items() if elems]


def split(ruleset: str) -> tuple[str, dict[str, list[Element]]]:
    """(the base: every line but the trailing `add element` ones, the elements they add)."""
    return base(ruleset), port_sets(ruleset)


def base(ruleset: str) -> str:
    """Every line of a ruleset file but its trailing `add element` ones: what does not
    depend on the service ports."""
    return "".join(line for line in ruleset.splitlines(keepends=True)
                   if not line.startswith(ADD_ELEMENT))


# ---------------------------------------------------------------- reading nft's set syntax
def _block_end(text: str, start: int) -> int:
    """Index just past the `}` closing the `{` at text[start] (quoted strings skipped)."""
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch == '"':
            j = text.find('"', i + 1)
            i = len(text) if j < 0 else j + 1
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def element_list(body: str) -> list[tuple[str, str]]:
    """`{ 12345 comment "game", 27015-27020 comment "game" }` (braces optional, any number of
    lines) as [(value, comment)]: the value as nft writes it, anything after it but the
    comment (timeouts, a dynamic set's limit...) dropped."""
    body = body.strip()
    if body.startswith("{"):
        body = body[1:_block_end(body, 0) - 1]
    out: list[tuple[str, str]] = []
    for m in re.finditer(r'((?:[^,"]|"[^"]*")+)', body):
        item = m.group(1).strip()
        if not item:
            continue
        value = re.split(r"\s", item, maxsplit=1)[0]
        comment = re.search(r'\bcomment\s+"([^"]*)"', item)
        out.append((value, comment.group(1) if comment else ""))
    return out


def set_elements(text: str) -> dict[str, list[tuple[str, str]]]:
    """Every named set in TEXT with its elements: `set NAME { ... elements = { ... } }` blocks
    (nft's listings) and `add element FAMILY TABLE NAME { ... }` statements (our files). One
    table's text: set names are not qualified by their table."""
    out: dict[str, list[tuple[str, str]]] = {}
    for m in re.finditer(r"(?m)^\s*set\s+(\S+)\s*\{", text):
        end = _block_end(text, m.end() - 1)
        body = text[m.end():end - 1]
        elems = out.setdefault(m.group(1), [])
        em = re.search(r"\belements\s*=\s*\{", body)
        if em:
            elems += element_list(body[em.end() - 1:])
    for m in re.finditer(r"(?m)^\s*add\s+element\s+\S+\s+\S+\s+(\S+)\s*\{", text):
        body = text[m.end() - 1:_block_end(text, m.end() - 1)]
        out.setdefault(m.group(1), []).extend(element_list(body))
    return out


def port_sets(text: str) -> dict[str, list[Element]]:
    """The service port sets in TEXT (nft's listing of them, or our file), as Elements in
    port order; values that are not ports or port ranges are skipped."""
    out: dict[str, list[Element]] = {}
    for name, elems in set_elements(text).items():
        if set_proto(name) is None:
            continue
        parsed = []
        for value, comment in elems:
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", value)
            if m:
                parsed.append(Element(int(m.group(1)), int(m.group(2) or m.group(1)), comment))
        out[name] = sorted(parsed)
    return out


def boot_unit(rules: str) -> str:
    """A systemd unit loading RULES (a glob: every table of ours, the VPS's own and each
    site's) at boot, before the network comes up (`$$` is systemd's literal `$`)."""
    return (f"{MANAGED}\n[Unit]\nDescription=tunnelops's nftables tables\n"
            "Wants=network-pre.target\nBefore=network-pre.target\nAfter=nftables.service\n\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart=/bin/sh -c 'for f in {rules}; do nft -f \"$$f\" || exit 1; done'\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


# ---------------------------------------------------------------- the rulesets
def vps_ruleset(wan_iface: str, t: Tunnel, services: Sequence[Service], *,
                snat: bool = False, homes: Mapping[str, IPv4Address] | None = None) -> str:
    """The site's own table on the VPS: its NAT, and each home's pair of port sets, DNATed
    to the home's address (HOMES: each home's tunnel address, in the site's order; default:
    the one home at the tunnel's home_address). The filter (default deny, SSH, WireGuard,
    what may be forwarded) is the host's table, shared by its sites (render.nfthost).
    snat: forwarded service traffic leaves into the tunnel from the VPS's tunnel address
    (client_ip = "snat"); without it the game sees the player's own address and answers it
    through the tunnel by home's rule `from HOME_ADDRESS`, the VPS un-DNATing the reply."""
    homes = dict(homes) if homes is not None else {DEFAULT_HOME: t.home_address}
    table = table_of(t)
    wan, wg = f'"{wan_iface}"', f'"{t.interface}"'
    vps = t.vps_address
    pairs = [(home, addr, proto, name) for home, addr in homes.items()
             for proto, name in home_sets(home).items()]
    prerouting_rules = [
        f'iifname {wan} {proto} dport @{name} dnat ip to {addr} comment "services of {home}"'
        for home, addr, proto, name in pairs
    ]
    postrouting_rules = [
        f'oifname {wan} ip saddr {t.subnet} masquerade comment "home egress"',
        # The home server sees the VPS's tunnel address and so answers through the tunnel.
        *(f'oifname {wg} ip daddr {addr} {proto} dport @{name} snat ip to {vps} '
          f'comment "services of {home}"' for home, addr, proto, name in pairs if snat),
    ]
    # Counting only (no verdict: the host's table decides): every packet of a player's
    # connection into the tunnel meets its port's element, whose counter `status` reads (the
    # DNAT rules see a connection's first packet only).
    count_rules = [f"iifname {wan} oifname {wg} {proto} dport @{name}"
                   for home, addr, proto, name in pairs]
    lines = [
        *_header(table),
        *_svc_sets([name for *_, name in pairs], counter=True),
        "",
        *_chain("prerouting", "nat prerouting priority dstnat", "accept", prerouting_rules),
        "",
        *_chain("count", "filter forward priority filter - 1", "accept", count_rules),
        "",
        *_chain("postrouting", "nat postrouting priority srcnat", "accept", postrouting_rules),
        "}",
        *_element_lines(table, service_elements(services, list(homes))),
    ]
    return "\n".join(lines) + "\n"


def home_ruleset(t: Tunnel, services: Sequence[Service]) -> str:
    """Only the tunnel is filtered: everything else keeps the policy accept. From the VPS
    side only replies, ICMP and the service ports get in (what firewalld's zone does)."""
    wg, table = f'"{t.interface}"', table_of(t)
    rules = [
        f"iifname != {wg} accept",
        "ct state established,related accept",
        "ct state invalid drop",
        f"icmp type {{ {ICMP_TYPES} }} accept",
        *(f'{proto} dport @{name} accept comment "services"'
          for proto, name in SVC_SETS.items()),
        'drop comment "nothing else from the tunnel"',
    ]
    lines = [
        *_header(table),
        *_svc_sets(list(SVC_SETS.values())),
        "",
        *_chain("input", "filter input priority filter", "accept", rules),
        "}",
        *_element_lines(table, service_elements(services)),
    ]
    return "\n".join(lines) + "\n"
