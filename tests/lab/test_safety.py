"""The README's "Safety" promises, each one a test against a real lab (issue #6).

Runs against its OWN lab instance "labs" (index 5: LAN 10.77.5.0/24, VPS 198.51.100.15),
brought up once for this module and taken down at its end, with its inventory in a temporary
directory (never the project's inventory/). Tests leave the site in whatever state they like:
each one starts by bringing the site where it needs it (`fresh`: torn down with its keys
purged, checked identical to the lab's pristine state; `converged`: bootstrapped; the
interrupted-run cases bring the lab down and up: a site tunnelops never touched).

Inspection goes through `lab.exec` (nsenter, no SSH): the VPS rate-limits NEW SSH connections
(3 per 20 s burst), and the laptop reaches it from the same NATed address as home.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import session_lab_topology, slot
from tests.lab.env import Outcome, forget_ssh_rate, sh
from tests.lab.labb_site import wait_until
from tunnelops import commands
from tunnelops.changes import CommandChange, StepPlan, apply_script
from tunnelops.inventory.new import new_site
from tunnelops.inventory.read import load, loads
from tunnelops.inventory.write import save
from tunnelops.lab import Lab, LabError, Topology
from tunnelops.lab.topology import HOSTS
from tunnelops.probes.wireguard import rehandshake
from tunnelops.remote import Remote, RemoteError, Transcript
from tunnelops.render import nfthost

pytestmark = pytest.mark.lab

_name, _, _index = os.environ.get("TUNNELOPS_SAFETY_LAB", "labs:5").partition(":")
LAB = slot(_name, int(_index))
VPS = f"{LAB[0]}-vps"  # its ssh alias (with the slot's suffix)
VPS_IP = re.escape(Topology(*LAB).vps_public)
PROJECT = Path(__file__).resolve().parents[2]
INV = Path(sys.executable).parent / "inv"
GUARD_S = 8  # the dead man's switch of runs that test it (the product's default is 20)
# the VPS's filter (SSH, WireGuard, what is forwarded) is its own table, shared by its sites
NFT_LIST = ["nft", "-st", "list", "table", "inet", "tunnelops-host"]
RULES = "/etc/tunnelops/host.nft"
PWNED = "/tmp/tunnelops-pwned"  # what a successful shell injection would create


# ------------------------------------------------------------------------------ the lab
@pytest.fixture(scope="module")
def labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    session = session_lab_topology()
    if session.name == LAB[0] or session.index == LAB[1]:
        raise pytest.UsageError(f"the session test lab {session} collides with {LAB}")
    lab = Lab(Topology(*LAB), inventory_dir=tmp_path_factory.mktemp("inventory"))
    # Two test sessions on this machine (two people, or CI) would both use this instance:
    # the second waits for the first instead of pulling the lab down under it.
    lab.root.mkdir(parents=True, exist_ok=True)
    with open(lab.root / f"{LAB[0]}.session-lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        lab.down()  # leftovers of an earlier session that died
        try:
            lab.up()
        except LabError as e:
            pytest.fail(f"cannot bring the lab {LAB[0]!r} up: {e}", pytrace=False)
        try:
            yield lab
        finally:
            lab.down()


@pytest.fixture(scope="module")
def pristine(labs: Lab) -> dict[str, dict[str, str]]:
    """Each host's managed state before tunnelops ever ran (see `state`)."""
    return {role: state(labs, role) for role in HOSTS}


# ------------------------------------------------------------------------------ helpers
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


