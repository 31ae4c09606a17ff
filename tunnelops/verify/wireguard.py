"""Link 2: WireGuard on both ends: the interfaces, each side's key in the other's peer, the
peers' settings, and a recent handshake with traffic both ways."""

from __future__ import annotations

from dataclasses import dataclass

from tunnelops.backends.wglive import uplink_mtu, wanted_mtu
from tunnelops.probes import Addrs, Clock, Exists, Uplink, WgDump
from tunnelops.probes.ip import ipv4, link
from tunnelops.verify.check import Check, Ctx, Outcome, State, ago, short_key, size, skip

HANDSHAKE_MAX_AGE = 180  # WireGuard re-handshakes every 2 minutes while traffic flows


def configs(ctx: Ctx) -> Exists:
    """The tunnel's config files, by backend: which of them exist says which made wg0."""
    i = ctx.site.tunnel.interface
    return Exists((f"/etc/NetworkManager/system-connections/{i}.nmconnection",
                   f"/etc/network/interfaces.d/{i}", f"/etc/wireguard/{i}.conf"))


def dump(s: State, host: str) -> dict:
    return dict(s.read(host, WgDump(s.site.tunnel.interface)))


def wg_link(s: State, host: str) -> dict:
    return link(s.read(host, Addrs()), s.site.tunnel.interface) or {}


def is_up(s: State, host: str) -> bool:
    return bool(dump(s, host)) and "UP" in wg_link(s, host).get("flags", [])


def backend(s: State, host: str) -> str:
    conf = " ".join(s.read(host, configs(s.ctx)))
    if "nmconnection" in conf:
        return "networkmanager"
    return "ifupdown" if "interfaces.d" in conf else "wg-quick"


def first_peer(s: State, host: str) -> dict | None:
    return (dump(s, host).get("peers") or [None])[0]


def vps_peer(s: State) -> dict | None:
    """The VPS's peer for this home (the hub has one per home): the one with home's key,
    else the one at home's address, else (a one-home site) the only one."""
    peers = dump(s, "vps").get("peers") or []
    key = dump(s, "home").get("public_key") if s.reached("home") else None
    want = f"{s.site.tunnel.home_address}/32"
    return (next((p for p in peers if key and p["public_key"] == key), None)
            or next((p for p in peers if want in p["allowed_ips"]), None)
            or (peers[0] if len(peers) == 1 and s.ctx.homes == 1 else None))


def _needs(ctx: Ctx, *extra: object) -> tuple:
    return (WgDump(ctx.site.tunnel.interface), *extra)


@dataclass(frozen=True)
class WgUp(Check):
    host: str

    @property
    def id(self) -> str:
        return f"wg.{self.host}"

    def name(self, s: State) -> str:
        return f"{self.host} {s.site.tunnel.interface} up, address, port"

    def needs(self, ctx: Ctx) -> dict:
        return {self.host: _needs(ctx, Addrs(), Uplink(), configs(ctx))}

    def _up_hint(self, s: State) -> str:
        i = s.site.tunnel.interface
        how = {"networkmanager": f"`nmcli connection up {i}`", "ifupdown": f"`ifup {i}`",
               "wg-quick": f"`wg-quick up {i}`"}[backend(s, self.host)]
        where = "at home" if self.host == "home" else "on the VPS"
        return f"bring it up {where} with {how}, or re-run `inv bootstrap`"

    def evaluate(self, s: State) -> Outcome:
        t, wg, h = s.site.tunnel, dump(s, self.host), self.host
        want_addr = t.vps_address if h == "vps" else t.home_address
        addrs = ipv4(s.read(h, Addrs()), t.interface)
        addr = addrs[0] if addrs else None
        port = wg.get("listen_port", 0)
        mtu = wg_link(s, h).get("mtu")
        kind = backend(s, h)
        # the MTU bootstrap gives wg0: the plan's own rule (backends.wglive.wanted_mtu)
        want_mtu = wanted_mtu(t, kind, uplink_mtu(s.read(h, Uplink()), s.read(h, Addrs())))
        if not wg:
            return Outcome(False, f"{t.interface} does not exist", self._up_hint(s))
        if not is_up(s, h):
            return Outcome(False, f"{t.interface} exists but is down", self._up_hint(s))
        if addr != f"{want_addr}/{t.prefixlen}":
            return Outcome(False, f"address {addr or '(none)'}",
                           f"{t.interface} should have {want_addr}/{t.prefixlen}: re-run "
                           "`inv bootstrap`")
        if h == "vps" and port != t.listen_port:
            return Outcome(False, f"listening on {port or 'no port'}",
                           f"the VPS must listen on {t.listen_port}/udp ([tunnel] listen_port)"
                           ": re-run `inv bootstrap`")
        if want_mtu and mtu and mtu != want_mtu:
            fix = (f"nmcli connection up {t.interface}" if kind == "networkmanager"
                   else f"ip link set dev {t.interface} mtu {want_mtu}")
            return Outcome(False, f"{addr}, MTU {mtu}, not {want_mtu}",
                           f"set it back: `{fix}`, or re-run `inv bootstrap`")
        return Outcome(True, f"{addr}, port {port}{' (dials out)' if h == 'home' else ''}, "
                             f"MTU {mtu or '?'}")


