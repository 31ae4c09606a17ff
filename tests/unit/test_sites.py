"""Many homes and sites side by side (issue 11), as plans from recorded facts: a hub with
three homes on Alpine (awall) and Debian (nftables); a host converged by an older tunnelops
moved to the new names in one run with nothing of the old left; the refusals the site
records make; teardown of one site beside another."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.unit.facts import generate
from tests.unit.facts.generate import (
    FLEET,
    FLEET_KEYS,
    FLEET_PEERS,
    HOME_PUB,
    INVENTORY,
    RANGE_SITE,
    SITE,
    VPS_IP,
    VPS_PUB,
)
from tunnelops.backends import nftables as nft_backend
from tunnelops.backends import wglive
from tunnelops.changes import CommandChange, FileChange, RemoveFile, StepPlan
from tunnelops.claims import home_claim, hub_claim
from tunnelops.facts import FileFact, HostFacts
from tunnelops.inventory.new import new_site
from tunnelops.model.ports import PortSpec
from tunnelops.naming import HOST_NFT_FILE, LEGACY, Names
from tunnelops.render import nftables, nfthost
from tunnelops.render.nfthost import HubSite
from tunnelops.render.wireguard import vps_setconf, vps_wg_quick
from tunnelops.steps import home, sites, teardown, vps
from tunnelops.steps.context import Ctx, PlanError

N = Names("wg0")


def recorded(name: str) -> HostFacts:
    return generate.facts(name)


def hub(f: HostFacts, site=FLEET, keys: dict[str, str | None] | None = None) -> Ctx:
    ctx = Ctx(site, "vps", f, peer_keys=dict(FLEET_KEYS if keys is None else keys))
    ctx.vps_public_ip, ctx.wan_interface = vps.discover(ctx, INVENTORY)
    return ctx


def one_home(f: HostFacts, site=SITE) -> Ctx:
    ctx = Ctx(site, "vps", f, peer_public_key=HOME_PUB)
    ctx.vps_public_ip, ctx.wan_interface = vps.discover(ctx, INVENTORY)
    return ctx


def summary(plans: list[StepPlan]) -> list[tuple[str, list[str]]]:
    return [(p.step, [c.summary for c in p.changes]) for p in plans]


def step(plans: list[StepPlan], name: str) -> StepPlan:
    return next(p for p in plans if p.step == name)


def converged(plans: list[StepPlan]) -> bool:
    return all(not p.changes and not p.guard and not p.post for p in plans)


# --------------------------------------------------------------------------- three homes

def test_alpine_hub_with_three_homes_from_nothing() -> None:
    plans = vps.prepare(hub(recorded("fleet-alpine-vps-fresh"))) + \
        vps.configure(hub(recorded("fleet-alpine-vps-fresh")))
    assert summary(plans) == [
        ("packages", ["install awall iproute2 wireguard-tools"]),
        ("keys", ["generate a WireGuard key pair in /etc/wireguard/wg0.key"]),
        ("site", ["create /var/lib/tunnelops/sites/wg0.json"]),
        ("forwarding", ["create /etc/sysctl.d/90-tunnelops.conf",
                        "enable IPv4 forwarding now"]),
        ("wireguard", ["create /etc/wireguard/wg0.conf", "create /etc/network/interfaces.d",
                       "create /etc/network/interfaces.d/wg0",
                       "update /etc/network/interfaces", "ifup wg0"]),
        ("firewall", [
            "create /etc/awall/optional/tunnelops-wg0-base.json",
            "create /etc/awall/optional/tunnelops-wg0-ssh.json",
            "create /etc/awall/optional/tunnelops-wg0-wireguard.json",
            "create /etc/awall/optional/tunnelops-wg0-service-game.json",
            "create /etc/awall/optional/tunnelops-wg0-service-mumble.json",
            "create /etc/awall/optional/tunnelops-wg0-service-srcds.json",
            "awall enable tunnelops-wg0-base tunnelops-wg0-ssh tunnelops-wg0-wireguard "
            "tunnelops-wg0-service-game tunnelops-wg0-service-mumble "
            "tunnelops-wg0-service-srcds", "awall activate"]),
    ]
    conf = step(plans, "wireguard").changes[0]
    assert isinstance(conf, FileChange) and conf.content == vps_setconf(FLEET.tunnel,
                                                                         FLEET_PEERS)
    assert [p.address for p in FLEET_PEERS] == [FLEET.address(h) for h in FLEET.homes]
    assert "AllowedIPs = 192.168.2.20/32" in conf.content  # the friend's own address
    dnat = {c.path.rsplit("/", 1)[1]: json.loads(c.content)["dnat"][0]["to-addr"]
            for c in step(plans, "firewall").changes
            if isinstance(c, FileChange) and "-service-" in c.path}
    assert dnat == {"tunnelops-wg0-service-game.json": "192.168.2.2",
                    "tunnelops-wg0-service-mumble.json": "192.168.2.3",
                    "tunnelops-wg0-service-srcds.json": "192.168.2.20"}
    record = json.loads(step(plans, "site").changes[0].content)
    assert (record["site"], record["listen_port"], record["peers"]) == (
        "fleet", 51821, [HOME_PUB, generate.VOICE_PUB, generate.FRIEND_PUB])


def test_alpine_hub_with_three_homes_converged_plans_nothing() -> None:
    assert converged(vps.prepare(hub(recorded("fleet-alpine-vps-converged")))
                     + vps.configure(hub(recorded("fleet-alpine-vps-converged"))))


def test_debian_hub_with_three_homes_from_nothing() -> None:
    ctx = hub(recorded("fleet-debian-vps-fresh"))
    plans = vps.prepare(ctx) + vps.configure(ctx)
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
    # one site, one tunnel and WireGuard port in the host's table, whatever the homes
    assert nfthost.host_elements(step(plans, "firewall").changes[1].content) == {
        "tunnels": [("wg0", "fleet")], "wireguard": [("51821", "fleet")]}
    assert step(plans, "wireguard").changes[0].content == vps_wg_quick(FLEET.tunnel,
                                                                        FLEET_PEERS)
    ruleset = step(plans, "firewall").changes[0].content
    homes = {h.name: FLEET.address(h) for h in FLEET.homes}
    assert ruleset == nftables.vps_ruleset("eth0", FLEET.tunnel, FLEET.services, homes=homes)
    for name, addr in (("home", "192.168.2.2"), ("voice", "192.168.2.3"),
                       ("friend", "192.168.2.20")):
        assert (f'iifname "eth0" udp dport @svc_udp_{name} dnat ip to {addr} comment '
                f'"services of {name}"') in ruleset
    assert ('add element inet tunnelops-wg0 svc_udp_friend { 27015-27020 comment "srcds" }'
            in ruleset)


def test_debian_hub_with_three_homes_converged_plans_nothing() -> None:
    ctx = hub(recorded("fleet-debian-vps-converged"))
    assert converged(vps.prepare(ctx) + vps.configure(ctx))


def test_a_port_moving_to_another_home_is_two_elements_no_reload() -> None:
    """mumble's 64738/udp moves to the friend's machine: out of voice's set, into the
    friend's, the rules untouched (the base depends on the homes, not on the ports)."""
    moved = dataclasses.replace(FLEET, services=tuple(
        dataclasses.replace(s, home="friend") if s.name == "mumble" else s
        for s in FLEET.services))
    fw = step(vps.configure(hub(recorded("fleet-debian-vps-converged"), moved)), "firewall")
    assert [c.summary for c in fw.changes] == [
        "update /etc/tunnelops/wg0.nft",
        "delete 64738/tcp (mumble) from set svc_tcp_voice",
        "delete 64738/udp (mumble) from set svc_udp_voice",
        "add 64738/tcp (mumble) to set svc_tcp_friend",
        "add 64738/udp (mumble) to set svc_udp_friend"]
    assert fw.guard is None


