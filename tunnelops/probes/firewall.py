"""Firewalls as the host runs them: firewalld's zones, awall's policies and the iptables
rules it made, and nftables (read as JSON by tunnelops.netfilter, except the terse listing of
our table that its drift record is compared with, as text, whole)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from tunnelops import netfilter
from tunnelops.probes.base import Probe, q
from tunnelops.render.nftables import Element, set_proto

Zones = dict[str, dict[str, list[str]]]  # zone -> key -> values (firewall-cmd's listing)


class FirewalldView(TypedDict, total=False):
    running: bool
    default: str  # the default zone (runtime view only)
    zones: Zones


@dataclass(frozen=True)
class FirewalldZones(Probe[FirewalldView]):
    """Every zone, runtime (what firewalld enforces) or permanent (what it loads): one
    firewall-cmd each (a Python program: ~0.2 s, seconds under emulation), in parallel. {}
    when firewalld is not running (systemd's word for it, or firewall-cmd failing at once)."""

    view: str = "runtime"  # or "permanent"
    kind = "firewalld"
    slow = True

    def shell(self) -> str:
        flag = "--permanent " if self.view == "permanent" else ""
        default = ("; sed -n 's/^DefaultZone=/default=/p' /etc/firewalld/firewalld.conf"
                   if self.view == "runtime" else "")
        # firewall-cmd is a Python program (seconds on a slow host) even to say firewalld
        # is not running: under systemd, systemctl (C) says so first
        return ("command -v firewall-cmd >/dev/null || exit 0; if [ -d /run/systemd/system ] "
                "&& ! systemctl is-active -q firewalld 2>/dev/null; then exit 0; fi; "
                f"z=$(firewall-cmd {flag}--list-all-zones) || exit 0; echo running{default}; "
                "echo @zones; printf '%s\\n' \"$z\"")

    def parse(self, text: str) -> FirewalldView:
        if not text.startswith("running"):
            return {}
        out: FirewalldView = {"running": True, "zones": {}}
        if self.view == "runtime":
            out["default"] = "public"
        zones, zone, listing, key = out["zones"], None, False, ""
        for line in text.splitlines()[1:]:
            if line.startswith("default=") and not listing:
                out["default"] = line.split("=", 1)[1].strip()
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
