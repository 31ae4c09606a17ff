"""Safety (README "Safety"), against its own lab instance "labir" (index 11).

Interrupted runs and broken links: a run killed at every step boundary of each host (and
half-way through writing a file) fails clearly and a re-run converges; a link cut mid-run
fails in bounded time.

What the modules of the Safety promises share (the lab instance, run, state): safety_env.py.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import pytest

from tests.lab.env import sh
from tests.lab.labb_site import wait_until
from tests.lab.safety_env import (
    GUARD_S,
    converged,
    error_lines,
    lab_fixtures,
    leftover_temp_files,
    pending_guards,
    run,
)
from tunnelops.lab import Lab
from tunnelops.lab.topology import HOSTS
from tunnelops.probes.wireguard import rehandshake

pytestmark = pytest.mark.lab

labs, pristine = lab_fixtures("labir", 11)


# ============================================================================ 5. interrupted runs
# One interruption point per host and run (both hosts apply in parallel); together they are
# every step boundary of each host, and a kill half-way through writing a file.
INTERRUPTS = [("vps:forwarding", "home:wireguard"), ("vps:wireguard", "home:firewall"),
              ("vps:firewall", "home:service:game"),
              ("vps:forwarding:mid", "home:wireguard:mid")]


@pytest.mark.parametrize("points", INTERRUPTS, ids=["+".join(p) for p in INTERRUPTS])
def test_interrupted_run_fails_clearly_and_a_rerun_converges(
        labs: Lab, points: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
        lab_report: Callable[[str], None]) -> None:
    labs.down()  # a site tunnelops never touched: faster than a teardown, and as pristine
    labs.up()
    monkeypatch.setenv("TUNNELOPS_INTERRUPT", ",".join(points))
    cut = run(labs, guard_seconds=GUARD_S)
    monkeypatch.delenv("TUNNELOPS_INTERRUPT")
    assert not cut.ok
    temp = leftover_temp_files(labs)
    for point in points:
        role, _, where = point.partition(":")
        mid = where.endswith(":mid")
        # half-way through a step's file: killed after the step before it (fleet's site
        # record comes first on the VPS), or before any when it is the first
        after = ("(?:before any step ended|after step [a-z:-]+)" if mid
                 else f"after step {re.escape(where)}")
        assert re.fullmatch(rf"{labs.topo.alias(role)}: the script applying [a-z:, -]+ was "
                            rf"killed {after}: re-run \(every step is idempotent\)",
                            cut.error(role)), cut.error(role)
        assert f"error: {cut.error(role)}" in error_lines(cut.output)
        assert bool(temp[role]) == mid, temp  # the control: a write cut half-way leaves one
    again = run(labs)  # (after the last steps, nothing is left to do: changed=0 is right)
    assert again.ok, again
    assert leftover_temp_files(labs) == {role: "" for role in HOSTS}
    assert all(pending_guards(labs, role) == [] for role in HOSTS)  # nothing to undo later
    final = run(labs)
    assert final.ok and final.changed() == 0, final
    lab_report(f"interrupted {cut.seconds:.1f} s, re-run {again.seconds:.1f} s, "
               f"no-op {final.seconds:.1f} s")


def test_rerun_checks_a_tunnel_that_has_not_handshaken_yet(labs: Lab) -> None:
    """A run killed after its last steps never ran its check, and the tunnel it brought up
    may not have handshaken yet: a re-run with nothing to change must check the tunnel
    (its ping starts a handshake) rather than fail for want of one."""
    converged(labs)
    blocked = (b"table ip safety_test {\n chain f {\n  type filter hook forward priority 0;\n"
               b"  udp dport 51821 drop\n }\n}\n")
    labs.exec("router", ["nft", "-f", "-"], input=blocked)
    try:  # home forgets its session with the VPS, and cannot make a new one
        sh(labs, "home", rehandshake("wg0"))
        assert sh(labs, "home", "wg show wg0 latest-handshakes").split()[1:] == ["0"]
    finally:
        labs.exec("router", ["nft", "delete", "table", "ip", "safety_test"])
    out = run(labs)  # right away: WireGuard retries a handshake only every 5 s
    assert out.ok and out.changed() == 0, out
    assert sh(labs, "home", "wg show wg0 latest-handshakes").split()[1:] != ["0"]


# ============================================================================ 6. broken links
def test_link_cut_mid_run_fails_in_bounded_time_then_a_rerun_converges(
        labs: Lab, monkeypatch: pytest.MonkeyPatch, lab_report: Callable[[str], None]) -> None:
    assert run(labs, "teardown").ok  # work to do
    timeout = 15  # the link timeout (TUNNELOPS_LINK_TIMEOUT's default), not a command's
    uplink = ["ip", "link", "set", "i-vps"]  # the VPS's link, on the internet's side

    def cut_while_the_vps_applies() -> None:
        wait_until("the VPS to start applying",
                   lambda: sh(labs, "vps", "ls /etc/sysctl.d/90-tunnelops.conf 2>/dev/null; :"),
                   60, every=0.05)
        labs.exec("inet", [*uplink, "down"])

    cutter = threading.Thread(target=cut_while_the_vps_applies)
    cutter.start()
    try:
        out = run(labs, guard_seconds=GUARD_S)
    finally:
        cutter.join()
        labs.exec("inet", [*uplink, "up"])
    assert not out.ok
    assert out.seconds < 2 * timeout + 10, out.seconds  # noticed in seconds, not 181 s
    vps_error = out.error("vps")
    assert vps_error.startswith(f"{labs.topo.alias('vps')}: ") and "\n" not in vps_error, vps_error
    # named as link trouble, with what was being done
    assert re.search(rf"the SSH connection was lost during applying [a-z, :-]+ \(no answer "
                     rf"for {timeout}s\)|connection broke", vps_error), vps_error
    assert f"error: {vps_error}" in error_lines(out.output)

    again = run(labs)
    assert again.ok, again
    final = run(labs)
    assert final.ok and final.changed() == 0, final
    assert all(pending_guards(labs, role) == [] for role in HOSTS)
    lab_report(f"link cut: failed after {out.seconds:.1f} s (link timeout {timeout} s), "
               f"re-run {again.seconds:.1f} s")
