"""Bring a lab instance up and down, inspect it, run commands inside its hosts.

Every name the lab creates (namespaces, the one link in this machine's namespace, files under
its state directory, the inventory file) derives from the instance name, so `down` can find
and remove all of it from names alone, also after a crash half-way through `up`. Processes
are found through the namespaces they live in and stopped by PID, never by name.

Names are machine-wide but state directories are per checkout, so an instance records who
owns it: owner.json in its state directory (the checkout, the PID of `up`, the boot id), and
a pointer to it under /run/tunnelops-lab/ that any checkout finds by the name. `up` and
`down` refuse an instance that another checkout owns while anything of it runs; leftovers of
a dead one (its processes gone, or from an earlier boot) are cleaned as before. A per-name
lock keeps two `up`/`down` of one name from interleaving.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tunnelops import prog
from tunnelops.lab import image
from tunnelops.lab.topology import HOSTS as HOSTS  # re-exported: tests import it from here
from tunnelops.lab.topology import PODMAN_USER, SUDO_USER, WHOAMI_PORT, Topology
from tunnelops.locations import state_dir

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
CHECKOUT = (PROJECT / "pyproject.toml").exists()  # else an installed tunnelops
DAEMONS = ("sshd", "dbus-daemon", "NetworkManager", "firewalld", "wireguard-go", "conmon")
INVENTORY_HEADER = "# The lab site: written by"
# each home's one service in a lab of several homes: distinct ports the echo image answers on
LAB_SERVICES = (("game", ("12345/udp", "12346/tcp")), ("voice", ("12347/udp", "12348/tcp")),
                ("chat", ("12349/udp", "27015/tcp")), ("web", ("27016/udp", "27017/tcp")),
                ("srcds", ("27018/udp", "27019/tcp")))
LOCK_WAIT_S = 60


class LabError(RuntimeError):
    """One line: what went wrong in the lab and what to do."""


def default_root() -> Path:
    if "TUNNELOPS_LAB_DIR" in os.environ:
        return Path(os.environ["TUNNELOPS_LAB_DIR"])
    return PROJECT / ".lab" if CHECKOUT else state_dir(os.environ, Path.home()) / "lab"


def registry() -> Path:
    """Machine-wide: which state directory owns each instance name (on /run: gone at boot,
    like the namespaces it describes)."""
    return Path(os.environ.get("TUNNELOPS_LAB_REGISTRY", "/run/tunnelops-lab"))


def project_label() -> str:
    return str(PROJECT) if CHECKOUT else f"tunnelops installed in {sys.prefix}"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): with the PID, it names one process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


def root_netns_inode() -> int:
    # The laptop's namespace (where `inv` runs): /proc/1 may be unreadable in sandboxes.
    return os.stat("/proc/self/ns/net").st_ino


def _run(argv: Sequence[str], *, input: bytes | None = None, check: bool = True,
         timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        raise LabError(f"{' '.join(argv[:6])} failed: {err[-1] if err else proc.returncode}")
    return proc


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _pidfile_alive(path: Path) -> bool:
    try:
        return _alive(int(path.read_text()))
    except (OSError, ValueError):
        return False


def _ns_inode(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass
class HostStatus:
    role: str
    netns: str
    address: str
    present: bool
    daemons: list[str] = field(default_factory=list)
    ssh: str = "-"


class Lab:
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

    # ---------------------------------------------------------------- up
    def is_up(self) -> bool:
        # The lab's own processes count too (whoami, the latency relay): if one died, the lab
        # is broken and `up` must rebuild it rather than report "already up".
        return (self.state / "up.json").exists() and all(
            self.holder_pid(r) for r in self.hosts) and all(
            self._netns_path(r).exists() for r in self.topo.roles) and all(
            _pidfile_alive(f) for f in self.state.glob("*.pid"))

    def leftovers(self) -> bool:
        names = {self.topo.netns(r) for r in self._roles()}
        listed = _run(["ip", "-j", "netns", "list"], check=False).stdout or b"[]"
        present = {n["name"] for n in json.loads(listed or b"[]")}
        link = Path(f"/sys/class/net/{self.topo.laptop_link}").exists()
        return bool(names & present) or link or self.state.exists()

    # ---------------------------------------------------------------- ownership
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

    def _check_index(self) -> None:
        """Another instance with our index would share our VPS address: refuse in one line
        rather than fail half-way through."""
        route = _run(["ip", "-o", "route", "show", f"{self.topo.vps_public}/32"],
                     check=False).stdout.decode().strip()
        if route and f"dev {self.topo.laptop_link} " not in f"{route} ":
            raise LabError(f"lab index {self.topo.index} (VPS {self.topo.vps_public}) is used "
                           f"by another instance ({route}): use another --index")

    # ---------------------------------------------------------------- up
    def up(self, rtt_ms: int = 0) -> dict[str, float]:
        """Create the lab; harmless when it is already up; recovers from a crashed one.
        Refuses (LabError) an instance of this name that another checkout runs."""
        with self._name_lock():
            self._refuse_foreign("taking it over")
            if self.is_up():
                return {"already_up": 1.0}
            if self.leftovers():
                self._down()
            self._check_index()
            t0 = time.monotonic()
            (self.state / "hosts").mkdir(parents=True, exist_ok=True)
            self._claim()
            try:
                times = self._up(rtt_ms, t0)
            except BaseException:
                self._down()
                raise
            self._claim(ready=True)
            return times

    def _up(self, rtt_ms: int, t0: float) -> dict[str, float]:
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"tunnelops-{self.topo.name}",
              "-f", str(self.key)])
        tar = image.build_tar(self.root / "cache")
        self._network(rtt_ms)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(self._start_host, self.hosts))
        t_hosts = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            jobs = [
                *(pool.submit(self._services_home, h) for h in self.topo.home_roles),
                *(pool.submit(self._import_image, tar, h) for h in self.topo.home_roles),
                pool.submit(self._spawn_in_netns, "inet",
                            [sys.executable, "-m", "tunnelops.lab.whoami", str(WHOAMI_PORT)],
                            "whoami"),
            ]
            self._write_client_files()
            self._wait_ssh()
            for j in jobs:
                j.result()
        times = {"hosts": t_hosts - t0, "total": time.monotonic() - t0}
        (self.state / "up.json").write_text(json.dumps({"rtt_ms": rtt_ms,
                                                        "homes": self.topo.homes, **times}))
        return times

    def _network(self, rtt_ms: int) -> None:
        t, ns = self.topo, self.topo.netns
        for r in t.roles:
            _run(["ip", "netns", "add", ns(r)])
            _run(["ip", "-n", ns(r), "link", "set", "lo", "up"])
        ip = ["ip", "-n"]
        cmds = [
            # home LAN: a bridge in the router, the laptop and home plugged into it
            [*ip, ns("router"), "link", "add", "br-lan", "type", "bridge"],
            [*ip, ns("router"), "addr", "add", f"{t.router_lan}/24", "dev", "br-lan"],
            [*ip, ns("router"), "link", "set", "br-lan", "up"],
            ["ip", "link", "add", t.laptop_link, "type", "veth", "peer", "name", "lan-laptop",
             "netns", ns("router")],
            [*ip, ns("router"), "link", "set", "lan-laptop", "master", "br-lan", "up"],
            ["ip", "addr", "add", f"{t.laptop_lan}/24", "dev", t.laptop_link],
            ["ip", "link", "set", t.laptop_link, "up"],
            ["ip", "route", "add", f"{t.vps_public}/32", "via", t.router_lan, "dev", t.laptop_link],
            *(c for h in t.home_roles for c in (
                [*ip, ns(h), "link", "add", "eth0", "type", "veth", "peer", "name", f"lan-{h}",
                 "netns", ns("router")],
                [*ip, ns("router"), "link", "set", f"lan-{h}", "master", "br-lan", "up"],
                *self._host_uplink(h, t.lan_address(h), t.router_lan))),
            # the router's uplink to the internet, with NAT
            [*ip, ns("router"), "link", "add", "wan", "type", "veth", "peer", "name", "i-home",
             "netns", ns("inet")],
            [*ip, ns("router"), "addr", "add", f"{t.router_wan}/24", "dev", "wan"],
            [*ip, ns("router"), "link", "set", "wan", "up"],
            [*ip, ns("inet"), "addr", "add", f"{t.inet_router_side}/24", "dev", "i-home"],
            [*ip, ns("inet"), "link", "set", "i-home", "up"],
            [*ip, ns("router"), "route", "add", "default", "via", t.inet_router_side],
        ]
        for c in cmds:
            _run(c)
        for r in ("router", "inet"):
            self.exec(r, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self.exec("router", ["nft", "-f", "-"], input=(
            b"table ip lab_nat {\n chain post {\n  type nat hook postrouting priority srcnat;\n"
            b'  oifname "wan" masquerade\n }\n}\n'))
        # the VPS's uplink: a veth, or a delaying relay when WAN latency is asked for
        if rtt_ms > 0:
            self._spawn_in_netns("inet", [sys.executable, "-m", "tunnelops.lab.relay",
                                          str(rtt_ms / 2), "i-vps",
                                          str(self._netns_path("vps")), "eth0"], "relay")
        else:
            _run([*ip, ns("inet"), "link", "add", "i-vps", "type", "veth", "peer", "name",
                  "eth0", "netns", ns("vps")])
        for c in (
            [*ip, ns("inet"), "addr", "add", f"{t.inet_vps_side}/24", "dev", "i-vps"],
            [*ip, ns("inet"), "link", "set", "i-vps", "up"],
            *self._host_uplink("vps", t.vps_public, t.inet_vps_side),
        ):
            _run(c)

    def _host_uplink(self, role: str, address: str, gateway: str) -> list[list[str]]:
        """Commands that make a full host's end of its link (`eth0` in its namespace) its
        uplink: here the host itself lives in the namespace, so eth0 gets its address."""
        ns = self.topo.netns(role)
        return [["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"],
                ["ip", "-n", ns, "link", "set", "eth0", "up"],
                ["ip", "-n", ns, "route", "add", "default", "via", gateway]]

    def _start_host(self, role: str) -> None:
        d = self._host_dir(role)
        d.mkdir(parents=True, exist_ok=True)
        log = d / "init.log"
        argv = ["nsenter", f"--net={self._netns_path(role)}", "unshare", "--mount", "--uts",
                "--ipc", "--pid", "--fork", "--mount-proc", "--propagation", "private",
                "/bin/bash", str(HERE / "hostinit.sh"), self.topo.alias(role), str(d),
                f"{self.key}.pub", SUDO_USER, str(root_netns_inode()),
                PODMAN_USER if role in self.topo.home_roles else ""]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        (d / "unshare.pid").write_text(str(proc.pid))
        self._wait_for(lambda: b"TUNNELOPS-READY" in log.read_bytes(),
                       f"lab host {role} did not start", proc=proc, log=log)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        (d / "holder.pid").write_text(children[0])

    def _services_home(self, home: str = "home") -> None:
        # The script travels on stdin: the project may live under /tmp, which a host's
        # private /tmp hides.
        out = self.exec(home, ["/bin/bash", "-s", str(root_netns_inode())],
                        input=(HERE / "services.sh").read_bytes(), timeout=30)
        if b"running" not in out.stdout:
            raise LabError(f"NetworkManager/firewalld did not start in {self.topo.alias(home)}:"
                           f" {out.stdout!r}")

    def _import_image(self, tar: Path, home: str = "home") -> None:
        self.exec(home, ["podman", "import", "-q", *image.import_changes(), "-", image.IMAGE],
                  user=PODMAN_USER, input=tar.read_bytes(), timeout=60)

    def host_public_key(self, role: str) -> str:
        pub = self._host_dir(role) / "upper/etc/ssh/ssh_host_ed25519_key.pub"
        return " ".join(pub.read_text().split()[:2])

    def _write_client_files(self) -> None:
        t = self.topo
        lines, cfg = [], [f"# tunnelops lab '{t.name}': written by {prog.cmd('lab.up')}, "
                          f"removed by {prog.cmd('lab.down')}.\n"]
        for role in self.hosts:
            alias, addr = t.alias(role), t.address(role)
            lines.append(f"{alias},{addr} {self.host_public_key(role)}\n")
            cfg.append(
                f"Host {alias}\n    HostName {addr}\n    User root\n"
                f"    IdentityFile {self.key}\n    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts}\n    StrictHostKeyChecking yes\n"
                f"    ConnectTimeout 5\n\n")
        self.known_hosts.write_text("".join(lines))
        self.ssh_config.write_text("".join(cfg))
        self.inventory_dir.mkdir(parents=True, exist_ok=True)
        self.inventory.write_text(self._inventory_text())

    def _inventory_text(self) -> str:
        t = self.topo
        head = f"""{INVENTORY_HEADER} {prog.cmd("lab.up")}, removed by {prog.cmd("lab.down")}.
