"""WireGuard files, compared in full."""

from __future__ import annotations

import base64
from ipaddress import IPv4Address

import pytest

from tunnelops.model.tunnel import PRIVATE_KEY_PLACEHOLDER, Tunnel
from tunnelops.render import wireguard

VPS_PUB = base64.b64encode(bytes(range(32))).decode()
HOME_PUB = base64.b64encode(bytes(range(32, 64))).decode()
VOICE_PUB = base64.b64encode(bytes(range(64, 96))).decode()
CUSTOM = Tunnel(interface="wgt", subnet="10.9.8.0/29", vps_address="10.9.8.5",  # type: ignore[arg-type]
                home_address="10.9.8.6", listen_port=51999, keepalive=15,  # type: ignore[arg-type]
                route_table=7000, rule_priority=2000, mtu=1380)


def test_vps_wg_quick_seed() -> None:
    assert wireguard.vps_wg_quick(Tunnel(), HOME_PUB) == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "[Interface]\n"
        "Address = 192.168.2.1/24\n"
        "ListenPort = 51821\n"
        "PrivateKey = @TUNNELOPS_PRIVATE_KEY@\n"
        "\n"
        "[Peer]\n"
        "# home home\n"
        f"PublicKey = {HOME_PUB}\n"
        "AllowedIPs = 192.168.2.2/32\n"
    )


def test_vps_wg_quick_has_a_peer_per_home() -> None:
    """The star's centre: each home's key with its own address; a home whose key is not
    known yet (a dry run before it made one) has no section yet."""
    peers = [wireguard.Peer("home", HOME_PUB, IPv4Address("192.168.2.2")),
             wireguard.Peer("voice", VOICE_PUB, IPv4Address("192.168.2.3"))]
    assert wireguard.vps_wg_quick(Tunnel(), peers) == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "[Interface]\n"
        "Address = 192.168.2.1/24\n"
        "ListenPort = 51821\n"
        "PrivateKey = @TUNNELOPS_PRIVATE_KEY@\n"
        "\n"
        "[Peer]\n"
        "# home home\n"
        f"PublicKey = {HOME_PUB}\n"
        "AllowedIPs = 192.168.2.2/32\n"
        "\n"
        "[Peer]\n"
        "# home voice\n"
        f"PublicKey = {VOICE_PUB}\n"
        "AllowedIPs = 192.168.2.3/32\n"
    )
    assert wireguard.parse_wg_conf(wireguard.vps_setconf(Tunnel(), peers))["Peer 2"] == [
        ("PublicKey", VOICE_PUB), ("AllowedIPs", "192.168.2.3/32")]


def test_vps_wg_quick_custom_without_peer() -> None:
    assert wireguard.vps_wg_quick(CUSTOM, None) == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "[Interface]\n"
        "Address = 10.9.8.5/29\n"
        "ListenPort = 51999\n"
        "PrivateKey = @TUNNELOPS_PRIVATE_KEY@\n"
        "MTU = 1380\n"
    )


def test_vps_setconf() -> None:
    # No Address/MTU: `wg setconf` rejects wg-quick-only keys, even with an MTU set.
    assert wireguard.vps_setconf(CUSTOM, HOME_PUB) == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "[Interface]\n"
        "PrivateKey = @TUNNELOPS_PRIVATE_KEY@\n"
        "ListenPort = 51999\n"
        "\n"
        "[Peer]\n"
        "# home home\n"
        f"PublicKey = {HOME_PUB}\n"
        "AllowedIPs = 10.9.8.6/32\n"
    )
    assert wireguard.vps_setconf(Tunnel(), None) == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "[Interface]\n"
        "PrivateKey = @TUNNELOPS_PRIVATE_KEY@\n"
        "ListenPort = 51821\n"
    )


def test_home_wg_quick_seed() -> None:
    assert wireguard.home_wg_quick(Tunnel(), VPS_PUB, "203.0.113.7") == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "[Interface]\n"
        "Address = 192.168.2.2/24\n"
        "PrivateKey = @TUNNELOPS_PRIVATE_KEY@\n"
        "Table = 201\n"
        "PostUp = ip -4 rule add from 192.168.2.2/32 table 201 priority 100; "
        "ip -4 rule add to 192.168.2.1/32 table 201 priority 101\n"
        "PreDown = ip -4 rule del from 192.168.2.2/32 table 201 priority 100; "
        "ip -4 rule del to 192.168.2.1/32 table 201 priority 101\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {VPS_PUB}\n"
        "AllowedIPs = 0.0.0.0/0\n"
        "Endpoint = 203.0.113.7:51821\n"
        "PersistentKeepalive = 25\n"
    )


