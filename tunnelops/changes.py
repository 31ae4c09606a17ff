"""What a step wants done on a host, and the one shell script that does it.

A plan is data: FileChange (write this text, atomically, with this mode) and CommandChange
(run this shell, e.g. `ip rule add ...`). `apply_script()` turns a host's whole plan into ONE
script (one round trip): each step runs in its own `set -e` subshell and reports ok/failed,
and the first failure stops the rest (later steps build on earlier ones).
"""

from __future__ import annotations

import difflib
import hashlib
import shlex
from dataclasses import dataclass, field

from tunnelops.backends.originals import backup_shell, record_shell
from tunnelops.hostlock import APPLY_LOCK_PATH, LOCK_PATH
from tunnelops.model.tunnel import PRIVATE_KEY_PLACEHOLDER
from tunnelops.probes import MARK

TMP_PREFIX = ".tunnelops."
APPLY_LOCK = APPLY_LOCK_PATH


@dataclass(frozen=True)
class FileChange:
    path: str
    content: str
    old: str | None = None  # what the host has now (None: absent)
    mode: int = 0o644
    owner: str = "root"
    key_path: str | None = None  # the host's private key replaces the placeholder
    backup: bool = False  # not ours (e.g. /etc/nftables.conf): keep the original for teardown

    @property
    def summary(self) -> str:
        return f"{'create' if self.old is None else 'update'} {self.path}"

    def diff(self) -> str:
        old = [] if self.old is None else self.old.splitlines(keepends=True)
        new = self.content.splitlines(keepends=True)
        return "".join(difflib.unified_diff(old, new, f"a{self.path}", f"b{self.path}"))

    def shell(self) -> str:
        q = shlex.quote
        eof = f"TUNNELOPS_EOF_{hashlib.sha256(self.content.encode()).hexdigest()[:12]}"
        d = q(self.path.rsplit("/", 1)[0] or "/")
        content = self.content if self.content.endswith("\n") else self.content + "\n"
        lines = [backup_shell(self.path)] if self.backup else []
        lines += [
            f"mkdir -p {d}",
            f"t=$(mktemp {d}/{TMP_PREFIX}XXXXXX)",
            f"cat > \"$t\" <<'{eof}'\n{content}{eof}",
        ]
        if self.key_path and PRIVATE_KEY_PLACEHOLDER in content:
            # Only shell builtins see the key (read, case, printf): never a command line.
            lines.append(
                f"k=; read -r k < {q(self.key_path)}; "
                "while IFS= read -r l || [ -n \"$l\" ]; do case $l in "
                f"*{PRIVATE_KEY_PLACEHOLDER}*) printf '%s%s\\n' "
                f"\"${{l%%{PRIVATE_KEY_PLACEHOLDER}*}}\" \"$k\";; "
                "*) printf '%s\\n' \"$l\";; esac; done < \"$t\" > \"$t.k\"; "
                "mv -f \"$t.k\" \"$t\"; k=")
        lines += [f"chmod {self.mode:o} \"$t\"", f"chown {q(self.owner)} \"$t\"",
                  f"mv -f \"$t\" {q(self.path)}"]
        if self.old is None and not self.backup:  # ours: teardown removes what is recorded
            lines.append(record_shell(f"file {self.path}"))
        return "\n".join(lines)


@dataclass(frozen=True)
class CommandChange:
    summary: str
    script: str
    detail: str = ""  # shown by --dry-run (e.g. the rule added)

    def diff(self) -> str:
        return self.detail

    def shell(self) -> str:
        return self.script


@dataclass(frozen=True)
class RemoveFile:
    path: str
    old: str = ""

    @property
    def summary(self) -> str:
        return f"remove {self.path}"

    def diff(self) -> str:
        return "".join(difflib.unified_diff(self.old.splitlines(keepends=True), [],
                                            f"a{self.path}", "/dev/null"))

    def shell(self) -> str:
        return f"rm -f {shlex.quote(self.path)}"


Change = FileChange | CommandChange | RemoveFile


@dataclass(frozen=True)
class Guard:
    """A dead man's switch for a change that could cut SSH (firewall, interfaces, addresses,
    routes and rules, NetworkManager profiles, sysctl), kept on the host itself.

    `snapshot` saves the current state before the change; then a marker file is created, and
    a detached watchdog runs `restore` `seconds` after the apply script ended, unless the
    laptop proves that a *fresh* SSH connection still works and removes the marker. So a
    change that cuts SSH undoes itself, even if the laptop has vanished. The watchdog never
    restores under another live run (see `watchdog`)."""

    snapshot: str
    restore: str
    seconds: int = 20


