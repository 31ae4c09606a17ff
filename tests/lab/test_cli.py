"""The installed `tunnelops` command, as a new user gets it: a fresh virtualenv outside the
checkout, `pip install` of the project (not editable), run from an empty directory with an
empty home. Then against a lab the installed command brings up itself, with --inventory:
a dry run writes nothing on the laptop (known_hosts included), bootstrap, logs (also
--follow until Ctrl-C), verify, teardown; lab.up of an instance that another live checkout
owns is refused.

Own instances "labc" (index 14, through the installed command) and "labo" (index 15, owners)
in this checkout's slot. The VPS rate-limits new SSH connections (3 per 20 s): before each
run after bootstrap, the limiter's memory of our address is cleared (as waiting would)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import slot
from tests.lab.env import forget_ssh_rate
from tests.lab.labb_site import wait_until
from tests.lab.test_sudo import PASSWORD as SUDO_PASSWORD
from tests.lab.test_sudo import pwops  # noqa: F401 - a fixture: a user whose sudo asks
from tunnelops import cli
from tunnelops.lab import Lab, LabError, Topology
from tunnelops.lab.topology import PODMAN_USER
from tunnelops.remote import Remote, Transcript

pytestmark = pytest.mark.lab

PROJECT = Path(__file__).resolve().parents[2]
CLI_LAB, OWNER_LAB = slot("labc", 14), slot("labo", 15)
VERSION = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["version"]


@dataclass
class Installed:
    venv: Path
    cwd: Path  # an empty directory
    env: dict[str, str]

    def run(self, *argv: str, timeout: float = 180, **env: str
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "tunnelops"), *argv], cwd=self.cwd,
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def popen(self, *argv: str, **env: str) -> subprocess.Popen[bytes]:
        # Ctrl-C as a terminal sends it: SIGINT with its default disposition
        return subprocess.Popen([str(self.venv / "bin" / "tunnelops"), *argv], cwd=self.cwd,
                                env={**self.env, **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    venv, cwd, home = root / "venv", root / "empty", root / "home"
    cwd.mkdir()
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # pip builds in the source tree; setuptools' scratch build/ keeps files deleted since
    shutil.rmtree(PROJECT / "build", ignore_errors=True)
    res = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(PROJECT)],
                         capture_output=True, text=True, timeout=600, cwd=cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import tunnelops; print(tunnelops.__file__)"], cwd=cwd,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), where  # the installed copy, not the checkout
    env = {"PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
           "LANG": "C.UTF-8", "COLUMNS": "200"}
    return Installed(venv, cwd, env)


def test_installed_version_help_and_mistakes(installed: Installed) -> None:
    res = installed.run("--version")
    assert (res.returncode, res.stdout) == (0, f"tunnelops {VERSION}\n"), res.stderr
    res = installed.run("--help")
    assert res.returncode == 0, res.stderr
    for name in cli.namespace().task_names:
        assert f"  {name} " in res.stdout, name
    res = installed.run("bootstrap", "-h")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Usage: tunnelops [--core-opts] bootstrap [--options]")
    assert "--home=STRING" in res.stdout and "--vps=STRING" in res.stdout
    res = installed.run("bootstrp")
    assert (res.returncode, res.stderr) == (
        2, "tunnelops: no command 'bootstrp': did you mean 'bootstrap'?\n")
    res = installed.run("verify")  # nothing anywhere: the empty home's config dir is named
    assert res.returncode == 2
    assert f"no site in {installed.env['HOME']}/.config/tunnelops" in res.stderr


# ------------------------------------------------------------------ against a lab
def log_line(lab: Lab, text: str) -> None:
    """A line on the game container's stdout, i.e. in its logs."""
    lab.exec("home", ["podman", "exec", "tunnelops-game", "sh", "-c",
                      f"echo {text} > /proc/1/fd/1"], user=PODMAN_USER)


def podman_logs_at_home(lab: Lab) -> list[str]:
    out = lab.exec("home", ["ps", "-eo", "pid,args"]).stdout.decode()
    return [line for line in out.splitlines() if "podman logs" in line]


