"""The pure (laptop-only) side of the README's "Safety" promises (issue #6); the end-to-end
side is tests/lab (README "Safety" names a module per promise).

- host keys: the unknown-key policy (refuse with the fingerprint and the flag, or record);
- the dead man's switch: a watchdog only ever acts on its own run's marker;
- one run at a time: the apply script holds a lock for as long as it runs, nothing it starts;
- interrupted runs: a script that dies after its steps is a failure, its firewall confirmed;
  a WireGuard interface left half-up is restarted;
- hostile input: values reach podman's argv literally through both shell layers; hosts and
  inventory files (hypothesis, 1000+ examples each) load literally or fail in one line that
  points at the offending line, before any connection.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paramiko
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from tests.unit.facts import generate
from tunnelops import changes, commands, facts
from tunnelops.changes import CommandChange, Guard, StepPlan, apply_script
from tunnelops.engine import Run
from tunnelops.inventory.read import loads
from tunnelops.inventory.schema import InventoryError
from tunnelops.model.hosts import HostRef
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.values import NAME_RE, ModelError
from tunnelops.probes import MARK
from tunnelops.remote import Remote, RemoteError, Result
from tunnelops.render import podman as podman_render
from tunnelops.sshlink import HostKeyPolicy
from tunnelops.steps import home, safety, vps
from tunnelops.steps.context import Ctx, PlanError

SETTINGS = settings(max_examples=1000, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
METACHARS = ";|&$`'\"<>(){}*?!\\"


def one_line(text: str) -> bool:
    return bool(text) and "\n" not in text and "\r" not in text


# --------------------------------------------------------------------------- host keys
def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def test_unknown_host_key_is_refused_with_its_fingerprint_and_the_flag(tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    key = paramiko.RSAKey.generate(1024)
    client = paramiko.SSHClient()
    with pytest.raises(RemoteError) as err:
        HostKeyPolicy("myvps", known, trust_new=False).missing_host_key(
            client, "203.0.113.7", key)
    msg = str(err.value)
    assert one_line(msg)
    assert msg.startswith("myvps: unknown host key ssh-rsa ")
    assert fingerprint(key) in msg and "--trust-new-host" in msg and str(known) in msg
    assert not known.exists()  # nothing recorded


def test_trusted_new_host_key_is_recorded_as_openssh_reads_it(tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    client = paramiko.SSHClient()
    keys = [paramiko.RSAKey.generate(1024) for _ in range(2)]
    HostKeyPolicy("myvps", known, trust_new=True).missing_host_key(client, "203.0.113.7",
                                                                    keys[0])
    HostKeyPolicy("h", known, trust_new=True).missing_host_key(client, "[10.0.0.2]:2222",
                                                                keys[1])
    assert known.read_text() == (f"203.0.113.7 ssh-rsa {keys[0].get_base64()}\n"
                                 f"[10.0.0.2]:2222 ssh-rsa {keys[1].get_base64()}\n")
    again = paramiko.HostKeys(str(known))  # and read back: the same keys
    assert again.lookup("203.0.113.7")["ssh-rsa"] == keys[0]
    assert again.lookup("[10.0.0.2]:2222")["ssh-rsa"] == keys[1]


# --------------------------------------------------------------------------- the guard
def sh(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=20, check=False)


def test_a_watchdog_never_acts_on_a_later_runs_marker(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Run 1 changes the firewall and confirms; its watchdog sleeps on. Run 2 changes it
    again and is still proving SSH works when run 1's watchdog wakes up: it must not take
    run 2's marker for its own (nor restore run 2's snapshot, undoing run 2's change)."""
    monkeypatch.setattr(changes, "GUARD_DIR", str(tmp_path / "run"))
    rules = tmp_path / "rules"
    rules.write_text("v0\n")

    def change(version: str, seconds: float) -> StepPlan:
        return StepPlan("firewall", [CommandChange("load", f"echo {version} > {rules}")],
                        guard=Guard(snapshot=f"cp {rules} {rules}.saved",
                                    restore=f"cp {rules}.saved {rules}; echo x >> "
                                            f"{tmp_path / 'restores'}",
                                    seconds=seconds))  # type: ignore[arg-type]

    first = sh(apply_script([change("v1", 1)], guard_token="run1"), tmp_path)
    assert MARK + " step firewall ok" in first.stdout
    Path(changes.guard_marker("firewall", "run1")).unlink()  # run 1 confirms
    second = sh(apply_script([change("v2", 4)], guard_token="run2"), tmp_path)
    assert MARK + " step firewall ok" in second.stdout
    marker2 = Path(changes.guard_marker("firewall", "run2"))
    assert marker2.exists()
    time.sleep(1.6)  # run 1's watchdog woke up meanwhile
    assert rules.read_text() == "v2\n" and marker2.exists()
    assert not (tmp_path / "restores").exists()
    marker2.unlink()  # run 2 confirms


