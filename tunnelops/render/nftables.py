"""nftables rulesets, one `table inet tunnelops` per host, loaded with `nft -f FILE`.

Each file starts with `table inet tunnelops` then `delete table inet tunnelops`: creating
the table first makes the delete succeed whether or not it existed, so one `nft -f` replaces
exactly our table in a single atomic transaction and never flushes anyone else's rules.

Service ports are data, not rules: static rules match the named interval sets `svc_tcp` and
`svc_udp` (`udp dport @svc_udp dnat ip to HOME`), and the ports are the sets' elements, in
trailing `add element` lines, one per set, each element commented with its service's name.
So the file's BASE (everything but those lines) does not depend on the services, and adding
or removing a port changes one element of the live table (`nft add element ...`) instead of
reloading it: counters and the SSH rate limiter's sets survive.

vps_ruleset does what the seed's awall policies do; home_ruleset limits what may come in
through the tunnel to the service ports, for home servers without firewalld.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tunnelops.model import PortSpec, Service, Tunnel

MANAGED = "# Managed by tunnelops: local edits are overwritten."
TABLE = "inet tunnelops"
# the named set holding each protocol's service ports
SVC_SETS = {"tcp": "svc_tcp", "udp": "svc_udp"}
ADD_ELEMENT = f"add element {TABLE} "

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


def _header() -> list[str]:
    return [MANAGED, f"table {TABLE}", f"delete table {TABLE}", f"table {TABLE} {{"]


def _chain(name: str, hook: str, policy: str, rules: list[str]) -> list[str]:
    kind, where = hook.split(" ", 1)
    return [
        f"    chain {name} {{",
        f"        type {kind} hook {where}; policy {policy};",
        *(f"        {rule}" for rule in rules),
        "    }",
    ]


def _svc_sets() -> list[str]:
    return [line for name in SVC_SETS.values() for line in (
        f"    set {name} {{",
        "        type inet_service",
        "        flags interval",
        "    }")]


def service_elements(services: Sequence[Service]) -> dict[str, list[Element]]:
    """Each service port set's elements, in port order (the order nft lists them in)."""
    out: dict[str, list[Element]] = {name: [] for name in SVC_SETS.values()}
    for svc in services:
        for port in svc.ports:
            out[SVC_SETS[port.proto]].append(Element.of(port, svc.name))
    return {name: sorted(elems) for name, elems in out.items()}


def add_element(set_name: str, elements: Sequence[Element]) -> str:
    return f"{ADD_ELEMENT}{set_name} {{ {', '.join(e.nft for e in elements)} }}"


def delete_element(set_name: str, elements: Sequence[Element]) -> str:
    return f"delete element {TABLE} {set_name} {{ {', '.join(e.key for e in elements)} }}"


def _element_lines(services: Sequence[Service]) -> list[str]:
    return [add_element(name, elems) for name, elems in service_elements(services).items()
            if elems]


def base(ruleset: str) -> str:
    """Every line of a ruleset file but its trailing `add element` ones: what does not
    depend on the service ports."""
    return "".join(line for line in ruleset.splitlines(keepends=True)
                   if not line.startswith(ADD_ELEMENT))


def boot_unit(rules: str) -> str:
    """A systemd unit loading RULES at boot, before the network comes up."""
    return (f"{MANAGED}\n[Unit]\nDescription=tunnelops's nftables table\n"
            "Wants=network-pre.target\nBefore=network-pre.target\nAfter=nftables.service\n\n"
            f"[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=nft -f {rules}\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


# ---------------------------------------------------------------- the rulesets
def vps_ruleset(wan_iface: str, t: Tunnel, services: Sequence[Service],
                ssh_port: int = 22, *, snat: bool = False) -> str:
    """snat: forwarded service traffic leaves into the tunnel from the VPS's tunnel address
    (client_ip = "snat"); without it the game sees the player's own address and answers it
    through the tunnel by home's rule `from HOME_ADDRESS`, the VPS un-DNATing the reply."""
    wan, wg = f'"{wan_iface}"', f'"{t.interface}"'
    home, vps = t.home_address, t.vps_address
    sets = [
        "    set ssh_new4 {",
        "        type ipv4_addr",
        "        flags dynamic, timeout",
        "        timeout 1m",
        "    }",
        "    set ssh_new6 {",
        "        type ipv6_addr",
        "        flags dynamic, timeout",
        "        timeout 1m",
        "    }",
        *_svc_sets(),
    ]
    input_rules = [
        "ct state established,related accept",
        "ct state invalid drop",
        "iif lo accept",
        f"iifname {wg} accept",
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
        f'udp dport {t.listen_port} accept comment "wireguard"',
    ]
    forward_rules = [
        "ct state established,related accept",
        "ct state invalid drop",
        f'iifname {wg} oifname {wan} accept comment "home egress through the VPS"',
        # Only connections our prerouting chain DNATed, and only to service ports.
        *(f"iifname {wan} oifname {wg} ip daddr {home} {proto} dport @{name} ct status dnat "
          'accept comment "services"' for proto, name in SVC_SETS.items()),
    ]
    prerouting_rules = [
        f'iifname {wan} {proto} dport @{name} dnat ip to {home} comment "services"'
        for proto, name in SVC_SETS.items()
    ]
    postrouting_rules = [
        f'oifname {wan} ip saddr {t.subnet} masquerade comment "home egress"',
        # The home server sees the VPS's tunnel address and so answers through the tunnel.
        *(f'oifname {wg} ip daddr {home} {proto} dport @{name} snat ip to {vps} '
          'comment "services"' for proto, name in SVC_SETS.items() if snat),
    ]
    lines = [
        *_header(),
        *sets,
        "",
        *_chain("input", "filter input priority filter", "drop", input_rules),
        "",
        *_chain("forward", "filter forward priority filter", "drop", forward_rules),
        "",
        *_chain("prerouting", "nat prerouting priority dstnat", "accept", prerouting_rules),
        "",
        *_chain("postrouting", "nat postrouting priority srcnat", "accept", postrouting_rules),
        "}",
        *_element_lines(services),
    ]
    return "\n".join(lines) + "\n"


def home_ruleset(t: Tunnel, services: Sequence[Service]) -> str:
    """Only the tunnel is filtered: everything else keeps the policy accept. From the VPS
    side only replies, ICMP and the service ports get in (what firewalld's zone does)."""
    wg = f'"{t.interface}"'
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
        *_header(),
        *_svc_sets(),
        "",
        *_chain("input", "filter input priority filter", "accept", rules),
        "}",
        *_element_lines(services),
    ]
    return "\n".join(lines) + "\n"
