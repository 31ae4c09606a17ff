"""A NetworkManager profile: whether NetworkManager runs, the properties tunnelops manages
(one `nmcli -g`), and the peers as the profile's keyfile stores them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from tunnelops.model.tunnel import Tunnel
from tunnelops.probes.base import Probe, q
from tunnelops.render.networkmanager import home_settings

# the NetworkManager properties tunnelops manages, read back with one `nmcli -g`
# (+ connection.zone: `firewall-cmd --permanent --change-interface` of an interface NM manages
# sets the profile's zone instead of writing the interface into the zone's file)
NM_PROPS = ("connection.type", "connection.interface-name", *home_settings(Tunnel()),
            "connection.zone")
KEYFILES = "/etc/NetworkManager/system-connections"


class NmState(TypedDict, total=False):
    running: bool
    exists: bool  # a WireGuard profile of that name (NM also shows wireguard-go's tun)
    values: dict[str, str]
    peers: str  # the keyfile's [wireguard-peer.KEY] sections (no private key in them)


@dataclass(frozen=True)
class NmProfile(Probe[NmState]):
    name: str
    kind = "nm"
    slow = True

    def shell(self) -> str:
        n = q(self.name)
        return ("command -v nmcli >/dev/null && nmcli -t -f RUNNING general status && "
                f"nmcli -g {','.join(NM_PROPS)} connection show {n}; echo @peers; "
                f"f={KEYFILES}/{n}.nmconnection; [ -f \"$f\" ] && grep -E "
                "'^\\[wireguard-peer|^(endpoint|allowed-ips|persistent-keepalive)=' \"$f\"")

    def parse(self, text: str) -> NmState:
        head, _, peers = text.partition("@peers")
        vals = head.strip("\n").splitlines()
        return {"running": bool(vals) and vals[0] == "running",
                "exists": len(vals) > 1 and vals[1] == "wireguard",
                "values": dict(zip(NM_PROPS, vals[1:], strict=False)),
                "peers": peers.strip("\n")}
