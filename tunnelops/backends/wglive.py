"""The running WireGuard interface against the wanted one: peers, listen port, MTU, address,
policy rules and table routes, compared from the host's facts (`wg show dump`, `ip -j`).

Pure: each function returns what differs, in words for the plan's summary; the backends
(wg-quick, ifupdown-ng, NetworkManager) turn that into their own smallest fix. A file that is
right says nothing about the interface: `wg set`, `ip link set mtu` or `ip rule del` by hand
leave every file as it was.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from ipaddress import IPv4Address

from tunnelops.changes import CommandChange
from tunnelops.facts import HostFacts
from tunnelops.model.tunnel import Tunnel
from tunnelops.render.wireguard import parse_wg_conf

WG_DEFAULT_MTU = 1420  # the kernel's and NetworkManager's default for a WireGuard link
WG_QUICK_OVERHEAD = 80  # what wg-quick subtracts from the uplink's MTU


@dataclass(frozen=True)
class WantedPeer:
    public_key: str
    allowed_ips: frozenset[str]
    endpoint: str | None  # None: the config leaves it to roaming
    keepalive: int | None  # None: the config does not set it (wg syncconf leaves it alone)


def wanted_peers(conf: str) -> list[WantedPeer]:
    """The [Peer] sections of a wg/wg-quick config, as `wg syncconf` would apply them."""
    out = []
    for section, pairs in parse_wg_conf(conf).items():
        if section.split(" ")[0] != "Peer":
            continue
        kv = dict(pairs)
        if "PublicKey" not in kv:
            continue
        ips = frozenset(x.strip() for x in kv.get("AllowedIPs", "").split(",") if x.strip())
        ka = kv.get("PersistentKeepalive")
        out.append(WantedPeer(kv["PublicKey"], ips, kv.get("Endpoint"),
                              None if ka is None else (0 if ka == "off" else int(ka))))
    return out


def peer_at(f: HostFacts, conf_path: str, address: IPv4Address | str) -> str | None:
    """The public key of the peer whose AllowedIPs are ADDRESS/32: in the config file, else
    on the live interface (the VPS's peer for a home that cannot be asked for its key)."""
    want = f"{address}/32"
    conf = f.file(conf_path)
    for p in wanted_peers(conf.content if conf else ""):
        if want in p.allowed_ips:
            return p.public_key
    return next((p["public_key"] for p in f.wg.get("peers", [])
                 if want in p.get("allowed_ips", [])), None)


def listen_port(conf: str) -> int | None:
    for key, value in parse_wg_conf(conf).get("Interface", []):
        if key == "ListenPort":
            return int(value)
    return None


def _short(key: str) -> str:
    return key[:8] + "…"


def _endpoint_is_literal(endpoint: str) -> bool:
    """A host name resolves to whatever address: only a literal IP can be compared."""
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def peer_drift(conf: str, wg: dict) -> list[str]:
    """What the live interface (facts `wg`) has that differs from the config's peers and
    listen port; [] when `wg syncconf` would change nothing we care about."""
    if not wg:
        return []
    out = []
    want = {p.public_key: p for p in wanted_peers(conf)}
    have = {p["public_key"]: p for p in wg.get("peers", [])}
    for key in sorted(set(have) - set(want)):
        out.append(f"peer {_short(key)} is not in the config")
    for key, w in want.items():
        live = have.get(key)
        if live is None:
            out.append(f"peer {_short(key)} is missing")
            continue
        ips = frozenset(live.get("allowed_ips", []))
        if ips != w.allowed_ips:
            out.append(f"AllowedIPs {', '.join(sorted(ips)) or '(none)'}, not "
                       f"{', '.join(sorted(w.allowed_ips)) or '(none)'}")
        if w.endpoint and _endpoint_is_literal(w.endpoint) and live.get("endpoint") != w.endpoint:
            out.append(f"endpoint {live.get('endpoint') or '(none)'}, not {w.endpoint}")
        if w.keepalive is not None and live.get("keepalive", 0) != w.keepalive:
            out.append(f"keepalive {live.get('keepalive') or 'off'}, not {w.keepalive or 'off'}")
    port = listen_port(conf)
    if port is not None and wg.get("listen_port") != port:
        out.append(f"listen port {wg.get('listen_port') or 'none'}, not {port}")
    return out


# ---------------------------------------------------------------------------- the link
def link_mtu(f: HostFacts, iface: str) -> int | None:
    link = f.wg.get("link") or next((a for a in f.addrs if a.get("ifname") == iface), None)
    return int(link["mtu"]) if link and link.get("mtu") else None


def uplink_mtu(up: dict, addrs: list[dict]) -> int | None:
    """The MTU of the interface the default route (UP, probes.Uplink) leaves by (a route's
    own `mtu` first), from the links (probes.Addrs)."""
    for metric in up.get("metrics", []) if isinstance(up.get("metrics"), list) else []:
        if isinstance(metric, dict) and metric.get("mtu"):
            return int(metric["mtu"])
    dev = up.get("dev")
    link = next((a for a in addrs if a.get("ifname") == dev), None)
    return int(link["mtu"]) if link and link.get("mtu") else None


def wanted_mtu(t: Tunnel, backend: str, uplink: int | None) -> int | None:
    """The MTU the backend gives the interface: the inventory's, else wg-quick's own choice
    (the uplink's MTU - 80, 1500 when unknown) or the kernel's / NetworkManager's 1420.
    None: it cannot be known (wg-quick without the uplink's MTU in the facts)."""
    if t.mtu is not None:
        return t.mtu
    if backend == "wg-quick":
        return uplink - WG_QUICK_OVERHEAD if uplink else None
    return WG_DEFAULT_MTU


def mtu_drift(f: HostFacts, iface: str, want: int | None) -> str | None:
    have = link_mtu(f, iface)
    if want is None or have is None or have == want:
        return None
    return f"MTU {have}, not {want}"


def mtu_fix(iface: str, want: int, why: str) -> CommandChange:
    return CommandChange(f"set {iface}'s MTU back to {want} ({why})",
                         f"ip link set dev {shlex.quote(iface)} mtu {int(want)}",
                         f"+ ip link set dev {iface} mtu {want}")


def addresses(f: HostFacts, iface: str) -> list[str]:
    """The interface's IPv4 addresses as A/P, from `ip -j addr`."""
    return [f"{a['local']}/{a['prefixlen']}" for i in f.addrs if i.get("ifname") == iface
            for a in i.get("addr_info", []) if a.get("family") == "inet"]


def address_fixes(f: HostFacts, iface: str, want: str) -> list[CommandChange]:
    """Add the wanted address, remove any other IPv4 address (e.g. the seed's /32, or one
    added by hand). Nothing when the facts cannot show addresses (BusyBox ip has no -j)."""
    if not f.addrs:
        return []
    have, i = addresses(f, iface), shlex.quote(iface)
    out = [CommandChange(f"remove address {a} from {iface}",
                         f"ip -4 address del {shlex.quote(a)} dev {i}", f"- {a}")
           for a in have if a != want]
    if want not in have:
        out.append(CommandChange(f"add address {want} to {iface}",
                                 f"ip -4 address add {shlex.quote(want)} dev {i}", f"+ {want}"))
    return out


# ---------------------------------------------------------------------------- home's routing
def home_rules(t: Tunnel) -> list[tuple[int, str, str, str]]:
    """(priority, selector, key in `ip -j rule`, address) of the two rules home needs."""
    first, second = t.rule_priorities
    return [(first, f"from {t.home_address}/32", "src", str(t.home_address)),
            (second, f"to {t.vps_address}/32", "dst", str(t.vps_address))]


def rule_present(f: HostFacts, t: Tunnel, priority: int, key: str, addr: str) -> bool:
    return any(r.get("priority") == priority and r.get(key) == addr
               and str(r.get("table")) == str(t.route_table) and r.get(f"{key}len", 32) == 32
               for r in f.rules)


def missing_rules(f: HostFacts, t: Tunnel) -> list[tuple[int, str]]:
    return [(prio, sel) for prio, sel, key, addr in home_rules(t)
            if not rule_present(f, t, prio, key, addr)]


def table_default_missing(f: HostFacts, t: Tunnel) -> bool:
    return not any(r.get("dst") == "default" and r.get("dev") == t.interface
                   for r in f.table_routes)


def routing_drift(f: HostFacts, t: Tunnel) -> list[str]:
    out = [f"no rule {sel} table {t.route_table}" for _, sel in missing_rules(f, t)]
    if table_default_missing(f, t):
        out.append(f"no default route via {t.interface} in table {t.route_table}")
    return out


def routing_fixes(f: HostFacts, t: Tunnel) -> list[CommandChange]:
    """`ip rule add` / `ip route replace` for what is missing: what wg-quick's PostUp and
    Table = T would have made."""
    out = []
    for prio, sel in missing_rules(f, t):
        out.append(CommandChange(
            f"add policy rule {sel} table {t.route_table}",
            f"ip -4 rule add {sel} table {t.route_table} priority {prio}",
            f"+ ip rule {sel} table {t.route_table} priority {prio}"))
    if table_default_missing(f, t):
        out.append(CommandChange(
            f"add default route via {t.interface} in table {t.route_table}",
            f"ip -4 route replace default dev {shlex.quote(t.interface)} table {t.route_table}"))
    return out
