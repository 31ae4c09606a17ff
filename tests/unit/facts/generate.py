"""Regenerate the recorded facts outputs in this directory:

    .venv/bin/python -m tests.unit.facts.generate

Each NAME.txt is exactly what tunnelops' one facts command (`tunnelops.facts.script`, as the
engine builds it) prints on a host: `::tunnelops:: NAME` sections in the script's order, files
as base64 (private keys already replaced by the placeholder, as the host does). The section
list is taken from the script itself, so a new section appears here (empty) by itself.

What the hosts print is modelled on real output: iproute2's JSON (`ip -4 -j rule` writes
"src":"all" for a rule with no source, and a missing table prints a lone "[" before failing),
`wg show IF dump` (tab-separated, first field of the interface line blanked by the script),
firewalld 2.x `--list-all-zones`, `awall list` (awall's printtabular: columns padded, two
spaces apart, a blank line after the table), `nmcli -g` (one value per line), `nft -st list`
and `nft -n list set`.
A fresh Alpine has BusyBox's `ip`, which has no -j: its JSON sections are empty and only the
uplink's plain-text fallback answers.

Converged hosts hold the files tunnelops' own renderers write, so a converged host must plan
no change at all; rerun this script after a deliberate renderer change and review the diff.

legacy-*: hosts converged by tunnelops before issue 11 (one site per host, fixed names:
`table inet tunnelops`, /etc/awall/base.json, ...). Their facts are what that version
recorded (legacy/NAME.txt, frozen: never regenerated), read by today's facts command: the
older table is `nft_legacy` now, its drift record a file among the others.

fleet-*: a three-home site (issue 11) on an Alpine (awall) and a Debian (nftables) VPS.
The nft listings come from loading the rendered ruleset into a throwaway network namespace
(`unshare -rn nft ...`), so they are nft's own words; that needs root or user namespaces.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import re
import subprocess
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunnelops import facts, naming
from tunnelops.backends import awall as awall_backend
from tunnelops.backends import nftables as nft_backend
from tunnelops.backends.podman import network_kind
from tunnelops.claims import home_claim, hub_claim
from tunnelops.engine import Run
from tunnelops.facts import HostFacts
from tunnelops.inventory import new_site
from tunnelops.model import HomeSpec, HostRef, PortSpec, Service, Site
from tunnelops.naming import LEGACY, Names
from tunnelops.render import ifupdown, nftables, nfthost, podman
from tunnelops.render.nfthost import HubSite
from tunnelops.render.sysctl import forwarding_conf
from tunnelops.render.wireguard import Peer, home_import_conf, vps_setconf, vps_wg_quick
from tunnelops.steps.context import Ctx

HERE = Path(__file__).parent

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
NAMES = Names("wg0")

# Three homes behind one VPS: a game at home, a voice server on a Raspberry Pi, and a friend's
# machine whose service forwards a range (its address given in the inventory).
VOICE_PUB = "mG3XqS5h2cYcU7U3Q9V8iG8ZyqUkpm1x0l6xV4c1nGg="
FRIEND_PUB = "4HzbT0bq2m2uR1s0mS3S2b6b+2l1k7U5xU5cQ2fT0Xs="
FLEET = new_site(
    "fleet", "vps.example.net", (
        HomeSpec(HostRef("homeserver")),
        HomeSpec(HostRef("pi@voicebox"), name="voice"),
        HomeSpec(HostRef("friend.example.net"), name="friend", address="192.168.2.20"),
    ), services=(
        dataclasses.replace(GAME, home="home"),
        Service("mumble", "docker.io/example/mumble:latest",
                (PortSpec.parse("64738/tcp"), PortSpec.parse("64738/udp")), "voice",
                home="voice"),
        Service("srcds", "docker.io/example/srcds:1",
                (PortSpec.parse("27015-27020/udp"), PortSpec.parse("27015/tcp")), "steam",
                home="friend"),
    ))
FLEET_KEYS = {"home": HOME_PUB, "voice": VOICE_PUB, "friend": FRIEND_PUB}
FLEET_PEERS = [Peer(h.name, FLEET_KEYS[h.name], FLEET.address(h)) for h in FLEET.homes]


# --------------------------------------------------------------------------- host output

@dataclass
class Host:
    role: str
    site: Site
    sections: dict[str, str]
    files: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # mode, owner, text
    users: dict[str, str] = field(default_factory=dict)


def facts_script(site: Site, role: str) -> str:
    """The engine's facts command for this role (it only reads self.site and self.homes)."""
    run = types.SimpleNamespace(site=site, homes={h.name: h for h in site.homes})
    return Run._facts_script(run, role)  # type: ignore[arg-type]


