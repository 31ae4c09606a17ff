"""The recorded hosts: what each one's facts read, probe by probe (sections named as the
attributes of facts.FactProbes). Converged hosts hold the files tunnelops' own renderers
write, so a converged host must plan no change at all.

A fresh Alpine has BusyBox's `ip`, which has no -j: its JSON sections are empty and only the
uplink's plain-text fallback answers.
"""

from __future__ import annotations

import dataclasses
import json

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
    uplink,
    wg_addr,
    wg_dump,
)
from tunnelops import probes
from tunnelops.backends import awall as awall_backend
from tunnelops.backends import podman as podman_backend
from tunnelops.backends.podman import network_kind
from tunnelops.facts import HostFacts
from tunnelops.model import Site
from tunnelops.render import ifupdown, nftables, podman
from tunnelops.render.sysctl import forwarding_conf
from tunnelops.render.wireguard import home_import_conf, vps_setconf, vps_wg_quick
from tunnelops.steps.context import Ctx


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
                for name, text in ((p.rsplit("/", 1)[1].removesuffix(".json"), text)
                                   for p, text in awall_backend.files(ctx, "eth0",
                                                                      SITE.services).items())
                if name != "base"}
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
    return Host("vps", SITE, s, files)


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
                   podman.SERVICE_LABEL: svc.name, podman.SPEC_LABEL: spec},
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
        "/etc/tunnelops/firewalld-ports": ("644", "root", "12345/udp\n12346/tcp\n"),
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
               svc.image]
    gamer = User(
        account="uid=1001\nhome=/home/gamer\nlinger=yes\nruntime=yes\n",
        podman=f"version={user_info['version']}\nnofile=524288\nhas_image={svc.image}\n",
        containers=f"create {svc.container_name} {json.dumps(kind)} {json.dumps(created)}\n"
                   + json.dumps([container], indent=2) + "\n")
    return Host("home", SITE, s, files, {"gamer": gamer})


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
        "/etc/tunnelops/tunnelops.nft": ("644", "root", ruleset),
        "/etc/nftables.conf": ("755", "root", DEBIAN_NFTABLES_CONF
                               + "# tunnelops: its own table, loaded after everything else\n"
                               + 'include "/etc/tunnelops/tunnelops.nft"\n'),
    }
    return Host("vps", RANGE_SITE, s, files)


def debian_vps_converged_snat() -> Host:
    """The same VPS converged with client_ip = "snat": the table has its SNAT rules."""
    host = debian_vps_converged()
    site = dataclasses.replace(RANGE_SITE, client_ip="snat")
    ruleset = nftables.vps_ruleset("eth0", site.tunnel, site.services, snat=True)
    listed, sets = nft_list(ruleset)
    host.site = site
    host.sections |= {"nft_table": listed, "nft_applied": listed, "nft_sets": sets}
    host.files["/etc/tunnelops/tunnelops.nft"] = ("644", "root", ruleset)
    return host


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
    return Host("vps", site, s, files)


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
        "/etc/tunnelops/tunnelops.nft": ("644", "root", ruleset),
        "/etc/systemd/system/tunnelops-nftables.service": (
            "644", "root", nftables.boot_unit("/etc/tunnelops/tunnelops.nft")),
        "/etc/nftables.conf": ("644", "root", ARCH_NFTABLES_CONF),
    }
    return Host("vps", SITE, s, files)


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
}
