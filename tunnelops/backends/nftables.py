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
from dataclasses import dataclass

from tunnelops.backends.originals import enable_shell
from tunnelops.changes import Change, CommandChange, FileChange, Guard, RemoveFile, StepPlan
from tunnelops.facts import HostFacts
from tunnelops.naming import (
    HOST_FAMILY_TABLE,
    HOST_NFT_APPLIED,
    HOST_NFT_FILE,
    HOST_STATE,
    LEGACY,
    Names,
)
from tunnelops.probes.firewall import nft_terse
from tunnelops.render import nftables as render
from tunnelops.render import nfthost
from tunnelops.render.nftables import Element
from tunnelops.steps.context import NFT_BOOT_UNIT, Ctx


def list_table(table: str) -> str:
    """The terse listing the drift record keeps: no counters, no set elements."""
    return nft_terse(table)


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
    d = ctx.facts.distro
    return d.nft_conf if d else "/etc/nftables.conf"


# where the distribution's nftables config is a firewall of its own (Arch's drops what is
# forwarded and all input but SSH), a unit of ours loads our tables at boot instead: every
# file of ours, the VPS's own table and each site's (one unit for the host's sites)
BOOT_GLOB = "/etc/tunnelops/*.nft"


def _boot_by_unit(ctx: Ctx, p: StepPlan) -> None:
    """Our unit loads our tables at boot, and the distribution's nftables config is left
    alone (enabling its service would take the tunnel down at the next boot)."""
    f, unit = ctx.facts, render.boot_unit(BOOT_GLOB)
    old = f.file(NFT_BOOT_UNIT)
    if old is None or old.content != unit:
        p.changes.append(FileChange(NFT_BOOT_UNIT, unit, old.content if old else None))
    if f.systemd and p.changes:
        p.post.append("systemctl daemon-reload")
        p.post.append(enable_shell("tunnelops-nftables.service"))


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


@dataclass(frozen=True)
class _Table:
    """One table a load replaces, and how its guard puts it back."""

    name: str  # family and table
    file: str
    applied: str  # the record of its last load (terse listing)
    state: str  # its rollback files' directory
    sets: tuple[str, ...]  # the sets whose elements the snapshot keeps

    @property
    def rollback(self) -> str:
        return f"{self.state}/{self.name.split()[1]}.rollback"

    @property
    def rollback_file(self) -> str:
        return f"{self.state}/{self.name.split()[1]}.file.rollback"

    def snapshot(self) -> str:
        return (f"mkdir -p {self.state}; {snapshot(self.name, list(self.sets))} > "
                f"{self.rollback}; rm -f {self.rollback_file}; [ ! -e {self.file} ] || "
                f"cp -a {self.file} {self.rollback_file}")

    def restore(self) -> str:
        # the live table and the file a boot loads, so a restored lock-out does not come
        # back at the next reboot (no file before: an empty table's, so the include line
        # written beside it still loads)
        return (f"nft delete table {self.name} 2>/dev/null; [ -s {self.rollback} ] && "
                f"nft -f {self.rollback}; rm -f {self.applied}; if [ -e {self.rollback_file} ]; "
                f"then mv -f {self.rollback_file} {self.file}; else printf '%s\\n' "
                f"'table {self.name}' 'delete table {self.name}' > {self.file}; fi")


def host_element_changes(want: dict[str, list[tuple[str, str]]],
                         live: dict[str, list[tuple[str, str]]]) -> list[CommandChange]:
    """The host table's elements that differ: one command each, deletions first."""
    deletes, adds = [], []
    for name in nfthost.SETS:
        have, need = live.get(name, []), want.get(name, [])
        for value, comment in have:
            if (value, comment) not in need:
                stmt = nfthost.delete_element(name, value)
                deletes.append(CommandChange(f"delete {value} from set {name} of "
                                             f"{HOST_FAMILY_TABLE}", f"nft {shlex.quote(stmt)}",
                                             stmt))
        for value, comment in need:
            if (value, comment) not in have:
                stmt = nfthost.add_element(name, value, comment)
                adds.append(CommandChange(f"add {value} ({comment}) to set {name} of "
                                          f"{HOST_FAMILY_TABLE}", f"nft {shlex.quote(stmt)}",
                                          stmt))
    return deletes + adds


