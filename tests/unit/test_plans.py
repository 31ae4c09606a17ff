"""Plans as data, pyinfra-style: recorded facts of a host in, the exact changes out.

The facts are tests/unit/facts/*.txt, what the one facts command printed (or would print) on
Alpine, Fedora, Debian/Ubuntu and Arch hosts; tests/unit/facts/generate.py writes them. The lab
runs only Debian, so this is where Alpine's awall + ifupdown-ng and Fedora's NetworkManager +
firewalld are checked. A converged host must plan nothing at all: that is the idempotency
contract behind `changed=0`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json

import pytest

from tests.unit.facts import generate
from tests.unit.facts.generate import (
    ALPINE_INTERFACES,
    DEBIAN_NFTABLES_CONF,
    GAME_RANGE,
    HOME_PUB,
    INVENTORY,
    RANGE_SITE,
    SITE,
    VPS_IP,
    VPS_PUB,
)
from tunnelops import facts
from tunnelops.backends import awall as awall_backend
from tunnelops.backends import ifupdown as ifupdown_backend
from tunnelops.changes import CommandChange, FileChange, StepPlan
from tunnelops.claims import hub_claim
from tunnelops.facts import HostFacts
from tunnelops.inventory import new_site
from tunnelops.model import PRIVATE_KEY_PLACEHOLDER, Site
from tunnelops.render import awall as awall_render
from tunnelops.render import ifupdown, nftables, nfthost, podman
from tunnelops.render.sysctl import forwarding_conf
from tunnelops.render.wireguard import (
    home_import_conf,
    home_wg_quick,
    vps_setconf,
    vps_wg_quick,
)
from tunnelops.steps import home, vps
from tunnelops.steps.context import Ctx, PlanError

T = SITE.tunnel
KEY = "/etc/wireguard/wg0.key"
ENABLE = ("tunnelops-wg0-base tunnelops-wg0-ssh tunnelops-wg0-wireguard "
          "tunnelops-wg0-service-game")


def recorded(name: str) -> HostFacts:
    return facts.parse(generate.load(name))


def vps_ctx(f: HostFacts, site: Site = SITE) -> Ctx:
    ctx = Ctx(site, "vps", f, peer_public_key=HOME_PUB)
    ctx.vps_public_ip, ctx.wan_interface = vps.discover(ctx, INVENTORY)
    return ctx


def home_ctx(f: HostFacts, site: Site = SITE, vps_key: str = VPS_PUB) -> Ctx:
    return Ctx(site, "home", f, peer_public_key=vps_key, vps_public_ip=VPS_IP,
               wan_interface="eth0")


def vps_plans(ctx: Ctx) -> list[StepPlan]:
    return vps.prepare(ctx) + vps.configure(ctx)


def home_plans(ctx: Ctx) -> list[StepPlan]:
    return home.prepare(ctx) + home.configure(ctx)


def summary(plans: list[StepPlan]) -> list[tuple[str, list[str]]]:
    return [(p.step, [c.summary for c in p.changes]) for p in plans]


def step(plans: list[StepPlan], name: str) -> StepPlan:
    return next(p for p in plans if p.step == name)


def change(plans: list[StepPlan], name: str, what: str):
    return next(c for c in step(plans, name).changes if c.summary == what)


def assert_converged(plans: list[StepPlan]) -> None:
    assert summary(plans) == [(p.step, []) for p in plans]
    assert [p.step for p in plans if p.guard or p.post] == []


# --------------------------------------------------------------------------- the data itself

@pytest.mark.parametrize("name", sorted(generate.HOSTS))
def test_recorded_facts_are_what_the_generator_writes(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # nft's own listing needs a network namespace: reuse the recorded one
    raw = recorded(name).raw

    def listed(ruleset: str, table: str = "") -> tuple[str, str]:
        kind = "nft_host" if "host" in table else "nft_table"
        sets = "nft_host_sets" if "host" in table else "nft_sets"
        return raw.get(kind, "") + "\n", raw.get(sets, "") + "\n"

    monkeypatch.setattr(generate, "nft_list", listed)
    assert generate.output(generate.HOSTS[name]()) == generate.load(name)


# --------------------------------------------------------------------------- Alpine VPS

def test_alpine_fresh_vps() -> None:
    ctx = vps_ctx(recorded("alpine-vps-fresh"))
    assert (ctx.vps_public_ip, ctx.wan_interface) == (VPS_IP, "eth0")
    plans = vps_plans(ctx)
    assert summary(plans) == [
        ("packages", ["install awall iproute2 wireguard-tools"]),
        ("keys", ["generate a WireGuard key pair in /etc/wireguard/wg0.key"]),
        ("site", ["create /var/lib/tunnelops/sites/wg0.json"]),
        ("forwarding", ["create /etc/sysctl.d/90-tunnelops.conf",
                        "enable IPv4 forwarding now"]),
        ("wireguard", ["create /etc/wireguard/wg0.conf", "create /etc/network/interfaces.d/wg0",
                       "update /etc/network/interfaces", "ifup wg0"]),
        ("firewall", ["create /etc/awall/optional/tunnelops-wg0-base.json",
                      "create /etc/awall/optional/tunnelops-wg0-ssh.json",
                      "create /etc/awall/optional/tunnelops-wg0-wireguard.json",
                      "create /etc/awall/optional/tunnelops-wg0-service-game.json",
                      f"awall enable {ENABLE}", "awall activate"]),
    ]
    assert change(plans, "packages", "install awall iproute2 wireguard-tools").script == \
        "apk add --no-cache awall iproute2 wireguard-tools"
    assert step(plans, "wireguard").notes == ["ifupdown-ng (use wireguard)"]

    conf = change(plans, "wireguard", "create /etc/wireguard/wg0.conf")
    assert conf == FileChange("/etc/wireguard/wg0.conf", vps_setconf(T, HOME_PUB), None,
                              mode=0o600, key_path=KEY)
    assert f"PrivateKey = {PRIVATE_KEY_PLACEHOLDER}" in conf.content
    assert change(plans, "wireguard", "create /etc/network/interfaces.d/wg0").content == \
        ifupdown.wg_stanza(T)
    interfaces = change(plans, "wireguard", "update /etc/network/interfaces")
    assert (interfaces.old, interfaces.content) == (
        ALPINE_INTERFACES, ALPINE_INTERFACES + "source-directory /etc/network/interfaces.d\n")
    assert change(plans, "wireguard", "ifup wg0").script == "ifup wg0"
    assert change(plans, "forwarding", "create /etc/sysctl.d/90-tunnelops.conf").content == \
        forwarding_conf()

    fw = step(plans, "firewall")
    game = change(plans, "firewall",
                  "create /etc/awall/optional/tunnelops-wg0-service-game.json").content
    assert game == awall_render.dumps(awall_render.service_policy(SITE.services[0], T))
    assert json.loads(game)["service"] == {"tunnelops-wg0-game": [
        {"proto": "udp", "port": 12345}, {"proto": "tcp", "port": 12346}]}
    base = json.loads(change(plans, "firewall",
                             "create /etc/awall/optional/tunnelops-wg0-base.json").content)
    assert base["zone"] == {"tunnelops-wg0-inet": {"iface": "eth0"},
                            "tunnelops-wg0-vpn": {"iface": "wg0"}}
    assert change(plans, "firewall", f"awall enable {ENABLE}").script == \
        f"awall enable {ENABLE}"
    assert change(plans, "firewall", "awall activate").script == (
        f"awall activate --force\nmkdir -p /var/lib/tunnelops; {awall_backend.LIVE} > "
        "/var/lib/tunnelops/awall.applied")
    assert fw.guard is not None and fw.guard.seconds == ctx.guard_seconds
    # the kernel firewall is primed before the snapshot, so the rollback restores tables
    assert fw.guard.snapshot.startswith(awall_backend.PRIME + "; ")
    assert "iptables-save > /var/lib/tunnelops/awall.rollback/iptables" in fw.guard.snapshot
    assert "iptables-restore < /var/lib/tunnelops/awall.rollback/iptables" in fw.guard.restore
    assert fw.post == ["rc-update add iptables >/dev/null 2>&1 || true; "
                       "rc-update add ip6tables >/dev/null 2>&1 || true; "
                       "rc-update add ipset >/dev/null 2>&1 || true"]


def test_alpine_converged_vps_plans_nothing() -> None:
    ctx = vps_ctx(recorded("alpine-vps-converged"))
    assert (ctx.vps_public_ip, ctx.wan_interface) == (VPS_IP, "eth0")
    assert_converged(vps_plans(ctx))


def test_alpine_policy_disabled_by_hand_is_enabled_again() -> None:
    f = recorded("alpine-vps-converged")
    f.awall_enabled = ("tunnelops-wg0-base", "tunnelops-wg0-ssh", "tunnelops-wg0-wireguard")
    assert summary(vps.configure(vps_ctx(f)))[3] == (
        "firewall", ["awall enable tunnelops-wg0-service-game", "awall activate"])


def test_alpine_port_range_added_rewrites_only_the_service_policy() -> None:
    site = dataclasses.replace(SITE, services=(GAME_RANGE,))
    plans = vps.configure(vps_ctx(recorded("alpine-vps-converged"), site))
    assert summary(plans)[2:] == [
        ("wireguard", []),
        ("firewall", ["update /etc/awall/optional/tunnelops-wg0-service-game.json",
                      "awall activate"])]
    game = change(plans, "firewall", "update /etc/awall/optional/tunnelops-wg0-service-game.json")
    assert json.loads(game.content)["service"]["tunnelops-wg0-game"][2] == {
        "proto": "udp", "port": "27015-27020"}
    assert '+                "port": "27015-27020"\n' in game.diff()


def test_alpine_vps_new_home_key_resyncs_the_interface() -> None:
    ctx = vps_ctx(recorded("alpine-vps-converged"))
    ctx.peer_public_key = generate.VPS_PUB  # any other key
    wg = step(vps.configure(ctx), "wireguard")
    assert summary([wg]) == [(
        "wireguard", ["update /etc/wireguard/wg0.conf",
                      "sync wg0 with /etc/wireguard/wg0.conf (peer ZCgYP8TZ… is not in the "
                      "config; peer eHxVOYea… is missing)"])]
    assert wg.changes[1].script == "wg syncconf wg0 /etc/wireguard/wg0.conf"
    assert wg.post == [ifupdown_backend.readback(ctx)]  # never `ifdown wg0`


def test_alpine_without_kernel_wireguard_uses_wg_quick() -> None:
    f = recorded("alpine-vps-fresh")
    f.kernel_wireguard = False
    ctx = vps_ctx(f)
    plans = vps_plans(ctx)
    assert summary(plans)[0] == (
        "packages",
        ["install awall iproute2 wireguard-go wireguard-tools wireguard-tools-wg-quick"])
    assert summary(plans)[4] == ("wireguard", ["create /etc/wireguard/wg0.conf",
                                               "bring wg0 up with wg-quick"])
    assert change(plans, "wireguard", "create /etc/wireguard/wg0.conf").content == \
        vps_wg_quick(T, HOME_PUB)
    assert step(plans, "wireguard").notes == [
        "kernel has no WireGuard module: userspace wireguard-go (via wg-quick)",
        "no systemd (PID 1 is init): wg0 is not started at boot"]


# --------------------------------------------------------------------------- Fedora home

def test_fedora_fresh_home() -> None:
    plans = home_plans(home_ctx(recorded("fedora-home-fresh")))
    assert summary(plans) == [
        ("packages", ["install slirp4netns wireguard-tools"]),
        ("keys", ["generate a WireGuard key pair in /etc/wireguard/wg0.key"]),
        # made and pulled before anything is configured on either host
        ("service-users", ["create user gamer for rootless podman", "enable lingering for gamer"]),
        ("images", ["pull image docker.io/example/game:latest for gamer"]),
        ("site", ["create /var/lib/tunnelops/sites/wg0.json"]),
        ("wireguard", [
            "create /etc/wireguard/wg0.conf",
            "import /etc/wireguard/wg0.conf into NetworkManager as wg0",
            "patch wg0: ipv4.method, ipv4.addresses, ipv4.route-table, ipv4.routing-rules, "
            "wireguard.ip4-auto-default-route, wireguard.peer-routes, wireguard.mtu",
            "activate wg0"]),
        ("firewall", [
            "save the original zone public for teardown",
            "put wg0 in firewalld zone public (permanent)",
            "put wg0 in firewalld zone public (runtime)",
            "open 12345/udp in zone public (permanent)",
            "open 12346/tcp in zone public (permanent)",
            "open 12345/udp in zone public (runtime)",
            "open 12346/tcp in zone public (runtime)",
            "create /etc/tunnelops/wg0.firewalld-ports"]),
        ("service:game", [
            "create ~/.config/containers/systemd of gamer",
            "create /home/gamer/.config/containers/systemd/tunnelops-game.container",
            "create container tunnelops-game (pasta)"]),
        ("services-removed", []),
    ]
    assert change(plans, "packages", "install slirp4netns wireguard-tools").script == \
        "dnf install -y -q slirp4netns wireguard-tools"

    wg = step(plans, "wireguard")
    assert wg.notes == ["networkmanager: NetworkManager with kernel WireGuard",
                        "NetworkManager profile (nmcli import + patch)"]
    assert wg.changes[0] == FileChange("/etc/wireguard/wg0.conf",
                                       home_import_conf(T, VPS_PUB, VPS_IP), None, mode=0o600,
                                       key_path=KEY)
    assert "Endpoint = 203.0.113.7:51821" in wg.changes[0].content
    assert [c.script for c in wg.changes[1:]] == [
        "nmcli connection import type wireguard file /etc/wireguard/wg0.conf >/dev/null",
        "nmcli connection modify wg0 ipv4.method manual ipv4.addresses 192.168.2.2/24 "
        "ipv4.route-table 201 ipv4.routing-rules 'priority 100 from 192.168.2.2 table 201, "
        "priority 101 to 192.168.2.1 table 201' wireguard.ip4-auto-default-route 0 "
        "wireguard.peer-routes yes wireguard.mtu auto",
        "nmcli connection up wg0"]

    fw = step(plans, "firewall")
    assert [c.script for c in fw.changes[1:7]] == [
        "firewall-cmd -q --permanent --zone=public --change-interface=wg0",
        "firewall-cmd -q --zone=public --change-interface=wg0",
        "firewall-cmd -q --permanent --zone=public --add-port=12345/udp",
        "firewall-cmd -q --permanent --zone=public --add-port=12346/tcp",
        "firewall-cmd -q --zone=public --add-port=12345/udp",
        "firewall-cmd -q --zone=public --add-port=12346/tcp"]
    assert fw.changes[7].content == "12345/udp\n12346/tcp\n"
    assert fw.guard is not None and "cp -a /etc/firewalld" in fw.guard.snapshot
    assert fw.notes == ["firewalld zone public"]

    svc = step(plans, "service:game")
    unit = change(plans, "service:game",
                  "create /home/gamer/.config/containers/systemd/tunnelops-game.container")
    spec = podman.spec_hash(SITE.services[0], T, "pasta:--outbound,192.168.2.2")
    assert unit.content == podman.quadlet_unit(SITE.services[0], T, "pasta", spec)
    assert unit.owner == "gamer:gamer"
    # the user makes ~/.config before root writes the unit into it
    mkdir = svc.changes.index(change(plans, "service:game",
                                     "create ~/.config/containers/systemd of gamer"))
    assert mkdir == svc.changes.index(unit) - 1
    assert svc.changes[mkdir].script.startswith("runuser -u gamer -- ")


def test_fedora_converged_home_plans_nothing() -> None:
    assert_converged(home_plans(home_ctx(recorded("fedora-home-converged"))))


def test_fedora_tunnel_bound_by_its_nm_profile_zone() -> None:
    """wg0 is NetworkManager's: `firewall-cmd --permanent --change-interface` sets the
    profile's connection.zone and public.xml never lists wg0 (the converged facts)."""
    f = recorded("fedora-home-converged")
    f.nm["values"]["connection.zone"] = ""  # a profile with no zone: not bound permanently
    assert summary(home.configure(home_ctx(f)))[2] == (
        "firewall", ["save the original zone public for teardown",
                     "put wg0 in firewalld zone public (permanent)"])
    f = recorded("fedora-home-converged")
    f.nm = {"running": False}  # no NetworkManager profile: the zone's file must list wg0
    f.firewalld["permanent"]["public"]["interfaces"] = ["wg0"]
    assert summary(home.configure(home_ctx(f)))[2] == ("firewall", [])


