"""firewalld on a Fedora/RHEL VPS: the WAN zone allows SSH and WireGuard, masquerades the
tunnel's egress and forwards the service ports to home; wg0 sits in the trusted zone. With
client_ip = "snat" the trusted zone masquerades what is forwarded into the tunnel (the seed's
SNAT to the VPS tunnel address); with "preserve" it must not (a zone's masquerade applies to
everything leaving through its interfaces), and players' addresses reach home unchanged.

A forward-port to home's tunnel address that the inventory no longer has is removed (the
address is tunnelops's: nothing else forwards to it)."""

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
        for zz, want in ((zone, True), ("trusted", ctx.site.snat)):
            if (z.get(zz, {}).get("masquerade", ["no"]) == ["yes"]) != want:
                verb, opt = ("masquerade", "add") if want else ("no masquerade", "remove")
                p.changes.append(CommandChange(f"{verb} in zone {zz} ({kind})",
                                               f"firewall-cmd -q {flag}--zone={q(zz)} "
                                               f"--{opt}-masquerade"))
        have = wz.get("forward-ports", [])
        wanted = {}
        for svc in services:
            for spec in svc.ports:
                head = f"port={spec.nft}:proto={spec.proto}:"
                wanted[head] = svc.name
                if not any(fp.startswith(head) for fp in have):
                    fp = f"{head}toaddr={t.home_address}"
                    p.changes.append(CommandChange(
                        f"forward {spec} to {t.home_address} ({svc.name}, {kind})",
                        f"firewall-cmd -q {flag}--zone={q(zone)} --add-forward-port={q(fp)}"))
        for fp in have:
            head = fp[:fp.find(":", fp.find("proto=")) + 1]
            if fp.endswith(f":toaddr={t.home_address}") and head not in wanted:
                p.changes.append(CommandChange(
                    f"stop forwarding {_shown(fp)} ({kind})",
                    f"firewall-cmd -q {flag}--zone={q(zone)} --remove-forward-port={q(fp)}"))
    if p.changes:
        p.changes.insert(0, CommandChange("save the original zones for teardown",
                                          zone_backup(zone, "trusted")))
        p.guard = Guard(snapshot=f"rm -rf {ROLLBACK}; mkdir -p /var/lib/tunnelops; "
                                 f"cp -a /etc/firewalld {ROLLBACK}",
                        restore=f"rm -rf /etc/firewalld; cp -a {ROLLBACK} /etc/firewalld; "
                                "firewall-cmd -q --reload", seconds=ctx.guard_seconds)
    p.notes.append(f"firewalld (WAN zone {zone}); SSH allowed by the zone, not rate-limited")
    return p


def _shown(forward_port: str) -> str:
    """`port=12347:proto=udp:toport=:toaddr=...` as 12347/udp."""
    v = dict(kv.split("=", 1) for kv in forward_port.split(":") if "=" in kv)
    return f"{v.get('port', '?')}/{v.get('proto', '?')}"
