"""WireGuard configuration files for both ends of the tunnel.

- vps_wg_quick: /etc/wireguard/wg0.conf for a VPS run by wg-quick: one [Peer] per home (its
  key, AllowedIPs its tunnel address /32), the star's centre.
- vps_setconf: the seed's /etc/wireguard/wg0.conf for ifupdown-ng, which feeds it to
  `wg setconf`; that parser rejects wg-quick's Address/MTU/Table keys, so they live in
  /etc/network/interfaces.d/wg0 instead (see render.ifupdown).
- home_wg_quick: the home side for wg-quick, with the policy routing the seed set up by hand.
- home_import_conf: the file given to `nmcli connection import type wireguard`; NM ignores
  PostUp and takes routing from properties patched afterwards (see render.networkmanager).

Private keys appear as PRIVATE_KEY_PLACEHOLDER: the host substitutes its own key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from tunnelops.model.hosts import DEFAULT_HOME
from tunnelops.model.tunnel import PRIVATE_KEY_PLACEHOLDER, Tunnel

MANAGED = "# Managed by tunnelops: local edits are overwritten."


def _lines(*sections: list[str]) -> str:
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _mtu(t: Tunnel) -> list[str]:
    return [] if t.mtu is None else [f"MTU = {t.mtu}"]


def _rules(t: Tunnel, verb: str) -> str:
    """The seed's two policy rules: traffic from the home tunnel address (the containers'
    egress and replies) and traffic to the VPS both use the tunnel's table."""
    first, second = t.rule_priorities
    return (f"ip -4 rule {verb} from {t.home_address}/32 table {t.route_table} "
            f"priority {first}; "
            f"ip -4 rule {verb} to {t.vps_address}/32 table {t.route_table} priority {second}")


@dataclass(frozen=True)
class Peer:
    """A home as the VPS's peer."""

    home: str
    public_key: str
    address: IPv4Address


# the homes as the VPS's peers; one key (or None) is the one home at the tunnel's home_address
Peers = Sequence[Peer] | str | None


def hub_peers(t: Tunnel, peers: Peers) -> list[Peer]:
    if isinstance(peers, str):
        return [Peer(DEFAULT_HOME, peers, t.home_address)]
    return [] if peers is None else list(peers)


def _vps_peers(t: Tunnel, peers: Peers) -> list[str]:
    """A [Peer] per home, in the site's order; a home whose key is not known yet (a dry run
    before it has one) has none."""
    out: list[str] = []
    for i, p in enumerate(hub_peers(t, peers)):
        out += ([""] if i else []) + [
            "[Peer]",
            f"# home {p.home}",
            f"PublicKey = {p.public_key}",
            f"AllowedIPs = {p.address}/32",
        ]
    return out


def vps_wg_quick(t: Tunnel, home_public_key: Peers) -> str:
    interface = [
        MANAGED,
        "[Interface]",
        f"Address = {t.vps_address}/{t.prefixlen}",
        f"ListenPort = {t.listen_port}",
        f"PrivateKey = {PRIVATE_KEY_PLACEHOLDER}",
        *_mtu(t),
    ]
    return _lines(interface, _vps_peers(t, home_public_key))


def vps_setconf(t: Tunnel, home_public_key: Peers) -> str:
    interface = [
        MANAGED,
        "[Interface]",
        f"PrivateKey = {PRIVATE_KEY_PLACEHOLDER}",
        f"ListenPort = {t.listen_port}",
    ]
    return _lines(interface, _vps_peers(t, home_public_key))


def _home_peer(t: Tunnel, vps_public_key: str, endpoint_host: str) -> list[str]:
    return [
        "[Peer]",
        f"PublicKey = {vps_public_key}",
        # 0.0.0.0/0, not the VPS's /32: the seed's fix, so the containers' internet traffic
        # may enter the tunnel. Table/rules keep it off the home server's main table.
        "AllowedIPs = 0.0.0.0/0",
        f"Endpoint = {_endpoint(endpoint_host, t.listen_port)}",
        f"PersistentKeepalive = {t.keepalive}",
    ]


def home_wg_quick(t: Tunnel, vps_public_key: str, endpoint_host: str) -> str:
    interface = [
        MANAGED,
        "[Interface]",
        f"Address = {t.home_address}/{t.prefixlen}",
        f"PrivateKey = {PRIVATE_KEY_PLACEHOLDER}",
        f"Table = {t.route_table}",
        *_mtu(t),
        f"PostUp = {_rules(t, 'add')}",
        f"PreDown = {_rules(t, 'del')}",
    ]
    return _lines(interface, _home_peer(t, vps_public_key, endpoint_host))


def home_import_conf(t: Tunnel, vps_public_key: str, endpoint_host: str) -> str:
    interface = [
        MANAGED,
        "[Interface]",
        f"Address = {t.home_address}/{t.prefixlen}",
        f"PrivateKey = {PRIVATE_KEY_PLACEHOLDER}",
        *_mtu(t),
    ]
    return _lines(interface, _home_peer(t, vps_public_key, endpoint_host))


def parse_wg_conf(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a wg/wg-quick file -> their (key, value) pairs, comments dropped.
    A repeated section gets a number: "Peer", "Peer 2", ... Lines before any section
    are under ""."""
    result: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1].strip()
            current, number = name, 1
            while current in result:
                number += 1
                current = f"{name} {number}"
            result[current] = []
            continue
        key, _, value = line.partition("=")
        result.setdefault(current, []).append((key.strip(), value.strip()))
    return result


def is_valid_key(s: str) -> bool:
    """A WireGuard key: canonical base64 of 32 bytes (44 characters ending in '=')."""
    if not isinstance(s, str) or len(s) != 44 or not s.endswith("=") or not s.isascii():
        return False
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return False
    # wg rejects keys whose unused low bits are set; canonical means they round-trip.
    return len(raw) == 32 and base64.b64encode(raw).decode() == s
