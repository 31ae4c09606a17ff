"""What verify reports: a row per check, each host's cost, and the whole as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class Row:
    """One row: what was checked, what was measured, and the fix when it failed.
    ok=None: not checked (a link it depends on is unreachable)."""

    id: str
    name: str
    ok: bool | None
    measured: str
    hint: str = ""

    @property
    def status(self) -> str:
        return {True: "pass", False: "fail", None: "skip"}[self.ok]


@dataclass
class HostRun:
    dest: str
    round_trips: int = 0
    connects: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class VerifyReport:
    site: str
    checks: list[Row]
    hosts: dict[str, HostRun] = field(default_factory=dict)
    seconds: float = 0.0
    whoami_url: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def __bool__(self) -> bool:  # `if verify(...)`: all rows pass
        return self.ok

    @property
    def failed(self) -> list[Row]:
        return [c for c in self.checks if c.ok is False]

    @property
    def first_failure(self) -> Row | None:
        """The first broken link in chain order: fix this one first."""
        return next(iter(self.failed), None)

    def check(self, check_id: str) -> Row:
        return next(c for c in self.checks if c.id == check_id)

    def to_json(self) -> str:
        first = self.first_failure
        return json.dumps({
            "site": self.site,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "whoami_url": self.whoami_url,
            "hosts": {r: {**asdict(h), "seconds": round(h.seconds, 3)}
                      for r, h in self.hosts.items()},
            "round_trips": sum(h.round_trips for h in self.hosts.values()),
            "first_failure": first.id if first else None,
            "checks": [{"id": c.id, "status": c.status, "check": c.name,
                        "measured": c.measured, "hint": c.hint} for c in self.checks],
        }, indent=2)
