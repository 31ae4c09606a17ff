"""Safety (README "Safety"), against its own lab instance "labnl" (index 5).

No lock-out, put back by the host: a firewall change that cuts SSH undoes itself (the
host's dead man's switch), also when the laptop vanishes; a later run confirms what a vanished
run applied instead of letting it be undone behind its back.

What the modules of the Safety promises share (the lab instance, run, state): safety_env.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from tests.lab.env import forget_ssh_rate
from tests.lab.labb_site import wait_until
from tests.lab.safety_env import (
    GUARD_S,
    converged,
    error_lines,
    lab_fixtures,
    new_connection_gets_banner,
    pending_guards,
    remote,
    run,
    vanish_after_firewall_change,
    vps_diagnostics,
    vps_firewall,
    with_rule,
)
from tunnelops.lab import Lab
from tunnelops.lab.topology import HOSTS
from tunnelops.render import nfthost

pytestmark = pytest.mark.lab

labs, pristine = lab_fixtures("labnl", 5)


def test_firewall_change_that_blocks_ssh_undoes_itself(
        labs: Lab, monkeypatch: pytest.MonkeyPatch, lab_report: Callable[[str], None]) -> None:
    converged(labs)
    before = vps_firewall(labs)
    monkeypatch.setattr(nfthost, "host_ruleset",
                        with_rule('tcp dport 22 ct state new drop comment "test: lock-out"'))
    out = run(labs, guard_seconds=GUARD_S)
    ended = time.monotonic()
    assert not out.ok
    vps, vps_ip = labs.topo.alias("vps"), re.escape(labs.topo.vps_public)
    expected = re.compile(
        rf"{vps}: SSH stopped working after the firewall change \({vps}: a new SSH "
        rf"connection to {vps_ip}:22 fails \(.+\)\); the host restores its previous state "
        rf"by itself within {GUARD_S}s: fix the cause, then re-run")
    assert expected.fullmatch(out.error("vps")), out.error("vps")
    assert error_lines(out.output) == [f"error: {out.error('vps')}"], out
    # the control: the change was really made, and really locks new connections out
    live, on_disk = vps_firewall(labs)
    assert "test: lock-out" in live and "test: lock-out" in on_disk
    assert not new_connection_gets_banner(labs)
    # ... until the host puts the old rules back by itself, live and for the next boot
    wait_until("the VPS to restore its firewall", lambda: vps_firewall(labs) == before,
               GUARD_S + 3)
    restored = time.monotonic() - ended
    assert pending_guards(labs, "vps") == []
    assert new_connection_gets_banner(labs)
    r = remote(labs, "vps")  # a real login, new connection and all
    try:
        assert r.run("echo in", sudo=False).stdout == "in\n"
    finally:
        r.close()
    monkeypatch.undo()
    # the host table's reload keeps the SSH limiter's memory (as it should): the probes above
    # spent this source's new connections, and the re-run's guard needs one
    forget_ssh_rate(labs)
    again = run(labs)
    assert again.ok, again
    assert vps_firewall(labs)[1] == before[1]
    lab_report(f"lock-out undone {restored:.1f} s after the failed run ended (guard {GUARD_S} s,"
               " its probe waits 5 s)")


def test_watchdog_restores_when_the_laptop_vanishes(labs: Lab) -> None:
    converged(labs)
    before = vps_firewall(labs)
    died = vanish_after_firewall_change(labs, 'tcp dport 9 drop comment "never confirmed"')
    live, on_disk = vps_firewall(labs)  # applied, harmless for SSH, and never confirmed
    assert "never confirmed" in live and "never confirmed" in on_disk
    assert len(pending_guards(labs, "vps")) == 1
    wait_until("the VPS to restore its firewall", lambda: vps_firewall(labs) == before,
               GUARD_S + 3)
    assert time.monotonic() - died > 1  # by its watchdog, not at once
    assert pending_guards(labs, "vps") == []
    again = run(labs)
    assert again.ok, again


def test_next_run_confirms_what_a_vanished_run_applied(labs: Lab) -> None:
    """A run that died before confirming its firewall change; the next one (right away)
    finds the site converged: it must not be undone behind its back a few seconds later."""
    assert run(labs, "teardown").ok
    died = vanish_after_firewall_change(labs)
    assert pending_guards(labs, "vps") != []  # the control: armed, never confirmed
    before = vps_diagnostics(labs)
    after = run(labs)
    assert after.ok, (after, before, vps_diagnostics(labs))
    time.sleep(max(0.0, died + GUARD_S + 2 - time.monotonic()))  # the watchdogs woke up
    final = run(labs)
    assert final.ok and final.changed() == 0, final
    assert all(pending_guards(labs, role) == [] for role in HOSTS)
