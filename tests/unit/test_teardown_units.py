"""Teardown on systemd hosts (issue 9: "teardown leaves the VMs as they were, units and lingering
included", proven on the VM tier): a service's user unit is stopped before its container goes
(with the unit still loaded, Restart=always would start it again), the unit files tunnelops
wrote go and the managers reload, and a system unit tunnelops enabled is disabled again."""

from __future__ import annotations

import dataclasses

from tests.unit.facts import generate
from tests.unit.facts.generate import SITE
from tunnelops import facts
from tunnelops.backends import podman
from tunnelops.backends.originals import enable_shell
from tunnelops.changes import RemoveFile
from tunnelops.steps import teardown
from tunnelops.steps.context import Ctx


def plans(name: str, **changes: object):
    f = dataclasses.replace(facts.parse(generate.load(name)), **changes)
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
    f = facts.parse(generate.load("fedora-home-converged"))
    f.raw["created"] = "enabled nftables.service\n"
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
