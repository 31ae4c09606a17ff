"""`inv verify` against the lab, for real: after bootstrap every row passes; then one fault at a
time, verify must fail first on the row of the broken link with a hint that names the fix,
and pass again once the fix from the hint is applied.

Own instance "labv" (index 3), brought up and bootstrapped once for the module, taken down at
the end. Faults are made without SSH (lab.exec); verify reuses one SSH connection per host,
so the module stays within the VPS's SSH rate limit (3 new connections at once, then 9 a
minute per address) except for the bootstraps and the CLI runs, before which the limiter's
memory of our address is cleared (the equivalent of waiting a minute).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import slot
from tests.lab.env import SiteEnv, bootstrapped, failing, remotes, rows
from tunnelops import verify
from tunnelops.inventory.read import load
from tunnelops.inventory.write import save
from tunnelops.lab import Lab, Topology
from tunnelops.lab.topology import PODMAN_USER
from tunnelops.remote import Transcript
from tunnelops.verify import VerifyReport

pytestmark = pytest.mark.lab

TOPO = Topology(*slot("labv", 3))
PROJECT = Path(__file__).resolve().parents[2]


def ROWS() -> int:
    return rows(load(Lab(TOPO).inventory))


class Env(SiteEnv):
    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.forget_ssh_rate()
        return subprocess.run([str(PROJECT / ".venv/bin/inv"), "verify", "--site", TOPO.name,
                               *args], cwd=PROJECT, capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "COLUMNS": "120",
                                   "TUNNELOPS_INVENTORY": str(self.lab.inventory_dir)})


def assert_passes(report: VerifyReport) -> None:
    assert report.ok, failing(report)
    assert len(report.checks) == ROWS() and all(c.ok for c in report.checks), failing(report)


def assert_broken(report: VerifyReport, row: str, fix: str) -> str:
    """The first failing row is ROW, its hint contains FIX; returns the hint."""
    assert not report.ok
    first = report.first_failure
    assert first is not None and first.id == row, failing(report)
    assert fix in first.hint, first.hint
    return first.hint


def command_in(hint: str, starts: str) -> str:
    """The backticked command of the hint that starts with STARTS: the fix, run as given."""
    cmds = [c for c in re.findall(r"`([^`]+)`", hint) if c.startswith(starts)]
    assert cmds, hint
    return cmds[0]


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    yield from bootstrapped(TOPO, kind=Env)


@pytest.fixture
def healthy(env: Env) -> Iterator[Env]:
    """Each fault test starts from a site that passes, and leaves one behind."""
    assert_passes(env.wait_healthy())
    yield env
    report = env.verify()
    if not report.ok:  # a failed test must not break the next ones
        env.bootstrap()
        assert_passes(env.wait_healthy())


# ---------------------------------------------------------------- after bootstrap
def test_verify_passes_after_bootstrap(env: Env, lab_report: Callable[[str], None]) -> None:
    proc = env.cli()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (f"verify {TOPO.name}: {ROWS()} passed, 0 failed · round trips: vps 1, home 1"
            in proc.stdout)
    assert "✗" not in proc.stdout
    proc = env.cli("--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] and data["first_failure"] is None
    assert [c["status"] for c in data["checks"]] == ["pass"] * ROWS()
    assert {r: h["round_trips"] for r, h in data["hosts"].items()} == {"vps": 1, "home": 1}
    assert {r: h["connects"] for r, h in data["hosts"].items()} == {"vps": 1, "home": 1}
    assert data["seconds"] < 5
    lab_report(f"verify: {ROWS()} rows in {data['seconds']:.2f} s, 1 round trip per host")


def test_private_keys_stay_on_their_hosts(env: Env) -> None:
    transcript = Transcript()
    site = env.site
    own = remotes(site, transcript)
    env.forget_ssh_rate()
    try:
        assert_passes(verify.run(site, remotes=own))
    finally:
        for r in own.values():
            r.close()
    text = transcript.text()
    assert "::tunnelops:: wg" in text
    for role in ("vps", "home"):
        key = env.sh(role, "cat /etc/wireguard/wg0.key").strip()
        assert len(key) == 44 and key not in text


def test_no_probe_table_left_behind(env: Env) -> None:
    assert_passes(env.verify())
    assert "tunnelops_probe" not in env.sh("home", "nft list tables")
    assert env.sh("home", "ls /tmp") == env.sh("vps", "ls /tmp") == ""


# ---------------------------------------------------------------- one fault at a time
def test_wireguard_stopped_at_home(healthy: Env) -> None:
    env = healthy
    env.sh("home", "wg-quick down wg0 2>/dev/null")
    hint = assert_broken(env.verify(), "wg.home", "`wg-quick up wg0`")
    env.sh("home", command_in(hint, "wg-quick up") + " 2>/dev/null")
    assert_passes(env.wait_healthy())


def test_wrong_peer_key_on_vps(healthy: Env) -> None:
    env = healthy
    env.sh("vps", "old=$(wg show wg0 peers); wg set wg0 peer \"$old\" remove; "
                  "wg set wg0 peer \"$(wg genkey | wg pubkey)\" allowed-ips 192.168.2.2/32")
    report = env.verify()
    assert_broken(report, "wg.keys", "re-run `inv bootstrap`")
    assert "the VPS's peer is" in report.check("wg.keys").measured
    env.bootstrap()
    assert_passes(env.wait_healthy())


def test_policy_rule_from_home_address_deleted(healthy: Env) -> None:
    env = healthy
    env.sh("home", "ip -4 rule del from 192.168.2.2 table 201")
    report = env.verify()
    hint = assert_broken(report, "home.rule_from",
                         "`ip -4 rule add from 192.168.2.2/32 table 201 priority 100`")
    assert report.check("egress.game").ok is False  # the container's egress is lost too
    proc = env.cli("--json")  # and scripts see it: exit 1, the broken link named
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["first_failure"] == "home.rule_from"
    env.sh("home", command_in(hint, "ip -4 rule add"))
    assert_passes(env.verify())


def test_dnat_rule_deleted_on_vps(healthy: Env) -> None:
    env = healthy
    env.sh("vps", "h=$(nft -a list chain inet tunnelops-wg0 prerouting | sed -n "
                  "'s/.*udp dport @svc_udp_home dnat.*# handle \\([0-9]*\\)$/\\1/p'); "
                  "nft delete rule inet tunnelops-wg0 prerouting handle \"$h\"")
    report = env.verify()
    assert_broken(report, "vps.port.12345/udp", "re-run `inv bootstrap`")
    assert "DNAT ✗" in report.check("vps.port.12345/udp").measured
    ingress = report.check("ingress.12345/udp")
    assert ingress.ok is False and " 0 on home wg0" in ingress.measured
    env.bootstrap()
    assert_passes(env.verify())


def test_port_closed_in_home_firewall(healthy: Env) -> None:
    env = healthy
    env.sh("home", "firewall-cmd -q --zone=public --remove-port=12345/udp")
    report = env.verify()
    hint = assert_broken(report, "home.port.12345/udp",
                         "`firewall-cmd --zone=public --add-port=12345/udp`")
    ingress = report.check("ingress.12345/udp")  # arrives on wg0, stopped by the firewall
    assert ingress.ok is False and re.search(r", [1-9]\d* on home wg0, 0 past its firewall",
                                             ingress.measured), ingress.measured
    env.sh("home", command_in(hint, "firewall-cmd") + " >/dev/null")
    assert_passes(env.verify())


def test_container_stopped(healthy: Env) -> None:
    env = healthy
    env.sh("home", "podman stop -t 1 tunnelops-game >/dev/null", user=PODMAN_USER)
    report = env.verify()
    hint = assert_broken(report, "container.game.running", "`podman start tunnelops-game`")
    assert report.check("ingress.12346/tcp").ok is False
    env.sh("home", command_in(hint, "podman start") + " >/dev/null", user=PODMAN_USER)
    assert_passes(env.wait_healthy())


def test_container_without_outbound_setting(healthy: Env) -> None:
    env = healthy
    env.sh("home", "podman rm -f -t 1 tunnelops-game >/dev/null && podman run -d --name "
                   "tunnelops-game --label tunnelops.service=game -p 12345:12345/udp "
                   "-p 12346:12346/tcp localhost/tunnelops-echo:latest >/dev/null",
           user=PODMAN_USER)
    deadline = time.monotonic() + 20  # the new container's echo server starting (loaded CI)
    while not (report := env.verify()).check("ingress.12346/tcp").ok \
            and time.monotonic() < deadline:
        time.sleep(1)
    assert_broken(report, "container.game.network", "re-run `inv bootstrap`")
    egress = report.check("egress.game")  # the silent failure: it works, from the wrong address
    assert egress.ok is False and f"sees {TOPO.router_wan}, not {TOPO.vps_public}" in \
        egress.measured
    assert report.check("ingress.12346/tcp").ok  # players still get in
    env.bootstrap()
    assert_passes(env.wait_healthy())


def test_tunnel_mtu_larger_than_the_path(healthy: Env) -> None:
    env = healthy
    path = env.lab.inventory
    original = path.read_text()
    site = env.site
    try:
        save(path, dataclasses.replace(
            site, tunnel=dataclasses.replace(site.tunnel, mtu=1500)))
        env.bootstrap()
        report = env.wait_healthy(timeout=3)
        hint = assert_broken(report, "tunnel.mtu", "set [tunnel] mtu = 1440")
        assert report.check("tunnel.mtu").measured.endswith("path 1500, needs 1560")
        fit = int(re.search(r"mtu = (\d+)", hint).group(1))  # the hint's value, as given
        save(path, dataclasses.replace(
            site, tunnel=dataclasses.replace(site.tunnel, mtu=fit)))
        env.bootstrap()
        report = env.wait_healthy()
        assert_passes(report)
        assert "MTU 1440/1440 (home/vps); passes 1440 home→vps, 1440 vps→home; path 1500, " \
               "needs 1500" in report.check("tunnel.mtu").measured
    finally:
        path.write_text(original)
        env.bootstrap()
    assert_passes(env.wait_healthy())
