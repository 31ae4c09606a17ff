"""Link 5: the VPS forwards: IPv4 forwarding, SSH and WireGuard let in, and each service
port's filter, DNAT to home and SNAT to the VPS's tunnel address (client_ip = "snat") or no
SNAT ("preserve": players reach home with their own address), read from the firewall the
distribution table says the VPS has (nftables followed rule by rule through nft's JSON,
firewalld's zones, awall's iptables rules)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tunnelops import distros, netfilter
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.naming import HOST_FAMILY_TABLE
from tunnelops.netfilter import Pkt
from tunnelops.probes import (
    AwallPolicies,
    FirewalldZones,
    IpForward,
    IptablesRules,
    NftRuleset,
    OsRelease,
    Uplink,
    zone_of,
)
from tunnelops.probes.system import Sysctls
from tunnelops.verify.check import Check, Ctx, Outcome, State, skip

FIREWALL = (OsRelease(), FirewalldZones("runtime"), AwallPolicies(), NftRuleset(),
            IptablesRules(), Uplink())
FIX = {"nftables": f"re-run `inv bootstrap` (it restores table {HOST_FAMILY_TABLE}, the VPS's "
                   "filter, and the site's table: their rules and the ports in their sets)",
       "awall": "re-run `inv bootstrap` (it re-enables the policies and runs `awall activate`)",
       "firewalld": "re-run `inv bootstrap` (it restores the zones' ports, forward-ports and "
                    "masquerade)"}


def backend(s: State) -> str:
    """The VPS's firewall, as the plan chooses it (distros.vps_firewall)."""
    distro = distros.of(s.read("vps", OsRelease()))
    running = bool(s.read("vps", FirewalldZones("runtime")).get("running"))
    if distro is None:
        return "firewalld" if running else "nftables"
    return distros.vps_firewall(distro, running)


def wan_and_public(s: State) -> tuple[str, str]:
    up = s.read("vps", Uplink())
    return (s.site.vps.wan_interface or up.get("dev") or "eth0",
            str(s.site.vps.public_ip or up.get("prefsrc") or ""))


def port_in(ports: list[str], proto: str, port: int) -> bool:
    """firewalld's `ports` (`12345/udp`, `27015-27020/udp`) open this port?"""
    for p in ports:
        rng, _, pr = p.partition("/")
        first, _, last = rng.partition("-")
        if pr == proto and first.isdigit() and int(first) <= port <= int(last or first):
            return True
    return False


def zone(zones: dict, iface: str, default: str) -> str:
    return zone_of(zones, iface) or default


def _ipt_port(line: str, spec: PortSpec, port: int) -> bool | None:
    """True/False when the line matches by destination port; None when it has no port test."""
    if f"-p {spec.proto}" not in line:
        return None if "--dport" not in line and "--dports" not in line else False
    m = re.search(r"--dports? (\S+)", line)
    if not m:
        return None
    for v in m.group(1).replace(":", "-").split(","):
        first, _, last = v.partition("-")
        if first.isdigit() and int(first) <= port <= int(last or first):
            return True
    return False


@dataclass(frozen=True)
class Forwarding(Check):
    id = "vps.forwarding"

    def name(self, s: State) -> str:
        return "vps IPv4 forwarding"

    def needs(self, ctx: Ctx) -> dict:
        return {"vps": (IpForward(),)}

    def evaluate(self, s: State) -> Outcome:
        fwd = s.read("vps", IpForward())
        return Outcome(fwd == "1", f"ip_forward = {fwd or '?'}",
                       "enable it: `sysctl -w net.ipv4.ip_forward=1` (tunnelops writes "
                       "/etc/sysctl.d/90-tunnelops.conf), or re-run `inv bootstrap`")


