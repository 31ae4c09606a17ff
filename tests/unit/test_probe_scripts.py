"""The probes as shell, run here by dash, bash and BusyBox ash: the batch script (parallel
jobs, sections in order, a cut output known as such, its cleanup), the facts batch on this
machine, and the redaction of private keys on the host."""

from __future__ import annotations

import base64
import os
import pwd
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.facts import generate
from tests.unit.shells import SECRET
from tunnelops import facts, probes
from tunnelops.model.tunnel import PRIVATE_KEY_PLACEHOLDER, Tunnel
from tunnelops.probes import FOREIGN_KEY, MARK, Batch, Probe
from tunnelops.probes.files import redacting_cat
from tunnelops.render.wireguard import vps_setconf

ME = pwd.getpwuid(os.getuid()).pw_name
PEER = generate.HOME_PUB


def run(shell: list[str], script: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    # the script travels on stdin, as on a host (`sh -s`): no section may read it
    return subprocess.run([*shell, "-s"], input=script, capture_output=True, text=True,
                          timeout=timeout, check=False)


# --------------------------------------------------------------------------- the batch
@dataclass(frozen=True)
class Sleepy(Probe[str]):
    """A slow probe that sleeps, then says when it ended (and tries to read stdin)."""

    name: str
    seconds: float = 0.0
    kind = "sleepy"
    slow = True

    def shell(self) -> str:
        # its variables are its own: n and T mean something to the batch script
        return (f"sleep {self.seconds}; read -r x && echo \"stole $x\"; "
                f": > \"$T/ended.{self.name}\"; n=99; T=/; echo {self.name}")

    def parse(self, text: str) -> str:
        return text.split()[0] if text else ""


@dataclass(frozen=True)
class Fast(Probe[str]):
    name: str
    after = ("sleepy",)
    kind = "fast"

    def shell(self) -> str:
        return f"echo {self.name} $(ls \"$T\" | grep -c '^ended')"

    def parse(self, text: str) -> str:
        return text.split()[0] if text else ""


def test_batch_runs_slow_probes_in_parallel_and_prints_in_order(shell: list[str]) -> None:
    batch = Batch([Sleepy("a", 1), Sleepy("b", 1), Sleepy("c", 1)])
    t0 = time.monotonic()
    res = run(shell, batch.script())
    took = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    r = batch.parse(res.stdout)
    assert r.complete and [r[p] for p in batch] == ["a", "b", "c"]
    assert took < 2.5, took  # three 1 s probes at once, not one after the other
    assert "stole" not in res.stdout  # stdin (the script itself) is nobody's to read
    keys = [line for line in res.stdout.splitlines() if line.startswith(MARK)]
    assert keys == [f"{MARK} sleepy a 1", f"{MARK} sleepy b 1", f"{MARK} sleepy c 1",
                    f"{MARK} end"]


def test_a_probe_after_another_runs_in_its_job_behind_it(shell: list[str]) -> None:
    batch = Batch([Fast("x"), Sleepy("s", 0.3)])
    assert [[p.key for p in job] for job in batch.jobs] == [["sleepy s 0.3", "fast x"]]
    res = run(shell, batch.script())
    assert f"{MARK} fast x\nx 1\n" in res.stdout  # it started once the sleepy one ended


def test_a_cut_output_is_known_as_such(shell: list[str]) -> None:
    batch = Batch([Sleepy("a"), Fast("b")])
    out = run(shell, batch.script()).stdout
    assert batch.parse(out).complete
    assert not batch.parse(out.split(f"{MARK} end")[0]).complete
    assert not batch.parse(out[: out.index(f"{MARK} fast")]).complete


def test_the_batch_cleans_up_and_runs_each_probes_setup_first(shell: list[str],
                                                              tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Marked(Probe[str]):
        path: str
        kind = "marked"

        def setup(self) -> str:
            return f"echo set > {self.path}"

        def cleanup(self) -> str:
            return f"echo cleaned >> {self.path}"

        def shell(self) -> str:
            return f"cat {self.path}; ls -d \"$T\""

        def parse(self, text: str) -> str:
            return text

    marked = Marked(str(tmp_path / "m"))
    res = run(shell, Batch([marked]).script(), timeout=10)
    seen, tmpdir = Batch([marked]).parse(res.stdout)[marked].splitlines()
    assert seen == "set" and (tmp_path / "m").read_text() == "set\ncleaned\n"
    assert not Path(tmpdir).exists()


def test_equal_probes_are_read_once_and_different_ones_may_not_share_a_key() -> None:
    assert len(Batch([probes.WgDump("wg0"), probes.WgDump("wg0")]).probes) == 1
    with pytest.raises(ValueError):
        Batch([probes.File("/x"), probes.File("/x", key_file="/k")])


# --------------------------------------------------------------------------- the facts batch
def test_facts_batch_runs_here(shell: list[str], sandbox: Path) -> None:
    """The real facts batch on this machine, its managed files in the sandbox: one run,
    read back; the private key never appears in what the host prints."""
    wgdir = sandbox / "etc" / "wireguard"
    (wgdir / "wg0.pub").write_text(PEER + "\n")
    (wgdir / "wg0.conf").write_text(vps_setconf(Tunnel(), PEER).replace(
        PRIVATE_KEY_PLACEHOLDER, SECRET))
    (wgdir / "wg0.conf").chmod(0o600)
    plain = sandbox / "etc" / "plain.conf"
    plain.write_text("a = 1\n\n  indented \\ back\\slash\nno newline")
    fp = facts.probes(interface="tunnelopstest0", route_table=201,
                      key_path=str(wgdir / "wg0.key"),
                      files=[str(wgdir / "wg0.conf"), str(plain), str(sandbox / "nope")],
                      secret_files=[str(wgdir / "wg0.conf")])
    batch = fp.batch()
    res = run(shell, batch.script(), timeout=60)
    assert SECRET not in res.stdout
    f = facts.read(fp, batch.parse(res.stdout))
    assert f.uid == os.getuid()
    assert f.os_id and f.pid1 and f.now > 0
    assert f.commands <= {*probes.COMMANDS, probes.IP_JSON}
    assert f.key_exists and f.public_key == PEER
    assert sorted(f.files) == sorted([str(wgdir / "wg0.conf"), str(plain)])
    wg = f.files[str(wgdir / "wg0.conf")]
    assert (wg.mode, wg.owner, wg.content) == ("600", ME, vps_setconf(Tunnel(), PEER))
    assert f.files[str(plain)].content == plain.read_text()
    assert f.files[str(plain)].mode == "644"
    assert f.wg == {}  # no such interface
    assert any(a.get("ifname") == "lo" for a in f.addrs)


def test_podmans_version_is_read_before_the_service_user_exists(shell: list[str]) -> None:
    """The version picks the network (pasta on Podman 5) and Quadlet: a first run that
    creates the user must already plan what the second run will find."""
    up = facts.probes(interface="wg0", route_table=201, key_path="/nonexistent/wg0.key",
                      files=[], users=["tunnelops-no-such-user"]).users[0]
    fake = "podman() { echo 'podman version 5.2.3'; }\n"
    out = {}
    for p in (up.account, up.podman, up.containers):
        res = run(shell, fake + p.shell() + "\n", timeout=10)
        out[p.key] = res.stdout
    r = probes.Readings(out)
    user = facts.user_facts(up, r)
    assert user.pop("nofile").isdigit()  # this shell's hard limit
    assert user == {"version": "5.2.3", "containers": [], "images": [], "created": {}}


# --------------------------------------------------------------------------- redaction
def redacting(shell: list[str], sandbox: Path, text: str) -> str:
    conf = sandbox / "etc" / "wireguard" / "wg0.conf"
    conf.write_text(text)
    res = subprocess.run([*shell, "-c", redacting_cat(
        str(conf), str(sandbox / "etc" / "wireguard" / "wg0.key"))],
        capture_output=True, text=True, timeout=10, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_redacting_cat_replaces_the_hosts_own_key(shell: list[str], sandbox: Path) -> None:
    conf = vps_setconf(Tunnel(), PEER).replace(PRIVATE_KEY_PLACEHOLDER, SECRET)
    out = redacting(shell, sandbox, conf)
    assert out == vps_setconf(Tunnel(), PEER)
    assert SECRET not in out
    # the same without spaces around '=', and a last line without its newline
    out = redacting(shell, sandbox, f"[Interface]\nPrivateKey={SECRET}\nListenPort = 1")
    assert out == f"[Interface]\nPrivateKey = {PRIVATE_KEY_PLACEHOLDER}\nListenPort = 1\n"


def test_redacting_cat_marks_a_foreign_key(shell: list[str], sandbox: Path) -> None:
    other = base64.b64encode(bytes(range(2, 34))).decode()
    out = redacting(shell, sandbox, f"[Interface]\nPrivateKey = {other}\n  # {SECRET}?\n")
    # the host's own key is replaced wherever it appears, a comment included
    assert out == (f"[Interface]\nPrivateKey = {FOREIGN_KEY}\n"
                   f"  # {PRIVATE_KEY_PLACEHOLDER}?\n")
    assert other not in out and SECRET not in out
    # no key file at all: whatever key the file has is not the host's
    (sandbox / "etc" / "wireguard" / "wg0.key").unlink()
    out = redacting(shell, sandbox, f"PrivateKey = {SECRET}\n")
    assert out == f"PrivateKey = {FOREIGN_KEY}\n"


@pytest.mark.parametrize("line", ["  PrivateKey = {}", "\tprivatekey={}", "PRIVATEKEY\t=\t{}  ",
                                  "privateKey = {}\r"])
def test_redaction_works_on_any_spelling_wg_accepts(shell: list[str], sandbox: Path,
                                                    line: str) -> None:
    """wg reads keys case-insensitively with any whitespace: an indented or lowercase line
    was printed as it was, key and all, in a --dry-run diff (issue 16)."""
    other = base64.b64encode(bytes(range(3, 35))).decode()
    for key, shown in ((SECRET, PRIVATE_KEY_PLACEHOLDER), (other, FOREIGN_KEY)):
        out = redacting(shell, sandbox, f"[Interface]\n{line.format(key)}\nListenPort = 1\n")
        assert out == f"[Interface]\nPrivateKey = {shown}\nListenPort = 1\n"


# --------------------------------------------------------------------------- firewalld
FAKE_PY = """#!/bin/sh
# a stand-in for firewall-cmd's interpreter: -c CODE VIEW DIR MORE...; logs each start
[ "$1" = -c ] || exec sh "$@"  # firewall-cmd itself
echo "$3 ${5:-}" >> "$LOG"
d=$4; shift 4; code=; case $MODE in fallback) code=3;; stopped) code=4;; esac
for m in "$@"; do  # the other views, kept for the batch's next probes
  if [ "$code" ]; then echo "!$code"; else
    echo '{"zones": [["public", {"ports": [["1", "tcp"]]}]], "nm": []}'; fi > "$d/fwd.$m"
done
[ -z "$code" ] || exit "$code"
echo '{"zones": [["public", {"ports": [["9", "udp"]], "interfaces": ["wg0"]}]]}'
"""
FAKE_FIREWALL_CMD = """#!{py}
echo "firewall-cmd $*" >> "$LOG"
printf 'public\\n  ports: 7/tcp\\n'
"""


@pytest.mark.parametrize("mode", ["dbus", "fallback", "stopped"])
def test_firewalld_views_are_read_by_one_start_of_firewall_cmds_interpreter(
        shell: list[str], tmp_path: Path, mode: str) -> None:
    """Both views of a batch by ONE start of the interpreter on firewall-cmd's first line
    (the permanent view behind the runtime one, in its job); firewall-cmd itself where that
    reader fails; nothing where it says firewalld is not on the bus."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "fakepython").write_text(FAKE_PY)
    (bin_ / "firewall-cmd").write_text(FAKE_FIREWALL_CMD.format(py=bin_ / "fakepython"))
    (bin_ / "systemctl").write_text("#!/bin/sh\nexit 0\n")  # says firewalld is active
    for f in bin_.iterdir():
        f.chmod(0o755)
    rt, pm = probes.FirewalldZones("runtime"), probes.FirewalldZones("permanent")
    batch = Batch([rt, pm])
    assert [[p.key for p in job] for job in batch.jobs] == [[rt.key, pm.key]]
    assert [[p.key for p in j] for j in Batch([pm]).jobs] == [[pm.key]]  # alone: its own
    (tmp_path / "t").mkdir()
    script = "\n".join([
        f"export PATH={bin_}:$PATH LOG={tmp_path / 'log'} MODE={mode} T={tmp_path / 't'}",
        rt.functions, f"p0() {{\n{rt.shell()}\n}}", f"p1() {{\n{pm.shell()}\n}}",
        rt.setup(), pm.setup(), f"( p0 ); echo {MARK} x; ( p1 )"])
    res = run(shell, script)
    assert res.returncode == 0, res.stderr
    runtime, permanent = res.stdout.split(f"{MARK} x\n")
    log = (tmp_path / "log").read_text().splitlines()
    if mode == "dbus":
        assert log == ["runtime permanent"]  # one start, for both views
        assert rt.parse(runtime)["zones"]["public"]["ports"] == ["9/udp"]
        assert rt.parse(runtime)["zones"]["public"]["interfaces"] == ["wg0"]
        assert pm.parse(permanent)["zones"]["public"]["ports"] == ["1/tcp"]
    elif mode == "fallback":
        assert log == ["runtime permanent", "firewall-cmd --list-all-zones",
                       "firewall-cmd --permanent --list-all-zones"]
        assert rt.parse(runtime)["zones"] == {"public": {"ports": ["7/tcp"]}}
        assert pm.parse(permanent)["zones"] == {"public": {"ports": ["7/tcp"]}}
    else:
        assert log == ["runtime permanent"]
        assert rt.parse(runtime) == {} and pm.parse(permanent) == {}



def test_no_system_bus_means_firewalld_is_not_running(tmp_path: Path) -> None:
    """firewalld lives on the system bus: with none (the namespace lab's VPS, a host without
    D-Bus) the reader says "not running" (4), and firewall-cmd -- seconds of Python, only to
    fail the same way -- is not asked. The interpreter firewall-cmd runs on (its dbus module:
    setup.sh installs firewalld)."""
    interpreter = Path("/usr/bin/firewall-cmd").read_text().splitlines()[0].removeprefix("#!")
    env = {"PATH": "/usr/bin:/bin",
           "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path / 'no-bus'}"}
    res = subprocess.run([interpreter, "-c", probes.firewall.FIREWALLD_DBUS, "runtime",
                          str(tmp_path)], env=env, capture_output=True, text=True)
    assert (res.returncode, res.stdout) == (4, ""), res.stderr

def test_podmans_version_is_recorded_only_by_runs_that_may_change_the_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The version cache (probes/podman.py version_shell): believed while the binary is the
    one that said it, written only with keep (never by a dry run, verify or status)."""
    from tunnelops.probes import podman as podman_probe

    state, bin_dir, calls = tmp_path / "state", tmp_path / "bin", tmp_path / "calls"
    state.mkdir()
    bin_dir.mkdir()
    fake = bin_dir / "podman"
    fake.write_text(f"#!/bin/sh\necho called >> {calls}\necho 'podman version 5.4.2'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(podman_probe, "VERSION_CACHE", str(state / "podman-version"))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}

    def read(keep: bool) -> tuple[str, int]:
        out = subprocess.run(["sh", "-c", podman_probe.version_shell(keep)], env=env,
                             capture_output=True, text=True, check=True).stdout
        return out, len(calls.read_text().splitlines()) if calls.exists() else 0

    assert read(False) == ("version=5.4.2\n", 1)
    assert not (state / "podman-version").exists()  # a read that may not change the host
    assert read(True) == ("version=5.4.2\n", 2)
    assert read(False) == ("version=5.4.2\n", 2)  # from the record: podman not started
    assert podman_probe.Podman("gamer").key == podman_probe.Podman("gamer", keep=True).key
    new = bin_dir / "podman.new"  # an upgrade: a new file in its place (a new inode)
    new.write_text(fake.read_text())
    new.chmod(0o755)
    new.replace(fake)
    assert read(False) == ("version=5.4.2\n", 3)
