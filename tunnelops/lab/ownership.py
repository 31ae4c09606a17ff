"""Who owns a lab instance's name on this machine. Names are machine-wide but state
directories are per checkout, so an instance records its owner: owner.json in its state
directory (the checkout, the PID of `up`, the boot id), and a pointer to it in the registry
(/run/tunnelops-lab/) that any checkout finds by the name. `up` and `down` refuse an instance
that another checkout owns while anything of it runs; leftovers of a dead one (its processes
gone, or from an earlier boot) are cleaned as before. A per-name lock keeps two `up`/`down` of
one name from interleaving. A part of Lab (instance.py): it uses the instance's paths."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tunnelops.lab.procs import (
    LabError,
    _alive,
    _ns_inode,
    _ns_inode_path,
    _pids,
    _start_time,
    boot_id,
)
from tunnelops.lab.state import _read_json, _write_json, project_label, registry
from tunnelops.lab.topology import Topology

LOCK_WAIT_S = 60


@dataclass(frozen=True)
class Owner:
    """Who brought an instance up: owner.json of its state directory."""

    state: Path
    project: str = "an unknown checkout"
    pid: int = 0
    pid_start: int | None = None
    boot: str = ""
    since: str = "?"
    inventory: str | None = None
    ready: bool = False

    @classmethod
    def from_record(cls, data: dict, state: Path | None = None) -> Owner:
        return cls(state=Path(data.get("state") or state or "?"),
                   project=str(data.get("project") or "an unknown checkout"),
                   pid=int(data.get("pid") or 0), pid_start=data.get("pid_start"),
                   boot=str(data.get("boot_id") or ""), since=str(data.get("since") or "?"),
                   inventory=data.get("inventory"), ready=bool(data.get("ready")))

    def up_running(self) -> bool:
        """Its `up` is still under way (not ready yet; this boot, the same process)."""
        return not self.ready and bool(self.pid) and self.boot == boot_id() \
            and _alive(self.pid) and _start_time(self.pid) == self.pid_start


class Ownership:
    """Lab's methods for its name: the lock, the owner, the refusal of another's instance."""

    topo: Topology
    state: Path

    @contextlib.contextmanager
    def _name_lock(self):
        """One `up`/`down` of this name at a time, machine-wide."""
        registry().mkdir(parents=True, exist_ok=True)
        with open(registry() / f"{self.topo.name}.lock", "a") as f:
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LabError(f"another lab.up or lab.down of '{self.topo.name}' has "
                                       f"been running for {LOCK_WAIT_S}s: wait for it, or "
                                       "use another --name") from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def running_pids(self) -> list[int]:
        """Processes living in this instance's network namespaces (whoever made them)."""
        inodes = {ino for r in self._roles()
                  if (ino := _ns_inode_path(self._netns_path(r))) is not None}
        return [p for p in _pids() if _ns_inode(p, "net") in inodes and _alive(p)] \
            if inodes else []

    def owner(self) -> Owner | None:
        """Who holds this instance's name on this machine. Running hosts say it themselves
        (the state directory their init runs from: true also of an instance made before
        owners were recorded, or over a stale record); else the registry (an `up` that has
        not started its hosts yet, or a dead instance's record)."""
        for pid in self.running_pids():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # `unshare ... /bin/bash .../hostinit.sh ALIAS STATE/hosts/ROLE ...` (the host's
            # PID 1 itself becomes catatonit)
            at = next((i for i, a in enumerate(argv) if a.endswith(b"/hostinit.sh")), None)
            if at is not None and at + 2 < len(argv):
                state = Path(argv[at + 2].decode(errors="replace")).parent.parent
                record = _read_json(state / "owner.json") or {
                    "project": state.parent.parent if state.parent.name == ".lab" else None}
                return Owner.from_record(record, state)
        data = _read_json(self.registry_file)
        if data is not None and data.get("boot_id") == boot_id():
            return Owner.from_record(data)
        return None

    def foreign_owner(self) -> Owner | None:
        """The owner, if it is another checkout's instance and anything of it is alive."""
        owner = self.owner()
        if owner is None or owner.state == self.state:
            return None
        if self.running_pids() or owner.up_running():
            return owner
        return None

    def _refuse_foreign(self, what: str) -> None:
        owner = self.foreign_owner()
        if owner is not None:
            raise LabError(f"lab '{self.topo.name}' belongs to {owner.project} (state "
                           f"{owner.state}, up since {owner.since}) and is running: not "
                           f"{what}; use another --name and --index")

    def _claim(self, ready: bool = False) -> None:
        """Record this checkout as the owner: before anything is made (ready=False: an `up`
        under way, alive while its process is), and again once the lab is up."""
        record = _read_json(self.owner_file) if ready else None
        record = record or {
            "project": project_label(), "state": str(self.state), "pid": os.getpid(),
            "pid_start": _start_time(os.getpid()), "boot_id": boot_id(),
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "inventory": str(self.inventory)}
        record["ready"] = ready
        _write_json(self.owner_file, record)
        _write_json(self.registry_file, record)