def _input_allows(s: State, kind: str, proto: str, port: int) -> tuple[bool, str]:
    wan, pub = wan_and_public(s)
    if kind == "nftables":
        rs = netfilter.read(s.read("vps", NftRuleset()))
        return netfilter.verdict(rs, "input", Pkt(iif=wan, proto=proto, dport=port, daddr=pub))
    if kind == "firewalld":
        fw = s.read("vps", FirewalldZones("runtime"))
        z = zone(fw.get("zones", {}), wan, fw.get("default", "public"))
        info = fw.get("zones", {}).get(z, {})
        svc = {"tcp/22": "ssh"}.get(f"{proto}/{port}")
        return port_in(info.get("ports", []), proto, port) or svc in info.get("services", []), \
            f"zone {z}"
    lines = s.read("vps", IptablesRules()).get("filter", [])
    spec = PortSpec(proto, port, port)
    return any(_ipt_port(line, spec, port) and "-j ACCEPT" in line for line in lines), \
        "no ACCEPT rule in iptables-save"


@dataclass(frozen=True)
class Firewall(Check):
    """The VPS lets SSH and WireGuard in."""

    id = "vps.firewall"

    def name(self, s: State) -> str:
        return (f"vps firewall allows SSH {s.site.vps.ssh_port}/tcp, WireGuard "
                f"{s.site.tunnel.listen_port}/udp")

    def needs(self, ctx: Ctx) -> dict:
        return {"vps": FIREWALL}

    def evaluate(self, s: State) -> Outcome:
        kind = backend(s)
        allowed = {what: _input_allows(s, kind, proto, port) for proto, port, what in (
            ("tcp", s.site.vps.ssh_port, "SSH"), ("udp", s.site.tunnel.listen_port,
                                                  "WireGuard"))}
        return Outcome(all(a[0] for a in allowed.values()),
                       f"{kind}: " + ", ".join(f"{w} {'accepted' if a[0] else 'BLOCKED'}"
                                               for w, a in allowed.items()),
                       "; ".join(f"{w}: {a[1]}" for w, a in allowed.items() if not a[0])
                       + f": {FIX[kind]}")


def _snat(s: State, done: list[bool], missing: str, present: str) -> dict:
    """SNAT (client_ip = "snat") or its absence ("preserve": the player's address reaches
    home), as one more part of the row."""
    if s.site.snat:
        return {"SNAT": (all(done), missing)}
    return {"no SNAT": (not any(done), present)}


def _forwards(s: State, kind: str, spec: PortSpec) -> dict[str, tuple[bool, str]]:
    """filter, DNAT, and SNAT or its absence, for a service port."""
    t = s.site.tunnel
    home, tun = str(t.home_address), str(t.vps_address)
    wan, pub = wan_and_public(s)
    ports = [spec.first, spec.last] if spec.is_range else [spec.first]
    if kind == "nftables":
        rs = netfilter.read(s.read("vps", NftRuleset()))
        fil, dn, sn = [], [], []
        for port in ports:
            pkt = Pkt(iif=wan, proto=spec.proto, dport=port, daddr=pub)
            d = netfilter.nat(rs, "prerouting", pkt)
            dn.append(d is not None and d[0] == "dnat" and d[1] == home)
            fwd = Pkt(iif=wan, oif=t.interface, proto=spec.proto, dport=port, daddr=home,
                      dnat=True)
            fil.append(netfilter.verdict(rs, "forward", fwd)[0])
            sn_ = netfilter.nat(rs, "postrouting", fwd)
            sn.append(sn_ is not None and (sn_[0] == "masquerade" or
                                           (sn_[0] == "snat" and sn_[1] == tun)))
        return {"filter": (all(fil), "forward not accepted"),
                "DNAT": (all(dn), f"no dnat to {home}"),
                **_snat(s, sn, f"no snat to {tun}", f"snat to {tun}")}
    if kind == "firewalld":
        fw = s.read("vps", FirewalldZones("runtime"))
        zones = fw.get("zones", {})
        z = zone(zones, wan, fw.get("default", "public"))
        fps = " ".join(zones.get(z, {}).get("forward-ports", []))
        fwd = f"port={spec.nft}:proto={spec.proto}:" in fps and f"toaddr={home}" in fps
        wgzone = zone(zones, t.interface, fw.get("default", "public"))
        masq = zones.get(wgzone, {}).get("masquerade", ["no"]) == ["yes"]
        return {"filter": (fwd, f"no forward-port in zone {z}"),
                "DNAT": (fwd, f"no forward-port in zone {z}"),
                **_snat(s, [masq], f"no masquerade in zone {wgzone}",
                        f"masquerade in zone {wgzone}")}
    tabs = s.read("vps", IptablesRules())
    nat, fil = tabs.get("nat", []), tabs.get("filter", [])

    def has(lines: list[str], pred: Callable[[str], bool], port: int) -> bool:
        return any(pred(line) and _ipt_port(line, spec, port) is not False
                   and (_ipt_port(line, spec, port) or "--dport" not in line) for line in lines)

    return {
        "filter": (all(has(fil, lambda x: "-j ACCEPT" in x and "--dport" in x, p)
                       for p in ports), "no ACCEPT rule"),
        "DNAT": (all(has(nat, lambda x: f"--to-destination {home}" in x, p) for p in ports),
                 f"no DNAT to {home}"),
        **_snat(s, [has(nat, lambda x: f"--to-source {tun}" in x or (
            "-j MASQUERADE" in x and f"-o {t.interface}" in x), p) for p in ports],
            f"no SNAT to {tun}", f"SNAT to {tun}")}


