"""The recorded hosts: what each one's facts read, probe by probe (sections named as the
attributes of facts.FactProbes). Converged hosts hold the files tunnelops' own renderers
write, so a converged host must plan no change at all.

A fresh Alpine has BusyBox's `ip`, which has no -j: its JSON sections are empty and only the
uplink's plain-text fallback answers.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from tests.unit.facts.oses import (
    ALPINE_INTERFACES,
    ALPINE_OS,
    ARCH_NFTABLES_CONF,
    ARCH_OS,
    DEBIAN_NFTABLES_CONF,
    DEBIAN_OS,
    FEDORA_OS,
    FEDORA_SYSCONFIG_NFT,
    GENTOO_OS,
    UBUNTU_OS,
)
from tests.unit.facts.shapes import (
    DEFAULT_RULES,
    GAME,
    HOME_NAT_IP,
    HOME_PUB,
    LO,
    MISSING_TABLE,
    NAMES,
    NOW,
    RANGE_SITE,
    SITE,
    VPS_IP,
    VPS_PUB,
    Host,
    User,
    awall_list,
    commands,
    fedora_zones,
    firewalld,
    j,
    nft_list,
    nic,
    nm_profile,
    recorded_site,
    uplink,
    wg_addr,
    wg_dump,
)
from tunnelops import naming, probes
from tunnelops.backends import awall as awall_backend
from tunnelops.backends import nftables as nft_backend
from tunnelops.backends import podman as podman_backend
from tunnelops.backends.podman import network_kind
from tunnelops.claims import home_claim, hub_claim
from tunnelops.engine import fact_probes
from tunnelops.facts import HostFacts
from tunnelops.inventory.new import new_site
from tunnelops.model.hosts import HomeSpec, HostRef
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.site import Site
from tunnelops.probes import sections
from tunnelops.render import ifupdown, nftables, nfthost, podman
from tunnelops.render.nfthost import HubSite
from tunnelops.render.sysctl import forwarding_conf
from tunnelops.render.wireguard import Peer, home_import_conf, vps_setconf, vps_wg_quick
from tunnelops.steps.context import NFT_BOOT_UNIT, Ctx


def base(os_release: str, pid1: str, kernel_wg: bool, cmds: str) -> dict[str, str]:
    return {"os": os_release, "uid": "0\n", "clock": f"{NOW}\n", "pid1": f"{pid1}\n",
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
        "wg", "wg-quick", "awall", "rc-update", "apk", "ifup", "flock", "ping", probes.IP_JSON))
    ctx = Ctx(SITE, "vps", HostFacts())
    policies = {name: ("enabled", json.loads(text)["description"])
                for name, text in awall_backend.policies(ctx, "eth0", SITE.services).items()}
    s |= {
        "key": "yes\n", "pubkey": f"{VPS_PUB}\n",
        "wg": wg_dump(VPS_PUB, t.listen_port, HOME_PUB, f"{HOME_NAT_IP}:41641",
                      f"{t.home_address}/32", "off", 1843532, 2212084),
        "addrs": j([LO, nic(2, "eth0", VPS_IP, 24, dynamic=True),
                    wg_addr(3, str(t.vps_address), kernel=True)]),
        "rules": j(DEFAULT_RULES), "table_routes": MISSING_TABLE,
        "main_routes": j([{"dst": "default", "gateway": "203.0.113.1", "dev": "eth0",
                           "metric": 202, "flags": []}]),
        "uplink": uplink("203.0.113.1", "eth0", VPS_IP), "ip_forward": "1\n",
        "originals": "./etc/network/interfaces\n", "created": "dir /etc/wireguard\n",
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
               "sudo", "pasta", "loginctl", "runuser", "setpriv", probes.IP_JSON)
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
        "uplink": uplink("192.168.1.1", "enp1s0", "192.168.1.50"), "ip_forward": "0\n",
        # NetworkManager binds enp1s0 to the default zone: not in the permanent zone files
        **firewalld(fedora_zones("enp1s0", "", "default, active"),
                    fedora_zones("", "", "default")),
        "nm": nm_profile(None),  # NetworkManager runs, and has no profile wg0
    }
    # no user gamer yet: only the version of the (root's) podman
    return Host("home", SITE, s, {"/etc/sysconfig/nftables.conf": ("600", "root",
                                                                   FEDORA_SYSCONFIG_NFT)},
                {"gamer": User(podman=f"version={FEDORA_PODMAN}\n")})


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
        "key": "yes\n", "pubkey": f"{HOME_PUB}\n",
        "wg": wg_dump(HOME_PUB, 39217, VPS_PUB, f"{VPS_IP}:{t.listen_port}", "0.0.0.0/0",
                      str(t.keepalive), 2212084, 1843532),
        "addrs": j([LO, FEDORA_LAN, wg_addr(3, str(t.home_address), kernel=True)]),
        "rules": j([DEFAULT_RULES[0],
                    {"priority": first, "src": str(t.home_address), "table": "201"},
                    {"priority": second, "src": "all", "dst": str(t.vps_address),
                     "table": "201"},
                    *DEFAULT_RULES[1:]]),
        "table_routes": j([{"dst": "default", "dev": "wg0", "protocol": "static",
                            "metric": 50, "flags": []}]),
        "main_routes": j(FEDORA_ROUTES),
        "uplink": uplink("192.168.1.1", "enp1s0", "192.168.1.50"), "ip_forward": "0\n",
        # wg0 is NetworkManager's: firewall-cmd --permanent --change-interface set the
        # profile's connection.zone instead of writing wg0 into public.xml
        **firewalld(fedora_zones("enp1s0 wg0", "12345/udp 12346/tcp", "default, active"),
                    fedora_zones("", "12345/udp 12346/tcp", "default")),
        "originals": "./etc/firewalld/zones/public.xml.absent\n"
                     "./etc/firewalld/zones/public.xml.old.absent\n",
        "created": "user gamer\nlinger gamer\n",
        "state_dirs": "/etc/tunnelops\n/var/lib/tunnelops\n/run/tunnelops\n",
        "nm": nm_profile(SITE, "public",
                         f"[wireguard-peer.{VPS_PUB}]\nendpoint={VPS_IP}:{t.listen_port}\n"
                         f"persistent-keepalive={t.keepalive}\nallowed-ips=0.0.0.0/0;\n"),
    }
    unit = f"/home/gamer/.config/containers/systemd/{svc.container_name}.container"
    files = {
        "/etc/wireguard/wg0.conf": ("600", "root", home_import_conf(t, VPS_PUB, VPS_IP)),
        "/etc/sysconfig/nftables.conf": ("600", "root", FEDORA_SYSCONFIG_NFT),
        NAMES.firewalld_record: ("644", "root", "12345/udp\n12346/tcp\n"),
        unit: ("644", "gamer", podman.quadlet_unit(svc, t, kind, spec)),
        podman_backend.NETWORK_ONLINE_DROPIN: ("644", "root",
                                               podman_backend.NETWORK_ONLINE_WANTS),
    }
    # what Quadlet's generated ExecStart ran (its --network=VALUE form)
    network = podman.network_option(kind, t)
    created = ["/usr/bin/podman", "run", f"--name={svc.container_name}",
               f"--cidfile=/run/user/1001/{svc.container_name}.cid", "--replace", "--rm",
               "--cgroups=split", f"--network={network}",
               "--sdnotify=conmon", "-d", *podman.publish_args(svc, t), "--label",
               f"{podman.SPEC_LABEL}={spec}", "--label", f"{podman.SERVICE_LABEL}={svc.name}",
               "--label", f"{podman.TUNNEL_LABEL}={t.interface}", svc.image]
    gamer = User(
        account="uid=1001\nhome=/home/gamer\nlinger=yes\nruntime=yes\n",
        podman=f"version={user_info['version']}\nnofile=524288\nhas_image={svc.image}\n",
        containers=f"create {svc.container_name} {json.dumps(kind)} {json.dumps(created)}\n"
                   + json.dumps([container], indent=2) + "\n")
    return recorded_site(Host("home", SITE, s, files, {"gamer": gamer}),
                         home_claim(SITE, "home", (VPS_PUB,)).to_json())


DEBIAN_CMDS = ("wireguard-go", "nft", "systemctl", "apt-get", "flock", "ping", "loginctl",
               "runuser", "setpriv", probes.IP_JSON)


def debian_vps_fresh() -> Host:
    s = base(DEBIAN_OS, "systemd", False, commands(*DEBIAN_CMDS))
    s |= {
        "addrs": j([LO, nic(2, "eth0", VPS_IP, 24)]), "rules": j(DEFAULT_RULES),
        "table_routes": MISSING_TABLE,
        "main_routes": j([{"dst": "default", "gateway": "203.0.113.1", "dev": "eth0",
                           "flags": ["onlink"]}]),
        "uplink": uplink("203.0.113.1", "eth0", VPS_IP), "ip_forward": "0\n",
    }
    return Host("vps", RANGE_SITE, s, {"/etc/nftables.conf": ("755", "root",
                                                              DEBIAN_NFTABLES_CONF)})


def debian_vps_converged() -> Host:
    t = RANGE_SITE.tunnel
    s = base(DEBIAN_OS, "systemd", False, commands(*DEBIAN_CMDS, "wg", "wg-quick"))
    ruleset = nftables.vps_ruleset("eth0", t, RANGE_SITE.services)
    listed, sets = nft_list(ruleset)
    s |= {
        "key": "yes\n", "pubkey": f"{VPS_PUB}\n",
        "wg": wg_dump(VPS_PUB, t.listen_port, HOME_PUB, f"{HOME_NAT_IP}:41641",
                      f"{t.home_address}/32", "off", 1843532, 2212084),
        "addrs": j([LO, nic(2, "eth0", VPS_IP, 24),
                    wg_addr(3, str(t.vps_address), kernel=False)]),
        "rules": j(DEFAULT_RULES), "table_routes": MISSING_TABLE,
        "main_routes": j([{"dst": "default", "gateway": "203.0.113.1", "dev": "eth0",
                           "flags": ["onlink"]}]),
        "uplink": uplink("203.0.113.1", "eth0", VPS_IP), "ip_forward": "1\n",
        "nft_table": listed, "nft_applied": listed, "nft_sets": sets,
        "originals": "./etc/nftables.conf\n",
        "state_dirs": "/etc/tunnelops\n/var/lib/tunnelops\n/run/tunnelops\n",
    }
    files = {
        "/etc/wireguard/wg0.conf": ("600", "root", vps_wg_quick(t, HOME_PUB)),
        "/etc/sysctl.d/90-tunnelops.conf": ("644", "root", forwarding_conf()),
        NAMES.nft_file: ("644", "root", ruleset),
    }
    host = with_host_table(Host("vps", RANGE_SITE, s, files), HubSite("wg0", 51821, "home"))
    return recorded_site(host, hub_claim(RANGE_SITE, (HOME_PUB,), "eth0").to_json())


def with_host_table(host: Host, *sites: HubSite, wan: str = "eth0",
                    conf: str | None = DEBIAN_NFTABLES_CONF) -> Host:
    """The VPS's own table, shared by its sites (render.nfthost), loaded from its file and
    recorded; CONF: the distribution's nftables config, with the include lines (None: left
    as it is, a unit of ours loads the tables)."""
    text = nfthost.host_ruleset(wan, 22, sorted(sites))
    listed, sets = nft_list(text, naming.HOST_FAMILY_TABLE)
    host.sections |= {"nft_host": listed, "nft_host_applied": listed, "nft_host_sets": sets}
    host.files[naming.HOST_NFT_FILE] = ("644", "root", text)
    if conf is not None:
        host.files["/etc/nftables.conf"] = ("755", "root", conf + "".join(
            f"{line}\n" for line in (*nft_backend.HOST_LINES,
                                      *nft_backend.include_lines(NAMES))))
    return host


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
                   "loginctl", "runuser", "setpriv", probes.IP_JSON)
FEDORA_VPS_WAN = nic(2, "eth0", VPS_IP, 24, dynamic=True)
FEDORA_VPS_DEFAULT = {"dst": "default", "gateway": "203.0.113.1", "dev": "eth0",
                      "protocol": "dhcp", "prefsrc": VPS_IP, "metric": 100, "flags": []}


def fedora_vps_fresh() -> Host:
    """A Fedora VPS running firewalld; NetworkManager binds eth0 to the default zone."""
    s = base(FEDORA_OS, "systemd", True, commands(*FEDORA_VPS_CMDS))
    s |= {
        "addrs": j([LO, FEDORA_VPS_WAN]), "rules": j(DEFAULT_RULES),
        "table_routes": MISSING_TABLE, "main_routes": j([FEDORA_VPS_DEFAULT]),
        "uplink": uplink("203.0.113.1", "eth0", VPS_IP), "ip_forward": "0\n",
        **firewalld(fedora_zones("eth0", "", "default, active"),
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
        "key": "yes\n", "pubkey": f"{VPS_PUB}\n",
        "wg": wg_dump(VPS_PUB, t.listen_port, HOME_PUB, f"{HOME_NAT_IP}:41641",
                      f"{t.home_address}/32", "off", 1843532, 2212084),
        "addrs": j([LO, FEDORA_VPS_WAN, wg_addr(3, str(t.vps_address), kernel=True)]),
        "rules": j(DEFAULT_RULES), "table_routes": MISSING_TABLE,
        "main_routes": j([FEDORA_VPS_DEFAULT]),
        "uplink": uplink("203.0.113.1", "eth0", VPS_IP), "ip_forward": "1\n",
        **firewalld(fedora_vps_zones(site, runtime=True), fedora_vps_zones(site, runtime=False)),
        "originals": "./etc/firewalld/zones/public.xml.absent\n"
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
        "setpriv", probes.IP_JSON))
    s |= {
        "addrs": j([LO, nic(2, "ens3", "10.0.0.5", 24, dynamic=True)]),
        "rules": j(DEFAULT_RULES), "table_routes": MISSING_TABLE,
        "main_routes": j([{"dst": "default", "gateway": "10.0.0.1", "dev": "ens3",
                           "protocol": "dhcp", "prefsrc": "10.0.0.5", "metric": 100,
                           "flags": []}]),
        "uplink": uplink("10.0.0.1", "ens3", "10.0.0.5"), "ip_forward": "0\n",
    }
    return Host("vps", SITE, s)


def arch_vps() -> Host:
    s = base(ARCH_OS, "systemd", True, commands("wg", "wg-quick", "nft", "systemctl", "flock",
                                                 "ping", "sudo", "loginctl", "runuser",
                                                 "setpriv", probes.IP_JSON))
    s |= {"addrs": j([LO, nic(2, "ens3", "198.51.100.77", 24)]), "rules": j(DEFAULT_RULES),
          "table_routes": MISSING_TABLE,
          "main_routes": j([{"dst": "default", "gateway": "198.51.100.1", "dev": "ens3",
                             "flags": []}]),
          "uplink": uplink("198.51.100.1", "ens3", "198.51.100.77"), "ip_forward": "0\n"}
    return Host("vps", SITE, s)


ARCH_CMDS = ("wg", "wg-quick", "nft", "systemctl", "flock", "ping", "sudo", "loginctl",
             "runuser", "setpriv", probes.IP_JSON)


def arch_vps_converged() -> Host:
    """The Arch VPS after bootstrap: our table loaded at boot by our own unit, Arch's own
    nftables.conf as its package shipped it."""
    t = SITE.tunnel
    s = base(ARCH_OS, "systemd", True, commands(*ARCH_CMDS))
    ruleset = nftables.vps_ruleset("ens3", t, SITE.services)
    listed, sets = nft_list(ruleset)
    s |= {
        "key": "yes\n", "pubkey": f"{VPS_PUB}\n",
        "wg": wg_dump(VPS_PUB, t.listen_port, HOME_PUB, f"{HOME_NAT_IP}:41641",
                      f"{t.home_address}/32", "off", 1843532, 2212084),
        "addrs": j([LO, nic(2, "ens3", "198.51.100.77", 24),
                    wg_addr(3, str(t.vps_address), kernel=True)]),
        "rules": j(DEFAULT_RULES), "table_routes": MISSING_TABLE,
        "main_routes": j([{"dst": "default", "gateway": "198.51.100.1", "dev": "ens3",
                           "flags": []}]),
        "uplink": uplink("198.51.100.1", "ens3", "198.51.100.77"), "ip_forward": "1\n",
        "nft_table": listed, "nft_applied": listed, "nft_sets": sets,
        "state_dirs": "/etc/tunnelops\n/var/lib/tunnelops\n/run/tunnelops\n",
    }
    files = {
        "/etc/wireguard/wg0.conf": ("600", "root", vps_wg_quick(t, HOME_PUB)),
        "/etc/sysctl.d/90-tunnelops.conf": ("644", "root", forwarding_conf()),
        NAMES.nft_file: ("644", "root", ruleset),
        NFT_BOOT_UNIT: ("644", "root", nftables.boot_unit(nft_backend.BOOT_GLOB)),
        "/etc/nftables.conf": ("644", "root", ARCH_NFTABLES_CONF),
    }
    host = with_host_table(Host("vps", SITE, s, files), HubSite("wg0", 51821, "home"),
                           wan="ens3", conf=None)
    return recorded_site(host, hub_claim(SITE, (HOME_PUB,), "ens3").to_json())


def gentoo_vps() -> Host:
    """A distribution tunnelops has no entry for."""
    s = base(GENTOO_OS, "init", True, commands("wg", "wg-quick", "nft", "rc-update", "flock",
                                                 "ping", "sudo", probes.IP_JSON))
    s |= {"addrs": j([LO, nic(2, "eth0", "198.51.100.88", 24)]), "rules": j(DEFAULT_RULES),
          "table_routes": MISSING_TABLE,
          "main_routes": j([{"dst": "default", "gateway": "198.51.100.1", "dev": "eth0",
                             "flags": []}]),
          "uplink": uplink("198.51.100.1", "eth0", "198.51.100.88"), "ip_forward": "0\n"}
    return Host("vps", SITE, s)


LEGACY_DIR = Path(__file__).parent / "legacy"


def legacy(name: str, site: Site) -> Host:
    """A host tunnelops converged before issue 11 (one site per host, fixed names: `table
    inet tunnelops`, /etc/awall/base.json, ...), as today's facts read it: what that
    version's facts batch printed (legacy/NAME.txt, frozen), its table now the older one
    (NftTable of inet tunnelops), its drift record one of the older fixed files; no table of
    today's names, no site record."""
    old = sections((LEGACY_DIR / f"{name}.txt").read_text())
    named = {p.key: attr for attr, p in fact_probes(site, None if "-vps-" in name
                                                    else site.homes[0]).named().items()}
    secs, files, users = {}, {}, {}
    for key, body in old.items():
        kind, _, rest = key.partition(" ")
        if kind == "file":
            if body:
                head, _, data = body.partition("\n")
                mode, owner = head.split()
                files[rest] = (mode, owner, base64.b64decode(data).decode())
        elif kind in ("account", "podman", "containers"):
            user = users.setdefault(rest.split()[0], User())
            setattr(user, kind, body + "\n" if body else "")
        elif key == "nft_table":
            secs["nft_legacy"] = body + "\n" if body else ""
        elif key == "text /var/lib/tunnelops/nft.applied":
            if body:
                files[naming.LEGACY.nft_applied] = ("644", "root", body + "\n")
        elif key in named:
            secs[named[key]] = body + "\n" if body else ""
    return Host("home" if "-home-" in name else "vps", site, secs, files, users)


