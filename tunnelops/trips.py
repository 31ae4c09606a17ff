"""Round trips and what they carry: a command's result, its seconds on the laptop and on
the host, and the transcript of every byte. Every script reports its own time on the host as
its last line on stderr (stripped before anyone sees it): /proc/uptime read by the shell's
`read` builtin, so it starts no process. A script that sets its own EXIT trap replaces this
one: its host time is then unknown, unless its trap calls `HOST_TIME_FN` too (a probe
batch's does, when the function is defined)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

HOST_TIME = "::tunnelops-host-time::"
HOST_TIME_FN = "__host_time"
TIMED = (f"read -r __t0 __ </proc/uptime 2>/dev/null; {HOST_TIME_FN}() {{ read -r __t1 __ "
         f"</proc/uptime 2>/dev/null; printf \"\\n{HOST_TIME} %s %s\\n\" \"$__t0\" \"$__t1\" >&2; "
         f"}}; trap {HOST_TIME_FN} EXIT\n")
HOST_TIME_RE = re.compile(rf"\n{re.escape(HOST_TIME)} (\S*) (\S*)\n\Z")


@dataclass
class Result:
    stdout: str
    stderr: str
    exit: int

    @property
    def ok(self) -> bool:
        return self.exit == 0


@dataclass(frozen=True)
class Trip:
    """One round trip: what it was, its seconds on the laptop's clock (from sending the script
    to its last answer), and of those the script's own seconds on the host (None: not known,
    e.g. no script ran: a proof that new connections get through)."""

    what: str
    seconds: float
    host: float | None = None

    @property
    def wire(self) -> float:
        return self.seconds - (self.host or 0.0)


def host_seconds(t0: str, t1: str) -> float | None:
    try:
        return max(0.0, float(t1) - float(t0))
    except ValueError:
        return None


def split_host_time(stderr: str) -> tuple[str, float | None]:
    """(stderr without the host-time line, the script's seconds on the host)."""
    m = HOST_TIME_RE.search(stderr)
    if m is None:
        return stderr, None
    return stderr[:m.start()], host_seconds(m.group(1), m.group(2))


@dataclass
class Transcript:
    """Every byte sent to and received from hosts, in order (for audits and secret tests)."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)  # (host, dir, text)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, host: str, direction: str, text: str) -> None:
        with self._lock:
            self.entries.append((host, direction, text))

    def text(self) -> str:
        return "".join(f"--- {h} {d}\n{t}\n" for h, d, t in self.entries)