def test_a_home_that_is_down_keeps_its_peer() -> None:
    """The engine asks the VPS's config for the key of a home it cannot reach: the same
    peer, so the hub plans nothing for it (its peer is never dropped)."""
    f = recorded("fleet-debian-vps-converged")
    kept = wglive.peer_at(f, N.iface and "/etc/wireguard/wg0.conf", FLEET.address("voice"))
    assert kept == generate.VOICE_PUB
    keys = {**FLEET_KEYS, "voice": kept}
    assert converged(vps.configure(hub(f, keys=keys)))
    # a home never bootstrapped (no peer at its address) has none to keep: no section
    assert wglive.peer_at(f, "/etc/wireguard/wg0.conf", "192.168.2.77") is None
    wg = step(vps.configure(hub(f, keys={**FLEET_KEYS, "voice": None})), "wireguard")
    assert "peer mG3XqS5h… is not in the config" in wg.changes[-1].summary


def test_a_home_plans_only_its_own_services_at_its_own_address() -> None:
    f = recorded("fedora-home-fresh")
    ctx = Ctx(FLEET, "home", f, peer_public_key=VPS_PUB, vps_public_ip=VPS_IP,
              home=FLEET.home("voice"))
    plans = home.prepare(ctx) + home.configure(ctx)
    assert [p.step for p in plans if p.step.startswith("service:")] == ["service:mumble"]
    assert step(plans, "service-users").changes[0].summary == \
        "create user voice for rootless podman"
    wg = step(plans, "wireguard")
    assert "Address = 192.168.2.3/24" in wg.changes[0].content
    assert "ipv4.addresses 192.168.2.3/24" in wg.changes[2].script
    assert "priority 100 from 192.168.2.3 table 201" in wg.changes[2].script
    opened = [c.summary for c in step(plans, "firewall").changes if "open" in c.summary]
    assert opened == ["put wg0 in firewalld zone public (permanent and runtime); "
                      "open 64738/tcp, 64738/udp in zone public (permanent and runtime)"]
    record = json.loads(step(plans, "site").changes[0].content)
    assert (record["home"], record["address"], record["containers"]) == (
        "voice", "192.168.2.3", ["voice/tunnelops-mumble"])