GUARD_DIR = "/run/tunnelops"
SNAPSHOT_DIR = "/var/lib/tunnelops/guard"
LOCK_FILE = LOCK_PATH  # the host lock, which the watchdog respects (tests point it elsewhere)
# how long a watchdog waits for its apply script to end before it starts its own clock
WATCHDOG_SCRIPT_WAIT_S = 120


def guard_marker(step: str, token: str = "") -> str:
    """The marker a step's watchdog waits on. A run's token makes it that run's own: a
    watchdog of an earlier run still asleep (confirmed, or its run died) never acts on a
    later run's marker, nor restores that later run's snapshot."""
    return f"{GUARD_DIR}/guard.{step}" + (f".{token}" if token else "")


def snapshot_files(step: str, paths: list[str]) -> str:
    """Shell saving each path (or that it is absent) for `restore_files`."""
    d = shlex.quote(f"{SNAPSHOT_DIR}/{step}")
    out = [f"rm -rf {d}; mkdir -p {d}"]
    for i, path in enumerate(paths):
        p = shlex.quote(path)
        out.append(f"if [ -e {p} ]; then cp -a {p} {d}/{i}; else : > {d}/{i}.absent; fi")
    return "; ".join(out)


def restore_files(step: str, paths: list[str]) -> str:
    """Shell putting back what `snapshot_files` saved: the old file, or no file."""
    d = shlex.quote(f"{SNAPSHOT_DIR}/{step}")
    return "; ".join(f"if [ -e {d}/{i}.absent ]; then rm -f {shlex.quote(path)}; "
                     f"elif [ -e {d}/{i} ]; then cp -a {d}/{i} {shlex.quote(path)}; fi"
                     for i, path in enumerate(paths))


def watchdog(guarded: list[tuple[str, Guard]], token: str) -> str:
    """Shell (run detached, `$1` = the apply script's PID) that restores each guarded step
    whose marker is still there, newest first, once the script has ended and the guard's
    time has passed. It takes the host lock first, so it never restores under a live run of
    someone else: while another run holds the lock it waits (that run, finding the marker,
    proves SSH and confirms it, or leaves it for us). Its own run (same token in the lock's
    info) holds the lock while waiting for the proof: then it restores at once."""
    q = shlex.quote
    markers = [q(guard_marker(step, token)) for step, _ in guarded]
    secs = max(g.seconds for _, g in guarded)
    lock, info = q(LOCK_FILE), q(LOCK_FILE + ".info")
    any_left = " || ".join(f"[ -e {m} ]" for m in markers)
    lines = [
        "n=0; while kill -0 \"$1\" 2>/dev/null && "
        f"[ $n -lt {WATCHDOG_SCRIPT_WAIT_S * 5} ]; do sleep 0.2; n=$((n+1)); done",
        f"sleep {secs}",
        f"exec 9>>{lock}",
        f"while {any_left}; do",
        f"  if flock -n 9; then printf 'watchdog of run {token} restoring since %s\\n' "
        f"\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" > {info}; break; fi",
        f"  grep -qs 'token={token}' {info} && break",
        "  sleep 1",
        "done",
    ]
    for (_, g), m in reversed(list(zip(guarded, markers, strict=True))):
        # the lock's fd closed for what the restore starts (wireguard-go, ...): a daemon
        # inheriting it would hold the host lock for as long as it lives
        # taking the marker is atomic (rename): either the laptop's confirmation or this
        # restore wins, never both (see `confirm_shell`)
        lines.append(f"if mv -f {m} {m}.undo 2>/dev/null; then ( exec 9>&-; {g.restore} ); "
                     f"rm -f {m}.undo; fi")
    return "\n".join(lines)


RESTORED = "guard-restored"


def confirm_shell(markers: tuple[str, ...] | list[str]) -> str:
    """Shell that keeps the changes guarded by these markers, unless their watchdog already
    put the host back (the proof of SSH came too late, or worked only because of the
    restore): then it prints MARK guard-restored and exits 3."""
    q = shlex.quote
    take = " && ".join(f"mv -f {q(m)} {q(m + '.kept')} 2>/dev/null" for m in markers)
    kept = " ".join(q(m + ".kept") for m in markers)
    return (f"if {take}; then rm -f {kept}; else rm -f {kept}; "
            f"printf '\\n{MARK} {RESTORED}\\n'; exit 3; fi")