def tree_hash(path: Path) -> dict[str, str]:
    """Every file under path (or path itself): its content hash."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


class Lines:
    """A child's stdout read line by line on a thread (to wait for a line with a timeout)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._t.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    def has(self, text: str) -> bool:
        return text in self.lines


@pytest.fixture
def cli_lab(installed: Installed, lab_factory: Callable[[str, int], Lab],
            tmp_path: Path) -> Iterator[tuple[Lab, Path, dict[str, str]]]:
    """labc, brought up by the installed command into its own inventory directory; its
    state where lab_factory's Lab looks, so the factory takes it down whatever happens."""
    lab = lab_factory(*CLI_LAB)
    inv = tmp_path / "inventory"
    env = {"TUNNELOPS_LAB_DIR": str(lab.root)}
    res = installed.run("-i", str(inv), "lab.up", "--name", lab.topo.name,
                        "--index", str(lab.topo.index), **env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (inv / f"{lab.topo.name}.toml").exists() and lab.is_up()
    assert "next: `tunnelops bootstrap --vps" in res.stdout
    yield lab, inv, env


def test_installed_command_against_the_lab(installed: Installed, tmp_path: Path,
                                           cli_lab: tuple[Lab, Path, dict[str, str]]) -> None:
    lab, inv, env = cli_lab
    name, vps, home = lab.topo.name, lab.topo.alias("vps"), lab.topo.alias("home")
    i = ("-i", str(inv))

    # a dry run that trusts new host keys: no file written, known_hosts included
    dry = tmp_path / "dry"
    dry.mkdir()
    kh = tmp_path / "fresh_known_hosts"
    text = (inv / f"{name}.toml").read_text()
    (dry / f"{name}.toml").write_text(text.replace(f'known_hosts = "{lab.known_hosts}"',
                                                   f'known_hosts = "{kh}"'))
    # the laptop's side: inventories, the lab's client files, the user's home (~/.ssh...)
    watched = (inv, dry, lab.known_hosts, lab.ssh_config, Path(installed.env["HOME"]))
    laptop = {d: tree_hash(d) for d in watched}
    res = installed.run("-i", str(dry), "bootstrap", "--dry-run")
    assert res.returncode == 1 and "unknown host key" in res.stdout, res.stdout
    res = installed.run("-i", str(dry), "bootstrap", "-n", "-t")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "would change" in res.stdout
    for host in (lab.topo.address("vps"), lab.topo.address("home")):
        assert f"dry run: new host key {host} ssh-ed25519 SHA256:" in res.stdout
    assert f"trusted for this run only, not written to {kh}" in res.stdout
    assert not kh.exists()
    assert {d: tree_hash(d) for d in watched} == laptop

    res = installed.run(*i, "bootstrap", "--vps", vps, "--home", home)
    assert res.returncode == 0, res.stdout + res.stderr

    # logs: the last lines, as the service's user, one SSH connection to home only
    log_line(lab, "tunnelops-cli-test-1")
    res = installed.run(*i, "logs", "game", "--lines", "5")
    assert res.returncode == 0, res.stderr
    assert "tunnelops-cli-test-1" in res.stdout.splitlines()
    res = installed.run(*i, "logs", "nosuch")
    assert (res.returncode, res.stderr) == (2, "error: unknown service 'nosuch': use one of "
                                               "game\n")

    # logs --follow: new lines as they come, until Ctrl-C, which leaves nothing at home
    proc = installed.popen(*i, "logs", "game", "--follow", "--lines", "1")
    try:
        lines = Lines(proc)
        wait_until("the last line", lambda: lines.has("tunnelops-cli-test-1"), 20)
        log_line(lab, "tunnelops-cli-test-2")
        wait_until("a new line while following", lambda: lines.has("tunnelops-cli-test-2"), 10)
        assert podman_logs_at_home(lab)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 3
        assert proc.stderr is not None and proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by its PID
    wait_until("podman logs to end at home", lambda: not podman_logs_at_home(lab), 5)

    forget_ssh_rate(lab)
    res = installed.run(*i, "verify")
    assert res.returncode == 0, res.stdout + res.stderr
    assert " 0 failed" in res.stdout

    forget_ssh_rate(lab)
    res = installed.run(*i, "teardown")
    assert res.returncode == 0, res.stdout + res.stderr
    res = installed.run(*i, "logs", "game")
    assert res.returncode == 1
    assert res.stderr == (f"error: {home}: service game has no container (tunnelops-game, "
                          "user gamer) yet: run `tunnelops bootstrap`\n")

    # another checkout (another state directory) may not take the running lab over
    other = tmp_path / "other-checkout"
    res = installed.run(*i, "lab.up", "--name", name, "--index", str(lab.topo.index),
                        TUNNELOPS_LAB_DIR=str(other))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1
    assert f"lab '{name}' belongs to" in res.stderr and f"(state {lab.state}," in res.stderr
    assert lab.is_up() and not other.exists()

    res = installed.run(*i, "lab.down", "--name", name, "--index", str(lab.topo.index), **env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not lab.leftovers() and not (inv / f"{name}.toml").exists()


def test_lab_up_refuses_another_live_checkouts_instance(
        lab_factory: Callable[[str, int], Lab], tmp_path: Path) -> None:
    mine = lab_factory(*OWNER_LAB)
    theirs = Lab(mine.topo, root=tmp_path / "their-checkout" / ".lab",
                 inventory_dir=tmp_path / "their-inventory")
    try:
        mine.up()
        record = mine.owner()
        assert record is not None and record.state == mine.state and record.pid == os.getpid()
        for action in (theirs.up, theirs.down):
            with pytest.raises(LabError) as err:
                action()
            message = str(err.value)
            assert "\n" not in message
            assert f"lab '{mine.topo.name}' belongs to {PROJECT} (state {mine.state}," in message
            assert "is running" in message
        assert mine.is_up() and not theirs.state.exists()
        # nor may another name take its index (its VPS address)
        with pytest.raises(LabError, match=f"lab index {mine.topo.index} .* is used by another"):
            Lab(Topology(slot("labx", 0)[0], mine.topo.index), root=tmp_path / "x").up()
        assert mine.is_up()

        # a crash of mine: my own dead leftovers are cleaned and the lab comes up again
        kill_all(mine)
        assert not mine.is_up() and mine.leftovers()
        mine.up()
        assert mine.is_up()

        # another checkout's dead instance may be taken over; then it is theirs
        kill_all(mine)
        theirs.up()
        assert theirs.is_up() and theirs.owner().state == theirs.state
        with pytest.raises(LabError, match="belongs to"):
            mine.up()
        theirs.down()
        mine.down()  # nothing of it runs any more: only its own files go
        assert not mine.leftovers() and not mine.registry_file.exists()
    finally:
        with contextlib.suppress(LabError):
            theirs.down()  # lab_factory takes mine down


def kill_all(lab: Lab) -> None:
    """SIGKILL every process of a lab instance this test brought up (by PID)."""
    for pid in lab.running_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until("the lab's processes to die", lambda: not lab.running_pids(), 10)


def test_stream_through_sudo_with_a_password(lab: Lab, pwops: str) -> None:  # noqa: F811
    """logs streams through the same sudo prompt handling as every command: the password is
    asked once, given to sudo's prompt only, and never in the output or the transcript."""
    t = Transcript()
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return SUDO_PASSWORD

    r = Remote(pwops, ssh_config=str(lab.ssh_config), known_hosts=str(lab.known_hosts),
               transcript=t, ask_password=ask)
    out, err = bytearray(), bytearray()
    try:
        status = r.stream("id -u; echo to-stderr >&2; exit 3", out.extend, err.extend)
        again = r.stream("id -un", out.extend, err.extend)
    finally:
        r.close()
    assert (status, again) == (3, 0)
    assert (bytes(out), bytes(err)) == (b"0\nroot\n", b"to-stderr\n")
    assert len(asked) == 1 and SUDO_PASSWORD not in t.text()