# --------------------------------------------------------------------------- an older host

def moved_away(plans: list[StepPlan], f: HostFacts) -> None:
    """Nothing of the older names is left once the plan ran: each of its files removed,
    its table deleted in the load, its policies disabled, its include line replaced."""
    removed = {c.path for p in plans for c in p.changes if isinstance(c, RemoveFile)}
    old_files = {LEGACY.nft_file, LEGACY.nft_applied, LEGACY.awall_base,
                 LEGACY.firewalld_record, *(LEGACY.awall_file(n) for n in
                                            ("ssh", "wireguard", "game"))}
    assert {p for p in old_files if f.file(p)} <= removed
    written = {c.path: c.content for p in plans for c in p.changes if isinstance(c, FileChange)}
    for text in written.values():
        assert LEGACY.nft_file not in text
    if f.nft_legacy is not None:
        assert any("delete table inet tunnelops'" in c.shell() for p in plans
                   for c in p.changes if isinstance(c, CommandChange))


def test_an_older_debian_vps_moves_to_the_new_names_in_one_run() -> None:
    f = recorded("legacy-debian-vps-converged")
    plans = vps.configure(one_home(f, RANGE_SITE))
    assert summary(plans) == [
        ("site", ["create /var/lib/tunnelops/sites/wg0.json"]),
        ("forwarding", []),
        ("wireguard", ["update /etc/wireguard/wg0.conf",
                       "sync wg0 peers with its config (its config changed)"]),
        ("firewall", ["create /etc/tunnelops/wg0.nft", "create /etc/tunnelops/host.nft",
                      "load table inet tunnelops-host and table inet tunnelops-wg0, in "
                      "place of inet tunnelops",
                      "update /etc/nftables.conf", "remove /etc/tunnelops/tunnelops.nft",
                      "remove /var/lib/tunnelops/nft.applied"]),
    ]
    fw = step(plans, "firewall")
    load = fw.changes[2]
    assert load.shell().startswith(
        "{ printf '%s\\n' 'table inet tunnelops' 'delete table inet tunnelops'; "
        "cat /etc/tunnelops/host.nft /etc/tunnelops/wg0.nft; } | nft -f -\n")
    conf = fw.changes[3]
    assert conf.content == generate.DEBIAN_NFTABLES_CONF + (
        "# tunnelops: the VPS's own table, shared by its sites: before theirs\n"
        'include "/etc/tunnelops/host.nft"\n'
        "# tunnelops: the table of wg0, loaded after everything else\n"
        'include "/etc/tunnelops/wg0.nft"\n')
    # the guard restores the older table too, should SSH stop working
    assert fw.guard is not None and "legacy.rollback" in fw.guard.restore
    assert "nft -s list set inet tunnelops svc_udp" in fw.guard.snapshot
    moved_away(plans, f)
    # the wg conf changes by its comment only: the peer is the same, no handshake lost
    wg = step(plans, "wireguard").changes[0]
    assert wg.content.replace("# home home\n", "") == wg.old


