"""Faults 2 and 3 of issue 9, in pure code: how a rootless service's unit is ordered at boot.

2. Every Quadlet start waited 90 s on Debian 13: Podman's podman-user-wait-network-online
   waits for the SYSTEM's network-online.target, which nothing pulled in. Home now wants it
   at boot (a drop-in of multi-user.target that tunnelops owns) and reaches it at once.
3. The unit raced wg0 at boot: slirp4netns refused `outbound_addr=wg0` before the tunnel
   existed (Restart= saved it by luck). The unit now starts once wg0's device exists
   (NetworkManager or wg-quick made it) and has its address, for Quadlet units and, through a
   drop-in, for `podman generate systemd` ones.
Both are proven on real systemd by tests/vm (bootstrap without the wait, reboots).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import time
from pathlib import Path

from tests.unit.facts import generate
from tests.unit.facts.generate import SITE, VPS_IP, VPS_PUB
from tunnelops.backends import podman as podman_backend
from tunnelops.changes import CommandChange, FileChange
from tunnelops.model.tunnel import Tunnel
from tunnelops.render import podman
from tunnelops.steps import home
from tunnelops.steps.context import Ctx, owned_files

SVC = SITE.services[0]


def ctx_of(name: str, **changes: object) -> Ctx:
    f = dataclasses.replace(generate.facts(name), **changes)
    return Ctx(SITE, "home", f, peer_public_key=VPS_PUB, vps_public_ip=VPS_IP,
               wan_interface="eth0")


def plan_of(ctx: Ctx, name: str):
    return next(p for p in home.configure(ctx) if p.step == name)


# ------------------------------------------------------------------ 3. after the tunnel
def test_device_unit_names_are_systemd_escaped() -> None:
    assert podman.device_unit("wg0") == "sys-subsystem-net-devices-wg0.device"
    assert podman.device_unit("wg-home") == "sys-subsystem-net-devices-wg\\x2dhome.device"
    assert podman.device_unit("wg_a.b") == "sys-subsystem-net-devices-wg_a.b.device"


def test_quadlet_unit_starts_after_the_tunnel() -> None:
    unit = podman.quadlet_unit(SVC, Tunnel(), "pasta", "0123")
    sections = {s.split("\n", 1)[0]: s for s in unit.split("\n\n")}
    head = sections["# Managed by tunnelops: local edits are overwritten."]
    assert "Wants=sys-subsystem-net-devices-wg0.device" in head.splitlines()
    assert "After=sys-subsystem-net-devices-wg0.device" in head.splitlines()
    service = sections["[Service]"].splitlines()
    assert any(x.startswith("ExecStartPre=") and "192.168.2.2" in x for x in service)
    # a tunnel down for good never exhausts systemd's start limit (5 starts in 10 s)
    assert "RestartSec=10" in service and "Restart=always" in service


def _exec_start_pre(unit: str) -> list[str]:
    line = next(x for x in unit.splitlines() if x.startswith("ExecStartPre="))
    return shlex.split(line.removeprefix("ExecStartPre="))  # systemd's quoting, as shlex's


def test_the_wait_blocks_until_the_tunnel_address_exists(tmp_path: Path) -> None:
    """The ExecStartPre command itself, with an `ip` that shows wg0 without its address
    (as just after NetworkManager creates the link), then with it."""
    t = Tunnel(interface="wgx", subnet="10.9.8.0/29", vps_address="10.9.8.5",  # type: ignore[arg-type]
               home_address="10.9.8.6")  # type: ignore[arg-type]
    argv = _exec_start_pre(podman.quadlet_unit(SVC, t, "slirp4netns", "0123"))
    assert argv[:2] == ["/bin/sh", "-c"]
    flag, fake = tmp_path / "address", tmp_path / "bin"
    fake.mkdir()
    (fake / "ip").write_text(
        "#!/bin/sh\n"
        '[ "$*" = "-4 -o addr show dev wgx" ] || exit 2\n'
        f"[ -e {flag} ] && echo '7: wgx    inet 10.9.8.6/29 scope global wgx' && exit 0\n"
        "exit 0\n")  # the link, no IPv4 address yet
    (fake / "ip").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    proc = subprocess.Popen(argv, env=env)
    try:
        time.sleep(1.5)
        assert proc.poll() is None, "the start went on before wgx had its address"
        flag.write_text("")
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()


def test_generated_unit_gets_the_tunnel_wait_as_a_dropin() -> None:
    """Podman < 4.4 (no Quadlet): `podman generate systemd` makes the unit; a drop-in adds
    the wait (the fault was seen with Podman 4.3's generated unit and slirp4netns)."""
    f = generate.facts("fedora-home-converged")
    f.users["gamer"]["version"] = "4.3.1"
    f.commands = f.commands - {"pasta"}
    plan = plan_of(Ctx(SITE, "home", f, peer_public_key=VPS_PUB, vps_public_ip=VPS_IP,
                       wan_interface="eth0"), "service:game")
    path = podman_backend.generated_dropin_path("/home/gamer", SVC)
    assert path in owned_files(SITE)
    dropin = next(c for c in plan.changes if isinstance(c, FileChange) and c.path == path)
    assert dropin.owner == "gamer:gamer"
    assert dropin.content == podman.tunnel_dropin(SITE.tunnel)
    assert "After=sys-subsystem-net-devices-wg0.device" in dropin.content
    mkdir = plan.changes[plan.changes.index(dropin) - 1]
    assert isinstance(mkdir, CommandChange) and "runuser -u gamer -- " in mkdir.script


def test_a_new_unit_alone_reloads_the_users_systemd_and_keeps_the_container() -> None:
    """An existing install (unit without the wait): the unit is rewritten and the user's
    systemd reloaded; the container, whose specification is the same, keeps running."""
    ctx = ctx_of("fedora-home-converged")
    unit_path = next(p for p in ctx.facts.files if p.endswith(".container"))
    old = ctx.facts.files[unit_path]
    stale = "\n".join(x for x in old.content.splitlines()
                      if "wg0" not in x and not x.startswith(("ExecStartPre", "RestartSec")))
    ctx.facts.files[unit_path] = dataclasses.replace(old, content=stale + "\n")
    plan = plan_of(ctx, "service:game")
    assert [c.summary for c in plan.changes] == [
        f"update {unit_path}", "reload the systemd user units of gamer"]
    assert plan.changes[1].script.endswith("'cd; systemctl --user daemon-reload'")


def test_converged_home_plans_no_unit_change() -> None:
    ctx = ctx_of("fedora-home-converged")
    assert plan_of(ctx, "service:game").changes == []
    assert plan_of(ctx, "network-online").changes == []


def test_quadlet_note_says_it_comes_back_after_a_reboot() -> None:
    notes = plan_of(ctx_of("fedora-home-converged"), "service:game").notes
    assert ("tunnelops-game.service: Quadlet unit, gamer lingering: starts at boot once wg0 "
            "is up") in notes


# ------------------------------------------------------------------ 2. network-online wanted
def test_home_wants_network_online_at_boot_and_reaches_it_now() -> None:
    plan = plan_of(ctx_of("fedora-home-fresh"), "network-online")
    assert [c.summary for c in plan.changes] == [
        "create /etc/systemd/system/multi-user.target.d",
        f"create {podman_backend.NETWORK_ONLINE_DROPIN}"]
    change = plan.changes[1]
    assert change.path.startswith("/etc/systemd/system/multi-user.target.d/")
    assert "[Unit]\nWants=network-online.target\n" in change.content
    assert plan.post == ["systemctl daemon-reload && systemctl start network-online.target"]
    # teardown removes it like every file tunnelops owns
    assert podman_backend.NETWORK_ONLINE_DROPIN in owned_files(SITE)


def test_network_online_is_planned_before_the_services() -> None:
    steps = [p.step for p in home.configure(ctx_of("fedora-home-fresh"))]
    assert steps.index("network-online") < steps.index("service:game")


def test_no_systemd_no_network_online_drop_in() -> None:
    ctx = ctx_of("fedora-home-fresh", pid1="catatonit")  # the namespace lab
    assert plan_of(ctx, "network-online").changes == []
    notes = plan_of(ctx, "service:game").notes
    assert any("will not come back after a reboot" in n for n in notes)


# ------------------------------------------------------------------ the network, by choice
def test_service_network_choice_overrides_podmans_default() -> None:
    """slirp4netns where asked for, even on Podman 5 (whose default is pasta)."""
    slirp = dataclasses.replace(SVC, network="slirp4netns")
    site = dataclasses.replace(SITE, services=(slirp,))
    ctx = Ctx(site, "home", generate.facts("fedora-home-converged"),
              peer_public_key=VPS_PUB, vps_public_ip=VPS_IP, wan_interface="eth0")
    plan = next(p for p in home.configure(ctx) if p.step == "service:game")
    assert "tunnelops-game: slirp4netns:outbound_addr=wg0,port_handler=slirp4netns" in plan.notes
    unit = next(c for c in plan.changes if isinstance(c, FileChange))
    assert "Network=slirp4netns:outbound_addr=wg0" in unit.content
    assert any(c.summary == "replace (its specification changed) container tunnelops-game "
               "(slirp4netns)" for c in plan.changes)


def test_pasta_asked_on_a_podman_without_it_is_refused() -> None:
    import pytest

    from tunnelops.steps.context import PlanError
    site = dataclasses.replace(SITE, services=(dataclasses.replace(SVC, network="pasta"),))
    f = generate.facts("fedora-home-converged")
    f.users["gamer"]["version"] = "4.3.1"
    ctx = Ctx(site, "home", f, peer_public_key=VPS_PUB, vps_public_ip=VPS_IP,
              wan_interface="eth0")
    with pytest.raises(PlanError, match=r"Podman 4\.3\.1 does not have"):
        home.configure(ctx)