def test_fedora_new_vps_key_reimports_and_keeps_the_zone() -> None:
    plans = home.configure(home_ctx(recorded("fedora-home-converged"), vps_key=HOME_PUB))
    wg = step(plans, "wireguard")
    assert [c.summary for c in wg.changes] == [
        "update /etc/wireguard/wg0.conf",
        "import /etc/wireguard/wg0.conf into NetworkManager as wg0",
        "patch wg0: ipv4.method, ipv4.addresses, ipv4.route-table, ipv4.routing-rules, "
        "wireguard.ip4-auto-default-route, wireguard.peer-routes, wireguard.mtu, "
        "connection.zone",
        "activate wg0"]
    assert wg.changes[1].script == (
        "nmcli connection delete wg0 >/dev/null 2>&1 || true\n"
        "nmcli connection import type wireguard file /etc/wireguard/wg0.conf >/dev/null")
    assert wg.changes[2].script.endswith(" connection.zone public")
    assert f"-PublicKey = {VPS_PUB}\n+PublicKey = {HOME_PUB}\n" in wg.changes[0].diff()


@pytest.mark.parametrize(("kernel_wg", "nm_running", "why"), [
    (False, True, "wg-quick: the kernel has no WireGuard module, which NetworkManager needs; "
                  "wg-quick with wireguard-go instead"),
    (True, False, "wg-quick: NetworkManager is not running"),
])
def test_fedora_home_falls_back_to_wg_quick(kernel_wg: bool, nm_running: bool,
                                            why: str) -> None:
    f = recorded("fedora-home-fresh")
    f.kernel_wireguard, f.nm["running"] = kernel_wg, nm_running
    plans = home_plans(home_ctx(f))
    tools = "wireguard-tools" if kernel_wg else "wireguard-go wireguard-tools"
    assert summary(plans)[0] == ("packages", [f"install slirp4netns {tools}"])
    wg = step(plans, "wireguard")
    assert [c.summary for c in wg.changes] == ["create /etc/wireguard/wg0.conf",
                                               "bring wg0 up with wg-quick"]
    assert wg.notes[0] == why
    assert wg.changes[0].content == home_wg_quick(T, VPS_PUB, VPS_IP)
    assert "Table = 201" in wg.changes[0].content
    assert wg.changes[1].script == (
        "while ip -4 rule del priority 100 table 201 2>/dev/null; do :; done; "
        "while ip -4 rule del priority 101 table 201 2>/dev/null; do :; done; wg-quick up wg0")
    assert wg.post == ["systemctl enable wg-quick@wg0 >/dev/null 2>&1 || true"]


