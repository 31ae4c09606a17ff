"""What the tools print on a host, modelled on their real output (used by hosts.py).

iproute2's JSON (`ip -4 -j rule` writes "src":"all" for a rule with no source, a missing
table prints a lone "[" before failing, `ip -d -j addr` gives each link's kind), `wg show IF
dump` (tab-separated, first field of the interface line blanked by the probe), firewalld 2.x
`--list-all-zones`, `awall list` (awall's printtabular: columns padded, two spaces apart, a
blank line after the table), `nmcli -g` (one value per line). The nft listings come from nft
itself: the rendered ruleset loaded into a throwaway network namespace (`unshare -rn`).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import tempfile
from dataclasses import dataclass, field

from tunnelops import probes
from tunnelops.inventory.new import new_site
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.site import Site
from tunnelops.naming import Names
from tunnelops.probes.firewall import nft_terse

# Public keys only (private keys never leave a host); made with `wg genkey | wg pubkey`.
VPS_PUB = "eHxVOYeaCcbcAbX9w8VtEmkgAMWP2I+Nukngy9fzPBI="
HOME_PUB = "ZCgYP8TZbJsU8vTra0Z7GwD8Dtje+iBWz1p7FRRLNgs="
VPS_IP = "203.0.113.7"
HOME_NAT_IP = "198.51.100.20"  # the home router's address, as the VPS sees it
NOW = 1718000000
INVENTORY = "inventory/home.toml"

GAME = Service("game", "docker.io/example/game:latest",
               (PortSpec.parse("12345/udp"), PortSpec.parse("12346/tcp")), "gamer")
GAME_RANGE = Service("game", "docker.io/example/game:latest",
                     (PortSpec.parse("12345/udp"), PortSpec.parse("12346/tcp"),
                      PortSpec.parse("27015-27020/udp")), "gamer")
# The site of the Alpine VPS and the Fedora home (its address is discovered), and the one
# of the Debian VPS, whose service also forwards a port range.
SITE = new_site("home", "vps.example.net", "homeserver", services=(GAME,))
RANGE_SITE = new_site("home", "vps.example.net", "homeserver", services=(GAME_RANGE,))
NAMES = Names("wg0")  # what the site's things on a host are named (tunnelops.naming)


@dataclass
class User:
    account: str = ""  # probes.Account's output: "" is no such user
    podman: str = ""
    containers: str = "nouser"


@dataclass
class Host:
    """A host's facts output, by the name of each probe in facts.FactProbes."""

    role: str
    site: Site
    sections: dict[str, str]
    files: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # mode, owner, text
    users: dict[str, User] = field(default_factory=dict)


def j(value: object) -> str:
    """iproute2's -j output: compact JSON on one line."""
    return json.dumps(value, separators=(",", ":")) + "\n"


def commands(*names: str) -> str:
    unknown = set(names) - set(probes.COMMANDS) - {probes.IP_JSON}
    assert not unknown, unknown
    return "".join(f"{c}\n" for c in (*probes.COMMANDS, probes.IP_JSON) if c in names)


LIFE = {"valid_life_time": 4294967295, "preferred_life_time": 4294967295}
LO = {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"], "mtu": 65536,
      "qdisc": "noqueue", "operstate": "UNKNOWN", "group": "default", "txqlen": 1000,
      "link_type": "loopback",
      "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host",
                     "label": "lo", **LIFE}]}
DEFAULT_RULES = [{"priority": 0, "src": "all", "table": "local"},
                 {"priority": 32766, "src": "all", "table": "main"},
                 {"priority": 32767, "src": "all", "table": "default"}]
MISSING_TABLE = "["  # iproute2 prints this, then "Error: ipv4: FIB table does not exist."


