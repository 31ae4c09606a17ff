"""Never lock the user out (issue 16), against a real lab: what can be known to cut SSH is
refused before any change; what cannot is put back by the host itself; the SSH port is the
one ssh really uses; a restore never happens under a live run; two add-ports both land.

Own instance "labo" (index 14), its inventory in a temporary directory.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import own_lab, slot
from tests.lab.env import sh
from tests.lab.labb_site import wait_until
from tests.lab.safety_env import (
    INV,
    PROJECT,
    error_lines,
    new_connection_gets_banner,
    pending_guards,
    remote,
    run,
    site_copy,
    state,
    state_diff,
    vanish_after_firewall_change,
    vps_firewall,
)
from tunnelops.inventory.read import load
from tunnelops.lab import Lab, Topology
from tunnelops.lab.topology import HOSTS
from tunnelops.model.tunnel import Tunnel
from tunnelops.steps import safety

pytestmark = pytest.mark.lab

TOPO = Topology(*slot("labo", 14))
GUARD_S = 8


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from own_lab(TOPO, tmp_path_factory.mktemp("inventory"))


@pytest.fixture(autouse=True)
def one_site_file(lab: Lab) -> Iterator[None]:
    """A test's variants of the site (another interface, the VPS by another alias) go with
    the test: left in the inventory they would be other sites on the same hosts, which the
    fleet check compares (issue 11) -- an alias of the same VPS is not known to be it."""
    yield
    for path in lab.inventory_dir.glob("*.toml"):
        if path != lab.inventory:
            path.unlink()


def untouched(lab: Lab) -> dict[str, dict[str, str]]:
    return {role: state(lab, role) for role in HOSTS}


def tunnel_site(lab: Lab, name: str, **tunnel: object) -> str:
    return site_copy(lab, name, tunnel=Tunnel.from_values(**tunnel))


# ----------------------------------------------------------------------- refused before changes
def test_an_uplink_named_as_the_tunnel_is_refused_on_both_hosts(lab: Lab) -> None:
    """`interface = "eth0"`: the run deleted eth0 on both hosts and hung 181 s."""
    before = untouched(lab)
    out = run(lab, site=tunnel_site(lab, "ethzero", interface="eth0"))
    assert not out.ok
    for role in HOSTS:
        assert out.error(role) == (f"{lab.topo.alias(role)}: interface eth0 already exists "
                                   "and is not tunnelops's (a veth link): set [tunnel] "
                                   "interface to a free name, e.g. wg1"), out
        assert state_diff(before[role], state(lab, role)) == {}, role
    assert out.seconds < 10 and len(error_lines(out.output)) == 2


def test_a_tunnel_subnet_over_the_home_lan_is_refused(lab: Lab) -> None:
    before = untouched(lab)
    lan = f"{lab.topo.lan_prefix}.0/24"
    out = run(lab, site=tunnel_site(lab, "overlap", subnet=lan))
    assert not out.ok
    assert out.error("home") == (
        f"{lab.topo.alias('home')}: the tunnel subnet {lan} overlaps eth0 {lab.topo.home_lan}/24"
        " on this host: traffic to it (SSH replies included) would go into the tunnel; set "
        "[tunnel] subnet to a free range, e.g. subnet = \"10.213.7.0/24\""), out
    assert out.error("vps") == ""  # fine there, but untouched too: both or nothing
    for role in HOSTS:
        assert state_diff(before[role], state(lab, role)) == {}, role


def test_a_lock_out_the_plan_cannot_see_is_put_back_by_the_host(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The network guard itself, with the refusal switched off: home's own LAN address as its
    tunnel address sends its SSH replies into table 201. The host undoes it by itself."""
    monkeypatch.setattr(safety, "_subnet", lambda ctx: None)
    lan = f"{lab.topo.lan_prefix}.0/24"
    name = tunnel_site(lab, "swallow", subnet=lan, vps_address=f"{lab.topo.lan_prefix}.77",
                       home_address=lab.topo.home_lan)
    out = run(lab, site=name, guard_seconds=GUARD_S)
    assert not out.ok
    assert "SSH" in out.error("home") and out.error("home").startswith(
        f"{lab.topo.alias('home')}: "), out.error("home")
    assert out.seconds < 45, out.seconds  # noticed within seconds, not minutes
    wait_until("home to put its network back", lambda: sh(
        lab, "home", "ip rule | grep -c 'lookup 201'; :").strip() == "0", GUARD_S + 30)
    assert sh(lab, "home", "ip link show wg0 2>/dev/null; :") == ""
    r = remote(lab, "home")
    try:
        assert r.run("echo back", sudo=False).stdout == "back\n"  # a new SSH login works
    finally:
        r.close()
    wait_until("no armed guard left", lambda: pending_guards(lab, "home") == [], 10)
    monkeypatch.undo()
    out = run(lab, "teardown")  # the VPS kept its half: take it away for the next tests
    assert out.ok, out


