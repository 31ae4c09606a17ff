"""Every probe fixture (tests/unit/probes/cases/KIND.json: recorded on the lab by
probes/capture.py, or hand-written for outputs the lab does not have), as data: the
probe's parser must make exactly the recorded value of the recorded output."""

from __future__ import annotations

import subprocess
import tempfile

import pytest

from tests.unit.probes import fixtures
from tunnelops.probes import Batch

CASES = fixtures.load()


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[n for n, _ in CASES])
def test_probe_fixture(case: dict) -> None:
    probe = fixtures.build(case["probe"])
    assert fixtures.args(probe) == {**fixtures.args(probe), **case["probe"].get("args", {})}
    assert fixtures.jsonable(probe.parse(case["output"])) == case["value"]


def test_firewalld_over_dbus_is_what_firewall_cmd_lists() -> None:
    """On each host recorded (firewalld 1 in the namespace lab, 2 in the VMs), each view read
    over D-Bus and by firewall-cmd, one after the other: the same value."""
    seen: dict[tuple[str, str], dict[str, object]] = {}
    for _, c in CASES:
        if c["probe"]["kind"] == "firewalld" and "reader" in c["probe"].get("args", {}):
            args = c["probe"]["args"]
            seen.setdefault((c["host"], args["view"]), {})[args["reader"]] = c["value"]
    pairs = {k: v for k, v in seen.items() if len(v) == 2}
    assert {h.split(" ")[0] for h, _ in pairs} >= {"lab", "vm"}
    for (host, view), by in pairs.items():
        assert by["dbus"] == by["firewall-cmd"], (host, view)
        if "home" in host:
            assert by["dbus"]["zones"], (host, view)  # a real listing, not two empty ones


def test_every_kind_of_probe_has_fixtures() -> None:
    have = {c["probe"]["kind"] for _, c in CASES}
    assert set(fixtures.kinds()) - have == set()


def test_every_probe_is_valid_shell() -> None:
    for _, case in CASES:
        script = Batch([fixtures.build(case["probe"])]).script()
        proc = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
        assert proc.returncode == 0, (case["probe"], proc.stderr)


@pytest.mark.parametrize(("netns", "want"), [
    ([], {"sent": 1, "received": 1}),
    # a network namespace of its own, its lo down: no reply, after every try
    (["unshare", "-rn"], {"sent": 2, "received": 0})])
def test_ping_to_the_first_reply(netns: list[str], want: dict) -> None:
    """The engine's check: single pings until the first reply (run here, for real)."""
    from tunnelops.probes import Ping

    p = Ping("127.0.0.1", count=2, wait=1, first_reply=True, rehandshake_on="nosuchwg0")
    batch = Batch([p])
    res = subprocess.run([*netns, "sh", "-s"], input=batch.script(), capture_output=True,
                         text=True, timeout=30)
    assert batch.parse(res.stdout)[p] == want, res.stderr


@pytest.mark.parametrize(("handshake", "first"), [
    # never handshook (a cold run: home's first initiation reached the VPS before its peer
    # was up, and WireGuard retries only 5 s later): handshake again before the first ping
    ("0", "wg set wg0 peer KEY remove"),
    # a session that has handshaken: the ping first, no rehandshake when it answers
    ("1700000000", "ping")])
def test_the_checks_ping_handshakes_first_when_the_peer_never_did(handshake: str,
                                                                   first: str) -> None:
    """The engine's check after changes, run here with `wg` and `ping` as logging shell
    functions (they come before PATH): which runs first."""
    from tunnelops.probes import Ping

    p = Ping("192.168.2.1", count=3, wait=1, first_reply=True, rehandshake_on="wg0")
    fakes = (
        'wg() { echo "wg $*" >> "$LOG"; case "$*" in\n'
        f"  *latest-handshakes*) printf 'KEY\\t{handshake}\\n';;\n"
        "  *dump*) printf 'PRIV\\tPUB\\t36823\\toff\\nKEY\\t(none)\\t198.51.100.10:51821\\t"
        f"0.0.0.0/0\\t{handshake}\\t0\\t0\\t25\\n';;\n"
        "esac; }\n"
        'ping() { echo ping >> "$LOG"; }\n')
    batch = Batch([p])
    with tempfile.NamedTemporaryFile("r") as log:
        res = subprocess.run(["sh", "-s"], input=fakes + batch.script(), capture_output=True,
                             text=True, timeout=30, env={"LOG": log.name})
        calls = [x for x in log.read().splitlines() if not x.startswith("wg show")]
    assert batch.parse(res.stdout)[p] == {"sent": 1, "received": 1}, res.stderr
    assert calls[0] == first, calls
    assert calls.count("ping") == 1, calls