def nic(index: int, name: str, addr: str, prefix: int, *, dynamic: bool = False) -> dict:
    info = {"family": "inet", "local": addr, "prefixlen": prefix,
            "broadcast": str(ipaddress.ip_network(f"{addr}/{prefix}",
                                                  strict=False).broadcast_address),
            "scope": "global"}
    if dynamic:
        info["dynamic"] = True
    info |= {"label": name, **({"valid_life_time": 85984, "preferred_life_time": 85984}
                              if dynamic else LIFE)}
    return {"ifindex": index, "ifname": name, "flags": ["BROADCAST", "MULTICAST", "UP",
                                                        "LOWER_UP"],
            "mtu": 1500, "qdisc": "fq_codel", "operstate": "UP", "group": "default",
            "txqlen": 1000, "link_type": "ether", "addr_info": [info]}


def wg_addr(index: int, addr: str, *, kernel: bool) -> dict:
    """wg0 as `ip -d -j addr` shows it: a kernel WireGuard link, or wireguard-go's tun."""
    if kernel:
        link = {"ifindex": index, "ifname": "wg0", "flags": ["POINTOPOINT", "NOARP", "UP",
                                                             "LOWER_UP"],
                "mtu": 1420, "qdisc": "noqueue", "operstate": "UNKNOWN", "group": "default",
                "txqlen": 1000, "link_type": "none", "linkinfo": {"info_kind": "wireguard"}}
    else:
        link = {"ifindex": index, "ifname": "wg0", "flags": ["POINTOPOINT", "MULTICAST",
                                                             "NOARP", "UP", "LOWER_UP"],
                "mtu": 1420, "qdisc": "pfifo_fast", "operstate": "UNKNOWN",
                "group": "default", "txqlen": 500, "link_type": "none",
                "linkinfo": {"info_kind": "tun", "info_data": {"type": "tun", "pi": False,
                                                               "vnet_hdr": False}}}
    return link | {"addr_info": [{"family": "inet", "local": addr, "prefixlen": 24,
                                  "scope": "global", "label": "wg0", **LIFE}]}


def uplink(gateway: str, dev: str, src: str) -> str:
    return j([{"dst": "1.1.1.1", "gateway": gateway, "dev": dev, "prefsrc": src, "flags": [],
               "uid": 0, "cache": []}])


def wg_dump(own_pub: str, port: int, peer_pub: str, endpoint: str, allowed: str,
            keepalive: str, rx: int, tx: int) -> str:
    return (f"-\t{own_pub}\t{port}\toff\n"
            f"{peer_pub}\t(none)\t{endpoint}\t{allowed}\t{NOW - 42}\t{rx}\t{tx}\t{keepalive}\n")


SPLIT = "@@sets@@"


def nft_list(ruleset: str, table: str = NAMES.nft_family_table) -> tuple[str, str]:
    """What the facts read after `nft -f` of ruleset, from nft itself: the terse TABLE and
    its sets with their elements (probes.NftTable, probes.NftSets)."""
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
        f.write(ruleset)
        f.flush()
        res = subprocess.run(
            ["unshare", "-rn", "sh", "-c", f"nft -f {f.name} && {nft_terse(table)} && "
             f"echo {SPLIT} && {probes.NftSets(table).shell()}"],
            capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"cannot list the ruleset with nft in a namespace: {res.stderr}")
    table, _, sets = res.stdout.partition(f"{SPLIT}\n")
    return table, sets


def awall_list(policies: dict[str, tuple[str, str]]) -> str:
    """awall list: name, status, description; columns padded as awall's printtabular does."""
    rows = [(name, status, desc) for name, (status, desc) in sorted(policies.items())]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "".join(f"{a.ljust(w0)}  {b.ljust(w1)}  {c}\n" for a, b, c in rows) + "\n"


