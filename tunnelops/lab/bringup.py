"""`up`: a lab instance made from nothing -- its key, the network of namespaces (home LAN,
router with NAT, internet, the VPS's uplink), the hosts started (each its own mount, UTS,
IPC and PID namespace, sshd and the rest inside), NetworkManager and firewalld at home, the
echo image imported, the whoami server, and the client's files (ssh_config, known_hosts, the
lab's site file). A part of Lab (instance.py): it uses the instance's paths and exec."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tunnelops import prog
from tunnelops.lab import image
from tunnelops.lab.procs import LabError, _run, root_netns_inode
from tunnelops.lab.state import HERE, INVENTORY_HEADER
from tunnelops.lab.topology import PODMAN_USER, SUDO_USER, WHOAMI_PORT, Topology

# each home's one service in a lab of several homes: distinct ports the echo image answers on
LAB_SERVICES = (("game", ("12345/udp", "12346/tcp")), ("voice", ("12347/udp", "12348/tcp")),
                ("chat", ("12349/udp", "27015/tcp")), ("web", ("27016/udp", "27017/tcp")),
                ("srcds", ("27018/udp", "27019/tcp")))


class BringUp:
    """Lab's methods that bring an instance up."""

    topo: Topology
    root: Path
    state: Path
    inventory_dir: Path

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

    def _check_index(self) -> None:
        """Another instance with our index would share our VPS address: refuse in one line
        rather than fail half-way through."""
        route = _run(["ip", "-o", "route", "show", f"{self.topo.vps_public}/32"],
                     check=False).stdout.decode().strip()
        if route and f"dev {self.topo.laptop_link} " not in f"{route} ":
            raise LabError(f"lab index {self.topo.index} (VPS {self.topo.vps_public}) is used "
                           f"by another instance ({route}): use another --index")

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
