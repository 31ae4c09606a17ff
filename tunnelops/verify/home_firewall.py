"""Link 6: home's firewall lets each service port in from the tunnel: firewalld's zone of
the tunnel interface while firewalld runs, else the nft ruleset, followed rule by rule."""

from __future__ import annotations

from dataclasses import dataclass

from tunnelops import netfilter
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.naming import Names
from tunnelops.netfilter import Pkt
from tunnelops.probes import FirewalldZones, NftRuleset
from tunnelops.verify.check import Check, Ctx, Outcome, State
from tunnelops.verify.vps_firewall import port_in, zone


@dataclass(frozen=True)
class Opens(Check):
    service: Service
    spec: PortSpec

    @property
    def id(self) -> str:
        return f"home.port.{self.spec}"

    def name(self, s: State) -> str:
        return f"home firewall opens {self.spec} on {s.site.tunnel.interface}"

    def needs(self, ctx: Ctx) -> dict:
        return {"home": (FirewalldZones("runtime"), NftRuleset())}

    def evaluate(self, s: State) -> Outcome:
        wg, spec = s.site.tunnel.interface, self.spec
        ports = [spec.first, spec.last] if spec.is_range else [spec.first]
        fw = s.read("home", FirewalldZones("runtime"))
        if fw.get("running"):
            z = zone(fw.get("zones", {}), wg, fw.get("default", "public"))
            info = fw.get("zones", {}).get(z, {})
            target = (info.get("target") or ["default"])[0]
            ok = target.upper() == "ACCEPT" or all(port_in(info.get("ports", []), spec.proto, p)
                                                   for p in ports)
            opened = " ".join(info.get("ports", [])) or "none"
            return Outcome(ok, f"firewalld zone {z}: " + ("open" if ok else
                                                         f"closed (open: {opened})"),
                           f"open it: `firewall-cmd --zone={z} --add-port={spec}` and the "
                           "same with --permanent, or re-run `inv bootstrap`")
        rs = netfilter.read(s.read("home", NftRuleset()))
        results = [netfilter.verdict(rs, "input", Pkt(
            iif=wg, proto=spec.proto, dport=p, daddr=str(s.site.tunnel.home_address)))
            for p in ports]
        ok = all(x[0] for x in results)
        return Outcome(ok, "nftables: " + ("accepted" if ok else f"dropped by {results[0][1]}"),
                       f"re-run `inv bootstrap` (it restores home's table "
                       f"{Names(s.site.tunnel.interface).nft_family_table} and the ports in "
                       "its sets)")


def checks(ctx: Ctx) -> list[Check]:
    return [Opens(svc, spec) for svc in ctx.site.services for spec in svc.ports]
