"""verify's pure parts: recorded states in, rows out; the ruleset reader; the scripts.

tests/unit/data/verify/{vps,home}.txt are the real outputs of `vps_script` and `home_script`
on the lab (Debian VPS with nftables, home with firewalld and the echo container) after
`inv bootstrap` (the VPS's `nft` section re-recorded since its ports moved into sets). Each
fault test changes the recorded state the way the fault changes the host, and checks that the
right row is the first to fail, with a hint that names the fix.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from tests.unit.facts import generate
from tunnelops import verify, verify_client, verify_ui
from tunnelops.facts import _parse_firewalld
from tunnelops.model import HomeSpec, PortSpec, Service, Site, Tunnel, VpsSpec
from tunnelops.render import nftables as nft_render
from tunnelops.render import nfthost
from tunnelops.render import podman as podman_render
from tunnelops.verify import (
    Check,
    HostState,
    LaptopState,
    Pkt,
    TcpResult,
    VerifyReport,
    evaluate,
    nft_filter,
    nft_nat,
    parse_nft,
    parse_state,
)

DATA = Path(__file__).parent / "data" / "verify"
URL = "http://198.51.100.1:8080/"
VPS_KEY = "CYdQsZRcMzbyC0OpSoFaf3iEojCd/0/eDQxv74OA63M="
HOME_KEY = "58QOXeAk0sIHqlcvk2stCx2C3e8iW1uH54dWYGiR1Qo="

GAME = Service("game", "localhost/tunnelops-echo:latest",
               (PortSpec.parse("12345/udp"), PortSpec.parse("12346/tcp")), "gamer")
SITE = Site("cipa", VpsSpec("cipa-vps", public_ip="198.51.100.100", wan_interface="eth0"),
            HomeSpec("cipa-home"), services=(GAME,), whoami_url=URL)


def states() -> tuple[HostState, HostState]:
    return (parse_state((DATA / "vps.txt").read_text()),
            parse_state((DATA / "home.txt").read_text()))


def laptop(**changes) -> LaptopState:
    lp = LaptopState(
        ssh={"vps": {"ms": 120.0}, "home": {"ms": 110.0}},
        tcp={"12346/tcp": [TcpResult(12346, "greeted", "tcp-echo port=12346 peer=203.0.113.2")]},
        udp_sent={"12345/udp": 9},
        udp_replies={"12345/udp": "udp-echo port=12345 peer=203.0.113.2 got=tunnelops-verify"})
    return dataclasses.replace(lp, **changes)


def rows(vps: HostState | None, home: HostState | None, lp: LaptopState | None = None,
         site: Site = SITE) -> VerifyReport:
    return VerifyReport(site.name, evaluate(site, vps, home, lp or laptop(), URL))


def first_failure(report: VerifyReport) -> Check:
    first = report.first_failure
    assert first is not None, "expected a failing row"
    return first


# ---------------------------------------------------------------- the recorded healthy site
def test_recorded_site_passes_every_row() -> None:
    report = rows(*states())
    assert [c.id for c in report.checks if c.ok is not True] == []
    assert report.ok and bool(report)
    ids = [c.id for c in report.checks]
    assert ids == [
        "ssh.vps", "ssh.home", "wg.vps", "wg.home", "wg.keys", "wg.vps_peer", "wg.home_peer",
        "wg.handshake", "tunnel.ping.home", "tunnel.ping.vps", "tunnel.mtu",
        "home.rule_from", "home.rule_to", "home.table", "home.main_default",
        "vps.forwarding", "vps.firewall", "vps.port.12345/udp", "vps.port.12346/tcp",
        "home.port.12345/udp", "home.port.12346/tcp",
        "container.game.running", "container.game.network", "container.game.ports",
        "ingress.12345/udp", "ingress.12346/tcp", "client.game.tcp", "client.game.udp",
        "egress.game"]
    m = {c.id: c.measured for c in report.checks}
    assert m["wg.vps"] == "192.168.2.1/24, port 51821, MTU 1420"
    assert m["wg.keys"] == "vps has 58QOXeAk…, home has CYdQsZRc…"
    assert m["wg.vps_peer"] == "192.168.2.2/32"
    assert m["wg.home_peer"] == "198.51.100.100:51821, 0.0.0.0/0"
    assert m["wg.handshake"].startswith("1 s ago; home rx ")
    assert m["tunnel.mtu"] == ("MTU 1420/1420 (home/vps); passes 1420 home→vps, 1420 vps→home;"
                               " path 1500, needs 1480")
    assert m["vps.port.12345/udp"] == "nftables: filter ✓, DNAT ✓, no SNAT ✓"
    assert m["home.port.12346/tcp"] == "firewalld zone public: open"
    assert m["container.game.network"] == \
        "slirp4netns:outbound_addr=wg0,port_handler=slirp4netns"
    assert m["container.game.ports"] == "12345->12345/udp, 12346->12346/tcp"
    assert m["ingress.12345/udp"].startswith("9 sent, 2 on home wg0, 2 past its firewall")
    assert m["egress.game"] == f"{URL} sees 198.51.100.100"
    # the laptop's probes arrive from home's router (203.0.113.2): the VPS saw that address
    assert m["client.game.tcp"] == m["client.game.udp"] == (
        "game sees 203.0.113.2, the address the VPS saw the probe come from")
    assert all(c.hint == "" for c in report.checks)


def test_parse_state_fields() -> None:
    vps, home = states()
    assert vps.wg["public_key"] == VPS_KEY and home.wg["public_key"] == HOME_KEY
    assert vps.wg_up and vps.address == "192.168.2.1/24" and vps.mtu == 1420
    assert vps.ping == {"sent": 3, "received": 3, "rtt_ms": 0.733}
    assert home.underlay == {"dev": "eth0", "mtu": 1500, "pmtu": 1500}
    assert home.udp == {"12345/udp": {"pre": 2, "in": 2}}
    assert home.egress == {"game": {"rc": "0", "body": "198.51.100.100"}}
    assert list(home.containers) == ["tunnelops-game"]
    assert home.firewalld["running"] and vps.nft.startswith("table inet tunnelops")


def test_a_cut_output_is_incomplete() -> None:
    text = (DATA / "vps.txt").read_text()
    assert parse_state(text).complete
    assert not parse_state(text.split("::tunnelops:: nft")[0]).complete
    assert not parse_state(text.replace("\n10\n10", "\n9\n10")).complete


def test_private_keys_never_travel() -> None:
    """The dump's first field (the private key) is replaced on the host, by awk."""
    for text in ((DATA / "vps.txt").read_text(), (DATA / "home.txt").read_text()):
        first = text.split("::tunnelops:: wg\n", 1)[1].splitlines()[0]
        assert first.split("\t")[0] == "-"
    redact = "awk -F'\\t' 'NR==1{$1=\"-\"}1' OFS='\\t'"
    for script in (verify.vps_script(SITE), verify.home_script(SITE, URL, "tunnelops_probe_x")):
        assert f"wg show wg0 dump 2>/dev/null | {redact}" in script
        assert "private" not in script and ".key" not in script and "wg0.conf )" not in script


