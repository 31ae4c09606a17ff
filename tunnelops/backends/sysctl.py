"""IPv4 forwarding on the VPS: on now, and persisted for the next boot."""

from __future__ import annotations

from tunnelops.changes import CommandChange, FileChange, StepPlan
from tunnelops.render.sysctl import forwarding_conf
from tunnelops.steps.context import Ctx

PATH = "/etc/sysctl.d/90-tunnelops.conf"


def plan(ctx: Ctx) -> StepPlan:
    p = StepPlan("forwarding")
    want, old = forwarding_conf(), ctx.facts.file(PATH)
    if old is None or old.content != want:
        p.changes.append(FileChange(PATH, want, old.content if old else None))
    if ctx.facts.ip_forward != "1":
        p.changes.append(CommandChange("enable IPv4 forwarding now",
                                       "sysctl -q -w net.ipv4.ip_forward=1",
                                       "+ net.ipv4.ip_forward = 1"))
    return p
