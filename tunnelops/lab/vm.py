"""The VM tier of the lab: the same instance as `Lab` -- same topology, namespaces, laptop link,
ssh_config / known_hosts / inventory files -- but `vps` and `home` are qemu virtual machines
with their own kernel and systemd as PID 1 (kernel WireGuard, NetworkManager, firewalld 2,
rootless Podman 5 with Quadlet and lingering, real reboots).

    laptop (this machine) ── N-lan ── router ─┬─ N-home: br0 ─ tap0 ══ VM N-home (eth0 10.77.I.2)
                                              inet ── N-vps: br0 ─ tap0 ══ VM N-vps (198.51.100.x)

Each VM's namespace (N-vps, N-home) holds only its cable: the veth `eth0` the namespace lab
would have addressed, bridged with the tap qemu uses. qemu runs inside that namespace (so its
tap is there, and nothing it does can reach this machine's own network), is started with
`-daemonize -pidfile` and stopped by that PID; the namespaces have no route out of the lab.

qemu cannot use this machine's KVM (nested PVM: a stock kernel hangs, see the vm-probes
notes): TCG, `-accel tcg,thread=multi -cpu qemu64`, direct kernel boot of the cached image
(vm_image) through a qcow2 overlay per VM. A VM learns who it is from its kernel command line
(vm_guest.sh) and prints its new SSH host key on its serial console, where the lab reads it:
known_hosts is exact from the start, no trust on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tunnelops.lab import image, vm_image
from tunnelops.lab.instance import Lab
from tunnelops.lab.procs import LabError, _alive, _ns_inode, _pidfile_alive, _run, root_netns_inode
from tunnelops.lab.topology import HOSTS, PODMAN_USER, WHOAMI_PORT, Topology

MEMORY_MIB = {"vps": 1024, "home": 1536}
# One vCPU each. Two at home halve its facts' time (firewalld, Podman and NetworkManager are
# read at once, each a slow program under emulation: 20.8 -> 8.9 s), but a home VM with two
# emulated vCPUs stopped answering on its LAN once, mid-suite, on this 2-core machine under
# full load: the tier must be dependable first.
CPUS = {"vps": 1, "home": 1}
# Each VM masks what the other role's distribution would not run (one image for both): the
# VPS has no NetworkManager and no firewalld (nftables, as tunnelops uses on a Debian VPS;
# firewalld alone costs 30-40 s of boot under emulation), home no ifupdown-ng.
MASKED = {
    "vps": ("NetworkManager.service", "NetworkManager-wait-online.service",
            "NetworkManager-dispatcher.service", "firewalld.service"),
    "home": ("networking.service",),
}
BOOT_TIMEOUT = 900  # seconds from qemu's start to a settled system (~2 min seen, 2 VMs at once)
HOSTKEY_MARK = "TUNNELOPS-HOSTKEY "
Report = Callable[[str, str], None]  # (what: "image", "vps", "home", ...; text)


# ---------------------------------------------------------------------------- pure helpers
def mac_address(topo: Topology, role: str) -> str:
    return f"52:54:00:{topo.index:02x}:{HOSTS.index(role) + 1:02x}:01"


def machine_id(topo: Topology, role: str) -> str:
    return hashlib.md5(f"tunnelops-lab {topo.alias(role)}".encode()).hexdigest()


def client_key_blob(pubkey_line: str) -> str:
    """The base64 part of an ed25519 public key line (what the kernel command line carries)."""
    kind, blob = pubkey_line.split()[:2]
    if kind != "ssh-ed25519" or not re.fullmatch(r"[A-Za-z0-9+/=]+", blob):
        raise LabError(f"the lab's client key is not an ed25519 key: {kind}")
    return blob


def kernel_cmdline(topo: Topology, role: str, client_key: str) -> str:
    """The VM's whole identity: vm_guest.sh reads the tunnelops.* words at every boot."""
    if role == "vps":
        ip, gw = topo.vps_public, topo.inet_vps_side
    else:
        ip, gw = topo.home_lan, topo.router_lan
    words = [
        "root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0", "quiet",
        f"systemd.hostname={topo.alias(role)}", f"systemd.machine_id={machine_id(topo, role)}",
        *(f"systemd.mask={unit}" for unit in MASKED[role]),
        f"tunnelops.role={role}", f"tunnelops.ip={ip}/24", f"tunnelops.gw={gw}",
        f"tunnelops.key={client_key}",
    ]
    return " ".join(words)


