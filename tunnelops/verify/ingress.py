"""Link 8: a player's traffic, for real: the laptop connects to (TCP) or sends datagrams to
(UDP) the VPS's public address on each service port; UDP is confirmed by home's counters on
its tunnel interface, before and after its firewall (laptop.py has the criteria)."""

from __future__ import annotations

from dataclasses import dataclass

from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.probes import UdpCounters
from tunnelops.verify import container, home_firewall, routing, tunnel, vps_firewall, wireguard
from tunnelops.verify.check import Check, Ctx, Outcome, State, skip
from tunnelops.verify.laptop import TcpConnect, TcpResult, UdpSend

SYMPTOMS = {
    "timeout": "no answer: the VPS drops it (DNAT/filter) or the tunnel is down",
    "refused": "refused: nothing listens at home on this port (is the container running and "
               "publishing it?)",
    "unreachable": "rejected: home's firewall (or the VPS) refuses it",
    "closed": "accepted then closed at once: nothing listens inside the container",
}


def udp_counters(ctx: Ctx) -> UdpCounters:
    specs = tuple(p for s in ctx.site.services for p in s.ports if p.proto == "udp")
    return UdpCounters(ctx.site.tunnel.interface, specs, ctx.probe_table)


@dataclass(frozen=True)
class Ingress(Check):
    service: Service
    spec: PortSpec
    tolerates = ("home",)  # what was sent is said even when home cannot confirm it

    @property
    def id(self) -> str:
        return f"ingress.{self.spec}"

    def name(self, s: State) -> str:
        where = f"{s.vps_ip}:{self.spec.nft}/{self.spec.proto}" if s.vps_ip else \
            f"VPS:{self.spec}"
        return (f"ingress laptop → {where} → container" if self.spec.proto == "tcp" else
                f"ingress laptop → {where} → home {s.site.tunnel.interface}")

    def needs(self, ctx: Ctx) -> dict:
        if self.spec.proto == "tcp":
            return {"laptop": (TcpConnect(self.spec),)}
        return {"laptop": (UdpSend(self.spec),), "home": (udp_counters(ctx),)}

    def depends(self, ctx: Ctx) -> list[Check]:
        return [*wireguard.checks(ctx), *tunnel.checks(ctx)[:2], routing.Rule("to"),
                *vps_firewall.checks(ctx), home_firewall.Opens(self.service, self.spec),
                container.Running(self.service), container.Ports(self.service)]

    def evaluate(self, s: State) -> Outcome:
        if not s.vps_ip:
            return skip("not checked: the VPS public address is unknown (run `inv bootstrap`, "
                        "it records [vps] public_ip)")
        return self._tcp(s) if self.spec.proto == "tcp" else self._udp(s)

    def _tcp(self, s: State) -> Outcome:
        results: list[TcpResult] = s.laptop.tcp.get(str(self.spec), [])
        good = [x for x in results if x.outcome in ("greeted", "open")]
        ok = bool(results) and len(good) == len(results)
        bad = next((x for x in results if x.outcome not in ("greeted", "open")), None)
        if ok:
            shown = next((x for x in results if x.outcome == "greeted"), results[0])
            measured = (f"{len(results)} port(s): " if len(results) > 1 else "") + (
                f"accepted, service says {shown.detail!r}" if shown.outcome == "greeted"
                else "accepted and held open (the service waits for the client)")
        else:
            measured = f"port {bad.port}: {bad.outcome}" + (
                f" ({bad.detail})" if bad.detail else "") if bad else "not probed"
        return Outcome(ok, measured, SYMPTOMS.get(bad.outcome if bad else "", measured))

    def _udp(self, s: State) -> Outcome:
        spec, wg = self.spec, s.site.tunnel.interface
        sent = s.laptop.udp_sent.get(str(spec), 0)
        reply = s.laptop.udp_replies.get(str(spec))
        if not s.reached("home"):
            return skip(f"sent {sent} datagram(s); not confirmed: no SSH to home")
        counted = s.read("home", udp_counters(s.ctx))
        counts = counted["counts"].get(str(spec))
        if counts is None:
            err = counted["error"] or s.laptop.udp_error or "no counter"
            return Outcome(False, f"sent {sent}; arrival not measured ({err})",
                           "home needs nft for this probe (the nftables package)")
        pre, inp = counts.get("pre", 0), counts.get("in", 0)
        measured = (f"{sent} sent, {pre} on home {wg}, {inp} past its firewall"
                    + (f"; reply {reply!r}" if reply else "; no reply (not required)"))
        if pre and inp:
            return Outcome(True, measured)
        if pre:
            return Outcome(False, measured,
                           f"home's firewall drops {spec} although the home firewall row finds "
                           f"it open: another rule drops it (look at `nft list ruleset` at "
                           f"home); bootstrap only manages the port in {wg}'s zone")
        return Outcome(False, measured, f"nothing reached home: check the VPS's DNAT/filter "
                                        f"for {spec} and the tunnel")


def checks(ctx: Ctx) -> list[Check]:
    return [Ingress(svc, spec) for svc in ctx.site.services for spec in svc.ports]