@dataclass(frozen=True)
class Forwards(Check):
    """The VPS forwards a service port to home: filter, DNAT and SNAT."""

    service: Service
    spec: PortSpec

    @property
    def id(self) -> str:
        return f"vps.port.{self.spec}"

    def name(self, s: State) -> str:
        return f"vps forwards {self.spec} to home"

    def needs(self, ctx: Ctx) -> dict:
        return {"vps": FIREWALL}

    def evaluate(self, s: State) -> Outcome:
        kind = backend(s)
        parts = _forwards(s, kind, self.spec)
        missing = [k for k, (good, _) in parts.items() if not good and k != "no SNAT"]
        problems = [f"{' and '.join(missing)} for {self.spec} missing on the VPS"] \
            if missing else []
        if not parts.get("no SNAT", (True, ""))[0]:
            problems.append(f"the VPS SNATs {self.spec} to {s.site.tunnel.vps_address}, so "
                            "the game sees that and not the player (client_ip = preserve)")
        return Outcome(all(good for good, _ in parts.values()),
                       f"{kind}: " + ", ".join(f"{k} {'✓' if good else '✗ (' + why + ')'}"
                                               for k, (good, why) in parts.items()),
                       "; ".join(problems) + f": {FIX[kind]}")


CONNTRACK = Sysctls(("net.netfilter.nf_conntrack_count", "net.netfilter.nf_conntrack_max"))
CONNTRACK_FULL = 0.9  # above this share of its table, the kernel soon drops new connections


@dataclass(frozen=True)
class ConntrackRoom(Check):
    """Every forwarded player is an entry of the VPS's connection tracking (DNAT needs it):
    once its table is full the kernel drops new connections, players first (a flood of UDP
    to a game port fills it; so does a small nf_conntrack_max on a small VPS)."""

    id = "vps.conntrack"

    def name(self, s: State) -> str:
        return "vps connection tracking has room"

    def needs(self, ctx: Ctx) -> dict:
        return {"vps": (CONNTRACK,)}

    def evaluate(self, s: State) -> Outcome:
        values = s.read("vps", CONNTRACK)
        count, limit = (values.get(k, "") for k in CONNTRACK.keys)
        if not (count.isdigit() and limit.isdigit() and int(limit)):
            return skip("not checked: the VPS shows no connection tracking table")
        used = int(count) / int(limit)
        return Outcome(used < CONNTRACK_FULL, f"{count} of {limit} entries ({used:.0%})",
                       f"the table is nearly full: new players are dropped; raise it "
                       f"(`sysctl -w net.netfilter.nf_conntrack_max={int(limit) * 4}`) and "
                       "look for a flood (`conntrack -L | sort | uniq -c | sort -rn | head`)")


def checks(ctx: Ctx) -> list[Check]:
    return [Forwarding(), Firewall(),
            *(Forwards(svc, spec) for svc in ctx.site.services for spec in svc.ports),
            ConntrackRoom()]
