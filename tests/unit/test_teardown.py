"""Teardown plans from recorded facts: only what tunnelops made goes, never a directory tree,
and a service user's home (a game's world save) is never deleted unless asked (issue 16)."""

from __future__ import annotations

from tests.unit.facts import generate
from tests.unit.facts.generate import SITE
from tunnelops.changes import RemoveFile, StepPlan
from tunnelops.facts import FileFact, HostFacts
from tunnelops.steps import teardown
from tunnelops.steps.context import Ctx


def recorded(name: str) -> HostFacts:
    return generate.facts(name)


def plan(f: HostFacts, role: str = "home", **opts: bool) -> list[StepPlan]:
    return teardown.plan(Ctx(SITE, role, f), teardown.Options(**opts))


def shell(plans: list[StepPlan]) -> str:
    return "\n".join(c.shell() for p in plans for c in p.changes) + "\n".join(
        x for p in plans for x in p.post)


def summaries(plans: list[StepPlan]) -> list[str]:
    return [c.summary for p in plans for c in p.changes]


def test_a_service_user_and_its_data_stay_by_default() -> None:
    f = recorded("fedora-home-converged")  # tunnelops created user gamer, with lingering
    plans = plan(f)
    assert "disable lingering for gamer" in summaries(plans)
    assert "userdel" not in shell(plans) and "deluser" not in shell(plans)
    assert "/home/gamer" not in shell(plans).replace(
        "/home/gamer/.config/containers/systemd/tunnelops-game.container", "")


def test_remove_users_keeps_the_home_unless_delete_data() -> None:
    f = recorded("fedora-home-converged")
    kept = shell(plan(f, remove_users=True))
    assert "userdel gamer" in kept and "userdel -r" not in kept and "--remove-home" not in kept
    assert "pkill -KILL -u gamer" in kept  # podman's pause process made every userdel fail
    assert kept.index("pkill -KILL -u gamer") < kept.index("userdel gamer")
    gone = shell(plan(f, remove_users=True, delete_data=True))
    assert "userdel -r gamer" in gone
    # a user tunnelops did not create is never removed, whatever the flags
    f.created = ["linger gamer"]
    assert "userdel" not in shell(plan(f, remove_users=True, delete_data=True))


def test_purge_keys_removes_the_key_files_never_the_directory_tree() -> None:
    f = recorded("alpine-vps-converged")  # tunnelops created /etc/wireguard there
    text = shell(plan(f, "vps", purge_keys=True))
    assert "rm -f /etc/wireguard/wg0.key /etc/wireguard/wg0.pub" in text
    assert "rmdir /etc/wireguard" in text
    assert "rm -rf /etc/wireguard" not in text and "rm -rf /etc\n" not in text
    assert "rm -f /etc/wireguard/wg0.key" not in shell(plan(f, "vps"))  # keys stay


def test_only_files_tunnelops_made_are_removed() -> None:
    f = recorded("alpine-vps-converged")
    base = "/etc/awall/optional/tunnelops-wg0-base.json"
    ours = [c.path for p in plan(f, "vps") for c in p.changes if isinstance(c, RemoveFile)]
    assert base in ours and "/etc/wireguard/wg0.conf" in ours
    # the user's own file at a path tunnelops might have used: kept
    f.files[base] = FileFact(base, "644", "root", '{"description": "my own base policy"}\n')
    ours = [c.path for p in plan(f, "vps") for c in p.changes if isinstance(c, RemoveFile)]
    assert base not in ours
    # ... unless tunnelops recorded creating it
    f.created.append(f"file {base}")
    ours = [c.path for p in plan(f, "vps") for c in p.changes if isinstance(c, RemoveFile)]
    assert base in ours


def test_an_interface_that_is_not_ours_is_never_taken_down() -> None:
    f = recorded("debian-vps-converged")
    assert any(s == "take wg0 down" for s in summaries(plan(f, "vps")))
    del f.files["/etc/wireguard/wg0.conf"]  # the user's wg0, not ours
    assert not any("wg0" in s for s in summaries(plan(f, "vps")) if "take" in s)


def test_a_user_tunnelops_made_is_known_by_its_comment_after_a_plain_teardown() -> None:
    """A plain teardown keeps the user (and its data) but removes tunnelops's records: a later
    --remove-users still knows the user is tunnelops's by its comment, and only then."""
    f = recorded("fedora-home-converged")
    f.created = []
    assert "userdel" not in shell(plan(f, remove_users=True))
    f.users["gamer"]["comment"] = "tunnelops service user"
    assert "userdel gamer" in shell(plan(f, remove_users=True))