def test_an_older_alpine_vps_moves_to_the_new_names_in_one_activation() -> None:
    f = recorded("legacy-alpine-vps-converged")
    plans = vps.configure(one_home(f))
    fw = step(plans, "firewall")
    assert [c.summary for c in fw.changes] == [
        "create /etc/awall/optional/tunnelops-wg0-base.json",
        "create /etc/awall/optional/tunnelops-wg0-ssh.json",
        "create /etc/awall/optional/tunnelops-wg0-wireguard.json",
        "create /etc/awall/optional/tunnelops-wg0-service-game.json",
        "awall enable tunnelops-wg0-base tunnelops-wg0-ssh tunnelops-wg0-wireguard "
        "tunnelops-wg0-service-game",
        "awall disable ssh", "awall disable wireguard", "awall disable game",
        "remove /etc/awall/optional/ssh.json", "remove /etc/awall/optional/wireguard.json",
        "remove /etc/awall/optional/game.json", "remove /etc/awall/base.json",
        "awall activate"]
    assert fw.guard is not None  # one activation, under the guard
    moved_away(plans, f)


def test_an_older_fedora_home_moves_its_port_record_and_keeps_the_game_running() -> None:
    f = recorded("legacy-fedora-home-converged")
    ctx = Ctx(SITE, "home", f, peer_public_key=VPS_PUB, vps_public_ip=VPS_IP,
              wan_interface="eth0")
    plans = home.configure(ctx)
    assert summary(plans) == [
        ("site", ["create /var/lib/tunnelops/sites/wg0.json"]),
        ("wireguard", []),
        ("firewall", ["create /etc/tunnelops/wg0.firewalld-ports",
                      "remove /etc/tunnelops/firewalld-ports"]),
        ("network-online", []),
        # the unit gains the tunnel label; the container (same specification) is not replaced
        ("service:game", ["update /home/gamer/.config/containers/systemd/"
                          "tunnelops-game.container", "reload the systemd user units of gamer"]),
        ("services-removed", []),
    ]
    moved_away(plans, f)


def test_an_older_fedora_vps_gets_its_record_only() -> None:
    plans = vps.configure(one_home(recorded("legacy-fedora-vps-converged")))
    assert [(s, c) for s, c in summary(plans) if c] == [
        ("site", ["create /var/lib/tunnelops/sites/wg0.json"]),
        ("wireguard", ["update /etc/wireguard/wg0.conf",
                       "sync wg0 peers with its config (its config changed)"])]


@pytest.mark.parametrize("name", ["legacy-debian-vps-converged", "legacy-alpine-vps-converged",
                                  "legacy-fedora-home-converged"])
def test_teardown_of_an_older_host_removes_the_old_names_too(name: str) -> None:
    f = recorded(name)
    site = RANGE_SITE if "debian" in name else SITE
    ctx = Ctx(site, "home" if "home" in name else "vps", f)
    plans = teardown.plan(ctx)
    text = "\n".join(c.shell() for p in plans for c in p.changes)
    if f.nft_legacy is not None:
        assert "nft delete table inet tunnelops" in text
    if "alpine" in name:
        assert "awall disable ssh wireguard game" in text
    if "home" in name:
        assert "--remove-port=12345/udp --remove-port=12346/tcp" in text
        assert "podman rm -f -t 5 tunnelops-game" in text  # no tunnel label: the site's
    assert text.endswith("/var/lib/tunnelops /run/tunnelops")  # the state dirs there are


# --------------------------------------------------------------------------- records

def other_record(claim_json: str, iface: str = "wg1") -> dict[str, str]:
    return {f"/var/lib/tunnelops/sites/{iface}.json": claim_json}