def test_apply_script_holds_the_apply_lock_while_it_runs_and_not_beyond(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "apply.lock"
    monkeypatch.setattr(changes, "APPLY_LOCK", str(lock))
    started, child = tmp_path / "started", tmp_path / "child.pid"
    script = apply_script([StepPlan("slow", [CommandChange(
        "slow", f": > {started}; sleep 1.5; setsid sleep 5 </dev/null >/dev/null 2>&1 & "
                f"echo $! > {child}")])])
    proc = subprocess.Popen(["sh", "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

    def exclusive_now() -> bool:
        return subprocess.run(["flock", "-n", "-x", str(lock), "true"]).returncode == 0

    try:
        deadline = time.monotonic() + 5
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert not exclusive_now()  # a next run's lock waits
        proc.wait(10)
        deadline = time.monotonic() + 2  # released with the script, though what it
        while not exclusive_now():       # started (the sleep 5) lives on
            assert time.monotonic() < deadline, "the apply lock outlived its script"
            time.sleep(0.05)
        assert Path(f"/proc/{child.read_text().strip()}").exists()
    finally:
        proc.kill()
        if child.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(child.read_text()), signal.SIGKILL)


# --------------------------------------------------------------------------- interrupted
class ScriptedRemote:
    """Stands in for a host's Remote in engine unit tests: answers `run` with canned output."""

    def __init__(self, dest: str, result: Result, later: Result | None = None) -> None:
        self.dest, self.result, self.later = dest, result, later
        self.sent: list[str] = []
        self.probes = 0

    def run(self, script: str, **_: object) -> Result:
        """The first script gets `result`; later ones `later`, or every step ok."""
        self.sent.append(script)
        if len(self.sent) == 1:
            return self.result
        if self.later is not None:
            return self.later
        steps = re.findall(r"then r (\S+) ok;", script)
        return Result("".join(f"\n{MARK} step {s} ok\n" for s in steps), "", 0)

    def probe_new_connection(self, within: float = 0, what: str = "") -> None:
        self.probes += 1


def applied(outcomes: list[tuple[str, str]], exit_status: int,
            later: Result | None = None) -> tuple[Run, ScriptedRemote]:
    out = "".join(f"\n{MARK} step {s} {status}\n" for s, status in outcomes)
    remote = ScriptedRemote("vps.example", Result(out, "", exit_status), later)
    site = generate.SITE
    run = Run(site, remotes={"vps": remote, "home": ScriptedRemote("home", Result("", "", 0))},
              guard_seconds=7)  # type: ignore[dict-item]
    plans = [StepPlan("forwarding", [CommandChange("a", "A")]),
             StepPlan("firewall", [CommandChange("b", "B")],
                      guard=Guard("SNAP", "RESTORE", 7)),
             StepPlan("services", [CommandChange("c", "C")])]
    run._guarded(lambda role: run._apply(role, plans), "vps")
    return run, remote


def test_a_script_killed_after_its_steps_is_a_failure_not_a_success() -> None:
    run, remote = applied([("forwarding", "ok"), ("firewall", "ok"), ("services", "ok")], -1)
    rep = run.reports["vps"]
    # the first segment (up to the guarded firewall) is one script; services is the next
    assert rep.error == ("vps.example: the script applying forwarding, firewall "
                         "was killed after step firewall: re-run (every step is idempotent)")
    # what it did apply is confirmed, not left to its watchdog to undo behind a re-run
    assert remote.probes == 1
    assert remote.sent[1] == changes.confirm_shell(
        [changes.guard_marker("firewall", run.guard_token)])
    assert [(s.step, s.status, s.notes) for s in rep.steps][2] == (
        "services", "failed", ["not run: an earlier step failed"])


def test_a_script_killed_between_steps_says_where() -> None:
    run, remote = applied([("forwarding", "ok")], -1)
    rep = run.reports["vps"]
    assert rep.error == ("vps.example: the script applying forwarding, firewall "
                         "was killed after step forwarding: re-run (every step is idempotent)")
    assert [(s.step, s.status) for s in rep.steps] == [
        ("forwarding", "changed"), ("firewall", "failed"), ("services", "failed")]
    assert rep.steps[1].notes == ["not run: the script stopped before it"]
    assert remote.probes == 0 and len(remote.sent) == 1  # nothing to confirm


def test_a_slow_step_after_a_guarded_one_runs_only_once_ssh_is_proven() -> None:
    """VM fault 1: the guard is proven, and its marker removed, before the next segment
    runs: never after unrelated slow steps."""
    run, remote = applied([("forwarding", "ok"), ("firewall", "ok")], 0)
    assert run.reports["vps"].error is None
    assert len(remote.sent) == 2 and remote.probes == 1
    marker = changes.guard_marker("firewall", run.guard_token)
    assert "r services ok" not in remote.sent[0] and "r firewall ok" in remote.sent[0]
    # the next script starts by confirming: then services
    second = remote.sent[1]
    assert second.index(changes.confirm_shell([marker])) < second.index("r services ok")


def test_a_failed_step_still_confirms_the_firewall_applied_before_it() -> None:
    run, remote = applied([("forwarding", "ok"), ("firewall", "failed")], 1)
    assert run.reports["vps"].error == ("vps.example: step firewall failed: exit status 1; "
                                        "the host puts back its previous state within 7s")
    assert remote.probes == 0 and len(remote.sent) == 1  # a failed guarded step: restored
    # a step after it fails: the firewall applied before it was proven and stays
    run, remote = applied([("forwarding", "ok"), ("firewall", "ok")], 0,
                          later=Result(f"\n{MARK} step services failed\n", "boom\n", 1))
    assert run.reports["vps"].error == "vps.example: step services failed: boom"
    marker = changes.guard_marker("firewall", run.guard_token)
    assert remote.probes == 1 and remote.sent[1].startswith("umask 077\n") \
        and f"\n{changes.confirm_shell([marker])}\n" in remote.sent[1]


def recorded(name: str) -> facts.HostFacts:
    return generate.facts(name)


@pytest.mark.parametrize("breakage", ["down", "no key", "no address"])
def test_a_wireguard_interface_left_half_up_is_restarted(breakage: str) -> None:
    """`wg-quick up` killed half-way (its run died) leaves wg0 behind, down or without its
    key or address: a sync or a route repair cannot fix that (every re-run failed with
    "Device for nexthop is not up"); down and up again does."""
    f = recorded("debian-vps-converged")

    def wireguard(facts_: facts.HostFacts) -> StepPlan:
        ctx = Ctx(generate.SITE, "vps", facts_, peer_public_key=generate.HOME_PUB)
        ctx.vps_public_ip, ctx.wan_interface = vps.discover(ctx, "inventory")
        return next(p for p in vps.configure(ctx) if p.step == "wireguard")

    assert wireguard(f).changes == []  # the control: a healthy wg0 is left alone
    g = copy.deepcopy(f)
    if breakage == "down":
        g.wg["link"]["flags"] = ["POINTOPOINT", "MULTICAST", "NOARP"]
        why = "it is down"
    elif breakage == "no key":
        g.wg["public_key"] = "(none)"
        why = "it has no private key"
    else:
        g.addrs = [a for a in g.addrs if a.get("ifname") != "wg0"]
        why = "it lacks its address 192.168.2.1"
    plan = wireguard(g)
    assert [c.summary for c in plan.changes] == [f"restart wg0 ({why})"]
    assert plan.changes[0].shell().startswith("wg-quick down wg0 || ip link del wg0 || true; ")


# --------------------------------------------------------------------------- hostile values
HOSTILE = ["x; touch pwned", "$(touch pwned)", "`touch pwned`", "'\"; touch pwned; echo '\"",
           "a|b&c>d<e(f){g}*?!\\ $HOME ${IFS} %s %n \t", "", "-", "--rm", "-v /:/host"]


def run_with_fake_podman(change: CommandChange, tmp: Path, fail: str = "",
                         error: str = "") -> tuple[subprocess.CompletedProcess[str],
                                                   list[list[str]]]:
    """The exact shell the engine sends for a service change (as_user's runuser + sh -c,
    then podman's argv), run here with stand-ins for runuser and for a podman that records
    its calls and, for the call `fail` (its argv joined), prints `error` and fails."""
    bin_ = tmp / "bin"
    bin_.mkdir(exist_ok=True)
    log = tmp / "calls"
    (bin_ / "podman").write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"if ' '.join(sys.argv[1:]) == {fail!r}:\n"
        f"    print({error!r}, file=sys.stderr); sys.exit(125)\n")
    (bin_ / "podman").chmod(0o755)
    res = subprocess.run(["sh", "-c", 'runuser() { shift 3; "$@"; }\n' + change.shell()],
                         cwd=tmp, capture_output=True, text=True, timeout=20,
                         env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"})
    calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return res, calls


def test_hostile_values_reach_podman_argv_literally(tmp_path: Path) -> None:
    """The exact shell the engine sends (as_user's runuser + sh -c, then podman's argv),
    run here with stand-ins for runuser and podman that record what podman received."""
    svc = Service("game", "docker.io/x/y:1", generate.SITE.services[0].ports, "gamer",
                  env=tuple((f"K{i}", v) for i, v in enumerate(HOSTILE)),
                  volumes=("/srv/a;b $(c):/data:ro",), command=("/bin/sh", *HOSTILE))
    site = dataclasses.replace(generate.SITE, services=(svc,))
    f = facts.HostFacts(pid1="catatonit", commands=frozenset({"podman", "slirp4netns"}),
                        users={"gamer": {"uid": "1000", "home": str(tmp_path),
                                         "runtime": "yes", "version": "4.3.1",
                                         "containers": []}})
    plan = home.configure(Ctx(site, "home", f, peer_public_key=generate.VPS_PUB,
                              vps_public_ip=generate.VPS_IP))
    change = next(c for p in plan if p.step == "service:game" for c in p.changes
                  if c.summary.startswith("create container"))
    res, calls = run_with_fake_podman(change, tmp_path)
    assert res.returncode == 0, res.stderr
    spec = podman_render.spec_hash(svc, site.tunnel,
                                   podman_render.network_option("slirp4netns", site.tunnel))
    assert calls[-1] == podman_render.run_args(svc, site.tunnel, "slirp4netns", spec)
    assert not list(tmp_path.rglob("pwned"))


@pytest.mark.parametrize("image", ["--volume=/:/host", "--privileged", "-v", "-", "a b",
                                   "x:", "x:-tag", "docker.io/x/y;id", "$(id)", ""])
def test_an_image_must_be_an_image_reference(image: str) -> None:
    """`image = "--volume=/:/host"` was read by podman as an option: the container ran with
    the host's / mounted (issue 16)."""
    with pytest.raises(ModelError) as err:
        Service("game", image, generate.SITE.services[0].ports, "gamer")
    assert str(err.value).startswith(f"image {image!r} of service 'game' is not an image "
                                     "reference")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("image", ["nginx", "localhost/tunnelops-echo:latest",
                                   "registry.example.com:5000/team/game_server-2:v1.2.3",
                                   "ghcr.io/x/y@sha256:" + "ab" * 32, "[::1]:5000/x:1"])
def test_real_image_references_are_accepted(image: str) -> None:
    assert Service("game", image, generate.SITE.services[0].ports, "gamer").image == image


def test_command_after_the_image_is_never_a_podman_option() -> None:
    svc = Service("game", "docker.io/x/y:1", generate.SITE.services[0].ports, "gamer",
                  command=("--privileged", "-v", "/:/host"))
    args = podman_render.run_args(svc, generate.SITE.tunnel, "pasta", "0" * 16)
    assert args[-5:] == ["--", "docker.io/x/y:1", "--privileged", "-v", "/:/host"]


def test_a_rootless_service_never_runs_as_root_or_a_system_account() -> None:
    with pytest.raises(ModelError, match="user 'root' of service 'game': a rootless service"):
        Service("game", "docker.io/x/y:1", generate.SITE.services[0].ports, "root")
    f = generate.facts("fedora-home-converged")
    f.users["gamer"]["uid"] = "2"  # e.g. user = "daemon"
    with pytest.raises(PlanError, match=r"user 'gamer' \(uid 2\) of service 'game' is a system "
                                        r"account: .* allow_system_user = true"):
        safety.check(Ctx(generate.SITE, "home", f))
    allowed = dataclasses.replace(generate.SITE.services[0], allow_system_user=True)
    safety.check(Ctx(dataclasses.replace(generate.SITE, services=(allowed,)), "home", f))


@pytest.mark.parametrize("field", ["env", "command", "volumes"])
def test_newlines_and_nul_in_service_values_are_refused_in_one_line(field: str) -> None:
    for bad in ("a\nb", "a\rb", "a\x00b"):
        value = {"env": (("K", bad),), "command": (bad,), "volumes": (f"/a{bad}:/b",)}[field]
        with pytest.raises(ModelError) as err:
            Service("game", "x/y:1", generate.SITE.services[0].ports, "u", **{field: value})
        assert one_line(str(err.value)), str(err.value)


# --------------------------------------------------------------------------- hosts (property)
_INV_DIR = Path(tempfile.mkdtemp(prefix="tunnelops-safety-"))  # empty: new sites only
host_text = st.one_of(
    st.text(st.sampled_from("abcxyz019.-_@:[]/" + METACHARS + " \t\n\r\x00é"), max_size=30),
    st.text(max_size=30),
    st.builds(lambda a, m, b: a + m + b, st.sampled_from(["myvps", "root@h", "h:22", ""]),
              st.sampled_from([*METACHARS, "\n", " ", "$(id)", "`id`", "-o"]),
              st.sampled_from(["", "x", "touch /tmp/pwned", "22"])),
)


@SETTINGS
@given(host_text, st.booleans())
def test_any_host_given_to_bootstrap_is_a_safe_ssh_destination_or_one_line(
        text: str, as_vps: bool) -> None:
    """What `inv bootstrap --vps X --home Y` does with X before any connection: either a
    destination with nothing a shell or ssh would read as syntax or an option, or a
    UsageError in one line (and no inventory file written)."""
    vps_host, home_host = (text, "home") if as_vps else ("vps", text)
    opts = commands.Options(inventory_dir=_INV_DIR, site="prop", console=Console(
        file=io.StringIO()))
    try:
        _, site = commands.resolve_site(opts, vps_host, home_host)
    except commands.UsageError as err:
        assert one_line(str(err)), str(err)
        return
    finally:
        assert list(_INV_DIR.iterdir()) == []
    ref = site.vps.host if as_vps else site.homes[0].host
    assert str(ref) == text
    assert not set(text) & set(METACHARS) and not any(c.isspace() for c in text)
    assert not text.startswith("-") and not ref.alias.startswith("-")


# --------------------------------------------------------------------------- inventory files
BASE_LINES = [
    "# a site",                               # 1
    "[site]",                                 # 2
    'name = "lab"',                           # 3
    "",                                       # 4
    "[vps]",                                  # 5
    'host = "root@203.0.113.7:22"',           # 6
    "",                                       # 7
    "[home]",                                 # 8
    'host = "home"',                          # 9
    "",                                       # 10
    "[[services]]",                           # 11
    'name = "game"',                          # 12
    'image = "docker.io/example/game:1"',     # 13
    'user = "gamer"',                         # 14
    'ports = ["12345/udp"]',                  # 15
    'env = { A = "1" }',                      # 16
    'volumes = ["/srv/game:/data:Z"]',        # 17
    'command = ["--port", "12345"]',          # 18
]
# key -> (line number, how to write a value there, how to read it back from the Site)
TARGETS = {
    "site.name": (3, 'name = {}', lambda s: s.name),
    "vps.host": (6, "host = {}", lambda s: str(s.vps.host)),
    "home.host": (9, "host = {}", lambda s: str(s.homes[0].host)),
    "service.name": (12, "name = {}", lambda s: s.services[0].name),
    "service.image": (13, "image = {}", lambda s: s.services[0].image),
    "service.user": (14, "user = {}", lambda s: s.services[0].user),
    "service.port": (15, "ports = [{}]", lambda s: str(s.services[0].ports[0])),
    "service.env": (16, "env = {{ A = {} }}", lambda s: dict(s.services[0].env)["A"]),
    "service.volume": (17, "volumes = [{}]", lambda s: s.services[0].volumes[0]),
    "service.command": (18, "command = [{}]", lambda s: s.services[0].command[0]),
}


def toml_string(value: str) -> str:
    """A TOML basic string for any text (JSON's escapes, minus what TOML lacks)."""
    out = json.dumps(value, ensure_ascii=False)
    return out.replace("\x7f", "\\u007f")


hostile_text = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=25),
    st.text(st.sampled_from("ab/:._-@" + METACHARS + " \t\n\r\x00"), max_size=25),
    st.sampled_from([*HOSTILE, "12345/udp;id", "$(id)/udp", "game;id", "gamer`id`", "a\nb",
                     "/srv/x;y:/data", "root@h;id", "-oProxyCommand=id", "12346/tcp"]),
)