def test_home_wg_quick_repairs_policy_routing() -> None:
    """A wg-quick home whose interface is up but lost a policy rule and its table's default
    route (say `ip rule del` by hand): only those come back, the file is left alone."""
    f = recorded("fedora-home-converged")
    f.nm = {"running": False}
    f.files["/etc/wireguard/wg0.conf"] = dataclasses.replace(
        f.files["/etc/wireguard/wg0.conf"], content=home_wg_quick(T, VPS_PUB, VPS_IP))
    f.rules = [r for r in f.rules if r["priority"] != 101]
    f.table_routes = []
    wg = step(home.configure(home_ctx(f)), "wireguard")
    assert [(c.summary, c.script) for c in wg.changes] == [
        ("add policy rule to 192.168.2.1/32 table 201",
         "ip -4 rule add to 192.168.2.1/32 table 201 priority 101"),
        ("add default route via wg0 in table 201",
         "ip -4 route replace default dev wg0 table 201")]
    f.rules = [*f.rules, {"priority": 101, "src": "all", "dst": "192.168.2.1", "table": "201"}]
    f.table_routes = [{"dst": "default", "dev": "wg0", "scope": "link", "flags": []}]
    assert step(home.configure(home_ctx(f)), "wireguard").changes == []


def test_fedora_home_with_a_port_range() -> None:
    plans = home.configure(home_ctx(recorded("fedora-home-converged"), RANGE_SITE))
    fw = step(plans, "firewall")
    assert [c.summary for c in fw.changes] == [
        "save the original zone public for teardown",
        "open 27015-27020/udp in zone public (permanent)",
        "open 27015-27020/udp in zone public (runtime)",
        "update /etc/tunnelops/wg0.firewalld-ports"]
    assert fw.changes[1].script == \
        "firewall-cmd -q --permanent --zone=public --add-port=27015-27020/udp"
    assert fw.changes[3].content == "12345/udp\n12346/tcp\n27015-27020/udp\n"