FRIEND = new_site("friend", "vps.example.net", "friend.example.net", services=(
    dataclasses.replace(generate.GAME, name="voice", ports=(
        PortSpec.parse("64738/udp"),)),), interface="wg1", listen_port=51822,
    subnet="192.168.3.0/24")


def test_another_site_on_the_vps_is_not_touched_and_its_claims_are_refused() -> None:
    f = recorded("debian-vps-converged")
    f.sites |= other_record(hub_claim(FRIEND, ("x" * 43 + "=",)).to_json())
    ctx = one_home(f, RANGE_SITE)
    vps.prepare(ctx)  # fine: nothing of the friend's is taken
    from tunnelops.steps import safety
    safety.check(ctx)
    for change, message in [
        (dict(listen_port=51822), "WireGuard listen port 51822/udp is site 'friend''s (wg1) "
                                  "on this VPS: set [tunnel] listen_port to another, e.g. 51823"),
        (dict(subnet="192.168.3.0/24"), "tunnel subnet 192.168.3.0/24 (theirs: 192.168.3.0/24) "
                                        "is site 'friend''s (wg1) on this VPS: set [tunnel] "
                                        "subnet to a free range, e.g. subnet = "
                                        "\"192.168.4.0/24\""),
    ]:
        site = new_site("home", "vps.example.net", "homeserver", services=SITE.services,
                        **change)
        with pytest.raises(PlanError) as err:
            safety.check(Ctx(site, "vps", f, peer_public_key=HOME_PUB))
        assert str(err.value) == message
    port = RANGE_SITE.with_port_added("64738/udp")
    with pytest.raises(PlanError, match=r"^port 64738/udp \(forwarded there as 64738/udp\) is "
                                        r"site 'friend''s \(wg1\) on this VPS: give the service "
                                        r"another port$"):
        safety.check(Ctx(port, "vps", f, peer_public_key=HOME_PUB))


def test_a_second_site_on_a_debian_vps_is_elements_of_the_host_table() -> None:
    """The VPS's filter is its own table: a second site adds its tunnel and WireGuard port to
    its sets (no reload of it, nothing of the first site's touched) and loads a table of its
    own with its NAT. A site that would let another SSH port in, or name another WAN, is
    refused: the host's table has one of each."""
    f = recorded("debian-vps-converged")
    f.sites = {}  # the first site's record, as the friend sees it: another site's
    f.sites |= other_record(hub_claim(RANGE_SITE, (HOME_PUB,), "eth0").to_json(), "wg0")
    # what the facts read of the site's own interface and table: wg1 has none yet
    f.wg, f.nft_table, f.nft_applied, f.nft_sets = {}, None, None, {}
    ctx = Ctx(FRIEND, "vps", f, peer_public_key="y" * 43 + "=")
    ctx.vps_public_ip, ctx.wan_interface = vps.discover(ctx, generate.INVENTORY)
    from tunnelops.steps import safety
    safety.check(ctx)
    fw = step(vps.configure(ctx), "firewall")
    assert [c.summary for c in fw.changes] == [
        "create /etc/tunnelops/wg1.nft", "update /etc/tunnelops/host.nft",
        "load table inet tunnelops-wg1",
        "add wg1 (friend) to set tunnels of inet tunnelops-host",
        "add 51822 (friend) to set wireguard of inet tunnelops-host",
        "update /etc/nftables.conf"]
    assert fw.changes[1].content == nfthost.host_ruleset(
        "eth0", 22, [HubSite("wg0", 51821, "home"), HubSite("wg1", 51822, "friend")])
    assert "tunnelops-wg0" not in "".join(c.shell() for c in fw.changes if
                                          isinstance(c, CommandChange))
    assert fw.guard is not None and "tunnelops-host" not in fw.guard.restore
    conf = fw.changes[-1].content
    assert conf.count('include "/etc/tunnelops/host.nft"') == 1
    assert conf.endswith('include "/etc/tunnelops/wg1.nft"\n')
    for change, message in [
        (dict(vps=dataclasses.replace(FRIEND.vps, port=2222)),
         "the VPS's SSH port as 2222/tcp (theirs: 22/tcp) is site 'home''s (wg0) on this "
         "VPS: the VPS's firewall, which its sites share, lets one SSH port in: reach it on "
         "22 (the host's port, or ssh_config's Port)"),
        (dict(vps=dataclasses.replace(FRIEND.vps, wan_interface="ens3")),
         "the WAN interface ens3 (theirs: eth0) is site 'home''s (wg0) on this VPS: set "
         "[vps] wan_interface = \"eth0\""),
    ]:
        bad = Ctx(dataclasses.replace(FRIEND, **change), "vps", f,
                  peer_public_key="y" * 43 + "=", wan_interface=change["vps"].wan_interface)
        with pytest.raises(PlanError) as err:
            safety.check(bad)
        assert str(err.value) == message


