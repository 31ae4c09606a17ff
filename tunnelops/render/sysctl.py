"""/etc/sysctl.d/90-tunnelops.conf: the VPS forwards between its WAN and the tunnel.

The seed checked `sysctl net.ipv4.ip_forward`; a drop-in makes it survive reboots.
"""

from __future__ import annotations

MANAGED = "# Managed by tunnelops: local edits are overwritten."


def forwarding_conf() -> str:
    return (
        f"{MANAGED}\n"
        "# Forward packets between the WAN and the WireGuard tunnel (DNAT to the home server,\n"
        "# and the home server's egress through the VPS).\n"
        "net.ipv4.ip_forward = 1\n"
    )
