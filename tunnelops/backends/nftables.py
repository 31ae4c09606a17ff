"""Each site's own nftables table (`inet tunnelops-wg0`, tunnelops.naming), never touching
anyone else's rules, another site's included; persisted by an include line of its own in the
distribution's nftables config.

The file is a BASE (the table: sets, chains, static rules) and the service ports, as the
elements of the sets svc_tcp / svc_udp (render.nftables). When the base is what the host
already has, only the elements that differ from the LIVE sets are added or deleted (one
`nft add element` / `nft delete element` each, and the file rewritten for the next boot):
no reload, so every other rule, its counters and the SSH rate limiter's memory stay as they
are. Element changes only ever open or close service ports, never SSH, so they need no guard.
Anything else replaces the whole table atomically (`nft -f`), under a guard.

Drift: after each load the host records `nft -st list table` (stateless, terse: no counters
and no set elements, so the base alone); a live table that no longer matches the record is
reloaded. The elements need no record: they are compared with the live sets themselves.

The one table a host had before issue 11 (`inet tunnelops`, /etc/tunnelops/tunnelops.nft and
its include line) is the site's own when the site is the host's legacy one (`legacy`): the
same `nft -f` transaction that loads the new table deletes it, and its file, record and
include line go with it."""

from __future__ import annotations

import shlex

from tunnelops.changes import Change, CommandChange, FileChange, Guard, RemoveFile, StepPlan
from tunnelops.facts import HostFacts
from tunnelops.naming import LEGACY, Names
from tunnelops.render import nftables as render
from tunnelops.render.nftables import Element
from tunnelops.steps.context import Ctx


def list_table(table: str) -> str:
    """The terse listing the drift record keeps: no counters, no set elements."""
    return f"nft -st list table {table}"


def snapshot(table: str, sets: list[str]) -> str:
    """The rollback snapshot of a table: its terse listing, then its service port sets with
    their elements (nft accepts a set declared again with the same type and flags: it only
    adds them; the SSH limiter's dynamic sets are left out: their elements do not load)."""
    each = "".join(f"; nft -s list set {table} {name} 2>/dev/null" for name in sets)
    return f"{{ {{ {list_table(table)}{each}; }} 2>/dev/null || :; }}"


def include_lines(names: Names) -> tuple[str, str]:
    """What a site appends to the distribution's nftables config."""
    return (f"# tunnelops: the table of {names.iface}, loaded after everything else",
            f'include "{names.nft_file}"')


# what tunnelops appended before issue 11 (one site per host)
LEGACY_LINES = ("# tunnelops: its own table, loaded after everything else",
                f'include "{LEGACY.nft_file}"')
OUR_LINES = LEGACY_LINES  # teardown of an older tunnelops' lines (no original saved)


def conf_path(ctx: Ctx) -> str:
    return "/etc/sysconfig/nftables.conf" if ctx.facts.family == "fedora" else "/etc/nftables.conf"


def _live_base_as_recorded(f: HostFacts) -> bool:
    return (f.nft_table is not None and f.nft_applied is not None
            and f.nft_table.strip() == f.nft_applied.strip())


def _describe(set_name: str, e: Element) -> str:
    svc = f" ({e.comment})" if e.comment else ""
    return f"{e.key}/{render.set_proto(set_name)}{svc}"


def element_changes(table: str, want: dict[str, list[Element]],
                    live: dict[str, list[Element]]) -> list[CommandChange]:
    """One command per element that differs: deletions first (a port range that grows is
    deleted, then added again: nft refuses overlapping intervals; a port that moves to
    another home leaves its set before it joins the other), then additions."""
    deletes, adds = [], []
    for name in sorted(set(want) | set(live)):
        have, need = live.get(name, []), want.get(name, [])
        for e in have:
            if e not in need:
                stmt = render.delete_element(table, name, [e])
                deletes.append(CommandChange(f"delete {_describe(name, e)} from set {name}",
                                             f"nft {shlex.quote(stmt)}", stmt))
        for e in need:
            if e not in have:
                stmt = render.add_element(table, name, [e])
                adds.append(CommandChange(f"add {_describe(name, e)} to set {name}",
                                          f"nft {shlex.quote(stmt)}", stmt))
    return deletes + adds


def legacy_present(f: HostFacts) -> bool:
    """Does the host have the one table of an older tunnelops (or what came with it)?"""
    conf = next((c for c in (f.file(p) for p in CONF_PATHS) if c is not None), None)
    return (f.nft_legacy is not None or f.file(LEGACY.nft_file) is not None
            or (conf is not None and LEGACY_LINES[1] in conf.content))


