"""What the plan cases (test_plan_cases.py, as data) do not say: the content of what is
written, as the renderers make it, and where the private key goes.

The facts are tests/unit/facts/*.txt, what the one facts batch printed (or would print) on
Alpine, Fedora, Debian/Ubuntu and Arch hosts; tests/unit/facts/generate.py writes them. The lab
runs only Debian, so this is where Alpine's awall + ifupdown-ng and Fedora's NetworkManager +
firewalld are checked.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json

import pytest

from tests.unit.facts import generate, hosts
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
from tunnelops import distros
from tunnelops.backends import awall as awall_backend
from tunnelops.backends import ifupdown as ifupdown_backend
from tunnelops.backends.originals import enable_shell
from tunnelops.changes import CommandChange, FileChange, StepPlan
from tunnelops.claims import hub_claim
from tunnelops.facts import FileFact, HostFacts
from tunnelops.model.site import Site
from tunnelops.model.tunnel import PRIVATE_KEY_PLACEHOLDER
from tunnelops.probes import sections
from tunnelops.render import awall as awall_render
from tunnelops.render import ifupdown, nftables, nfthost, podman
from tunnelops.render.sysctl import forwarding_conf
from tunnelops.render.wireguard import (
    home_import_conf,
    home_wg_quick,
    vps_setconf,
    vps_wg_quick,
)
from tunnelops.steps import home, teardown, vps
from tunnelops.steps.context import NFT_BOOT_UNIT, Ctx

T = SITE.tunnel
KEY = "/etc/wireguard/wg0.key"


def recorded(name: str) -> HostFacts:
    return generate.facts(name)


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
    raw = sections(generate.load(name))

    def listed(ruleset: str, table: str = "inet tunnelops-wg0") -> tuple[str, str]:
        return (raw.get(f"nft_table {table}", "") + "\n",
                raw.get(f"nft_sets {table}", "") + "\n")

    monkeypatch.setattr(hosts, "nft_list", listed)
    assert generate.output(generate.HOSTS[name]()) == generate.load(name)


# --------------------------------------------------------------------------- Alpine VPS

def test_alpine_fresh_vps_writes_what_the_renderers_make() -> None:
    ctx = vps_ctx(recorded("alpine-vps-fresh"))
    assert (ctx.vps_public_ip, ctx.wan_interface) == (VPS_IP, "eth0")
    plans = vps_plans(ctx)
    conf = change(plans, "wireguard", "create /etc/wireguard/wg0.conf")
    assert conf == FileChange("/etc/wireguard/wg0.conf", vps_setconf(T, HOME_PUB), None,
                              mode=0o600, key_path=KEY)
    assert f"PrivateKey = {PRIVATE_KEY_PLACEHOLDER}" in conf.content
    assert change(plans, "wireguard", "create /etc/network/interfaces.d/wg0").content == \
        ifupdown.wg_stanza(T)
    interfaces = change(plans, "wireguard", "update /etc/network/interfaces")
    assert (interfaces.old, interfaces.content) == (
        ALPINE_INTERFACES, ALPINE_INTERFACES + "source-directory /etc/network/interfaces.d\n")
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
    assert fw.guard is not None and fw.guard.seconds == ctx.guard_seconds
    # the kernel firewall is primed before the snapshot, so the rollback restores tables
    assert fw.guard.snapshot.startswith(awall_backend.PRIME + "; ")
    assert "iptables-save > /var/lib/tunnelops/awall.rollback/iptables" in fw.guard.snapshot
    assert "iptables-restore < /var/lib/tunnelops/awall.rollback/iptables" in fw.guard.restore


def test_alpine_port_range_in_the_service_policy() -> None:
    site = dataclasses.replace(SITE, services=(GAME_RANGE,))
    plans = vps.configure(vps_ctx(recorded("alpine-vps-converged"), site))
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


def test_alpine_without_kernel_wireguard_writes_a_wg_quick_config() -> None:
    f = recorded("alpine-vps-fresh")
    f.kernel_wireguard = False
    plans = vps_plans(vps_ctx(f))
    assert change(plans, "wireguard", "create /etc/wireguard/wg0.conf").content == \
        vps_wg_quick(T, HOME_PUB)


# --------------------------------------------------------------------------- Fedora home

def test_fedora_fresh_home_writes_what_the_renderers_make() -> None:
    plans = home_plans(home_ctx(recorded("fedora-home-fresh")))
    wg = step(plans, "wireguard")
    assert wg.changes[0] == FileChange("/etc/wireguard/wg0.conf",
                                       home_import_conf(T, VPS_PUB, VPS_IP), None, mode=0o600,
                                       key_path=KEY)
    assert "Endpoint = 203.0.113.7:51821" in wg.changes[0].content
    fw = step(plans, "firewall")
    assert fw.changes[2].content == "12345/udp\n12346/tcp\n"
    assert fw.guard is not None and "cp -a /etc/firewalld" in fw.guard.snapshot
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
    assert "runuser -u gamer -- " in svc.changes[mkdir].script


def test_fedora_new_vps_key_in_the_file_and_the_zone_kept() -> None:
    wg = step(home.configure(home_ctx(recorded("fedora-home-converged"), vps_key=HOME_PUB)),
              "wireguard")
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
    wg = step(home_plans(home_ctx(f)), "wireguard")
    assert wg.notes[0] == why
    assert wg.changes[0].content == home_wg_quick(T, VPS_PUB, VPS_IP)
    assert "Table = 201" in wg.changes[0].content


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


def test_fedora_home_range_recorded() -> None:
    fw = step(home.configure(home_ctx(recorded("fedora-home-converged"), RANGE_SITE)),
              "firewall")
    assert fw.changes[2].content == "12345/udp\n12346/tcp\n27015-27020/udp\n"


# --------------------------------------------------------------------------- Debian VPS

def test_debian_fresh_vps_writes_what_the_renderers_make() -> None:
    plans = vps_plans(vps_ctx(recorded("debian-vps-fresh"), RANGE_SITE))
    wg = step(plans, "wireguard")
    assert wg.changes[0] == FileChange("/etc/wireguard/wg0.conf", vps_wg_quick(T, HOME_PUB),
                                       None, mode=0o600, key_path=KEY)
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
    conf = fw.changes[3]
    assert (conf.path, conf.old, conf.mode, conf.backup) == (
        "/etc/nftables.conf", DEBIAN_NFTABLES_CONF, 0o755, True)
    assert conf.content == DEBIAN_NFTABLES_CONF + (
        "# tunnelops: the VPS's own table, shared by its sites: before theirs\n"
        'include "/etc/tunnelops/host.nft"\n'
        "# tunnelops: the table of wg0, loaded after everything else\n"
        'include "/etc/tunnelops/wg0.nft"\n')
    # the guard puts both tables back
    assert fw.guard is not None
    assert "nft delete table inet tunnelops-host" in fw.guard.restore
    assert "nft delete table inet tunnelops-wg0" in fw.guard.restore


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


def test_debian_vps_add_port_rewrites_the_file_for_the_next_boot_only() -> None:
    site = RANGE_SITE.with_port_added("12347/udp")
    f = recorded("debian-vps-converged")
    fw = step(vps.configure(vps_ctx(f, site)), "firewall")
    assert fw.changes[0] == FileChange(NFT_FILE, nftables.vps_ruleset("eth0", T, site.services),
                                       f.files[NFT_FILE].content)
    assert "nft -f" not in "".join(c.shell() for c in fw.changes)


def test_debian_vps_reload_snapshot_keeps_the_service_ports() -> None:
    site = dataclasses.replace(RANGE_SITE, tunnel=dataclasses.replace(
        RANGE_SITE.tunnel, subnet=ipaddress.ip_network("192.168.7.0/24"),
        vps_address=ipaddress.ip_address("192.168.7.1"),
        home_address=ipaddress.ip_address("192.168.7.2")))
    fw = step(vps.configure(vps_ctx(recorded("debian-vps-converged"), site)), "firewall")
    assert [c.summary for c in fw.changes] == [f"update {NFT_FILE}",
                                               "load table inet tunnelops-wg0"]
    assert fw.changes[1].script.startswith(f"{{ cat {NFT_FILE}; }} | nft -f -\n")
    # the rollback snapshot keeps the service ports, which the terse listing leaves out
    assert fw.guard is not None and "tunnelops-host" not in fw.guard.snapshot
    assert "nft -s list set inet tunnelops-wg0 svc_udp_home" in fw.guard.snapshot


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


# --------------------------------------------------------------------------- keys

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


# --------------------------------------------------------------------------- boot by a unit

def test_a_table_loaded_at_boot_by_a_unit_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution whose nftables config is a firewall of its own (nft_boot = "unit"):
    that file is left alone, a unit of ours loads our tables at boot (the VPS's own and
    each site's: every file of ours); teardown of the last site disables it and removes its
    file."""
    debian = distros.by_family("debian")
    assert debian is not None
    monkeypatch.setattr(distros, "DISTROS", tuple(
        dataclasses.replace(d, nft_boot="unit") if d is debian else d for d in distros.DISTROS))
    plans = vps_plans(vps_ctx(recorded("debian-vps-fresh"), RANGE_SITE))
    fw = step(plans, "firewall")
    assert [c.summary for c in fw.changes] == [
        "create /etc/tunnelops/wg0.nft", "create /etc/tunnelops/host.nft",
        "load table inet tunnelops-host and table inet tunnelops-wg0",
        "create /etc/systemd/system/tunnelops-nftables.service"]
    unit = fw.changes[3].content
    assert unit == nftables.boot_unit("/etc/tunnelops/*.nft")
    assert ("ExecStart=/bin/sh -c 'for f in /etc/tunnelops/*.nft; do nft -f \"$$f\" || "
            "exit 1; done'") in unit
    assert fw.post == ["systemctl daemon-reload", enable_shell("tunnelops-nftables.service")]
    f = recorded("debian-vps-converged")
    f.files[NFT_BOOT_UNIT] = FileFact(NFT_BOOT_UNIT, "644", "root", unit)
    f.files.pop("/etc/nftables.conf")  # nothing of ours in it: the unit loads the tables
    assert_converged(vps.configure(vps_ctx(f, RANGE_SITE)))
    torn = teardown.plan(Ctx(RANGE_SITE, "vps", f))
    assert [c.summary for c in torn[1].changes] == ["delete table inet tunnelops-wg0",
                                                    "delete table inet tunnelops-host",
                                                    "disable tunnelops-nftables.service"]
    assert f"remove {NFT_BOOT_UNIT}" in [c.summary for c in torn[2].changes]
