"""What the lab asks of this machine: commands run (a failure is a LabError, one line), and
its processes and namespaces read from /proc (a PID with its start time names one process;
a namespace is known by its inode). Nothing is found or stopped by name."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


class LabError(RuntimeError):
    """One line: what went wrong in the lab and what to do."""



def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): with the PID, it names one process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def root_netns_inode() -> int:
    # The laptop's namespace (where `inv` runs): /proc/1 may be unreadable in sandboxes.
    return os.stat("/proc/self/ns/net").st_ino


def _run(argv: Sequence[str], *, input: bytes | None = None, check: bool = True,
         timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        raise LabError(f"{' '.join(argv[:6])} failed: {err[-1] if err else proc.returncode}")
    return proc


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _pidfile_alive(path: Path) -> bool:
    try:
        return _alive(int(path.read_text()))
    except (OSError, ValueError):
        return False


def _ns_inode(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _ns_inode_path(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None
