"""What the lab tests of the README's "Safety" promises share: a module's own lab instance
(`lab_fixtures`), tunnelops run in this process as `inv` would (`run`) or as the real command
line (`inv`), each host's managed state for before/after comparisons (`state`), and the VPS's
firewall as the no-lock-out tests drive it (`with_rule`, `vanish_after_firewall_change`).

Each test brings the site where it needs it (`fresh`: torn down with its keys purged, checked
identical to the lab's pristine state; `converged`: bootstrapped).
The VPS rate-limits NEW SSH connections (3 per 20 s burst) and the laptop reaches it from
the same NATed address as home: inspection goes through `lab.exec` (nsenter, no SSH).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import own_lab, slot
from tests.lab.env import Outcome, sh
from tunnelops import commands
from tunnelops.inventory.read import load
from tunnelops.inventory.write import save
from tunnelops.lab import Lab, Topology
from tunnelops.lab.topology import HOSTS
from tunnelops.remote import Remote, Transcript
from tunnelops.render import nfthost

PROJECT = Path(__file__).resolve().parents[2]
INV = Path(sys.executable).parent / "inv"
GUARD_S = 8  # the dead man's switch of runs that test it (the product's default is 20)
# the VPS's filter (SSH, WireGuard, what is forwarded) is its own table, shared by its sites
NFT_LIST = ["nft", "-st", "list", "table", "inet", "tunnelops-host"]
RULES = "/etc/tunnelops/host.nft"
PWNED = "/tmp/tunnelops-pwned"  # what a successful shell injection would create


def lab_fixtures(name: str, index: int) -> tuple[object, object]:
    """A test module's own lab instance, `labs` (up for the module, down at its end, its
    inventory in a temporary directory), and `pristine`: each host's managed state before
    tunnelops ever ran (see `state`). In the module: `labs, pristine = lab_fixtures(...)`."""
    topo = Topology(*slot(name, index))

    @pytest.fixture(scope="module")
    def labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
        yield from own_lab(topo, tmp_path_factory.mktemp("inventory"))

    @pytest.fixture(scope="module")
    def pristine(labs: Lab) -> dict[str, dict[str, str]]:
        return {role: state(labs, role) for role in HOSTS}

    return labs, pristine


def run(lab: Lab, what: str = "bootstrap", *, site: str | None = None,
        guard_seconds: int = 20, transcript: Transcript | None = None,
        trust_new_host: bool = False, dry_run: bool = False, purge_keys: bool = False,
        remove_users: bool = False,
        port: str | None = None) -> Outcome:
    """One tunnelops command in this process, as `inv` would run it, its output recorded."""
    console = Console(file=io.StringIO(), width=200, color_system=None, force_terminal=False)
    opts = commands.Options(inventory_dir=lab.inventory_dir, site=site or lab.topo.name,
                            dry_run=dry_run, trust_new_host=trust_new_host,
                            guard_seconds=guard_seconds, console=console,
                            transcript=transcript)
    t0 = time.monotonic()
    if what == "bootstrap":
        report = commands.bootstrap(opts, None, None)
    elif what == "teardown":
        report = commands.teardown(opts, purge_keys=purge_keys, remove_users=remove_users)
    elif what in ("add-port", "remove-port"):
        assert port is not None
        report = commands.change_port(opts, port, None, add=what == "add-port")
    else:
        raise AssertionError(what)
    return Outcome(report, console.file.getvalue(), time.monotonic() - t0)  # type: ignore[attr-defined]


def inv(lab: Lab | None, *args: str, timeout: float = 120,
        inventory_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, `inv ARGS`, in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELOPS_")}
    where = inventory_dir or lab.inventory_dir  # type: ignore[union-attr]
    env.update(TUNNELOPS_INVENTORY=str(where), COLUMNS="200")
    return subprocess.run([str(INV), *args], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def site_copy(lab: Lab, name: str, **changes: object) -> str:
    """Another site file for the same lab hosts (e.g. another known_hosts): its name."""
    site = load(lab.inventory)
    site = dataclasses.replace(site, name=name, **changes)
    save(lab.inventory_dir / f"{name}.toml", site)
    return name


def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of "TYPE BASE64"."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def remote(lab: Lab, role: str, **kw: object) -> Remote:
    kw.setdefault("known_hosts", str(lab.known_hosts))
    return Remote(lab.topo.alias(role), ssh_config=str(lab.ssh_config), **kw)  # type: ignore[arg-type]


def pending_guards(lab: Lab, role: str) -> list[str]:
    return sh(lab, role, "ls /run/tunnelops 2>/dev/null | grep '^guard\\.'; :").split()


def leftover_temp_files(lab: Lab) -> dict[str, str]:
    return {role: sh(lab, role, "find /etc /home /var/lib -name '.tunnelops.*' 2>/dev/null; :")
            for role in HOSTS}


# What tunnelops manages on a host, as "KEY\tVALUE" lines: every file and directory under the
# managed paths (type, mode, owner, content hash), the whole nft ruleset, policy rules, routes
# of every table (local/broadcast excepted), links, forwarding, NetworkManager profiles
# (not the external "tun" one NM shows for a wireguard-go wg0) and firewalld's runtime zones.
MANAGED_PATHS = ("/etc/wireguard /etc/tunnelops /etc/sysctl.d /etc/nftables.conf /etc/firewalld"
                 " /etc/NetworkManager /etc/network /var/lib/tunnelops /etc/passwd /etc/group"
                 " /etc/subuid /etc/subgid")
STATE_SCRIPT = f"""export LC_ALL=C
for p in {MANAGED_PATHS}; do
  [ -e "$p" ] || continue
  find "$p" -xdev -printf 'stat %p\\t%y %m %u:%g\\n'
  find "$p" -xdev -type f -exec sha256sum {{}} + | sed -E 's/^([0-9a-f]+)  (.*)$/hash \\2\\t\\1/'
