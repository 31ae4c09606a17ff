"""Every awall policy file tunnelops generates, checked against awall's schema rules for the
objects it uses: `service`, `filter`, `dnat`, `snat` (and `zone`, `policy` at the top).

Written from awall's documented schema (MANUAL.md of alpinelinux/awall, "Configuration
Objects", "List Parameters", "Limits", "Filter Rules", "NAT Rules"), its built-in service
list (mandatory/services.json) and, for `match`, its own test policies
(test/optional/custom.json). The rule the issue is about: "All rule objects, except for
policies, may have an attribute named service [...] This attribute is a list of service
names, referring to the keys of the top-level service dictionary" -- a name, never an
inline definition (awall's strict check: "Type mismatch: 'filter.1.service' should be
string, is table").
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from tests.unit.facts import generate
from tests.unit.facts.generate import HOME_PUB, INVENTORY, RANGE_SITE, SITE
from tunnelops.backends import awall as awall_backend
from tunnelops.changes import FileChange
from tunnelops.inventory.new import new_site
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.steps import vps
from tunnelops.steps.context import Ctx

# awall's own service definitions (mandatory/services.json), the ones a policy may name
# without defining them
BUILTIN_SERVICES = frozenset({
    "babel", "bacula-dir", "bacula-fd", "bacula-sd", "bgp", "dhcp", "dhcpv6", "discard",
    "dns", "epmap", "ftp", "gre", "hp-pdl", "http", "http-alt", "https", "icmp", "igmp",
    "imap", "imaps", "ipsec", "irc", "kerberos", "kpasswd", "l2tp", "ldap", "ldaps",
    "microsoft-ds", "ms-sql-s", "ms-sql-m", "msft-gc", "msft-gc-ssl", "netbios-ds",
    "netbios-ns", "netbios-ssn", "ntp", "ospf", "pgsql", "ping", "pop3", "pop3s", "radius",
    "radius-acct", "rdp", "rsync", "rtmp", "rtsp", "sieve", "sip", "sip-tls", "smtp", "snmp",
    "snmp-trap", "ssh", "submission", "syslog", "telnet", "teredo", "tftp", "vnc"})
TOP_LEVEL = frozenset({"description", "import", "after", "before", "variable", "zone",
                       "service", "policy", "filter", "dnat", "snat", "log", "ipset",
                       "packet-log", "mark", "route-track", "classify", "tproxy", "clamp-mss",
                       "no-track"})
RULE_ATTRS = frozenset({"in", "out", "src", "dest", "ipset", "ipsec", "service", "match"})
FILTER_ATTRS = RULE_ATTRS | {"action", "conn-limit", "flow-limit", "log", "dnat", "no-track",
                             "related"}
NAT_ATTRS = RULE_ATTRS | {"to-addr", "to-port", "action"}
POLICY_ATTRS = frozenset({"in", "out", "action", "log"})
SERVICE_ATTRS = frozenset({"proto", "port", "type", "reply-type", "family", "ct-helper"})
ZONE_ATTRS = frozenset({"iface", "addr", "route-back"})
LIMIT_ATTRS = frozenset({"count", "interval", "mask", "log"})
PORT = re.compile(r"^\d{1,5}(-\d{1,5})?$")


def _type(value: Any) -> str:
    """The type names awall's messages use (Lua's)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "table" if isinstance(value, (dict, list)) else "nil"


class Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def mismatch(self, path: str, want: str, value: Any) -> None:
        self.errors.append(f"Type mismatch: '{path}' should be {want}, is {_type(value)}")

    def items(self, path: str, value: Any) -> list[tuple[str, Any]]:
        """A list parameter: a list, or a single value meaning a list of one (its path then
        is the attribute's own, as awall reports it)."""
        if isinstance(value, list):
            return [(f"{path}.{i}", v) for i, v in enumerate(value, 1)]
        return [(path, value)]

    def strings(self, path: str, value: Any) -> list[str]:
        out = []
        for p, v in self.items(path, value):
            if isinstance(v, str):
                out.append(v)
            else:
                self.mismatch(p, "string", v)
        return out

    def unknown(self, path: str, obj: dict, allowed: frozenset[str]) -> None:
        for key in sorted(set(obj) - allowed):
            self.errors.append(f"Unknown attribute: '{path}.{key}'")

    def obj(self, path: str, value: Any) -> dict | None:
        if not isinstance(value, dict):
            self.mismatch(path, "table", value)
            return None
        return value

    # ------------------------------------------------------------------ auxiliary objects
    def service_def(self, path: str, value: Any) -> None:
        d = self.obj(path, value)
        if d is None:
            return
        self.unknown(path, d, SERVICE_ATTRS)
        if "proto" not in d:
            self.errors.append(f"Missing attribute: '{path}.proto'")
        elif not isinstance(d["proto"], (str, int)) or isinstance(d["proto"], bool):
            self.mismatch(f"{path}.proto", "string or number", d["proto"])
        if "port" in d:
            if d.get("proto") not in ("tcp", "udp", 6, 17):
                self.errors.append(f"'{path}.port' is only valid with tcp or udp")
            for p, v in self.items(f"{path}.port", d["port"]):
                if isinstance(v, bool) or not isinstance(v, (int, str)) or (
                        isinstance(v, str) and not PORT.match(v)):
                    self.errors.append(f"Invalid port: '{p}' ({v!r}): a number or 'first-last'")
                else:
                    for n in str(v).split("-"):
                        if not 1 <= int(n) <= 65535:
                            self.errors.append(f"Invalid port: '{p}' ({v!r})")
        if "family" in d and d["family"] not in ("inet", "inet6"):
            self.errors.append(f"Invalid family: '{path}.family'")

    def limit(self, path: str, value: Any) -> None:
        if isinstance(value, int) and not isinstance(value, bool):
            return
        d = self.obj(path, value)
        if d is None:
            return
        self.unknown(path, d, LIMIT_ATTRS)
        for key in ("count", "interval"):
            if key in d and (isinstance(d[key], bool) or not isinstance(d[key], int)):
                self.mismatch(f"{path}.{key}", "number", d[key])
        if "count" not in d:
            self.errors.append(f"Missing attribute: '{path}.count'")

    # ------------------------------------------------------------------ rules
    def rule(self, path: str, d: dict, zones: set[str], services: set[str]) -> None:
        for attr in ("in", "out"):
            if attr in d:
                for z in self.strings(f"{path}.{attr}", d[attr]):
                    if z != "_fw" and z not in zones:
                        self.errors.append(f"Invalid zone: '{path}.{attr}' ({z})")
        for attr in ("src", "dest"):
            if attr in d:
                self.strings(f"{path}.{attr}", d[attr])
        if "ipsec" in d and d["ipsec"] not in ("in", "out"):
            self.errors.append(f"Invalid value: '{path}.ipsec'")
        if "service" in d:
            for name in self.strings(f"{path}.service", d["service"]):
                if name not in services:
                    self.errors.append(f"Invalid service: '{path}.service' ({name})")
        if "match" in d and not isinstance(d["match"], str):
            self.mismatch(f"{path}.match", "string", d["match"])

    def filter(self, path: str, value: Any, zones: set[str], services: set[str]) -> None:
        d = self.obj(path, value)
        if d is None:
            return
        self.unknown(path, d, FILTER_ATTRS)
        self.rule(path, d, zones, services)
        action = d.get("action", "accept")
        if action not in ("accept", "reject", "drop", "tarpit", "pass"):
            self.errors.append(f"Invalid filter action: '{path}.action' ({action})")
        limits = [k for k in ("conn-limit", "flow-limit") if k in d]
        if len(limits) > 1:
            self.errors.append(f"Cannot specify multiple limits for a single filter rule: "
                               f"'{path}'")
        for k in limits:
            if action != "accept":
                self.errors.append(f"Cannot specify limit for {action} filter: '{path}'")
            self.limit(f"{path}.{k}", d[k])
        if "dnat" in d and not isinstance(d["dnat"], (str, dict)):
            self.mismatch(f"{path}.dnat", "string", d["dnat"])
        if "no-track" in d and not isinstance(d["no-track"], bool):
            self.mismatch(f"{path}.no-track", "boolean", d["no-track"])

    def nat(self, path: str, value: Any, zones: set[str], services: set[str]) -> None:
        d = self.obj(path, value)
        if d is None:
            return
        self.unknown(path, d, NAT_ATTRS)
        self.rule(path, d, zones, services)
        if "to-addr" in d:
            addr = d["to-addr"]
            if not isinstance(addr, str) or not re.fullmatch(
                    r"\d+\.\d+\.\d+\.\d+(-\d+\.\d+\.\d+\.\d+)?", addr):
                self.errors.append(f"Invalid address: '{path}.to-addr' ({addr!r}): an IPv4 "
                                   "address or range")
        if "to-port" in d and not (isinstance(d["to-port"], int) or (
                isinstance(d["to-port"], str) and PORT.match(d["to-port"]))):
            self.errors.append(f"Invalid port: '{path}.to-port'")
        if d.get("action", "include") not in ("include", "exclude"):
            self.errors.append(f"Invalid NAT action: '{path}.action'")

    # ------------------------------------------------------------------ a whole configuration
    def check(self, policies: dict[str, dict]) -> list[str]:
        """All the policy files awall would load together (zones and services are shared
        between files)."""
        zones: set[str] = set()
        services: set[str] = set(BUILTIN_SERVICES)
        # awall merges every policy's named objects into one namespace, where a later
        # definition silently replaces an earlier one: two sites' "vpn" would be one
        defined: dict[tuple[str, str], tuple[str, Any]] = {}
        for name, p in policies.items():
            for kind in ("zone", "service"):
                for key, value in (p.get(kind) or {}).items():
                    first = defined.setdefault((kind, key), (name, value))
                    if first[1] != value:
                        self.errors.append(f"{kind} {key!r} defined differently in "
                                           f"{first[0]} and {name}: one replaces the other")
        for name, p in policies.items():
            self.unknown(name, p, TOP_LEVEL)
            if not isinstance(p.get("description", ""), str):
                self.mismatch(f"{name}.description", "string", p["description"])
            for zname, z in (p.get("zone") or {}).items():
                zd = self.obj(f"{name}.zone.{zname}", z)
                if zd is not None:
                    self.unknown(f"{name}.zone.{zname}", zd, ZONE_ATTRS)
                    for attr in ("iface", "addr"):
                        if attr in zd:
                            self.strings(f"{name}.zone.{zname}.{attr}", zd[attr])
                zones.add(zname)
            for sname, sdefs in (p.get("service") or {}).items():
                for sp, sd in self.items(f"{name}.service.{sname}", sdefs):
                    self.service_def(sp, sd)
                services.add(sname)
        for p in policies.values():
            for i, d in enumerate(p.get("policy", []), 1):
                pd = self.obj(f"policy.{i}", d)
                if pd is not None:
                    self.unknown(f"policy.{i}", pd, POLICY_ATTRS)
                    self.rule(f"policy.{i}", pd, zones, set())
            for kind in ("filter", "dnat", "snat"):
                rules = p.get(kind, [])
                for path, d in self.items(kind, rules):
                    if kind == "filter":
                        self.filter(path, d, zones, services)
                    else:
                        self.nat(path, d, zones, services)
        return self.errors