# --------------------------------------------------------------------------- Debian VPS

def test_debian_fresh_vps() -> None:
    ctx = vps_ctx(recorded("debian-vps-fresh"), RANGE_SITE)
    plans = vps_plans(ctx)
    assert summary(plans) == [
        ("packages", ["install wireguard-tools"]),
        ("keys", ["generate a WireGuard key pair in /etc/wireguard/wg0.key"]),
        ("site", ["create /var/lib/tunnelops/sites/wg0.json"]),
        ("forwarding", ["create /etc/sysctl.d/90-tunnelops.conf",
                        "enable IPv4 forwarding now"]),
        ("wireguard", ["create /etc/wireguard/wg0.conf", "bring wg0 up with wg-quick"]),
        ("firewall", ["create /etc/tunnelops/wg0.nft", "create /etc/tunnelops/host.nft",
                      "load table inet tunnelops-host and table inet tunnelops-wg0",
                      "update /etc/nftables.conf"]),
    ]
    assert change(plans, "packages", "install wireguard-tools").script.startswith(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        "wireguard-tools || ")
    wg = step(plans, "wireguard")
    assert wg.changes[0] == FileChange("/etc/wireguard/wg0.conf", vps_wg_quick(T, HOME_PUB),
                                       None, mode=0o600, key_path=KEY)
    assert wg.changes[1].script == "wg-quick up wg0"
    assert wg.post == ["systemctl enable wg-quick@wg0 >/dev/null 2>&1 || true"]
    assert wg.notes == ["kernel has no WireGuard module: userspace wireguard-go (via wg-quick)"]

    fw = step(plans, "firewall")
    ruleset = nftables.vps_ruleset("eth0", T, RANGE_SITE.services)
    assert fw.changes[0] == FileChange("/etc/tunnelops/wg0.nft", ruleset)
    assert 'iifname "eth0" udp dport @svc_udp_home dnat ip to 192.168.2.2' in ruleset
    assert ('add element inet tunnelops-wg0 svc_udp_home { 12345 comment "game", '
            '27015-27020 comment "game" }\n') in ruleset
    # the filter is the VPS's own table, its sites' interfaces and ports its elements
    assert fw.changes[1] == FileChange("/etc/tunnelops/host.nft", nfthost.host_ruleset(
        "eth0", 22, [nfthost.HubSite("wg0", 51821, "home")]))
    assert 'add element inet tunnelops-host wireguard { 51821 comment "home" }\n' in \
        fw.changes[1].content
    assert "policy drop" not in ruleset and "policy drop" in fw.changes[1].content
    # both in one transaction, the host's first
    assert fw.changes[2].script == (
        "{ cat /etc/tunnelops/host.nft /etc/tunnelops/wg0.nft; } | nft -f -\n"
        "mkdir -p /var/lib/tunnelops/host\n"
        "nft -st list table inet tunnelops-host > /var/lib/tunnelops/host/nft.applied\n"
        "mkdir -p /var/lib/tunnelops/wg0\n"
        "nft -st list table inet tunnelops-wg0 > /var/lib/tunnelops/wg0/nft.applied")
    conf = fw.changes[3]
    assert (conf.path, conf.old, conf.mode, conf.backup) == (
        "/etc/nftables.conf", DEBIAN_NFTABLES_CONF, 0o755, True)
    assert conf.content == DEBIAN_NFTABLES_CONF + (
        "# tunnelops: the VPS's own table, shared by its sites: before theirs\n"
        'include "/etc/tunnelops/host.nft"\n'
        "# tunnelops: the table of wg0, loaded after everything else\n"
        'include "/etc/tunnelops/wg0.nft"\n')
    # the guard puts both back
    assert "nft delete table inet tunnelops-host" in fw.guard.restore
    assert "nft delete table inet tunnelops-wg0" in fw.guard.restore
    assert fw.guard is not None and fw.post == [
        "systemctl enable nftables >/dev/null 2>&1 || true"]