def plan(ctx: Ctx, ruleset: str, step: str = "firewall", *, legacy: bool = False,
         host: str | None = None) -> StepPlan:
    """RULESET: the site's table. HOST: on the VPS, the host's own table shared by its sites
    (render.nfthost), loaded in the same transaction when it must be. LEGACY: the host's
    table of an older tunnelops is this site's: it goes in that transaction too."""
    p = StepPlan(step)
    f, names = ctx.facts, ctx.names
    site = _Table(names.nft_family_table, names.nft_file, names.nft_applied, names.state,
                  tuple(sorted(set(render.split(ruleset)[1]) | set(f.nft_sets))))
    loads: list[_Table] = []
    old = f.file(site.file)
    base, want = render.split(ruleset)
    same_base = old is not None and render.split(old.content)[0] == base
    if old is None or old.content != ruleset:
        p.changes.append(FileChange(site.file, ruleset, old.content if old else None,
                                    mode=0o644))
    drop_legacy = legacy and f.nft_legacy is not None
    elements: list[CommandChange] = []
    if same_base and _live_base_as_recorded(f) and not drop_legacy:
        elements += element_changes(site.name, want, f.nft_sets)
    else:
        loads.append(site)
    why = {site.name: " (the live table drifted)" if same_base and not drop_legacy else
           f", in place of inet {LEGACY.nft_table}" if drop_legacy else ""}
    if host is not None:
        shared = _Table(HOST_FAMILY_TABLE, HOST_NFT_FILE, HOST_NFT_APPLIED, HOST_STATE,
                        tuple(nfthost.SETS))
        old_host = f.file(HOST_NFT_FILE)
        if old_host is None or old_host.content != host:
            p.changes.append(FileChange(HOST_NFT_FILE, host,
                                        old_host.content if old_host else None, mode=0o644))
        host_same = old_host is not None and nfthost.base(old_host.content) == \
            nfthost.base(host)
        host_live = f.nft_host is not None and f.nft_host_applied is not None and \
            f.nft_host.strip() == f.nft_host_applied.strip()
        if host_same and host_live:
            elements = host_element_changes(nfthost.host_elements(host), f.nft_host_sets) \
                + elements
        else:
            loads.insert(0, shared)
            why[shared.name] = " (the live table drifted)" if host_same else ""
    if loads:
        drop = (f"printf '%s\\n' 'table {LEGACY.nft_family_table}' "
                f"'delete table {LEGACY.nft_family_table}'; " if drop_legacy else "")
        cats = " ".join(t.file for t in loads)
        records = "\n".join(f"mkdir -p {t.state}\n{list_table(t.name)} > {t.applied}"
                            for t in loads)
        what = " and ".join(f"table {t.name}{why[t.name]}" for t in loads)
        # one transaction: the tables come (and the older one goes) at once
        p.changes.append(CommandChange(f"load {what}",
                                       f"{{ {drop}cat {cats}; }} | nft -f -\n{records}"))
        restore_legacy = (f"nft delete table {LEGACY.nft_family_table} 2>/dev/null; "
                          f"[ -s {names.state}/legacy.rollback ] && "
                          f"nft -f {names.state}/legacy.rollback; " if drop_legacy else "")
        legacy_snap = (f"mkdir -p {names.state}; "
                       f"{snapshot(LEGACY.nft_family_table, list(render.SVC_SETS.values()))} "
                       f"> {names.state}/legacy.rollback; " if drop_legacy else "")
        p.guard = Guard(snapshot=legacy_snap + "; ".join(t.snapshot() for t in loads),
                        restore="; ".join(t.restore() for t in loads) + "; " + restore_legacy,
                        seconds=ctx.guard_seconds)
    p.changes += elements
    d = f.distro
    if d is not None and d.nft_boot == "unit":
        _boot_by_unit(ctx, p)
    else:
        p.changes += _conf(ctx, legacy, host is not None)
    if legacy:
        p.changes += [RemoveFile(ff.path, ff.content) for ff in (f.file(LEGACY.nft_file),)
                      if ff is not None]
        if f.file(LEGACY.nft_applied) is not None:
            p.changes.append(RemoveFile(LEGACY.nft_applied, f.file(LEGACY.nft_applied).content))
    if f.systemd and p.changes and not (d is not None and d.nft_boot == "unit"):
        p.post.append(enable_shell("nftables.service"))
    return p


HOST_LINES = ("# tunnelops: the VPS's own table, shared by its sites: before theirs",
              f'include "{HOST_NFT_FILE}"')


def _conf(ctx: Ctx, legacy: bool, host: bool = False) -> list[Change]:
    """The site's include line in the distribution's nftables config, after the host's
    table's (on the VPS: the sites' files add nothing to it, but a boot loads it first); the
    older tunnelops' line out, when this site's is the legacy table."""
    f, path = ctx.facts, conf_path(ctx)
    conf, ours = f.file(path), include_lines(ctx.names)
    text = conf.content if conf else "#!/usr/sbin/nft -f\n"
    new = text
    if legacy:
        new = "".join(x for x in text.splitlines(keepends=True)
                      if x.rstrip("\n") not in LEGACY_LINES)
    for lines in ((HOST_LINES,) if host else ()) + (ours,):
        if lines[1] not in new:
            new += ("" if not new or new.endswith("\n") else "\n") + "\n".join(lines) + "\n"
    if conf is not None and new == conf.content:
        return []
    return [FileChange(path, new, conf.content if conf else None,
                       mode=0o755 if conf is None else int(conf.mode or "644", 8), backup=True)]


def without_lines(text: str, lines: tuple[str, ...]) -> str:
    return "".join(x for x in text.splitlines(keepends=True) if x.rstrip("\n") not in lines)
