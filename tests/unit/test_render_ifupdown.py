"""The VPS's ifupdown-ng stanza and sysctl drop-in."""

from __future__ import annotations

from tunnelops.model.tunnel import Tunnel
from tunnelops.render import ifupdown, sysctl


def test_wg_stanza_seed() -> None:
    assert ifupdown.wg_stanza(Tunnel()) == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "# The address carries its prefix: without it the VPS gets no route to the home peer.\n"
        "auto wg0\n"
        "iface wg0 inet static\n"
        "\tuse wireguard\n"
        "\taddress 192.168.2.1/24\n"
    )


def test_wg_stanza_custom_with_mtu() -> None:
    t = Tunnel(interface="wgt", subnet="10.9.8.0/29", vps_address="10.9.8.5",  # type: ignore[arg-type]
               home_address="10.9.8.6", mtu=1380)  # type: ignore[arg-type]
    assert ifupdown.wg_stanza(t) == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "# The address carries its prefix: without it the VPS gets no route to the home peer.\n"
        "auto wgt\n"
        "iface wgt inet static\n"
        "\tuse wireguard\n"
        "\taddress 10.9.8.5/29\n"
        "\tmtu 1380\n"
    )


def test_wg_stanza_never_requires_the_wan() -> None:
    """`requires eth0` lets `ifdown wg0` take the VPS's WAN down with it (ifupdown-ng < 0.12
    when eth0 is not marked explicitly configured): a lock-out. No dependency on any
    interface at all."""
    assert not [line for line in ifupdown.wg_stanza(Tunnel()).splitlines()
                if line.strip().startswith(("requires", "inherit", "link"))]


def test_forwarding_conf() -> None:
    assert sysctl.forwarding_conf() == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "# Forward packets between the WAN and the WireGuard tunnel (DNAT to the home server,\n"
        "# and the home server's egress through the VPS).\n"
        "net.ipv4.ip_forward = 1\n"
    )
