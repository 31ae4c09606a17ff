"""The VM tier's session: two qemu VMs (Debian 13, systemd, kernel WireGuard) booted ONCE for the
whole session and shared by every VM test, in order (tests/vm/test_vm.py).

    TUNNELOPS_TEST_VM        instance name   (default "vmt")
    TUNNELOPS_TEST_VM_INDEX  instance index  (default 40: LAN 10.77.40.0/24, VPS 198.51.100.50)

TUNNELOPS_TEST_SLOT applies as for the namespace lab (tests/conftest.py: slot()). If the VMs
cannot come up (no qemu, no image, a boot that fails), every VM test FAILS: never a skip. The
image is built first if the cache has none (~3 min), then both VMs boot (~2-4 min here).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import check_index_free, slot
from tunnelops.lab import LabError, Topology
from tunnelops.lab.vm import VmLab

# Emulated hosts are slow: home's verify script alone takes ~25 s, and each firewall-cmd
# 2-20 s (Python under emulation, more on a loaded machine): home's first apply took 60-300 s.
os.environ.setdefault("TUNNELOPS_TIMEOUT", "600")


@dataclass
class VmSession:
    lab: VmLab
    up_seconds: float
    pristine: dict[str, dict[str, str]] = field(default_factory=dict)  # before tunnelops
    notes: dict[str, object] = field(default_factory=dict)  # what earlier tests measured


def vm_topology() -> Topology:
    name, index = slot(os.environ.get("TUNNELOPS_TEST_VM", "vmt"),
                       int(os.environ.get("TUNNELOPS_TEST_VM_INDEX", "40")))
    if name == "lab":
        pytest.fail("TUNNELOPS_TEST_VM='lab' is the hand-used instance: pick another name",
                    pytrace=False)
    return Topology(name, index)


@pytest.fixture(scope="session")
def vms(request: pytest.FixtureRequest) -> Iterator[VmSession]:
    """The session's VM instance, up, with each VM's state recorded before any test."""
    from tests.vm.state import snapshot

    lab = VmLab(vm_topology(), report=_reporter())
    check_index_free(lab.topo)
    lab.down()  # a crashed earlier session may have left it behind
    t0 = time.monotonic()
    try:
        lab.up()
    except (LabError, OSError, subprocess.SubprocessError) as e:
        lab.down()
        pytest.fail(f"the VM tier cannot come up ({lab.topo.name}): {e}", pytrace=False)
    session = VmSession(lab, time.monotonic() - t0)
    try:
        session.pristine = {role: snapshot(lab, role) for role in ("vps", "home")}
        yield session
    finally:
        lab.down()


def _reporter() -> Callable[[str, str], None]:
    """Boot progress on stderr, one line per phase change (pytest -s shows it)."""
    last: dict[str, str] = {}

    def report(what: str, text: str) -> None:
        phase = text.split("(")[0].split(":")[0]
        if last.get(what) != phase:
            last[what] = phase
            print(f"[vm {what}] {text}", flush=True)

    return report
