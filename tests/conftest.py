"""Shared fixtures for the test suite.

Lab tests (end-to-end, need root) run against their OWN lab instance, never the default
instance "lab" that people use by hand:

    TUNNELOPS_TEST_LAB        instance name   (default "labt")
    TUNNELOPS_TEST_LAB_INDEX  instance index  (default 7: LAN 10.77.7.0/24, VPS 198.51.100.17)

Fixtures:

- `lab` (session): the test instance, brought up once for the whole session and taken down at
  the end. Any leftover of an earlier session that died is removed first, so every session
  starts from a fresh lab. If `up` fails, every test using it FAILS (errors) -- it never
  skips. Tests share this instance: each test must leave it as it found it (remove the
  containers it started, close the firewall ports it opened, delete the files it wrote...),
  because later tests (bootstrap, tunnel, ...) build on it.

- `lab_factory` (function): `lab_factory(name, index)` returns a `Lab` for a SEPARATE, extra
  instance (for tests that need to bring a lab up and down themselves, e.g. down/crash tests,
  latency). Any leftover of that instance is removed first; it is NOT brought up; it is taken
  down when the test ends, whatever happened. Names and indexes must differ from the session
  instance's (and the name can never be "lab").

Both refuse (fail) an index that another, differently named instance already uses on this
machine (its VPS address would clash), rather than failing obscurely half-way through `up`.

- `lab_report` (function): `lab_report("up took 1.2 s")` adds a line to a "lab report" section
  printed at the end of the run (measurements worth seeing even when tests pass).

Several checkouts (worktrees) may run lab tests on one machine at once: TUNNELOPS_TEST_SLOT=N
(1-4) gives every test instance of this checkout a name suffix zN and an index +20*N, so their
namespaces, links and addresses never meet (`slot(name, index)`).

Mark lab test modules with `pytestmark = pytest.mark.lab` (the marker is declared in
pyproject.toml), so `pytest -m "not lab"` runs the rest without root.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tunnelops.lab import Lab, LabError, Topology

RESERVED_NAMES = {"lab"}  # the default instance: somebody else's, never touched by tests
_REPORT_KEY = pytest.StashKey[list[str]]()


def slot(name: str, index: int) -> tuple[str, int]:
    """A test instance's (name, index) in this checkout's slot (TUNNELOPS_TEST_SLOT)."""
    n = int(os.environ.get("TUNNELOPS_TEST_SLOT", "0") or 0)
    if not 0 <= n <= 4:
        raise pytest.UsageError(f"TUNNELOPS_TEST_SLOT={n} is out of range: use 0-4")
    # 'z' appears in no base name: labb in slot 2 never meets labb2 in slot 0
    return (f"{name}z{n}", index + 20 * n) if n else (name, index)


def session_lab_topology() -> Topology:
    """The session test instance's topology, from the environment."""
    name, index = slot(os.environ.get("TUNNELOPS_TEST_LAB", "labt"),
                       int(os.environ.get("TUNNELOPS_TEST_LAB_INDEX", "7")))
    if name in RESERVED_NAMES:
        pytest.fail(f"TUNNELOPS_TEST_LAB={name!r} is the default, hand-used lab instance: tests "
                    "bring their instance down, so pick another name (default: labt)",
                    pytrace=False)
    return Topology(name, index)


def check_index_free(topo: Topology) -> None:
    """Fail if another lab instance on this machine already routes this instance's VPS."""
    route = subprocess.run(["ip", "-o", "route", "show", f"{topo.vps_public}/32"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if route and f"dev {topo.laptop_link} " not in f"{route} ":
        pytest.fail(f"lab index {topo.index} (VPS {topo.vps_public}) is already used by another "
                    f"instance ({route}): pick another index for {topo.name!r}", pytrace=False)


def own_lab(topo: Topology, inventory_dir: Path | None = None,
            rtt_ms: int = 0) -> Iterator[Lab]:
    """Body of a lab fixture: the instance fresh (whatever an earlier run left is removed
    first), up (RTT_MS of WAN latency to the VPS), and down at the end. Fails (never skips)
    if it cannot be brought up."""
    instance = Lab(topo, inventory_dir=inventory_dir)
    check_index_free(topo)
    instance.down()
    try:
        instance.up(rtt_ms=rtt_ms)
    except LabError as e:
        pytest.fail(f"cannot bring the lab {topo.name!r} up: {e}", pytrace=False)
    try:
        yield instance
    finally:
        instance.down()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The session's lab instance, up."""
    yield from own_lab(session_lab_topology())


@pytest.fixture
def lab_factory() -> Iterator[Callable[[str, int], Lab]]:
    """Make separate lab instances (not up); all of them are taken down after the test."""
    made: list[Lab] = []
    session = session_lab_topology()

    def make(name: str, index: int) -> Lab:
        if name in RESERVED_NAMES or name == session.name or index == session.index:
            pytest.fail(f"separate lab instance {name!r}/{index} collides with the default "
                        f"instance or the session test instance {session.name!r}/"
                        f"{session.index}", pytrace=False)
        instance = Lab(Topology(name, index))
        check_index_free(instance.topo)
        instance.down()  # leftovers of an earlier run that died
        made.append(instance)
        return instance

    yield make
    errors = []
    for instance in made:
        try:
            instance.down()
        except Exception as e:
            errors.append(f"{instance.topo.name}: {e}")
    if errors:
        pytest.fail(f"lab down failed: {'; '.join(errors)}", pytrace=False)


@pytest.fixture
def lab_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Add a line to the "lab report" printed at the end of the run."""
    lines = request.config.stash.setdefault(_REPORT_KEY, [])

    def report(line: str) -> None:
        lines.append(f"{request.node.name}: {line}")

    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = config.stash.get(_REPORT_KEY, [])
    if lines:
        terminalreporter.section("lab report")
        for line in lines:
            terminalreporter.write_line(line)
