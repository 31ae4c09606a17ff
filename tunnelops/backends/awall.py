"""awall on an Alpine VPS, in the seed's structure: base.json, optional/ssh.json,
optional/wireguard.json and one optional/<service>.json per service; enabled, activated
under our dead man's switch, and restored at boot by the iptables and ipset services.

Activation is `awall activate --force`: awall's own confirm-or-rollback waits for Return on
the terminal of the session that activated, which proves nothing about NEW connections and
would read our script (it travels on stdin). Our guard does what awall's fallback does --
and a new connection proves it -- and restores everything activation changes: /etc/awall,
the live iptables/ip6tables/ipset state, and the files activation saved for the next boot
(/etc/iptables, /etc/ipset.d), so a restored lock-out does not come back at a reboot.

Drift: after each activation the host records the live rules (`iptables-save`, without
counters); live rules that no longer match the record (flushed, edited by hand) are
activated again."""

from __future__ import annotations

import shlex

from tunnelops.changes import CommandChange, FileChange, Guard, RemoveFile, StepPlan
from tunnelops.facts import HostFacts
from tunnelops.model import Service
from tunnelops.probes import AWALL_APPLIED, AWALL_LIVE
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
APPLIED, LIVE = AWALL_APPLIED, AWALL_LIVE
BOOT_DIRS = ("/etc/iptables", "/etc/ipset.d")  # what `awall activate` saves for the next boot


def guard(seconds: int) -> Guard:
    keep = "; ".join(f"[ ! -d {d} ] || cp -a {d} {ROLLBACK}/" for d in BOOT_DIRS)
    put_back = "; ".join(f"rm -rf {d}; [ ! -d {ROLLBACK}/{d.rsplit('/', 1)[1]} ] || "
                         f"cp -a {ROLLBACK}/{d.rsplit('/', 1)[1]} {d}" for d in BOOT_DIRS)
    return Guard(
        snapshot=f"{PRIME}; rm -rf {ROLLBACK}; mkdir -p {ROLLBACK}; "
                 f"cp -a /etc/awall {ROLLBACK}/; {keep}; "
                 f"iptables-save > {ROLLBACK}/iptables; "
                 f"ip6tables-save > {ROLLBACK}/ip6tables 2>/dev/null || :; "
                 f"ipset save > {ROLLBACK}/ipset 2>/dev/null || :",
        restore=f"rm -rf /etc/awall; cp -a {ROLLBACK}/awall /etc/awall; {put_back}; "
                f"ipset restore -exist < {ROLLBACK}/ipset 2>/dev/null; "
                f"iptables-restore < {ROLLBACK}/iptables; "
                f"[ -s {ROLLBACK}/ip6tables ] && ip6tables-restore < {ROLLBACK}/ip6tables; "
                f"rm -f {APPLIED}",
        seconds=seconds)


def live_drifted(f: HostFacts) -> bool:
    """The live rules differ from what the last activation recorded (no record: unknown,
    e.g. activated by an older tunnelops or by hand: activate once to have one)."""
    return f.awall_applied.strip() != f.awall_live.strip()


def _record() -> str:
    return f"mkdir -p /var/lib/tunnelops; {LIVE} > {APPLIED}"


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
    if not p.changes and live_drifted(f):
        p.changes.append(CommandChange("awall activate (the live rules drifted)",
                                       f"awall activate --force\n{_record()}"))
    elif p.changes:
        p.changes.append(CommandChange("awall activate", f"awall activate --force\n{_record()}"))
    if p.changes:
        p.post.append("rc-update add iptables >/dev/null 2>&1 || true; "
                      "rc-update add ip6tables >/dev/null 2>&1 || true; "
                      "rc-update add ipset >/dev/null 2>&1 || true")
        p.guard = guard(ctx.guard_seconds)
    return p
