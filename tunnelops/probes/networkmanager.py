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
        # the profile first: NetworkManager answering with it runs (one nmcli, ~0.3 s under
        # emulation, where asking its general status first was two); without it, its status
        return (f"command -v nmcli >/dev/null && {{ v=$(nmcli -g {','.join(NM_PROPS)} "
                f"connection show {n}) && printf 'running\\n%s\\n' \"$v\" || "
                "nmcli -t -f RUNNING general status; }; echo @peers; "
                f"f={KEYFILES}/{n}.nmconnection; [ -f \"$f\" ] && "
                # its peers' lines, by the shell (grep: a program); never the private key
                "while IFS= read -r l || [ -n \"$l\" ]; do case $l in '[wireguard-peer'*|"
                "endpoint=*|allowed-ips=*|persistent-keepalive=*) printf '%s\\n' \"$l\";; "
                "esac; done < \"$f\"")

    def parse(self, text: str) -> NmState:
        head, _, peers = text.partition("@peers")
        vals = head.strip("\n").splitlines()
        return {"running": bool(vals) and vals[0] == "running",
                "exists": len(vals) > 1 and vals[1] == "wireguard",
                "values": dict(zip(NM_PROPS, vals[1:], strict=False)),
                "peers": peers.strip("\n")}