# ---------------------------------------------------------------- the issue's faults, as data
def test_wireguard_stopped_at_home() -> None:
    vps, home = states()
    home.wg, home.link = {}, {}
    home.rules = [r for r in home.rules if r.get("table") != "201"]
    home.table_routes = []
    home.ping = {"sent": 3, "received": 0}
    report = rows(vps, home)
    first = first_failure(report)
    assert first.id == "wg.home" and first.measured == "wg0 does not exist"
    assert first.hint == "bring it up at home with `wg-quick up wg0`, or re-run `inv bootstrap`"
    assert report.check("tunnel.ping.home").hint == "fix `wg.home` first"
    assert report.check("home.rule_from").hint.endswith("(they come back with wg0: fix "
                                                        "`wg.home` first)")
    assert report.check("wg.keys").ok is None  # not checkable, not a second failure


def test_wireguard_down_hint_follows_the_backend() -> None:
    vps, home = states()
    home.wg, home.wg_config = {}, ["/etc/NetworkManager/system-connections/wg0.nmconnection",
                                   "/etc/wireguard/wg0.conf"]
    assert "`nmcli connection up wg0`" in first_failure(rows(vps, home)).hint
    vps, home = states()
    vps.wg, vps.wg_config = {}, ["/etc/network/interfaces.d/wg0", "/etc/wireguard/wg0.conf"]
    first = first_failure(rows(vps, home))
    assert first.id == "wg.vps" and "on the VPS with `ifup wg0`" in first.hint


def test_wrong_peer_key_on_vps() -> None:
    vps, home = states()
    vps.wg["peers"][0]["public_key"] = "5R7iZqYRkZ9m1bS3PzR0CGBdPZl2QkY9y7s2b0o8Q2Y="
    report = rows(vps, home)
    first = first_failure(report)
    assert first.id == "wg.keys"
    assert first.measured == "the VPS's peer is 5R7iZqYR…, not home's key 58QOXeAk…"
    assert "re-run `inv bootstrap`" in first.hint


def test_policy_rule_from_home_address_deleted() -> None:
    vps, home = states()
    home.rules = [r for r in home.rules if r.get("src") != "192.168.2.2"]
    first = first_failure(rows(vps, home))
    assert first.id == "home.rule_from"
    assert first.hint == ("add it: `ip -4 rule add from 192.168.2.2/32 table 201 priority 100`,"
                          " or re-run `inv bootstrap`")


def test_rule_in_wrong_table_or_after_main_does_not_count() -> None:
    vps, home = states()
    for r in home.rules:
        if r.get("src") == "192.168.2.2":
            r["priority"] = 32767
    assert first_failure(rows(vps, home)).id == "home.rule_from"


def test_default_route_of_the_tunnel_in_main_table() -> None:
    vps, home = states()
    home.main_default.insert(0, {"dst": "default", "dev": "wg0", "flags": []})
    first = first_failure(rows(vps, home))
    assert first.id == "home.main_default" and "ip -4 route del default dev wg0" in first.hint


def _without(text: str, pattern: str) -> str:
    lines = text.splitlines()
    kept = [line for line in lines if not re.search(pattern, line)]
    assert len(kept) == len(lines) - 1, pattern
    return "\n".join(kept)


def test_dnat_rule_deleted_on_vps() -> None:
    vps, home = states()
    vps.nft = _without(vps.nft, r"udp dport @svc_udp dnat")
    report = rows(vps, home)
    first = first_failure(report)
    assert first.id == "vps.port.12345/udp"
    assert first.measured == "nftables: filter ✓, DNAT ✗ (no dnat to 192.168.2.2), no SNAT ✓"
    assert first.hint == ("DNAT for 12345/udp missing on the VPS: re-run `inv bootstrap` (it "
                          "restores table inet tunnelops-host, the VPS's filter, and inet "
                          "tunnelops-wg0: its rules and the ports in its sets)")
    assert report.check("vps.port.12346/tcp").ok


SNAT_SITE = dataclasses.replace(SITE, client_ip="snat")
SNAT_RULES = "".join(f'\t\toifname "wg0" ip daddr 192.168.2.2 {p} dport @svc_{p} snat ip to '
                     '192.168.2.1 comment "services"\n' for p in ("tcp", "udp"))


def snat_states() -> tuple[HostState, HostState]:
    """The recorded VPS as client_ip = "snat" leaves it: its postrouting chain SNATs."""
    vps, home = states()
    masq = 'masquerade comment "home egress"\n'
    assert masq in vps.nft
    vps.nft = vps.nft.replace(masq, masq + SNAT_RULES)
    return vps, home


def snat_laptop(**changes) -> LaptopState:
    """What the echo service says to the laptop's probes when the VPS SNATs."""
    return laptop(**{"tcp": {"12346/tcp": [TcpResult(12346, "greeted",
                                                     "tcp-echo port=12346 peer=192.168.2.1")]},
                     "udp_replies": {"12345/udp": "udp-echo port=12345 peer=192.168.2.1 "
                                                  "got=tunnelops-verify"}, **changes})


