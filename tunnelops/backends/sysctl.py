"""IPv4 forwarding on the VPS: on now, and persisted for the next boot."""

from __future__ import annotations

import shlex

from tunnelops.backends import netguard
from tunnelops.changes import CommandChange, FileChange, StepPlan
from tunnelops.render.sysctl import forwarding_conf
from tunnelops.steps.context import Ctx

PATH = "/etc/sysctl.d/90-tunnelops.conf"
ORIG_FORWARD = "/var/lib/tunnelops/orig-ip_forward"


def plan(ctx: Ctx) -> StepPlan:
    p = StepPlan("forwarding")
    want, old = forwarding_conf(), ctx.facts.file(PATH)
    if old is None or old.content != want:
        p.changes.append(FileChange(PATH, want, old.content if old else None))
    if p.changes or ctx.facts.ip_forward != "1":
        # the runtime value before tunnelops, for teardown
        p.post.append(f"[ -e {ORIG_FORWARD} ] || {{ mkdir -p /var/lib/tunnelops; "
                      f"echo {shlex.quote(ctx.facts.ip_forward or '0')} > {ORIG_FORWARD}; }}")
    if ctx.facts.ip_forward != "1":
        p.changes.append(CommandChange("enable IPv4 forwarding now",
                                       "sysctl -q -w net.ipv4.ip_forward=1",
                                       "+ net.ipv4.ip_forward = 1"))
    if p.changes:
        p.guard = netguard.sysctl(ctx, PATH)
    return p
