"""Issue 11 on the lab: one VPS in front of two homes (`lab.up --homes 2`), and two sites side
by side on that VPS.

- the hub and both homes bootstrap in one run; a re-run changes nothing on the three hosts and
  costs each one round trip;
- a player on the internet reaches each home's service through the VPS, TCP and UDP, and
  verify passes for both homes, each home's container egress seen as the VPS's address;
- `status --json` gives the numbers: a fresh handshake per home, the ports' counters;
- one home cut off (its SSH port dropped): the VPS and the other home still converge and
  verify, and the failure names the home that is down;
- a second site on the same VPS (wg1, another port and subnet; its home the lab's second
  home, beside the first site there): both verify; its teardown leaves the first verified.

Own instance "labh" (index 19, 2 homes), its inventory in a temporary directory, brought up
fresh and bootstrapped once for the module, taken down at the end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import own_lab, slot
from tests.lab.labb_site import describe, options, tcp_echo, token, udp_echo, wait_until
from tunnelops import commands, verify
from tunnelops.inventory.read import load
from tunnelops.lab import Lab, Topology
from tunnelops.report import RunReport

pytestmark = pytest.mark.lab

TOPO = Topology(*slot("labh", 19), homes=2)
SERVICES = {"home": ("game", 12345, 12346), "home2": ("voice", 12347, 12348)}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from own_lab(TOPO, tmp_path_factory.mktemp("inventory"))


def forget_ssh(lab: Lab) -> None:
    """The VPS's SSH limiter forgets the laptop (tests connect more often than people)."""
    lab.exec("vps", ["sh", "-c", "nft flush set inet tunnelops-host ssh_new4 2>/dev/null; :"])


def run(lab: Lab, site: str, fn=commands.bootstrap, *args: object) -> tuple[RunReport, str]:
    forget_ssh(lab)
    opts = options(site, lab.inventory_dir)
    report = fn(opts, *args) if args or fn is not commands.bootstrap else fn(opts, None, None)
    return report, opts.console.file.getvalue()


def changed(report: RunReport) -> dict[str, int]:
    return {r: h.count("changed") for r, h in report.hosts.items()}


@pytest.fixture(scope="module")
def fleet(lab: Lab) -> Lab:
    report, out = run(lab, TOPO.name)
    assert report.ok, describe(report) + out[-3000:]
    assert set(report.hosts) == {"vps", "home", "home2"}
    return lab


def check(lab: Lab, site: str) -> verify.VerifyReport:
    forget_ssh(lab)
    return verify.run(load(lab.inventory_dir / f"{site}.toml"))


def test_a_rerun_changes_nothing_on_the_three_hosts_one_round_trip_each(fleet: Lab) -> None:
    report, out = run(fleet, TOPO.name)
    assert report.ok, describe(report)
    assert changed(report) == {"vps": 0, "home": 0, "home2": 0}, out
    assert {r: h.round_trips for r, h in report.hosts.items()} == {
        "vps": 1, "home": 1, "home2": 1}


@pytest.mark.parametrize("home", sorted(SERVICES))
def test_a_player_reaches_each_homes_service_tcp_and_udp(fleet: Lab, home: str) -> None:
    _, udp, tcp = SERVICES[home]
    t = token()
    assert re.fullmatch(rf"udp-echo port={udp} peer=\S+ got={t}\n",
                        wait_until(f"UDP {udp}", lambda: udp_echo(fleet, udp, t), 10)), home
    assert re.match(rf"tcp-echo port={tcp} peer=\S+", tcp_echo(fleet, tcp, t)), home


def test_verify_covers_both_homes_egress_as_the_vps(fleet: Lab) -> None:
    report = check(fleet, TOPO.name)
    assert report.ok, [(r.id, r.measured, r.hint) for r in report.failed]
    ids = {r.id for r in report.checks}
    for home, (svc, _, _) in SERVICES.items():
        egress = next(r for r in report.checks if r.id.startswith(f"{home}:egress."))
        assert egress.ok and TOPO.vps_public in egress.measured, egress
        assert f"{home}:wg.vps_peer" in ids, sorted(ids)
        assert any(i.startswith(f"{home}:") and svc in i for i in ids), (svc, sorted(ids))
    assert "ssh.vps" in ids and "wg.vps" in ids  # the VPS's own rows, once
    assert {h: r.round_trips for h, r in report.hosts.items()} == {
        "vps": 1, "home": 1, "home2": 1}


