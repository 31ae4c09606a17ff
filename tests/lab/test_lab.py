"""End-to-end tests of the namespace lab itself: SSH, isolation, NetworkManager/firewalld,
rootless podman, NAT, idempotent up, a down that leaves nothing (also after crashes),
WAN latency, and the time/memory targets.

Most tests use the session instance (`lab` fixture) and leave it as they found it. The
up/down/crash tests use a separate instance "labd" (index 8), the latency test "labr" (9);
override them with TUNNELOPS_TEST_LAB_DOWN / TUNNELOPS_TEST_LAB_RTT ("name:index") when
several people run these tests side by side on one machine.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest

from tests.conftest import slot
from tunnelops.lab import Lab
from tunnelops.lab.image import IMAGE
from tunnelops.lab.topology import HOSTS, ROLES

pytestmark = pytest.mark.lab



def _instance_from_env(var: str, default: str) -> tuple[str, int]:
    name, _, index = os.environ.get(var, default).partition(":")
    return slot(name, int(index))


DOWN_LAB = _instance_from_env("TUNNELOPS_TEST_LAB_DOWN", "labd:8")
RTT_LAB = _instance_from_env("TUNNELOPS_TEST_LAB_RTT", "labr:9")
USERS = ("root", "ops")


# ------------------------------------------------------------------------------ helpers
def ssh_cmd(lab: Lab, role: str, user: str, argv: list[str], *,
            known_hosts: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The system ssh client with the lab's ssh_config and strict host-key checking.
    (ssh hands the remote shell one command line: argv is quoted into it.)"""
    opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    if known_hosts is not None:
        opts += ["-o", f"UserKnownHostsFile={known_hosts}"]
    dest = f"{user}@{lab.topo.alias(role)}"
    return subprocess.run(["ssh", "-F", str(lab.ssh_config), *opts, dest, "--", shlex.join(argv)],
                          capture_output=True, text=True, timeout=30)


def paramiko_client(lab: Lab, role: str, user: str, known_hosts: Path) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(lab.topo.address(role), username=user, key_filename=str(lab.key),
                   look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10,
                   auth_timeout=10)
    return client


def paramiko_run(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, stdout, _ = client.exec_command(command, timeout=20)
    out = stdout.read().decode()
    return stdout.channel.recv_exit_status(), out


def known_hosts_with_wrong_key(lab: Lab, role: str, dest: Path) -> None:
    """A copy of the lab's known_hosts where `role`'s entry carries a freshly made key."""
    keyfile = dest.parent / f"wrong-{role}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keyfile)],
                   check=True)
    wrong = " ".join(Path(f"{keyfile}.pub").read_text().split()[:2])
    lines = []
    for line in lab.known_hosts.read_text().splitlines():
        hosts, _ = line.split(" ", 1)
        lines.append(f"{hosts} {wrong}" if lab.topo.alias(role) in hosts.split(",") else line)
    dest.write_text("\n".join(lines) + "\n")


def tcp_read_all(addr: str, port: int, timeout: float = 3) -> bytes:
    """Connect from the laptop (this machine's namespace), read until EOF."""
    with socket.create_connection((addr, port), timeout=timeout) as s:
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


def tcp_connect_ms(addr: str, port: int) -> float:
    t0 = time.perf_counter()
    with socket.create_connection((addr, port), timeout=5):
        return (time.perf_counter() - t0) * 1000


def start_listener(lab: Lab, role: str, port: int, reply: str = "EXEC:hostname") -> str:
    """A TCP listener inside a lab host (answers its hostname by default); returns its PID
    there. Backgrounded with a timeout, so it cannot outlive the test long even if kill fails."""
    pid = lab.exec(role, ["sh", "-c",
                          f"timeout 120 socat TCP-LISTEN:{port},fork,reuseaddr {reply}"
                          " </dev/null >/dev/null 2>&1 & echo $!"]).stdout.decode().strip()
    assert pid.isdigit(), pid
    lab.exec(role, ["sh", "-c", f"for i in $(seq 200); do ss -Hltn 'sport = :{port}' | grep -q ."
                                " && exit 0; sleep 0.02; done; exit 1"])
    return pid


def firewall(lab: Lab, *args: str) -> str:
    return lab.exec("home", ["firewall-cmd", *args]).stdout.decode().strip()