def test_filter_rule_deleted_on_vps() -> None:
    vps, home = states()
    vps.nft = _without(vps.nft,
                       r'oifname "wg0" ip daddr 192.168.2.2 tcp dport @svc_tcp ct status dnat')
    first = first_failure(rows(vps, home))
    assert first.id == "vps.port.12346/tcp"
    assert first.hint.startswith("filter for 12346/tcp missing on the VPS")


def test_snat_site_passes_and_its_snat_rule_deleted() -> None:
    report = rows(*snat_states(), snat_laptop(), site=SNAT_SITE)
    assert [c.id for c in report.checks if c.ok is not True] == []
    assert report.check("vps.port.12346/tcp").measured == "nftables: filter ✓, DNAT ✓, SNAT ✓"
    assert report.check("client.game.tcp").name == \
        "game sees 192.168.2.1 on 12346/tcp (client_ip = snat)"
    assert report.check("client.game.udp").measured == (
        "game sees 192.168.2.1: every player appears as the VPS (clients the VPS saw on "
        "12345/udp: 203.0.113.2)")
    vps, home = snat_states()
    vps.nft = _without(_without(vps.nft, r"tcp dport @svc_tcp snat"),
                       r'oifname "wg0" ip daddr 192.168.2.2 tcp dport @svc_tcp ct status dnat')
    first = first_failure(rows(vps, home, snat_laptop(), site=SNAT_SITE))
    assert first.id == "vps.port.12346/tcp"
    assert first.hint.startswith("filter and SNAT for 12346/tcp missing on the VPS")


def test_snat_rule_left_on_a_preserve_site() -> None:
    """client_ip = "preserve" but the VPS still SNATs (a rule left by hand, or the switch
    not yet applied): the forwarding row and the client row both say so."""
    vps, home = snat_states()
    report = rows(vps, home, snat_laptop())
    first = first_failure(report)
    assert first.id == "vps.port.12345/udp"
    assert first.measured == "nftables: filter ✓, DNAT ✓, no SNAT ✗ (snat to 192.168.2.1)"
    assert first.hint == (
        "the VPS SNATs 12345/udp to 192.168.2.1, so the game sees that and not the player "
        "(client_ip = preserve): re-run `inv bootstrap` (it restores table inet "
        "tunnelops-host, the VPS's filter, and inet tunnelops-wg0: its rules and the ports in "
        "its sets)")
    client = report.check("client.game.tcp")
    assert client.ok is False and client.measured == (
        "game sees 192.168.2.1, the VPS's tunnel address, not the client's 203.0.113.2")
    assert "client_ip = preserve wants no SNAT" in client.hint


def test_port_deleted_from_the_vps_set() -> None:
    """`nft delete element inet tunnelops svc_udp { 12345 }`: the rules are all there, the
    port is not in their set, so none of them applies to it."""
    vps, home = states()
    vps.nft = _without(vps.nft, r'elements = \{ 12345 comment "game" \}')
    report = rows(vps, home)
    first = first_failure(report)
    assert first.id == "vps.port.12345/udp"
    assert first.measured == ("nftables: filter ✗ (forward not accepted), DNAT ✗ (no dnat to "
                              "192.168.2.2), no SNAT ✓")
    vps, home = snat_states()
    vps.nft = _without(vps.nft, r'elements = \{ 12345 comment "game" \}')
    assert first_failure(rows(vps, home, snat_laptop(), site=SNAT_SITE)).measured == (
        "nftables: filter ✗ (forward not accepted), DNAT ✗ (no dnat to 192.168.2.2), SNAT ✗ "
        "(no snat to 192.168.2.1)")
    assert report.check("vps.port.12346/tcp").ok


def test_vps_forwarding_and_lockout() -> None:
    vps, home = states()
    vps.ip_forward = "0"
    vps.nft = _without(vps.nft, r'udp dport 51821 accept')
    report = rows(vps, home)
    assert report.check("vps.forwarding").ok is False
    fw = report.check("vps.firewall")
    assert fw.ok is False and fw.measured == "nftables: SSH accepted, WireGuard BLOCKED"


def test_port_closed_in_home_firewall() -> None:
    vps, home = states()
    zone = home.firewalld["runtime"]["public"]
    zone["ports"] = [p for p in zone["ports"] if p != "12345/udp"]
    home.udp = {"12345/udp": {"pre": 3, "in": 0}}
    report = rows(vps, home)
    first = first_failure(report)
    assert first.id == "home.port.12345/udp"
    assert first.measured == "firewalld zone public: closed (open: 12346/tcp)"
    assert first.hint.startswith("open it: `firewall-cmd --zone=public --add-port=12345/udp`")
    ingress = report.check("ingress.12345/udp")
    assert ingress.ok is False and ingress.hint == "fix `home.port.12345/udp` first"


def test_udp_dropped_by_home_firewall_even_if_the_zone_looks_open() -> None:
    vps, home = states()
    home.udp = {"12345/udp": {"pre": 4, "in": 0}}
    first = first_failure(rows(vps, home))
    assert first.id == "ingress.12345/udp" and "home's firewall drops 12345/udp" in first.hint
    home.udp = {"12345/udp": {"pre": 0, "in": 0}}
    first = first_failure(rows(vps, home))
    assert "nothing reached home" in first.hint


def test_container_stopped() -> None:
    vps, home = states()
    state = home.containers["tunnelops-game"]["State"]
    state.update(Running=False, Status="exited", Pid=0, ExitCode=0)
    home.egress["game"] = {"rc": "nopid", "body": ""}
    report = rows(vps, home, laptop(tcp={"12346/tcp": [TcpResult(12346, "refused")]}))
    first = first_failure(report)
    assert first.id == "container.game.running" and first.measured == "exited, exit code 0"
    assert first.hint == ("re-run `inv bootstrap` (or as gamer: `podman start tunnelops-game`)")
    assert report.check("ingress.12346/tcp").hint == "fix `container.game.running` first"
    assert report.check("egress.game").ok is None


