"""What a run tells: its phases as they happen (to a Ui: any object with its methods), and
the report it returns (RunReport: each host's steps, round trips and seconds), which the
recap, the profile and the benchmark read."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunnelops.facts import HostFacts
    from tunnelops.trips import Trip


class Ui:
    """What the engine tells whoever watches. The default says nothing."""

    def phase(self, role: str, text: str) -> None: ...


class Phases(Ui):
    """Remembers each host's last phase (for Ctrl-C's message), then tells the real Ui."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui
        self.last: dict[str, str] = {}
        self.timeline: dict[str, list[tuple[float, str]]] = {}  # (time.time(), phase)

    def phase(self, role: str, text: str) -> None:
        self.last[role] = text
        self.timeline.setdefault(role, []).append((time.time(), text))
        self.ui.phase(role, text)


@dataclass
class StepResult:
    step: str
    status: str  # ok | changed | failed | would change
    changes: list[str] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None  # on the host, as its apply script measured it


@dataclass
class HostReport:
    role: str  # the host's name in the site: "vps" (the hub), or the home's name
    dest: str
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None
    round_trips: int = 0
    connects: int = 0
    seconds: float = 0.0
    facts: HostFacts | None = None
    connect_seconds: float = 0.0  # the SSH handshake
    trips: list[Trip] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (time.time(), phase)

    @property
    def host_seconds(self) -> float:
        """Spent by the scripts on the host, as the host counted it."""
        return sum(t.host or 0.0 for t in self.trips)

    @property
    def wire_seconds(self) -> float:
        """Spent between the laptop and the host: the handshake, and each round trip's
        seconds that were not the script's on the host."""
        return self.connect_seconds + sum(t.wire for t in self.trips)

    def count(self, status: str) -> int:
        return sum(1 for s in self.steps if s.status == status)

    @property
    def notes(self) -> list[str]:
        return [n for s in self.steps for n in s.notes]


@dataclass
class RunReport:
    hosts: dict[str, HostReport]
    dry_run: bool
    discovered: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(h.error is None and h.count("failed") == 0 for h in self.hosts.values())

    @property
    def failed(self) -> list[str]:
        """The hosts that failed, by name."""
        return [n for n, h in self.hosts.items() if h.error or h.count("failed")]

