"""tunnelops' own nftables table (`inet tunnelops`), replaced atomically and never touching
anyone else's rules; persisted by an include line in the distribution's nftables config.

Drift: after each apply the host records `nft -st list table` (stateless, terse: no counters
or dynamic set elements); a table that no longer matches the record is re-applied."""

from __future__ import annotations

from tunnelops.changes import CommandChange, FileChange, Guard, StepPlan
from tunnelops.steps.context import Ctx

RULES = "/etc/tunnelops/tunnelops.nft"
APPLIED = "/var/lib/tunnelops/nft.applied"
ROLLBACK = "/var/lib/tunnelops/nft.rollback"
LIST = "nft -st list table inet tunnelops"
# what tunnelops appends to the distribution's nftables config
OUR_LINES = ("# tunnelops: its own table, loaded after everything else", f'include "{RULES}"')


def conf_path(ctx: Ctx) -> str:
    return "/etc/sysconfig/nftables.conf" if ctx.facts.family == "fedora" else "/etc/nftables.conf"


def plan(ctx: Ctx, ruleset: str, step: str = "firewall") -> StepPlan:
    p = StepPlan(step)
    f = ctx.facts
    old = f.file(RULES)
    changed = old is None or old.content != ruleset
    if changed:
        p.changes.append(FileChange(RULES, ruleset, old.content if old else None, mode=0o644))
    drifted = not changed and (f.nft_table is None or f.nft_applied is None
                               or f.nft_table.strip() != f.nft_applied.strip())
    if changed or drifted:
        p.changes.append(CommandChange(
            "load table inet tunnelops" + (" (the live table drifted)" if drifted else ""),
            f"nft -f {RULES}\nmkdir -p /var/lib/tunnelops\n{LIST} > {APPLIED}"))
        p.guard = Guard(
            snapshot=f"mkdir -p /var/lib/tunnelops; {{ {LIST} 2>/dev/null || :; }} > {ROLLBACK}",
            restore=f"nft delete table inet tunnelops 2>/dev/null; [ -s {ROLLBACK} ] && "
                    f"nft -f {ROLLBACK}; rm -f {APPLIED}",
            seconds=ctx.guard_seconds)
    conf = f.file(conf_path(ctx))
    if conf is None or OUR_LINES[1] not in conf.content:
        base = conf.content if conf else "#!/usr/sbin/nft -f\n"
        new = base + ("" if base.endswith("\n") else "\n") + "\n".join(OUR_LINES) + "\n"
        p.changes.append(FileChange(conf_path(ctx), new, conf.content if conf else None,
                                    mode=0o755 if conf is None else int(conf.mode or "644", 8),
                                    backup=True))
    if f.systemd and p.changes:
        p.post.append("systemctl enable nftables >/dev/null 2>&1 || true")
    return p