def test_container_without_outbound_setting() -> None:
    vps, home = states()
    c = home.containers["tunnelops-game"]
    cmd = c["Config"]["CreateCommand"]
    i = cmd.index("--network")
    del cmd[i:i + 2]
    home.egress["game"] = {"rc": "0", "body": "203.0.113.2"}
    report = rows(vps, home)
    first = first_failure(report)
    assert first.id == "container.game.network"
    assert first.measured == ("slirp4netns (no outbound setting: egress takes home's default "
                              "route)")
    assert "--network slirp4netns:outbound_addr=wg0" in first.hint
    egress = report.check("egress.game")
    assert egress.ok is False and egress.measured == f"{URL} sees 203.0.113.2, not 198.51.100.100"
    assert egress.hint == "fix `container.game.network` first"


def test_container_ports_differ_from_inventory() -> None:
    vps, home = states()
    site = dataclasses.replace(SITE, services=(dataclasses.replace(
        GAME, ports=(*GAME.ports, PortSpec.parse("27015-27016/udp"))),))
    report = rows(vps, home, site=site)
    ports = report.check("container.game.ports")
    assert ports.ok is False and ports.measured == "missing 27015->27015/udp, 27016->27016/udp"


def test_tunnel_mtu_larger_than_the_path() -> None:
    vps, home = states()
    home.mtu, home.pmtu = 1500, 1500  # the outer packets get fragmented, so DF "passes"
    first = first_failure(rows(vps, home))
    assert first.id == "tunnel.mtu"
    assert first.measured.endswith("path 1500, needs 1560")
    assert first.hint == ("wg0's MTU 1500 is larger than the path allows (1500 − 60 bytes of "
                          "WireGuard = 1440): set [tunnel] mtu = 1440 (or lower) in the "
                          "inventory and re-run `inv bootstrap`")


def test_tunnel_loses_large_packets() -> None:
    vps, home = states()
    home.pmtu, home.underlay = 1300, {}
    first = first_failure(rows(vps, home))
    assert first.id == "tunnel.mtu"
    assert "set [tunnel] mtu = 1300" in first.hint


def test_stale_handshake_and_one_way_traffic() -> None:
    vps, home = states()
    home.now += 1000
    assert first_failure(rows(vps, home)).measured.startswith("16 min ago")
    vps, home = states()
    home.wg["peers"][0]["rx"] = 0
    assert first_failure(rows(vps, home)).id == "wg.handshake"


def test_home_peer_without_default_allowed_ips() -> None:
    vps, home = states()
    home.wg["peers"][0]["allowed_ips"] = ["192.168.2.1/32"]
    first = first_failure(rows(vps, home))
    assert first.id == "wg.home_peer" and "lack 0.0.0.0/0" in first.measured


def test_no_ssh_to_home_skips_its_rows() -> None:
    vps, _ = states()
    lp = laptop(ssh={"vps": {"ms": 100.0}, "home": {"error": "cipa-home: cannot reach ..."}})
    report = rows(vps, None, lp)
    assert not report.ok
    assert first_failure(report).id == "ssh.home"
    assert report.check("home.rule_from").ok is None
    assert report.check("home.rule_from").measured == "not checked: no SSH to cipa-home"
    assert report.check("vps.forwarding").ok is True


def test_vps_ssh_timeout_mentions_the_rate_limit() -> None:
    lp = laptop(ssh={"vps": {"error": "cipa-vps: cannot reach root@x:22 (timed out): ..."},
                     "home": {"ms": 1.0}})
    assert "9 a minute" in rows(None, states()[1], lp).check("ssh.vps").hint


def test_tcp_ingress_outcomes() -> None:
    vps, home = states()
    for outcome, ok in (("open", True), ("closed", False), ("timeout", False),
                        ("unreachable", False)):
        report = rows(vps, home, laptop(tcp={"12346/tcp": [TcpResult(12346, outcome)]}))
        assert report.check("ingress.12346/tcp").ok is ok, outcome
    closed = rows(vps, home, laptop(tcp={"12346/tcp": [TcpResult(12346, "closed", "EOF")]}))
    assert "nothing listens inside the container" in closed.check("ingress.12346/tcp").hint


# ---------------------------------------------------------------- nftables reader
T = Tunnel()
# the VPS's own table (as its file says it: `add chain`, `add rule`), then the site's
HOST_RULES = nfthost.host_ruleset("eth0", 22, [nfthost.HubSite("wg0", 51821, "home")])
VPS_RULES = HOST_RULES + nft_render.vps_ruleset("eth0", T, (GAME,))
SNAT_VPS_RULES = HOST_RULES + nft_render.vps_ruleset("eth0", T, (GAME,), snat=True)


def fwd(port: int, proto: str = "udp") -> Pkt:
    return Pkt(iif="eth0", oif="wg0", proto=proto, dport=port, daddr="192.168.2.2", dnat=True)


def test_rendered_vps_ruleset_is_understood() -> None:
    chains = parse_nft(VPS_RULES)
    assert {c.name: (c.kind, c.hook, c.policy) for c in chains} == {
        "input": ("filter", "input", "drop"), "forward": ("filter", "forward", "drop"),
        "prerouting": ("nat", "prerouting", "accept"),
        "postrouting": ("nat", "postrouting", "accept")}
    assert nft_filter(chains, "input", Pkt("eth0", "tcp", 22))[0]
    assert nft_filter(chains, "input", Pkt("eth0", "udp", 51821))[0]
    ok, why = nft_filter(chains, "input", Pkt("eth0", "tcp", 23))
    assert not ok and why == "inet tunnelops-host input: policy drop (no rule accepts it)"
    # another site's port and tunnel are the host table's elements too; nothing else is
    assert not nft_filter(chains, "input", Pkt("eth0", "udp", 51822))[0]
    two = parse_nft(nfthost.host_ruleset("eth0", 22, [nfthost.HubSite("wg0", 51821, "home"),
                                                      nfthost.HubSite("wg1", 51822, "friend")]))
    assert nft_filter(two, "input", Pkt("eth0", "udp", 51822))[0]
    assert nft_filter(two, "forward", dataclasses.replace(fwd(1), oif="wg1"))[0]
    assert not nft_filter(chains, "forward", dataclasses.replace(fwd(12345), oif="wg1"))[0]
    assert nft_nat(chains, "prerouting", Pkt("eth0", "udp", 12345))[:2] == ("dnat",
                                                                            "192.168.2.2")
    assert nft_nat(chains, "prerouting", Pkt("eth0", "udp", 12346)) is None
    assert nft_filter(chains, "forward", fwd(12345))[0]
    # the host's forward chain lets in what a site's prerouting DNATed into a tunnel: which
    # ports are forwarded is the DNAT's (12345/tcp is not)
    assert nft_nat(chains, "prerouting", Pkt("eth0", "tcp", 12345)) is None
    assert not nft_filter(chains, "forward", dataclasses.replace(fwd(12345), dnat=False))[0]
    assert nft_nat(chains, "postrouting", fwd(12345)) is None  # client_ip = "preserve"
    assert nft_nat(parse_nft(SNAT_VPS_RULES), "postrouting", fwd(12345))[:2] == (
        "snat", "192.168.2.1")


