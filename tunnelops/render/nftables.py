"""nftables rulesets, one `table inet tunnelops` per host, loaded with `nft -f FILE`.

Each file starts with `table inet tunnelops` then `delete table inet tunnelops`: creating
the table first makes the delete succeed whether or not it existed, so one `nft -f` replaces
exactly our table in a single atomic transaction and never flushes anyone else's rules.

vps_ruleset does what the seed's awall policies do; home_ruleset limits what may come in
through the tunnel to the service ports, for home servers without firewalld.
"""

from __future__ import annotations

from collections.abc import Sequence

from tunnelops.model import PortSpec, Service, Tunnel

MANAGED = "# Managed by tunnelops: local edits are overwritten."
TABLE = "inet tunnelops"

ICMP_TYPES = "echo-request, destination-unreachable, time-exceeded, parameter-problem"
# Neighbour discovery must pass or IPv6 on the WAN stops working.
ICMPV6_TYPES = ("echo-request, destination-unreachable, packet-too-big, time-exceeded, "
                "parameter-problem, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert")

# The seed's awall conn-limit {count 3, interval 20}: 3 new connections per 20 s per source
# address, i.e. 9/minute with a burst of 3.
SSH_RATE = "9/minute burst 3 packets"


def _header() -> list[str]:
    return [MANAGED, f"table {TABLE}", f"delete table {TABLE}", f"table {TABLE} {{"]


def _match(port: PortSpec) -> str:
    return f"{port.proto} dport {port.nft}"


def _chain(name: str, hook: str, policy: str, rules: list[str]) -> list[str]:
    kind, where = hook.split(" ", 1)
    return [
        f"    chain {name} {{",
        f"        type {kind} hook {where}; policy {policy};",
        *(f"        {rule}" for rule in rules),
        "    }",
    ]


def _service_ports(services: Sequence[Service]) -> list[tuple[Service, PortSpec]]:
    return [(svc, port) for svc in services for port in svc.ports]


def vps_ruleset(wan_iface: str, t: Tunnel, services: Sequence[Service],
                ssh_port: int = 22) -> str:
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
    ]
    input_rules = [
        "ct state established,related accept",
        "ct state invalid drop",
        "iif lo accept",
        f"iifname {wg} accept",
        f"icmp type {{ {ICMP_TYPES} }} accept",
        f"icmpv6 type {{ {ICMPV6_TYPES} }} accept",
        'ip6 saddr fe80::/10 udp dport 546 accept comment "dhcpv6 replies"',
        f"tcp dport {ssh_port} ct state new update @ssh_new4 "
        f'{{ ip saddr limit rate over {SSH_RATE} }} drop comment "ssh rate limit"',
        f"tcp dport {ssh_port} ct state new update @ssh_new6 "
        f'{{ ip6 saddr limit rate over {SSH_RATE} }} drop comment "ssh rate limit"',
        f'tcp dport {ssh_port} accept comment "ssh"',
        f'udp dport {t.listen_port} accept comment "wireguard"',
    ]
    pairs = _service_ports(services)
    forward_rules = [
        "ct state established,related accept",
        "ct state invalid drop",
        f'iifname {wg} oifname {wan} accept comment "home egress through the VPS"',
        # Only connections our prerouting chain DNATed, and only to service ports.
        *(f"iifname {wan} oifname {wg} ip daddr {home} {_match(port)} ct status dnat "
          f'accept comment "service {svc.name}"' for svc, port in pairs),
    ]
    prerouting_rules = [
        f'iifname {wan} {_match(port)} dnat ip to {home} comment "{svc.name}"'
        for svc, port in pairs
    ]
    postrouting_rules = [
        f'oifname {wan} ip saddr {t.subnet} masquerade comment "home egress"',
        # The home server sees the VPS's tunnel address and so answers through the tunnel.
        *(f'oifname {wg} ip daddr {home} {_match(port)} snat ip to {vps} comment "{svc.name}"'
          for svc, port in pairs),
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
        *(f'{_match(port)} accept comment "service {svc.name}"'
          for svc, port in _service_ports(services)),
        'drop comment "nothing else from the tunnel"',
    ]
    lines = [
        *_header(),
        *_chain("input", "filter input priority filter", "accept", rules),
        "}",
    ]
    return "\n".join(lines) + "\n"
