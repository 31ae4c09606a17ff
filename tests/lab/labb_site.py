"""Shared by test_bootstrap.py and test_services.py: the "labb" lab instance (index 4), brought
up fresh and bootstrapped once per module, and the probes both modules use.

Inspection goes through `lab.exec` (nsenter, no SSH) wherever it can: the VPS rate-limits new
SSH connections per source (3 per 20 s, the seed's awall conn-limit), and everything from this
machine to the VPS leaves through home's NAT router, so each run of the tool is the only SSH
the VPS sees from a test.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tests.conftest import own_lab, slot
from tests.lab.env import sh
from tunnelops import commands
from tunnelops.lab import Lab, Topology
from tunnelops.report import RunReport

PROJECT = Path(__file__).resolve().parents[2]
INV = Path(sys.executable).parent / "inv"
LABB = Topology(*slot("labb", 4))
HOSTS = ("vps", "home")
TUNNEL_VPS, TUNNEL_HOME = "192.168.2.1", "192.168.2.2"
CONTAINER, PODMAN_USER = "tunnelops-game", "gamer"


# ------------------------------------------------------------------------------ running tunnelops
def options(site: str, inventory_dir: Path | None = None, **kw: object) -> commands.Options:
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    return commands.Options(inventory_dir=inventory_dir or PROJECT / "inventory", site=site,
                            console=console, **kw)


def bootstrap(site: str = LABB.name, inventory_dir: Path | None = None,
              **kw: object) -> tuple[RunReport, str]:
    """commands.bootstrap in this process: (report, what it printed)."""
    opts = options(site, inventory_dir, **kw)
    report = commands.bootstrap(opts, None, None)
    return report, opts.console.file.getvalue()


def inv(*args: str, inventory_dir: Path | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, without a terminal (no tty: nobody to answer a prompt)."""
    env = {**os.environ, "COLUMNS": "80"}  # the width rich uses when piped: errors must fit
    env.pop("TUNNELOPS_INTERRUPT", None)
    if inventory_dir is not None:
        env["TUNNELOPS_INVENTORY"] = str(inventory_dir)
    return subprocess.run([str(INV), *args], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          start_new_session=True)


def changed_steps(report: RunReport, role: str) -> list[str]:
    return [s.step for s in report.hosts[role].steps if s.status == "changed"]


def describe(report: RunReport) -> str:
    return "; ".join(f"{r}: error={h.error} rt={h.round_trips} steps="
                     f"{[(s.step, s.status, s.changes, s.notes) for s in h.steps]}"
                     for r, h in report.hosts.items())


SUMMARY = re.compile(r"(vps|home): ok=(\d+) changed=(\d+) failed=(\d+) round_trips=(\d+)")


def summary(stdout: str) -> dict[str, dict[str, int]]:
    """The recap line `vps: ok=5 changed=0 failed=0 round_trips=2 | home: ...`, parsed."""
    found = {m.group(1): dict(zip(("ok", "changed", "failed", "round_trips"),
                                  map(int, m.groups()[1:]), strict=True))
             for m in SUMMARY.finditer(stdout)}
    assert set(found) == set(HOSTS), stdout
    return found


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error")]


# ------------------------------------------------------------------------------ looking at hosts
def podman(lab: Lab, *args: str, check: bool = True) -> str:
    return lab.exec("home", ["podman", *args], user=PODMAN_USER, check=check,
                    timeout=60).stdout.decode()


def whoami(lab: Lab, *curl_args: str) -> str:
    return lab.exec("home", ["curl", "-sS", "--max-time", "5", *curl_args,
                             lab.topo.whoami_url]).stdout.decode().strip()


def ping(lab: Lab, role: str, addr: str, count: int = 1, wait: int = 2) -> bool:
    return lab.exec(role, ["ping", "-n", "-q", "-c", str(count), "-W", str(wait), addr],
                    check=False).returncode == 0


def wg(lab: Lab, role: str, what: str) -> str:
    return lab.exec(role, ["wg", "show", "wg0", what]).stdout.decode().strip()


def handshake_age(lab: Lab, role: str) -> float | None:
    """Seconds since the last handshake with the (only) peer; None if there was none."""
    line = wg(lab, role, "latest-handshakes").split()
    stamp = int(line[1]) if len(line) == 2 else 0
    now = int(sh(lab, role, "date +%s"))
    return None if stamp == 0 else now - stamp


def strip_dynamic_sets(ruleset: str) -> str:
    """`nft -s list ruleset` still shows the SSH rate limiter's dynamic set elements (one per
    recent source, expiring after a minute): they are state, not configuration. (The service
    port sets' elements are configuration: they stay.)"""
    return re.sub(r"(\bset ssh_new[46] \{[^{}]*?)\n\s*elements = \{[^}]*\}", r"\1", ruleset)


MANAGED = ("/etc/wireguard/* /etc/tunnelops/* /etc/sysctl.d/90-tunnelops.conf "
           "/etc/nftables.conf")
