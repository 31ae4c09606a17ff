"""Safety (README "Safety"), against its own lab instance "lablk" (index 10).

One run at a time: a second run waits for the host lock, then names its holder; the lock
of a run that died is released; the locked script leaves the lock to its channel; a run that
lost its connection keeps the lock until its changes ended.

What the modules of the Safety promises share (the lab instance, run, state): safety_env.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import threading
import time
import uuid

import pytest

from tests.lab.env import sh
from tests.lab.labb_site import wait_until
from tests.lab.safety_env import (
    INV,
    PROJECT,
    converged,
    error_lines,
    lab_fixtures,
    pending_guards,
    remote,
    run,
)
from tunnelops.changes import CommandChange, StepPlan, apply_script
from tunnelops.lab import Lab
from tunnelops.lab.topology import HOSTS
from tunnelops.remote import RemoteError

pytestmark = pytest.mark.lab

labs, pristine = lab_fixtures("lablk", 10)


# ============================================================================ 4. one run at a time
LOCK_INFO = "/run/tunnelops.lock.info"


def test_second_run_waits_then_names_the_lock_holder(labs: Lab) -> None:
    converged(labs)
    holder = remote(labs, "vps")
    try:
        holder.acquire_lock()  # what a run does first: another run, on the VPS, now
        info = sh(labs, "vps", f"cat {LOCK_INFO}").strip()
        assert re.fullmatch(r"pid=\d+ since=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ token=", info), info
        info = info.removesuffix(" token=")  # a run's token is not shown to people
        second = run(labs)
    finally:
        holder.close()
    assert not second.ok
    assert 5 <= second.seconds < 15, second.seconds  # it waited a few seconds, then gave up
    vps = labs.topo.alias("vps")
    expected = (f"{vps}: another tunnelops run holds the lock on {vps} ({info}): "
                "wait for it to finish, then re-run")
    assert second.error("vps") == expected
    assert error_lines(second.output) == [f"error: {expected}"], second
    assert second.changed() == 0 and second.error("home") == ""
    # the holder gone, the lock is free at once
    third = run(labs)
    assert third.ok and third.changed() == 0, third


def test_lock_of_a_run_that_died_is_released(labs: Lab) -> None:
    assert run(labs, "teardown").ok  # keys kept: a bootstrap with work to do
    # a run killed (SIGKILL: no cleanup at all) while the VPS applies its changes
    proc = subprocess.Popen([str(INV), "bootstrap", "--site", labs.topo.name], cwd=PROJECT,
                            env={**os.environ, "TUNNELOPS_INVENTORY": str(labs.inventory_dir)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("the VPS to start applying",
                   lambda: sh(labs, "vps", "ls /etc/sysctl.d/90-tunnelops.conf 2>/dev/null; :"),
                   30, every=0.05)
        dead = sh(labs, "vps", f"cat {LOCK_INFO}").strip()
    finally:
        proc.kill()
        proc.wait()
    after = run(labs)
    assert after.ok, after
    assert after.seconds < 20, after.seconds
    assert sh(labs, "vps", f"cat {LOCK_INFO} 2>/dev/null; :").strip() != dead
    for role in HOSTS:  # nothing the dead run armed is left to undo what `after` kept
        assert pending_guards(labs, role) == [], role
    # a connection closed abruptly (no SSH goodbye, the TCP connection just goes)
    holder = remote(labs, "vps")
    holder.acquire_lock()
    assert holder.conn.transport is not None
    holder.conn.transport.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    holder.conn.transport.sock.close()  # type: ignore[union-attr]
    again = run(labs)
    holder.close()
    assert again.ok and again.changed() == 0, again


def test_the_locked_script_leaves_the_lock_to_its_channel(labs: Lab) -> None:
    """The lock and the facts are one script (run_locked). What that script starts (a daemon,
    podman's pause process) must not inherit the lock's descriptor: the lock would outlive
    the run, and every later run would wait, then fail. And the facts run only once the
    lock is held: while another run holds it, they do not run at all."""
    first = remote(labs, "home", command_timeout=5)
    try:
        # and stdin at EOF, as any script's (the channel's own stays open, holding the lock)
        res = first.run_locked("cat; sleep 60 </dev/null >/dev/null 2>&1 & echo $!",
                               token="t1")
        lingering = res.stdout.strip()
        assert lingering.isdigit(), res
        assert sh(labs, "home", f"cat {LOCK_INFO}").strip().endswith("token=t1")
    finally:
        first.close()
    try:
        assert sh(labs, "home", f"kill -0 {lingering} && echo alive").strip() == "alive"
        t0 = time.monotonic()
        second = remote(labs, "home")
        try:
            assert second.run_locked("echo gathered", token="t2").stdout == "gathered\n"
            waited = time.monotonic() - t0
            busy = remote(labs, "home")
            try:
                with pytest.raises(RemoteError, match="another tunnelops run holds the lock"):
                    busy.run_locked(f"touch /tmp/ran-{uuid.uuid4().hex[:8]}", wait=1)
                assert busy.trips[-1].seconds < 5
            finally:
                busy.close()
        finally:
            second.close()
        assert waited < 3, waited  # the first run's sleep did not keep the lock
        assert sh(labs, "home", "ls /tmp/ran-* 2>/dev/null; :").strip() == ""
    finally:
        sh(labs, "home", f"kill {lingering} 2>/dev/null; :")


def test_lock_waits_for_the_changes_of_a_run_that_lost_its_connection(labs: Lab) -> None:
    """A run that dies leaves its apply script running on the host until its next write to
    the dead connection: the next run must not gather facts and change the host meanwhile."""
    done = f"/tmp/dead-run-done-{uuid.uuid4().hex[:8]}"
    dying = remote(labs, "home")
    dying.acquire_lock()
    script = apply_script([StepPlan("slow", [CommandChange("slow", f"sleep 3; : > {done}")])])

    def apply() -> None:
        with contextlib.suppress(RemoteError, OSError, EOFError):
            dying.run(script)

    threading.Thread(target=apply, daemon=True).start()
    wait_until("the script to start", lambda: "sleep 3" in sh(labs, "home", "ps -eo args"), 10,
               every=0.05)
    assert dying.conn.transport is not None
    dying.conn.transport.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    t0 = time.monotonic()
    nxt = remote(labs, "home")
    try:
        nxt.acquire_lock()
        waited = time.monotonic() - t0
        assert sh(labs, "home", f"ls {done} 2>/dev/null; :").strip() == done, waited
    finally:
        nxt.close()
        dying.close()
    assert 1.5 < waited < 8, waited