done
echo '## nft'; nft -s list ruleset
echo '## rules'; ip rule
echo '## routes'; ip route show table all | grep -Ev '^(local|broadcast) '
echo '## links'; ip -br link | awk '{{print $1, $2}}'
echo '## forward'; cat /proc/sys/net/ipv4/ip_forward
echo '## nm'; nmcli -t -f NAME,TYPE connection show 2>/dev/null | grep -v ':tun$'
echo '## firewalld'; firewall-cmd --list-all-zones 2>/dev/null
:
"""


def state(lab: Lab, role: str) -> dict[str, str]:
    out: dict[str, str] = {}
    section = None
    for line in sh(lab, role, STATE_SCRIPT).splitlines():
        if line.startswith("## "):
            section = line[3:]
            out[section] = ""
        elif section is not None:
            out[section] += line + "\n"
        else:
            kind, _, rest = line.partition(" ")
            path, _, value = rest.partition("\t")
            out[f"{kind} {path}"] = value
    if role == "home":
        out["containers"] = lab.exec("home", ["podman", "ps", "-a", "--format",
                                              "{{.Names}} {{.Image}}"], user="gamer"
                                     ).stdout.decode()
    return out


def state_diff(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple]:
    return {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)}


def fresh(lab: Lab, pristine: dict[str, dict[str, str]]) -> None:
    """The site torn down with its keys purged: each host exactly as before tunnelops."""
    out = run(lab, "teardown", purge_keys=True)
    assert out.ok, out
    for role in HOSTS:
        assert state_diff(pristine[role], state(lab, role)) == {}, role


def converged(lab: Lab) -> Outcome:
    out = run(lab)
    assert out.ok, out
    return out


# the VPS's firewall, as the no-lock-out tests drive it

HOST_SSH_RULE = ("add rule inet tunnelops-host input tcp dport 22 tcp flags & (syn | ack) "
                 "== syn")


def with_rule(rule: str) -> Callable[..., str]:
    """The VPS's own table (the filter every site shares) with one more input rule, just
    before SSH's: for monkeypatching nfthost.host_ruleset."""
    real = nfthost.host_ruleset

    def ruleset(*args: object, **kw: object) -> str:
        text = real(*args, **kw)  # type: ignore[arg-type]
        assert HOST_SSH_RULE in text, text
        return text.replace(HOST_SSH_RULE, f"add rule inet tunnelops-host input {rule}\n"
                            f"{HOST_SSH_RULE}", 1)
    return ruleset


def vps_firewall(lab: Lab) -> tuple[str, str]:
    """(the live table, the file a boot loads)"""
    return (lab.exec("vps", NFT_LIST, check=False).stdout.decode(),
            sh(lab, "vps", f"cat {RULES} 2>/dev/null; :"))


def vps_diagnostics(lab: Lab) -> str:
    """For failure messages: what decides whether a new SSH connection gets in."""
    return sh(lab, "vps", "date +%T.%N; nft list table inet tunnelops-wg0 2>&1; ss -tan; "
                          "ls /run/tunnelops 2>&1; ps -eo pid,args | grep -v ' \\['")


def new_connection_gets_banner(lab: Lab, timeout: float = 1.5) -> bool:
    try:
        with socket.create_connection((lab.topo.vps_public, 22), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4) == b"SSH-"
    except OSError:
        return False


VANISH = """
import os, signal, sys
from pathlib import Path
from tunnelops import commands, guarded
from tunnelops.render import nfthost
from tunnelops.steps import vps

inventory_dir, site, guard, rule = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if rule:  # into the VPS's own table, the filter: before SSH's rules
    real = nfthost.host_ruleset
    anchor = "add rule inet tunnelops-host input tcp dport 22 tcp flags & (syn | ack) == syn"
    vps.nfthost.host_ruleset = lambda *a, **k: real(*a, **k).replace(
        anchor, f"add rule inet tunnelops-host input {rule}\\n{anchor}", 1)
# the laptop vanishes right after the firewall change: no goodbye, no confirmation
guarded.Applier.confirm = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
commands.bootstrap(commands.Options(Path(inventory_dir), site=site, guard_seconds=guard),
                   None, None)
"""


def vanish_after_firewall_change(lab: Lab, rule: str = "") -> float:
    """A bootstrap in another process that dies (SIGKILL) right after a firewall change,
    never confirming it; returns when it died."""
    proc = subprocess.run([sys.executable, "-c", VANISH, str(lab.inventory_dir),
                           lab.topo.name, str(GUARD_S), rule], cwd=PROJECT,
                          capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    return time.monotonic()