# ----------------------------------------------------------------------- the real SSH port
def test_the_ssh_port_is_the_one_ssh_uses(lab: Lab, tmp_path: Path) -> None:
    """An ssh_config alias with `Port 2222`: the VPS firewall opened only 22, the guard put it
    back every time, and the error said "fix the rules". Now 2222 is let in, and no service
    may take it."""
    sh(lab, "vps", "printf 'Port 22\\nPort 2222\\n' > /etc/ssh/sshd_config.d/20-port.conf && "
                   "kill -HUP $(cat /run/sshd.pid)")
    wait_until("sshd to listen again", lambda: new_connection_gets_banner(lab), 10)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host vps2222\n    HostName {lab.topo.vps_public}\n    Port 2222\n"
                   f"    User root\n    IdentityFile {lab.key}\n    IdentitiesOnly yes\n\n"
                   + lab.ssh_config.read_text())
    known = tmp_path / "known_hosts"
    line = next(x for x in lab.known_hosts.read_text().splitlines()
                if x.startswith(lab.topo.alias("vps")))
    known.write_text(lab.known_hosts.read_text() + f"[{lab.topo.vps_public}]:2222 "
                     + " ".join(line.split()[1:]) + "\n")
    site = load(lab.inventory)
    name = site_copy(lab, "port2222", ssh_config=str(cfg), known_hosts=str(known),
                     vps=dataclasses.replace(site.vps, host="vps2222"))
    try:
        out = run(lab, site=name, guard_seconds=GUARD_S)
        assert out.ok, out
        live = vps_firewall(lab)[0]
        assert "tcp dport 2222 " in live and "tcp dport 22 " not in live
        again = run(lab, site=name)
        assert again.ok and again.changed() == 0, again
        res = subprocess.run([str(INV), "add-port", "--site", name, "2222/tcp"], cwd=PROJECT,
                             text=True, capture_output=True, timeout=60,
                             env={**os.environ, "TUNNELOPS_INVENTORY": str(lab.inventory_dir),
                                  "COLUMNS": "200"})
        assert res.returncode == 2, res.stdout + res.stderr
        assert error_lines(res.stdout + res.stderr) == [
            "error: port 2222/tcp of service 'game' includes the VPS SSH port 2222/tcp: pick "
            "another port"], res.stdout + res.stderr
    finally:
        assert run(lab, "teardown", site=name).ok
        sh(lab, "vps", "rm -f /etc/ssh/sshd_config.d/20-port.conf && "
                       "kill -HUP $(cat /run/sshd.pid)")
        wait_until("sshd to listen again", lambda: new_connection_gets_banner(lab), 10)


# ----------------------------------------------------------------------- watchdog and lock
def test_a_restore_never_happens_under_a_live_run(lab: Lab) -> None:
    """A run that vanished after its firewall change: its watchdog comes due while another run
    holds the host lock. It waits; once the lock is free (nobody confirmed), it restores."""
    assert run(lab).ok
    before = vps_firewall(lab)
    died = vanish_after_firewall_change(lab, 'tcp dport 9 drop comment "never confirmed"')
    holder = remote(lab, "vps")
    try:
        holder.acquire_lock(token="someoneelse")  # a live run, with the lock, as the dog wakes
        time.sleep(max(0.0, died + GUARD_S + 4 - time.monotonic()))
        assert "never confirmed" in vps_firewall(lab)[0]  # not restored under the live run
        assert pending_guards(lab, "vps") != []
    finally:
        holder.close()
    wait_until("the VPS to restore its firewall once the lock is free",
               lambda: vps_firewall(lab) == before, 10)
    again = run(lab)
    assert again.ok, again


# ----------------------------------------------------------------------- the inventory
def test_two_add_ports_at_once_both_land(lab: Lab) -> None:
    """Both recorded (under the file's lock); one run converges, the other waits or fails on
    the host lock and says the port is recorded but not applied; the next run finishes."""
    assert run(lab).ok
    env = {**os.environ, "TUNNELOPS_INVENTORY": str(lab.inventory_dir), "COLUMNS": "200"}
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def add(port: str) -> None:
        results[port] = subprocess.run([str(INV), "add-port", "--site", lab.topo.name, port],
                                       cwd=PROJECT, env=env, text=True, capture_output=True,
                                       timeout=120)

    threads = [threading.Thread(target=add, args=(p,)) for p in ("12347/udp", "12348/udp")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ports = {str(p) for p in load(lab.inventory).service("game").ports}
    assert {"12347/udp", "12348/udp"} <= ports, results
    for port, res in results.items():
        if res.returncode != 0:
            assert (f"{port} is added in {lab.topo.name}.toml, but not on every host yet"
                    in res.stdout), res.stdout
    out = run(lab)
    assert out.ok, out
    assert run(lab).changed() == 0
    for port in ("12347/udp", "12348/udp"):
        assert run(lab, "remove-port", port=port).ok


# ----------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_says_what_was_left_and_a_rerun_converges(lab: Lab) -> None:
    assert run(lab, "teardown").ok  # work to do
    env = {**os.environ, "TUNNELOPS_INVENTORY": str(lab.inventory_dir), "COLUMNS": "300"}
    proc = subprocess.Popen([str(INV), "bootstrap", "--site", lab.topo.name], cwd=PROJECT,
                            env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    wait_until("the VPS to start applying", lambda: sh(
        lab, "vps", "ls /etc/sysctl.d/90-tunnelops.conf 2>/dev/null; :"), 60, every=0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    last = [x for x in out.splitlines() if x.strip()][-1]
    assert last.startswith("interrupted (") and last.endswith(
        "re-run the same command to converge"), out
    again = run(lab, guard_seconds=GUARD_S)
    assert again.ok, again
    assert run(lab).changed() == 0