def check(policies: dict[str, dict]) -> list[str]:
    return Checker().check(policies)


# ---------------------------------------------------------------------------- the checker
SEED_WIREGUARD = {
    "description": "Allow wireguard from internet",
    "filter": [{"in": "inet", "service": {"proto": "udp", "port": 51821},
                "action": "accept"}]}
SEED_BASE = {"zone": {"inet": {"iface": "eth0"}, "vpn": {"iface": "wg0"}},
             "policy": [{"in": "inet", "action": "drop"}], "snat": [{"out": "inet"}]}


def test_the_checker_rejects_the_seeds_inline_service_as_awall_does() -> None:
    assert check({"base": SEED_BASE, "wireguard": SEED_WIREGUARD}) == [
        "Type mismatch: 'filter.1.service' should be string, is table"]
    # and a few other mistakes it must see
    assert check({"base": SEED_BASE, "x": {"filter": [
        {"in": "nowhere", "service": "nosuch", "action": "drop", "conn-limit": 3}],
        "snat": [{"out": "vpn", "from-addr": "192.168.2.1"}],
        "service": {"bad": {"proto": "icmp", "port": 70000}}}}) == [
        "'x.service.bad.port' is only valid with tcp or udp",
        "Invalid port: 'x.service.bad.port' (70000)",
        "Invalid zone: 'filter.1.in' (nowhere)",
        "Invalid service: 'filter.1.service' (nosuch)",
        "Cannot specify limit for drop filter: 'filter.1'",
        "Unknown attribute: 'snat.1.from-addr'"]


