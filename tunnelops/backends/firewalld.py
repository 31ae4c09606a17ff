"""firewalld: the tunnel interface in a zone (the seed: public, or whatever zone already holds
it), and the service ports open there, permanent and runtime.

Ports tunnelops opened are recorded per site (/etc/tunnelops/wg0.firewalld-ports:
tunnelops.naming), so a port removed from the inventory is closed again without touching
ports the user opened themselves, or another site's. An older tunnelops' record
(/etc/tunnelops/firewalld-ports) is the site's own when it was the host's one site: read as
its record, then removed."""

from __future__ import annotations

import shlex

from tunnelops import probes
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
    q, z = shlex.quote, shlex.quote(zone)
    for kind, flag in (("permanent", "--permanent "), ("runtime", "")):
        if bound[kind] != zone:
            p.changes.append(CommandChange(
                f"put {iface} in firewalld zone {zone} ({kind})",
                f"firewall-cmd -q {flag}--zone={z} --change-interface={q(iface)}"))
    want = [str(s) for s in ports]  # firewalld writes ports as PortSpec does
    record = ctx.facts.file(ctx.names.firewalld_record)
    ours = recorded_ports(ctx, legacy)
    # one firewall-cmd per kind and verb, every port in it: each call is a Python program
    # (~0.1 s, seconds on a slow host), and it refuses --add-port beside --remove-port
    for kind, flag in (("permanent", "--permanent "), ("runtime", "")):
        have = fw.get(kind, {}).get(zone, {}).get("ports", [])
        for verb, option, todo in (
                ("open", "--add-port", [x for x in want if x not in have]),
                ("close", "--remove-port", [x for x in ours if x not in want and x in have])):
            if todo:
                p.changes.append(CommandChange(
                    f"{verb} {', '.join(todo)} in zone {zone} ({kind})",
                    f"firewall-cmd -q {flag}--zone={z} "
                    + " ".join(f"{option}={q(x)}" for x in todo)))
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