def test_ranges_sets_and_an_earlier_drop() -> None:
    svc = dataclasses.replace(GAME, ports=(PortSpec.parse("27015-27020/udp"),))
    chains = parse_nft(HOST_RULES + nft_render.vps_ruleset("eth0", T, (svc,)))
    assert nft_nat(chains, "prerouting", Pkt("eth0", "udp", 27018)) is not None
    assert nft_nat(chains, "prerouting", Pkt("eth0", "udp", 27021)) is None
    other = parse_nft("table ip filter {\n chain FORWARD {\n  type filter hook forward "
                      "priority -10; policy accept;\n  udp dport { 27014, 27016-27017 } "
                      "counter packets 0 bytes 0 drop\n }\n}\n") + chains
    assert nft_filter(other, "forward", fwd(27015))[0]
    ok, why = nft_filter(other, "forward", fwd(27016))
    assert not ok and why.startswith("ip filter FORWARD: udp dport { 27014, 27016-27017 }")


def test_named_sets_as_nft_lists_them() -> None:
    """`dport @set`: the set's elements as `nft list ruleset` shows them (ranges, comments, a
    list wrapped over lines), per table; a set the reader was not shown matches nothing."""
    text = (
        "table inet a {\n"
        "\tset ports {\n"
        "\t\ttype inet_service\n"
        "\t\tflags interval\n"
        "\t\telements = { 80 comment \"web, {tls}\", 443,\n"
        "\t\t\t     27015-27020 comment \"game\" }\n"
        "\t}\n"
        "\tset nets {\n"
        "\t\ttype ipv4_addr\n"
        "\t\tflags interval\n"
        "\t\telements = { 10.0.0.0/8 }\n"
        "\t}\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy drop;\n"
        "\t\tip saddr @nets tcp dport @ports accept\n"
        "\t\tudp dport @ports accept comment \"x\"\n"
        "\t\tudp dport @elsewhere accept\n"
        "\t}\n"
        "}\n"
        "table inet b {\n"
        "\tset ports {\n"
        "\t\ttype inet_service\n"
        "\t}\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n"
        "\t\ttcp dport != @ports drop\n"
        "\t}\n"
        "}")
    chains = parse_nft(text)
    assert chains[0].sets == {"ports": ["80", "443", "27015-27020"], "nets": ["10.0.0.0/8"]}
    assert chains[1].sets == {"ports": []}

    def ok(proto: str, port: int, saddr: str = "10.1.2.3") -> bool:
        return nft_filter(chains, "input", Pkt("eth0", proto, port, saddr=saddr))[0]

    assert ok("udp", 27017) and ok("udp", 443) and not ok("udp", 27021)
    assert not ok("tcp", 443)  # table b's own, empty set: `!= @ports` drops everything
    chains[1].rules = []
    assert ok("tcp", 443) and ok("tcp", 80) and not ok("tcp", 443, saddr="192.0.2.1")
    assert not ok("udp", 9)  # `@elsewhere` is not understood: the rule is not counted on


def test_rules_not_understood_are_ignored_and_jumps_followed() -> None:
    text = """table inet t {
  chain input {
    type filter hook input priority filter; policy drop;
    meta mark 0x1 accept
    iifname "eth*" jump from_wan
  }
  chain from_wan {
    tcp dport 22 ct state new accept
    return
  }
}"""
    chains = parse_nft(text)
    assert nft_filter(chains, "input", Pkt("eth0", "tcp", 22))[0]
    assert not nft_filter(chains, "input", Pkt("eth0", "tcp", 80))[0]
    assert not nft_filter(chains, "input", Pkt("ppp0", "tcp", 22))[0]


def test_home_without_firewalld_reads_its_nft_table() -> None:
    vps, home = states()
    home.firewalld = {}
    home.nft = nft_render.home_ruleset(T, (GAME,))
    report = rows(vps, home)
    assert report.check("home.port.12345/udp").measured == "nftables: accepted"
    home.nft = nft_render.home_ruleset(T, (dataclasses.replace(
        GAME, ports=(PortSpec.parse("12346/tcp"),)),))
    first = first_failure(rows(vps, home))
    assert first.id == "home.port.12345/udp"
    assert first.measured == ("nftables: dropped by inet tunnelops-wg0 input: drop comment "
                              '"nothing else from the tunnel"')


# ---------------------------------------------------------------- awall and firewalld VPS
AWALL_IPTABLES = """# hand-written in the shape of awall's output (iptables-save)
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth0 -p udp -m udp --dport 12345 -j DNAT --to-destination 192.168.2.2
-A PREROUTING -i eth0 -p tcp -m tcp --dport 12346 -j DNAT --to-destination 192.168.2.2
-A POSTROUTING -o eth0 -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
-A INPUT -i eth0 -p tcp -m tcp --dport 22 -m recent --name ssh --update --hitcount 3 -j DROP
-A INPUT -i eth0 -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -i eth0 -p udp -m udp --dport 51821 -j ACCEPT
-A FORWARD -i eth0 -o wg0 -p udp -m udp --dport 12345 -j ACCEPT
-A FORWARD -i eth0 -o wg0 -p tcp -m tcp --dport 12346 -j ACCEPT
COMMIT
"""