# ---------------------------------------------------------------------------- what we generate
def recorded(name: str):
    return generate.facts(name)


SITES = {
    "seed": SITE,
    "seed, client_ip = snat": dataclasses.replace(SITE, client_ip="snat"),
    "port range": RANGE_SITE,
    "ssh on 2222, two services": new_site(
        "home", "vps.example.net:2222", "homeserver", services=(
            *SITE.services,
            Service("web", "docker.io/example/web:1", (PortSpec.parse("8080-8090/tcp"),),
                    "web"))),
}


@pytest.mark.parametrize("site", SITES.values(), ids=SITES.keys())
def test_every_generated_awall_file_passes_awalls_schema(site) -> None:
    """From the recorded Alpine VPS's own plan: what a fresh bootstrap writes."""
    ctx = Ctx(site, "vps", recorded("alpine-vps-fresh"), peer_public_key=HOME_PUB)
    ctx.vps_public_ip, ctx.wan_interface = vps.discover(ctx, INVENTORY)
    fw = next(p for p in vps.configure(ctx) if p.step == "firewall")
    written = {c.path.rsplit("/", 1)[1].removesuffix(".json"): json.loads(c.content)
               for c in fw.changes if isinstance(c, FileChange)}
    assert set(written) == {"tunnelops-wg0-base", "tunnelops-wg0-ssh",
                            "tunnelops-wg0-wireguard",
                            *(f"tunnelops-wg0-service-{s.name}" for s in site.services)}
    assert check(written) == []
    # named services only, under every rule
    for policy in written.values():
        for kind in ("filter", "dnat", "snat"):
            assert all(isinstance(r.get("service", ""), str) for r in policy.get(kind, []))


def test_ssh_on_another_port_defines_its_service() -> None:
    site = SITES["ssh on 2222, two services"]
    ctx = Ctx(site, "vps", recorded("alpine-vps-fresh"))
    ssh = json.loads(awall_backend.files(ctx, "eth0", site.services)[
        "/etc/awall/optional/tunnelops-wg0-ssh.json"])
    assert ssh["service"] == {"tunnelops-ssh": {"proto": "tcp", "port": 2222}}


def policies(site) -> dict[str, dict]:
    ctx = Ctx(site, "vps", recorded("alpine-vps-fresh"))
    return {n: json.loads(t) for n, t in awall_backend.policies(ctx, "eth0",
                                                                site.services).items()}


def test_three_homes_each_service_to_its_own() -> None:
    written = policies(generate.FLEET)
    assert check(written) == []
    assert {n: p["dnat"][0]["to-addr"] for n, p in written.items() if "dnat" in p} == {
        "tunnelops-wg0-service-game": "192.168.2.2",
        "tunnelops-wg0-service-mumble": "192.168.2.3",
        "tunnelops-wg0-service-srcds": "192.168.2.20"}


def test_two_sites_on_one_vps_are_checked_together() -> None:
    """Two sites' policies loaded by one awall: no name of one replaces the other's (the
    checker sees what awall would merge). The SSH service is the VPS's, the same in both."""
    other = new_site("friend", "vps.example.net", "friend.example.net", services=(
        Service("voice", "docker.io/example/voice:1", (PortSpec.parse("64738/udp"),), "voice"),),
        interface="wg1", listen_port=51822, subnet="192.168.3.0/24")
    both = policies(SITE) | policies(other)
    assert len(both) == 8 and check(both) == []
    assert both["tunnelops-wg1-wireguard"]["service"] == {
        "tunnelops-wg1-wireguard": {"proto": "udp", "port": 51822}}
    # what the older, fixed names did: one "vpn" zone for both, the second replacing the first
    old = {"a": {"zone": {"vpn": {"iface": "wg0"}}}, "b": {"zone": {"vpn": {"iface": "wg1"}}}}
    assert check(old) == ["zone 'vpn' defined differently in a and b: one replaces the other"]
