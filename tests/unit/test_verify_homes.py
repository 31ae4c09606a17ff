"""verify of a site of several homes (issue 11), from the recorded healthy readings
(tests/unit/checks/recorded): the hub and the recorded home, and a second home whose SSH
connection failed. Every home's chain is evaluated through its view of the site; the VPS's
own rows appear once, every other row is named for its home, and a home that cannot be
reached leaves the other's rows as they are."""

from __future__ import annotations

import dataclasses

from tests.unit.checks import cases
from tunnelops.model.hosts import HomeSpec, HostRef
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.verify import Row
from tunnelops.verify.runner import (
    evaluate_homes,
    home_batches,
    home_chains,
    merge_rows,
    probes,
)

VOICE = Service("voice", "localhost/tunnelops-echo:latest", (PortSpec.parse("12347/udp"),),
                "gamer", home="home2")


def two_homes():
    one = cases.site()
    return dataclasses.replace(
        one, homes=(one.homes[0], HomeSpec(HostRef("prba-home2"), name="home2")),
        services=(dataclasses.replace(one.services[0], home="home"), VOICE))


def rows() -> dict[str, Row]:
    site = two_homes()
    chains = home_chains(site, "http://198.51.100.1:8080/")
    batches, _ = home_batches(chains)
    outputs = {h: (cases.RECORDED / f"{h}.txt").read_text() for h in ("vps", "home")}
    laptop = cases.laptop()
    laptop.ssh["home2"] = {"error": "prba-home2: connection timed out"}
    return {r.id: r for r in evaluate_homes(chains, batches, {**outputs, "home2": None},
                                            laptop)}


def test_each_home_is_checked_through_its_own_view_of_the_site() -> None:
    chains = home_chains(two_homes())
    assert [(hc.name, str(hc.ctx.site.tunnel.home_address),
             [s.name for s in hc.ctx.site.services]) for hc in chains] == [
        ("home", "192.168.2.2", ["game"]), ("home2", "192.168.2.3", ["voice"])]
    batches, laptop = home_batches(chains)
    # one batch per host: the VPS's reads what both homes' checks need of it; the laptop
    # probes both homes' ports
    assert set(batches) == {"vps", "home", "home2"}
    assert {str(p.spec) for p in laptop} == {"12345/udp", "12346/tcp", "12347/udp"}
    vps_keys = {p.key for p in batches["vps"].probes}
    for hc in chains:
        assert {p.key for p in probes(hc.ctx, hc.checks)["vps"]} <= vps_keys


def test_rows_name_their_home_and_the_vps_rows_appear_once() -> None:
    r = rows()
    # the VPS's own rows: once, as in a one-home site
    assert r["ssh.vps"].name == "SSH to prba-vps" and r["ssh.vps"].ok
    assert r["wg.vps"].ok and "home:wg.vps" not in r and "home2:wg.vps" not in r
    # the recorded home: every row of its chain passes, each named for it
    home = {i: x for i, x in r.items() if i.startswith("home:")}
    assert home and all(x.ok for x in home.values()), [x for x in home.values() if not x.ok]
    assert r["home:wg.home_peer"].name == "home: home peer endpoint, AllowedIPs"
    assert r["home:vps.port.12345/udp"].name.startswith("home: vps forwards 12345/udp")
    # the second home: no SSH, so what needs it is not checked; what the VPS alone says is
    assert r["home2:ssh.home"].ok is False
    assert r["home2:ssh.home"].hint == "prba-home2: connection timed out"
    assert r["home2:wg.home"].ok is None
    assert r["home2:wg.home"].measured == "not checked: no SSH to prba-home2"
    vp = r["home2:wg.vps_peer"]  # the VPS has no peer for home2 (one peer, .2's)
    assert vp.ok is False and vp.measured == "no peer"
    port = r["home2:vps.port.12347/udp"]
    assert port.ok is False and port.name.startswith("home2: vps forwards 12347/udp")


def test_a_hint_naming_a_row_of_the_same_home_points_at_that_home() -> None:
    a = Row("wg.keys", "peer keys", False, "x", "re-run bootstrap")
    b = Row("tunnel.ping", "ping", False, "y", "fix `wg.keys` first")
    vps = Row("wg.vps", "vps wg0 up", True, "ok")
    merged = merge_rows([("home", [vps, a, b]), ("pi", [vps, a, b])],
                        home_ids={"wg.keys", "tunnel.ping"})
    assert [(x.id, x.hint) for x in merged] == [
        ("wg.vps", ""), ("home:wg.keys", "re-run bootstrap"),
        ("home:tunnel.ping", "fix `home:wg.keys` first"), ("pi:wg.keys", "re-run bootstrap"),
        ("pi:tunnel.ping", "fix `pi:wg.keys` first")]
    # a row of the VPS alone that differs between homes is each home's
    other = Row("wg.vps", "vps wg0 up", False, "down")
    assert [x.id for x in merge_rows([("home", [vps]), ("pi", [other])])] == [
        "home:wg.vps", "pi:wg.vps"]