[site]
name = "{t.name}"
ssh_config = "{self.ssh_config}"
known_hosts = "{self.known_hosts}"
whoami_url = "{t.whoami_url}"

[vps]
host = "{t.alias("vps")}"
"""
        echo = "# The lab's echo image answers on 12345-12349 and 27015-27020, TCP and UDP."
        if t.homes == 1:
            return head + f"""
[home]
host = "{t.alias("home")}"

[tunnel]

{echo}
[[services]]
name = "game"
image = "{image.IMAGE}"
user = "{PODMAN_USER}"
ports = ["12345/udp", "12346/tcp"]
"""
        homes = "".join(f'\n[[homes]]\nname = "{h}"\nhost = "{t.alias(h)}"\n'
                        for h in t.home_roles)
        return head + homes + f"\n[tunnel]\n\n{echo}\n" + "\n".join(
            f"""[[services]]
name = "{name}"
home = "{h}"
image = "{image.IMAGE}"
user = "{PODMAN_USER}"
ports = [{", ".join(f'"{p}"' for p in ports)}]
""" for h, (name, ports) in zip(t.home_roles, LAB_SERVICES, strict=False))

    def _wait_ssh(self, timeout: float = 15) -> None:
        def banner(addr: str) -> bool:
            try:
                with socket.create_connection((addr, 22), timeout=1) as s:
                    return s.recv(4).startswith(b"SSH-")
            except OSError:
                return False
        for addr in (self.topo.address(r) for r in self.hosts):
            self._wait_for(lambda a=addr: banner(a), f"sshd at {addr} does not answer",
                           timeout=timeout)

    # ---------------------------------------------------------------- down
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


def _ns_inode_path(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None
