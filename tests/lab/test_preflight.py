"""No surprises for a running game (issues 13, 16): what would make a run fail is found before
either host changes; a container that must be replaced keeps serving until its successor runs.

Own instance "labp" (index 16), its inventory in a temporary directory.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import own_lab, slot
from tests.lab.env import sh
from tests.lab.safety_env import run, site_copy, state, state_diff
from tunnelops.inventory.read import load
from tunnelops.lab import Lab, Topology, image
from tunnelops.lab.topology import HOSTS

pytestmark = pytest.mark.lab

TOPO = Topology(*slot("labp", 16))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from own_lab(TOPO, tmp_path_factory.mktemp("inventory"))


def with_service(lab: Lab, name: str, **changes: object) -> str:
    site = load(lab.inventory)
    game = dataclasses.replace(site.services[0], **changes)
    return site_copy(lab, name, services=(game,))


def test_a_missing_image_fails_before_the_vps_changes(lab: Lab) -> None:
    before = {role: state(lab, role) for role in HOSTS}
    name = with_service(lab, "noimage", image="localhost/no-such-image:1")
    out = run(lab, site=name)
    assert not out.ok
    err = out.error("home")
    assert err.startswith(f"{lab.topo.alias('home')}: step images failed: image "
                          "localhost/no-such-image:1 of service game cannot be pulled ("), err
    assert err.endswith("): check its name and the host's access to the registry"), err
    vps = state_diff(before["vps"], state(lab, "vps"))
    # the VPS got its packages and keys at most: no forwarding, no table, no tunnel
    assert not [k for k in vps if k in ("nft", "links", "forward")], vps


def test_a_port_taken_at_home_fails_before_anything_changes(lab: Lab) -> None:
    listener = subprocess.Popen(
        ["nsenter", "-t", str(lab.holder_pid("home")), "-m", "-u", "-i", "-n", "-p", "--",
         "socat", "-u", "UDP4-RECV:12345", "OPEN:/dev/null"], start_new_session=True)
    try:
        time.sleep(0.5)
        before = {role: state(lab, role) for role in HOSTS}
        out = run(lab)
        assert not out.ok
        assert out.error("home").startswith(
            f"{lab.topo.alias('home')}: port 12345/udp of service 'game' is taken at home by "
            "socat (pid "), out.error("home")
        assert out.error("home").endswith("): stop it, or give the service another port")
        for role in HOSTS:
            assert state_diff(before[role], state(lab, role)) == {}, role
    finally:
        os.killpg(listener.pid, signal.SIGKILL)  # nsenter and the socat it forked
        listener.wait()


def containers(lab: Lab) -> list[str]:
    return lab.exec("home", ["podman", "ps", "-a", "--format", "{{.ID}} {{.Names}} {{.State}} "
                             "{{.Ports}}"], user="gamer").stdout.decode().splitlines()


def test_a_restart_is_announced_and_the_service_swapped_in_place(lab: Lab) -> None:
    """add-port changes the container's ports: the plan and recap say it restarts; after the
    swap one container of the service runs, under its own name, with the new ports."""
    assert run(lab).ok
    [first] = containers(lab)
    dry = run(lab, "add-port", port="12347/udp", dry_run=True)
    assert ("restarts tunnelops-game (its players are dropped for a moment): its ports "
            "change") in dry.output, dry
    out = run(lab, "add-port", port="12347/udp")
    assert out.ok, out
    assert "restarts tunnelops-game" in out.output
    [after] = containers(lab)
    cid, name, status, *ports = after.split()
    assert (name, status) == ("tunnelops-game", "Up") and cid != first.split()[0]
    assert "12347->12347/udp" in " ".join(ports)
    assert run(lab).changed() == 0
    assert run(lab, "remove-port", port="12347/udp").ok


def test_teardown_keeps_a_service_users_data_unless_asked(lab: Lab) -> None:
    """A service user that tunnelops created: plain teardown deleted /home/USER with the
    game's data in it, then userdel failed (podman's pause process) on every later teardown."""
    assert run(lab, "teardown").ok  # gamer's container would hold the ports: refused
    name = with_service(lab, "newuser", user="player")
    first = run(lab, site=name)  # makes the user, then cannot pull the lab's local image
    assert "step images failed" in first.error("home"), first
    lab.exec("home", ["podman", "import", "-q", *image.import_changes(), "-", image.IMAGE],
             user="player", input=image.build_tar(lab.root / "cache").read_bytes(), timeout=60)
    again = run(lab, site=name)
    assert again.ok, again
    sh(lab, "home", "echo world-save > /home/player/save.dat")
    plain = run(lab, "teardown", site=name)
    assert plain.ok, plain
    assert sh(lab, "home", "cat /home/player/save.dat; id -un player") == "world-save\nplayer\n"
    assert run(lab, "teardown", site=name).ok  # a second teardown: nothing left to fail on
    assert run(lab, site=name).ok
    users = run(lab, "teardown", site=name, remove_users=True)
    assert users.ok, users
    assert sh(lab, "home", "cat /home/player/save.dat; id player >/dev/null 2>&1 || "
                           "echo gone") == "world-save\ngone\n"
    sh(lab, "home", "rm -rf /home/player")