def zone(name: str, *, target: str = "default", interfaces: str = "", services: str = "",
         ports: str = "", protocols: str = "", forward: str = "yes", masquerade: str = "no",
         forward_ports: tuple[str, ...] = (), rich: tuple[str, ...] = (),
         flags: str = "") -> str:
    """One zone of firewalld 2.x `--list-all-zones` (empty values keep their trailing space;
    forward ports and rich rules one per line, tab-indented, as firewall-cmd prints them)."""
    head = f"{name} ({flags})" if flags else name

    def listed(key: str, items: tuple[str, ...]) -> list[str]:
        return [f"  {key}: " + ("\n\t" if items else "") + "\n\t".join(items)]

    lines = [head, f"  target: {target}", "  ingress-priority: 0", "  egress-priority: 0",
             "  icmp-block-inversion: no", f"  interfaces: {interfaces}", "  sources: ",
             f"  services: {services}", f"  ports: {ports}", f"  protocols: {protocols}",
             f"  forward: {forward}", f"  masquerade: {masquerade}",
             *listed("forward-ports", forward_ports), "  source-ports: ", "  icmp-blocks: ",
             *listed("rich rules", rich)]
    return "\n".join(lines) + "\n\n"


def fedora_zones(public_interfaces: str, public_ports: str, public_flags: str,
                 **changed: dict[str, object]) -> str:
    """Fedora's zones; `changed` gives a zone other values, e.g. trusted={"masquerade": "yes"}."""
    zones: dict[str, dict[str, object]] = {
        "FedoraServer": {"services": "cockpit dhcpv6-client ssh"},
        "FedoraWorkstation": {"services": "dhcpv6-client samba-client ssh",
                              "ports": "1025-65535/udp 1025-65535/tcp"},
        "block": {"target": "%%REJECT%%"},
        "dmz": {"services": "ssh"},
        "drop": {"target": "DROP"},
        "external": {"services": "ssh", "masquerade": "yes"},
        "home": {"services": "dhcpv6-client mdns samba-client ssh"},
        "internal": {"services": "dhcpv6-client mdns samba-client ssh"},
        "nm-shared": {"target": "ACCEPT", "services": "dhcp dns ssh",
                      "protocols": "icmp ipv6-icmp", "forward": "no",
                      "rich": ('rule priority="32767" reject',)},
        "public": {"interfaces": public_interfaces, "services": "dhcpv6-client mdns ssh",
                   "ports": public_ports, "flags": public_flags},
        "trusted": {"target": "ACCEPT"},
        "work": {"services": "dhcpv6-client ssh"},
    }
    return "".join(zone(name, **{**values, **changed.get(name, {})})  # type: ignore[arg-type]
                   for name, values in zones.items())


def firewalld(runtime: str, permanent: str) -> dict[str, str]:
    """The two views probes.FirewalldZones prints."""
    return {"fw_runtime": f"running\ndefault=public\n@zones\n{runtime}",
            "fw_permanent": f"running\n@zones\n{permanent}"}


def nm_profile(site: Site | None, zone_name: str = "", peers: str = "") -> str:
    """probes.NmProfile's output: `nmcli -t -f RUNNING general status`, then `nmcli -g PROPS
    connection show wg0` (one value per line, in NM_PROPS order) when the profile exists,
    then its keyfile's peers."""
    if site is None:
        return "running\n@peers\n"
    t = site.tunnel
    first, second = t.rule_priorities
    printed = {
        "connection.type": "wireguard",
        "connection.interface-name": t.interface,
        "ipv4.method": "manual",
        "ipv4.addresses": f"{t.home_address}/{t.prefixlen}",
        "ipv4.route-table": str(t.route_table),
        "ipv4.routing-rules": f"priority {first} from {t.home_address} table {t.route_table}, "
                              f"priority {second} to {t.vps_address} table {t.route_table}",
        "wireguard.ip4-auto-default-route": "0",
        "wireguard.peer-routes": "yes",
        "wireguard.mtu": "auto",
        "connection.zone": zone_name,
    }
    return ("running\n" + "".join(f"{printed[p]}\n" for p in probes.NM_PROPS)
            + "@peers\n" + peers)


def recorded_site(host: Host, claim_json: str, names: Names = NAMES) -> Host:
    """The site's record on the host (tunnelops.steps.sites): its file, and what
    probes.Records reads of the records' directory."""
    host.files[names.record] = ("644", "root", claim_json)
    host.sections["sites"] = f"@@ {names.record}\n{claim_json}"
    return host