@SETTINGS
@given(st.sampled_from(sorted(TARGETS)), hostile_text)
def test_inventory_with_hostile_values_loads_literally_or_names_the_line(
        target: str, value: str) -> None:
    line, template, read = TARGETS[target]
    lines = list(BASE_LINES)
    lines[line - 1] = template.format(toml_string(value))
    text = "\n".join(lines) + "\n"
    try:
        site = loads(text, "inventory/lab.toml", "lab")
    except InventoryError as err:
        message = str(err)
        assert one_line(message), message
        assert message.startswith(f"inventory/lab.toml:{line}: "), (target, value, message)
        return
    got = read(site)
    if target == "service.port":
        assert got == str(PortSpec.parse(value))
    else:
        assert got == value  # literally what the file says, nothing interpreted
    assert "\n" not in got and "\x00" not in got
    if target.endswith(".host"):
        assert not set(got) & set(METACHARS) and not got.startswith("-")
        HostRef.parse(got)
    if target in ("site.name", "service.name"):
        assert NAME_RE.fullmatch(got)


def test_the_base_of_the_inventory_property_loads() -> None:
    site = loads("\n".join(BASE_LINES) + "\n", "x", "lab")
    for target, (_, _, read) in TARGETS.items():
        assert read(site), target


def _swap_run(tmp_path: Path, fail_start: bool) -> tuple[subprocess.CompletedProcess[str],
                                                         list[list[str]]]:
    """The replace step of a changed service, run here with stand-ins for runuser and a podman
    that records its calls (and refuses to start the new container when asked)."""
    f = generate.facts("fedora-home-converged")
    f.pid1, f.commands = "catatonit", f.commands - {"systemctl"}  # the direct (lab) path
    site = generate.SITE.with_port_added("12347/udp", "game")
    plan = home.configure(Ctx(site, "home", f, peer_public_key=generate.VPS_PUB,
                              vps_public_ip=generate.VPS_IP))
    change = next(c for p in plan if p.step == "service:game" for c in p.changes
                  if c.summary.startswith("replace"))
    return run_with_fake_podman(
        change, tmp_path, "start tunnelops-game-new" if fail_start else "",
        "Error: rootlessport listen udp 0.0.0.0:12347: bind: address in use")