def test_debian_converged_vps_plans_nothing() -> None:
    assert_converged(vps_plans(vps_ctx(recorded("debian-vps-converged"), RANGE_SITE)))


def test_debian_vps_drift_is_repaired() -> None:
    f = recorded("debian-vps-converged")
    assert f.nft_table is not None and f.nft_host is not None
    rule = '\t\tudp dport @wireguard accept comment "wireguard"\n'
    assert rule in f.nft_host
    f.nft_host = f.nft_host.replace(rule, "")
    f.wg["peers"] = []  # `wg set wg0 peer ... remove` by hand
    plans = vps.configure(vps_ctx(f, RANGE_SITE))
    assert summary(plans)[2:] == [
        ("wireguard", ["sync wg0 peers with its config (peer ZCgYP8TZ… is missing)"]),
        ("firewall", ["load table inet tunnelops-host (the live table drifted)"])]
    fw = step(plans, "firewall")
    assert fw.guard is not None and "tunnelops-wg0" not in fw.guard.restore
    # the site's table alone
    f = recorded("debian-vps-converged")
    f.nft_table = f.nft_table.replace("dnat ip to 192.168.2.2", "dnat ip to 192.168.2.9")
    fw = step(vps.configure(vps_ctx(f, RANGE_SITE)), "firewall")
    assert [c.summary for c in fw.changes] == [
        "load table inet tunnelops-wg0 (the live table drifted)"]
    # an element of the host's sets removed by hand comes back as that element
    f = recorded("debian-vps-converged")
    f.nft_host_sets = {"tunnels": [("wg0", "home")], "wireguard": []}
    fw = step(vps.configure(vps_ctx(f, RANGE_SITE)), "firewall")
    assert [(c.summary, c.shell()) for c in fw.changes] == [(
        "add 51821 (home) to set wireguard of inet tunnelops-host",
        "nft 'add element inet tunnelops-host wireguard { 51821 comment \"home\" }'")]
    assert fw.guard is None


NFT_FILE = "/etc/tunnelops/wg0.nft"


