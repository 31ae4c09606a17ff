"""What starting tunnelops imports: `--help` and a run's start import only what they use
(issue 14: interpreter start and imports were a third of a no-op run)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("paramiko", "fabric", "cryptography", "rich", "tomlkit", "pygments")


def imported(code: str) -> set[str]:
    """Modules imported by running `code` in a new interpreter."""
    res = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(res.stdout.splitlines()[-1]))


def test_help_needs_no_ssh_nor_console() -> None:
    mods = imported("from tunnelops.program import Tunnelops\n"
                    "Tunnelops().run(['tunnelops', '--help'], exit=False)")
    assert "invoke" in mods  # the control: the program did run
    assert {m.split(".")[0] for m in mods} & set(HEAVY) == set()
    assert {"tunnelops.commands", "tunnelops.engine", "tunnelops.verify",
            "tunnelops.lab.instance", "tunnelops.lab.bringup", "tunnelops.lab.teardown",
            "tunnelops.lab.ownership", "tunnelops.lab.procs", "tunnelops.lab.state"} & mods == set()


def test_a_run_starts_its_handshakes_before_the_engine_and_the_console() -> None:
    """commands.run starts both SSH handshakes, then imports the engine and rich while they
    are in flight: importing commands must not import them."""
    mods = imported("import tunnelops.commands")
    assert "paramiko" in mods  # SSH: the handshakes need it
    assert {"tunnelops.engine", "tunnelops.guarded", "tunnelops.ui", "tunnelops.verify",
            "tunnelops.logs", "tunnelops.steps", "rich", "tomlkit"} & mods == set()