def qemu_argv(topo: Topology, role: str, img: vm_image.Image, state: Path,
              client_key: str, *, debug_shell: bool = False) -> list[str]:
    """debug_shell: a root shell on a second serial port, the unix socket vms/ROLE/debug.sock
    (`socat -,raw,echo=0 UNIX-CONNECT:...`), for when a VM boots without network or SSH."""
    d = state / "vms" / role
    cmdline = kernel_cmdline(topo, role, client_key)
    debug: list[str] = []
    if debug_shell:
        cmdline += " systemd.debug_shell=ttyS1"
        debug = ["-serial", f"unix:{d / 'debug.sock'},server,nowait"]
    return [
        "qemu-system-x86_64", "-name", topo.alias(role),
        # KVM here is nested PVM, where a stock kernel hangs: emulation, every core usable
        "-machine", "pc", "-accel", "tcg,thread=multi", "-cpu", "qemu64",
        "-smp", str(CPUS[role]), "-m", str(MEMORY_MIB[role]),
        "-kernel", str(img.kernel), "-initrd", str(img.initrd),
        "-append", cmdline,
        # throw-away disks: no host flushes (cache=unsafe), the overlay only holds our writes
        "-drive", f"file={d / 'disk.qcow2'},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
        "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={mac_address(topo, role)}",
        "-device", "virtio-rng-pci",
        "-display", "none", "-serial", f"file:{d / 'console.log'}", *debug,
        "-monitor", f"unix:{d / 'monitor.sock'},server,nowait",
        "-daemonize", "-pidfile", str(d / "qemu.pid"),
    ]


def host_key_from_console(text: str) -> str | None:
    """The host key the VM printed on its serial console (its latest boot's)."""
    keys = re.findall(rf"{HOSTKEY_MARK}(ssh-ed25519 [A-Za-z0-9+/=]+)", text)
    return keys[-1] if keys else None