def test_debian_vps_add_port_changes_one_element_only() -> None:
    """`inv add-port 12347/udp`: the base is unchanged, so one `nft add element` and the file
    for the next boot; no reload (counters and the SSH limiter's memory survive), no guard
    (an element only ever opens a service port)."""
    site = RANGE_SITE.with_port_added("12347/udp")
    f = recorded("debian-vps-converged")
    fw = step(vps.configure(vps_ctx(f, site)), "firewall")
    assert [c.summary for c in fw.changes] == [f"update {NFT_FILE}",
                                               "add 12347/udp (game) to set svc_udp_home"]
    assert fw.changes[0] == FileChange(NFT_FILE, nftables.vps_ruleset("eth0", T, site.services),
                                       f.files[NFT_FILE].content)
    assert fw.changes[1] == CommandChange(
        "add 12347/udp (game) to set svc_udp_home",
        """nft 'add element inet tunnelops-wg0 svc_udp_home { 12347 comment "game" }'""",
        'add element inet tunnelops-wg0 svc_udp_home { 12347 comment "game" }')
    assert fw.guard is None
    assert "nft -f" not in "".join(c.shell() for c in fw.changes)


def test_debian_vps_remove_port_deletes_exactly_its_element() -> None:
    site = RANGE_SITE.with_port_removed("27015-27020/udp")
    fw = step(vps.configure(vps_ctx(recorded("debian-vps-converged"), site)), "firewall")
    assert [(c.summary, c.shell()) for c in fw.changes[1:]] == [(
        "delete 27015-27020/udp (game) from set svc_udp_home",
        "nft 'delete element inet tunnelops-wg0 svc_udp_home { 27015-27020 }'")]
    assert fw.changes[0].summary == f"update {NFT_FILE}" and fw.guard is None


def test_debian_vps_element_drift_is_repaired_from_the_live_sets() -> None:
    """Elements are compared with the live sets, not the file: one deleted by hand comes
    back, one added by hand goes, one whose comment changed is replaced; the file is left
    alone (it is already right)."""
    f = recorded("debian-vps-converged")
    E = nftables.Element
    f.nft_sets = {"svc_tcp_home": [E(12346, 12346, "game"), E(8080, 8080)],
                  "svc_udp_home": [E(12345, 12345, "old")]}
    fw = step(vps.configure(vps_ctx(f, RANGE_SITE)), "firewall")
    assert [c.summary for c in fw.changes] == [
        "delete 8080/tcp from set svc_tcp_home", "delete 12345/udp (old) from set svc_udp_home",
        "add 12345/udp (game) to set svc_udp_home",
        "add 27015-27020/udp (game) to set svc_udp_home"]
    assert fw.guard is None


def test_debian_vps_change_of_base_reloads_the_table_under_the_guard() -> None:
    """Anything but the elements (here the tunnel's addresses; or the rules of an older
    tunnelops) replaces the whole table, under the guard, as before."""
    site = dataclasses.replace(RANGE_SITE, tunnel=dataclasses.replace(
        RANGE_SITE.tunnel, subnet=ipaddress.ip_network("192.168.7.0/24"),
        vps_address=ipaddress.ip_address("192.168.7.1"),
        home_address=ipaddress.ip_address("192.168.7.2")))
    fw = step(vps.configure(vps_ctx(recorded("debian-vps-converged"), site)), "firewall")
    assert [c.summary for c in fw.changes] == [f"update {NFT_FILE}",
                                               "load table inet tunnelops-wg0"]
    assert fw.changes[1].script.startswith(f"{{ cat {NFT_FILE}; }} | nft -f -\n")
    assert fw.guard is not None and "tunnelops-host" not in fw.guard.snapshot
    # the rollback snapshot keeps the service ports, which the terse listing leaves out
    assert "nft -s list set inet tunnelops-wg0 svc_udp_home" in fw.guard.snapshot
    # the base changed AND a port was added: still one reload, no element commands
    fw = step(vps.configure(vps_ctx(recorded("debian-vps-converged"),
                                    site.with_port_added("12347/udp"))), "firewall")
    assert [c.summary for c in fw.changes] == [f"update {NFT_FILE}",
                                               "load table inet tunnelops-wg0"]


def test_debian_vps_new_listen_port_is_two_elements_of_the_host_table() -> None:
    """WireGuard's port is the site's element in the host's set `wireguard`: no reload."""
    site = dataclasses.replace(RANGE_SITE, tunnel=dataclasses.replace(RANGE_SITE.tunnel,
                                                                      listen_port=51999))
    fw = step(vps.configure(vps_ctx(recorded("debian-vps-converged"), site)), "firewall")
    assert [c.summary for c in fw.changes] == [
        "update /etc/tunnelops/host.nft",
        "delete 51821 from set wireguard of inet tunnelops-host",
        "add 51999 (home) to set wireguard of inet tunnelops-host"]
    assert fw.guard is None


def test_debian_vps_new_ssh_port_reloads_the_host_table_under_the_guard() -> None:
    site = dataclasses.replace(RANGE_SITE, vps=dataclasses.replace(RANGE_SITE.vps, port=2222))
    fw = step(vps.configure(vps_ctx(recorded("debian-vps-converged"), site)), "firewall")
    assert [c.summary for c in fw.changes] == ["update /etc/tunnelops/host.nft",
                                               "load table inet tunnelops-host"]
    assert 'tcp dport 2222 accept comment "ssh"' in fw.changes[0].content
    assert fw.changes[1].script.startswith("{ cat /etc/tunnelops/host.nft; } | nft -f -\n")
    assert fw.guard is not None and "tunnelops-wg0" not in fw.guard.snapshot
    # the snapshot keeps the sites' elements (the SSH limiter's dynamic sets are left out)
    assert "nft -s list set inet tunnelops-host tunnels" in fw.guard.snapshot
    assert "ssh_new4" not in fw.guard.snapshot