def test_another_inventory_on_the_same_interface_is_refused_a_copy_is_not() -> None:
    """The record of wg0 names site 'home' with its home's key. Another site on wg0 whose
    homes have other keys is another deployment: refused. A copy of the site (another
    file name, the same homes: their keys) is the same site."""
    f = recorded("debian-vps-converged")
    stranger = dataclasses.replace(RANGE_SITE, name="stranger")
    with pytest.raises(PlanError) as err:
        safety_check(Ctx(stranger, "vps", f, peer_public_key=VPS_PUB))
    assert str(err.value) == ("wg0 on this VPS is site 'home''s (another inventory's: its "
                              "peers are not this site's): give this site its own [tunnel] "
                              "interface, e.g. wg1, or tear site 'home' down first")
    copy = Ctx(dataclasses.replace(RANGE_SITE, name="copy"), "vps", f,
               peer_public_key=HOME_PUB)
    safety_check(copy)
    # ... and converges to the same record: the name it was made with stays (and the WAN
    # it recorded, when this run does not know it)
    assert sites.plan(copy).changes == []
    # at home: the VPS's key decides
    fh = recorded("fedora-home-converged")
    with pytest.raises(PlanError, match=r"^wg0 on this home is site 'home''s"):
        safety_check(Ctx(dataclasses.replace(SITE, name="stranger"), "home", fh,
                         peer_public_key=HOME_PUB))
    safety_check(Ctx(dataclasses.replace(SITE, name="copy"), "home", fh,
                     peer_public_key=VPS_PUB))


def safety_check(ctx: Ctx) -> None:
    from tunnelops.steps import safety
    safety.check(ctx)


def test_an_older_site_that_is_not_this_one_is_refused() -> None:
    """A host converged by an older tunnelops for wg0; a new site on wg1 would take over its
    forwarding: refused until that site moved to its own names."""
    f = recorded("legacy-debian-vps-converged")
    wg0 = f.wg
    f.wg = {}  # the facts of wg1 (none), as a run for wg1 reads them
    with pytest.raises(PlanError) as err:
        safety_check(Ctx(FRIEND, "vps", f))
    assert str(err.value) == (
        "this VPS has the site of an older tunnelops (table inet tunnelops), and wg1 is not "
        "its interface: run that site's bootstrap first (it moves it to names of its own), "
        "then this one")
    f.wg = wg0
    safety_check(one_home(f, RANGE_SITE))  # the older site itself: fine


def test_sites_side_by_side_at_home() -> None:
    fh = recorded("fedora-home-converged")
    theirs = new_site("friend", "vps2.example.net", "homeserver", services=(
        dataclasses.replace(generate.GAME, name="voice", ports=(
            PortSpec.parse("64738/udp"),)),), interface="wg1", route_table=202,
        rule_priority=110, subnet="192.168.3.0/24")
    fh.sites |= other_record(home_claim(theirs, "home", ("k" * 43 + "=",)).to_json())
    safety_check(Ctx(SITE, "home", fh, peer_public_key=VPS_PUB))
    clash = dataclasses.replace(theirs, name="mine", tunnel=dataclasses.replace(
        theirs.tunnel, interface="wg2", route_table=201, rule_priority=100,
        subnet=SITE.tunnel.subnet, home_address=SITE.tunnel.home_address,
        vps_address=SITE.tunnel.vps_address))
    fh2 = recorded("fedora-home-converged")
    fh2.sites = other_record(home_claim(SITE, "home", (VPS_PUB,)).to_json(), "wg0")
    fh2.wg, fh2.nm = {}, {"running": True}  # the facts of wg2 (none)
    with pytest.raises(PlanError, match=r"^tunnel subnet 192.168.2.0/24 .* is site 'home''s "
                                        r"\(wg0\) on this home"):
        safety_check(Ctx(clash, "home", fh2, home=clash.homes[0]))


