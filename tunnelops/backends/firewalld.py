"""firewalld: the tunnel interface in a zone (the seed: public, or whatever zone already holds
it), and the service ports open there, permanent and runtime.

Ports tunnelops opened are recorded per site (/etc/tunnelops/wg0.firewalld-ports:
tunnelops.naming), so a port removed from the inventory is closed again without touching
ports the user opened themselves, or another site's. An older tunnelops' record
(/etc/tunnelops/firewalld-ports) is the site's own when it was the host's one site: read as
its record, then removed."""

from __future__ import annotations

from tunnelops import probes
from tunnelops.backends.firewalld_dbus import Op, apply_shell, firewall_cmd
from tunnelops.backends.originals import backup_shell
from tunnelops.changes import CommandChange, FileChange, Guard, RemoveFile, StepPlan
from tunnelops.model.ports import PortSpec
from tunnelops.naming import LEGACY
from tunnelops.steps.context import Ctx

ROLLBACK = "/var/lib/tunnelops/firewalld.rollback"


def zone_backup(*zones: str) -> str:
    """firewalld writes ZONE.xml (and ZONE.xml.old) under /etc on the first permanent change."""
    return backup_shell(*(f"/etc/firewalld/zones/{z}.xml{suffix}" for z in zones
                          for suffix in ("", ".old")))


def zone_of(fw: dict, iface: str, kind: str = "runtime") -> str | None:
    """The zone of facts.firewalld's runtime or permanent view that holds IFACE."""
    return probes.zone_of(fw.get(kind, {}), iface)


def recorded_ports(ctx: Ctx, legacy: bool = False) -> list[str]:
    """The ports the site's record says tunnelops opened (the older record's too)."""
    out = []
    for path in (ctx.names.firewalld_record, *((LEGACY.firewalld_record,) if legacy else ())):
        record = ctx.facts.file(path)
        out += [x for x in (record.content.split() if record else []) if x not in out]
    return out


def summary(zone: str, ops: list[Op]) -> str:
    """The operations in words, each said once with the views it changes: `put wg0 in
    firewalld zone public (permanent and runtime); open 12345/udp in zone public (runtime)`."""
    said: dict[str, list[str]] = {}
    for op in ops:
        words = (f"put {op.items[0]} in firewalld zone {zone}" if op.verb == "bind" else
                 f"{'open' if op.verb == 'add' else 'close'} {', '.join(op.items)} "
                 f"in zone {zone}")
        said.setdefault(words, []).append(op.kind)
    return "; ".join(f"{words} ({' and '.join(kinds)})" for words, kinds in said.items())


def plan(ctx: Ctx, ports: list[PortSpec], step: str = "firewall", *,
         legacy: bool = False) -> StepPlan:
    p = StepPlan(step)
    fw, iface, nm = ctx.facts.firewalld, ctx.iface, ctx.facts.nm
    # An interface of a NetworkManager profile is bound permanently by the profile's
    # connection.zone (what firewall-cmd --permanent --change-interface sets for it); the
    # zone's file never lists it.
    nm_zone = nm.get("values", {}).get("connection.zone") if nm.get("exists") else None
    bound = {"permanent": zone_of(fw, iface, "permanent") or nm_zone or None,
             "runtime": zone_of(fw, iface)}
    zone = bound["permanent"] or bound["runtime"] or fw.get("default", "public")
    ops = [Op("bind", kind, (iface,)) for kind in ("permanent", "runtime")
           if bound[kind] != zone]
    want = [str(s) for s in ports]  # firewalld writes ports as PortSpec does
    record = ctx.facts.file(ctx.names.firewalld_record)
    ours = recorded_ports(ctx, legacy)
    for kind in ("permanent", "runtime"):
        have = fw.get(kind, {}).get(zone, {}).get("ports", [])
        ops += [Op(verb, kind, tuple(todo)) for verb, todo in (
            ("add", [x for x in want if x not in have]),
            ("remove", [x for x in ours if x not in want and x in have])) if todo]
    if ops:
        # every operation of both views in ONE process (firewall-cmd is a Python program per
        # call: ~0.2 s each here, seconds on a slow host; and it takes one kind of option
        # per call)
        p.changes.append(CommandChange(summary(zone, ops), apply_shell(zone, ops),
                                       "\n".join(f"+ {firewall_cmd(zone, op)}" for op in ops)))
    text = "".join(f"{x}\n" for x in want)
    if (record.content if record else "") != text:
        p.changes.append(FileChange(ctx.names.firewalld_record, text,
                                    record.content if record else None))
    if legacy and (old := ctx.facts.file(LEGACY.firewalld_record)) is not None:
        p.changes.append(RemoveFile(old.path, old.content))
    if any(isinstance(c, CommandChange) for c in p.changes):
        p.changes.insert(0, CommandChange(f"save the original zone {zone} for teardown",
                                          zone_backup(zone)))
        p.guard = Guard(
            snapshot=f"rm -rf {ROLLBACK}; mkdir -p /var/lib/tunnelops; "
                     f"cp -a /etc/firewalld {ROLLBACK}",
            restore=f"rm -rf /etc/firewalld; cp -a {ROLLBACK} /etc/firewalld; "
                    "firewall-cmd -q --reload",
            seconds=ctx.guard_seconds)
    p.notes.append(f"firewalld zone {zone}")
    return p