# --------------------------------------------------------------------------- Fedora VPS
FORWARDS = ["port=12345:proto=udp:toport=:toaddr=192.168.2.2",
            "port=12346:proto=tcp:toport=:toaddr=192.168.2.2"]


def test_fedora_vps_forward_ports_are_read_one_per_line() -> None:
    """firewall-cmd lists forward ports (and rich rules) one per line after the key, each
    tab-indented: they are the key's values, not keys of their own."""
    zones = recorded("fedora-vps-converged").firewalld
    for kind in ("runtime", "permanent"):
        public = zones[kind]["public"]
        assert public["forward-ports"] == FORWARDS
        assert not [k for k in public if k.startswith("port=")]
    assert zones["runtime"]["nm-shared"]["rich rules"] == ['rule priority="32767" reject']


def test_fedora_fresh_vps() -> None:
    plans = vps_plans(vps_ctx(recorded("fedora-vps-fresh")))
    assert summary(plans)[0] == ("packages", ["install wireguard-tools"])
    fw = step(plans, "firewall")
    per_kind = [
        "put wg0 in zone trusted ({})", "allow WireGuard 51821/udp ({})",
        "masquerade in zone public ({})",
        "forward 12345/udp to 192.168.2.2 (game, {})",
        "forward 12346/tcp to 192.168.2.2 (game, {})"]
    assert [c.summary for c in fw.changes] == [
        "save the original zones for teardown",
        *(x.format(k) for k in ("permanent", "runtime") for x in per_kind)]
    # client_ip = "preserve": nothing masquerades what goes into the tunnel
    assert not [c for c in fw.changes if "trusted" in c.shell() and "masquerade" in c.shell()]
    assert change(plans, "firewall", "forward 12345/udp to 192.168.2.2 (game, runtime)"
                  ).script == ("firewall-cmd -q --zone=public "
                               f"--add-forward-port={FORWARDS[0].replace('toport=:', '')}")
    assert fw.guard is not None


@pytest.mark.parametrize("name", ["fedora-vps-converged", "fedora-vps-converged-snat"])
def test_fedora_converged_vps_plans_nothing(name: str) -> None:
    site = dataclasses.replace(SITE, client_ip="snat" if name.endswith("snat") else "preserve")
    assert_converged(vps_plans(vps_ctx(recorded(name), site)))


def test_fedora_vps_remove_port_stops_forwarding_it() -> None:
    site = SITE.with_port_removed("12346/tcp")
    fw = step(vps.configure(vps_ctx(recorded("fedora-vps-converged"), site)), "firewall")
    assert [(c.summary, c.shell()) for c in fw.changes[1:]] == [
        (f"stop forwarding 12346/tcp to 192.168.2.2 ({kind})",
         f"firewall-cmd -q {flag}--zone=public --remove-forward-port={FORWARDS[1]}")
        for kind, flag in (("permanent", "--permanent "), ("runtime", ""))]
    site = SITE.with_port_added("12347/udp")
    fw = step(vps.configure(vps_ctx(recorded("fedora-vps-converged"), site)), "firewall")
    assert [c.summary for c in fw.changes[1:]] == [
        "forward 12347/udp to 192.168.2.2 (game, permanent)",
        "forward 12347/udp to 192.168.2.2 (game, runtime)"]


# --------------------------------------------------------------------------- client_ip
# Switching modes converges in one run: exactly the service NAT changes, nothing else.

def test_switch_client_ip_on_nftables() -> None:
    """The SNAT rules are part of the table's base: the switch reloads the table (one
    atomic `nft -f`, under the guard); the port sets stay what they were."""
    converged = {"preserve": "debian-vps-converged", "snat": "debian-vps-converged-snat"}
    for mode, other in (("snat", "preserve"), ("preserve", "snat")):
        facts_name = converged[other]
        site = dataclasses.replace(RANGE_SITE, client_ip=mode)
        fw = step(vps.configure(vps_ctx(recorded(facts_name), site)), "firewall")
        assert [c.summary for c in fw.changes] == [f"update {NFT_FILE}",
                                                   "load table inet tunnelops-wg0"]
        ruleset = fw.changes[0].content
        assert ruleset == nftables.vps_ruleset("eth0", T, site.services, snat=mode == "snat")
        snat = [line.strip() for line in ruleset.splitlines() if " snat " in line]
        assert snat == ([f'oifname "wg0" ip daddr 192.168.2.2 {p} dport @svc_{p}_home snat ip '
                         'to 192.168.2.1 comment "services of home"' for p in ("tcp", "udp")]
                        if mode == "snat" else [])
        assert 'oifname "eth0" ip saddr 192.168.2.0/24 masquerade' in ruleset  # home egress
        assert "dnat ip to 192.168.2.2" in ruleset
        assert fw.guard is not None
        assert fw.notes[-1] == ("client_ip = snat: players reach home as 192.168.2.1"
                                if mode == "snat" else "client_ip = preserve: players reach "
                                "home with their own address (no SNAT)")
        assert_converged(vps.configure(vps_ctx(recorded(converged[mode]), site)))


