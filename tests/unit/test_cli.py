"""The command line, without hosts: the tunnelops program (parsing, help, short flags, "did you
mean", --version), the inventory discovery order, what messages call the command, and the
pieces of logs and dry runs that need no SSH. The installed command against a lab is
tests/lab/test_cli.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import paramiko
import pytest

from tunnelops import cli, engine, logs, prog
from tunnelops.flags import CORE_SHORT, SHORT
from tunnelops.inventory.read import loads
from tunnelops.locations import EXAMPLE_NAME, config_dir, find_inventory
from tunnelops.program import Tunnelops
from tunnelops.remote import Remote, RemoteError
from tunnelops.sshlink import HostKeyPolicy

PROJECT = Path(__file__).resolve().parents[2]
SITE = """[site]
name = "{name}"
[vps]
host = "vps.example"
[home]
host = "home.example"
[tunnel]
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No real inventory, home or program name leaks in or out."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("TUNNELOPS_INVENTORY", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield
    prog.use("inv")


def tunnelops(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`tunnelops ARGV` in this process: (exit status, stdout, stderr)."""
    try:
        Tunnelops().run(["tunnelops", *argv])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def site_file(directory: Path, name: str = "home") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(SITE.format(name=name))
    return path


# ------------------------------------------------------------------ the inventory's place
def test_inventory_order_flag_then_env_then_local_then_user_config(tmp_path: Path) -> None:
    cwd, home = tmp_path / "cwd", tmp_path / "h"
    site_file(cwd / "inventory")
    site_file(home / ".config" / "tunnelops")
    env = {"TUNNELOPS_INVENTORY": str(tmp_path / "env")}
    assert find_inventory("flagdir", env=env, cwd=cwd, home=home).path == cwd / "flagdir"
    found = find_inventory(None, env=env, cwd=cwd, home=home)
    assert (found.path, found.source) == (tmp_path / "env", "$TUNNELOPS_INVENTORY")
    assert find_inventory(None, env={}, cwd=cwd, home=home).path == cwd / "inventory"
    (cwd / "inventory" / "home.toml").unlink()
    assert find_inventory(None, env={}, cwd=cwd, home=home).path == \
        home / ".config" / "tunnelops"


def test_inventory_example_is_not_a_site_and_new_sites_go_to_an_existing_local_dir(
        tmp_path: Path) -> None:
    cwd, home = tmp_path / "cwd", tmp_path / "h"
    (cwd / "inventory").mkdir(parents=True)
    (cwd / "inventory" / EXAMPLE_NAME).write_text("# example\n")
    site_file(home / ".config" / "tunnelops")
    assert find_inventory(None, env={}, cwd=cwd, home=home).path == \
        home / ".config" / "tunnelops"  # the example does not make ./inventory a site dir
    (home / ".config" / "tunnelops" / "home.toml").unlink()
    found = find_inventory(None, env={}, cwd=cwd, home=home)
    assert found.path == cwd / "inventory" and "no site yet" in found.source
    (cwd / "inventory" / EXAMPLE_NAME).unlink()
    (cwd / "inventory").rmdir()
    assert find_inventory(None, env={}, cwd=cwd, home=home).path == \
        home / ".config" / "tunnelops"


def test_inventory_xdg_config_home_absolute_only_and_project_for_inv(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert config_dir({"XDG_CONFIG_HOME": str(tmp_path / "x")}, home) == tmp_path / "x/tunnelops"
    assert config_dir({"XDG_CONFIG_HOME": "relative"}, home) == home / ".config/tunnelops"
    checkout, cwd = tmp_path / "checkout", tmp_path / "checkout" / "tunnelops"
    site_file(checkout / "inventory")
    assert find_inventory(None, env={}, cwd=cwd, home=home, project=checkout).path == \
        checkout / "inventory"
    assert find_inventory(None, env={"TUNNELOPS_INVENTORY": "rel"}, cwd=cwd, home=home,
                          project=checkout).path == cwd / "rel"  # relative to where you are


def test_inventory_flag_reaches_the_task_before_or_after_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    for argv in (("--inventory", str(empty), "verify"), ("verify", "-i", str(empty))):
        code, _, err = tunnelops(capsys, *argv)
        assert code == 2
        assert err.strip() == (f"error: no site in {empty} (--inventory): run `tunnelops "
                               "bootstrap --vps HOST --home HOST` first, or point --inventory "
                               "(or $TUNNELOPS_INVENTORY) at your inventory")


def test_inventory_env_and_user_config_reach_the_task(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # two sites where the env points: verify must ask which, naming that directory
    env_dir = tmp_path / "envinv"
    site_file(env_dir, "a"), site_file(env_dir, "b")
    monkeypatch.setenv("TUNNELOPS_INVENTORY", str(env_dir))
    code, _, err = tunnelops(capsys, "verify")
    assert code == 2 and f"several sites in {env_dir} (a, b)" in err
    monkeypatch.delenv("TUNNELOPS_INVENTORY")
    xdg = tmp_path / "xdg"
    site_file(xdg / "tunnelops", "c"), site_file(xdg / "tunnelops", "d")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    code, _, err = tunnelops(capsys, "logs", "game")
    assert code == 2 and f"several sites in {xdg / 'tunnelops'} (c, d)" in err


# ------------------------------------------------------------------ flags and help
def _contexts():
    return cli.namespace().to_contexts()


def test_short_flags_mean_one_thing_everywhere_and_never_a_core_flag() -> None:
    core = {n for a in Tunnelops().core_args() for n in a.names if len(n) == 1}
    assert core == CORE_SHORT
    meaning: dict[str, str] = {}
    for ctx in _contexts():
        for arg in ctx.args.values():
            for letter in (n for n in arg.names if len(n) == 1):
                assert letter not in core, (ctx.name, arg.name)
                assert meaning.setdefault(letter, arg.name) == arg.name, (ctx.name, letter)
    assert {SHORT[k] for k in meaning.values()} == set(meaning)


@pytest.mark.parametrize("argv", [("bootstrap", "-h"), ("bootstrap", "--help"),
                                  ("--help", "bootstrap"), ("add-port", "-h"),
                                  ("logs", "--help"), ("logs", "game", "-h"),
                                  ("lab.ssh", "-h")])
def test_help_flag_is_help_everywhere(capsys: pytest.CaptureFixture[str],
                                      argv: tuple[str, ...]) -> None:
    code, out, err = tunnelops(capsys, *argv)
    task = next(a for a in argv if not a.startswith("-") and a != "game")
    assert (code, err) == (0, "")
    assert out.startswith(f"Usage: tunnelops [--core-opts] {task} [--options]")
    assert "Options:" in out


def test_help_lists_every_command_and_usage_shows_positionals(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = tunnelops(capsys, "--help")
    assert code == 0
    names = cli.namespace().task_names
    assert {"bootstrap", "add-port", "remove-port", "verify", "teardown", "demo", "logs",
            "lab.up", "lab.down", "lab.status", "lab.ssh"} <= set(names)
    for name in names:
        assert f"  {name} " in out, name
    assert "--inventory" in out and "--dry " not in out and "--echo" not in out
    _, out, _ = tunnelops(capsys, "logs", "-h")
    assert out.splitlines()[0] == "Usage: tunnelops [--core-opts] logs [--options] SERVICE"


def test_version_is_tunnelops_own(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--version", "-V"):
        code, out, _ = tunnelops(capsys, flag)
        assert (code, out) == (0, f"tunnelops {version('tunnelops')}\n")


@pytest.mark.parametrize(("argv", "message"), [
    (("bootstrp",), "tunnelops: no command 'bootstrp': did you mean 'bootstrap'?"),
    (("verfy",), "tunnelops: no command 'verfy': did you mean 'verify'?"),
    (("up",), "tunnelops: no command 'up': did you mean 'lab.up'?"),
    (("lab.stauts",), "tunnelops: no command 'lab.stauts': did you mean 'lab.status'?"),
    (("frobnicate",), "tunnelops: no command 'frobnicate': `tunnelops --help` lists them"),
    (("--help", "bootstrp"), "tunnelops: no command 'bootstrp': did you mean 'bootstrap'?"),
    (("bootstrap", "--vsp", "a"), "tunnelops bootstrap: no flag '--vsp': did you mean --vps?"),
    (("add-port", "-x"), "tunnelops add-port: no flag '-x': see `tunnelops add-port --help`"),
    (("add-port",), "tunnelops add-port: PORT is missing: see `tunnelops add-port --help`"),
    (("bootstrap", "--vps"), "tunnelops bootstrap: --vps needs a value"),
])
def test_mistakes_get_one_line_saying_what_to_type(
        capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str) -> None:
    code, out, err = tunnelops(capsys, *argv)
    assert (code, out, err) == (2, "", message + "\n")


def test_bootstrap_without_home_says_home_is_missing(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = tunnelops(capsys, "bootstrap", "--vps", "a")
    assert code == 2
    assert err.startswith("error: --home is missing: ")
    assert err.rstrip().endswith("`tunnelops bootstrap --vps a --home HOST`")
    code, _, err = tunnelops(capsys, "bootstrap", "--home", "my home")
    assert err.startswith("error: --vps is missing: ")
    assert err.rstrip().endswith("`tunnelops bootstrap --vps HOST --home 'my home'`")


def test_inv_names_inv_and_has_the_same_tasks(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("checkout_tasks", PROJECT / "tasks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.ns.task_names == cli.namespace().task_names
    inv = Path(sys.executable).parent / "inv"
    env = {**os.environ, "TUNNELOPS_INVENTORY": str(tmp_path / "none")}
    for argv, expect in (
            (("bootstrap", "--vps", "a"), "`inv bootstrap --vps a --home HOST`"),
            (("add-port", "-h"), "Usage: inv [--core-opts] add-port [--options] PORT"),
            (("bootstrap", "-h"), "--home=STRING"),  # -h was --home's short flag
            (("add-port", "-x"), "error: '-x' is not a PORT: see `inv --help add-port`")):
        res = subprocess.run([str(inv), *argv], cwd=PROJECT, env=env, capture_output=True,
                             text=True, timeout=60)
        assert expect in res.stdout + res.stderr, (argv, res.stdout, res.stderr)


def test_messages_name_the_users_command() -> None:
    hint = "re-run `inv bootstrap` (it recreates the container)"
    assert prog.named(hint) == hint
    prog.use("tunnelops")
    assert prog.named(hint) == "re-run `tunnelops bootstrap` (it recreates the container)"
    assert prog.cmd("verify") == "`tunnelops verify`"


# ------------------------------------------------------------------ logs, dry runs
def test_logs_lines_and_script() -> None:
    assert logs.parse_lines("50") == 50 and logs.parse_lines("all") is None
    assert logs.parse_lines(0) == 0
    for bad in ("-1", "ten", "", "1e3"):
        with pytest.raises(ValueError, match=r"use e\.g\. 100, or all"):
            logs.parse_lines(bad)
    site = loads(SITE.format(name="s") + '[[services]]\nname = "game"\n'
                 'image = "docker.io/x/y:1"\nuser = "gamer"\nports = ["1234/udp"]\n')
    svc = site.service("game")
    once = logs.script(svc, follow=False, lines=20)
    assert "podman logs --tail 20 tunnelops-game" in once and "--follow" not in once
    follow = logs.script(svc, follow=True, lines=None)
    assert "podman logs --follow tunnelops-game" in follow and "--tail" not in follow
    # sh -s reads the script from the stdin the watcher waits on: it must be one line
    assert follow.count("\n") == 1 and follow.endswith("\n")


def test_dry_run_trusts_a_new_host_key_in_memory_only(tmp_path: Path) -> None:
    key = paramiko.RSAKey.generate(1024)
    known = tmp_path / "known_hosts"
    client = paramiko.SSHClient()
    policy = HostKeyPolicy("vps", known, trust_new=True, record=False)
    policy.missing_host_key(client, "vps.example", key)
    assert not known.exists()
    assert client.get_host_keys().lookup("vps.example") is not None
    assert policy.accepted == [f"vps.example ssh-rsa {key.fingerprint}"]
    HostKeyPolicy("vps", known, trust_new=True).missing_host_key(client, "vps.example", key)
    assert known.read_text() == f"vps.example ssh-rsa {key.get_base64()}\n"
    with pytest.raises(RemoteError, match="--trust-new-host"):
        HostKeyPolicy("vps", known, trust_new=False, record=False).missing_host_key(
            client, "other.example", key)


def test_dry_run_remotes_do_not_record_host_keys(tmp_path: Path) -> None:
    site = loads(SITE.format(name="s"))
    for dry_run in (True, False):
        run = engine.Run(site, dry_run=dry_run, trust_new=True)
        for remote in run.remotes.values():
            assert isinstance(remote, Remote)
            remote._prepare(remote.conn)
            assert remote.conn.client._policy.record is (not dry_run)