def wait_until(what: str, fn: Callable[[], object], timeout: float = 15) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if result := fn():
                return result
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def net_ns_inode(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def instance_netns_inodes(names: set[str]) -> set[int]:
    """Inodes of the named network namespaces under /run/netns that exist."""
    inodes = set()
    for name in names:
        with_inode = net_ns_inode_path(Path("/run/netns") / name)
        if with_inode is not None:
            inodes.add(with_inode)
    return inodes


def net_ns_inode_path(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def descends_from_namespaces(pid: int, inodes: set[int]) -> bool:
    """Whether pid, or one of its ancestors, lives in one of these network namespaces (a
    rootless container has its own slirp4netns namespace, under its lab host's conmon)."""
    for _ in range(64):
        if pid <= 1:
            return False
        if net_ns_inode(pid) in inodes:
            return True
        pid = ppid(pid)
    return False


def in_namespaces_or_below(inodes: set[int]) -> set[int]:
    return {p for p in all_pids() if descends_from_namespaces(p, inodes)}


INSTANCE_ENTRY = re.compile(r"\b([a-z][a-z0-9]{0,7})-(vps|home|inet|router|lan)\b")


def is_other_instance(lab: Lab, text: str) -> bool:
    """Whether a namespace/link/mount name is another lab instance's (e.g. "lab-home")."""
    return any(m.group(1) != lab.topo.name for m in INSTANCE_ENTRY.finditer(text))


def other_instances_netns(lab: Lab) -> set[int]:
    """Inodes of the network namespaces of every other lab instance on this machine."""
    names = {n.name for n in Path("/run/netns").glob("*") if is_other_instance(lab, n.name)}
    return instance_netns_inodes(names)


def snapshot(lab: Lab) -> dict[str, set]:
    """What a lab instance could leave behind on this machine: network namespaces, links in
    this namespace, mounts, processes outside this network namespace. Entries that belong to
    OTHER lab instances (the hand-used "lab", the session test instance, colleagues' ones)
    are left out, so people working next to the test cannot make it flaky; entries of `lab`
    are all kept."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    netns = {line.split()[0] for line in netns if line.strip()}
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    links = {" ".join(line.split()[:2]).rstrip(":") for line in links}  # "12: name@peer"
    mounts = {" ".join(line.split()[:3]) for line in Path("/proc/self/mounts").read_text()
              .splitlines()}
    foreign = other_instances_netns(lab)
    me_net = net_ns_inode("self")
    # list first, classify after: a process born in between is simply not in this snapshot
    candidates = [p for p in all_pids() if net_ns_inode(p) not in (None, me_net)]
    return {
        "netns": {n for n in netns if not is_other_instance(lab, n)},
        "links": {link for link in links if not is_other_instance(lab, link)},
        "mounts": {m for m in mounts if not is_other_instance(lab, m)},
        "pids": {p for p in candidates if not descends_from_namespaces(p, foreign)},
    }


def assert_nothing_left(lab: Lab, before: dict[str, set]) -> None:
    after = snapshot(lab)
    for kind in ("netns", "links", "mounts"):
        extra, gone = after[kind] - before[kind], before[kind] - after[kind]
        assert not extra and not gone, f"{kind}: left behind {extra}, removed {gone}"
    # Processes: what is new is left behind -- unless it is another instance's after all.
    # Colleagues' instances come and go: their `ip netns add` runs for a moment in a namespace
    # not yet under /run/netns, so give such a process a moment to end or to be classified.
    # (A process that was there before and ended meanwhile cannot be one of this lab's.)
    extra = after["pids"] - before["pids"]
    deadline = time.monotonic() + 2
    while extra:
        foreign = other_instances_netns(lab)
        extra = {p for p in extra
                 if Path(f"/proc/{p}").exists() and not descends_from_namespaces(p, foreign)}
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not extra, f"processes left behind: {[f'{p} {cmdline(p)}' for p in sorted(extra)]}"
    assert not lab.state.exists(), f"{lab.state} still exists"
    assert not lab.inventory.exists(), f"{lab.inventory} still exists"
    assert not lab.leftovers()


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
    except OSError:
        return "?"


def lab_processes(lab: Lab) -> set[int]:
    return in_namespaces_or_below(instance_netns_inodes({lab.topo.netns(r) for r in ROLES}))


def rss_mib(pids: set[int]) -> float:
    total_kib = 0
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        if m := re.search(r"^VmRSS:\s+(\d+) kB", status, re.M):
            total_kib += int(m.group(1))
    return total_kib / 1024


def whoami_from(lab: Lab, role: str) -> str:
    return lab.exec(role, ["curl", "-sS", "--max-time", "5", lab.topo.whoami_url]
                    ).stdout.decode().strip()


def ping_rtts_ms(lab: Lab, role: str, addr: str, count: int = 5) -> list[float]:
    out = lab.exec(role, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", addr]
                   ).stdout.decode()
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
    assert len(rtts) == count, out
    return rtts


def bring_up(lab: Lab, **kw: int) -> float:
    t0 = time.monotonic()
    times = lab.up(**kw)
    assert "already_up" not in times, times
    assert lab.is_up()
    return time.monotonic() - t0


def check_works(lab: Lab) -> None:
    """A quick end-to-end proof that an instance is usable: SSH to both hosts, NATed whoami."""
    for role in HOSTS:
        assert lab.ssh(role, ["hostname"]).stdout.decode().strip() == lab.topo.alias(role)
    assert whoami_from(lab, "home") == lab.topo.router_wan


# ------------------------------------------------------------------------------ SSH
@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("role", HOSTS)
def test_ssh_system_client(lab: Lab, role: str, user: str) -> None:
    config = lab.ssh_config.read_text()
    assert f"Host {lab.topo.alias(role)}\n" in config
    assert "StrictHostKeyChecking yes" in config
    proc = ssh_cmd(lab, role, user, ["sh", "-c", "id -un; hostname; sudo -n id -u"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [user, lab.topo.alias(role), "0"]


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("role", HOSTS)
def test_ssh_paramiko_known_hosts_reject_policy(lab: Lab, role: str, user: str) -> None:
    client = paramiko_client(lab, role, user, lab.known_hosts)
    try:
        served = client.get_transport().get_remote_server_key()
        assert f"{served.get_name()} {served.get_base64()}" == lab.host_public_key(role)
        assert paramiko_run(client, "id -un") == (0, f"{user}\n")
        assert paramiko_run(client, "sudo -n id -u") == (0, "0\n")
    finally:
        client.close()


@pytest.mark.parametrize("role", HOSTS)
def test_ssh_wrong_host_key_fails(lab: Lab, role: str, tmp_path: Path) -> None:
    good = tmp_path / "known_hosts.good"
    shutil.copy(lab.known_hosts, good)
    ok = ssh_cmd(lab, role, "root", ["true"], known_hosts=good)
    assert ok.returncode == 0, ok.stderr  # the copy itself is fine: only the key matters

    bad = tmp_path / "known_hosts.bad"
    known_hosts_with_wrong_key(lab, role, bad)
    proc = ssh_cmd(lab, role, "root", ["echo", "SHOULD-NOT-RUN"], known_hosts=bad)
    assert proc.returncode == 255
    assert "SHOULD-NOT-RUN" not in proc.stdout
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr, proc.stderr
    with pytest.raises(paramiko.BadHostKeyException):
        paramiko_client(lab, role, "root", bad).close()

    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    proc = ssh_cmd(lab, role, "root", ["true"], known_hosts=empty)
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr, proc.stderr
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        paramiko_client(lab, role, "root", empty).close()


# ------------------------------------------------------------------------------ isolation
def test_isolation_etc_files(lab: Lab) -> None:
    for writer in HOSTS:
        path = f"/etc/tunnelops-test-{uuid.uuid4().hex[:8]}"
        lab.ssh(writer, [f"echo {writer} > {path}"])  # one remote shell command line
        try:
            assert lab.ssh(writer, ["cat", path]).stdout == f"{writer}\n".encode()
            for other in HOSTS:
                if other != writer:
                    assert lab.ssh(other, ["test", "-e", path], check=False).returncode == 1
            assert not Path(path).exists()  # the laptop's own /etc
        finally:
            lab.ssh(writer, ["rm", "-f", path])
        assert not Path(path).exists()


def test_isolation_hostnames_and_host_keys(lab: Lab) -> None:
    names = {role: lab.ssh(role, ["hostname"]).stdout.decode().strip() for role in HOSTS}
    assert names == {role: lab.topo.alias(role) for role in HOSTS}
    assert socket.gethostname() not in names.values()

    keys = {role: lab.ssh(role, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
            .stdout.decode().split()[1] for role in HOSTS}
    assert len(set(keys.values())) == len(HOSTS)
    for role in HOSTS:
        assert lab.host_public_key(role).split()[1] == keys[role]
    own = Path("/etc/ssh/ssh_host_ed25519_key.pub")
    if own.exists():
        assert own.read_text().split()[1] not in keys.values()
    # known_hosts has one distinct key per host, under its alias and address
    entries = dict(line.split(" ", 1) for line in lab.known_hosts.read_text().splitlines())
    for role in HOSTS:
        assert entries[f"{lab.topo.alias(role)},{lab.topo.address(role)}"].split()[1] == keys[role]


# ------------------------------------------------------------------------------ home services
def test_home_network_manager_and_firewalld_answer(lab: Lab) -> None:
    nm = lab.ssh("home", ["nmcli", "general", "status"]).stdout.decode()
    assert nm.split()[:2] == ["STATE", "CONNECTIVITY"], nm
    assert lab.ssh("home", ["firewall-cmd", "--state"]).stdout == b"running\n"
    # the VPS has neither: it is a bare server
    assert lab.ssh("vps", ["firewall-cmd", "--state"], check=False).returncode != 0


def test_firewalld_port_enforced_on_home_only(lab: Lab) -> None:
    port = 40123
    home, vps = lab.topo.home_lan, lab.topo.vps_public
    assert f"{port}/tcp" not in firewall(lab, "--list-ports").split()
    listeners = {role: start_listener(lab, role, port) for role in HOSTS}
    try:
        # closed on home (firewalld's default zone rejects), open on the firewall-less VPS
        with pytest.raises(OSError):
            tcp_read_all(home, port)
        assert tcp_read_all(vps, port) == f"{lab.topo.alias('vps')}\n".encode()
        # the listener does run on home: it answers inside home
        inside = lab.exec("home", ["socat", "-u", f"TCP:127.0.0.1:{port}", "-"]).stdout
        assert inside == f"{lab.topo.alias('home')}\n".encode()

        assert firewall(lab, f"--add-port={port}/tcp") == "success"
        assert f"{port}/tcp" in firewall(lab, "--list-ports").split()
        assert tcp_read_all(home, port) == f"{lab.topo.alias('home')}\n".encode()
        assert tcp_read_all(vps, port) == f"{lab.topo.alias('vps')}\n".encode()
        # runtime only: the permanent configuration is untouched
        assert f"{port}/tcp" not in firewall(lab, "--permanent", "--list-ports").split()

        assert firewall(lab, f"--remove-port={port}/tcp") == "success"
        with pytest.raises(OSError):
            tcp_read_all(home, port)
        assert tcp_read_all(vps, port) == f"{lab.topo.alias('vps')}\n".encode()
    finally:
        lab.exec("home", ["firewall-cmd", f"--remove-port={port}/tcp"], check=False)
        for role, pid in listeners.items():
            lab.exec(role, ["kill", pid], check=False)
    assert f"{port}/tcp" not in firewall(lab, "--list-ports").split()


def test_rootless_podman_echo_through_firewalld(lab: Lab) -> None:
    name = "tunnelops-test-echo"
    home = lab.topo.home_lan
    ports = ("12346/tcp", "12345/udp")

    def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return lab.ssh("home", [shlex.join(["podman", *args])], user="gamer", check=check,
                       timeout=60)

    assert IMAGE in podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()
    before_ports = firewall(lab, "--list-ports").split()
    assert not set(ports) & set(before_ports)
    podman("run", "-d", "--name", name, "-p", "12346:12346/tcp", "-p", "12345:12345/udp", IMAGE)
    try:
        # the container runs as gamer, rootless
        info = podman("inspect", "--format", "{{.State.Running}}", name).stdout.decode()
        assert info.strip() == "true"
        ps = lab.exec("home", ["ps", "-o", "user=", "-C", "conmon"]).stdout.decode().split()
        assert ps and set(ps) == {"gamer"}, ps
        # published, but closed by firewalld until opened
        with pytest.raises(OSError):
            socket.create_connection((home, 12346), timeout=2).close()
        for p in ports:
            assert firewall(lab, f"--add-port={p}") == "success"

        token = uuid.uuid4().hex[:12]

        def tcp_echo() -> tuple[bytes, bytes] | None:
            with socket.create_connection((home, 12346), timeout=3) as s:
                f = s.makefile("rb")
                first = f.readline()
                if not first:  # the container's socat is not listening yet
                    return None
                s.sendall(f"tcp-{token}\n".encode())
                return first, f.readline()

        first, echoed = wait_until("TCP echo through 12346", tcp_echo)
        m = re.fullmatch(rb"tcp-echo port=12346 peer=(\S+)\n", first)
        assert m, first
        ipaddress.ip_address(m.group(1).decode())
        assert echoed == f"tcp-{token}\n".encode()

        def udp_echo() -> tuple[bytes, tuple[str, int]] | None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.5)
                s.sendto(f"udp-{token}\n".encode(), (home, 12345))
                try:
                    return s.recvfrom(4096)
                except TimeoutError:
                    return None

        data, src = wait_until("UDP echo through 12345", udp_echo)
        assert src == (home, 12345)
        m = re.fullmatch(rb"udp-echo port=12345 peer=(\S+) got=udp-" + token.encode() + rb"\n",
                         data)
        assert m, data
        ipaddress.ip_address(m.group(1).decode())
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
        for p in ports:
            lab.exec("home", ["firewall-cmd", f"--remove-port={p}"], check=False)
    assert name not in podman("ps", "-a", "--format", "{{.Names}}").stdout.decode().split()
    assert firewall(lab, "--list-ports").split() == before_ports


# ------------------------------------------------------------------------------ NAT
def test_vps_cannot_reach_home_lan(lab: Lab) -> None:
    # the laptop can (it sits on the LAN), the VPS cannot: no route, and NAT only goes out
    with socket.create_connection((lab.topo.home_lan, 22), timeout=3) as s:
        assert s.recv(4).startswith(b"SSH-")
    proc = lab.exec("vps", ["socat", "-u", "OPEN:/dev/null",
                            f"TCP:{lab.topo.home_lan}:22,connect-timeout=3"], check=False)
    assert proc.returncode != 0, f"the VPS reached {lab.topo.home_lan}:22"
    # the VPS itself is online: it reaches the internet's whoami and sees itself
    assert whoami_from(lab, "vps") == lab.topo.vps_public


def test_home_is_natted_to_router_wan(lab: Lab) -> None:
    assert whoami_from(lab, "home") == lab.topo.router_wan == "203.0.113.2"
    banner = lab.exec("home", ["sh", "-c", f"socat -T 3 - TCP:{lab.topo.vps_public}:22,"
                                           "connect-timeout=3 </dev/null | head -c 4"]).stdout
    assert banner == b"SSH-"
    # a server on the VPS sees home's connections coming from the router's WAN address
    port = 40124
    pid = start_listener(lab, "vps", port, reply="SYSTEM:'echo peer=$SOCAT_PEERADDR'")
    try:
        seen = lab.exec("home", ["socat", "-u", f"TCP:{lab.topo.vps_public}:{port}", "-"]).stdout
    finally:
        lab.exec("vps", ["kill", pid], check=False)
    assert seen == f"peer={lab.topo.router_wan}\n".encode()


# ------------------------------------------------------------------------------ up / down
def test_up_again_is_harmless_and_quick(lab: Lab) -> None:
    holders = {role: lab.holder_pid(role) for role in HOSTS}
    keys = {role: lab.host_public_key(role) for role in HOSTS}
    t0 = time.monotonic()
    result = lab.up()
    elapsed = time.monotonic() - t0
    assert result == {"already_up": 1.0}
    assert elapsed < 1.0, elapsed
    assert {role: lab.holder_pid(role) for role in HOSTS} == holders
    assert {role: lab.host_public_key(role) for role in HOSTS} == keys
    check_works(lab)


def test_down_leaves_nothing(lab: Lab, lab_factory: Callable[[str, int], Lab],
                             lab_report: Callable[[str], None]) -> None:
    other = lab_factory(*DOWN_LAB)
    before = snapshot(other)
    bring_up(other)
    check_works(other)
    # a rootless container (own user, mount, PID and slirp4netns network namespaces) too
    other.ssh("home", ["podman", "run", "-d", "--name", "leftover", "-p", "12347:12347/tcp",
                       IMAGE], user="gamer", timeout=60)
    procs = lab_processes(other)
    assert any(Path(f"/proc/{p}/comm").read_text().strip() == "slirp4netns"
               for p in procs if Path(f"/proc/{p}").exists())
    lab_report(f"RSS with one echo container: {rss_mib(procs):.0f} MiB in {len(procs)} processes")
    assert Path(f"/sys/class/net/{other.topo.laptop_link}").exists()
    assert other.inventory.exists()
    other.down()
    assert_nothing_left(other, before)
    assert lab.is_up()  # the session instance is untouched
    check_works(lab)


def test_down_after_network_only_leaves_nothing(lab_factory: Callable[[str, int], Lab]) -> None:
    other = lab_factory(*DOWN_LAB)
    before = snapshot(other)
    other.state.mkdir(parents=True)
    other._network(0)  # a crash right after the namespaces and links are made
    assert other.leftovers() and not other.is_up()
    assert {other.topo.netns(r) for r in ROLES} <= snapshot(other)["netns"]
    other.down()
    assert_nothing_left(other, before)


def test_up_recovers_after_crash_halfway(lab_factory: Callable[[str, int], Lab]) -> None:
    other = lab_factory(*DOWN_LAB)
    before = snapshot(other)
    # a crash half-way through up: network made, one host started, its PID never recorded
    other.state.mkdir(parents=True)
    (other.state / "hosts").mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other.key)],
                   check=True)
    other._network(0)
    other._start_host("vps")
    for f in ("holder.pid", "unshare.pid"):
        (other.state / "hosts" / "vps" / f).unlink()
    assert lab_processes(other)
    assert not other.is_up()
    bring_up(other)
    check_works(other)
    other.down()
    assert_nothing_left(other, before)


def test_up_recovers_after_whoami_crash(lab_factory: Callable[[str, int], Lab]) -> None:
    other = lab_factory(*DOWN_LAB)
    before = snapshot(other)
    bring_up(other)
    pid = int((other.state / "whoami.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_until("whoami to die", lambda: not Path(f"/proc/{pid}").exists()
               or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3], 5)
    assert not other.is_up()
    bring_up(other)
    check_works(other)
    other.down()
    assert_nothing_left(other, before)


def test_rtt_adds_latency(lab: Lab, lab_factory: Callable[[str, int], Lab],
                          lab_report: Callable[[str], None]) -> None:
    slow = lab_factory(*RTT_LAB)
    before = snapshot(slow)
    bring_up(slow, rtt_ms=50)
    fast_ping = ping_rtts_ms(lab, "inet", lab.topo.vps_public)
    slow_ping = ping_rtts_ms(slow, "inet", slow.topo.vps_public)
    fast_tcp = [tcp_connect_ms(lab.topo.vps_public, 22) for _ in range(5)]
    slow_tcp = [tcp_connect_ms(slow.topo.vps_public, 22) for _ in range(5)]
    lab_report(f"ping inet->vps median: default {statistics.median(fast_ping):.2f} ms, "
               f"rtt_ms=50 {statistics.median(slow_ping):.1f} ms; TCP connect laptop->vps "
               f"median: default {statistics.median(fast_tcp):.2f} ms, rtt_ms=50 "
               f"{statistics.median(slow_tcp):.1f} ms")
    assert min(slow_ping) >= 40, slow_ping
    assert min(slow_tcp) >= 40, slow_tcp
    assert statistics.median(fast_ping) < 10, fast_ping
    assert statistics.median(fast_tcp) < 10, fast_tcp
    check_works(slow)
    # a crashed relay: up notices and rebuilds
    os.kill(int((slow.state / "relay.pid").read_text()), signal.SIGKILL)
    wait_until("the relay to die", lambda: not slow.is_up(), 5)
    bring_up(slow, rtt_ms=50)
    assert min(ping_rtts_ms(slow, "inet", slow.topo.vps_public, 3)) >= 40
    slow.down()
    assert_nothing_left(slow, before)


def test_up_down_time_and_memory(lab: Lab, lab_factory: Callable[[str, int], Lab],
                                 lab_report: Callable[[str], None]) -> None:
    other = lab_factory(*DOWN_LAB)
    before = snapshot(other)
    up_s = bring_up(other)
    rss = rss_mib(lab_processes(other))
    procs = len(lab_processes(other))
    t0 = time.monotonic()
    other.down()
    down_s = time.monotonic() - t0
    session_rss = rss_mib(lab_processes(lab))
    lab_report(f"lab.up {up_s:.2f} s (target < 10 s), lab.down {down_s:.2f} s (target < 5 s), "
               f"RSS {rss:.0f} MiB in {procs} processes (target < 300 MiB); "
               f"session lab RSS {session_rss:.0f} MiB")
    print(f"lab.up {up_s:.2f} s, lab.down {down_s:.2f} s, RSS {rss:.0f} MiB")
    assert up_s < 30
    assert down_s < 15
    assert 0 < rss < 300
    assert_nothing_left(other, before)
