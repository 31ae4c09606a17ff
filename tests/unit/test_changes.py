"""The apply script as shell: its text, and what it does when a real `sh` runs it in a
temporary directory (FileChange paths, key files and guard markers all point into
tmp_path). Run by dash (`sh` here), bash and BusyBox ash when present, Alpine's shell."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.unit.facts import generate
from tests.unit.shells import SECRET
from tunnelops import changes
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
    step_seconds,
)
from tunnelops.model.tunnel import PRIVATE_KEY_PLACEHOLDER, Tunnel
from tunnelops.probes import MARK
from tunnelops.render.wireguard import vps_setconf, vps_wg_quick

ME = pwd.getpwuid(os.getuid()).pw_name
PEER = generate.HOME_PUB


def run(shell: list[str], script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = cwd / "apply.sh"
    path.write_text(script)
    return subprocess.run([*shell, str(path)], cwd=cwd, capture_output=True, text=True,
                          timeout=20, check=False)


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"{TMP_PREFIX}*"))


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
    assert lines[:4] == [
        "umask 077",
        "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "read -r __s __ </proc/uptime 2>/dev/null",
        "r() { read -r __e __ </proc/uptime 2>/dev/null; printf '\\n::tunnelops:: step %s %s "
        "%s %s\\n' \"$1\" \"$2\" \"$__s\" \"$__e\"; __s=$__e; }"]
    assert lines[4:6] == ["rm -f /etc/.tunnelops.* 2>/dev/null",
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
    assert nxt.splitlines()[4] == changes.confirm_shell(["/run/tunnelops/guard.wireguard.t1"])


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
    assert re.search(rf"\n{MARK} step wireguard ok [\d.]+ [\d.]+\n", res.stdout)
    # each step's seconds on the host, from the host's own clock
    assert set(step_seconds(res.stdout)) == {"forwarding", "wireguard"}
    assert all(0 <= t < 30 for t in step_seconds(res.stdout).values())

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
    assert re.search(rf"\n{MARK} step wireguard failed [\d.]+ [\d.]+\n", res.stdout)
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
    assert late.returncode == 3 and f"{MARK} {changes.RESTORED}" in late.stdout
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
