"""Where a run's time goes: each script's own time on the host, split from its stderr, and
the recap's seconds on the hosts vs. on the wire."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from rich.console import Console

from tunnelops import ui
from tunnelops.report import HostReport, RunReport
from tunnelops.trips import HOST_TIME, TIMED, Trip, split_host_time

SHELLS = [s for s in (["sh"], ["bash"], ["busybox", "sh"]) if shutil.which(s[0])]


@pytest.mark.parametrize("shell", SHELLS, ids=" ".join)
def test_every_script_reports_its_time_on_the_host_and_keeps_its_exit(shell) -> None:
    res = subprocess.run([*shell, "-s"], input=TIMED + "echo out; echo err >&2; sleep 0.3; "
                         "exit 3\n", capture_output=True, text=True, timeout=30)
    assert (res.returncode, res.stdout) == (3, "out\n")
    stderr, host = split_host_time(res.stderr)
    assert stderr == "err\n"  # what the script said, exactly: the hint shown on failure
    assert host is not None and 0.29 <= host < 5


def test_host_time_is_split_only_from_the_end() -> None:
    assert split_host_time("no marker\n") == ("no marker\n", None)
    assert split_host_time(f"a\n\n{HOST_TIME} 10.50 12.00\n") == ("a\n", 1.5)
    assert split_host_time(f"a\n{HOST_TIME} 1 2\n") == ("a", 1.0)  # no newline of its own
    assert split_host_time(f"\n{HOST_TIME}  \n") == ("", None)  # no /proc/uptime there
    line = f"\n{HOST_TIME} 1 2\n"
    assert split_host_time(line + "later\n") == (line + "later\n", None)


def test_the_recap_splits_seconds_into_hosts_and_wire() -> None:
    h = HostReport("vps", "vps.example", round_trips=2, connects=1, seconds=1.4,
                   connect_seconds=0.3,
                   trips=[Trip("gathering facts", 0.5, 0.4), Trip("proof", 0.2)])
    assert h.host_seconds == pytest.approx(0.4)
    assert h.wire_seconds == pytest.approx(0.3 + 0.1 + 0.2)  # handshake, the rest of trips
    out = io.StringIO()
    Console(file=out, width=200).print(ui.recap(RunReport({"vps": h}, dry_run=False)))
    head, row = [x for x in out.getvalue().splitlines() if "┃" in x or "│" in x][:2]
    assert [c.strip() for c in head.split("┃")[1:-1]] == [
        "host", "ok", "changed", "failed", "round trips", "connections", "seconds", "on host",
        "on wire"]
    assert [c.strip() for c in row.split("│")[-4:-1]] == ["1.4", "0.4", "0.6"]
