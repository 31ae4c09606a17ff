"""Firewalls as the host runs them: firewalld's zones, awall's policies and the iptables
rules it made, and nftables (read as JSON by tunnelops.netfilter, except the terse listing of
our table that its drift record is compared with, as text, whole)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from tunnelops import netfilter
from tunnelops.probes.base import Probe, not_key, q
from tunnelops.render.nftables import Element, set_proto

Zones = dict[str, dict[str, list[str]]]  # zone -> key -> values (firewall-cmd's listing)


class FirewalldView(TypedDict, total=False):
    running: bool
    default: str  # the default zone (runtime view only)
    zones: Zones


# firewalld's own D-Bus calls for a listing, in ONE process of the interpreter firewall-cmd
# runs on (it has the dbus module: firewall-cmd imports it), without firewall-cmd's imports
# (~2 s of its 2-3 s under emulation); the laptop formats the settings as firewall-cmd would
# (listing()). Exit 4: firewalld is not on the bus, or there is no system bus (not running,
# as firewall-cmd would say, seconds later); any other failure (no dbus module, a bus that
# refuses us, an older firewalld without these calls, a bug):
# another code, and the probe asks firewall-cmd itself. Every proxy without introspection
# (each interface is named): dbus-python would otherwise ask each new object for its XML
# description first, which firewalld builds in Python: ~0.5 s of CPU under emulation.
# What both of tunnelops's firewalld programs (this listing, backends/firewalld_dbus.py's
# changes) start with: exit 3 without the dbus module (another interpreter than firewall-cmd's),
# the bus names, and obj(): a proxy without introspection (every call names its interface).
DBUS_PRELUDE = r"""
import json
import sys
try:
    import dbus
except ImportError:
    sys.exit(3)
F = "org.fedoraproject.FirewallD1"
N = "org.freedesktop.NetworkManager"
P = "org.freedesktop.DBus.Properties"


def obj(bus, name, path):
    return bus.get_object(name, path, introspect=False)
"""

FIREWALLD_DBUS = DBUS_PRELUDE + r"""


def conv(v):
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, dict):  # no zone's short and long description: nothing lists them
        return dict((str(k), conv(x)) for k, x in v.items()
                    if k not in ("short", "description"))
    if isinstance(v, (list, tuple)):
        return [conv(x) for x in v]
    if isinstance(v, int):
        return int(v)
    return v


def nm_zones(bus):
    # firewall-cmd --permanent lists NetworkManager's interfaces in the zone of their
    # profile (connection.zone), when it can import NetworkManager's bindings (libnm)
    import glob
    import os
    dirs = os.environ.get("GI_TYPELIB_PATH", "").split(":") + glob.glob(
        "/usr/lib*/girepository-1.0") + glob.glob("/usr/lib/*/girepository-1.0")
    if not any(d and os.path.exists(d + "/NM-1.0.typelib") for d in dirs):
        return []
    out = []
    try:
        nm = obj(bus, N, "/org/freedesktop/NetworkManager")
        for path in nm.Get(N, "ActiveConnections", dbus_interface=P):
            ac = obj(bus, N, path).GetAll(N + ".Connection.Active",
                                                                  dbus_interface=P)
            if ac.get("Vpn"):
                continue
            con = obj(bus, N, ac["Connection"])
            try:  # NM_GENERATED | NM_VOLATILE: firewalld ignores those profiles
                if con.Get(N + ".Settings.Connection", "Flags", dbus_interface=P) & 6:
                    continue
            except dbus.DBusException:  # before NetworkManager 1.12
                if con.Get(N + ".Settings.Connection", "Unsaved", dbus_interface=P):
                    continue
            settings = con.GetSettings(dbus_interface=N + ".Settings.Connection")
            zone = str(settings.get("connection", {}).get("zone", ""))
            for dev in ac.get("Devices", []):
                iface = obj(bus, N, dev).Get(N + ".Device", "IpInterface",
                                                   dbus_interface=P)
                if iface:
                    out.append([str(iface), zone])
    except dbus.DBusException:
        return []
    return out


def view(bus, name):
    out = {"zones": []}
    if name == "runtime":
        fw = obj(bus, F, "/org/fedoraproject/FirewallD1")
        for z in fw.getZones(dbus_interface=F + ".zone"):
            out["zones"].append([str(z), conv(fw.getZoneSettings2(z, dbus_interface=F + ".zone"))])
    else:
        cfg = obj(bus, F, "/org/fedoraproject/FirewallD1/config")
        for z in sorted(cfg.getZoneNames(dbus_interface=F + ".config")):
            o = obj(bus, F, cfg.getZoneByName(z, dbus_interface=F + ".config"))
            out["zones"].append([str(z), conv(o.getSettings2(dbus_interface=F + ".config.zone"))])
        out["nm"] = nm_zones(bus)
    return json.dumps(out)