# ============================================================================ 1. host keys
def test_unknown_host_key_refused_with_fingerprint_until_trusted(labs: Lab,
                                                                 tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    prints = {r: fingerprint(labs.host_public_key(r)) for r in HOSTS}

    # Remote itself: refused, with the fingerprint and the flag that records it
    with pytest.raises(RemoteError) as err:
        remote(labs, "home", known_hosts=str(empty)).connect()
    msg = str(err.value)
    assert "\n" not in msg
    assert "unknown host key" in msg and prints["home"] in msg, msg
    assert "--trust-new-host" in msg and str(empty) in msg, msg
    assert empty.read_text() == ""

    # the command line: exit 1, one error line per host, each with its fingerprint
    name = site_copy(labs, "unknownkh", known_hosts=str(empty))
    proc = inv(labs, "bootstrap", "--site", name)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = error_lines(proc.stdout)
    assert len(errors) == 2, proc.stdout
    for role in HOSTS:
        line = next(e for e in errors if e.startswith(f"error: {labs.topo.alias(role)}:"))
        assert prints[role] in line and "--trust-new-host" in line, line
    assert empty.read_text() == ""
    assert sh(labs, "home", "ls /etc/wireguard/wg0.key 2>/dev/null; :") == ""  # untouched

    # with --dry-run, --trust-new-host trusts them for that run only: a dry run writes nothing
    proc = inv(labs, "bootstrap", "--site", name, "--trust-new-host", "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("trusted for this run only, not written to") == 2, proc.stdout
    assert empty.read_text() == ""

    # --trust-new-host records both keys (verify: it changes nothing on the hosts; that its
    # checks fail on this fresh site does not matter here)
    proc = inv(labs, "verify", "--site", name, "--trust-new-host")
    assert "unknown host key" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    recorded = {" ".join(line.split()[1:3]) for line in empty.read_text().splitlines()}
    assert recorded == {labs.host_public_key(r) for r in HOSTS}
    # ... in a form OpenSSH itself accepts, and then known without the flag
    ssh = subprocess.run(["ssh", "-F", str(labs.ssh_config), "-o", "BatchMode=yes", "-o",
                          f"UserKnownHostsFile={empty}", "-o", "StrictHostKeyChecking=yes",
                          labs.topo.alias("home"), "true"], capture_output=True, text=True,
                         timeout=30)
    assert ssh.returncode == 0, ssh.stderr
    recorded_text = empty.read_text()
    r = remote(labs, "home", known_hosts=str(empty))
    try:
        assert r.run("echo known", sudo=False).stdout == "known\n"
    finally:
        r.close()
    assert empty.read_text() == recorded_text


def test_known_hosts_honoured_and_never_rewritten(labs: Lab) -> None:
    before = labs.known_hosts.read_bytes()
    out = run(labs, dry_run=True, trust_new_host=True)
    assert out.ok, out
    assert labs.known_hosts.read_bytes() == before


def test_changed_host_key_refused_even_with_trust_new_host(labs: Lab, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    wrong_key = " ".join(Path(f"{wrong}.pub").read_text().split()[:2])
    bad = tmp_path / "known_hosts"
    lines = []
    for line in labs.known_hosts.read_text().splitlines():
        hosts, _ = line.split(" ", 1)
        lines.append(f"{hosts} {wrong_key}" if labs.topo.alias("vps") in hosts.split(",")
                     else line)
    bad.write_text("\n".join(lines) + "\n")
    bad_text = bad.read_text()
    vps_ip, real = labs.topo.vps_public, fingerprint(labs.host_public_key("vps"))
    fix = f"ssh-keygen -R {vps_ip} -f {bad}"

    with pytest.raises(RemoteError) as err:
        remote(labs, "vps", known_hosts=str(bad), trust_new=True).connect()
    msg = str(err.value)
    assert "\n" not in msg and "CHANGED" in msg and real in msg and f"`{fix}`" in msg, msg
    assert bad.read_text() == bad_text

    name = site_copy(labs, "changedkh", known_hosts=str(bad))
    proc = inv(labs, "bootstrap", "--site", name, "--trust-new-host")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = error_lines(proc.stdout)
    assert len(errors) == 1 and errors[0].startswith(f"error: {VPS}: host key"), proc.stdout
    assert "CHANGED" in errors[0] and real in errors[0] and f"`{fix}`" in errors[0], errors
    assert bad.read_text() == bad_text
    # a host that refuses us leaves the other one untouched too (no packages, no keys)
    assert sh(labs, "home", "ls /etc/wireguard/wg0.key 2>/dev/null; :") == ""

    # the line given is the fix: after it, --trust-new-host records the real key
    assert subprocess.run(fix.split(), capture_output=True).returncode == 0
    r = remote(labs, "vps", known_hosts=str(bad), trust_new=True)
    try:
        r.connect()
    finally:
        r.close()
    assert labs.host_public_key("vps") in bad.read_text()
    assert wrong_key not in bad.read_text()


# ============================================================================ 8a. hostile input
class Trap:
    """A TCP listener standing in for both hosts: counts every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()

    def close(self) -> None:
        self.sock.close()


HOSTILE_HOSTS = ["trap-vps;touch " + PWNED, "$(touch " + PWNED + ")", "`touch " + PWNED + "`",
                 "trap-vps'x", 'trap"vps', "trap-vps\ntouch " + PWNED, "-oProxyCommand=touch",
                 "trap vps", "trap|vps", "trap&vps", "root@trap>x"]


def test_hostile_hosts_ports_and_names_refused_before_any_connection(tmp_path: Path) -> None:
    trap = Trap()
    try:
        config = tmp_path / "ssh_config"
        config.write_text("".join(f"Host trap-{r}\n    HostName 127.0.0.1\n    Port {trap.port}\n"
                                  f"    User root\n\n" for r in HOSTS))
        inv_dir = tmp_path / "inventory"
        inv_dir.mkdir()
        good = new_site("trap", "trap-vps", "trap-home", ssh_config=str(config),
                        known_hosts=str(tmp_path / "known_hosts"))
        good = dataclasses.replace(good, services=(
            loads('[vps]\nhost="a"\n[home]\nhost="b"\n[[services]]\nname="game"\n'
                  'image="x/y:1"\nuser="gamer"\nports=["12345/udp"]\n').services))
        save(inv_dir / "trap.toml", good)
        text = (inv_dir / "trap.toml").read_text()
        bad_files = {
            "badhost": text.replace('host = "trap-vps"', 'host = "trap-vps;touch /tmp/x"'),
            "badname": text.replace('name = "game"', 'name = "ga;me"'),
            "badport": text.replace('"12345/udp"', '"12345/udp;id"'),
            "baduser": text.replace('user = "gamer"', 'user = "$(id)"'),
        }
        for name, body in bad_files.items():
            assert body != text, name
            (inv_dir / f"{name}.toml").write_text(body.replace('name = "trap"', f'name = "{name}"'))
        files = {p.name: p.read_bytes() for p in inv_dir.iterdir()}

        cases: list[tuple[list[str], str]] = []
        for host in HOSTILE_HOSTS:
            cases.append((["bootstrap", "--site", "evil", "--vps", host, "--home", "trap-home"],
                          "host"))
            cases.append((["bootstrap", "--site", "evil", "--vps", "trap-vps", "--home", host],
                          "host"))
        cases += [
            (["bootstrap", "--site", "x;id", "--vps", "trap-vps", "--home", "trap-home"], "site"),
            (["add-port", "12347/udp;id", "--site", "trap"], "12347/udp;id"),
            (["add-port", "$(id)/udp", "--site", "trap"], "$(id)"),
            (["add-port", "12347/udp", "--service", "game;id", "--site", "trap"], "game;id"),
            (["remove-port", "`id`/tcp", "--site", "trap"], "`id`"),
            *((["bootstrap", "--site", name], name.removeprefix("bad")) for name in bad_files),
        ]
        # In this process (fast) for every case, through `inv` for a few: the same one line.
        for argv, about in cases:
            opts = commands.Options(inventory_dir=inv_dir, site=argv[argv.index("--site") + 1],
                                    console=Console(file=io.StringIO()))
            with pytest.raises(commands.UsageError) as err:
                if argv[0] == "bootstrap":
                    vps = argv[argv.index("--vps") + 1] if "--vps" in argv else None
                    home = argv[argv.index("--home") + 1] if "--home" in argv else None
                    commands.bootstrap(opts, vps, home)
                else:
                    service = argv[argv.index("--service") + 1] if "--service" in argv else None
                    commands.change_port(opts, argv[1], service, add=argv[0] == "add-port")
            msg = str(err.value)
            assert "\n" not in msg and about.split("\n")[0] in msg, (argv, msg)
        for argv, about in cases[::5]:
            proc = inv(None, *argv, inventory_dir=inv_dir)  # type: ignore[arg-type]
            assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
            lines = (proc.stdout + proc.stderr).strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (argv, lines)
            assert about.split("\n")[0] in lines[0], (argv, lines)
        assert trap.accepted == 0
        assert {p.name: p.read_bytes() for p in inv_dir.iterdir()} == files
        assert not Path(PWNED).exists()

        # the control: a valid site does reach the trap (and fails there, in one line) --
        # once the bad files are gone: an unreadable site file beside it is refused too (a
        # collision with it on a shared host could not be ruled out: tunnelops.fleet)
        for name in bad_files:
            (inv_dir / f"{name}.toml").unlink()
        opts = commands.Options(inventory_dir=inv_dir, site="trap",
                                console=Console(file=io.StringIO()))
        report = commands.bootstrap(opts, None, None)
        assert not report.ok and trap.accepted >= 1
        assert all("\n" not in (h.error or "") and h.error for h in report.hosts.values())
    finally:
        trap.close()


# ============================================================================ 7. clean undo
def test_teardown_puts_each_host_back_as_it_was(labs: Lab,
                                                pristine: dict[str, dict[str, str]],
                                                lab_report: Callable[[str], None]) -> None:
    fresh(labs, pristine)
    up = converged(labs)
    assert up.changed() > 0
    for role in HOSTS:  # the control: the snapshot does see what tunnelops made
        assert len(state_diff(pristine[role], state(labs, role))) > 5, role

    down = run(labs, "teardown")
    assert down.ok and down.changed() > 0, down
    keys = {"stat /etc/wireguard/wg0.key", "hash /etc/wireguard/wg0.key",
            "stat /etc/wireguard/wg0.pub", "hash /etc/wireguard/wg0.pub"}
    for role in HOSTS:
        assert set(state_diff(pristine[role], state(labs, role))) == keys, role

    again = run(labs, "teardown")
    assert again.ok and again.changed() == 0, again

    purge = run(labs, "teardown", purge_keys=True)
    assert purge.ok and purge.changed() > 0, purge
    for role in HOSTS:
        assert state_diff(pristine[role], state(labs, role)) == {}, role

    # and straight from a bootstrapped site, keys and all
    converged(labs)
    purge = run(labs, "teardown", purge_keys=True)
    assert purge.ok, purge
    for role in HOSTS:
        assert state_diff(pristine[role], state(labs, role)) == {}, role
    assert run(labs, "teardown", purge_keys=True).changed() == 0
    lab_report(f"bootstrap {up.seconds:.1f} s, teardown {down.seconds:.1f} s, "
               f"teardown --purge-keys {purge.seconds:.1f} s")


# ============================================================================ 3. secrets
POLLER = r"""
import json, os, sys, time
stop, rate = sys.argv[1], float(sys.argv[2])
seen, samples, t0 = set(), 0, time.monotonic()
while not os.path.exists(stop) and time.monotonic() - t0 < 300:
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            for what in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{pid}/{what}", "rb") as f:
                        seen.add(f.read().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    pass
    samples += 1
    time.sleep(1 / rate)
print(json.dumps({"seen": sorted(seen), "samples": samples,
                  "seconds": time.monotonic() - t0}))
"""


class Poller:
    """Every command line and environment of every process inside a lab host, sampled
    20+ times a second in a background thread, until stopped."""

    def __init__(self, lab: Lab, role: str, rate: float = 40) -> None:
        self.lab, self.role, self.stop_file = lab, role, f"/tmp/poll-stop-{uuid.uuid4().hex}"
        self.result: dict = {}
        self.thread = threading.Thread(target=self._run, args=(rate,), daemon=True)
        self.thread.start()

    def _run(self, rate: float) -> None:
        out = self.lab.exec(self.role, ["python3", "-c", POLLER, self.stop_file, str(rate)],
                            timeout=320)
        self.result = json.loads(out.stdout)

    def stop(self) -> dict:
        self.lab.exec(self.role, ["touch", self.stop_file])
        self.thread.join(30)
        return self.result


def b64_decoded(text: str) -> str:
    """Whatever base64 the text carries (the facts send files that way), decoded."""
    out = []
    for blob in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
        with contextlib.suppress(binascii.Error, ValueError):
            out.append(base64.b64decode(blob + "=" * (-len(blob) % 4)).decode(errors="replace"))
    return "\n".join(out)


def test_private_keys_never_leave_their_host(labs: Lab, pristine: dict[str, dict[str, str]],
                                             lab_report: Callable[[str], None]) -> None:
    fresh(labs, pristine)  # keys are generated during this very run
    inventory_before = labs.inventory.read_text()
    pollers = {role: Poller(labs, role) for role in HOSTS}
    transcript = Transcript()
    try:
        up = run(labs, transcript=transcript)
        assert up.ok, up
        added = run(labs, "add-port", port="12347/udp", transcript=transcript)
        assert added.ok and added.changed() > 0, added
    finally:
        polled = {role: p.stop() for role, p in pollers.items()}
    keys = {r: sh(labs, r, "cat /etc/wireguard/wg0.key").strip() for r in HOSTS}
    pubs = {r: sh(labs, r, "cat /etc/wireguard/wg0.pub").strip() for r in HOSTS}
    for role in HOSTS:
        assert len(base64.b64decode(keys[role])) == 32 and keys[role] != pubs[role]

    sent = transcript.text()
    haystacks = {
        "transcript": sent,
        "transcript, base64-decoded": b64_decoded(sent),
        "console": up.output + added.output,
        "inventory": labs.inventory.read_text(),
        **{f"processes on {r}": "\n".join(polled[r]["seen"]) for r in HOSTS},
    }
    # the controls: the transcript did carry the public keys, the pollers did see the run
    for role in HOSTS:
        assert pubs[role] in sent
        result = polled[role]
        rate = result["samples"] / result["seconds"]
        assert rate >= 20, f"{role} polled at {rate:.0f} Hz only"
        assert any("wireguard-go wg0" in c for c in result["seen"]), role
        assert any("podman" in c for c in polled["home"]["seen"])
    for role, key in keys.items():
        raw = base64.b64decode(key)
        for name, text in haystacks.items():
            assert key not in text and raw.hex() not in text, f"{role}'s key in {name}"
        # on the host itself: only its key file and the WireGuard config hold it
        holders = sh(labs, role, "find /etc /run /tmp /root /home /var/lib/tunnelops /var/log "
                                 f"/var/tmp /var/backups -xdev -type f -exec grep -lsF -- {key} "
                                 "{} + 2>/dev/null; :").split()
        assert sorted(holders) == ["/etc/wireguard/wg0.conf", "/etc/wireguard/wg0.key"], holders
        modes = sh(labs, role, "stat -c '%n %a %U %G' /etc/wireguard /etc/wireguard/wg0.key "
                               "/etc/wireguard/wg0.conf /etc/wireguard/wg0.pub").splitlines()
        assert modes == ["/etc/wireguard 700 root root", "/etc/wireguard/wg0.key 600 root root",
                         "/etc/wireguard/wg0.conf 600 root root",
                         "/etc/wireguard/wg0.pub 644 root root"], (role, modes)
    labs.inventory.write_text(inventory_before)  # 12347/udp out again (next run converges)
    lab_report(f"secrets: {len(transcript.entries)} transcript entries, processes polled at "
               + ", ".join(f"{r} {polled[r]['samples'] / polled[r]['seconds']:.0f} Hz "
                           f"({len(polled[r]['seen'])} distinct)" for r in HOSTS))


# ============================================================================ 4. one run at a time
LOCK_INFO = "/run/tunnelops.lock.info"


def test_second_run_waits_then_names_the_lock_holder(labs: Lab) -> None:
    converged(labs)
    holder = remote(labs, "vps")
    try:
        holder.acquire_lock()  # what a run does first: another run, on the VPS, now
        info = sh(labs, "vps", f"cat {LOCK_INFO}").strip()
        assert re.fullmatch(r"pid=\d+ since=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ token=", info), info
        info = info.removesuffix(" token=")  # a run's token is not shown to people
        second = run(labs)
    finally:
        holder.close()
    assert not second.ok
    assert 5 <= second.seconds < 15, second.seconds  # it waited a few seconds, then gave up
    expected = (f"{VPS}: another tunnelops run holds the lock on {VPS} ({info}): "
                "wait for it to finish, then re-run")
    assert second.error("vps") == expected
    assert error_lines(second.output) == [f"error: {expected}"], second
    assert second.changed() == 0 and second.error("home") == ""
    # the holder gone, the lock is free at once
    third = run(labs)
    assert third.ok and third.changed() == 0, third


def test_lock_of_a_run_that_died_is_released(labs: Lab) -> None:
    assert run(labs, "teardown").ok  # keys kept: a bootstrap with work to do
    # a run killed (SIGKILL: no cleanup at all) while the VPS applies its changes
    proc = subprocess.Popen([str(INV), "bootstrap", "--site", labs.topo.name], cwd=PROJECT,
                            env={**os.environ, "TUNNELOPS_INVENTORY": str(labs.inventory_dir)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("the VPS to start applying",
                   lambda: sh(labs, "vps", "ls /etc/sysctl.d/90-tunnelops.conf 2>/dev/null; :"),
                   30, every=0.05)
        dead = sh(labs, "vps", f"cat {LOCK_INFO}").strip()
    finally:
        proc.kill()
        proc.wait()
    after = run(labs)
    assert after.ok, after
    assert after.seconds < 20, after.seconds
    assert sh(labs, "vps", f"cat {LOCK_INFO} 2>/dev/null; :").strip() != dead
    for role in HOSTS:  # nothing the dead run armed is left to undo what `after` kept
        assert pending_guards(labs, role) == [], role
    # a connection closed abruptly (no SSH goodbye, the TCP connection just goes)
    holder = remote(labs, "vps")
    holder.acquire_lock()
    assert holder.conn.transport is not None
    holder.conn.transport.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    holder.conn.transport.sock.close()  # type: ignore[union-attr]
    again = run(labs)
    holder.close()
    assert again.ok and again.changed() == 0, again


def test_the_locked_script_leaves_the_lock_to_its_channel(labs: Lab) -> None:
    """The lock and the facts are one script (run_locked). What that script starts (a daemon,
    podman's pause process) must not inherit the lock's descriptor: the lock would outlive
    the run, and every later run would wait, then fail. And the facts run only once the
    lock is held: while another run holds it, they do not run at all."""
    first = remote(labs, "home", command_timeout=5)
    try:
        # and stdin at EOF, as any script's (the channel's own stays open, holding the lock)
        res = first.run_locked("cat; sleep 60 </dev/null >/dev/null 2>&1 & echo $!",
                               token="t1")
        lingering = res.stdout.strip()
        assert lingering.isdigit(), res
        assert sh(labs, "home", f"cat {LOCK_INFO}").strip().endswith("token=t1")
    finally:
        first.close()
    try:
        assert sh(labs, "home", f"kill -0 {lingering} && echo alive").strip() == "alive"
        t0 = time.monotonic()
        second = remote(labs, "home")
        try:
            assert second.run_locked("echo gathered", token="t2").stdout == "gathered\n"
            waited = time.monotonic() - t0
            busy = remote(labs, "home")
            try:
                with pytest.raises(RemoteError, match="another tunnelops run holds the lock"):
                    busy.run_locked(f"touch /tmp/ran-{uuid.uuid4().hex[:8]}", wait=1)
                assert busy.trips[-1].seconds < 5
            finally:
                busy.close()
        finally:
            second.close()
        assert waited < 3, waited  # the first run's sleep did not keep the lock
        assert sh(labs, "home", "ls /tmp/ran-* 2>/dev/null; :").strip() == ""
    finally:
        sh(labs, "home", f"kill {lingering} 2>/dev/null; :")


def test_lock_waits_for_the_changes_of_a_run_that_lost_its_connection(labs: Lab) -> None:
    """A run that dies leaves its apply script running on the host until its next write to
    the dead connection: the next run must not gather facts and change the host meanwhile."""
    done = f"/tmp/dead-run-done-{uuid.uuid4().hex[:8]}"
    dying = remote(labs, "home")
    dying.acquire_lock()
    script = apply_script([StepPlan("slow", [CommandChange("slow", f"sleep 3; : > {done}")])])

    def apply() -> None:
        with contextlib.suppress(RemoteError, OSError, EOFError):
            dying.run(script)

    threading.Thread(target=apply, daemon=True).start()
    wait_until("the script to start", lambda: "sleep 3" in sh(labs, "home", "ps -eo args"), 10,
               every=0.05)
    assert dying.conn.transport is not None
    dying.conn.transport.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    t0 = time.monotonic()
    nxt = remote(labs, "home")
    try:
        nxt.acquire_lock()
        waited = time.monotonic() - t0
        assert sh(labs, "home", f"ls {done} 2>/dev/null; :").strip() == done, waited
    finally:
        nxt.close()
        dying.close()
    assert 1.5 < waited < 8, waited


# ============================================================================ 2. no lock-out
# the rate limit: SSH's first rule


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


def test_firewall_change_that_blocks_ssh_undoes_itself(
        labs: Lab, monkeypatch: pytest.MonkeyPatch, lab_report: Callable[[str], None]) -> None:
    converged(labs)
    before = vps_firewall(labs)
    monkeypatch.setattr(nfthost, "host_ruleset",
                        with_rule('tcp dport 22 ct state new drop comment "test: lock-out"'))
    out = run(labs, guard_seconds=GUARD_S)
    ended = time.monotonic()
    assert not out.ok
    expected = re.compile(
        rf"{VPS}: SSH stopped working after the firewall change \({VPS}: a new SSH "
        rf"connection to {VPS_IP}:22 fails \(.+\)\); the host restores its previous state "
        rf"by itself within {GUARD_S}s: fix the cause, then re-run")
    assert expected.fullmatch(out.error("vps")), out.error("vps")
    assert error_lines(out.output) == [f"error: {out.error('vps')}"], out
    # the control: the change was really made, and really locks new connections out
    live, on_disk = vps_firewall(labs)
    assert "test: lock-out" in live and "test: lock-out" in on_disk
    assert not new_connection_gets_banner(labs)
    # ... until the host puts the old rules back by itself, live and for the next boot
    wait_until("the VPS to restore its firewall", lambda: vps_firewall(labs) == before,
               GUARD_S + 3)
    restored = time.monotonic() - ended
    assert pending_guards(labs, "vps") == []
    assert new_connection_gets_banner(labs)
    r = remote(labs, "vps")  # a real login, new connection and all
    try:
        assert r.run("echo in", sudo=False).stdout == "in\n"
    finally:
        r.close()
    monkeypatch.undo()
    # the host table's reload keeps the SSH limiter's memory (as it should): the probes above
    # spent this source's new connections, and the re-run's guard needs one
    forget_ssh_rate(labs)
    again = run(labs)
    assert again.ok, again
    assert vps_firewall(labs)[1] == before[1]
    lab_report(f"lock-out undone {restored:.1f} s after the failed run ended (guard {GUARD_S} s,"
               " its probe waits 5 s)")


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


def test_watchdog_restores_when_the_laptop_vanishes(labs: Lab) -> None:
    converged(labs)
    before = vps_firewall(labs)
    died = vanish_after_firewall_change(labs, 'tcp dport 9 drop comment "never confirmed"')
    live, on_disk = vps_firewall(labs)  # applied, harmless for SSH, and never confirmed
    assert "never confirmed" in live and "never confirmed" in on_disk
    assert len(pending_guards(labs, "vps")) == 1
    wait_until("the VPS to restore its firewall", lambda: vps_firewall(labs) == before,
               GUARD_S + 3)
    assert time.monotonic() - died > 1  # by its watchdog, not at once
    assert pending_guards(labs, "vps") == []
    again = run(labs)
    assert again.ok, again


def test_next_run_confirms_what_a_vanished_run_applied(labs: Lab) -> None:
    """A run that died before confirming its firewall change; the next one (right away)
    finds the site converged: it must not be undone behind its back a few seconds later."""
    assert run(labs, "teardown").ok
    died = vanish_after_firewall_change(labs)
    assert pending_guards(labs, "vps") != []  # the control: armed, never confirmed
    before = vps_diagnostics(labs)
    after = run(labs)
    assert after.ok, (after, before, vps_diagnostics(labs))
    time.sleep(max(0.0, died + GUARD_S + 2 - time.monotonic()))  # the watchdogs woke up
    final = run(labs)
    assert final.ok and final.changed() == 0, final
    assert all(pending_guards(labs, role) == [] for role in HOSTS)


# ============================================================================ 5. interrupted runs
# One interruption point per host and run (both hosts apply in parallel); together they are
# every step boundary of each host, and a kill half-way through writing a file.
INTERRUPTS = [("vps:forwarding", "home:wireguard"), ("vps:wireguard", "home:firewall"),
              ("vps:firewall", "home:service:game"),
              ("vps:forwarding:mid", "home:wireguard:mid")]


@pytest.mark.parametrize("points", INTERRUPTS, ids=["+".join(p) for p in INTERRUPTS])
def test_interrupted_run_fails_clearly_and_a_rerun_converges(
        labs: Lab, points: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
        lab_report: Callable[[str], None]) -> None:
    labs.down()  # a site tunnelops never touched: faster than a teardown, and as pristine
    labs.up()
    monkeypatch.setenv("TUNNELOPS_INTERRUPT", ",".join(points))
    cut = run(labs, guard_seconds=GUARD_S)
    monkeypatch.delenv("TUNNELOPS_INTERRUPT")
    assert not cut.ok
    temp = leftover_temp_files(labs)
    for point in points:
        role, _, where = point.partition(":")
        mid = where.endswith(":mid")
        # half-way through a step's file: killed after the step before it (fleet's site
        # record comes first on the VPS), or before any when it is the first
        after = ("(?:before any step ended|after step [a-z:-]+)" if mid
                 else f"after step {re.escape(where)}")
        assert re.fullmatch(rf"{labs.topo.alias(role)}: the script applying [a-z:, -]+ was "
                            rf"killed {after}: re-run \(every step is idempotent\)",
                            cut.error(role)), cut.error(role)
        assert f"error: {cut.error(role)}" in error_lines(cut.output)
        assert bool(temp[role]) == mid, temp  # the control: a write cut half-way leaves one
    again = run(labs)  # (after the last steps, nothing is left to do: changed=0 is right)
    assert again.ok, again
    assert leftover_temp_files(labs) == {role: "" for role in HOSTS}
    assert all(pending_guards(labs, role) == [] for role in HOSTS)  # nothing to undo later
    final = run(labs)
    assert final.ok and final.changed() == 0, final
    lab_report(f"interrupted {cut.seconds:.1f} s, re-run {again.seconds:.1f} s, "
               f"no-op {final.seconds:.1f} s")


def test_rerun_checks_a_tunnel_that_has_not_handshaken_yet(labs: Lab) -> None:
    """A run killed after its last steps never ran its check, and the tunnel it brought up
    may not have handshaken yet: a re-run with nothing to change must check the tunnel
    (its ping starts a handshake) rather than fail for want of one."""
    converged(labs)
    blocked = (b"table ip safety_test {\n chain f {\n  type filter hook forward priority 0;\n"
               b"  udp dport 51821 drop\n }\n}\n")
    labs.exec("router", ["nft", "-f", "-"], input=blocked)
    try:  # home forgets its session with the VPS, and cannot make a new one
        sh(labs, "home", rehandshake("wg0"))
        assert sh(labs, "home", "wg show wg0 latest-handshakes").split()[1:] == ["0"]
    finally:
        labs.exec("router", ["nft", "delete", "table", "ip", "safety_test"])
    out = run(labs)  # right away: WireGuard retries a handshake only every 5 s
    assert out.ok and out.changed() == 0, out
    assert sh(labs, "home", "wg show wg0 latest-handshakes").split()[1:] != ["0"]


# ============================================================================ 6. broken links
def test_link_cut_mid_run_fails_in_bounded_time_then_a_rerun_converges(
        labs: Lab, monkeypatch: pytest.MonkeyPatch, lab_report: Callable[[str], None]) -> None:
    assert run(labs, "teardown").ok  # work to do
    timeout = 15  # the link timeout (TUNNELOPS_LINK_TIMEOUT's default), not a command's
    uplink = ["ip", "link", "set", "i-vps"]  # the VPS's link, on the internet's side

    def cut_while_the_vps_applies() -> None:
        wait_until("the VPS to start applying",
                   lambda: sh(labs, "vps", "ls /etc/sysctl.d/90-tunnelops.conf 2>/dev/null; :"),
                   60, every=0.05)
        labs.exec("inet", [*uplink, "down"])

    cutter = threading.Thread(target=cut_while_the_vps_applies)
    cutter.start()
    try:
        out = run(labs, guard_seconds=GUARD_S)
    finally:
        cutter.join()
        labs.exec("inet", [*uplink, "up"])
    assert not out.ok
    assert out.seconds < 2 * timeout + 10, out.seconds  # noticed in seconds, not 181 s
    vps_error = out.error("vps")
    assert vps_error.startswith(f"{VPS}: ") and "\n" not in vps_error, vps_error
    # named as link trouble, with what was being done
    assert re.search(rf"the SSH connection was lost during applying [a-z, :-]+ \(no answer "
                     rf"for {timeout}s\)|connection broke", vps_error), vps_error
    assert f"error: {vps_error}" in error_lines(out.output)

    again = run(labs)
    assert again.ok, again
    final = run(labs)
    assert final.ok and final.changed() == 0, final
    assert all(pending_guards(labs, role) == [] for role in HOSTS)
    lab_report(f"link cut: failed after {out.seconds:.1f} s (link timeout {timeout} s), "
               f"re-run {again.seconds:.1f} s")


# ============================================================================ 8b. literal data
def test_hostile_service_values_reach_podman_as_literal_data(labs: Lab) -> None:
    def pwned(n: int) -> str:
        return f"{PWNED}-{n}"

    env = (("SEMI", f"x; touch {pwned(1)}"), ("SUBST", f"$(touch {pwned(2)})"),
           ("TICKS", f"`touch {pwned(3)}`"), ("QUOTES", f"'\"; touch {pwned(4)}; echo '\""),
           ("MORE", "a|b&c>d<e(f){g}*?!\\ $HOME ${IFS} %s %n \t tab"))
    volume_dir = f"/srv/t;touch {pwned(5)} $(touch {pwned(6)}) 'q\""
    command = ("/bin/sh", "/echo.sh", f"$(touch {pwned(7)})", f"`touch {pwned(8)}`",
               f"a;touch {pwned(9)}", "it's \"quoted\"", "")
    labs.exec("home", ["mkdir", "-p", "-m", "755", volume_dir])
    site = load(labs.inventory)
    game = dataclasses.replace(site.services[0], env=env, volumes=(f"{volume_dir}:/data:ro",),
                               command=command)
    name = site_copy(labs, "hostile", services=(game,))
    out = run(labs, site=name)
    assert out.ok, out
    info = json.loads(labs.exec("home", ["podman", "inspect", game.container_name],
                                user="gamer").stdout)[0]
    for key, value in env:
        assert f"{key}={value}" in info["Config"]["Env"], key
    assert [m["Source"] for m in info["Mounts"]] == [volume_dir]
    assert [info["Path"], *info["Args"]] == list(command)
    assert info["State"]["Running"]
    for role in HOSTS:
        assert sh(labs, role, f"ls -d {PWNED}* 2>/dev/null; :") == "", role
    inside = labs.exec("home", ["podman", "exec", game.container_name, "ls", "/tmp"],
                       user="gamer").stdout.decode()
    assert "pwned" not in inside
    assert not list(Path("/tmp").glob(Path(PWNED).name + "*"))
    again = run(labs, site=name)
    assert again.ok and again.changed() == 0, again  # the same spec, read back the same
    assert run(labs).ok  # the lab's own service again
