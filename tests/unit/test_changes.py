"""The apply script and the facts command, as shell: their text, and what they do when a real
`sh` runs them in a temporary directory (FileChange paths, key files and guard markers all
point into tmp_path). Run by dash (`sh` here) and BusyBox ash when present, Alpine's shell.
Plus facts.parse on the recorded outputs of tests/unit/facts/."""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.unit.facts import generate
from tunnelops import changes, facts
from tunnelops.backends import originals
from tunnelops.changes import (
    TMP_PREFIX,
    CommandChange,
    FileChange,
    Guard,
    RemoveFile,
    StepPlan,
    apply_script,
    guard_marker,
    step_outcomes,
)
from tunnelops.model import PRIVATE_KEY_PLACEHOLDER, Tunnel
from tunnelops.render.nftables import Element
from tunnelops.render.wireguard import vps_setconf, vps_wg_quick

# root's login shell runs the script: bash (Debian, Fedora), BusyBox ash (Alpine); sh is dash
SHELLS = [["sh"]] + [s for s in (["bash"], ["busybox", "sh"]) if shutil.which(s[0])]
ME = pwd.getpwuid(os.getuid()).pw_name
# a WireGuard private key is 32 random bytes in base64; this one exists only in this test
SECRET = base64.b64encode(bytes(range(1, 33))).decode()
PEER = generate.HOME_PUB


def run(shell: list[str], script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = cwd / "apply.sh"
    path.write_text(script)
    return subprocess.run([*shell, str(path)], cwd=cwd, capture_output=True, text=True,
                          timeout=20, check=False)


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"{TMP_PREFIX}*"))