# argv: the view to print, the batch's directory, the views to keep there for its next probes
views, code, found = [sys.argv[1]] + sys.argv[3:], 0, {}
try:
    try:
        bus = dbus.SystemBus()
    except dbus.DBusException as e:  # no system bus at all: firewalld (on it) cannot run
        if e.get_dbus_name() not in ("org.freedesktop.DBus.Error.FileNotFound",
                                     "org.freedesktop.DBus.Error.NoServer"):
            raise
        code = 4
    if not code and not bus.name_has_owner(F):  # the bus only: no activation of firewalld
        code = 4
    for v in views if not code else ():
        found[v] = view(bus, v)
except Exception:
    code = 3
for v in views[1:]:
    try:
        with open(sys.argv[2] + "/fwd." + v, "w") as f:
            f.write((found[v] if not code else "!%d" % code) + "\n")
    except OSError:
        pass
if code:
    sys.exit(code)
print(found[views[0]])
"""

# _fwd_dbus VIEW: the listing's settings as JSON (see FIREWALLD_DBUS), by the interpreter on
# firewall-cmd's first line (a shell builtin reads it). In a batch ($T), the other views its
# probes asked for ($T/fwd.views, by their setup) are read by the same process and kept for
# them ($T/fwd.VIEW: the JSON, or !CODE): one Python start, not one per view.
FIREWALLD_FUNCTIONS = (
    "_fwd_dbus() { if [ -n \"${T:-}\" ] && [ -e \"$T/fwd.$1\" ]; then "
    "IFS= read -r _l < \"$T/fwd.$1\"; case $_l in '!'*) return \"${_l#!}\";; esac; "
    "printf '%s\\n' \"$_l\"; return 0; fi; _more=; "
    "if [ -n \"${T:-}\" ] && [ -e \"$T/fwd.views\" ]; then while IFS= read -r _v; do "
    "case \" $1 $_more \" in *\" $_v \"*) ;; *) _more=\"$_more $_v\";; esac; "
    "done < \"$T/fwd.views\"; fi; "
    "IFS= read -r _py < \"$(command -v firewall-cmd)\" || return 3; "
    "_py=${_py#\\#!}; case $_py in *python*) ;; *) return 3;; esac; "
    f"$_py -c {q(FIREWALLD_DBUS)} \"$1\" \"${{T:-/nonexistent}}\" $_more; }}")

DEFAULT_TARGET = "{chain}_{zone}"  # firewalld's own name for the target "default"


@dataclass(frozen=True)
class FirewalldZones(Probe[FirewalldView]):
    """Every zone, runtime (what firewalld enforces) or permanent (what it loads), as
    `firewall-cmd [--permanent] --list-all-zones` lists them. Read over D-Bus by one small
    Python process (firewall-cmd is a Python program with heavy imports: ~0.2 s here,
    seconds under emulation), the same calls firewall-cmd makes; firewall-cmd itself where
    that cannot be (reader "firewall-cmd": always). {} when firewalld is not running
    (systemd's word for it, or firewalld absent from the bus)."""

    view: str = "runtime"  # or "permanent"
    reader: str = not_key("dbus")  # or "firewall-cmd": how it reads, not what
    kind = "firewalld"
    slow = True
    functions = FIREWALLD_FUNCTIONS

    @property
    def after(self) -> tuple[str, ...]:  # type: ignore[override]
        # the permanent view behind the runtime one, in its job: read by the same process
        return ("firewalld",) if self.view == "permanent" and self.reader == "dbus" else ()

    def setup(self) -> str:
        return f"echo {q(self.view)} >> \"$T/fwd.views\"" if self.reader == "dbus" else ""

    def shell(self) -> str:
        flag = "--permanent " if self.view == "permanent" else ""
        default = ("; sed -n 's/^DefaultZone=/default=/p' /etc/firewalld/firewalld.conf"
                   if self.view == "runtime" else "")
        dbus = ""
        if self.reader == "dbus":
            dbus = (f"z=$(_fwd_dbus {q(self.view)} 2>/dev/null); case $? in "
                    f"0) echo running{default}; echo @dbus; printf '%s\\n' \"$z\"; exit 0;; "
                    "4) exit 0;; esac; ")
        # firewall-cmd is a Python program (seconds on a slow host) even to say firewalld
        # is not running: under systemd, systemctl (C) says so first
        return ("command -v firewall-cmd >/dev/null || exit 0; if [ -d /run/systemd/system ] "
                "&& ! systemctl is-active -q firewalld 2>/dev/null; then exit 0; fi; "
                f"{dbus}z=$(firewall-cmd {flag}--list-all-zones) || exit 0; "
                f"echo running{default}; echo @zones; printf '%s\\n' \"$z\"")

    def parse(self, text: str) -> FirewalldView:
        if not text.startswith("running"):
            return {}
        out: FirewalldView = {"running": True, "zones": {}}
        if self.view == "runtime":
            out["default"] = "public"
        zones, zone, listing, key = out["zones"], None, False, ""
        lines = text.splitlines()
        for n, line in enumerate(lines[1:], 1):
            if line.startswith("default=") and not listing:
                out["default"] = line.split("=", 1)[1].strip()
            elif line == "@dbus" and not listing:
                out["zones"] = _dbus_zones("\n".join(lines[n + 1:]))
                break
            elif line == "@zones":
                listing = True
            elif listing and line and not line[0].isspace():
                zone = zones.setdefault(line.split()[0], {})
            elif zone is not None and line.startswith("\t") and key:
                # forward-ports and rich rules: one per line after their key, tab-indented
                zone[key].append(line.strip())
            elif listing and zone is not None and ":" in line:
                key, _, v = line.strip().partition(":")
                zone[key] = v.split()
        return out


def _dbus_zones(text: str) -> Zones:
    """FIREWALLD_DBUS's JSON as the zones firewall-cmd would list."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    extra: dict[str, list[str]] = {}
    for iface, zone in data.get("nm", []):
        extra.setdefault(zone, []).append(iface)
    return {name: listing(settings, extra.get(name, []))
            for name, settings in data.get("zones", [])}


def _rich_rule_priority(rule: str) -> int:
    """firewall-cmd's sort key for a zone's rich rules: their priority="N" (0 without)."""
    i = rule.find("priority=")
    if i < 0:
        return 0
    i += len("priority=")
    end = rule.find(" ", i)
    try:
        return int(rule[i:end if end >= 0 else len(rule)].replace('"', ""))
    except ValueError:
        return 0


def listing(s: dict, extra_interfaces: Sequence[str] = ()) -> dict[str, list[str]]:
    """One zone's settings (firewalld's getZoneSettings2 / getSettings2 dictionary) as the
    keys and words of its `firewall-cmd --list-all-zones` listing (firewalld's
    print_zone_info: what is sorted there is sorted here, absent keys are firewalld's
    defaults; the priorities only where firewalld has them, 2.0 on)."""

    def words(items: list[str]) -> list[str]:
        return " ".join(items).split()

    def yes(key: str) -> list[str]:
        return ["yes" if s.get(key) else "no"]

    target = s.get("target", DEFAULT_TARGET)
    out = {"target": words(["default" if target == DEFAULT_TARGET else target])}
    for key in ("ingress_priority", "egress_priority"):
        if key in s:
            out[key.replace("_", "-")] = [str(s[key])]
    out |= {
        "icmp-block-inversion": yes("icmp_block_inversion"),
        "interfaces": words(sorted(set(list(s.get("interfaces", [])) + list(extra_interfaces)))),
        "sources": words(s.get("sources", [])),
        "services": words(sorted(s.get("services", []))),
        "ports": words([f"{p}/{proto}" for p, proto in s.get("ports", [])]),
        "protocols": words(sorted(s.get("protocols", []))),
        "forward": yes("forward"),
        "masquerade": yes("masquerade"),
        "forward-ports": [f"port={p}:proto={proto}:toport={to}:toaddr={addr}".strip()
                          for p, proto, to, addr in s.get("forward_ports", [])],
        "source-ports": words([f"{p}/{proto}" for p, proto in s.get("source_ports", [])]),
        "icmp-blocks": words(s.get("icmp_blocks", [])),
        "rich rules": [r.strip() for r in sorted(s.get("rules_str", []),
                                                 key=_rich_rule_priority)],
    }
    return out


def zone_of(zones: Zones, iface: str) -> str | None:
    return next((z for z, info in zones.items() if iface in info.get("interfaces", [])), None)


@dataclass(frozen=True)
class AwallPolicies(Probe[dict[str, str]]):
    """awall's policies and their status (enabled, disabled, required)."""

    kind = "awall"
    slow = True

    def shell(self) -> str:
        return "command -v awall >/dev/null && awall list"

    def parse(self, text: str) -> dict[str, str]:
        out = {}
        for line in text.splitlines():
            cols = line.split()
            if len(cols) >= 2:
                out[cols[0]] = cols[1]
        return out


