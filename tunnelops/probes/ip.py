"""The host's network as iproute2 shows it (`ip -j`): links and addresses, policy rules,
routes, the uplink. BusyBox `ip` (a fresh Alpine's) has no JSON: its text is read into the
same shape where it matters (the links and the uplink)."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from tunnelops.probes.base import Probe, q

Json = Any


def loads(text: str, default: Json) -> Json:
    """iproute2's JSON, or DEFAULT for nothing, an error text, or iproute2's lone "[" before
    it fails (a route table that does not exist)."""
    try:
        return json.loads(text) if text.strip() else default
    except json.JSONDecodeError:
        return default


def _links_text(text: str) -> list[dict]:
    """`ip addr` text ("3: wg0: <FLAGS> mtu 1420 ...", "    inet A/P ...") as -j shows it."""
    links: list[dict] = []
    for line in text.splitlines():
        if m := re.match(r"^\d+: ([^:@\s]+)[^:]*: <([^>]*)> mtu (\d+)", line):
            links.append({"ifname": m.group(1), "flags": m.group(2).split(","),
                          "mtu": int(m.group(3)), "addr_info": []})
        elif links and (m := re.match(r"\s+inet (\d+\.\d+\.\d+\.\d+)/(\d+)", line)):
            links[-1]["addr_info"].append({"family": "inet", "local": m.group(1),
                                           "prefixlen": int(m.group(2))})
    return links


@dataclass(frozen=True)
class Addrs(Probe[list[dict]]):
    """Every link with its flags, MTU, kind (`-d`: wireguard, or tun for wireguard-go) and
    addresses: the tunnel interface's own state is one of them."""

    kind = "addrs"

    def shell(self) -> str:
        return "ip -d -j addr show 2>/dev/null || ip addr show"

    def parse(self, text: str) -> list[dict]:
        if text.lstrip().startswith("["):
            return loads(text, [])
        return _links_text(text)


def link(addrs: list[dict], iface: str) -> dict | None:
    return next((a for a in addrs if a.get("ifname") == iface), None)


def ipv4(addrs: list[dict], iface: str) -> list[str]:
    """The interface's IPv4 addresses as A/P."""
    return [f"{a['local']}/{a['prefixlen']}" for a in (link(addrs, iface) or {}).get(
        "addr_info", []) if a.get("family") == "inet"]


@dataclass(frozen=True)
class Rules(Probe[list[dict]]):
    kind = "rules"

    def shell(self) -> str:
        return "ip -4 -j rule"

    def parse(self, text: str) -> list[dict]:
        return loads(text, [])


@dataclass(frozen=True)
class Routes(Probe[list[dict]]):
    """The IPv4 routes of one table ("main", or a number)."""

    table: str
    kind = "routes"

    def shell(self) -> str:
        return f"ip -4 -j route show table {q(self.table)}"

    def parse(self, text: str) -> list[dict]:
        return loads(text, [])


def defaults(routes: list[dict]) -> list[dict]:
    return [r for r in routes if r.get("dst") == "default"]


def _route_text(text: str) -> dict:
    """`ip route get` without -j ("1.1.1.1 via GW dev IF  src ADDR") as -j would show it."""
    words = text.split()
    keys = {"via": "gateway", "dev": "dev", "src": "prefsrc"}
    route = {keys[w]: v for w, v in itertools.pairwise(words) if w in keys}
    return {"dst": words[0], **route} if words and "dev" in route else {}


@dataclass(frozen=True)
class Uplink(Probe[dict]):
    """The route to the internet (a lookup: nothing is sent): its device and source address
    are the VPS's WAN and public address unless the inventory says otherwise."""

    target: str = "1.1.1.1"
    kind = "uplink"

    def shell(self) -> str:
        t = q(self.target)
        return f"ip -4 -j route get {t} 2>/dev/null || ip -4 route get {t}"

    def parse(self, text: str) -> dict:
        if text.lstrip().startswith("["):
            return (loads(text, []) or [{}])[0]
        return _route_text(text)
