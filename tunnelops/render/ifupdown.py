"""The VPS's /etc/network/interfaces.d/wg0 stanza for ifupdown-ng (the seed's Alpine setup).

ifupdown-ng's wireguard executor creates the link and loads /etc/wireguard/wg0.conf with
`wg setconf` (see render.wireguard.vps_setconf); the address and MTU live here because
`wg setconf` does not accept them.
"""

from __future__ import annotations

from tunnelops.model import Tunnel

MANAGED = "# Managed by tunnelops: local edits are overwritten."


def wg_stanza(t: Tunnel, wan_iface: str) -> str:
    lines = [
        MANAGED,
        "# The address carries its prefix: without it the VPS gets no route to the home peer.",
        f"auto {t.interface}",
        f"iface {t.interface} inet static",
        f"\trequires {wan_iface}",
        "\tuse wireguard",
        f"\taddress {t.vps_address}/{t.prefixlen}",
    ]
    if t.mtu is not None:
        lines.append(f"\tmtu {t.mtu}")
    return "\n".join(lines) + "\n"