CONF_PATHS = ("/etc/nftables.conf", "/etc/sysconfig/nftables.conf")


def plan(ctx: Ctx, ruleset: str, step: str = "firewall", *, legacy: bool = False) -> StepPlan:
    """LEGACY: the host's table of an older tunnelops is this site's, moved to its own name."""
    p = StepPlan(step)
    f, names = ctx.facts, ctx.names
    table, rules = names.nft_family_table, names.nft_file
    old = f.file(rules)
    base, want = render.split(ruleset)
    same_base = old is not None and render.split(old.content)[0] == base
    if old is None or old.content != ruleset:
        p.changes.append(FileChange(rules, ruleset, old.content if old else None, mode=0o644))
    drop_legacy = legacy and f.nft_legacy is not None
    if same_base and _live_base_as_recorded(f) and not drop_legacy:
        p.changes += element_changes(table, want, f.nft_sets)
    else:
        why = (" (the live table drifted)" if same_base and not drop_legacy else
               f", in place of inet {LEGACY.nft_table}" if drop_legacy else "")
        # one transaction: the old table goes as the new one comes
        drop = (f"printf '%s\\n' 'table {LEGACY.nft_family_table}' "
                f"'delete table {LEGACY.nft_family_table}'; " if drop_legacy else "")
        p.changes.append(CommandChange(
            f"load table {table}{why}",
            f"{{ {drop}cat {rules}; }} | nft -f -\nmkdir -p {names.state}\n"
            f"{list_table(table)} > {names.nft_applied}"))
        # The live table and the file a boot loads, so a restored lock-out does not come
        # back at the next reboot (no file before: an empty table, so the include line
        # written beside it still loads).
        restore_legacy = (f"nft delete table {LEGACY.nft_family_table} 2>/dev/null; "
                          f"[ -s {names.state}/legacy.rollback ] && "
                          f"nft -f {names.state}/legacy.rollback; " if drop_legacy else "")
        sets = sorted(set(want) | set(f.nft_sets))
        p.guard = Guard(
            snapshot=f"mkdir -p {names.state}; {snapshot(table, sets)} > {names.nft_rollback}; "
                     + (f"{snapshot(LEGACY.nft_family_table, list(render.SVC_SETS.values()))} "
                        f"> {names.state}/legacy.rollback; " if drop_legacy else "")
                     + f"rm -f {names.nft_rollback_file}; [ ! -e {rules} ] || "
                       f"cp -a {rules} {names.nft_rollback_file}",
            restore=f"nft delete table {table} 2>/dev/null; [ -s {names.nft_rollback} ] && "
                    f"nft -f {names.nft_rollback}; {restore_legacy}rm -f {names.nft_applied}; "
                    f"if [ -e {names.nft_rollback_file} ]; then mv -f {names.nft_rollback_file} "
                    f"{rules}; else printf '%s\\n' 'table {table}' 'delete table {table}' "
                    f"> {rules}; fi",
            seconds=ctx.guard_seconds)
    p.changes += _conf(ctx, legacy)
    if legacy:
        p.changes += [RemoveFile(ff.path, ff.content) for ff in (f.file(LEGACY.nft_file),)
                      if ff is not None]
        if f.file(LEGACY.nft_applied) is not None:
            p.changes.append(RemoveFile(LEGACY.nft_applied, f.file(LEGACY.nft_applied).content))
    if f.systemd and p.changes:
        p.post.append("systemctl enable nftables >/dev/null 2>&1 || true")
    return p


def _conf(ctx: Ctx, legacy: bool) -> list[Change]:
    """The site's include line in the distribution's nftables config (the older tunnelops'
    line out, when this site's is the legacy table)."""
    f, path = ctx.facts, conf_path(ctx)
    conf, ours = f.file(path), include_lines(ctx.names)
    text = conf.content if conf else "#!/usr/sbin/nft -f\n"
    new = text
    if legacy:
        new = "".join(x for x in text.splitlines(keepends=True)
                      if x.rstrip("\n") not in LEGACY_LINES)
    if ours[1] not in new:
        new += ("" if not new or new.endswith("\n") else "\n") + "\n".join(ours) + "\n"
    if conf is not None and new == conf.content:
        return []
    return [FileChange(path, new, conf.content if conf else None,
                       mode=0o755 if conf is None else int(conf.mode or "644", 8), backup=True)]


def without_lines(text: str, lines: tuple[str, ...]) -> str:
    return "".join(x for x in text.splitlines(keepends=True) if x.rstrip("\n") not in lines)