@pytest.fixture(params=SHELLS, ids=[" ".join(s) for s in SHELLS])
def shell(request: pytest.FixtureRequest) -> list[str]:
    return request.param


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path with an etc/ tree, a private key file, and the guard markers inside it."""
    monkeypatch.setattr(changes, "GUARD_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(changes, "LOCK_FILE", str(tmp_path / "tunnelops.lock"))
    monkeypatch.setattr(changes, "SNAPSHOT_DIR", str(tmp_path / "snapshots"))
    monkeypatch.setattr(originals, "RECORDS", str(tmp_path / "var" / "created"))
    monkeypatch.setattr(originals, "ORIG", str(tmp_path / "var" / "orig"))
    (tmp_path / "etc" / "wireguard").mkdir(parents=True)
    key = tmp_path / "etc" / "wireguard" / "wg0.key"
    key.write_text(SECRET + "\n")  # as `wg genkey` writes it
    key.chmod(0o600)
    return tmp_path


# --------------------------------------------------------------------------- the text

def test_file_change_is_written_atomically_beside_its_target() -> None:
    sh = FileChange("/etc/tunnelops/tunnelops.nft", "table inet tunnelops {}\n",
                    mode=0o644).shell()
    lines = sh.splitlines()
    assert lines[0] == "mkdir -p /etc/tunnelops"
    assert lines[1] == "t=$(mktemp /etc/tunnelops/.tunnelops.XXXXXX)"  # same filesystem
    assert lines[2].startswith("cat > \"$t\" <<'TUNNELOPS_EOF_")  # quoted: nothing expands
    assert lines[-4:-1] == ['chmod 644 "$t"', 'chown root "$t"',
                            'mv -f "$t" /etc/tunnelops/tunnelops.nft']  # rename: old or new
    # created, so recorded as ours: teardown removes only what it recorded (or marked)
    assert lines[-1] == originals.record_shell("file /etc/tunnelops/tunnelops.nft")
    assert "created" not in FileChange("/x", "y\n", old="z\n").shell()  # updated: recorded
    assert "created" not in FileChange("/x", "y\n", backup=True).shell()  # not ours
    assert "read -r k" not in sh


def test_file_change_with_a_key_reads_it_on_the_host_with_builtins_only() -> None:
    sh = FileChange("/etc/wireguard/wg0.conf", vps_wg_quick(Tunnel(), PEER), mode=0o600,
                    key_path="/etc/wireguard/wg0.key").shell()
    assert "k=; read -r k < /etc/wireguard/wg0.key; " in sh
    assert sh.count(PRIVATE_KEY_PLACEHOLDER) == 3  # the heredoc's line, case, strip
    assert 'mv -f "$t.k" "$t"; k=' in sh  # substituted into the temp file, then forgotten
    assert sh.index("read -r k") < sh.index('chmod 600 "$t"') < sh.index("mv -f \"$t\" ")
    for tool in ("cat /etc/wireguard/wg0.key", "sed", "awk", "echo $k", "$(cat"):
        assert tool not in sh
    # no key path, or no placeholder: nothing to substitute
    assert "read -r k" not in FileChange("/x", vps_wg_quick(Tunnel(), PEER)).shell()
    assert "read -r k" not in FileChange("/x", "plain\n", key_path="/k").shell()


def test_backup_of_a_file_tunnelops_does_not_own_comes_first() -> None:
    sh = FileChange("/etc/nftables.conf", "x\n", old="y\n", backup=True).shell()
    assert sh.startswith(f"if [ ! -e {originals.ORIG}/etc/nftables.conf ]")
    assert sh.index(originals.ORIG) < sh.index("mktemp")


def test_apply_script_layout() -> None:
    guard = Guard(snapshot="SNAPSHOT", restore="RESTORE", seconds=7)
    plans = [
        StepPlan("packages"),  # nothing to do: not in the script at all
        StepPlan("forwarding", [CommandChange("enable", "ENABLE")], post=["POST1"]),
        StepPlan("firewall", [FileChange("/etc/a", "a\n"), CommandChange("load", "LOAD")],
                 post=["POST2"], guard=guard),
    ]
    script = apply_script(plans, cleanup_dirs=("/etc", "/etc/awall"))
    lines = script.splitlines()
    assert lines[:3] == [
        "umask 077",
        "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "r() { printf '\\n::tunnelops:: step %s %s\\n' \"$1\" \"$2\"; }"]
    assert lines[3:5] == ["rm -f /etc/.tunnelops.* 2>/dev/null",
                          "rm -f /etc/awall/.tunnelops.* 2>/dev/null"]
    assert "packages" not in script
    assert ("(\nset -e\nENABLE\nPOST1\n)\n"
            "if [ $? -eq 0 ]; then r forwarding ok; else r forwarding failed; exit 1; fi\n"
            ) in script
    marker = guard_marker("firewall")
    # one watchdog for the segment, started before any step; the marker armed right after
    # the snapshot, before the first change (a step failing half-way is undone too)
    order = ["setsid sh -c ", "ENABLE", "SNAPSHOT", f": > {marker}", "mktemp /etc/.tunnelops.",
             "LOAD", "POST2",
             ")\nif [ $? -eq 0 ]; then r firewall ok; else r firewall failed; exit 1; fi"]
    positions = [script.index(x) for x in order]
    assert positions == sorted(positions)
    assert script.count("setsid") == 1
    dog = changes.watchdog([("firewall", guard)], "")
    assert dog.splitlines()[1] == "sleep 7"  # its clock starts when the script has ended
    assert dog.splitlines()[-1] == (f"if mv -f {marker} {marker}.undo 2>/dev/null; then "
                                    f"( exec 9>&-; RESTORE ); rm -f {marker}.undo; fi")
    # a segment proving the previous one's guards takes their markers first of all
    nxt = apply_script(plans[1:2], confirm=("/run/tunnelops/guard.wireguard.t1",))
    assert nxt.splitlines()[3] == changes.confirm_shell(["/run/tunnelops/guard.wireguard.t1"])


def test_segments_end_after_each_run_of_guarded_steps() -> None:
    g = Guard("S", "R")

    def step(name: str, guarded: bool = False, changed: bool = True) -> StepPlan:
        return StepPlan(name, [CommandChange(name, "X")] if changed else [],
                        guard=g if guarded else None)

    plans = [step("packages", changed=False), step("wireguard", True), step("firewall", True),
             step("service:game"), step("services-removed", changed=False), step("last", True)]
    assert [[p.step for p in seg] for seg in changes.segments(plans)] == [
        ["wireguard", "firewall"], ["service:game", "last"]]
    assert [[p.step for p in seg] for seg in changes.segments([step("a"), step("b")])] == [
        ["a", "b"]]
    assert changes.segments([step("x", changed=False)]) == []


# --------------------------------------------------------------------------- run by sh

def test_apply_script_runs(shell: list[str], sandbox: Path) -> None:
    etc = sandbox / "etc"
    key = etc / "wireguard" / "wg0.key"
    (etc / "nftables.conf").write_text("old\n")
    os.link(etc / "nftables.conf", sandbox / "nftables.conf.before")  # the old inode
    (etc / "gone.conf").write_text("bye\n")
    conf = vps_setconf(Tunnel(), PEER)
    tricky = "$(touch pwned) `touch pwned` $HOME \\n 100%\nno newline at the end"
    plans = [
        StepPlan("forwarding", [FileChange(str(etc / "sysctl.d" / "90-tunnelops.conf"),
                                           "net.ipv4.ip_forward = 1\n", owner=ME)]),
        StepPlan("wireguard", [
            FileChange(str(etc / "wireguard" / "wg0.conf"), conf, mode=0o600, owner=ME,
                       key_path=str(key)),
            FileChange(str(etc / "nftables.conf"), tricky, old="old\n", mode=0o755,
                       owner=ME),
            RemoveFile(str(etc / "gone.conf"), "bye\n"),
            CommandChange("note", f"echo ran > {sandbox / 'ran'}")],
            post=[f"echo post >> {sandbox / 'ran'}"]),
    ]
    script = apply_script(plans)
    assert SECRET not in script
    res = run(shell, script, sandbox)
    assert (res.returncode, res.stderr) == (0, "")
    assert step_outcomes(res.stdout) == {"forwarding": "ok", "wireguard": "ok"}
    assert f"\n{facts.MARK} step wireguard ok\n" in res.stdout

    wg = etc / "wireguard" / "wg0.conf"
    assert wg.read_text() == conf.replace(PRIVATE_KEY_PLACEHOLDER, SECRET)
    assert f"PrivateKey = {SECRET}\n" in wg.read_text()
    assert oct(wg.stat().st_mode & 0o777) == "0o600"
    assert wg.stat().st_uid == os.getuid()
    sysctl = etc / "sysctl.d" / "90-tunnelops.conf"
    assert sysctl.read_text() == "net.ipv4.ip_forward = 1\n"
    assert oct(sysctl.stat().st_mode & 0o777) == "0o644"
    assert oct(sysctl.parent.stat().st_mode & 0o777) == "0o700"  # made under umask 077
    nft = etc / "nftables.conf"
    assert nft.read_text() == tricky + "\n"  # nothing expanded, a final newline added
    assert oct(nft.stat().st_mode & 0o777) == "0o755"
    assert (sandbox / "nftables.conf.before").read_text() == "old\n"  # renamed over, not
    assert not (sandbox / "pwned").exists()                          # rewritten in place
    assert not (etc / "gone.conf").exists()
    assert (sandbox / "ran").read_text() == "ran\npost\n"
    assert leftovers(sandbox) == []


def test_a_failing_step_stops_the_script(shell: list[str], sandbox: Path) -> None:
    etc = sandbox / "etc"
    plans = [
        StepPlan("forwarding", [FileChange(str(etc / "one"), "1\n", owner=ME)]),
        StepPlan("wireguard", [FileChange(str(etc / "two"), "2\n", owner=ME),
                               CommandChange("bring wg0 up", "echo 'wg0: no such device' >&2; "
                                                             "false"),
                               FileChange(str(etc / "three"), "3\n", owner=ME)],
                 post=[f": > {sandbox / 'post-ran'}"]),
        StepPlan("firewall", [FileChange(str(etc / "four"), "4\n", owner=ME)]),
    ]
    res = run(shell, apply_script(plans), sandbox)
    assert res.returncode == 1
    assert step_outcomes(res.stdout) == {"forwarding": "ok", "wireguard": "failed"}
    assert f"\n{facts.MARK} step wireguard failed\n" in res.stdout
    assert res.stderr == "wg0: no such device\n"
    assert sorted(p.name for p in etc.iterdir() if p.is_file()) == ["one", "two"]
    assert not (sandbox / "post-ran").exists()
    assert leftovers(sandbox) == []


def test_a_missing_key_fails_the_step_and_writes_nothing(shell: list[str],
                                                         sandbox: Path) -> None:
    wg = sandbox / "etc" / "wireguard" / "wg0.conf"
    plan = StepPlan("wireguard", [FileChange(str(wg), vps_setconf(Tunnel(), PEER), mode=0o600,
                                             owner=ME, key_path=str(sandbox / "no.key"))])
    res = run(shell, apply_script([plan]), sandbox)
    assert (res.returncode, step_outcomes(res.stdout)) == (1, {"wireguard": "failed"})
    assert not wg.exists()
    # the temp file of the aborted write stays until the next run's cleanup removes it
    assert [Path(p).name.startswith(TMP_PREFIX) for p in leftovers(sandbox)] == [True]
    res = run(shell, apply_script([], cleanup_dirs=(str(wg.parent),)), sandbox)
    assert res.returncode == 0 and leftovers(sandbox) == []


def test_guard_restores_unless_confirmed(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The dead man's switch: armed after the change, it restores the snapshot unless the
    marker is removed (what the laptop does over a fresh SSH connection). The watchdog is
    always `sh -c`, whatever shell runs the script."""
    def firewall(root: Path) -> StepPlan:
        root.mkdir()
        rules = root / "rules"
        rules.write_text("old rules\n")
        monkeypatch.setattr(changes, "GUARD_DIR", str(root / "run"))
        monkeypatch.setattr(changes, "LOCK_FILE", str(root / "tunnelops.lock"))
        return StepPlan("firewall", [FileChange(str(rules), "new rules\n", owner=ME)],
                        guard=Guard(snapshot=f"cp {rules} {root / 'rules.saved'}",
                                    restore=f"cp {root / 'rules.saved'} {rules}; "
                                            f": > {root / 'restored'}",
                                    seconds=1))

    lost, confirmed = tmp_path / "lost", tmp_path / "confirmed"
    for root in (lost, confirmed):
        res = run(["sh"], apply_script([firewall(root)]), tmp_path)
        assert step_outcomes(res.stdout) == {"firewall": "ok"}
        assert (root / "rules").read_text() == "new rules\n"
        marker = Path(guard_marker("firewall"))
        assert marker.exists()  # armed
        if root is confirmed:
            marker.unlink()
    deadline = time.monotonic() + 5
    while not (lost / "restored").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (lost / "rules").read_text() == "old rules\n"
    assert not (lost / "run" / "guard.firewall").exists()
    time.sleep(0.2)  # the confirmed one's watchdog woke up at the same time
    assert (confirmed / "rules").read_text() == "new rules\n"
    assert not (confirmed / "restored").exists()