# awall's live rules (both families) without counters, and what tunnelops recorded after its
# last `awall activate` (the same text then): awall itself has no record of what is live
AWALL_LIVE = ("{ iptables-save; ip6tables-save; } 2>/dev/null | "
              "sed -e '/^#/d' -e 's/ \\[[0-9]*:[0-9]*\\]$//'")
AWALL_APPLIED = "/var/lib/tunnelops/awall.applied"


@dataclass(frozen=True)
class AwallLive(Probe[str]):
    """The live iptables rules of an awall host, as its drift record keeps them."""

    kind = "awall_live"
    slow = True

    def shell(self) -> str:
        return f"command -v awall >/dev/null && {{ {AWALL_LIVE}; }}"

    def parse(self, text: str) -> str:
        return text


@dataclass(frozen=True)
class IptablesRules(Probe[dict[str, list[str]]]):
    """The IPv4 rules awall made (iptables-save), per table: `-A CHAIN ...` lines."""

    kind = "iptables"
    slow = True

    def shell(self) -> str:
        return "command -v awall >/dev/null && iptables-save"

    def parse(self, text: str) -> dict[str, list[str]]:
        tables: dict[str, list[str]] = {}
        cur = None
        for line in text.splitlines():
            if line.startswith("*"):
                cur = tables.setdefault(line[1:].strip(), [])
            elif cur is not None and line.startswith("-A "):
                cur.append(line)
        return tables