def test_the_old_container_serves_until_the_new_one_runs(tmp_path: Path) -> None:
    """add-port 30000-49999/tcp failed after the old container was already removed: the
    whole service down. Now: created beside it, then the old one stopped, the new started,
    and only then the old one removed and the new one renamed."""
    res, calls = _swap_run(tmp_path, fail_start=False)
    assert res.returncode == 0, res.stderr
    verbs = [c[0] if c[0] != "rm" else f"rm {c[-1]}" for c in calls]
    assert verbs == ["rm tunnelops-game-new", "create", "stop", "start", "rm tunnelops-game",
                     "rename"]
    assert calls[1][calls[1].index("--name") + 1] == "tunnelops-game-new"
    assert calls[-1] == ["rename", "tunnelops-game-new", "tunnelops-game"]


def test_a_new_container_that_does_not_start_leaves_the_old_one_serving(tmp_path: Path) -> None:
    res, calls = _swap_run(tmp_path, fail_start=True)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1] == (
        "tunnelops-game: the new container does not start (Error: rootlessport listen udp "
        "0.0.0.0:12347: bind: address in use); the old one serves again")
    assert calls[-1] == ["start", "tunnelops-game"]  # the old one, again
    assert ["rm", "-f", "tunnelops-game"] not in calls  # never removed