@dataclass(frozen=True)
class Keys(Check):
    id = "wg.keys"

    def name(self, s: State) -> str:
        return "peer keys = the other end's keys"

    def needs(self, ctx: Ctx) -> dict:
        return {"vps": _needs(ctx), "home": _needs(ctx)}

    def evaluate(self, s: State) -> Outcome:
        vps, home = dump(s, "vps"), dump(s, "home")
        if not (vps and home):
            return skip("not checked: WireGuard is not up on both ends")
        vps_peers = [p["public_key"] for p in vps.get("peers", [])]
        home_peers = [p["public_key"] for p in home.get("peers", [])]
        vk, hk = vps.get("public_key"), home.get("public_key")
        bad = []
        if hk not in vps_peers:
            bad.append(f"the VPS's peer is {', '.join(map(short_key, vps_peers)) or 'none'}, "
                       f"not home's key {short_key(hk)}")
        if vk not in home_peers:
            bad.append(f"home's peer is {', '.join(map(short_key, home_peers)) or 'none'}, "
                       f"not the VPS's key {short_key(vk)}")
        return Outcome(not bad, "; ".join(bad) if bad else
                       f"vps has {short_key(hk)}, home has {short_key(vk)}",
                       "re-run `inv bootstrap`: it puts each side's actual public key into "
                       "the other's peer")


@dataclass(frozen=True)
class VpsPeer(Check):
    id = "wg.vps_peer"

    def name(self, s: State) -> str:
        return "vps peer AllowedIPs"

    def needs(self, ctx: Ctx) -> dict:
        return {"vps": _needs(ctx)}

    def evaluate(self, s: State) -> Outcome:
        if not dump(s, "vps"):
            return skip(f"not checked: no {s.site.tunnel.interface} on the VPS")
        peer = vps_peer(s)
        allowed = peer["allowed_ips"] if peer else []
        want = f"{s.site.tunnel.home_address}/32"
        return Outcome(allowed == [want], ", ".join(allowed) or "no peer",
                       f"the VPS peer must allow exactly {want} (AllowedIPs): re-run "
                       "`inv bootstrap`")


@dataclass(frozen=True)
class HomePeer(Check):
    id = "wg.home_peer"

    def name(self, s: State) -> str:
        return "home peer endpoint, AllowedIPs"

    def needs(self, ctx: Ctx) -> dict:
        return {"home": _needs(ctx)}

    def evaluate(self, s: State) -> Outcome:
        t = s.site.tunnel
        if not dump(s, "home"):
            return skip(f"not checked: no {t.interface} at home")
        peer = first_peer(s, "home")
        endpoint = peer.get("endpoint") if peer else None
        allowed = peer["allowed_ips"] if peer else []
        want_ep = f"{s.vps_ip}:{t.listen_port}" if s.vps_ip else None
        problems = []
        if want_ep and endpoint != want_ep:
            problems.append(f"endpoint {endpoint or '(none)'} is not {want_ep}")
        if "0.0.0.0/0" not in allowed:
            problems.append(f"AllowedIPs {', '.join(allowed) or '(none)'} lack 0.0.0.0/0: the "
                            "containers' traffic can't enter the tunnel")
        keepalive = peer.get("keepalive", 0) if peer else 0
        if peer and keepalive != t.keepalive:
            problems.append(f"keepalive {keepalive or 'off'}, not {t.keepalive}: home is behind "
                            "NAT, the VPS cannot reach it once the router forgets the mapping")
        return Outcome(not problems, "; ".join(problems) if problems else
                       f"{endpoint}, {', '.join(allowed)}",
                       "re-run `inv bootstrap` (home's peer: Endpoint = VPS_PUBLIC:"
                       f"{t.listen_port}, AllowedIPs = 0.0.0.0/0, PersistentKeepalive = "
                       f"{t.keepalive})")


@dataclass(frozen=True)
class Handshake(Check):
    id = "wg.handshake"

    def name(self, s: State) -> str:
        return f"handshake < {HANDSHAKE_MAX_AGE // 60} min, traffic both ways"

    def needs(self, ctx: Ctx) -> dict:
        return {"home": _needs(ctx, Clock())}

    def evaluate(self, s: State) -> Outcome:
        t, peer = s.site.tunnel, first_peer(s, "home")
        if peer is None:
            return skip("not checked: home has no peer")
        hs = peer.get("latest_handshake", 0)
        age = s.read("home", Clock()) - hs if hs else None
        rx, tx = peer.get("rx", 0), peer.get("tx", 0)
        traffic = f"home rx {size(rx)}, tx {size(tx)}"
        if age is None:
            return Outcome(False, f"never; {traffic}",
                           "no handshake: check the keys row, that the VPS allows "
                           f"{t.listen_port}/udp and that home can reach "
                           f"{s.vps_ip or 'the VPS'}")
        if age > HANDSHAKE_MAX_AGE:
            return Outcome(False, f"{ago(age)}; {traffic}",
                           f"the tunnel is stale: check the keys row and that {t.listen_port}/"
                           "udp reaches the VPS; `wg show` on both ends")
        return Outcome(rx > 0 and tx > 0, f"{ago(max(age, 0))}; {traffic}",
                       "no traffic one way: check the keys row and the VPS firewall")


def checks(ctx: Ctx) -> list[Check]:
    return [WgUp("vps"), WgUp("home"), Keys(), VpsPeer(), HomePeer(), Handshake()]