AWALL_SNAT = "".join(f"-A POSTROUTING -o wg0 -p {p} -m {p} --dport {n} -j SNAT --to-source "
                     "192.168.2.1\n" for p, n in (("udp", 12345), ("tcp", 12346)))


def test_awall_vps() -> None:
    vps, home = states()
    vps.nft, vps.awall = "", "base  enabled  ...\ngame  enabled  ...\n"
    vps.iptables = AWALL_IPTABLES
    report = rows(vps, home)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.check("vps.port.12345/udp").measured == "awall: filter ✓, DNAT ✓, no SNAT ✓"
    vps.iptables = _without(AWALL_IPTABLES, "dport 12345 -j DNAT")
    first = first_failure(rows(vps, home))
    assert first.id == "vps.port.12345/udp" and "awall activate" in first.hint
    # client_ip = "snat": the service policy's snat section, as iptables rules
    with_snat = AWALL_IPTABLES.replace("-A POSTROUTING -o eth0", AWALL_SNAT + "-A POSTROUTING "
                                       "-o eth0")
    vps.iptables = with_snat
    assert rows(vps, home, snat_laptop(), site=SNAT_SITE).ok
    first = first_failure(rows(vps, home))
    assert first.measured == "awall: filter ✓, DNAT ✓, no SNAT ✗ (SNAT to 192.168.2.1)"
    vps.iptables = AWALL_IPTABLES
    first = first_failure(rows(vps, home, snat_laptop(), site=SNAT_SITE))
    assert first.measured == "awall: filter ✓, DNAT ✓, SNAT ✗ (no SNAT to 192.168.2.1)"


def test_firewalld_vps() -> None:
    """Zones as firewall-cmd lists them (forward ports one per line) on a VPS converged in
    each mode: wg0's zone, trusted, masquerades only with client_ip = "snat"."""
    vps, home = states()
    vps.nft = ""

    def zones(site: Site) -> dict:
        return _parse_firewalld("running\ndefault=public\n@runtime\n"
                                + generate.fedora_vps_zones(site, runtime=True))

    preserve, snat = zones(SITE), zones(SNAT_SITE)
    vps.firewalld = preserve
    report = rows(vps, home)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.check("vps.port.12346/tcp").measured == (
        "firewalld: filter ✓, DNAT ✓, no SNAT ✓")
    first = first_failure(rows(vps, home, snat_laptop(), site=SNAT_SITE))
    assert first.id == "vps.port.12345/udp"
    assert first.measured == ("firewalld: filter ✓, DNAT ✓, SNAT ✗ (no masquerade in zone "
                              "trusted)")
    vps.firewalld = snat
    assert rows(vps, home, snat_laptop(), site=SNAT_SITE).ok
    assert first_failure(rows(vps, home)).measured == (
        "firewalld: filter ✓, DNAT ✓, no SNAT ✗ (masquerade in zone trusted)")
    vps.firewalld["runtime"]["public"]["forward-ports"].pop(0)
    assert first_failure(rows(vps, home, snat_laptop(), site=SNAT_SITE)).measured == (
        "firewalld: filter ✗ (no forward-port in zone public), DNAT ✗ (no forward-port in "
        "zone public), SNAT ✓")


# ---------------------------------------------------------------- the client's address
def client(report: VerifyReport, proto: str) -> Check:
    return report.check(f"client.game.{proto}")


@pytest.mark.parametrize(("seen", "ok", "measured", "hint"), [
    ("192.168.2.1", False, "game sees 192.168.2.1, the VPS's tunnel address, not the client's "
     "203.0.113.2", "the VPS SNATs 12345/udp (client_ip = preserve wants no SNAT)"),
    ("10.0.2.100", False, "game sees 10.0.2.100, not the client's 203.0.113.2",
     "something at home rewrites the source (Podman's rootlessport shows 10.0.2.100): the "
     "container needs slirp4netns with port_handler=slirp4netns"),
])
def test_preserve_site_whose_service_sees_another_address(seen: str, ok: bool, measured: str,
                                                          hint: str) -> None:
    lp = laptop(udp_replies={"12345/udp": f"udp-echo port=12345 peer={seen} got=x"})
    row = client(rows(*states(), lp), "udp")
    assert (row.ok, row.measured) == (ok, measured)
    assert row.hint.startswith(hint)


def test_snat_site_whose_service_sees_the_player() -> None:
    """client_ip = "snat" promises 192.168.2.1: the player's own address means no SNAT."""
    vps, home = snat_states()
    row = client(rows(vps, home, laptop(), site=SNAT_SITE), "tcp")
    assert row.ok is False
    assert row.measured == "game sees 203.0.113.2, the client's own address, not 192.168.2.1"
    assert row.hint == "the VPS does not SNAT 12346/tcp (client_ip = snat): re-run `inv bootstrap`"
    lp = snat_laptop(udp_replies={"12345/udp": "udp-echo port=12345 peer=10.0.2.100 got=x"})
    assert client(rows(vps, home, lp, site=SNAT_SITE), "udp").measured == (
        "game sees 10.0.2.100, not 192.168.2.1")


def test_what_cannot_be_checked_is_not_passed() -> None:
    vps, home = states()
    quiet = laptop(tcp={"12346/tcp": [TcpResult(12346, "open")]}, udp_replies={})
    report = rows(vps, home, quiet)
    assert client(report, "tcp").ok is None and client(report, "udp").ok is None
    assert client(report, "tcp").measured == ("could not be checked: no answer on 12346/tcp "
                                              "(see its ingress row)")
    assert client(report, "udp").measured.startswith("could not be checked: no answer on "
                                                     "12345/udp (a service that does not")
    assert report.ok  # a service that does not echo fails nothing
    other = laptop(tcp={"12346/tcp": [TcpResult(12346, "greeted", "SSH-2.0-OpenSSH_9.2")]})
    assert client(rows(vps, home, other), "tcp").measured == (
        "could not be checked: the answer names no peer ('SSH-2.0-OpenSSH_9.2')")
    # the VPS's connection tracking unreadable: "preserve" cannot be compared, "snat" can
    vps.raw["conntrack"] = "source=none\n"
    assert client(rows(vps, home), "tcp").measured == (
        "game sees 203.0.113.2; not compared: the VPS's connection tracking cannot be read "
        "(install conntrack)")
    assert client(rows(vps, home), "tcp").ok is None
    snat_vps, _ = snat_states()
    snat_vps.raw["conntrack"] = "source=none\n"
    assert client(rows(snat_vps, home, snat_laptop(), site=SNAT_SITE), "tcp").ok is True
    # no SSH to the VPS
    no_vps = laptop(ssh={"vps": {"error": "cipa-vps: cannot reach"}, "home": {"ms": 1.0}})
    assert client(rows(None, home, no_vps), "udp").measured == "not checked: no SSH to the VPS"