def test_home_wg_quick_custom() -> None:
    assert wireguard.home_wg_quick(CUSTOM, VPS_PUB, "vps.example.org") == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "[Interface]\n"
        "Address = 10.9.8.6/29\n"
        "PrivateKey = @TUNNELOPS_PRIVATE_KEY@\n"
        "Table = 7000\n"
        "MTU = 1380\n"
        "PostUp = ip -4 rule add from 10.9.8.6/32 table 7000 priority 2000; "
        "ip -4 rule add to 10.9.8.5/32 table 7000 priority 2001\n"
        "PreDown = ip -4 rule del from 10.9.8.6/32 table 7000 priority 2000; "
        "ip -4 rule del to 10.9.8.5/32 table 7000 priority 2001\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {VPS_PUB}\n"
        "AllowedIPs = 0.0.0.0/0\n"
        "Endpoint = vps.example.org:51999\n"
        "PersistentKeepalive = 15\n"
    )


def test_home_import_conf() -> None:
    assert wireguard.home_import_conf(Tunnel(), VPS_PUB, "2001:db8::7") == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "[Interface]\n"
        "Address = 192.168.2.2/24\n"
        "PrivateKey = @TUNNELOPS_PRIVATE_KEY@\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {VPS_PUB}\n"
        "AllowedIPs = 0.0.0.0/0\n"
        "Endpoint = [2001:db8::7]:51821\n"
        "PersistentKeepalive = 25\n"
    )
    with_mtu = wireguard.home_import_conf(CUSTOM, VPS_PUB, "203.0.113.7")
    assert "MTU = 1380\n\n[Peer]" in with_mtu
    assert "Table" not in with_mtu and "PostUp" not in with_mtu


def test_no_private_key_ever_rendered() -> None:
    for text in (wireguard.vps_wg_quick(CUSTOM, HOME_PUB), wireguard.vps_setconf(CUSTOM, None),
                 wireguard.home_wg_quick(CUSTOM, VPS_PUB, "h"),
                 wireguard.home_import_conf(CUSTOM, VPS_PUB, "h")):
        keys = [v for pairs in wireguard.parse_wg_conf(text).values()
                for k, v in pairs if k == "PrivateKey"]
        assert keys == [PRIVATE_KEY_PLACEHOLDER]


def test_parse_wg_conf() -> None:
    text = (
        "# comment\n"
        "[Interface]\n"
        "PrivateKey = abc=  # trailing\n"
        "ListenPort=51821\n"
        "\n"
        "[Peer]\n"
        "PublicKey = one=\n"
        "[Peer]\n"
        "PublicKey = two=\n"
        "AllowedIPs = 10.0.0.2/32, 10.0.0.3/32\n"
    )
    assert wireguard.parse_wg_conf(text) == {
        "Interface": [("PrivateKey", "abc="), ("ListenPort", "51821")],
        "Peer": [("PublicKey", "one=")],
        "Peer 2": [("PublicKey", "two="), ("AllowedIPs", "10.0.0.2/32, 10.0.0.3/32")],
    }
    assert wireguard.parse_wg_conf(wireguard.home_wg_quick(Tunnel(), VPS_PUB, "h"))[
        "Peer"] == [("PublicKey", VPS_PUB), ("AllowedIPs", "0.0.0.0/0"),
                    ("Endpoint", "h:51821"), ("PersistentKeepalive", "25")]


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        (VPS_PUB, True),
        ("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=", True),
        ("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk", False),  # no padding
        ("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBml=", False),  # non-canonical last char
        ("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fB!k=", False),
        ("A" * 43 + "=", True),
        (PRIVATE_KEY_PLACEHOLDER, False),
        ("", False),
        ("é" * 43 + "=", False),
    ],
)
def test_is_valid_key(key: str, valid: bool) -> None:
    assert wireguard.is_valid_key(key) is valid
