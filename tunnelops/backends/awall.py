"""awall on an Alpine VPS, in the seed's structure: base.json, optional/ssh.json,
optional/wireguard.json and one optional/<service>.json per service; enabled, activated
under our dead man's switch, and restored at boot by the iptables and ipset services."""

from __future__ import annotations

import shlex

from tunnelops.changes import CommandChange, FileChange, Guard, RemoveFile, StepPlan
from tunnelops.model import Service
from tunnelops.render import awall as render
from tunnelops.steps.context import Ctx

ROLLBACK = "/var/lib/tunnelops/awall.rollback"
# `awall activate --force` refuses ("Firewall not enabled in kernel") while iptables-save lists
# no table, as on a fresh VPS, and leaves a family without tables unfiltered: give each family
# an empty filter table first (what loading iptable_filter did), which changes no filtering.
PRIME = ("for t in iptables ip6tables; do $t-save 2>/dev/null | grep -q '^\\*' || "
         "{ $t -t filter -N tunnelops-init && $t -t filter -X tunnelops-init; } "
         ">/dev/null 2>&1 || :; done")
FIXED = ("ssh", "wireguard")


def files(ctx: Ctx, wan: str, services: tuple[Service, ...]) -> dict[str, str]:
    t = ctx.tunnel
    out = {
        "/etc/awall/base.json": render.dumps(render.base_policy(wan, t)),
        "/etc/awall/optional/ssh.json": render.dumps(render.ssh_policy(
            ctx.site.vps.ssh_port)),
        "/etc/awall/optional/wireguard.json": render.dumps(render.wireguard_policy(t)),
    }
    for svc in services:
        out[f"/etc/awall/optional/{svc.name}.json"] = render.dumps(
            render.service_policy(svc, t, snat=ctx.site.snat))
    return out


def plan(ctx: Ctx, wan: str, services: tuple[Service, ...],
         removed: tuple[str, ...] = ()) -> StepPlan:
    p = StepPlan("firewall")
    f = ctx.facts
    for path, text in files(ctx, wan, services).items():
        old = f.file(path)
        if old is None or old.content != text:
            p.changes.append(FileChange(path, text, old.content if old else None))
    want = [*FIXED, *(s.name for s in services)]
    to_enable = [n for n in want if n not in f.awall_enabled]
    if to_enable:
        p.changes.append(CommandChange(f"awall enable {' '.join(to_enable)}",
                                       "awall enable " + " ".join(map(shlex.quote, to_enable))))
    for name in removed:
        if name in f.awall_enabled:
            p.changes.append(CommandChange(f"awall disable {name}",
                                           f"awall disable {shlex.quote(name)}"))
        old = f.file(f"/etc/awall/optional/{name}.json")
        if old is not None:
            p.changes.append(RemoveFile(old.path, old.content))
    if p.changes:
        p.changes.append(CommandChange("awall activate", "awall activate --force"))
        p.post.append("rc-update add iptables >/dev/null 2>&1 || true; "
                      "rc-update add ip6tables >/dev/null 2>&1 || true; "
                      "rc-update add ipset >/dev/null 2>&1 || true")
        p.guard = Guard(
            snapshot=f"{PRIME}; rm -rf {ROLLBACK}; mkdir -p {ROLLBACK}; "
                     f"cp -a /etc/awall {ROLLBACK}/; iptables-save > {ROLLBACK}/iptables; "
                     f"ip6tables-save > {ROLLBACK}/ip6tables 2>/dev/null || :; "
                     f"ipset save > {ROLLBACK}/ipset 2>/dev/null || :",
            restore=f"rm -rf /etc/awall; cp -a {ROLLBACK}/awall /etc/awall; "
                    f"ipset restore -exist < {ROLLBACK}/ipset 2>/dev/null; "
                    f"iptables-restore < {ROLLBACK}/iptables; "
                    f"[ -s {ROLLBACK}/ip6tables ] && ip6tables-restore < {ROLLBACK}/ip6tables",
            seconds=ctx.guard_seconds)
    return p