def test_service_with_a_port_range_and_no_udp() -> None:
    """One row per protocol the service has; the reply read on each spec's first port."""
    svc = dataclasses.replace(GAME, ports=(PortSpec.parse("27015-27020/tcp"),))
    site = dataclasses.replace(SITE, services=(svc,))
    vps, _ = states()
    vps.raw["conntrack"] = ("source=conntrack\ntcp      6 117 TIME_WAIT src=203.0.113.2 "
                            "dst=198.51.100.100 sport=40001 dport=27015 src=192.168.2.2 "
                            "dst=203.0.113.2 sport=27015 dport=40001 [ASSURED] mark=0 use=1\n")
    lp = laptop(tcp={"27015-27020/tcp": [
        TcpResult(27016, "greeted", "tcp-echo port=27016 peer=10.0.2.100"),
        TcpResult(27015, "greeted", "tcp-echo port=27015 peer=203.0.113.2")]})
    made = verify_client.rows(site, svc, verify._echo_replies(svc, lp), vps.raw["conntrack"])
    assert [(r[0], r[1], r[2]) for r in made] == [
        ("client.game.tcp", "game sees the client's address on 27015/tcp", True)]


def test_parse_seen_reads_both_listings() -> None:
    proc = ("source=proc\nipv4     2 udp      17 29 src=198.51.100.1 dst=198.51.100.100 "
            "sport=51516 dport=12345 src=192.168.2.2 dst=198.51.100.1 sport=12345 dport=51516 "
            "mark=0 zone=0 use=2\n"
            "ipv4     2 tcp      6 117 TIME_WAIT src=203.0.113.2 dst=198.51.100.100 "
            "sport=33426 dport=12346 src=192.168.2.2 dst=192.168.2.1 sport=12346 dport=33426 "
            "[ASSURED] mark=0 zone=0 use=2\n")
    assert verify_client.parse_seen(proc) == (
        "proc", {"12345/udp": {"198.51.100.1"}, "12346/tcp": {"203.0.113.2"}})
    listed = ("source=conntrack\nudp      17 29 src=203.0.113.2 dst=198.51.100.100 "
              "sport=1 dport=12345 [UNREPLIED] src=192.168.2.2 dst=203.0.113.2 sport=12345 "
              "dport=1 mark=0 use=1\n")
    assert verify_client.parse_seen(listed) == ("conntrack", {"12345/udp": {"203.0.113.2"}})
    assert verify_client.parse_seen("") == ("none", {})


def test_vps_section_waits_for_the_probes_then_lists_them(tmp_path: Path) -> None:
    """The section run by sh with a stand-in `conntrack`: it prints only the entries of the
    probed ports to the VPS's public address, and waits for a missing one at most
    WAIT_POLLS x 0.1 s."""
    (tmp_path / "conntrack").write_text(
        "#!/bin/sh\n"
        "echo 'tcp      6 117 TIME_WAIT src=203.0.113.2 dst=198.51.100.100 sport=2 "
        "dport=12346 src=192.168.2.2 dst=203.0.113.2 sport=12346 dport=2 [ASSURED] use=1'\n"
        "echo 'tcp      6 117 ESTABLISHED src=203.0.113.9 dst=198.51.100.100 sport=3 "
        "dport=22 src=198.51.100.100 dst=203.0.113.9 sport=22 dport=3 [ASSURED] use=1'\n"
        "[ -e $0.udp ] && echo 'udp      17 29 src=198.51.100.1 dst=198.51.100.100 sport=4 "
        "dport=12345 src=192.168.2.2 dst=198.51.100.1 sport=12345 dport=4 use=1'\n"
        "exit 0\n")
    (tmp_path / "conntrack").chmod(0o755)

    def run() -> tuple[float, str]:
        start = time.monotonic()
        out = subprocess.run(["sh", "-c", 'm() { printf "\\n::tunnelops:: %s\\n" "$*"; }\n'
                              + verify_client.vps_section(SITE)], capture_output=True,
                             text=True, timeout=20, check=True,
                             env={"PATH": f"{tmp_path}:/usr/bin:/bin"}).stdout
        return time.monotonic() - start, out.split("::tunnelops:: conntrack\n", 1)[1]

    took, text = run()  # no UDP entry: it waits, then gives what it has
    assert 2.0 < took < 6, took
    assert verify_client.parse_seen(text) == ("conntrack", {"12346/tcp": {"203.0.113.2"}})
    (tmp_path / "conntrack.udp").write_text("")
    took, text = run()
    assert took < 1.0, took
    assert verify_client.parse_seen(text) == ("conntrack", {"12346/tcp": {"203.0.113.2"},
                                                            "12345/udp": {"198.51.100.1"}})
    no_ip = dataclasses.replace(SITE, vps=dataclasses.replace(SITE.vps, public_ip=None))
    assert verify_client.vps_section(no_ip) == "m conntrack; echo source=none"


# ---------------------------------------------------------------- containers
@pytest.mark.parametrize("kind", podman_render.NETWORK_KINDS)
def test_the_network_tunnelops_renders_counts_as_outbound(kind: str) -> None:
    assert verify.outbound_ok(podman_render.network_option(kind, T), SITE)


