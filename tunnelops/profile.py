"""Where a run's time goes, for the benchmark (tests/bench/): named moments of this process
on the wall clock (comparable with the process that started it) and the reports of its
runs, written as JSON when the process ends, if TUNNELOPS_PROFILE names a file. Otherwise
a mark is one dictionary store: nothing is written, nothing else is imported."""

from __future__ import annotations

import os
import time

ENV = "TUNNELOPS_PROFILE"
marks: dict[str, float] = {}
runs: list[dict] = []


def mark(name: str) -> None:
    """The first time `name` happened (time.time())."""
    if name not in marks:
        marks[name] = time.time()


def record(report: object) -> None:
    """A run's report (report.RunReport): each host's phases and round trips."""
    if not os.environ.get(ENV):
        return
    hosts = {}
    for role, h in getattr(report, "hosts", {}).items():
        hosts[role] = {"timeline": h.timeline, "connect": h.connect_seconds,
                       "trips": [(t.what, t.seconds, t.host) for t in h.trips],
                       "round_trips": h.round_trips, "connects": h.connects,
                       "seconds": h.seconds,
                       "steps": [(s.step, s.status, s.seconds) for s in h.steps]}
    runs.append({"hosts": hosts})


def finish() -> None:
    """Write the profile, if asked for (the program calls this as it exits)."""
    if not os.environ.get(ENV):
        return
    import json

    marks.setdefault("exit", time.time())
    with open(os.environ[ENV], "w") as f:
        json.dump({"marks": marks, "runs": runs}, f)
