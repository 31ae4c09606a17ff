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
Service names get a "tunnelops-" prefix so they cannot collide with awall's built-in
services ("ssh", "http", ...) or with the user's own policies.
"""

from __future__ import annotations

import json
from typing import Any

from tunnelops.model import Service, Tunnel

MANAGED = "Managed by tunnelops: local edits are overwritten."

Policy = dict[str, Any]


def service_key(svc: Service) -> str:
    return f"tunnelops-{svc.name}"


def base_policy(wan_iface: str, t: Tunnel) -> Policy:
    return {
        "description": f"{MANAGED} Base zones and policies",
        "zone": {
            "inet": {"iface": wan_iface},
            "vpn": {"iface": t.interface},
        },
        "policy": [
            {"in": "vpn", "action": "accept"},
            {"out": "vpn", "action": "accept"},
            {"out": "inet", "action": "accept"},
            {"in": "_fw", "action": "accept"},
            {"in": "inet", "action": "drop"},
        ],
        # Masquerade what leaves through the WAN: the home server's egress via the VPS.
        "snat": [{"out": "inet"}],
    }


SSH_SERVICE = "tunnelops-ssh"
WIREGUARD_SERVICE = "tunnelops-wireguard"
# The limiter's rule matches TCP SYNs only (`--syn`: SYN set, ACK and RST clear): a
# connection attempt. Without it, the packets of a connection that conntrack picked up
# mid-stream (our own SSH session, when the first activation turns tracking on) are NEW
# too, and in-flight ACKs use up the limit: the guard's proof connection is then dropped.
SYN_ONLY = "-m tcp --syn"


def ssh_policy(port: int = 22, count: int = 3, interval: int = 20) -> Policy:
    """The seed's rate-limited SSH, counting connection attempts only; everything else to
    the SSH port that is not established (mid-stream pickups) is accepted by a second rule,
    as with nftables."""
    # "ssh" is awall's built-in service (tcp/22); another port gets its own definition.
    name = "ssh" if port == 22 else SSH_SERVICE
    policy: Policy = {"description": f"{MANAGED} Allow SSH from internet"}
    if port != 22:
        policy["service"] = {name: {"proto": "tcp", "port": port}}
    rule = {"in": "inet", "out": "_fw", "service": name}
    policy["filter"] = [
        {**rule, "match": SYN_ONLY, "action": "accept",
         "conn-limit": {"count": count, "interval": interval}},
        {**rule, "action": "accept"},
    ]
    return policy


def wireguard_policy(t: Tunnel) -> Policy:
    return {
        "description": f"{MANAGED} Allow WireGuard from internet",
        "service": {WIREGUARD_SERVICE: {"proto": "udp", "port": t.listen_port}},
        "filter": [
            {
                "in": "inet",
                # Only to the VPS itself; the seed's rule (no "out") also allowed forwarding.
                "out": "_fw",
                "service": WIREGUARD_SERVICE,
                "action": "accept",
            }
        ],
    }


def service_policy(svc: Service, t: Tunnel, *, snat: bool = False) -> Policy:
    """The seed's game.json; its snat section only with client_ip = "snat": without it the
    game sees the player's address and home answers it through the tunnel by its rule
    `from HOME_ADDRESS` (base.json's masquerade is for what leaves by the WAN only)."""
    key = service_key(svc)
    policy: Policy = {
        "description": f"{MANAGED} Forward {svc.name} traffic to WireGuard peer",
        "service": {key: [{"proto": p.proto, "port": p.awall} for p in svc.ports]},
        "filter": [{"in": "inet", "out": "vpn", "service": key, "action": "accept"}],
        "dnat": [{"in": "inet", "service": key, "to-addr": str(t.home_address)}],
    }
    if snat:
        # the home server sees the VPS's tunnel address as the source, and answers it over wg0
        policy["snat"] = [{"out": "vpn", "service": key, "to-addr": str(t.vps_address)}]
    return policy


def dumps(policy: Policy) -> str:
    """Deterministic JSON text for a policy file."""
    return json.dumps(policy, indent=4, ensure_ascii=False) + "\n"