def test_status_json_gives_the_numbers(fleet: Lab, capsys: pytest.CaptureFixture) -> None:
    check(fleet, TOPO.name)  # traffic through every port (verify's probes)
    opts = options(TOPO.name, fleet.inventory_dir)
    report = commands.status(opts, as_json=True)
    assert report.ok
    data = json.loads(opts.console.file.getvalue())
    (site,) = data["sites"]
    assert [t["home"] for t in site["tunnels"]] == ["home", "home2"]
    for t in site["tunnels"]:
        assert 0 <= t["handshake_age_s"] <= 180 and t["rx_bytes"] > 0 and t["tx_bytes"] > 0
        assert t["endpoint"].startswith(f"{TOPO.router_wan}:")
    for svc in site["services"]:
        assert svc["state"] == "running" and svc["uptime_s"] >= 0 and svc["restarts"] == 0
        for p in svc["ports"]:
            assert p["packets"] > 0 and p["bytes"] > 0, svc
    assert {h["round_trips"] for h in data["hosts"].values()} == {1}


def test_one_home_down_the_other_still_converges_and_verifies(fleet: Lab) -> None:
    block = ("nft add table inet flt3block && nft add chain inet flt3block input "
             "'{ type filter hook input priority -10; policy accept; }' && "
             "nft add rule inet flt3block input tcp dport 22 drop")
    fleet.exec("home2", ["sh", "-c", block])
    try:
        report, out = run(fleet, TOPO.name)
        assert not report.ok
        assert report.hosts["home2"].error and "home2" in report.hosts["home2"].error
        assert report.hosts["vps"].error is None and report.hosts["home"].error is None
        assert changed(report)["vps"] == 0 and changed(report)["home"] == 0, out
        assert f"{TOPO.alias('home2')}" in out
        v = check(fleet, TOPO.name)
        assert v.first_failure is not None and v.first_failure.id.startswith("home2:")
        assert all(r.ok for r in v.checks if r.id.startswith("home:")), v.failed
        assert all(r.ok is not False for r in v.checks if not r.id.startswith("home2:"))
    finally:
        fleet.exec("home2", ["sh", "-c", "nft delete table inet flt3block"])
    report, out = run(fleet, TOPO.name)
    assert report.ok, out[-2000:]


FRIEND = "labhf"


def friend_site(lab: Lab) -> Path:
    """A second site on the same VPS: its own interface, port and subnet; its home the
    lab's second home, beside the first site there (its own table and rules)."""
    first = (lab.inventory_dir / f"{TOPO.name}.toml").read_text()
    head = first.split("[[homes]]")[0].replace(f'name = "{TOPO.name}"', f'name = "{FRIEND}"')
    head = re.sub(r"(?m)^public_ip = .*\n|^wan_interface = .*\n", "", head)
    text = head + f"""[home]
host = "{TOPO.alias('home2')}"

[tunnel]
interface = "wg1"
listen_port = 51822
subnet = "192.168.3.0/24"
route_table = 202
rule_priority = 110

[[services]]
name = "chat"
image = "localhost/tunnelops-echo:latest"
user = "gamer"
ports = ["12349/udp", "27015/tcp"]
"""
    path = lab.inventory_dir / f"{FRIEND}.toml"
    path.write_text(text)
    return path


def test_two_sites_on_one_vps_teardown_of_one_leaves_the_other(fleet: Lab) -> None:
    friend_site(fleet)
    report, out = run(fleet, FRIEND)
    assert report.ok, describe(report) + out[-3000:]
    tables = fleet.exec("vps", ["nft", "list", "set", "inet", "tunnelops-host", "tunnels"]
                        ).stdout.decode()
    assert '"wg0"' in tables and '"wg1"' in tables
    both = check(fleet, FRIEND), check(fleet, TOPO.name)
    for r in both:
        assert r.ok, [(x.id, x.measured) for x in r.failed]
    report, out = run(fleet, FRIEND, commands.teardown)
    assert report.ok, out[-3000:]
    left = fleet.exec("vps", ["nft", "list", "set", "inet", "tunnelops-host", "tunnels"]
                      ).stdout.decode()
    assert '"wg0"' in left and '"wg1"' not in left
    assert fleet.exec("vps", ["nft", "list", "table", "inet", "tunnelops-wg1"],
                      check=False).returncode != 0
    after = check(fleet, TOPO.name)
    assert after.ok, [(x.id, x.measured) for x in after.failed]
    report, _ = run(fleet, TOPO.name)
    assert report.ok and changed(report) == {"vps": 0, "home": 0, "home2": 0}