def test_switch_client_ip_on_awall() -> None:
    """Only the service's policy changes: its snat section comes or goes (base.json keeps
    the WAN masquerade of home's egress), then `awall activate`, which regenerates every
    rule from the policies: no stale rule can stay."""
    f = recorded("alpine-vps-converged")
    game = "/etc/awall/optional/tunnelops-wg0-service-game.json"
    assert "snat" not in json.loads(f.files[game].content)
    snat_site = dataclasses.replace(SITE, client_ip="snat")
    plans = vps.configure(vps_ctx(f, snat_site))
    assert summary(plans)[3] == ("firewall", [f"update {game}", "awall activate"])
    policy = json.loads(change(plans, "firewall", f"update {game}").content)
    assert policy["snat"] == [{"out": "tunnelops-wg0-vpn", "service": "tunnelops-wg0-game",
                               "to-addr": "192.168.2.1"}]
    assert policy == awall_render.service_policy(SITE.services[0], T, snat=True)
    # converged in snat mode, then back
    f.files[game] = dataclasses.replace(f.files[game], content=awall_render.dumps(policy))
    record = "/var/lib/tunnelops/sites/wg0.json"  # the record says the mode too
    f.files[record] = dataclasses.replace(
        f.files[record], content=hub_claim(snat_site, (HOME_PUB,), "eth0").to_json())
    assert_converged(vps.configure(vps_ctx(f, snat_site)))
    plans = vps.configure(vps_ctx(f, SITE))
    assert summary(plans)[3] == ("firewall", [f"update {game}", "awall activate"])
    back = json.loads(change(plans, "firewall", f"update {game}").content)
    assert "snat" not in back and back["dnat"] == [
        {"in": "tunnelops-wg0-inet", "service": "tunnelops-wg0-game", "to-addr": "192.168.2.2"}]
    base = "/etc/awall/optional/tunnelops-wg0-base.json"
    assert json.loads(f.files[base].content)["snat"] == [{"out": "tunnelops-wg0-inet"}]


@pytest.mark.parametrize(("facts_name", "mode", "verb"), [
    ("fedora-vps-converged", "snat", "add"),
    ("fedora-vps-converged-snat", "preserve", "remove")])
def test_switch_client_ip_on_firewalld(facts_name: str, mode: str, verb: str) -> None:
    """The trusted zone (wg0's) masquerades what enters the tunnel only with "snat"; the WAN
    zone's masquerade (home's egress) and the forward ports stay."""
    site = dataclasses.replace(SITE, client_ip=mode)
    fw = step(vps.configure(vps_ctx(recorded(facts_name), site)), "firewall")
    what = "masquerade" if verb == "add" else "no masquerade"
    assert [(c.summary, c.shell()) for c in fw.changes] == [
        ("save the original zones for teardown", fw.changes[0].shell()),
        *((f"{what} in zone trusted ({kind})",
           f"firewall-cmd -q {flag}--zone=trusted --{verb}-masquerade")
          for kind, flag in (("permanent", "--permanent "), ("runtime", "")))]
    assert fw.guard is not None


# --------------------------------------------------------------------------- refusals

def test_vps_with_only_a_private_address() -> None:
    ctx = Ctx(SITE, "vps", recorded("private-ip-vps"))
    with pytest.raises(PlanError) as err:
        vps.discover(ctx, INVENTORY)
    msg = str(err.value)
    assert msg == ("no public IPv4 (its uplink ens3 has 10.0.0.5): if it is NATed 1:1, set "
                   "[vps] public_ip in inventory/home.toml")
    assert "\n" not in msg
    # the fix it names works: a public address from the inventory, the WAN from the facts
    site = new_site("home", "vps.example.net", "homeserver", services=SITE.services,
                    public_ip="198.51.100.99")
    assert vps.discover(Ctx(site, "vps", recorded("private-ip-vps")), INVENTORY) == (
        "198.51.100.99", "ens3")


def test_vps_without_any_default_route() -> None:
    f = recorded("debian-vps-fresh")
    f.uplink = {}
    with pytest.raises(PlanError) as err:
        vps.discover(Ctx(SITE, "vps", f), INVENTORY)
    assert str(err.value) == ("no IPv4 default route, so no public IPv4: give the VPS one, or "
                              "set [vps] public_ip and wan_interface in inventory/home.toml")


def test_unsupported_distribution() -> None:
    f = recorded("arch-vps")
    with pytest.raises(PlanError) as err:
        vps.prepare(Ctx(SITE, "vps", f))
    assert str(err.value) == ("Arch Linux is not supported on the VPS: use Alpine, "
                              "Debian/Ubuntu or Fedora/RHEL")
    with pytest.raises(PlanError) as err:
        home.prepare(Ctx(SITE, "home", f))
    assert str(err.value) == ("Arch Linux is not supported at home: use Fedora/RHEL, "
                              "Debian/Ubuntu or Alpine")


def test_private_keys_only_travel_as_the_placeholder() -> None:
    """Files that need a private key carry the placeholder and the key's path on the host
    (FileChange fills it in there); no command mentions a key's value."""
    all_plans = (vps_plans(vps_ctx(recorded("alpine-vps-fresh")))
                 + vps_plans(vps_ctx(recorded("debian-vps-fresh"), RANGE_SITE))
                 + home_plans(home_ctx(recorded("fedora-home-fresh"))))
    keyed = [c for p in all_plans for c in p.changes
             if isinstance(c, FileChange) and PRIVATE_KEY_PLACEHOLDER in c.content]
    assert [(c.path, c.key_path, c.mode) for c in keyed] == [(
        "/etc/wireguard/wg0.conf", KEY, 0o600)] * 3
    assert not [c for p in all_plans for c in p.changes
                if isinstance(c, CommandChange) and "PrivateKey" in c.script]