def nft_terse(table: str) -> str:
    """The terse listing of TABLE ("inet tunnelops-wg0") that its drift record keeps."""
    return f"nft -st list table {table}"


def _table_words(table: str) -> str:
    family, _, name = table.partition(" ")
    return f"{q(family)} {q(name)}"


@dataclass(frozen=True)
class NftTable(Probe["str | None"]):
    """A table of ours as `nft -st` lists it (stateless and terse: no counters, no set
    elements, so its base alone): compared whole with what its last load recorded. TABLE
    is "FAMILY NAME" (tunnelops.naming: a site's, the VPS's own, an older tunnelops')."""

    table: str
    kind = "nft_table"
    slow = True

    def shell(self) -> str:
        return f"command -v nft >/dev/null && nft -st list table {_table_words(self.table)}"

    def parse(self, text: str) -> str | None:
        return text or None


@dataclass(frozen=True)
class NftSets(Probe[dict[str, list[tuple[str, str]]]]):
    """The live elements of every named set of a table of ours (nft -j), as
    set -> [(value, comment)]: a port `12345`, a range `27015-27020`, a name `wg0`, the
    order nft keeps (ports sorted). The service port sets: `Element`s by port_sets()."""

    table: str
    kind = "nft_sets"
    slow = True

    def shell(self) -> str:
        return f"command -v nft >/dev/null && nft -j list table {_table_words(self.table)}"

    def parse(self, text: str) -> dict[str, list[tuple[str, str]]]:
        rs = netfilter.read(netfilter.documents(text))
        return {name: netfilter.element_values(elems) for sets in rs.sets.values()
                for name, elems in sets.items()}


class Counted(TypedDict):
    value: str  # the element: a port, a range
    packets: int
    bytes: int


@dataclass(frozen=True)
class SetCounters(Probe[dict[str, list[Counted]]]):
    """The counters of the elements of a table's sets that count (`counter` in the set:
    render.nftables' service port sets on the VPS), as set -> [Counted]."""

    table: str
    kind = "set_counters"
    slow = True

    def shell(self) -> str:
        return f"command -v nft >/dev/null && nft -j list table {_table_words(self.table)}"

    def parse(self, text: str) -> dict[str, list[Counted]]:
        rs = netfilter.read(netfilter.documents(text))
        out: dict[str, list[Counted]] = {}
        for sets in rs.sets.values():
            for name, elems in sets.items():
                counted = [Counted(value=v, packets=int(c.get("packets", 0)),
                                   bytes=int(c.get("bytes", 0)))
                           for (v, _), c in zip(netfilter.element_values(elems),
                                                netfilter.element_counters(elems), strict=True)
                           if c is not None]
                if counted:
                    out[name] = counted
        return out


def port_sets(sets: dict[str, list[tuple[str, str]]]) -> dict[str, list[Element]]:
    """NftSets' service port sets (svc_tcp_HOME, svc_udp_HOME) as Elements, in port order."""
    out: dict[str, list[Element]] = {}
    for name, elems in sets.items():
        if set_proto(name) is None:
            continue
        parsed = []
        for value, comment in elems:
            first, _, last = value.partition("-")
            if first.isdigit() and (not last or last.isdigit()):
                parsed.append(Element(int(first), int(last or first), comment))
        out[name] = sorted(parsed)
    return out


@dataclass(frozen=True)
class NftRuleset(Probe[list]):
    """The whole ruleset (`nft -j list ruleset`): nft's JSON documents, for
    tunnelops.netfilter to follow a packet through."""

    kind = "nft"
    slow = True

    def shell(self) -> str:
        return "command -v nft >/dev/null && nft -j list ruleset"

    def parse(self, text: str) -> list:
        return netfilter.documents(text)
