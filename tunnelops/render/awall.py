"""awall (Alpine Wall) policy files for the VPS: /etc/awall/... JSON.

The structure is the seed's (base.json, optional/ssh.json, optional/wireguard.json,
optional/game.json) made valid JSON and checked against awall's user guide (MANUAL.md in
alpinelinux/awall) and its sources:
- JSON has no comments, so the "managed" notice goes in the top-level "description",
  which `awall list` prints.
- A service definition is {"proto": ..., "port": ...}; "port" is a number or a
  "first-last" string (awall/model.lua rewrites '-' to ':' for iptables).
- NAT rules take "to-addr" for both directions: for snat it is the new source address.
  The seed's "from-addr" is not an awall attribute (it only worked because awall's
  default SNAT address is the egress interface's own, 192.168.2.1).
- Limits are {"count": N, "interval": seconds}; on filters they apply per source address.
- A rule's "service" is a list of service NAMES only (a single name is a one-element list);
  an inline definition there is a schema error ("Type mismatch: 'filter.1.service' should be
  string, is table"), a warning today and a failed activation in strict mode. So every
  service a rule uses is defined in the policy file's own top-level "service" dictionary:
  WireGuard's port, a non-22 SSH port, each service's ports.
- "match" adds iptables match options to a rule (awall's own tests: test/optional/
  custom.json). The SSH limiter uses it to count connection attempts only (see ssh_policy).
Every policy, zone and service is named for the site (tunnelops.naming: `tunnelops-wg0-...`):
awall merges the named objects of all policies into one namespace, where a later definition
silently replaces an earlier one, so two sites' "vpn" zones or WireGuard services would be
one. Filters of every policy come before any policy's default actions (awall orders the
`policy` rules after all `filter` ones), so one site's `inet` drop never shadows another
site's accept. The SSH service keeps its one name on the host ("ssh", or "tunnelops-ssh" for
another port): it is the VPS's, the same for every site, and awall names the limiter's chain
after it (`limit-tunnelops-ssh-0`: iptables chain names end at 28 characters).
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from typing import Any

from tunnelops.model.service import Service
from tunnelops.model.tunnel import Tunnel
from tunnelops.naming import Names

MANAGED = "Managed by tunnelops: local edits are overwritten."

Policy = dict[str, Any]


def _names(t: Tunnel) -> Names:
    return Names(t.interface)


def service_key(svc: Service, t: Tunnel) -> str:
    return _names(t).awall_service_key(svc.name)


def base_policy(wan_iface: str, t: Tunnel, site: str = "") -> Policy:
    n = _names(t)
    inet, vpn = n.awall_inet, n.awall_vpn
    of = f" of site {site} ({t.interface})" if site else f" of {t.interface}"
    return {
        "description": f"{MANAGED} Base zones and policies{of}",
        "zone": {
            inet: {"iface": wan_iface},
            vpn: {"iface": t.interface},
        },
        "policy": [
            {"in": vpn, "action": "accept"},
            {"out": vpn, "action": "accept"},
            {"out": inet, "action": "accept"},
            {"in": "_fw", "action": "accept"},
            {"in": inet, "action": "drop"},
        ],
        # Masquerade what leaves through the WAN: the home server's egress via the VPS.
        "snat": [{"out": inet}],
    }


SSH_SERVICE = "tunnelops-ssh"
WIREGUARD_SERVICE = "tunnelops-wireguard"
# The limiter's rule matches TCP SYNs only (`--syn`: SYN set, ACK and RST clear): a
# connection attempt. Without it, the packets of a connection that conntrack picked up
# mid-stream (our own SSH session, when the first activation turns tracking on) are NEW
# too, and in-flight ACKs use up the limit: the guard's proof connection is then dropped.
SYN_ONLY = "-m tcp --syn"


def ssh_policy(t: Tunnel, port: int = 22, count: int = 3, interval: int = 20) -> Policy:
    """The seed's rate-limited SSH, counting connection attempts only; everything else to
    the SSH port that is not established (mid-stream pickups) is accepted by a second rule,
    as with nftables."""
    # "ssh" is awall's built-in service (tcp/22); another port gets its own definition.
    name = "ssh" if port == 22 else SSH_SERVICE
    policy: Policy = {"description": f"{MANAGED} Allow SSH from internet"}
    if port != 22:
        policy["service"] = {name: {"proto": "tcp", "port": port}}
    rule = {"in": _names(t).awall_inet, "out": "_fw", "service": name}
    policy["filter"] = [
        {**rule, "match": SYN_ONLY, "action": "accept",
         "conn-limit": {"count": count, "interval": interval}},
        {**rule, "action": "accept"},
    ]
    return policy


def wireguard_policy(t: Tunnel) -> Policy:
    n = _names(t)
    key = n.awall_policy(WIREGUARD_SERVICE.removeprefix("tunnelops-"))
    return {
        "description": f"{MANAGED} Allow WireGuard ({t.interface}) from internet",
        "service": {key: {"proto": "udp", "port": t.listen_port}},
        "filter": [
            {
                "in": n.awall_inet,
                # Only to the VPS itself; the seed's rule (no "out") also allowed forwarding.
                "out": "_fw",
                "service": key,
                "action": "accept",
            }
        ],
    }


def service_policy(svc: Service, t: Tunnel, *, snat: bool = False,
                   address: IPv4Address | None = None) -> Policy:
    """The seed's game.json, forwarding to the service's home at ADDRESS (default: the
    tunnel's home_address); its snat section only with client_ip = "snat": without it the
    game sees the player's address and home answers it through the tunnel by its rule
    `from HOME_ADDRESS` (the base policy's masquerade is for what leaves by the WAN only)."""
    n, key = _names(t), service_key(svc, t)
    home = address or t.home_address
    policy: Policy = {
        "description": f"{MANAGED} Forward {svc.name} traffic to home {svc.home or 'home'} "
                       f"({home}) through {t.interface}",
        "service": {key: [{"proto": p.proto, "port": p.awall} for p in svc.ports]},
        "filter": [{"in": n.awall_inet, "out": n.awall_vpn, "service": key,
                    "action": "accept"}],
        "dnat": [{"in": n.awall_inet, "service": key, "to-addr": str(home)}],
    }
    if snat:
        # the home server sees the VPS's tunnel address as the source, and answers it over wg0
        policy["snat"] = [{"out": n.awall_vpn, "service": key, "to-addr": str(t.vps_address)}]
    return policy


def dumps(policy: Policy) -> str:
    """Deterministic JSON text for a policy file."""
    return json.dumps(policy, indent=4, ensure_ascii=False) + "\n"
