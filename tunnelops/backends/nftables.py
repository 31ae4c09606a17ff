"""tunnelops' own nftables table (`inet tunnelops`), never touching anyone else's rules;
persisted by an include line in the distribution's nftables config.

The file is a BASE (the table: sets, chains, static rules) and the service ports, as the
elements of the sets svc_tcp / svc_udp (render.nftables). When the base is what the host
already has, only the elements that differ from the LIVE sets are added or deleted (one
`nft add element` / `nft delete element` each, and the file rewritten for the next boot):
no reload, so every other rule, its counters and the SSH rate limiter's memory stay as they
are. Element changes only ever open or close service ports, never SSH, so they need no guard.
Anything else replaces the whole table atomically (`nft -f`), under a guard.

Drift: after each load the host records `nft -st list table` (stateless, terse: no counters
and no set elements, so the base alone); a live table that no longer matches the record is
reloaded. The elements need no record: they are compared with the live sets themselves."""

from __future__ import annotations

import shlex

from tunnelops.backends.originals import enable_shell
from tunnelops.changes import CommandChange, FileChange, Guard, StepPlan
from tunnelops.facts import HostFacts
from tunnelops.probes.firewall import NFT_APPLIED, NFT_TERSE
from tunnelops.render import nftables as render
from tunnelops.render.nftables import Element
from tunnelops.steps.context import Ctx

RULES = "/etc/tunnelops/tunnelops.nft"
APPLIED = NFT_APPLIED
ROLLBACK = "/var/lib/tunnelops/nft.rollback"
ROLLBACK_FILE = "/var/lib/tunnelops/tunnelops.nft.rollback"  # RULES as it was before
LIST = NFT_TERSE  # the record is what the facts compare the live table with
# the rollback snapshot: the terse table, then the service sets with their elements (nft
# accepts a set declared again with the same type and flags: it only adds the elements)
SNAPSHOT = "; ".join([f"{LIST} 2>/dev/null || :", *(
    f"nft -s list set inet tunnelops {name} 2>/dev/null || :"
    for name in render.SVC_SETS.values())])
# what tunnelops appends to the distribution's nftables config
OUR_LINES = ("# tunnelops: its own table, loaded after everything else", f'include "{RULES}"')
_PROTO = {name: proto for proto, name in render.SVC_SETS.items()}


BOOT_UNIT = "/etc/systemd/system/tunnelops-nftables.service"


def _boot_by_include(ctx: Ctx, p: StepPlan) -> None:
    """The distribution's nftables service loads our table too: an include line appended to
    its config (saved first, put back by teardown)."""
    f = ctx.facts
    conf = f.file(conf_path(ctx))
    if conf is None or OUR_LINES[1] not in conf.content:
        text = conf.content if conf else "#!/usr/sbin/nft -f\n"
        new = text + ("" if text.endswith("\n") else "\n") + "\n".join(OUR_LINES) + "\n"
        p.changes.append(FileChange(conf_path(ctx), new, conf.content if conf else None,
                                    mode=0o755 if conf is None else int(conf.mode or "644", 8),
                                    backup=True))
    if f.systemd and p.changes:
        p.post.append(enable_shell("nftables.service"))


def _boot_by_unit(ctx: Ctx, p: StepPlan) -> None:
    """A unit of our own loads our table at boot, and the distribution's nftables config is
    left alone: where it is a firewall of its own (Arch's drops what is forwarded and all
    input but SSH), enabling its service would take the tunnel down at the next boot."""
    f, unit = ctx.facts, render.boot_unit(RULES)
    old = f.file(BOOT_UNIT)
    if old is None or old.content != unit:
        p.changes.append(FileChange(BOOT_UNIT, unit, old.content if old else None))
    if f.systemd and p.changes:
        p.post.append("systemctl daemon-reload")
        p.post.append(enable_shell("tunnelops-nftables.service"))


def conf_path(ctx: Ctx) -> str:
    d = ctx.facts.distro
    return d.nft_conf if d else "/etc/nftables.conf"


def _live_base_as_recorded(f: HostFacts) -> bool:
    return (f.nft_table is not None and f.nft_applied is not None
            and f.nft_table.strip() == f.nft_applied.strip())


def _describe(set_name: str, e: Element) -> str:
    svc = f" ({e.comment})" if e.comment else ""
    return f"{e.key}/{_PROTO[set_name]}{svc}"


def element_changes(want: dict[str, list[Element]],
                    live: dict[str, list[Element]]) -> list[CommandChange]:
    """One command per element that differs: deletions first (a port range that grows is
    deleted, then added again: nft refuses overlapping intervals), then additions."""
    deletes, adds = [], []
    for name in render.SVC_SETS.values():
        have, need = live.get(name, []), want.get(name, [])
        for e in have:
            if e not in need:
                stmt = render.delete_element(name, [e])
                deletes.append(CommandChange(f"delete {_describe(name, e)} from set {name}",
                                             f"nft {shlex.quote(stmt)}", stmt))
        for e in need:
            if e not in have:
                stmt = render.add_element(name, [e])
                adds.append(CommandChange(f"add {_describe(name, e)} to set {name}",
                                          f"nft {shlex.quote(stmt)}", stmt))
    return deletes + adds


def plan(ctx: Ctx, ruleset: str, want: dict[str, list[Element]],
         step: str = "firewall") -> StepPlan:
    """RULESET (a whole file: its base and the `add element` lines of WANT)."""
    p = StepPlan(step)
    f = ctx.facts
    old = f.file(RULES)
    base = render.base(ruleset)
    same_base = old is not None and render.base(old.content) == base
    if old is None or old.content != ruleset:
        p.changes.append(FileChange(RULES, ruleset, old.content if old else None, mode=0o644))
    if same_base and _live_base_as_recorded(f):
        p.changes += element_changes(want, f.nft_sets)
    else:
        p.changes.append(CommandChange(
            "load table inet tunnelops" + (" (the live table drifted)" if same_base else ""),
            f"nft -f {RULES}\nmkdir -p /var/lib/tunnelops\n{LIST} > {APPLIED}"))
        # The live table and the file a boot loads, so a restored lock-out does not come
        # back at the next reboot (no file before: an empty table, so the include line
        # written beside it still loads).
        p.guard = Guard(
            snapshot=f"mkdir -p /var/lib/tunnelops; {{ {SNAPSHOT}; }} > {ROLLBACK}; "
                     f"rm -f {ROLLBACK_FILE}; [ ! -e {RULES} ] || cp -a {RULES} {ROLLBACK_FILE}",
            restore=f"nft delete table inet tunnelops 2>/dev/null; [ -s {ROLLBACK} ] && "
                    f"nft -f {ROLLBACK}; rm -f {APPLIED}; if [ -e {ROLLBACK_FILE} ]; then "
                    f"mv -f {ROLLBACK_FILE} {RULES}; else printf '%s\\n' 'table {render.TABLE}' "
                    f"'delete table {render.TABLE}' > {RULES}; fi",
            seconds=ctx.guard_seconds)
    d = f.distro
    if d is not None and d.nft_boot == "unit":
        _boot_by_unit(ctx, p)
    else:
        _boot_by_include(ctx, p)
    return p
