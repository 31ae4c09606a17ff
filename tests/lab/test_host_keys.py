"""Safety (README "Safety"), against its own lab instance "labhk" (index 8).

Host keys: known_hosts is honoured and never rewritten; an unknown key is refused with
its fingerprint until `--trust-new-host` records it; a changed key is always refused, with the
`ssh-keygen -R` line to run.

What the modules of the Safety promises share (the lab instance, run, state): safety_env.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.lab.env import sh
from tests.lab.safety_env import (
    error_lines,
    fingerprint,
    inv,
    lab_fixtures,
    remote,
    run,
    site_copy,
)
from tunnelops.lab import Lab
from tunnelops.lab.topology import HOSTS
from tunnelops.remote import RemoteError

pytestmark = pytest.mark.lab

labs, pristine = lab_fixtures("labhk", 8)


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
    errors, vps = error_lines(proc.stdout), labs.topo.alias("vps")
    assert len(errors) == 1 and errors[0].startswith(f"error: {vps}: host key"), proc.stdout
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