# every field of a service, drawn from the whole Unicode range and from shell / podman option
# syntax: refused in one line before any SSH, or run with nothing but the literal value
OPTION_SYNTAX = ["--privileged", "--volume=/:/host", "-v", "/:/host", "--", "-", "--rm",
                 "--network=host", "$(id)", "`id`", ";id", "|id", "&id", "\\", "'", '"',
                 "%h", "%%", "${IFS}", "*", "?", "~root", "\t", " "]
hostile = st.one_of(st.text(max_size=24), st.sampled_from(OPTION_SYNTAX),
                    st.lists(st.sampled_from(OPTION_SYNTAX), max_size=4).map("".join))


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.just("game"), hostile), image=st.one_of(
           st.just("docker.io/x/y:1"), hostile), user=st.one_of(st.just("gamer"), hostile),
       env=hostile, volume=hostile, command=st.lists(hostile, max_size=3))
def test_every_service_value_is_refused_or_reaches_podman_literally(
        tmp_path_factory: pytest.TempPathFactory, name: str, image: str, user: str, env: str,
        volume: str, command: list[str]) -> None:
    ports = generate.SITE.services[0].ports
    try:
        svc = Service(name, image, ports, user, env=(("K", env),),
                      volumes=(f"/srv/{volume}:/data",), command=tuple(command))
        site = dataclasses.replace(generate.SITE, services=(svc,))
    except ModelError as e:
        assert "\n" not in str(e) and str(e), e
        return
    tmp = tmp_path_factory.mktemp("hostile")
    f = facts.HostFacts(pid1="catatonit", commands=frozenset({"podman", "slirp4netns"}),
                        users={user: {"uid": "1000", "home": str(tmp), "runtime": "yes",
                                      "version": "4.3.1", "containers": []}})
    plan = home.configure(Ctx(site, "home", f, peer_public_key=generate.VPS_PUB,
                              vps_public_ip=generate.VPS_IP))
    change = next(c for p in plan if p.step == "service:game" or p.step == f"service:{name}"
                  for c in p.changes if c.summary.startswith("create container"))
    res, calls = run_with_fake_podman(change, tmp)
    assert res.returncode == 0, res.stderr
    spec = podman_render.spec_hash(svc, site.tunnel,
                                   podman_render.network_option("slirp4netns", site.tunnel))
    argv = podman_render.run_args(svc, site.tunnel, "slirp4netns", spec)
    assert calls[-1] == argv
    assert argv[argv.index("--") + 1:] == [image, *command]  # after `--`: never options
    assert f"K={env}" in argv and f"/srv/{volume}:/data" in argv