def output(host: Host) -> str:
    """What the facts script prints on this host, section by section in the script's order."""
    out: list[str] = []
    for line in facts_script(host.site, host.role).splitlines():
        if m := re.match(r"if \[ -f (\S+) \]; then m file ", line):
            if m.group(1) in host.files:
                mode, owner, text = host.files[m.group(1)]
                out.append(f"\n{facts.MARK} file {m.group(1)} {mode} {owner}\n"
                           + base64.b64encode(text.encode()).decode())
        elif m := re.match(r"m user (\S+);", line):
            out.append(f"\n{facts.MARK} user {m.group(1)}\n" + host.users.get(m.group(1), ""))
        elif m := re.match(r"m (\w+);", line):
            out.append(f"\n{facts.MARK} {m.group(1)}\n" + host.sections.get(m.group(1), ""))
    return "".join(out)


def j(value: object) -> str:
    """iproute2's -j output: compact JSON on one line."""
    return json.dumps(value, separators=(",", ":")) + "\n"


def commands(*names: str) -> str:
    unknown = set(names) - set(facts.COMMANDS) - {facts.IP_JSON}
    assert not unknown, unknown
    return "".join(f"{c}\n" for c in (*facts.COMMANDS, facts.IP_JSON) if c in names)


LIFE = {"valid_life_time": 4294967295, "preferred_life_time": 4294967295}
LO = {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"], "mtu": 65536,
      "qdisc": "noqueue", "operstate": "UNKNOWN", "group": "default", "txqlen": 1000,
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
            "txqlen": 1000, "addr_info": [info]}


def wg_link(index: int, *, kernel: bool) -> dict:
    """wg0 as `ip -j link` shows it: a kernel WireGuard link, or wireguard-go's tun."""
    if kernel:
        return {"ifindex": index, "ifname": "wg0", "flags": ["POINTOPOINT", "NOARP", "UP",
                                                             "LOWER_UP"],
                "mtu": 1420, "qdisc": "noqueue", "operstate": "UNKNOWN", "linkmode": "DEFAULT",
                "group": "default", "txqlen": 1000, "link_type": "none",
                "linkinfo": {"info_kind": "wireguard"}}  # -d
    return {"ifindex": index, "ifname": "wg0", "flags": ["POINTOPOINT", "MULTICAST", "NOARP",
                                                         "UP", "LOWER_UP"],
            "mtu": 1420, "qdisc": "pfifo_fast", "operstate": "UNKNOWN", "linkmode": "DEFAULT",
            "group": "default", "txqlen": 500, "link_type": "none",
            "linkinfo": {"info_kind": "tun", "info_data": {"type": "tun", "pi": False,
                                                           "vnet_hdr": False}}}


