"""HostFacts read from the recorded facts outputs of tests/unit/facts/ (what a host's one
facts batch prints), as the engine reads them."""

from __future__ import annotations

import pytest

from tests.unit.facts import generate
from tunnelops import facts
from tunnelops.model.tunnel import Tunnel
from tunnelops.probes import MARK, Readings
from tunnelops.render.nftables import Element
from tunnelops.render.wireguard import vps_setconf


def recorded(name: str) -> facts.HostFacts:
    return generate.facts(name)



def test_recorded_facts_parse() -> None:
    t, vps_pub, home_pub = Tunnel(), generate.VPS_PUB, generate.HOME_PUB
    a = recorded("alpine-vps-converged")
    assert (a.family, a.os_version, a.pid1, a.openrc, a.systemd) == (
        "alpine", "3.20.3", "init", True, False)
    assert a.kernel_wireguard and a.has("ifup") and a.has("awall") and not a.has("nft")
    assert a.awall_enabled == ("tunnelops-wg0-base", "tunnelops-wg0-service-game",
                               "tunnelops-wg0-ssh", "tunnelops-wg0-wireguard")
    assert a.wg["public_key"] == vps_pub and a.wg["listen_port"] == 51821
    assert a.wg["peers"] == [{
        "public_key": home_pub, "endpoint": "198.51.100.20:41641",
        "allowed_ips": ["192.168.2.2/32"], "latest_handshake": generate.NOW - 42,
        "rx": 1843532, "tx": 2212084, "keepalive": 0}]
    assert a.wg["link"]["ifname"] == "wg0"
    assert a.file("/etc/wireguard/wg0.conf").content == vps_setconf(t, home_pub)
    assert a.file("/etc/wireguard/wg0.conf").mode == "600"
    assert a.table_routes == []  # iproute2's lone "[" for a missing table

    fresh = recorded("alpine-vps-fresh")  # BusyBox ip: no JSON, the plain uplink line
    assert (fresh.addrs, fresh.rules, fresh.wg, fresh.public_key) == ([], [], {}, None)
    assert fresh.uplink == {"dst": "1.1.1.1", "gateway": "203.0.113.1", "dev": "eth0",
                            "prefsrc": generate.VPS_IP}

    fc = recorded("fedora-home-converged")
    assert (fc.family, fc.systemd, fc.firewalld["default"]) == ("fedora", True, "public")
    public = fc.firewalld["runtime"]["public"]
    assert public["interfaces"] == ["enp1s0", "wg0"]
    assert public["ports"] == ["12345/udp", "12346/tcp"]
    assert fc.firewalld["permanent"]["public"]["interfaces"] == []
    assert fc.firewalld["runtime"]["nm-shared"]["protocols"] == ["icmp", "ipv6-icmp"]
    assert fc.nm["running"] and fc.nm["exists"]
    assert fc.nm["values"] == {
        "connection.type": "wireguard", "connection.interface-name": "wg0",
        "ipv4.method": "manual", "ipv4.addresses": "192.168.2.2/24",
        "ipv4.route-table": "201",
        "ipv4.routing-rules": "priority 100 from 192.168.2.2 table 201, "
                              "priority 101 to 192.168.2.1 table 201",
        "wireguard.ip4-auto-default-route": "0", "wireguard.peer-routes": "yes",
        "wireguard.mtu": "auto", "connection.zone": "public"}
    assert {(r["priority"], r.get("src"), r.get("dst"), r["table"]) for r in fc.rules} >= {
        (100, "192.168.2.2", None, "201"), (101, "all", "192.168.2.1", "201")}
    gamer = fc.users["gamer"]
    assert (gamer["uid"], gamer["linger"], gamer["version"]) == ("1001", "yes", "5.2.3")
    assert [c["Names"] for c in gamer["containers"]] == [["tunnelops-game"]]

    ff = recorded("fedora-home-fresh")
    assert ff.nm == {"running": True, "exists": False, "values": {}, "peers": ""}
    assert ff.users["gamer"] == {"version": "5.2.3", "containers": [],  # no such user yet
                                 "images": [], "created": {}}

    d = recorded("debian-vps-converged")
    assert (d.family, d.kernel_wireguard, d.has("wireguard-go")) == ("debian", False, True)
    assert d.nft_table == d.nft_applied and "udp dport @svc_udp_home dnat" in d.nft_table
    assert "27015" not in d.nft_table  # the terse listing has no set elements: they are here
    assert d.nft_sets == {"svc_tcp_home": [Element(12346, 12346, "game")],
                          "svc_udp_home": [Element(12345, 12345, "game"),
                                           Element(27015, 27020, "game")]}
    # the VPS's own table, its sites' elements; the site records
    assert d.nft_host == d.nft_host_applied and "udp dport @wireguard accept" in d.nft_host
    assert d.nft_host_sets == {"tunnels": [("wg0", "home")], "wireguard": [("51821", "home")]}
    assert d.nft_legacy is None and list(d.sites) == ["/var/lib/tunnelops/sites/wg0.json"]
    old = recorded("legacy-debian-vps-converged")  # an older tunnelops' table, by its name
    assert old.nft_table is None and "udp dport @svc_udp dnat" in (old.nft_legacy or "")
    assert old.sites == {} and old.nft_host is None


def test_a_host_that_printed_nothing_usable_is_refused() -> None:
    fp = generate.fact_probes(generate.SITE, "vps")
    with pytest.raises(facts.FactsError, match="nothing recognisable"):
        facts.read(fp, Readings({}))
    cut = generate.load("debian-vps-converged").split(f"{MARK} end")[0]
    with pytest.raises(facts.FactsError, match="cut short"):
        facts.read(fp, fp.batch().parse(cut))
