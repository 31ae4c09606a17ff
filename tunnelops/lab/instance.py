"""A lab instance: its hosts, names and paths, commands run inside its hosts, its state.

Every name the lab creates (namespaces, the one link in this machine's namespace, files under
its state directory, the inventory file) derives from the instance name, so `down` can find
and remove all of it from names alone. Lab is made of parts, one module each: bringup.py
(`up`), teardown.py (`down`), ownership.py (who owns the name: another checkout's instance
is refused); procs.py is what they ask of this machine, state.py where the state lives.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tunnelops import prog
from tunnelops.lab.bringup import BringUp
from tunnelops.lab.ownership import Ownership
from tunnelops.lab.procs import (
    LabError,
    _alive,
    _comm,
    _ns_inode,
    _pidfile_alive,
    _pids,
    _run,
    root_netns_inode,
)
from tunnelops.lab.state import PROJECT, _read_json, default_root, registry
from tunnelops.lab.teardown import TearDown
from tunnelops.lab.topology import Topology

DAEMONS = ("sshd", "dbus-daemon", "NetworkManager", "firewalld", "wireguard-go", "conmon")


@dataclass
class HostStatus:
    role: str
    netns: str
    address: str
    present: bool
    daemons: list[str] = field(default_factory=list)
    ssh: str = "-"


class Lab(Ownership, BringUp, TearDown):
    kind = "namespace"  # VmLab (vm.py): "vm"

    def __init__(self, topo: Topology | None = None, root: Path | None = None,
                 inventory_dir: Path | None = None) -> None:
        self.topo = topo or Topology()
        self.root = (root or default_root()).absolute()  # compared with other checkouts
        self.state = self.root / self.topo.name
        self.inventory_dir = inventory_dir or PROJECT / "inventory"
        # an instance brought up with more homes than asked for now (lab.down, lab.status):
        # the homes it has
        homes = int((_read_json(self.state / "up.json") or {}).get("homes") or 1)
        if homes > self.topo.homes:
            self.topo = dataclasses.replace(self.topo, homes=homes)

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.topo.hosts

    def _roles(self) -> set[str]:
        """Every role of this instance, and of any home left by an `up` with more homes."""
        listed = _run(["ip", "-j", "netns", "list"], check=False).stdout or b"[]"
        prefix = f"{self.topo.name}-home"
        extra = {n["name"].removeprefix(f"{self.topo.name}-") for n in json.loads(listed or b"[]")
                 if n["name"].startswith(prefix) and n["name"][len(prefix):].isdigit()}
        return {*self.topo.roles, *extra}

    # ---------------------------------------------------------------- paths
    @property
    def key(self) -> Path:
        return self.state / "id_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.state / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.state / "known_hosts"

    @property
    def inventory(self) -> Path:
        return self.inventory_dir / f"{self.topo.name}.toml"

    @property
    def owner_file(self) -> Path:
        return self.state / "owner.json"

    @property
    def registry_file(self) -> Path:
        return registry() / f"{self.topo.name}.json"

    def _host_dir(self, role: str) -> Path:
        return self.state / "hosts" / role

    def _netns_path(self, role: str) -> Path:
        return Path("/run/netns") / self.topo.netns(role)

    def holder_pid(self, role: str) -> int | None:
        """PID (in this machine's namespace) of a full host's PID 1, if it runs."""
        try:
            pid = int((self._host_dir(role) / "holder.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    # ---------------------------------------------------------------- running things inside
    def exec(self, role: str, argv: Sequence[str], *, user: str | None = None,
             input: bytes | None = None, check: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        """Run argv inside a lab host (all its namespaces) or a bare namespace (inet, router),
        without SSH. `user` runs it as that user with a login-like environment."""
        if role in self.hosts:
            pid = self.holder_pid(role)
            if pid is None:
                raise LabError(f"lab host {self.topo.alias(role)} is not running: run "
                               f"{prog.cmd('lab.up')}")
            prefix = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--"]
        else:
            prefix = ["nsenter", f"--net={self._netns_path(role)}", "--"]
        if user:
            prefix += ["runuser", "-u", user, "--", "sh", "-c",
                       'export HOME=$(getent passwd "$(id -un)" | cut -d: -f6) USER=$(id -un)'
                       ' XDG_RUNTIME_DIR=/run/user/$(id -u); cd "$HOME"; exec "$@"', "sh"]
        return _run([*prefix, *argv], input=input, check=check, timeout=timeout)

    def _spawn_in_netns(self, role: str, argv: Sequence[str], name: str) -> int:
        """Start a long-running process inside a lab namespace; record its PID."""
        ns = self._netns_path(role)
        if os.stat(ns).st_ino == root_netns_inode():
            raise LabError(f"{ns} is this machine's own namespace: refusing to start {name}")
        log = open(self.state / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(["nsenter", f"--net={ns}", "--", *argv], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=PROJECT)
        (self.state / f"{name}.pid").write_text(str(proc.pid))
        self._wait_for(lambda: b"READY" in (self.state / f"{name}.log").read_bytes(),
                       f"{name} did not start", proc=proc, log=self.state / f"{name}.log")
        return proc.pid

    @staticmethod
    def _wait_for(cond, what: str, *, timeout: float = 15, proc: subprocess.Popen | None = None,
                  log: Path | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.02)
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log else []
        raise LabError(f"{what}: {' | '.join(tail) or 'timed out'}")

    def is_up(self) -> bool:
        # The lab's own processes count too (whoami, the latency relay): if one died, the lab
        # is broken and `up` must rebuild it rather than report "already up".
        return (self.state / "up.json").exists() and all(
            self.holder_pid(r) for r in self.hosts) and all(
            self._netns_path(r).exists() for r in self.topo.roles) and all(
            _pidfile_alive(f) for f in self.state.glob("*.pid"))

    # ---------------------------------------------------------------- status
    def status(self) -> list[HostStatus]:
        rows = []
        procs = [(p, _ns_inode(p, "pid"), _comm(p)) for p in _pids()]
        for role in self.topo.roles:
            row = HostStatus(role, self.topo.netns(role), self.topo.address(role),
                             self._netns_path(role).exists())
            if role in self.hosts and (pid := self.holder_pid(role)):
                pidns = _ns_inode(pid, "pid")
                row.daemons = sorted({c for _, n, c in procs if n == pidns and c in DAEMONS})
            elif role == "inet" and (self.state / "whoami.pid").exists():
                row.daemons = ["whoami"] if _alive(int((self.state / "whoami.pid")
                                                       .read_text())) else []
            rows.append(row)
        with ThreadPoolExecutor(2) as pool:
            answers = dict(zip(self.hosts, pool.map(self._ssh_answers, self.hosts),
                               strict=True))
        for row in rows:
            if row.role in self.hosts:
                row.ssh = answers[row.role]
        return rows

    def _ssh_answers(self, role: str) -> str:
        if not self.ssh_config.exists():
            return "no"
        t0 = time.monotonic()
        proc = self.ssh(role, ["true"], check=False, timeout=10)
        return f"yes ({(time.monotonic() - t0) * 1000:.0f} ms)" if proc.returncode == 0 else "no"

    def ssh(self, role: str, argv: Sequence[str], *, user: str | None = None,
            check: bool = True, timeout: float = 30,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run a command on a lab host through real SSH, with the lab's ssh_config."""
        dest = self.topo.alias(role) if user is None else f"{user}@{self.topo.alias(role)}"
        return _run(["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", dest, "--",
                     *argv], check=check, timeout=timeout, input=input)