# ------------------------------------------------------------------ the guard's proof retried
def _late_ssh_server(delay: float) -> tuple[int, threading.Thread]:
    """A port that refuses connections for DELAY seconds, then answers with an SSH banner
    (what the VPS's rate limiter looks like to a new connection: dropped, then admitted)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        time.sleep(delay)
        sock.listen(1)
        conn, _ = sock.accept()
        with conn, sock:
            conn.sendall(b"SSH-2.0-late\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock.getsockname()[1], thread


def test_the_proof_tries_again_within_its_time_and_fails_after_it() -> None:
    port, thread = _late_ssh_server(1.2)
    r = Remote(f"127.0.0.1:{port}")
    t0 = time.monotonic()
    r.probe_new_connection(within=5)  # refused twice or thrice, then the banner
    assert 1.2 <= time.monotonic() - t0 < 5
    thread.join(2)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: every attempt is refused
    with closed, pytest.raises(RemoteError, match=r"a new SSH connection to 127\.0\.0\.1:\d+ "
                                                  r"fails \(.*refused"):
        t0 = time.monotonic()
        Remote(f"127.0.0.1:{closed.getsockname()[1]}").probe_new_connection(within=1.5)
    assert 1.0 <= time.monotonic() - t0 < 3  # tried again until its time was up, not longer
    assert len(r.trips) == 1  # one trip of the breakdown, however many attempts
