"""The VPS's /etc/network/interfaces.d/wg0 stanza for ifupdown-ng (the seed's Alpine setup).

ifupdown-ng's wireguard executor creates the link and loads /etc/wireguard/wg0.conf with
`wg setconf` (see render.wireguard.vps_setconf); the address and MTU live here because
`wg setconf` does not accept them.

No `requires WAN` (the seed had `requires eth0`): ifupdown-ng's dependency solver takes a
required interface down with its dependent, and before 0.12 an `ifdown wg0` could take eth0
down with it when eth0 was not marked explicitly configured in its state -- on a VPS, a
lock-out. The VPS end only listens (its peer has no endpoint), so it needs nothing from the
WAN to come up; and the `source-directory` line that brings this stanza in comes after the
WAN's own stanza, so at boot wg0 is still configured after it.
"""

from __future__ import annotations

from tunnelops.model.tunnel import Tunnel

MANAGED = "# Managed by tunnelops: local edits are overwritten."


def wg_stanza(t: Tunnel) -> str:
    lines = [
        MANAGED,
        "# The address carries its prefix: without it the VPS gets no route to the home peer.",
        f"auto {t.interface}",
        f"iface {t.interface} inet static",
        "\tuse wireguard",
        f"\taddress {t.vps_address}/{t.prefixlen}",
    ]
    if t.mtu is not None:
        lines.append(f"\tmtu {t.mtu}")
    return "\n".join(lines) + "\n"
