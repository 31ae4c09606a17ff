"""Link 9: each container's own traffic to the internet leaves through the VPS: a request
made from inside its network namespace (with the host's client: none is needed in its
image) to a what-is-my-address URL must see the VPS's public address."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tunnelops.model.service import Service
from tunnelops.probes import Containers, Egress
from tunnelops.probes.podman import find
from tunnelops.verify import container, routing, tunnel, wireguard
from tunnelops.verify.check import Check, Ctx, Outcome, State, skip

_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


@dataclass(frozen=True)
class EgressViaVps(Check):
    service: Service

    @property
    def id(self) -> str:
        return f"egress.{self.service.name}"

    def name(self, s: State) -> str:
        return f"egress {self.service.container_name} → internet: address = VPS"

    def probe(self, ctx: Ctx) -> Egress:
        return Egress(self.service.user, self.service.container_name, ctx.whoami_url)

    def needs(self, ctx: Ctx) -> dict:
        return {"home": (self.probe(ctx), Containers(self.service.user))}

    def depends(self, ctx: Ctx) -> list[Check]:
        return [container.Network(self.service), routing.Rule("from"), routing.TableDefault(),
                *wireguard.checks(ctx), *tunnel.checks(ctx)[:2]]

    def evaluate(self, s: State) -> Outcome:
        t, url = s.site.tunnel, s.ctx.whoami_url
        res = s.read("home", self.probe(s.ctx))
        c = find(s.read("home", Containers(self.service.user)), self.service.container_name)
        if res["rc"] == "nopid" or c is None or c.get("State") != "running":
            return skip("not checked: the container is not running")
        found = _IPV4.findall(res["body"])
        seen = found[0] if found else None
        if res["rc"] != "0" or seen is None:
            body = res["body"].strip().splitlines()
            return Outcome(False, f"no answer ({body[-1] if body else 'rc=' + res['rc']})",
                           f"the container's traffic goes nowhere: check the VPS masquerade "
                           f"for {t.subnet} (home egress) and that {url} is reachable")
        ok = seen == s.vps_ip
        return Outcome(ok, f"{url} sees {seen}" + ("" if ok else f", not {s.vps_ip}"),
                       f"its traffic leaves through {seen}, not the tunnel, although its "
                       f"outbound setting, the rule from {t.home_address} → table "
                       f"{t.route_table} and the tunnel all pass: look for another rule or "
                       f"route at home that takes it first (`ip rule`, `ip route get 1.1.1.1 "
                       f"from {t.home_address}`)")


def checks(ctx: Ctx) -> list[Check]:
    return [EgressViaVps(svc) for svc in ctx.site.services]
