"""`down`: every namespace, link, process and file of a lab instance removed, found from its
names alone (also after a crash half-way through `up`); processes are found through the
namespaces they live in and stopped by PID, never by name. A part of Lab (instance.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

from tunnelops.lab.procs import _alive, _ns_inode, _ns_inode_path, _pids, _run
from tunnelops.lab.state import INVENTORY_HEADER, _read_json
from tunnelops.lab.topology import Topology


class TearDown:
    """Lab's methods that take an instance down."""

    topo: Topology
    state: Path

    def down(self) -> None:
        """Remove every namespace, link, process and file of this instance. Refuses
        (LabError) an instance of this name that another checkout runs."""
        with self._name_lock():
            self._refuse_foreign("tearing it down")
            self._down()

    def _down(self) -> None:
        roles = self._roles()
        inodes = {ino for r in roles
                  if (ino := _ns_inode_path(self._netns_path(r))) is not None}
        for role in sorted(r for r in roles if r == "vps" or r.startswith("home")):
            # SIGKILL to a PID namespace's init kills everything in it
            pid = self.holder_pid(role)
            if pid:
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while inodes and time.monotonic() < deadline:
            stray = [p for p in _pids() if _ns_inode(p, "net") in inodes and _alive(p)]
            if not stray:
                break
            for p in stray:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.05)
        for r in roles:
            if self._netns_path(r).exists():
                _run(["ip", "netns", "del", self.topo.netns(r)], check=False)
        if Path(f"/sys/class/net/{self.topo.laptop_link}").exists():
            _run(["ip", "link", "del", self.topo.laptop_link], check=False)
        # the site file where `up` wrote it (the inventory directory may differ today), and
        # only if the lab wrote it: a user's own site of this name stays
        recorded = (_read_json(self.owner_file) or {}).get("inventory")
        for path in {self.inventory, *([Path(recorded)] if recorded else [])}:
            with contextlib.suppress(OSError):
                if path.read_text().startswith(INVENTORY_HEADER):
                    path.unlink()
        shutil.rmtree(self.state, ignore_errors=True)
        self.registry_file.unlink(missing_ok=True)

    def leftovers(self) -> bool:
        names = {self.topo.netns(r) for r in self._roles()}
        listed = _run(["ip", "-j", "netns", "list"], check=False).stdout or b"[]"
        present = {n["name"] for n in json.loads(listed or b"[]")}
        link = Path(f"/sys/class/net/{self.topo.laptop_link}").exists()
        return bool(names & present) or link or self.state.exists()
