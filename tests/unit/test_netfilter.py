"""The netfilter reader on nft's own JSON (tests/unit/netfilter/json/, recorded from nft by
generate.py), as data: rulesets, and packets with the verdict or NAT they must meet
(netfilter/packets.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.netfilter.rulesets import RULESETS
from tunnelops import netfilter
from tunnelops.netfilter import Pkt
from tunnelops.render.nftables import Element

HERE = Path(__file__).parent / "netfilter"
PACKETS = json.loads((HERE / "packets.json").read_text())


def ruleset(name: str) -> netfilter.Ruleset:
    return netfilter.read(json.loads((HERE / "json" / f"{name}.json").read_text())["nft"])


@pytest.mark.parametrize("name", sorted(RULESETS))
def test_the_recorded_json_is_of_todays_ruleset(name: str) -> None:
    """A renderer change needs the JSON re-recorded (generate.py) and reviewed."""
    assert json.loads((HERE / "json" / f"{name}.json").read_text())["text"] == RULESETS[name]


CASES = [(name, i, c) for name, cs in PACKETS.items() for i, c in enumerate(cs)]


@pytest.mark.parametrize(("name", "case"), [(n, c) for n, _, c in CASES],
                         ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_packet(name: str, case: dict) -> None:
    rs, pkt = ruleset(name), Pkt(**case["pkt"])
    if "nat" in case:
        got = netfilter.nat(rs, case["hook"], pkt)
        assert (list(got[:2]) if got else None) == case["nat"]
        return
    ok, why = netfilter.verdict(rs, case["hook"], pkt)
    assert ok is case["ok"], why
    if "why" in case:
        assert why == case["why"]
    if "why_startswith" in case:
        assert why.startswith(case["why_startswith"]), why


def test_chains_and_sets_as_read() -> None:
    rs = ruleset("vps")
    assert {c.name: (c.type, c.hook, c.policy) for c in rs.chains} == {
        "input": ("filter", "input", "drop"), "forward": ("filter", "forward", "drop"),
        "prerouting": ("nat", "prerouting", "accept"),
        "count": ("filter", "forward", "accept"),
        "postrouting": ("nat", "postrouting", "accept")}
    sets = ruleset("named-sets").sets
    assert netfilter.port_elements(sets[("inet", "a")]["ports"]) == [
        Element(80, 80, "web, {tls}"), Element(443, 443), Element(27015, 27020, "game")]
    assert sets[("inet", "a")]["nets"] == [{"prefix": {"addr": "10.0.0.0", "len": 8}}]
    assert sets[("inet", "b")]["ports"] == []


def test_a_set_the_reader_was_not_shown_matches_nothing() -> None:
    doc = {"nftables": [
        {"chain": {"family": "inet", "table": "t", "name": "input", "type": "filter",
                   "hook": "input", "prio": 0, "policy": "drop"}},
        {"rule": {"family": "inet", "table": "t", "chain": "input", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                       "right": "@elsewhere"}}, {"accept": None}]}}]}
    assert not netfilter.verdict(netfilter.read(doc), "input", Pkt("eth0", "udp", 9))[0]


def test_documents_skip_what_is_not_json() -> None:
    text = '{"nftables": []}\nError: No such file or directory\n{"nftables": [{"a": 1}]}\n'
    assert netfilter.documents(text) == [{"nftables": []}, {"nftables": [{"a": 1}]}]