# ---------------------------------------------------------------------------- the instance
class VmLab(Lab):
    """A lab instance whose vps and home are qemu VMs (see the module's docstring)."""

    kind = "vm"

    def __init__(self, topo: Topology | None = None, root: Path | None = None,
                 inventory_dir: Path | None = None, report: Report | None = None) -> None:
        super().__init__(topo, root, inventory_dir)
        self.report: Report = report or (lambda what, text: None)

    # ------------------------------------------------------------ paths and processes
    def _vm_dir(self, role: str) -> Path:
        return self.state / "vms" / role

    def qemu_pid(self, role: str) -> int | None:
        """PID of the role's qemu, if it runs -- and is ours: in the role's namespace."""
        try:
            pid = int((self._vm_dir(role) / "qemu.pid").read_text())
        except (OSError, ValueError):
            return None
        ns = _ns_inode_of(self._netns_path(role))
        if not _alive(pid) or ns is None or _ns_inode(pid, "net") != ns:
            return None
        return pid

    def holder_pid(self, role: str) -> int | None:
        return self.qemu_pid(role) if role in HOSTS else None

    def console(self, role: str) -> str:
        try:
            return (self._vm_dir(role) / "console.log").read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------ running things inside
    def _ssh_argv(self, dest: str, *, mux: bool = True) -> list[str]:
        argv = ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if mux:  # a new connection into a TCG VM costs ~1.2 s; a multiplexed one ~0.1 s
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.state}/cm-%C",
                     "-o", "ControlPersist=300"]
        return [*argv, dest]

    def ssh(self, role: str, argv: Sequence[str], *, user: str | None = None,
            check: bool = True, timeout: float = 60,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run a command on a VM through real SSH (words joined by ssh, as with `Lab.ssh`)."""
        dest = self.topo.alias(role) if user is None else f"{user}@{self.topo.alias(role)}"
        return _run([*self._ssh_argv(dest), "--", *argv], check=check, timeout=timeout,
                    input=input)

    def exec(self, role: str, argv: Sequence[str], *, user: str | None = None,
             input: bytes | None = None, check: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        """argv (quoted) on a VM through SSH (as `user`: a real login), or in a namespace."""
        if role not in HOSTS:
            return super().exec(role, argv, user=user, input=input, check=check,
                                timeout=timeout)
        return self.ssh(role, [shlex.join(argv)], user=user, input=input, check=check,
                        timeout=timeout)

    def sh(self, role: str, script: str, *, user: str | None = None, check: bool = True,
           timeout: float = 60) -> str:
        """A shell script on a VM; its stdout."""
        out = self.ssh(role, ["sh", "-c", shlex.quote(script)], user=user, check=check,
                       timeout=timeout)
        return out.stdout.decode(errors="replace")

    # ------------------------------------------------------------ up
    def is_up(self) -> bool:
        return (self.state / "up.json").exists() and all(
            self.qemu_pid(r) for r in HOSTS) and all(
            self._netns_path(r).exists() for r in ("vps", "home", "inet", "router")) and all(
            _pidfile_alive(f) for f in self.state.glob("*.pid"))

    def _up(self, rtt_ms: int, t0: float) -> dict[str, float]:
        for tool in ("qemu-system-x86_64", "qemu-img"):
            if not any((Path(d) / tool).exists() for d in os.environ["PATH"].split(":")):
                raise LabError(f"{tool} is missing: run `bash tunnelops/lab/setup.sh`")
        (self.state / "vm.json").write_text(json.dumps({"kind": self.kind}))
        times: dict[str, float] = {}
        img = vm_image.cached(self.root / "cache")
        if img is None:
            self.report("image", "building the Debian 13 image (debootstrap, ~3 min, once)")
            t = time.monotonic()
            img = vm_image.build(self.root / "cache",
                                 report=lambda text: self.report("image", text))
            times["image_build"] = time.monotonic() - t
        self.report("image", f"image {img.dir.name}: {_versions(img)}")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"tunnelops-{self.topo.name}",
              "-f", str(self.key)])
        key = client_key_blob(Path(f"{self.key}.pub").read_text())
        tar = image.build_tar(self.root / "cache")
        self._network(rtt_ms)
        started = {r: self._boot(r, img, key) for r in HOSTS}
        self._spawn_in_netns("inet", [sys.executable, "-m", "tunnelops.lab.whoami",
                                      str(WHOAMI_PORT)], "whoami")
        for role in HOSTS:
            self._known_host(role, self._wait_host_key(role, started[role]))
        self._write_client_files()
        with ThreadPoolExecutor(2) as pool:
            booted = dict(zip(HOSTS, pool.map(lambda r: self._wait_boot(r, started[r]), HOSTS),
                              strict=True))
        for role, secs in booted.items():
            times[f"boot_{role}"] = secs
        self.report("home", "importing the echo image for gamer")
        self._import_image(tar)
        times["total"] = time.monotonic() - t0
        (self.state / "up.json").write_text(json.dumps(
            {"kind": self.kind, "rtt_ms": rtt_ms, "image": img.dir.name, **times}))
        for role in HOSTS:
            self.report(role, f"up: SSH after {booted[role]:.0f}s")
        return times

    def _host_uplink(self, role: str, address: str, gateway: str) -> list[list[str]]:
        """The VM, not the namespace, owns the address: eth0 and qemu's tap are bridged."""
        ip = ["ip", "-n", self.topo.netns(role)]
        return [
            [*ip, "link", "add", "br0", "type", "bridge"],
            [*ip, "link", "set", "eth0", "master", "br0", "up"],
            [*ip, "tuntap", "add", "tap0", "mode", "tap"],
            [*ip, "link", "set", "tap0", "master", "br0", "up"],
            [*ip, "link", "set", "br0", "up"],
        ]

    def _boot(self, role: str, img: vm_image.Image, key: str) -> float:
        d = self._vm_dir(role)
        d.mkdir(parents=True, exist_ok=True)
        # copy-on-write: the overlay records this VM's writes only (absolute backing path)
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(img.disk.resolve()),
              "-F", "qcow2", str(d / "disk.qcow2")])
        ns = self._netns_path(role)
        if os.stat(ns).st_ino == root_netns_inode():
            raise LabError(f"{ns} is this machine's own namespace: refusing to start a VM there")
        self.report(role, "starting qemu")
        t = time.monotonic()
        _run(["nsenter", f"--net={ns}", "--",
              *qemu_argv(self.topo, role, img, self.state, key,
                         debug_shell=bool(os.environ.get("TUNNELOPS_VM_DEBUG")))], timeout=60)
        if self.qemu_pid(role) is None:
            raise LabError(f"qemu for {self.topo.alias(role)} did not start in {ns}")
        return t

    def _wait_host_key(self, role: str, t0: float, timeout: float = BOOT_TIMEOUT) -> str:
        """The host key the VM makes at its first boot and prints on its serial console."""
        while (pub := host_key_from_console(self.console(role))) is None:
            self._check_running(role, t0 + timeout, "its host key on the serial console")
            self.report(role, f"booting ({time.monotonic() - t0:.0f}s): kernel, identity")
            time.sleep(1)
        return pub

    def _wait_boot(self, role: str, t0: float, timeout: float = BOOT_TIMEOUT) -> float:
        """Until SSH answers and systemd has finished booting; seconds since qemu started."""
        alias = self.topo.alias(role)
        deadline = t0 + timeout
        self.wait_ssh(role, deadline, t0)
        secs = time.monotonic() - t0
        self.report(role, f"SSH after {secs:.0f}s; waiting for systemd to settle")
        state = self.sh(role, "systemctl is-system-running --wait 2>/dev/null; "
                              "systemctl --failed --plain --no-legend 2>/dev/null | "
                              "cut -d' ' -f1", check=False,
                        timeout=max(30, deadline - time.monotonic())).split()
        if not state or state[0] != "running":
            raise LabError(f"{alias} booted {state[0] if state else '?'}: failed units "
                           f"{', '.join(state[1:]) or '?'} (see `inv lab.ssh {alias}`, "
                           "journalctl -b)")
        return secs

    def _check_running(self, role: str, deadline: float, waiting_for: str) -> None:
        alias = self.topo.alias(role)
        if self.qemu_pid(role) is None:
            tail = " | ".join(self.console(role).strip().splitlines()[-3:])
            raise LabError(f"qemu of {alias} exited while waiting for {waiting_for}: {tail}")
        if time.monotonic() > deadline:
            tail = " | ".join(self.console(role).strip().splitlines()[-2:])
            raise LabError(f"{alias}: no {waiting_for} in time (console: {tail})")

    def wait_ssh(self, role: str, deadline: float, t0: float,
                 not_boot: str | None = None) -> None:
        """Until a fresh SSH connection runs a command (on another boot than `not_boot`)."""
        while True:
            self._check_running(role, deadline, "SSH")
            try:
                res = _run([*self._ssh_argv(self.topo.alias(role), mux=False), "-o",
                            "ConnectTimeout=5", "cat", "/proc/sys/kernel/random/boot_id"],
                           check=False, timeout=30)
            except subprocess.TimeoutExpired:  # sshd accepted, but is too busy to answer yet
                res = None
            boot = res.stdout.decode().strip() if res else ""
            if res is not None and res.returncode == 0 and boot and boot != not_boot:
                return
            self.report(role, f"booting ({time.monotonic() - t0:.0f}s): waiting for SSH")
            time.sleep(2)

    def _known_host(self, role: str, pub: str) -> None:
        (self._vm_dir(role) / "host_key.pub").write_text(pub + "\n")

    def host_public_key(self, role: str) -> str:
        return (self._vm_dir(role) / "host_key.pub").read_text().strip()

    def _import_image(self, tar: Path) -> None:
        self.exec("home", ["podman", "import", "-q", *image.import_changes(), "-", image.IMAGE],
                  user=PODMAN_USER, input=tar.read_bytes(), timeout=300)

    def up_times(self) -> dict[str, float]:
        """What `up` measured (seconds): boot_vps, boot_home, total, image_build if built."""
        try:
            return {k: v for k, v in json.loads((self.state / "up.json").read_text()).items()
                    if isinstance(v, (int, float))}
        except (OSError, ValueError):
            return {}

    # ------------------------------------------------------------ reboot (for tests)
    def boot_id(self, role: str) -> str:
        return self.sh(role, "cat /proc/sys/kernel/random/boot_id").strip()

    def reboot(self, role: str, timeout: float = BOOT_TIMEOUT) -> float:
        """`systemctl reboot` in the VM; seconds until SSH answers on the new boot."""
        before = self.boot_id(role)
        self._close_mux()
        t0 = time.monotonic()
        _run([*self._ssh_argv(self.topo.alias(role), mux=False), "systemctl", "reboot"],
             check=False, timeout=30)
        self.wait_ssh(role, t0 + timeout, t0, not_boot=before)
        return time.monotonic() - t0

    # ------------------------------------------------------------ down
    def _close_mux(self) -> None:
        """Stop the SSH connection masters this lab started (by their control sockets)."""
        for sock in self.state.glob("cm-*"):
            _run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "lab"], check=False,
                 timeout=10)
            sock.unlink(missing_ok=True)

    def _down(self) -> None:
        """Stop each VM by its qemu PID, then remove everything the instance made (under the
        name lock, once `down` has made sure the instance is ours)."""
        if self.state.exists():
            self._close_mux()
        pids = {r: p for r in HOSTS if (p := self.qemu_pid(r))}
        for pid in pids.values():
            os.kill(pid, signal.SIGTERM)  # qemu exits at once: the disks are throw-away
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        super()._down()  # the namespaces (taps, bridges), the laptop link, files, inventory

    # ------------------------------------------------------------ status
    def status(self):  # type: ignore[override]
        rows = super().status()
        for row in rows:
            if row.role in HOSTS and (pid := self.qemu_pid(row.role)):
                row.daemons = [f"qemu (pid {pid}, {_rss_mib(pid)} MiB)"]
        return rows


def _ns_inode_of(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _rss_mib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _versions(img: vm_image.Image) -> str:
    v = img.info.get("versions", {})
    short = {"kernel": "kernel", "systemd": "systemd", "network-manager": "NM",
             "firewalld": "firewalld", "podman": "podman"}
    return ", ".join(f"{name} {v[k].split('-')[0].split('+')[0]}" for k, name in short.items()
                     if k in v)


def is_vm_instance(lab: Lab) -> bool:
    return (lab.state / "vm.json").exists()


def open_lab(topo: Topology, root: Path | None = None, *, vm: bool | None = None,
             report: Report | None = None, inventory_dir: Path | None = None) -> Lab:
    """The instance named by topo: a VmLab if asked for, or if that instance was made by one
    (so `lab.down`, `lab.status` and `lab.ssh` need no --vm)."""
    lab = Lab(topo, root, inventory_dir)
    if vm or (vm is None and is_vm_instance(lab)):
        return VmLab(topo, root, inventory_dir, report=report)
    return lab


