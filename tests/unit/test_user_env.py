"""Fault 4 of issue 9: rootless podman run by root for a user (`runuser`) must get the USER's
own D-Bus session bus, not root's. Root's SSH session carries
DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/0/bus (pam_systemd with dbus-user-session) and
runuser keeps it: podman then cannot reach the user's systemd ("dial unix /run/user/0/bus:
permission denied"), falls back to cgroupfs with warnings and each call takes ~3x longer.
Proven on the VM tier by tests/vm (podman's cgroup manager is systemd)."""

from __future__ import annotations

import os
import subprocess

from tests.unit.facts import generate
from tunnelops.backends import podman
from tunnelops.engine import fact_probes
from tunnelops.render import podman as render
from tunnelops.verify import runner

ROOT_BUS = "unix:path=/run/user/0/bus"
# `runuser -u USER -- CMD...` as a shell function: runs CMD with the caller's environment,
# exactly what runuser passes on (it changes the user, not the environment).
FAKE_RUNUSER = 'runuser() { [ "$1" = -u ] && [ "$3" = -- ] || exit 99; shift 3; "$@"; }\n'


def _run_as_root_session(script: str) -> str:
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": ROOT_BUS, "XDG_RUNTIME_DIR": "/run/user/0"}
    out = subprocess.run(["sh", "-c", FAKE_RUNUSER + script], env=env, capture_output=True,
                         text=True, timeout=10, check=True)
    return out.stdout.strip()


def test_as_user_gives_the_user_its_own_session_bus():
    shown = _run_as_root_session(podman.as_user(
        "nosuchuser", 'echo "$DBUS_SESSION_BUS_ADDRESS $XDG_RUNTIME_DIR"', uid="4242"))
    assert shown.splitlines()[-1] == "unix:path=/run/user/4242/bus /run/user/4242"


def test_as_user_bus_follows_the_uid_expression():
    shown = _run_as_root_session(podman.as_user(
        "nosuchuser", 'echo "$DBUS_SESSION_BUS_ADDRESS"', uid="$((4000 + 7))"))
    assert shown.splitlines()[-1] == "unix:path=/run/user/4007/bus"


def test_user_env_is_one_helper():
    env = render.user_env("gamer", "1001")
    assert "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1001/bus" in env
    assert "XDG_RUNTIME_DIR=/run/user/1001" in env


def test_facts_and_verify_run_podman_on_the_users_own_bus():
    """Both read the host through the same probes: every command they run as a service user
    goes through render.podman.as_user, with the user's own bus."""
    site = generate.SITE
    ctx = runner.context(site)
    scripts = [fact_probes(site, "home").batch().script(),
               *(b.script() for b in runner.batches_for(ctx, runner.chain(ctx)).values())]
    lines = [x for s in scripts for x in s.splitlines() if "runuser -u" in x]
    assert len(lines) >= 3
    assert all("DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/" in x for x in lines)
    shown = _run_as_root_session(render.as_user("gamer", 'echo "$DBUS_SESSION_BUS_ADDRESS"')
                                 .replace("$(id -u gamer)", "1001"))
    assert shown.splitlines()[-1] == "unix:path=/run/user/1001/bus"