# Three homes behind one VPS (issue 11): a game at home, a voice server on a Raspberry Pi,
# and a friend's machine whose service forwards a range (its address given in the inventory).
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


def fleet_fresh(make: Callable[[], Host]) -> Host:
    host = make()
    host.site = FLEET
    return host


def _fleet_wg() -> str:
    t = FLEET.tunnel
    return wg_dump(VPS_PUB, t.listen_port, HOME_PUB, f"{HOME_NAT_IP}:41641",
                   f"{t.home_address}/32", "off", 1843532, 2212084) + "".join(
        f"{p.public_key}\t(none)\t{HOME_NAT_IP}:{41642 + i}\t{p.address}/32\t{NOW - 17}\t"
        f"{1000 * (i + 1)}\t{2000 * (i + 1)}\toff\n" for i, p in enumerate(FLEET_PEERS[1:]))


def fleet_alpine_vps_converged() -> Host:
    """The three-home site converged on Alpine: a peer per home, a policy per service."""
    host = alpine_vps_converged()
    host.site = FLEET
    t = FLEET.tunnel
    ctx = Ctx(FLEET, "vps", HostFacts())
    policies = awall_backend.policies(ctx, "eth0", FLEET.services)
    host.sections["awall"] = awall_list({name: ("enabled", json.loads(text)["description"])
                                         for name, text in policies.items()})
    host.sections["wg"] = _fleet_wg()
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
    host.sections |= {"nft_table": listed, "nft_applied": listed, "nft_sets": sets,
                      "wg": _fleet_wg()}
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
    "arch-vps-converged": arch_vps_converged,
    "gentoo-vps": gentoo_vps,
    "legacy-alpine-vps-converged": lambda: legacy("alpine-vps-converged", SITE),
    "legacy-debian-vps-converged": lambda: legacy("debian-vps-converged", RANGE_SITE),
    "legacy-fedora-home-converged": lambda: legacy("fedora-home-converged", SITE),
    "legacy-fedora-vps-converged": lambda: legacy("fedora-vps-converged", SITE),
    "fleet-alpine-vps-fresh": lambda: fleet_fresh(alpine_vps_fresh),
    "fleet-alpine-vps-converged": fleet_alpine_vps_converged,
    "fleet-debian-vps-fresh": lambda: fleet_fresh(debian_vps_fresh),
    "fleet-debian-vps-converged": fleet_debian_vps_converged,
}
