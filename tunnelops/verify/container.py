"""Link 7: each service's container at home: running, created with a network whose egress
leaves through the tunnel, and publishing exactly the inventory's ports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tunnelops.backends.podman import created_network, published
from tunnelops.model.service import Service
from tunnelops.model.site import Site
from tunnelops.probes import Containers
from tunnelops.probes.podman import find
from tunnelops.verify.check import Check, Ctx, Outcome, State, skip


def container_network(info: dict, name: str) -> str:
    """The --network value the container was created with (options included), else its
    network mode."""
    return created_network(info["created"].get(name) or []) or info["networks"].get(name, "")


def outbound_ok(network: str, site: Site) -> bool:
    """Does this --network make the container's egress leave through the tunnel?"""
    t = site.tunnel
    kind, _, opts = network.partition(":")
    if kind == "slirp4netns":
        values = dict(o.split("=", 1) for o in opts.split(",") if "=" in o)
        return values.get("outbound_addr") in (t.interface, str(t.home_address))
    if kind == "pasta":
        args = [a for o in opts.split(",") for a in o.split("=", 1)]
        for i, a in enumerate(args[:-1]):
            if a in ("--outbound", "-o") and args[i + 1] == str(t.home_address):
                return True
            if a in ("--outbound-if4", "--outbound-if") and args[i + 1] == t.interface:
                return True
    return False


def _ports(ports: Iterable[tuple[str, int, int]]) -> str:
    return ", ".join(f"{h}->{c}/{p}" for p, h, c in sorted(ports, key=lambda x: (x[1], x[0])))


@dataclass(frozen=True)
class _ContainerCheck(Check):
    service: Service

    def needs(self, ctx: Ctx) -> dict:
        return {"home": (Containers(self.service.user),)}

    def info(self, s: State) -> tuple[dict, dict | None]:
        info = s.read("home", Containers(self.service.user))
        return info, find(info, self.service.container_name)


@dataclass(frozen=True)
class Running(_ContainerCheck):
    @property
    def id(self) -> str:
        return f"container.{self.service.name}.running"

    def name(self, s: State) -> str:
        return f"{self.service.container_name} running"

    def evaluate(self, s: State) -> Outcome:
        svc, (info, c) = self.service, self.info(s)
        if c is None and not info["user"]:
            return Outcome(False, f"user {svc.user} does not exist at home",
                           "re-run `inv bootstrap`: it creates the user and the container")
        if c is None:
            return Outcome(False, f"no container {svc.container_name} for user {svc.user}",
                           "re-run `inv bootstrap`: it creates the service's container")
        state = c.get("State", "?")
        running = state == "running"
        return Outcome(running, state + (f", pid {c.get('Pid')}, user {svc.user}" if running
                                         else f", exit code {c.get('ExitCode', '?')}"),
                       f"re-run `inv bootstrap` (or as {svc.user}: `podman start "
                       f"{svc.container_name}`)")


@dataclass(frozen=True)
class Network(_ContainerCheck):
    @property
    def id(self) -> str:
        return f"container.{self.service.name}.network"

    def name(self, s: State) -> str:
        return f"{self.service.container_name} network: egress via {s.site.tunnel.interface}"

    def evaluate(self, s: State) -> Outcome:
        t, (info, c) = s.site.tunnel, self.info(s)
        if c is None:
            return skip("not checked: no container")
        net = container_network(info, self.service.container_name)
        ok = outbound_ok(net, s.site)
        want = f"slirp4netns:outbound_addr={t.interface} or pasta:--outbound,{t.home_address}"
        return Outcome(ok, net if ok or not net else
                       f"{net} (no outbound setting: egress takes home's default route)",
                       f"its traffic leaves through home's router, not the VPS: it needs "
                       f"--network {want}; re-run `inv bootstrap` (it recreates the container)")


@dataclass(frozen=True)
class Ports(_ContainerCheck):
    @property
    def id(self) -> str:
        return f"container.{self.service.name}.ports"

    def name(self, s: State) -> str:
        return f"{self.service.container_name} published ports = inventory"

    def evaluate(self, s: State) -> Outcome:
        _, c = self.info(s)
        if c is None:
            return skip("not checked: no container")
        have = published(c)
        want = {(p.proto, n, n) for p in self.service.ports for n in range(p.first, p.last + 1)}
        missing, extra = want - have, have - want
        return Outcome(not missing and not extra,
                       _ports(have) or "none" if not (missing or extra) else
                       "; ".join(x for x in (f"missing {_ports(missing)}" if missing else "",
                                             f"extra {_ports(extra)}" if extra else "") if x),
                       "re-run `inv bootstrap` (it recreates the container with one -p per "
                       "inventory port)")


def checks(ctx: Ctx) -> list[Check]:
    return [c for svc in ctx.site.services for c in (Running(svc), Network(svc), Ports(svc))]