STATE_SCRIPT = f"""
for f in {MANAGED}; do [ -f "$f" ] && echo "$(stat -c '%a %U' "$f") $(sha256sum "$f")"; done
[ -d /etc/firewalld ] && find /etc/firewalld -type f -exec sha256sum {{}} + | sort
echo '## ip rule'; ip rule
echo '## ip route show table all'; ip route show table all
echo '## wg'; for w in public-key listen-port peers allowed-ips; do wg show wg0 $w; done
echo '## nft'; nft -s list ruleset
"""


def host_state(lab: Lab, role: str) -> dict[str, str]:
    """Everything tunnelops manages on a host, as text: managed files (hashes, modes),
    firewalld's configuration, policy rules, every routing table, the stateless nft ruleset,
    the WireGuard interface; at home also the container's identity and start time."""
    parts = sections(sh(lab, role, STATE_SCRIPT), first="files")
    parts["nft"] = strip_dynamic_sets(parts["nft"])
    if role == "home":
        parts["container"] = container_identity(lab)
    return parts


def sections(text: str, first: str) -> dict[str, str]:
    """Split a probe's output at its `## NAME` lines."""
    out: dict[str, list[str]] = {first: []}
    cur = first
    for line in text.splitlines():
        if line.startswith("## "):
            cur = line[3:]
            out[cur] = []
        else:
            out[cur].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def container_identity(lab: Lab) -> str:
    return podman(lab, "inspect", "--format", "{{.Id}} {{.State.StartedAt}}", CONTAINER).strip()


def both_states(lab: Lab) -> dict[str, dict[str, str]]:
    return {role: host_state(lab, role) for role in HOSTS}


WRITE_PROBE = """
for d in /etc/wireguard /etc/tunnelops /var/lib/tunnelops /run/tunnelops; do
  echo "## $d"; ls -la --time-style=+%s.%N "$d" 2>&1 | grep -v ' \\.\\.$'; done
echo '## sums'; sha256sum /etc/nftables.conf /etc/sysctl.d/* 2>&1
echo '## nft tables'; nft list tables
echo '## links'; ip -o link show | cut -d: -f2
echo '## rules'; ip rule
if command -v firewall-cmd >/dev/null && firewall-cmd --state >/dev/null 2>&1; then
  echo '## firewalld'; firewall-cmd --list-all; firewall-cmd --permanent --list-all
fi
"""


def written_state(lab: Lab) -> dict[str, str]:
    """What a run could have written on either host (to prove it wrote nothing)."""
    state = {role: sh(lab, role, WRITE_PROBE) for role in HOSTS}
    state["containers"] = podman(lab, "ps", "-a", "--format", "{{.Names}} {{.ID}}")
    return state


# ------------------------------------------------------------------------------ players
def tcp_echo(lab: Lab, port: int, token: str) -> str:
    """A player on the internet: connect to the VPS public address, send a line."""
    res = lab.exec("inet", ["timeout", "6", "socat", "-T", "3", "-",
                            f"TCP:{lab.topo.vps_public}:{port},connect-timeout=3"],
                   input=f"{token}\n".encode(), check=False)
    return res.stdout.decode(errors="replace")


def udp_echo(lab: Lab, port: int, token: str) -> str:
    res = lab.exec("inet", ["timeout", "4", "socat", "-T", "2", "-",
                            f"UDP:{lab.topo.vps_public}:{port}"],
                   input=f"{token}\n".encode(), check=False)
    return res.stdout.decode(errors="replace")


def token() -> str:
    return uuid.uuid4().hex[:12]


def wait_until(what: str, fn: Callable[[], object], timeout: float = 10,
               every: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {result!r})")
        time.sleep(every)


def sshd_log(lab: Lab, role: str) -> list[str]:
    """The host's sshd log (sshd -E): one line per accepted login, per refused one..."""
    return sh(lab, role, "cat /var/log/sshd.log").splitlines()


def logins(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("Accepted ")]


# ------------------------------------------------------------------------------ the instance
@dataclass
class Bootstrapped:
    lab: Lab
    report: RunReport | None  # in-process runs
    cli: subprocess.CompletedProcess[str] | None  # CLI runs
    before: dict[str, str]  # main-table default routes before the first run


def main_default_routes(lab: Lab) -> dict[str, str]:
    return {role: sh(lab, role, "ip -4 route show default table main") for role in HOSTS}


def fresh_bootstrapped_labb(*, via_cli: bool) -> Iterator[Bootstrapped]:
    """Body of a module fixture: labb fresh, bootstrapped once; down at the end."""
    up = own_lab(LABB)
    lab = next(up)
    try:
        before = main_default_routes(lab)
        if via_cli:
            yield Bootstrapped(lab, None, inv("bootstrap", "--site", LABB.name), before)
        else:
            yield Bootstrapped(lab, bootstrap(LABB.name)[0], None, before)
    finally:
        up.close()
