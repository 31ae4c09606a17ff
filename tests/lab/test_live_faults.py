"""Live faults (issue 15): state changed on a running host while every file stays right.

On a healthy, bootstrapped site, one fault at a time: `inv verify` must fail first on the row
of the broken link with a hint naming the fix, ONE `inv bootstrap` must repair it (changed>0),
verify must pass again and a second bootstrap must find nothing to do (changed=0, the lock
and the facts only).

Own instance "labf" (index 15), brought up and bootstrapped once for the module. Faults are
made without SSH (lab.exec). The VPS's SSH rate limiter's memory of our address is cleared
before each run (this module opens more connections a minute than the product allows one
address), as in test_verify.py.

The lab's home has no WireGuard kernel module: its tunnel is wg-quick + wireguard-go (the
NetworkManager live path is covered by plan tests and by the VM tier).
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from rich.console import Console

from tests.conftest import slot
from tests.lab.env import SiteEnv, bootstrapped, failing
from tunnelops import commands
from tunnelops.backends import firewalld as firewalld_backend
from tunnelops.changes import CommandChange, StepPlan
from tunnelops.inventory.write import save
from tunnelops.lab import Topology
from tunnelops.lab.topology import PODMAN_USER
from tunnelops.model.ports import PortSpec
from tunnelops.report import RunReport
from tunnelops.steps.context import Ctx
from tunnelops.verify import VerifyReport

pytestmark = pytest.mark.lab

TOPO = Topology(*slot("labf", 15))
CONTAINER = "tunnelops-game"
GUARD_S = 8  # the dead man's switch of the run that tests it (the product's default is 20)


class Env(SiteEnv):
    def restore(self) -> VerifyReport:
        """A healthy site whatever an earlier, failed test left: bootstrap, and if that is
        not enough, teardown then bootstrap (so each fault is judged on its own)."""
        report = self.wait_healthy(timeout=5)
        if not report.ok:
            self.bootstrap()
            report = self.wait_healthy()
        if not report.ok:
            self.teardown()
            self.bootstrap()
            report = self.wait_healthy()
        return report

    def wait_healthy(self, timeout: float = 25) -> VerifyReport:
        return super().wait_healthy(timeout)

    def vps_key(self) -> str:
        return self.sh("vps", "wg show wg0 public-key").strip()


def changed(report: RunReport) -> dict[str, list[str]]:
    return {role: [f"{s.step}: {c}" for s in h.steps if s.status == "changed" for c in s.changes]
            for role, h in report.hosts.items()}


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    yield from bootstrapped(TOPO, kind=Env)


# ---------------------------------------------------------------------------- the faults
def _recreated_without_outbound(env: Env) -> None:
    env.sh("home", f"podman rm -f -t 1 {CONTAINER} >/dev/null && podman run -d --name "
                   f"{CONTAINER} --label tunnelops.service=game -p 12345:12345/udp "
                   "-p 12346:12346/tcp localhost/tunnelops-echo:latest >/dev/null",
           user=PODMAN_USER)


def _wrong_endpoint(env: Env) -> None:
    """WireGuard roams: the VPS's next packet to home would put the right endpoint back by
    itself, for as long as home's router keeps the NAT mapping that packet arrives through.
    The fault that lasts is a wrong endpoint once that mapping is gone (a few idle minutes on
    a real router); a new listen port at home gives the same at once (the mapping the VPS
    knows then leads to a closed port)."""
    env.sh("home", f"wg set wg0 listen-port 40123 peer {env.vps_key()} "
                   "endpoint 198.51.100.250:51821")


def _runtime_port_removed(env: Env) -> None:
    env.sh("home", "firewall-cmd -q --zone=public --remove-port=12345/udp")
    # the control: only the runtime lost it
    assert "12345/udp" in env.sh("home", "firewall-cmd --permanent --zone=public --list-ports")


@dataclass(frozen=True)
class Fault:
    name: str
    make: Callable[[Env], None]
    row: str  # the first failing row of `inv verify`
    fixed_by: str  # a change summary of the repairing bootstrap (at home) starts with this


FAULTS = [
    Fault("narrowed AllowedIPs",
          lambda e: e.sh("home", f"wg set wg0 peer {e.vps_key()} allowed-ips 192.168.2.1/32"),
          "wg.home_peer", "wireguard: sync wg0 peers with its config (AllowedIPs 192.168.2.1/32"),
    Fault("wrong endpoint", _wrong_endpoint,
          "wg.home_peer", "wireguard: sync wg0 peers with its config (endpoint 198.51.100.250"),
    Fault("keepalive removed",
          lambda e: e.sh("home", f"wg set wg0 peer {e.vps_key()} persistent-keepalive 0"),
          "wg.home_peer", "wireguard: sync wg0 peers with its config (keepalive off, not 25"),
    Fault("MTU changed", lambda e: e.sh("home", "ip link set dev wg0 mtu 1300"),
          "wg.home", "wireguard: set wg0's MTU back to 1420"),
    Fault("policy rule deleted",
          lambda e: e.sh("home", "ip -4 rule del from 192.168.2.2 table 201"),
          "home.rule_from", "wireguard: add policy rule from 192.168.2.2/32 table 201"),
    Fault("table 201 default route deleted",
          lambda e: e.sh("home", "ip -4 route del default dev wg0 table 201"),
          "home.table", "wireguard: add default route via wg0 in table 201"),
    Fault("runtime firewalld port removed", _runtime_port_removed,
          "home.port.12345/udp", "firewall: open 12345/udp in zone public (runtime)"),
    Fault("container stopped",
          lambda e: e.sh("home", f"podman stop -t 1 {CONTAINER} >/dev/null", user=PODMAN_USER),
          "container.game.running", f"service:game: start container {CONTAINER}"),
    Fault("container recreated without the outbound setting", _recreated_without_outbound,
          "container.game.network", "service:game: replace (its specification changed"),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_live_fault_is_found_then_repaired_by_one_bootstrap(
        env: Env, fault: Fault, lab_report: Callable[[str], None]) -> None:
    healthy = env.restore()
    assert healthy.ok, failing(healthy)

    fault.make(env)
    report = env.verify()
    first = report.first_failure
    assert first is not None and first.id == fault.row, failing(report)
    assert "inv bootstrap" in first.hint, first.hint

    repair = env.bootstrap()
    fixes = changed(repair)
    assert any(c.startswith(fault.fixed_by) for c in fixes["home"]), fixes
    assert sum(len(v) for v in fixes.values()) > 0
    after = env.wait_healthy()
    assert after.ok, failing(after)

    t0 = time.monotonic()
    again = env.bootstrap()
    assert changed(again) == {"vps": [], "home": []}, env.out.getvalue()[-3000:]
    # one round trip per host: the script that takes the host lock gathers the facts (it
    # was 2, the lock on its own first, before issue 14)
    assert {r: h.round_trips for r, h in again.hosts.items()} == {"vps": 1, "home": 1}
    lab_report(f"{fault.name}: verify row {fault.row}, repaired by "
               f"{'; '.join(fixes['home'])}; converged re-run {time.monotonic() - t0:.1f} s")


# ---------------------------------------------------------------------------- firewalld's guard
FW_STATE = ("firewall-cmd --list-all-zones; echo '## permanent'; "
            "firewall-cmd --permanent --list-all-zones; echo '## files'; "
            "find /etc/firewalld -type f -exec sha256sum {} + | sort")


def fw_state(env: Env) -> str:
    """firewalld's runtime and permanent zones and its files; the values of a zone's lists
    sorted (a reload lists runtime ports in the permanent file's order)."""
    lines = []
    for line in env.sh("home", FW_STATE).splitlines():
        key, sep, values = line.partition(": ")
        lines.append(f"{key}{sep}{' '.join(sorted(values.split()))}" if sep and
                     line.startswith("  ") else line)
    return "\n".join(lines)


def new_ssh_to_home(env: Env) -> bool:
    try:
        with socket.create_connection((env.lab.topo.home_lan, 22), timeout=1.5) as s:
            s.settimeout(1.5)
            return s.recv(4) == b"SSH-"
    except OSError:
        return False


def test_firewalld_change_that_locks_ssh_out_at_home_undoes_itself(
        env: Env, monkeypatch: pytest.MonkeyPatch, lab_report: Callable[[str], None]) -> None:
    """A real firewalld (home): a firewall step that also takes SSH out of the zone (runtime
    and permanent) fails the run on the guard's proof, and the host's watchdog puts back
    firewalld's configuration and its runtime state as they were before the run (its
    restore is `--reload` of the configuration saved before: runtime-only settings made by
    hand are firewalld's to lose on a reload; here runtime and permanent agree)."""
    assert env.restore().ok
    before = fw_state(env)
    assert new_ssh_to_home(env)
    real = firewalld_backend.plan

    def with_lockout(ctx: Ctx, ports: list[PortSpec], step: str = "firewall",
                     legacy: bool = False) -> StepPlan:
        p = real(ctx, ports, step, legacy=legacy)
        p.changes.append(CommandChange(
            "test: take ssh out of zone public",
            "firewall-cmd -q --permanent --zone=public --remove-service=ssh; "
            "firewall-cmd -q --zone=public --remove-service=ssh"))
        return p

    path, original = env.lab.inventory, env.lab.inventory.read_text()
    monkeypatch.setattr(firewalld_backend, "plan", with_lockout)
    save(path, env.site.with_port_added("12347/udp"))  # a real firewall change
    try:
        env.sh("vps", "nft flush set inet tunnelops-host ssh_new4 2>/dev/null || true")
        out = io.StringIO()
        opts = commands.Options(inventory_dir=env.lab.inventory_dir, site=TOPO.name,
                                guard_seconds=GUARD_S, console=Console(file=out, width=200))
        report = commands.bootstrap(opts, None, None)
        ended = time.monotonic()
    finally:
        path.write_text(original)
        monkeypatch.undo()
    assert not report.ok
    assert "SSH stopped working after the firewall change" in (report.hosts["home"].error
                                                               or ""), out.getvalue()[-2000:]
    # the control: the change was made, and really shuts new connections out
    locked = fw_state(env)
    assert "12347/udp" in locked and not new_ssh_to_home(env)
    # ... until the host restores it by itself: configuration and runtime as before
    deadline = time.monotonic() + GUARD_S + 5
    while fw_state(env) != before and time.monotonic() < deadline:
        time.sleep(0.3)
    restored = time.monotonic() - ended
    assert fw_state(env) == before
    assert new_ssh_to_home(env)
    assert env.sh("home", "ls /run/tunnelops | grep '^guard\\.' || :").strip() == ""
    lab_report(f"firewalld lock-out at home undone {restored:.1f} s after the run ended "
               f"(guard {GUARD_S} s)")
    assert env.restore().ok