def test_a_firewalld_vps_refuses_sites_that_disagree_on_client_ip() -> None:
    f = recorded("fedora-vps-converged")
    f.sites |= other_record(hub_claim(dataclasses.replace(FRIEND, client_ip="snat"),
                                      ("x" * 43 + "=",)).to_json())
    with pytest.raises(PlanError, match=r"^client_ip = 'preserve', but site 'friend' \(wg1\) "
                                        r"on this VPS has 'snat'"):
        safety_check(one_home(f))


def test_teardown_beside_another_site_keeps_what_they_share() -> None:
    """The friend's site stays: its table, its include line, the forwarding sysctl, the
    originals, the state directories, the host's table with the friend's elements."""
    f = recorded("debian-vps-converged")
    f.sites |= other_record(hub_claim(FRIEND, ("x" * 43 + "=",), "eth0").to_json())
    both = [HubSite("wg0", 51821, "home"), HubSite("wg1", 51822, "friend")]
    host_file = f.files[HOST_NFT_FILE]
    f.files[HOST_NFT_FILE] = dataclasses.replace(
        host_file, content=nfthost.host_ruleset("eth0", 22, both))
    f.nft_host_sets = nfthost.elements(both)
    theirs = 'include "/etc/tunnelops/wg1.nft"\n'
    conf = f.files["/etc/nftables.conf"]
    f.files["/etc/nftables.conf"] = FileFact(conf.path, conf.mode, conf.owner,
                                             conf.content + "# their comment\n" + theirs)
    plans = teardown.plan(Ctx(RANGE_SITE, "vps", f))
    text = "\n".join(c.shell() for p in plans for c in p.changes) + "\n".join(
        x for p in plans for x in p.post)
    assert "nft delete table inet tunnelops-wg0" in text
    assert "tunnelops-wg1" not in text
    assert "/etc/sysctl.d/90-tunnelops.conf" not in text and "ip_forward" not in text
    assert "put back the original" not in text
    assert "rm -rf /etc/tunnelops /var/lib/tunnelops" not in text
    assert "rm -rf /var/lib/tunnelops/wg0" in text
    edit = next(c for p in plans for c in p.changes
                if isinstance(c, FileChange) and c.path == "/etc/nftables.conf")
    assert edit.content == generate.DEBIAN_NFTABLES_CONF + "".join(
        f"{x}\n" for x in nft_backend.HOST_LINES) + "# their comment\n" + theirs
    # the host's table stays, without this site's elements: live and in its file
    assert "delete table inet tunnelops-host" not in text
    assert [c.shell() for p in plans for c in p.changes
            if isinstance(c, CommandChange) and "tunnelops-host" in c.shell()] == [
        "nft 'delete element inet tunnelops-host tunnels { \"wg0\" }'",
        "nft 'delete element inet tunnelops-host wireguard { 51821 }'"]
    host_edit = next(c for p in plans for c in p.changes
                     if isinstance(c, FileChange) and c.path == HOST_NFT_FILE)
    assert host_edit.content == nfthost.host_ruleset("eth0", 22, both[1:])
    removed = {c.path for p in plans for c in p.changes if isinstance(c, RemoveFile)}
    assert {"/etc/tunnelops/wg0.nft", N.record, "/etc/wireguard/wg0.conf"} <= removed
    # alone, the same host is put back as it was before tunnelops
    alone = "\n".join(c.shell() for p in teardown.plan(Ctx(RANGE_SITE, "vps",
                                                           recorded("debian-vps-converged")))
                      for c in p.changes)
    assert "rm -rf /etc/tunnelops /var/lib/tunnelops /run/tunnelops" in alone
    assert "nft delete table inet tunnelops-host" in alone
    assert "net.ipv4.ip_forward" in alone
