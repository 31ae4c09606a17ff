"""awall on an Alpine VPS, in the seed's structure, named for the site (tunnelops.naming):
optional/tunnelops-wg0-base.json, -ssh.json, -wireguard.json and one -service-NAME.json per
service; enabled, activated under our dead man's switch, and restored at boot by the iptables
and ipset services. The older tunnelops' fixed names (base.json, optional/ssh.json,
wireguard.json, NAME.json) are disabled and removed in the same activation when the site was
the host's one site (`legacy`).

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
from tunnelops.model.service import Service
from tunnelops.naming import LEGACY
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


def policies(ctx: Ctx, wan: str, services: tuple[Service, ...]) -> dict[str, str]:
    """The site's policies: name -> the text of its file."""
    t, n, site = ctx.tunnel, ctx.names, ctx.site
    out = {
        n.awall_base: render.dumps(render.base_policy(wan, t, site.name)),
        n.awall_ssh: render.dumps(render.ssh_policy(t, site.vps.ssh_port)),
        n.awall_wireguard: render.dumps(render.wireguard_policy(t)),
    }
    for svc in services:
        out[n.awall_service(svc.name)] = render.dumps(render.service_policy(
            svc, t, snat=site.snat, address=site.address(svc.home or site.homes[0].name)))
    return out


def files(ctx: Ctx, wan: str, services: tuple[Service, ...]) -> dict[str, str]:
    return {ctx.names.awall_file(name): text
            for name, text in policies(ctx, wan, services).items()}


def legacy_policies(ctx: Ctx) -> list[str]:
    """The older tunnelops' optional policies present on the host: enabled, or a file."""
    f = ctx.facts
    names = [*LEGACY.awall_fixed, *(s.name for s in ctx.site.services)]
    return [n for n in names if n in f.awall_enabled or f.file(LEGACY.awall_file(n))]


def plan(ctx: Ctx, wan: str, services: tuple[Service, ...],
         removed: tuple[str, ...] = (), *, legacy: bool = False) -> StepPlan:
    """LEGACY: the older tunnelops' policies on the host are this site's: they go in the
    activation that brings the site's own."""
    p = StepPlan("firewall")
    f, n = ctx.facts, ctx.names
    want = policies(ctx, wan, services)
    for name, text in want.items():
        old = f.file(n.awall_file(name))
        if old is None or old.content != text:
            p.changes.append(FileChange(n.awall_file(name), text, old.content if old else None))
    to_enable = [x for x in want if x not in f.awall_enabled]
    if to_enable:
        p.changes.append(CommandChange(f"awall enable {' '.join(to_enable)}",
                                       "awall enable " + " ".join(map(shlex.quote, to_enable))))
    # a service gone from the inventory: its policy is still enabled (found by its name)
    stale = [x for x in f.awall_enabled if x.startswith(n.awall_service("")) and x not in want]
    gone = [*(n.awall_service(x) for x in removed), *stale,
            *(legacy_policies(ctx) if legacy else [])]
    for name in gone:
        if name in f.awall_enabled:
            p.changes.append(CommandChange(f"awall disable {name}",
                                           f"awall disable {shlex.quote(name)}"))
    for name in gone:
        path = n.awall_file(name) if name.startswith("tunnelops-") else LEGACY.awall_file(name)
        if (old := f.file(path)) is not None:
            p.changes.append(RemoveFile(old.path, old.content))
    if legacy and (old := f.file(LEGACY.awall_base)) is not None:
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