def wg_addr(index: int, addr: str, *, kernel: bool) -> dict:
    link = wg_link(index, kernel=kernel)
    del link["linkmode"], link["link_type"], link["linkinfo"]
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
    """What the facts command prints after `nft -f` of ruleset, from nft itself: the table
    (`nft -st list table inet tunnelops-wg0`) and the table with its sets' elements."""
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
        f.write(ruleset)
        f.flush()
        res = subprocess.run(
            ["unshare", "-rn", "sh", "-c", f"nft -f {f.name} && {nft_backend.list_table(table)}"
             f" && echo {SPLIT} && {facts.nft_sets_list(table)}"],
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


def recorded_site(host: Host, claim_json: str, names: Names = NAMES) -> Host:
    """The site's record on the host: its file, and the records section that lists it."""
    host.files[names.record] = ("644", "root", claim_json)
    host.sections["sites"] = f"@@ {names.record}\n{claim_json}"
    return host


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


def firewalld(runtime: str, permanent: str) -> str:
    return f"running\ndefault=public\n@runtime\n{runtime}@permanent\n{permanent}"


def nm_values(site: Site, zone_name: str) -> str:
    """`nmcli -g PROPS connection show wg0`: one value per line, in facts.NM_PROPS order."""
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
    return "".join(f"{printed[p]}\n" for p in facts.NM_PROPS)


# --------------------------------------------------------------------------- the hosts

ALPINE_OS = """\
NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.20.3
PRETTY_NAME="Alpine Linux v3.20"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
"""
ALPINE_INTERFACES = """\
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
"""
FEDORA_OS = """\
NAME="Fedora Linux"
VERSION="40 (Cloud Edition)"
ID=fedora
VERSION_ID=40
VERSION_CODENAME=""
PLATFORM_ID="platform:f40"
PRETTY_NAME="Fedora Linux 40 (Cloud Edition)"
ANSI_COLOR="0;38;2;60;110;180"
LOGO=fedora-logo-icon
CPE_NAME="cpe:/o:fedoraproject:fedora:40"
HOME_URL="https://fedoraproject.org/"
DOCUMENTATION_URL="https://docs.fedoraproject.org/en-US/fedora/f40/system-administrators-guide/"
SUPPORT_URL="https://ask.fedoraproject.org/"
BUG_REPORT_URL="https://bugzilla.redhat.com/"
REDHAT_BUGZILLA_PRODUCT="Fedora"
REDHAT_BUGZILLA_PRODUCT_VERSION=40
REDHAT_SUPPORT_PRODUCT="Fedora"
REDHAT_SUPPORT_PRODUCT_VERSION=40
SUPPORT_END=2025-05-13
VARIANT="Cloud Edition"
VARIANT_ID=cloud
"""
FEDORA_SYSCONFIG_NFT = """\
# Uncomment the include statement here to load the default config sample
# in /etc/nftables for nftables service.

#include "/etc/nftables/main.nft"

# To customize, either edit the samples in /etc/nftables, append further
# commands to the end of this file or overwrite it after first service
# start by calling: 'nft list ruleset >/etc/sysconfig/nftables.conf'.
"""
DEBIAN_OS = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"""
DEBIAN_NFTABLES_CONF = """\
#!/usr/sbin/nft -f

flush ruleset

table inet filter {
\tchain input {
\t\ttype filter hook input priority filter;
\t}
\tchain forward {
\t\ttype filter hook forward priority filter;
\t}
\tchain output {
\t\ttype filter hook output priority filter;
\t}
}
"""
UBUNTU_OS = """\
PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=noble
LOGO=ubuntu-logo
"""
ARCH_OS = """\
NAME="Arch Linux"
PRETTY_NAME="Arch Linux"
ID=arch
BUILD_ID=rolling
ANSI_COLOR="38;2;23;147;209"
HOME_URL="https://archlinux.org/"
DOCUMENTATION_URL="https://wiki.archlinux.org/"
SUPPORT_URL="https://bbs.archlinux.org/"
BUG_REPORT_URL="https://gitlab.archlinux.org/groups/archlinux/-/issues"
PRIVACY_POLICY_URL="https://terms.archlinux.org/docs/privacy-policy/"
LOGO=archlinux-logo
"""


def base(os_release: str, pid1: str, kernel_wg: bool, cmds: str) -> dict[str, str]:
    return {"os": os_release, "uid": "0\n", "now": f"{NOW}\n", "pid1": f"{pid1}\n",
            "kernel_wg": "yes\n" if kernel_wg else "no\n", "commands": cmds}


def alpine_vps_fresh() -> Host:
    s = base(ALPINE_OS, "init", True, commands("rc-update", "apk", "ifup", "flock", "ping"))
    # BusyBox ip: `ip -4 -j ...` fails (no JSON); the uplink falls back to its plain text.
    s |= {"uplink": f"1.1.1.1 via 203.0.113.1 dev eth0  src {VPS_IP} \n", "ip_forward": "0\n"}
    return Host("vps", SITE, s, {"/etc/network/interfaces": ("644", "root", ALPINE_INTERFACES)})


# `iptables-save` of an awall-activated VPS, abridged, as the facts print it (no comments,
# no counters)
AWALL_RULES = """\
*filter
:INPUT DROP
:FORWARD DROP
:OUTPUT DROP
:limit-ssh-0 -
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i eth0 -p tcp --dport 22 -m tcp --syn -j limit-ssh-0
-A INPUT -i eth0 -p tcp --dport 22 -j ACCEPT
-A INPUT -i eth0 -p udp --dport 51821 -j ACCEPT
-A limit-ssh-0 -m recent --name limit-ssh-0 --rsource --update --hitcount 3 --seconds 20 -j DROP
-A limit-ssh-0 -m recent --name limit-ssh-0 --rsource --set -j ACCEPT
COMMIT
"""


def alpine_vps_converged() -> Host:
    t = SITE.tunnel
    s = base(ALPINE_OS, "init", True, commands(
        "wg", "wg-quick", "awall", "rc-update", "apk", "ifup", "flock", "ping", facts.IP_JSON))
    ctx = Ctx(SITE, "vps", HostFacts())
    policies = {name: ("enabled", json.loads(text)["description"])
                for name, text in awall_backend.policies(ctx, "eth0", SITE.services).items()}
    s |= {
        "key": "exists\n", "pubkey": f"{VPS_PUB}\n",
        "wg": wg_dump(VPS_PUB, t.listen_port, HOME_PUB, f"{HOME_NAT_IP}:41641",
                      f"{t.home_address}/32", "off", 1843532, 2212084),
        "wg_link": j([wg_link(3, kernel=True)]),
        "addrs": j([LO, nic(2, "eth0", VPS_IP, 24, dynamic=True),
                    wg_addr(3, str(t.vps_address), kernel=True)]),
        "rules": j(DEFAULT_RULES), "table_routes": MISSING_TABLE,
        "main_default": j([{"dst": "default", "gateway": "203.0.113.1", "dev": "eth0",
                            "metric": 202, "flags": []}]),
        "uplink": uplink("203.0.113.1", "eth0", VPS_IP), "ip_forward": "1\n",
        "orig": "./etc/network/interfaces\n", "created": "dir /etc/wireguard\n",
        "state_dirs": "/var/lib/tunnelops\n/run/tunnelops\n",
        "awall": awall_list(policies),
        # what the activation recorded, and what is live: the same rules
        "awall_live": AWALL_RULES, "awall_applied": AWALL_RULES,
    }
    files = {
        "/etc/wireguard/wg0.conf": ("600", "root", vps_setconf(t, HOME_PUB)),
        "/etc/sysctl.d/90-tunnelops.conf": ("644", "root", forwarding_conf()),
        "/etc/network/interfaces.d/wg0": ("644", "root", ifupdown.wg_stanza(t)),
        "/etc/network/interfaces": ("644", "root", ALPINE_INTERFACES
                                    + "source-directory /etc/network/interfaces.d\n"),
        **{p: ("644", "root", text) for p, text in awall_backend.files(
            ctx, "eth0", SITE.services).items()},
    }
    return recorded_site(Host("vps", SITE, s, files),
                         hub_claim(SITE, (HOME_PUB,), "eth0").to_json())


FEDORA_CMDS = ("nft", "nmcli", "firewall-cmd", "podman", "systemctl", "dnf", "flock", "ping",
               "sudo", "pasta", "loginctl", "runuser", "setpriv", facts.IP_JSON)
FEDORA_PODMAN = "5.2.3"
FEDORA_LAN = nic(2, "enp1s0", "192.168.1.50", 24, dynamic=True)
FEDORA_ROUTES = [{"dst": "default", "gateway": "192.168.1.1", "dev": "enp1s0", "protocol": "dhcp",
                  "prefsrc": "192.168.1.50", "metric": 100, "flags": []},
                 {"dst": "192.168.1.0/24", "dev": "enp1s0", "protocol": "kernel",
                  "scope": "link", "prefsrc": "192.168.1.50", "metric": 100, "flags": []}]


def fedora_home_fresh() -> Host:
    s = base(FEDORA_OS, "systemd", True, commands(*FEDORA_CMDS))
    s |= {
        "addrs": j([LO, FEDORA_LAN]), "rules": j(DEFAULT_RULES), "table_routes": MISSING_TABLE,
        "main_routes": j(FEDORA_ROUTES),
        "main_default": j([{"dst": "default", "gateway": "192.168.1.1", "dev": "enp1s0",
                            "protocol": "dhcp", "prefsrc": "192.168.1.50", "metric": 100,
                            "flags": []}]),
        "uplink": uplink("192.168.1.1", "enp1s0", "192.168.1.50"), "ip_forward": "0\n",
        # NetworkManager binds enp1s0 to the default zone: not in the permanent zone files
        "firewalld": firewalld(fedora_zones("enp1s0", "", "default, active"),
                               fedora_zones("", "", "default")),
        "nm": "running\n",  # and no profile wg0
    }
    # no user gamer yet: only the version of the (root's) podman
    return Host("home", SITE, s, {"/etc/sysconfig/nftables.conf": ("600", "root",
                                                                   FEDORA_SYSCONFIG_NFT)},
                {"gamer": f"version={FEDORA_PODMAN}\n"})


def fedora_home_converged() -> Host:
    t, svc = SITE.tunnel, GAME
    s = base(FEDORA_OS, "systemd", True, commands(*FEDORA_CMDS, "wg", "wg-quick",
                                                  "slirp4netns"))
    user_info = {"version": FEDORA_PODMAN}
    kind = network_kind(Ctx(SITE, "home", HostFacts(
        commands=frozenset(s["commands"].split()))), user_info)
    spec = podman.spec_hash(svc, t, podman.network_option(kind, t))
    container = {
        "AutoRemove": False, "Command": None, "CreatedAt": "2 hours ago", "CIDFile": "",
        "Exited": False, "ExitedAt": -62135596800, "ExitCode": 0, "Exposed": None,
        "Id": "5c1f0e8d2b7a4e6f9a3c0d1b2e4f6a8c0e2d4b6f8a1c3e5d7b9f0a2c4e6d8b1a",
        "Image": svc.image,
        "ImageID": "9b1c7f3e5d2a4c6e8f0b2d4a6c8e0f2b4d6a8c0e2f4b6d8a0c2e4f6b8d0a2c4e",
        "IsInfra": False,
        "Labels": {"PODMAN_SYSTEMD_UNIT": f"{svc.container_name}.service",
                   podman.SERVICE_LABEL: svc.name, podman.SPEC_LABEL: spec,
                   podman.TUNNEL_LABEL: t.interface},
        "Mounts": [], "Names": [svc.container_name], "Namespaces": {}, "Networks": [],
        "Pid": 2417, "Pod": "", "PodName": "",
        "Ports": [{"host_ip": str(t.home_address), "container_port": p.first,
                   "host_port": p.first, "range": p.count, "protocol": p.proto}
                  for p in svc.ports],
        "Restarts": 0, "Size": None, "StartedAt": NOW - 7200, "State": "running",
        "Status": "Up 2 hours", "Created": NOW - 7200,
    }
    first, second = t.rule_priorities
    s |= {
        "key": "exists\n", "pubkey": f"{HOME_PUB}\n",
        "wg": wg_dump(HOME_PUB, 39217, VPS_PUB, f"{VPS_IP}:{t.listen_port}", "0.0.0.0/0",
                      str(t.keepalive), 2212084, 1843532),
        "wg_link": j([wg_link(3, kernel=True)]),
        "addrs": j([LO, FEDORA_LAN, wg_addr(3, str(t.home_address), kernel=True)]),
        "rules": j([DEFAULT_RULES[0],
                    {"priority": first, "src": str(t.home_address), "table": "201"},
                    {"priority": second, "src": "all", "dst": str(t.vps_address),
                     "table": "201"},
                    *DEFAULT_RULES[1:]]),
        "table_routes": j([{"dst": "default", "dev": "wg0", "protocol": "static",
                            "metric": 50, "flags": []}]),
        "main_routes": j(FEDORA_ROUTES),
        "main_default": j([{"dst": "default", "gateway": "192.168.1.1", "dev": "enp1s0",
                            "protocol": "dhcp", "prefsrc": "192.168.1.50", "metric": 100,
                            "flags": []}]),
        "uplink": uplink("192.168.1.1", "enp1s0", "192.168.1.50"), "ip_forward": "0\n",
        # wg0 is NetworkManager's: firewall-cmd --permanent --change-interface set the
        # profile's connection.zone instead of writing wg0 into public.xml
        "firewalld": firewalld(
            fedora_zones("enp1s0 wg0", "12345/udp 12346/tcp", "default, active"),
            fedora_zones("", "12345/udp 12346/tcp", "default")),
        "orig": "./etc/firewalld/zones/public.xml.absent\n"
                "./etc/firewalld/zones/public.xml.old.absent\n",
        "created": "user gamer\nlinger gamer\n",
        "state_dirs": "/etc/tunnelops\n/var/lib/tunnelops\n/run/tunnelops\n",
        "nm": "running\n" + nm_values(SITE, "public"),
        "nm_peers": f"[wireguard-peer.{VPS_PUB}]\nendpoint={VPS_IP}:{t.listen_port}\n"
                    f"persistent-keepalive={t.keepalive}\nallowed-ips=0.0.0.0/0;\n",
    }
    unit = f"/home/gamer/.config/containers/systemd/{svc.container_name}.container"
    files = {
        "/etc/wireguard/wg0.conf": ("600", "root", home_import_conf(t, VPS_PUB, VPS_IP)),
        "/etc/sysconfig/nftables.conf": ("600", "root", FEDORA_SYSCONFIG_NFT),
        NAMES.firewalld_record: ("644", "root", "12345/udp\n12346/tcp\n"),
        unit: ("644", "gamer", podman.quadlet_unit(svc, t, kind, spec)),
    }
    # what Quadlet's generated ExecStart ran (its --network=VALUE form)
    created = ["/usr/bin/podman", "run", f"--name={svc.container_name}",
               f"--cidfile=/run/user/1001/{svc.container_name}.cid", "--replace", "--rm",
               "--cgroups=split", f"--network={podman.network_option(kind, t)}",
               "--sdnotify=conmon", "-d", *podman.publish_args(svc, t), "--label",
               f"{podman.SPEC_LABEL}={spec}", "--label", f"{podman.SERVICE_LABEL}={svc.name}",
               "--label", f"{podman.TUNNEL_LABEL}={t.interface}", svc.image]
    users = {"gamer": "uid=1001\nhome=/home/gamer\nlinger=yes\nruntime=yes\n"
                      f"version={user_info['version']}\nnofile=524288\n"
                      f"has_image={svc.image}\n"
                      f"create {svc.container_name} {json.dumps(created)}\n"
                      + json.dumps([container], indent=2) + "\n"}
    return recorded_site(Host("home", SITE, s, files, users),
                         home_claim(SITE, "home", (VPS_PUB,)).to_json())


DEBIAN_CMDS = ("wireguard-go", "nft", "systemctl", "apt-get", "flock", "ping", "loginctl",
               "runuser", "setpriv", facts.IP_JSON)


def debian_vps_fresh() -> Host:
    s = base(DEBIAN_OS, "systemd", False, commands(*DEBIAN_CMDS))
    s |= {
        "addrs": j([LO, nic(2, "eth0", VPS_IP, 24)]), "rules": j(DEFAULT_RULES),
        "table_routes": MISSING_TABLE,
        "main_default": j([{"dst": "default", "gateway": "203.0.113.1", "dev": "eth0",
                            "flags": ["onlink"]}]),
        "uplink": uplink("203.0.113.1", "eth0", VPS_IP), "ip_forward": "0\n",
    }
    return Host("vps", RANGE_SITE, s, {"/etc/nftables.conf": ("755", "root",
                                                              DEBIAN_NFTABLES_CONF)})


def with_host_table(host: Host, *sites: HubSite) -> Host:
    """The VPS's own table, shared by its sites, loaded from its file and recorded."""
    text = nfthost.host_ruleset("eth0", 22, sorted(sites))
    listed, sets = nft_list(text, naming.HOST_FAMILY_TABLE)
    host.sections |= {"nft_host": listed, "nft_host_applied": listed, "nft_host_sets": sets}
    host.files[naming.HOST_NFT_FILE] = ("644", "root", text)
    host.files["/etc/nftables.conf"] = ("755", "root", DEBIAN_NFTABLES_CONF + "".join(
        f"{line}\n" for line in (*nft_backend.HOST_LINES, *nft_backend.include_lines(NAMES))))
    return host


def debian_vps_converged() -> Host:
    t = RANGE_SITE.tunnel
    s = base(DEBIAN_OS, "systemd", False, commands(*DEBIAN_CMDS, "wg", "wg-quick"))
    ruleset = nftables.vps_ruleset("eth0", t, RANGE_SITE.services)
    listed, sets = nft_list(ruleset)
    s |= {
        "key": "exists\n", "pubkey": f"{VPS_PUB}\n",
        "wg": wg_dump(VPS_PUB, t.listen_port, HOME_PUB, f"{HOME_NAT_IP}:41641",
                      f"{t.home_address}/32", "off", 1843532, 2212084),
        "wg_link": j([wg_link(3, kernel=False)]),
        "addrs": j([LO, nic(2, "eth0", VPS_IP, 24),
                    wg_addr(3, str(t.vps_address), kernel=False)]),
        "rules": j(DEFAULT_RULES), "table_routes": MISSING_TABLE,
        "main_default": j([{"dst": "default", "gateway": "203.0.113.1", "dev": "eth0",
                            "flags": ["onlink"]}]),
        "uplink": uplink("203.0.113.1", "eth0", VPS_IP), "ip_forward": "1\n",
        "nft_table": listed, "nft_applied": listed, "nft_sets": sets,
        "orig": "./etc/nftables.conf\n",
        "state_dirs": "/etc/tunnelops\n/var/lib/tunnelops\n/run/tunnelops\n",
    }
    files = {
        "/etc/wireguard/wg0.conf": ("600", "root", vps_wg_quick(t, HOME_PUB)),
        "/etc/sysctl.d/90-tunnelops.conf": ("644", "root", forwarding_conf()),
        NAMES.nft_file: ("644", "root", ruleset),
        "/etc/nftables.conf": ("755", "root", DEBIAN_NFTABLES_CONF + "".join(
            f"{line}\n" for line in nft_backend.include_lines(NAMES))),
    }
    host = with_host_table(Host("vps", RANGE_SITE, s, files), HubSite("wg0", 51821, "home"))
    return recorded_site(host, hub_claim(RANGE_SITE, (HOME_PUB,), "eth0").to_json())


def debian_vps_converged_snat() -> Host:
    """The same VPS converged with client_ip = "snat": the table has its SNAT rules."""
    host = debian_vps_converged()
    site = dataclasses.replace(RANGE_SITE, client_ip="snat")
    ruleset = nftables.vps_ruleset("eth0", site.tunnel, site.services, snat=True)
    listed, sets = nft_list(ruleset)
    host.site = site
    host.sections |= {"nft_table": listed, "nft_applied": listed, "nft_sets": sets}
    host.files[NAMES.nft_file] = ("644", "root", ruleset)
    return recorded_site(host, hub_claim(site, (HOME_PUB,), "eth0").to_json())


FEDORA_VPS_CMDS = ("nft", "firewall-cmd", "systemctl", "dnf", "flock", "ping", "sudo",
                   "loginctl", "runuser", "setpriv", facts.IP_JSON)
FEDORA_VPS_WAN = nic(2, "eth0", VPS_IP, 24, dynamic=True)
FEDORA_VPS_DEFAULT = {"dst": "default", "gateway": "203.0.113.1", "dev": "eth0",
                      "protocol": "dhcp", "prefsrc": VPS_IP, "metric": 100, "flags": []}


def fedora_vps_fresh() -> Host:
    """A Fedora VPS running firewalld; NetworkManager binds eth0 to the default zone."""
    s = base(FEDORA_OS, "systemd", True, commands(*FEDORA_VPS_CMDS))
    s |= {
        "addrs": j([LO, FEDORA_VPS_WAN]), "rules": j(DEFAULT_RULES),
        "table_routes": MISSING_TABLE, "main_default": j([FEDORA_VPS_DEFAULT]),
        "uplink": uplink("203.0.113.1", "eth0", VPS_IP), "ip_forward": "0\n",
        "firewalld": firewalld(fedora_zones("eth0", "", "default, active"),
                               fedora_zones("", "", "default")),
    }
    return Host("vps", SITE, s)


def fedora_vps_zones(site: Site, *, runtime: bool) -> str:
    """The zones a converged Fedora VPS lists: the WAN zone public forwards the service ports
    and masquerades home's egress; wg0 (wg-quick's, so listed in trusted.xml too) is trusted,
    which masquerades only with client_ip = "snat"."""
    t = site.tunnel
    forwards = tuple(f"port={p.nft}:proto={p.proto}:toport=:toaddr={t.home_address}"
                     for svc in site.services for p in svc.ports)
    return fedora_zones(
        "eth0" if runtime else "", f"{t.listen_port}/udp", "default, active" if runtime
        else "default", public={"masquerade": "yes", "forward_ports": forwards},
        trusted={"interfaces": t.interface, "flags": "active" if runtime else "",
                 "masquerade": "yes" if site.snat else "no"})


def fedora_vps_converged(site: Site = SITE) -> Host:
    t = site.tunnel
    s = base(FEDORA_OS, "systemd", True, commands(*FEDORA_VPS_CMDS, "wg", "wg-quick"))
    s |= {
        "key": "exists\n", "pubkey": f"{VPS_PUB}\n",
        "wg": wg_dump(VPS_PUB, t.listen_port, HOME_PUB, f"{HOME_NAT_IP}:41641",
                      f"{t.home_address}/32", "off", 1843532, 2212084),
        "wg_link": j([wg_link(3, kernel=True)]),
        "addrs": j([LO, FEDORA_VPS_WAN, wg_addr(3, str(t.vps_address), kernel=True)]),
        "rules": j(DEFAULT_RULES), "table_routes": MISSING_TABLE,
        "main_default": j([FEDORA_VPS_DEFAULT]),
        "uplink": uplink("203.0.113.1", "eth0", VPS_IP), "ip_forward": "1\n",
        "firewalld": firewalld(fedora_vps_zones(site, runtime=True),
                               fedora_vps_zones(site, runtime=False)),
        "orig": "./etc/firewalld/zones/public.xml.absent\n"
                "./etc/firewalld/zones/public.xml.old.absent\n"
                "./etc/firewalld/zones/trusted.xml.absent\n"
                "./etc/firewalld/zones/trusted.xml.old.absent\n",
        "state_dirs": "/var/lib/tunnelops\n/run/tunnelops\n",
    }
    files = {
        "/etc/wireguard/wg0.conf": ("600", "root", vps_wg_quick(t, HOME_PUB)),
        "/etc/sysctl.d/90-tunnelops.conf": ("644", "root", forwarding_conf()),
    }
    return recorded_site(Host("vps", site, s, files),
                         hub_claim(site, (HOME_PUB,), "eth0").to_json())


def private_ip_vps() -> Host:
    """A VPS behind its provider's NAT: its only IPv4 is 10.0.0.5."""
    s = base(UBUNTU_OS, "systemd", True, commands(
        "nft", "systemctl", "apt-get", "flock", "ping", "sudo", "loginctl", "runuser",
        "setpriv", facts.IP_JSON))
    s |= {
        "addrs": j([LO, nic(2, "ens3", "10.0.0.5", 24, dynamic=True)]),
        "rules": j(DEFAULT_RULES), "table_routes": MISSING_TABLE,
        "main_default": j([{"dst": "default", "gateway": "10.0.0.1", "dev": "ens3",
                            "protocol": "dhcp", "prefsrc": "10.0.0.5", "metric": 100,
                            "flags": []}]),
        "uplink": uplink("10.0.0.1", "ens3", "10.0.0.5"), "ip_forward": "0\n",
    }
    return Host("vps", SITE, s)


def arch_vps() -> Host:
    s = base(ARCH_OS, "systemd", True, commands("wg", "wg-quick", "nft", "systemctl", "flock",
                                                 "ping", "sudo", "loginctl", "runuser",
                                                 "setpriv", facts.IP_JSON))
    s |= {"addrs": j([LO, nic(2, "ens3", "198.51.100.77", 24)]), "rules": j(DEFAULT_RULES),
          "table_routes": MISSING_TABLE,
          "main_default": j([{"dst": "default", "gateway": "198.51.100.1", "dev": "ens3",
                              "flags": []}]),
          "uplink": uplink("198.51.100.1", "ens3", "198.51.100.77"), "ip_forward": "0\n"}
    return Host("vps", SITE, s)


LEGACY_DIR = HERE / "legacy"


def legacy(name: str, site: Site) -> Host:
    """A host tunnelops converged before issue 11, as today's facts command reads it: the
    sections and files that version recorded (legacy/NAME.txt), its table `inet tunnelops`
    now the older one (nft_legacy) and its drift record one of the older fixed files; no
    table of today's name, no site record."""
    old = facts._sections((LEGACY_DIR / f"{name}.txt").read_text())
    sections, files, users = {}, {}, {}
    for key, body in old.items():
        if key.startswith("file "):
            _, path, mode, owner = key.split(" ")
            files[path] = (mode, owner, base64.b64decode(body).decode())
        elif key.startswith("user "):
            users[key[5:]] = body
        else:
            sections[key] = body
    sections["nft_legacy"] = sections.pop("nft_table", "")
    if applied := sections.pop("nft_applied", ""):
        files[LEGACY.nft_applied] = ("644", "root", applied + "\n")
    sections.pop("nft_sets", None)
    return Host("home" if "-home-" in name else "vps", site, sections, files, users)


def fleet_fresh(make: Callable[[], Host]) -> Host:
    host = make()
    host.site = FLEET
    return host


def fleet_alpine_vps_converged() -> Host:
    """The three-home site converged on Alpine: a peer per home, a policy per service."""
    host = alpine_vps_converged()
    host.site = FLEET
    t = FLEET.tunnel
    ctx = Ctx(FLEET, "vps", HostFacts())
    policies = awall_backend.policies(ctx, "eth0", FLEET.services)
    host.sections["awall"] = awall_list({name: ("enabled", json.loads(text)["description"])
                                         for name, text in policies.items()})
    host.sections["wg"] = wg_dump(VPS_PUB, t.listen_port, HOME_PUB, f"{HOME_NAT_IP}:41641",
                                  f"{t.home_address}/32", "off", 1843532, 2212084) + "".join(
        f"{p.public_key}\t(none)\t{HOME_NAT_IP}:{41642 + i}\t{p.address}/32\t{NOW - 17}\t"
        f"{1000 * (i + 1)}\t{2000 * (i + 1)}\toff\n" for i, p in enumerate(FLEET_PEERS[1:]))
    host.files = {p: v for p, v in host.files.items() if not p.startswith("/etc/awall/")}
    host.files |= {"/etc/wireguard/wg0.conf": ("600", "root", vps_setconf(t, FLEET_PEERS)),
                   **{p: ("644", "root", text) for p, text in awall_backend.files(
                       ctx, "eth0", FLEET.services).items()}}
    return recorded_site(host, hub_claim(FLEET, tuple(FLEET_KEYS.values()), "eth0").to_json())


def fleet_debian_vps_converged() -> Host:
    """The three-home site converged on Debian: a peer per home, a pair of sets per home."""
    host = debian_vps_converged()
    host.site = FLEET
    t = FLEET.tunnel
    homes = {h.name: FLEET.address(h) for h in FLEET.homes}
    ruleset = nftables.vps_ruleset("eth0", t, FLEET.services, homes=homes)
    listed, sets = nft_list(ruleset)
    host.sections |= {"nft_table": listed, "nft_applied": listed, "nft_sets": sets}
    host.sections["wg"] = wg_dump(VPS_PUB, t.listen_port, HOME_PUB, f"{HOME_NAT_IP}:41641",
                                  f"{t.home_address}/32", "off", 1843532, 2212084) + "".join(
        f"{p.public_key}\t(none)\t{HOME_NAT_IP}:{41642 + i}\t{p.address}/32\t{NOW - 17}\t"
        f"{1000 * (i + 1)}\t{2000 * (i + 1)}\toff\n" for i, p in enumerate(FLEET_PEERS[1:]))
    host.files |= {NAMES.nft_file: ("644", "root", ruleset),
                   "/etc/wireguard/wg0.conf": ("600", "root", vps_wg_quick(t, FLEET_PEERS))}
    with_host_table(host, HubSite("wg0", 51821, "fleet"))
    return recorded_site(host, hub_claim(FLEET, tuple(FLEET_KEYS.values()), "eth0").to_json())


HOSTS = {
    "alpine-vps-fresh": alpine_vps_fresh,
    "alpine-vps-converged": alpine_vps_converged,
    "fedora-home-fresh": fedora_home_fresh,
    "fedora-home-converged": fedora_home_converged,
    "debian-vps-fresh": debian_vps_fresh,
    "debian-vps-converged": debian_vps_converged,
    "debian-vps-converged-snat": debian_vps_converged_snat,
    "fedora-vps-fresh": fedora_vps_fresh,
    "fedora-vps-converged": fedora_vps_converged,
    "fedora-vps-converged-snat": lambda: fedora_vps_converged(
        dataclasses.replace(SITE, client_ip="snat")),
    "private-ip-vps": private_ip_vps,
    "arch-vps": arch_vps,
    "legacy-alpine-vps-converged": lambda: legacy("alpine-vps-converged", SITE),
    "legacy-debian-vps-converged": lambda: legacy("debian-vps-converged", RANGE_SITE),
    "legacy-fedora-home-converged": lambda: legacy("fedora-home-converged", SITE),
    "legacy-fedora-vps-converged": lambda: legacy("fedora-vps-converged", SITE),
    "fleet-alpine-vps-fresh": lambda: fleet_fresh(alpine_vps_fresh),
    "fleet-alpine-vps-converged": fleet_alpine_vps_converged,
    "fleet-debian-vps-fresh": lambda: fleet_fresh(debian_vps_fresh),
    "fleet-debian-vps-converged": fleet_debian_vps_converged,
}


def load(name: str) -> str:
    return (HERE / f"{name}.txt").read_text()


def main() -> None:
    for name, make in HOSTS.items():
        path = HERE / f"{name}.txt"
        path.write_text(output(make()))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
