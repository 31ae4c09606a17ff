"""firewalld on a Fedora/RHEL VPS: the WAN zone allows SSH and WireGuard, masquerades the
tunnel's egress and forwards the service ports to home; wg0 sits in the trusted zone, which
masquerades what it forwards into the tunnel (the seed's SNAT to the VPS tunnel address)."""

from __future__ import annotations

import shlex

from tunnelops.backends.firewalld import ROLLBACK, zone_backup, zone_of
from tunnelops.changes import CommandChange, Guard, StepPlan
from tunnelops.model import Service
from tunnelops.steps.context import Ctx


def plan(ctx: Ctx, wan: str, services: tuple[Service, ...]) -> StepPlan:
    p = StepPlan("firewall")
    fw, t, q = ctx.facts.firewalld, ctx.tunnel, shlex.quote
    zone = zone_of(fw, wan, "permanent") or zone_of(fw, wan) or fw.get("default", "public")
    want_iface = {ctx.iface: "trusted"}
    for kind, flag in (("permanent", "--permanent "), ("runtime", "")):
        z = fw.get(kind, {})
        for iface, zz in want_iface.items():
            if zone_of(fw, iface, kind) != zz:
                p.changes.append(CommandChange(f"put {iface} in zone {zz} ({kind})",
                                               f"firewall-cmd -q {flag}--zone={zz} "
                                               f"--change-interface={q(iface)}"))
        wz = z.get(zone, {})
        if f"{t.listen_port}/udp" not in wz.get("ports", []):
            p.changes.append(CommandChange(f"allow WireGuard {t.listen_port}/udp ({kind})",
                                           f"firewall-cmd -q {flag}--zone={q(zone)} "
                                           f"--add-port={t.listen_port}/udp"))
        ssh = ctx.site.vps.ssh_port  # the zone's ssh service is 22/tcp only
        if ssh != 22 and f"{ssh}/tcp" not in wz.get("ports", []):
            p.changes.append(CommandChange(f"allow SSH {ssh}/tcp ({kind})",
                                           f"firewall-cmd -q {flag}--zone={q(zone)} "
                                           f"--add-port={ssh}/tcp"))
        for zz in (zone, "trusted"):
            if z.get(zz, {}).get("masquerade", ["no"]) != ["yes"]:
                p.changes.append(CommandChange(f"masquerade in zone {zz} ({kind})",
                                               f"firewall-cmd -q {flag}--zone={q(zz)} "
                                               "--add-masquerade"))
        have = " ".join(wz.get("forward-ports", []))
        for svc in services:
            for spec in svc.ports:
                fp = f"port={spec.nft}:proto={spec.proto}:toaddr={t.home_address}"
                if f"port={spec.nft}:proto={spec.proto}:" not in have:
                    p.changes.append(CommandChange(
                        f"forward {spec} to {t.home_address} ({svc.name}, {kind})",
                        f"firewall-cmd -q {flag}--zone={q(zone)} --add-forward-port={q(fp)}"))
    if p.changes:
        p.changes.insert(0, CommandChange("save the original zones for teardown",
                                          zone_backup(zone, "trusted")))
        p.guard = Guard(snapshot=f"rm -rf {ROLLBACK}; mkdir -p /var/lib/tunnelops; "
                                 f"cp -a /etc/firewalld {ROLLBACK}",
                        restore=f"rm -rf /etc/firewalld; cp -a {ROLLBACK} /etc/firewalld; "
                                "firewall-cmd -q --reload", seconds=ctx.guard_seconds)
    p.notes.append(f"firewalld (WAN zone {zone}); SSH allowed by the zone, not rate-limited")
    return p
