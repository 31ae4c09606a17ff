"""Link 3: traffic through the tunnel, each way, and its MTU.

The largest packet that passes with do-not-fragment, both ways, must equal wg0's MTU, and
wg0's MTU plus WireGuard's overhead (60 bytes over IPv4) must fit the path to the VPS
(measured from home the same way): otherwise large packets are fragmented outside the tunnel
or lost where fragments or ICMP are filtered.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunnelops.probes import Addrs, PathMtu, Ping, WgDump
from tunnelops.verify import wireguard
from tunnelops.verify.check import Check, Ctx, Outcome, State, skip

WG_OVERHEAD = {4: 60, 6: 80}  # outer IP + UDP 8 + WireGuard 32


def peer_address(ctx: Ctx, host: str) -> str:
    t = ctx.site.tunnel
    return str(t.vps_address if host == "home" else t.home_address)


def tunnel_mtu(ctx: Ctx, host: str) -> PathMtu:
    return PathMtu(peer_address(ctx, host), via=ctx.site.tunnel.interface)


def underlay(ctx: Ctx) -> PathMtu | None:
    """Home's path to the VPS's public address, outside the tunnel."""
    ip = ctx.site.vps.public_ip
    return PathMtu(str(ip)) if ip else None


@dataclass(frozen=True)
class TunnelPing(Check):
    host: str

    @property
    def id(self) -> str:
        return f"tunnel.ping.{self.host}"

    def name(self, s: State) -> str:
        other = "VPS" if self.host == "home" else "home"
        return f"ping {self.host} → {other} ({peer_address(s.ctx, self.host)}) in the tunnel"

    def needs(self, ctx: Ctx) -> dict:
        return {self.host: (Ping(peer_address(ctx, self.host)),)}

    def depends(self, ctx: Ctx) -> list[Check]:
        return wireguard.checks(ctx)

    def evaluate(self, s: State) -> Outcome:
        t = s.site.tunnel
        p = s.read(self.host, Ping(peer_address(s.ctx, self.host)))
        got = p.get("received", 0)
        measured = (f"{got}/{p.get('sent', 0)} replies" +
                    (f", {p['rtt_ms']:.1f} ms" if "rtt_ms" in p else "")) if p else "no answer"
        return Outcome(got > 0, measured,
                       f"the tunnel passes no traffic: `wg show` on both ends; on home check "
                       f"the rule `to {t.vps_address} table {t.route_table}`")


@dataclass(frozen=True)
class TunnelMtu(Check):
    id = "tunnel.mtu"

    def name(self, s: State) -> str:
        return f"tunnel path MTU (DF, both ways) vs {s.site.tunnel.interface} MTU"

    def needs(self, ctx: Ctx) -> dict:
        i = ctx.site.tunnel.interface
        under = underlay(ctx)
        return {"vps": (WgDump(i), Addrs(), tunnel_mtu(ctx, "vps")),
                "home": (WgDump(i), Addrs(), tunnel_mtu(ctx, "home"),
                         *([under] if under else []))}

    def depends(self, ctx: Ctx) -> list[Check]:
        return wireguard.checks(ctx)

    def evaluate(self, s: State) -> Outcome:
        t = s.site.tunnel
        if not (wireguard.is_up(s, "vps") and wireguard.is_up(s, "home")):
            return skip(f"not checked: {t.interface} is not up on both ends")
        home = s.read("home", tunnel_mtu(s.ctx, "home")) or {"mtu": 0, "pmtu": None}
        vps = s.read("vps", tunnel_mtu(s.ctx, "vps")) or {"mtu": 0, "pmtu": None}
        if home["pmtu"] is None or vps["pmtu"] is None:
            return skip("not measured: `ping -M do` is missing (install iputils' ping)")
        measured = (f"MTU {home['mtu']}/{vps['mtu']} (home/vps); passes {home['pmtu']} "
                    f"home→vps, {vps['pmtu']} vps→home")
        if home["pmtu"] == 0 or vps["pmtu"] == 0:
            return Outcome(False, measured, "no packet passes the tunnel: see the ping rows")
        biggest = max(home["mtu"], vps["mtu"])
        under = underlay(s.ctx)
        path = (s.read("home", under) if under else None) or {}
        if path.get("pmtu"):
            overhead = WG_OVERHEAD[4]
            measured += f"; path {path['pmtu']}, needs {biggest + overhead}"
            if biggest + overhead > path["pmtu"]:
                fit = path["pmtu"] - overhead
                return Outcome(False, measured, (
                    f"{t.interface}'s MTU {biggest} is larger than the path allows "
                    f"({path['pmtu']} − {overhead} bytes of WireGuard = {fit}): set [tunnel] "
                    f"mtu = {fit} (or lower) in the inventory and re-run `inv bootstrap`"))
        elif s.site.vps.public_ip:
            measured += f"; path not measured (no ping reply from {s.site.vps.public_ip})"
        if home["pmtu"] < home["mtu"] or vps["pmtu"] < vps["mtu"]:
            fit = min(home["pmtu"], vps["pmtu"])
            return Outcome(False, measured, (
                f"packets between {fit + 1} and {biggest} bytes are lost in the tunnel: set "
                f"[tunnel] mtu = {fit} in the inventory and re-run `inv bootstrap`"))
        return Outcome(True, measured)


def checks(ctx: Ctx) -> list[Check]:
    return [TunnelPing("home"), TunnelPing("vps"), TunnelMtu()]
