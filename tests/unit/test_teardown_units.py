"""Teardown on systemd hosts (issue 9: "teardown leaves the VMs as they were, units and lingering
included", proven on the VM tier): a service's user unit is stopped before its container goes
(with the unit still loaded, Restart=always would start it again), the unit files tunnelops
wrote go and the managers reload, and a system unit tunnelops enabled is disabled again."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.unit.facts import generate
from tests.unit.facts.generate import SITE
from tunnelops.backends import podman
from tunnelops.backends.originals import enable_shell
from tunnelops.changes import CommandChange, RemoveFile
from tunnelops.steps import teardown
from tunnelops.steps.context import Ctx


def plans(name: str, **changes: object):
    f = dataclasses.replace(generate.facts(name), **changes)
    return {p.step: p for p in teardown.plan(Ctx(SITE, "home", f))}


def test_the_quadlet_unit_stops_before_its_container_is_removed() -> None:
    services = plans("fedora-home-converged")["services"]
    assert [c.summary for c in services.changes] == [
        "stop tunnelops-game.service of gamer", "remove container tunnelops-game"]
    assert services.changes[0].script.startswith("runuser -u gamer -- ")
    assert "systemctl --user stop tunnelops-game.service" in services.changes[0].script


def test_unit_files_go_and_the_managers_reload() -> None:
    files = plans("fedora-home-converged")["files"]
    removed = {c.path for c in files.changes if isinstance(c, RemoveFile)}
    assert "/home/gamer/.config/containers/systemd/tunnelops-game.container" in removed
    assert podman.NETWORK_ONLINE_DROPIN in removed
    assert files.post[-2:] == ["systemctl daemon-reload",
                               podman.as_user("gamer", "systemctl --user daemon-reload")]


def test_a_unit_tunnelops_enabled_is_disabled_and_only_that() -> None:
    f = generate.facts("fedora-home-converged")
    f.created = ["enabled nftables.service"]
    files = {p.step: p for p in teardown.plan(Ctx(SITE, "home", f))}["files"]
    assert [c.script for c in files.changes if c.summary.startswith("disable ")] == [
        "systemctl disable nftables.service >/dev/null 2>&1 || true"]
    # and what writes that record: only when the unit was not enabled already
    shell = enable_shell("nftables.service")
    assert shell.startswith("systemctl is-enabled -q nftables.service 2>/dev/null || {")
    assert "'enabled nftables.service'" in shell


def test_no_systemd_nothing_to_reload() -> None:
    files = plans("fedora-home-converged", pid1="catatonit")["files"]
    assert not any("daemon-reload" in x for x in files.post)


def test_directories_made_for_unit_files_go_when_empty_deepest_first() -> None:
    f = generate.facts("fedora-home-converged")
    f.created = ["emptydir /home/gamer/.config", "emptydir /home/gamer/.config/containers",
                 "emptydir /home/gamer/.config/containers/systemd"]
    files = {p.step: p for p in teardown.plan(Ctx(SITE, "home", f))}["files"]
    assert [c.script for c in files.changes
            if isinstance(c, CommandChange) and c.summary.startswith("remove /home")] == [
        "rmdir /home/gamer/.config/containers/systemd 2>/dev/null || true",
        "rmdir /home/gamer/.config/containers 2>/dev/null || true",
        "rmdir /home/gamer/.config 2>/dev/null || true"]


def test_user_dirs_notes_only_the_directories_it_makes(tmp_path: Path) -> None:
    """The shell itself, with runuser and the record as stand-ins."""
    import subprocess
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    script = podman.user_dirs("gamer", str(home), ".config/containers/systemd")
    from tunnelops.backends import originals
    records = Path(originals.RECORDS)  # the test's own (tests/unit/conftest.py)
    # runuser -u gamer -- env X=.. D=.. HOME=.. sh -c 'cd; mkdir DIR'
    fake = 'runuser() { shift 8; (cd "$HOME_DIR" && sh -c "${2#cd; }"); }\n'
    subprocess.run(["sh", "-c", fake + script], check=True, timeout=10,
                   env={"PATH": "/usr/bin:/bin", "HOME_DIR": str(home)})
    assert (home / ".config/containers/systemd").is_dir()
    assert records.read_text().splitlines() == [
        f"emptydir {home}/.config/containers", f"emptydir {home}/.config/containers/systemd"]
