"""firewalld on a Fedora/RHEL VPS: the WAN zone allows SSH and WireGuard, masquerades the
tunnel's egress and forwards each service's ports to its home; wg0 sits in the trusted
zone. With client_ip = "snat" the trusted zone masquerades what is forwarded into the tunnel
(the seed's SNAT to the VPS tunnel address); with "preserve" it must not (a zone's
masquerade applies to everything leaving through its interfaces), and players' addresses
reach home unchanged.

A forward-port to a home's tunnel address that the inventory no longer has there is removed
(the addresses of the site's subnet are its own: nothing else forwards to them). The trusted
zone is the host's, so sites side by side on one firewalld VPS must agree on client_ip
(refused otherwise: steps.sites)."""

from __future__ import annotations

import shlex
from ipaddress import IPv4Address

from tunnelops.backends.firewalld import ROLLBACK, zone_backup, zone_of
from tunnelops.changes import CommandChange, Guard, StepPlan
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.tunnel import Tunnel
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
        have = {_key(fp): fp for fp in wz.get("forward-ports", [])}
        wanted: dict[tuple[str, str, str], tuple[PortSpec, str]] = {}
        for svc in services:
            addr = str(ctx.site.address(svc.home or ctx.site.homes[0].name))
            for spec in svc.ports:
                wanted[(spec.nft, spec.proto, addr)] = (spec, svc.name)
        # first what is no longer wanted there (a port moving to another home included)
        for key, fp in have.items():
            if key not in wanted and _ours(key[2], t):
                p.changes.append(CommandChange(
                    f"stop forwarding {_shown(fp)} to {key[2]} ({kind})",
                    f"firewall-cmd -q {flag}--zone={q(zone)} --remove-forward-port={q(fp)}"))
        for key, (spec, name) in wanted.items():
            if key not in have:
                fp = f"port={key[0]}:proto={key[1]}:toaddr={key[2]}"
                p.changes.append(CommandChange(
                    f"forward {spec} to {key[2]} ({name}, {kind})",
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


def _fields(forward_port: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in forward_port.split(":") if "=" in kv)


def _key(forward_port: str) -> tuple[str, str, str]:
    """(port, proto, toaddr) of `port=12345:proto=udp:toport=:toaddr=192.168.2.2`."""
    v = _fields(forward_port)
    return v.get("port", ""), v.get("proto", ""), v.get("toaddr", "")


def _ours(address: str, t: Tunnel) -> bool:
    try:
        return IPv4Address(address) in t.subnet
    except ValueError:
        return False


def _shown(forward_port: str) -> str:
    """`port=12347:proto=udp:toport=:toaddr=...` as 12347/udp."""
    v = dict(kv.split("=", 1) for kv in forward_port.split(":") if "=" in kv)
    return f"{v.get('port', '?')}/{v.get('proto', '?')}"
