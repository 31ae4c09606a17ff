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

from tunnelops.backends.originals import backup_shell
from tunnelops.facts import MARK
from tunnelops.model import PRIVATE_KEY_PLACEHOLDER
from tunnelops.remote import APPLY_LOCK_PATH

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
    """A dead man's switch for a firewall change, kept on the host itself.

    `snapshot` saves the current state before the change; after it, a detached watchdog runs
    `restore` in `seconds` unless the laptop proves that a *fresh* SSH connection still works
    by removing the marker file. So a change that cuts SSH undoes itself, even if the laptop
    has vanished."""

    snapshot: str
    restore: str
    seconds: int = 20


GUARD_DIR = "/run/tunnelops"


def guard_marker(step: str, token: str = "") -> str:
    """The marker a step's watchdog waits on. A run's token makes it that run's own: a
    watchdog of an earlier run still asleep (confirmed, or its run died) never acts on a
    later run's marker, nor restores that later run's snapshot."""
    return f"{GUARD_DIR}/guard.{step}" + (f".{token}" if token else "")


@dataclass
class StepPlan:
    """One step's wanted changes on one host, then what to run once they are in place."""

    step: str
    changes: list[Change] = field(default_factory=list)
    post: list[str] = field(default_factory=list)  # shell run after the changes, if any
    guard: Guard | None = None  # firewall changes: restored by the host unless confirmed
    notes: list[str] = field(default_factory=list)  # said in the recap (backend choices...)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def apply_script(plans: list[StepPlan], *, cleanup_dirs: tuple[str, ...] = (),
                 interrupt: str | None = None, guard_token: str = "") -> str:
    """One script for all the changes of one host. Prints `MARK step NAME ok|failed`.

    `interrupt` is for tests of interrupted runs: "STEP" kills the remote shell right after
    that step, "STEP:mid" while it is writing its first file (temp file written, not renamed).
    """
    q = shlex.quote
    out = [
        "umask 077",
        "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"r() {{ printf '\\n{MARK} step %s %s\\n' \"$1\" \"$2\"; }}",
    ]
    for d in cleanup_dirs:  # leftovers of an interrupted earlier run
        out.append(f"rm -f {q(d)}/{TMP_PREFIX}* 2>/dev/null")
    # A shared lock held for as long as this shell lives (by a helper, so that nothing the
    # steps start inherits it): the next run's lock waits for it, so the script of a run that
    # lost its connection cannot go on changing the host under the next run (acquire_lock).
    out.append(f"flock -s {q(APPLY_LOCK)} sh -c \"while kill -0 $$; do sleep 0.2; done\" "
               "</dev/null >/dev/null 2>&1 &")
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
            g, marker = plan.guard, q(guard_marker(plan.step, guard_token))
            watchdog = (f"sleep {g.seconds}; [ -e {marker} ] || exit 0; rm -f {marker}; "
                        f"{g.restore}")
            parts = [
                f"mkdir -p {GUARD_DIR}", g.snapshot, *parts,
                f": > {marker}",
                f"setsid sh -c {q(watchdog)} </dev/null >/dev/null 2>&1 &",
            ]
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


def step_outcomes(output: str) -> dict[str, str]:
    res: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith(f"{MARK} step "):
            _, _, name, status = line.split(" ", 3)
            res[name] = status
    return res