@dataclass
class StepPlan:
    """One step's wanted changes on one host, then what to run once they are in place."""

    step: str
    changes: list[Change] = field(default_factory=list)
    post: list[str] = field(default_factory=list)  # shell run after the changes, if any
    guard: Guard | None = None  # could cut SSH: restored by the host unless confirmed
    notes: list[str] = field(default_factory=list)  # said in the recap (backend choices...)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def apply_script(plans: list[StepPlan], *, cleanup_dirs: tuple[str, ...] = (),
                 interrupt: str | None = None, guard_token: str = "",
                 confirm: tuple[str, ...] = ()) -> str:
    """One script for (a segment of) the changes of one host. Prints `MARK step NAME
    ok|failed`. `confirm`: guard markers of the previous segment, proven to keep SSH working
    since: removed first.

    `interrupt` is for tests of interrupted runs: "STEP" kills the remote shell right after
    that step, "STEP:mid" while it is writing its first file (temp file written, not renamed).
    """
    q = shlex.quote
    out = [
        "umask 077",
        "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        # each step's outcome with its start and end on the host's clock (/proc/uptime, read
        # by a builtin): where a run's time goes, step by step
        "read -r __s __ </proc/uptime 2>/dev/null",
        f"r() {{ read -r __e __ </proc/uptime 2>/dev/null; printf '\\n{MARK} step %s %s %s %s\\n'"
        " \"$1\" \"$2\" \"$__s\" \"$__e\"; __s=$__e; }",
    ]
    if confirm:
        out.append(confirm_shell(confirm))
    for d in cleanup_dirs:  # leftovers of an interrupted earlier run
        out.append(f"rm -f {q(d)}/{TMP_PREFIX}* 2>/dev/null")
    # A shared lock held for as long as this shell lives (by a helper, so that nothing the
    # steps start inherits it): the next run's lock waits for it, so the script of a run that
    # lost its connection cannot go on changing the host under the next run (acquire_lock).
    out.append(f"flock -s {q(APPLY_LOCK)} sh -c \"while kill -0 $$; do sleep 0.2; done\" "
               "</dev/null >/dev/null 2>&1 &")
    guarded = [(p.step, p.guard) for p in plans if p.changes and p.guard]
    if guarded:
        # One watchdog for the segment, started before any change: it waits for this script
        # to end (so a slow step after a guarded one never eats the guard's time), then
        # restores whatever is still unconfirmed.
        out += [f"mkdir -p {GUARD_DIR}",
                f"setsid sh -c {q(watchdog(guarded, guard_token))} watchdog $$ "
                "</dev/null >/dev/null 2>&1 &"]
    for plan in plans:
        if not plan.changes:
            continue
        parts = [c.shell() for c in plan.changes] + plan.post
        if interrupt == f"{plan.step}:mid":
            first = next((i for i, c in enumerate(plan.changes)
                          if isinstance(c, FileChange)), None)
            if first is not None:
                shell = plan.changes[first].shell()
                # the whole session dies (as with a dropped connection), not just this shell
                parts[first] = shell[:shell.rindex("mv -f")] + "kill -KILL 0"
        if plan.guard:
            # armed before the first change: a step that fails half-way is undone too
            parts = [plan.guard.snapshot, f": > {q(guard_marker(plan.step, guard_token))}",
                     *parts]
        body = "\n".join(parts)
        # Not `( ... ) && r ok || ...`: a subshell inside an AND-OR list runs with `set -e`
        # ignored (POSIX; dash, bash and BusyBox alike), so a failing command would not stop
        # the step and the step's status would be its last command's.
        out.append(f"(\nset -e\n{body}\n)\n"
                   f"if [ $? -eq 0 ]; then r {q(plan.step)} ok; "
                   f"else r {q(plan.step)} failed; exit 1; fi")
        if interrupt == plan.step:
            out.append("kill -KILL $$")
    return "\n".join(out) + "\n"


def segments(plans: list[StepPlan]) -> list[list[StepPlan]]:
    """The changed steps cut after each run of guarded steps: each segment is applied by its
    own script, and its guards are proven (a new SSH connection) before the next segment
    starts. So a guard's time never runs behind unrelated slow steps (an image pull, a
    90 s systemd wait) and a change that cut SSH stops the run before anything else."""
    out: list[list[StepPlan]] = []
    for p in (p for p in plans if p.changed):
        if not out or (out[-1][-1].guard and not p.guard):
            out.append([])
        out[-1].append(p)
    return out


def step_outcomes(output: str) -> dict[str, str]:
    """Each step's outcome (ok, failed) as the apply script printed it."""
    return {name: status for name, status, _ in _step_lines(output)}


def step_seconds(output: str) -> dict[str, float]:
    """Each step's seconds on the host, where the script could tell."""
    return {name: secs for name, _, secs in _step_lines(output) if secs is not None}


def _step_lines(output: str) -> list[tuple[str, str, float | None]]:
    out = []
    for line in output.splitlines():
        if line.startswith(f"{MARK} step "):
            name, status, *times = line.split()[2:]
            try:
                secs: float | None = max(0.0, float(times[1]) - float(times[0]))
            except (IndexError, ValueError):
                secs = None
            out.append((name, status, secs))
    return out