@pytest.mark.parametrize("network,ok", [
    ("slirp4netns:outbound_addr=192.168.2.2", True),
    ("slirp4netns:port_handler=slirp4netns,outbound_addr=wg0", True),
    ("pasta:-o,192.168.2.2", True),
    ("pasta:--outbound-if4,wg0", True),
    ("slirp4netns", False), ("slirp4netns:outbound_addr=eth0", False), ("pasta", False),
    ("host", False), ("bridge", False), ("", False)])
def test_outbound_settings(network: str, ok: bool) -> None:
    assert verify.outbound_ok(network, SITE) is ok


def test_container_network_from_create_command() -> None:
    info = {"Config": {"CreateCommand": ["podman", "run", "--network=pasta:-o,192.168.2.2"]},
            "HostConfig": {"NetworkMode": "pasta"}}
    assert verify.container_network(info) == "pasta:-o,192.168.2.2"
    assert verify.container_network({"HostConfig": {"NetworkMode": "slirp4netns"}}) == \
        "slirp4netns"


def test_published_ports_with_ranges() -> None:
    info = {"HostConfig": {"PortBindings": {
        "27015-27016/udp": [{"HostIp": "", "HostPort": "27015-27016"}],
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}]}}}
    assert verify.published(info) == {("udp", 27015, 27015), ("udp", 27016, 27016),
                                      ("tcp", 8080, 80)}


# ---------------------------------------------------------------- scripts
def test_scripts_are_valid_shell() -> None:
    site = dataclasses.replace(SITE, whoami_url="https://api.ipify.org/?format=text")
    for script in (verify.vps_script(site), verify.home_script(site, site.whoami_url,
                                                               "tunnelops_probe_ab12")):
        proc = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
        assert proc.returncode == 0, proc.stderr


def test_home_script_probe_table_and_egress() -> None:
    script = verify.home_script(SITE, URL, "tunnelops_probe_ab12")
    assert 'iifname "wg0" udp dport 12345 counter comment "pre 12345/udp"' in script
    assert "type filter hook input priority 100" in script
    assert "trap 'nft delete table inet tunnelops_probe_ab12 2>/dev/null" in script
    assert "nsenter -t \"$pid\" -n curl -sS -m 3 --connect-timeout 2 $r " + URL in script
    # a host name is resolved by the host: the container's namespace has no resolver of its own
    named = verify.home_script(SITE, "https://api.ipify.org", "p")
    assert "getent ahostsv4 api.ipify.org" in named and "--resolve api.ipify.org:443:$a" in named


def test_no_udp_ports_no_probe_table() -> None:
    site = dataclasses.replace(SITE, services=(dataclasses.replace(
        GAME, ports=(PortSpec.parse("12346/tcp"),)),))
    assert "tunnelops_probe" not in verify.home_script(site, URL, "tunnelops_probe_ab12")


@pytest.mark.parametrize("limit", [1500, 1420, 1337, 600, 548, 400])
def test_path_mtu_search(limit: int, tmp_path: Path) -> None:
    """The host-side search, with a `ping` that passes packets up to LIMIT bytes."""
    log = tmp_path / "pings"
    fake = (f"ping() {{ for a; do s=$a; done; for a; do case $prev in -s) s=$a;; esac; "
            f"prev=$a; done; echo $s >> {log}; [ $((s + 28)) -le {limit} ]; }}\n")
    script = verify._PRELUDE + fake + "pmtu 192.0.2.1 1500\nrm -rf \"$T\"\n"
    out = subprocess.run(["sh"], input=script, text=True, capture_output=True, timeout=20)
    assert out.stdout.strip() == str(limit if limit >= verify.PING_MIN else 0)
    pings = log.read_text().split()
    assert len(pings) <= 2 + 3 * 15  # three rounds of at most 15 parallel pings


def test_probe_ports_spread_over_big_ranges() -> None:
    assert verify.probe_ports(PortSpec.parse("27015-27020/udp")) == list(range(27015, 27021))
    big = verify.probe_ports(PortSpec.parse("10000-20000/udp"))
    assert len(big) == verify.MAX_PORTS_PER_SPEC and big[0] == 10000 and big[-1] == 20000


def test_busybox_ip_text_is_read() -> None:
    text = ("3: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc noqueue state UNKNOWN\n"
            "    link/[65534]\n    inet 192.168.2.1/24 scope global wg0\n")
    st = parse_state(f"\n::tunnelops:: link\n{text}\n::tunnelops:: uplink\n"
                     "1.1.1.1 via 198.51.100.1 dev eth0  src 198.51.100.100\n")
    assert st.address == "192.168.2.1/24" and "UP" in st.link["flags"]
    assert st.uplink["prefsrc"] == "198.51.100.100"


# ---------------------------------------------------------------- report and UI
def test_json_report() -> None:
    vps, home = states()
    home.rules = []
    report = rows(vps, home)
    report.hosts = {"vps": verify.HostRun("cipa-vps", 1, 1, 0.4),
                    "home": verify.HostRun("cipa-home", 1, 1, 0.6)}
    data = json.loads(report.to_json())
    assert data["ok"] is False and data["first_failure"] == "home.rule_from"
    assert data["round_trips"] == 2
    row = next(c for c in data["checks"] if c["id"] == "home.rule_from")
    assert set(row) == {"id", "status", "check", "measured", "hint"}
    assert row["status"] == "fail"


def test_table_view() -> None:
    report = rows(*states())
    report.hosts = {"vps": verify.HostRun("cipa-vps", 1, 1), "home": verify.HostRun("h", 1, 1)}
    report.seconds = 0.9
    console = Console(record=True, width=160)
    verify_ui.show(console, report)
    text = console.export_text()
    assert "✓ │ vps forwards 12345/udp to home" in text
    assert "hint" not in text.splitlines()[2]  # no hint column when all pass
    assert text.strip().endswith("verify cipa: 29 passed, 0 failed · round trips: vps 1, "
                                 "home 1 · 0.9s")
    vps, home = states()
    home.rules = []
    bad = rows(vps, home)
    console = Console(record=True, width=200)
    verify_ui.show(console, bad)
    text = console.export_text()
    assert "hint" in text and "✗ │ home rule from 192.168.2.2 → table 201" in text
    assert "first broken link: home rule from 192.168.2.2 → table 201 (home.rule_from)" in text