def _guarded_rules(root: Path, seconds: int = 1) -> StepPlan:
    rules = root / "rules"
    rules.write_text("old rules\n")
    return StepPlan("firewall", [FileChange(str(rules), "new rules\n", owner=ME)],
                    guard=Guard(snapshot=f"cp {rules} {root / 'rules.saved'}",
                                restore=f"cp {root / 'rules.saved'} {rules}; "
                                        f"date +%s.%N > {root / 'r.tmp'}; "
                                        f"mv {root / 'r.tmp'} {root / 'restored'}",
                                seconds=seconds))


def _wait_file(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


def test_watchdog_clock_starts_when_the_script_ends(sandbox: Path) -> None:
    """VM fault 1: a slow step after a guarded one (an image pull, a 90 s systemd wait) must
    not eat the guard's time: the watchdog restores only `seconds` after the script ended."""
    slow = StepPlan("service:game", [CommandChange("slow", "sleep 2")])
    t0 = time.monotonic()
    res = run(["sh"], apply_script([_guarded_rules(sandbox), slow], guard_token="t1"), sandbox)
    ended = time.monotonic()
    assert step_outcomes(res.stdout) == {"firewall": "ok", "service:game": "ok"}
    assert ended - t0 >= 2
    assert _wait_file(sandbox / "restored", 5)  # never confirmed: restored...
    assert float((sandbox / "restored").read_text()) - time.time() + time.monotonic() \
        >= ended + 0.9  # ...but only a guard's time after the script ended


def test_watchdog_never_restores_under_another_live_run(sandbox: Path) -> None:
    """The lock: while another run holds it, the watchdog waits (that run confirms or not);
    it restores once the lock is free. Under its own run (its token), it restores at once."""
    import fcntl
    lock = sandbox / "tunnelops.lock"
    info = Path(str(lock) + ".info")
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        info.write_text("pid=1 since=now token=other\n")
        res = run(["sh"], apply_script([_guarded_rules(sandbox)], guard_token="mine"), sandbox)
        assert step_outcomes(res.stdout) == {"firewall": "ok"}
        assert not _wait_file(sandbox / "restored", 2.5)  # due at ~1 s: waits for the lock
        assert (sandbox / "rules").read_text() == "new rules\n"
    assert _wait_file(sandbox / "restored", 3)  # lock released: the restore happens
    assert (sandbox / "rules").read_text() == "old rules\n"
    assert info.read_text().startswith("watchdog of run mine restoring since ")

    (sandbox / "restored").unlink()
    with open(lock, "a") as held:  # its own run holds the lock: no waiting
        fcntl.flock(held, fcntl.LOCK_EX)
        info.write_text("pid=1 since=now token=mine2\n")
        run(["sh"], apply_script([_guarded_rules(sandbox)], guard_token="mine2"), sandbox)
        assert _wait_file(sandbox / "restored", 3)


def test_confirmation_and_restore_never_both_win(sandbox: Path) -> None:
    """A proof of SSH that came only because the watchdog had already put the host back (a
    lock-out that cut our own connection too, until the restore) must not be taken for
    success: the confirmation finds the marker gone and says so."""
    res = run(["sh"], apply_script([_guarded_rules(sandbox)], guard_token="t"), sandbox)
    assert step_outcomes(res.stdout) == {"firewall": "ok"}
    assert _wait_file(sandbox / "restored", 4)  # the watchdog won
    marker = guard_marker("firewall", "t")
    late = subprocess.run(["sh", "-c", changes.confirm_shell([marker])], capture_output=True,
                          text=True, check=False)
    assert late.returncode == 3 and f"{facts.MARK} {changes.RESTORED}" in late.stdout
    # in time: kept, and the watchdog then finds nothing to restore
    (sandbox / "restored").unlink()
    res = run(["sh"], apply_script([_guarded_rules(sandbox, seconds=2)], guard_token="u"),
              sandbox)
    ok = subprocess.run(["sh", "-c", changes.confirm_shell([guard_marker("firewall", "u")])],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout == ""
    assert not _wait_file(sandbox / "restored", 3.5)
    assert (sandbox / "rules").read_text() == "new rules\n"


def test_a_guarded_step_that_fails_half_way_is_restored(sandbox: Path) -> None:
    plan = _guarded_rules(sandbox)
    plan.changes.append(CommandChange("fails", "false"))
    res = run(["sh"], apply_script([plan], guard_token="t"), sandbox)
    assert step_outcomes(res.stdout) == {"firewall": "failed"}
    assert _wait_file(sandbox / "restored", 4)
    assert (sandbox / "rules").read_text() == "old rules\n"


# --------------------------------------------------------------------------- the facts side

def redacting_cat(shell: list[str], sandbox: Path, text: str) -> str:
    conf = sandbox / "etc" / "wireguard" / "wg0.conf"
    conf.write_text(text)
    res = subprocess.run([*shell, "-c", facts._redacting_cat(
        str(conf), str(sandbox / "etc" / "wireguard" / "wg0.key"))],
        capture_output=True, text=True, timeout=10, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_redacting_cat_replaces_the_hosts_own_key(shell: list[str], sandbox: Path) -> None:
    conf = vps_setconf(Tunnel(), PEER).replace(PRIVATE_KEY_PLACEHOLDER, SECRET)
    out = redacting_cat(shell, sandbox, conf)
    assert out == vps_setconf(Tunnel(), PEER)
    assert SECRET not in out
    # the same without spaces around '=', and a last line without its newline
    out = redacting_cat(shell, sandbox, f"[Interface]\nPrivateKey={SECRET}\nListenPort = 1")
    assert out == f"[Interface]\nPrivateKey = {PRIVATE_KEY_PLACEHOLDER}\nListenPort = 1\n"


def test_redacting_cat_marks_a_foreign_key(shell: list[str], sandbox: Path) -> None:
    other = base64.b64encode(bytes(range(2, 34))).decode()
    out = redacting_cat(shell, sandbox, f"[Interface]\nPrivateKey = {other}\n  # {SECRET}?\n")
    # the host's own key is replaced wherever it appears, a comment included
    assert out == (f"[Interface]\nPrivateKey = {facts.FOREIGN_KEY}\n"
                   f"  # {PRIVATE_KEY_PLACEHOLDER}?\n")
    assert other not in out and SECRET not in out
    # no key file at all: whatever key the file has is not the host's
    (sandbox / "etc" / "wireguard" / "wg0.key").unlink()
    out = redacting_cat(shell, sandbox, f"PrivateKey = {SECRET}\n")
    assert out == f"PrivateKey = {facts.FOREIGN_KEY}\n"


@pytest.mark.parametrize("line", ["  PrivateKey = {}", "\tprivatekey={}", "PRIVATEKEY\t=\t{}  ",
                                  "privateKey = {}\r"])
def test_redaction_works_on_any_spelling_wg_accepts(shell: list[str], sandbox: Path,
                                                    line: str) -> None:
    """wg reads keys case-insensitively with any whitespace: an indented or lowercase line
    was printed as it was, key and all, in a --dry-run diff (issue 16)."""
    other = base64.b64encode(bytes(range(3, 35))).decode()
    for key, shown in ((SECRET, PRIVATE_KEY_PLACEHOLDER), (other, facts.FOREIGN_KEY)):
        out = redacting_cat(shell, sandbox, f"[Interface]\n{line.format(key)}\nListenPort = 1\n")
        assert out == f"[Interface]\nPrivateKey = {shown}\nListenPort = 1\n"


def test_facts_script_runs_here(sandbox: Path) -> None:
    """The real facts command on this machine, its managed files in the sandbox: one run,
    parsed back; the private key never appears in what the host prints."""
    wgdir = sandbox / "etc" / "wireguard"
    (wgdir / "wg0.pub").write_text(PEER + "\n")
    (wgdir / "wg0.conf").write_text(vps_setconf(Tunnel(), PEER).replace(
        PRIVATE_KEY_PLACEHOLDER, SECRET))
    (wgdir / "wg0.conf").chmod(0o600)
    plain = sandbox / "etc" / "plain.conf"
    plain.write_text("a = 1\n\n  indented \\ back\\slash\nno newline")
    script = facts.script(interface="tunnelopstest0", route_table=201,
                          key_path=str(wgdir / "wg0.key"),
                          files=[str(wgdir / "wg0.conf"), str(plain), str(sandbox / "nope")],
                          secret_files=[str(wgdir / "wg0.conf")])
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                         check=False)
    assert SECRET not in res.stdout
    f = facts.parse(res.stdout)
    assert f.uid == os.getuid()
    assert f.os_id and f.pid1
    assert f.commands <= {*facts.COMMANDS, facts.IP_JSON}
    assert f.key_exists and f.public_key == PEER
    assert sorted(f.files) == sorted([str(wgdir / "wg0.conf"), str(plain)])
    wg = f.files[str(wgdir / "wg0.conf")]
    assert (wg.mode, wg.owner, wg.content) == ("600", ME, vps_setconf(Tunnel(), PEER))
    assert f.files[str(plain)].content == plain.read_text()
    assert f.files[str(plain)].mode == "644"
    assert f.wg == {}  # no such interface


def test_facts_give_podmans_version_before_the_service_user_exists() -> None:
    """The version picks the network (pasta on Podman 5) and Quadlet: a first run that
    creates the user must already plan what the second run will find."""
    script = facts.script(interface="wg0", route_table=201, key_path="/nonexistent/wg0.key",
                          files=[], users=["tunnelops-no-such-user"])
    user = [line for line in script.splitlines() if line.startswith("m user ")]
    fake = (f"m() {{ printf '\\n{facts.MARK} %s\\n' \"$*\"; }}\n"
            "podman() { echo 'podman version 5.2.3'; }\n")
    res = subprocess.run(["sh", "-c", fake + "\n".join(user)], capture_output=True,
                         text=True, timeout=10, check=False)
    out = f"\n{facts.MARK} os\nID=fedora\n" + res.stdout
    users = facts.parse(out).users
    assert users["tunnelops-no-such-user"].pop("nofile").isdigit()  # this shell's hard limit
    assert users == {"tunnelops-no-such-user": {"version": "5.2.3", "containers": [],
                                                "images": [], "created": {}}}


# --------------------------------------------------------------------------- parse

def recorded(name: str) -> facts.HostFacts:
    return facts.parse(generate.load(name))



def test_recorded_facts_parse() -> None:
    t, vps_pub, home_pub = Tunnel(), generate.VPS_PUB, generate.HOME_PUB
    a = recorded("alpine-vps-converged")
    assert (a.family, a.os_version, a.pid1, a.openrc, a.systemd) == (
        "alpine", "3.20.3", "init", True, False)
    assert a.kernel_wireguard and a.has("ifup") and a.has("awall") and not a.has("nft")
    assert a.awall_enabled == ("tunnelops-wg0-base", "tunnelops-wg0-service-game",
                               "tunnelops-wg0-ssh", "tunnelops-wg0-wireguard")
    assert a.wg["public_key"] == vps_pub and a.wg["listen_port"] == 51821
    assert a.wg["peers"] == [{
        "public_key": home_pub, "endpoint": "198.51.100.20:41641",
        "allowed_ips": ["192.168.2.2/32"], "latest_handshake": generate.NOW - 42,
        "rx": 1843532, "tx": 2212084, "keepalive": 0}]
    assert a.wg["link"]["ifname"] == "wg0"
    assert a.file("/etc/wireguard/wg0.conf").content == vps_setconf(t, home_pub)
    assert a.file("/etc/wireguard/wg0.conf").mode == "600"
    assert a.table_routes == []  # iproute2's lone "[" for a missing table

    fresh = recorded("alpine-vps-fresh")  # BusyBox ip: no JSON, the plain uplink line
    assert (fresh.addrs, fresh.rules, fresh.wg, fresh.public_key) == ([], [], {}, None)
    assert fresh.uplink == {"dst": "1.1.1.1", "gateway": "203.0.113.1", "dev": "eth0",
                            "prefsrc": generate.VPS_IP}

    fc = recorded("fedora-home-converged")
    assert (fc.family, fc.systemd, fc.firewalld["default"]) == ("fedora", True, "public")
    public = fc.firewalld["runtime"]["public"]
    assert public["interfaces"] == ["enp1s0", "wg0"]
    assert public["ports"] == ["12345/udp", "12346/tcp"]
    assert fc.firewalld["permanent"]["public"]["interfaces"] == []
    assert fc.firewalld["runtime"]["nm-shared"]["protocols"] == ["icmp", "ipv6-icmp"]
    assert fc.nm["running"] and fc.nm["exists"]
    assert fc.nm["values"] == {
        "connection.type": "wireguard", "connection.interface-name": "wg0",
        "ipv4.method": "manual", "ipv4.addresses": "192.168.2.2/24",
        "ipv4.route-table": "201",
        "ipv4.routing-rules": "priority 100 from 192.168.2.2 table 201, "
                              "priority 101 to 192.168.2.1 table 201",
        "wireguard.ip4-auto-default-route": "0", "wireguard.peer-routes": "yes",
        "wireguard.mtu": "auto", "connection.zone": "public"}
    assert {(r["priority"], r.get("src"), r.get("dst"), r["table"]) for r in fc.rules} >= {
        (100, "192.168.2.2", None, "201"), (101, "all", "192.168.2.1", "201")}
    gamer = fc.users["gamer"]
    assert (gamer["uid"], gamer["linger"], gamer["version"]) == ("1001", "yes", "5.2.3")
    assert [c["Names"] for c in gamer["containers"]] == [["tunnelops-game"]]

    ff = recorded("fedora-home-fresh")
    assert ff.nm == {"running": True, "exists": False, "values": {}, "peers": ""}
    assert ff.users["gamer"] == {"version": "5.2.3", "containers": [],  # no such user yet
                                 "images": [], "created": {}}

    d = recorded("debian-vps-converged")
    assert (d.family, d.kernel_wireguard, d.has("wireguard-go")) == ("debian", False, True)
    assert d.nft_table == d.nft_applied and "udp dport @svc_udp_home dnat" in d.nft_table
    assert "27015" not in d.nft_table  # the terse listing has no set elements: they are here
    assert d.nft_sets == {"svc_tcp_home": [Element(12346, 12346, "game")],
                          "svc_udp_home": [Element(12345, 12345, "game"),
                                           Element(27015, 27020, "game")]}
    assert d.nft_legacy is None and list(d.sites) == ["/var/lib/tunnelops/sites/wg0.json"]
    old = recorded("legacy-debian-vps-converged")  # an older tunnelops' table, by its name
    assert old.nft_table is None and "udp dport @svc_udp dnat" in (old.nft_legacy or "")
    assert recorded("private-ip-vps").family == "debian"  # Ubuntu, by ID_LIKE
    assert recorded("arch-vps").family == "unknown"


def test_parse_uplink_json_and_plain() -> None:
    def uplink(body: str) -> dict:
        return facts.parse(f"\n{facts.MARK} os\nID=alpine\n\n{facts.MARK} uplink\n{body}"
                           ).uplink

    assert uplink('[{"dst":"1.1.1.1","gateway":"203.0.113.1","dev":"eth0","prefsrc":'
                  '"203.0.113.7","flags":[],"uid":0,"cache":[]}]\n')["prefsrc"] == "203.0.113.7"
    busybox = {"dst": "1.1.1.1", "gateway": "203.0.113.1", "dev": "eth0",
               "prefsrc": "203.0.113.7"}
    assert uplink("1.1.1.1 via 203.0.113.1 dev eth0  src 203.0.113.7 \n") == busybox
    assert uplink("1.1.1.1 via 203.0.113.1 dev eth0 src 203.0.113.7 uid 0 \n    cache \n") \
        == busybox  # iproute2's own text form
    assert uplink("1.1.1.1 dev ppp0 src 100.64.1.2 \n") == {
        "dst": "1.1.1.1", "dev": "ppp0", "prefsrc": "100.64.1.2"}
    assert uplink("") == {}
    assert uplink("RTNETLINK answers: Network is unreachable\n") == {}


def test_parse_awall_list_statuses() -> None:
    out = (f"\n{facts.MARK} os\nID=alpine\n\n{facts.MARK} awall\n"
           "adp-ping   disabled  Allow ping\n"
           "game       enabled   Forward game traffic\n"
           "ssh        required  Allow SSH\n"
           "wireguard  enabled   Allow WireGuard\n\n")
    assert facts.parse(out).awall_enabled == ("game", "wireguard")


def test_parse_rejects_garbage() -> None:
    with pytest.raises(facts.FactsError):
        facts.parse("sh: 1: Syntax error: end of file unexpected\n")
