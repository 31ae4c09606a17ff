"""Issue #3, "done means", end to end in the lab: `inv bootstrap` on a fresh VPS + home server
brings the tunnel up with policy routing (only the tunnel's traffic uses it), a second run
changes nothing, drift is repaired exactly, --dry-run changes nothing, a sudo user works like
root, and bad hosts fail with one line naming the host and the fix, writing nothing.

Instance "labb" (index 4) is brought up fresh and bootstrapped once for the module; the fresh
lab tests use a throw-away "labb2" (index 6), up and down within the test.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import slot
from tests.lab.env import forget_ssh_rate
from tests.lab.labb_site import (
    LABB,
    TUNNEL_HOME,
    TUNNEL_VPS,
    Bootstrapped,
    bootstrap,
    both_states,
    changed_steps,
    describe,
    error_lines,
    fresh_bootstrapped_labb,
    handshake_age,
    inv,
    logins,
    main_default_routes,
    ping,
    sh,
    sshd_log,
    summary,
    wait_until,
    wg,
    whoami,
    written_state,
)
from tunnelops.lab import Lab

pytestmark = pytest.mark.lab

FRESH = slot("labb2", 6)


@pytest.fixture(scope="module")
def site() -> Iterator[Bootstrapped]:
    """labb, fresh, after one `inv bootstrap --site labb` (the CLI, as a user runs it)."""
    yield from fresh_bootstrapped_labb(via_cli=True)


def site_copy(lab: Lab, dest_dir: Path, name: str, **replace: str) -> Path:
    """A copy of the lab's site file under another name, with some values replaced:
    vps/home (hosts), ssh_config, known_hosts."""
    text = lab.inventory.read_text()
    text = text.replace(f'name = "{lab.topo.name}"', f'name = "{name}"', 1)
    for key, value in replace.items():
        if key in ("vps", "home"):
            text = text.replace(f'host = "{lab.topo.alias(key)}"', f'host = "{value}"', 1)
        else:
            text, n = re.subn(rf'(?m)^{key} = ".*"$', f'{key} = "{value}"', text, count=1)
            assert n == 1, key
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{name}.toml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ a fresh lab
def test_fresh_bootstrap_tunnel_up_and_only_tunnel_traffic_uses_it(site: Bootstrapped) -> None:
    lab, res = site.lab, site.cli
    assert res is not None
    assert res.returncode == 0, res.stdout + res.stderr
    counts = summary(res.stdout)
    for role in ("vps", "home"):
        assert counts[role]["failed"] == 0, res.stdout
        assert counts[role]["changed"] >= 3, res.stdout  # keys, wireguard, firewall at least
    vps_ip = lab.topo.vps_public

    # the two ends know each other and have shaken hands
    vps_key, home_key = wg(lab, "vps", "public-key"), wg(lab, "home", "public-key")
    assert wg(lab, "vps", "peers") == home_key
    assert wg(lab, "home", "peers") == vps_key
    assert wg(lab, "home", "endpoints") == f"{vps_key}\t{vps_ip}:51821"
    assert wg(lab, "vps", "allowed-ips") == f"{home_key}\t{TUNNEL_HOME}/32"
    assert ping(lab, "home", TUNNEL_VPS, count=3)
    assert ping(lab, "vps", TUNNEL_HOME, count=1)
    for role in ("vps", "home"):
        age = handshake_age(lab, role)
        assert age is not None and age < 120, (role, age)

    # traffic from the tunnel address leaves through the VPS; everything else from home
    # still leaves through its own router (the main default route never moved)
    assert whoami(lab, "--interface", TUNNEL_HOME) == vps_ip
    assert whoami(lab) == lab.topo.router_wan == "203.0.113.2"
    after = main_default_routes(lab)
    assert after == site.before
    assert site.before["home"].startswith(f"default via {lab.topo.router_lan} dev eth0"), \
        site.before
    rules = sh(lab, "home", "ip rule")
    assert f"100:\tfrom {TUNNEL_HOME} lookup 201" in rules, rules
    assert f"101:\tfrom all to {TUNNEL_VPS} lookup 201" in rules, rules
    assert sh(lab, "home", "ip route show table 201").startswith("default dev wg0")

    # what bootstrap discovered is recorded in the site file
    text = lab.inventory.read_text()
    assert f'public_ip = "{vps_ip}"' in text and 'wan_interface = "eth0"' in text


def test_second_run_changes_nothing(site: Bootstrapped) -> None:
    lab = site.lab
    before = both_states(lab)
    report, out = bootstrap(LABB.name)
    assert report.ok, describe(report)
    for role, host in report.hosts.items():
        assert changed_steps(report, role) == [], describe(report)
        assert host.count("ok") == len(host.steps) > 0
        # the host lock and the facts in one script (was 2 before issue 14), and the check's
        # ping when the last handshake is old
        assert host.round_trips <= 2, (role, host.round_trips)
        assert host.connects == 1, (role, host.connects)
    assert "changed=0" in out
    assert both_states(lab) == before


# ------------------------------------------------------------------------------ drift
def test_deleted_policy_rule_is_put_back_and_nothing_else(site: Bootstrapped) -> None:
    lab = site.lab
    baseline = both_states(lab)
    lab.exec("home", ["ip", "rule", "del", "from", TUNNEL_HOME])
    assert f"from {TUNNEL_HOME} lookup" not in sh(lab, "home", "ip rule")

    report, _ = bootstrap(LABB.name)
    assert report.ok, describe(report)
    assert changed_steps(report, "home") == ["wireguard"], describe(report)
    assert changed_steps(report, "vps") == [], describe(report)
    step = next(s for s in report.hosts["home"].steps if s.step == "wireguard")
    assert step.changes == [f"add policy rule from {TUNNEL_HOME}/32 table 201"], step.changes

    assert both_states(lab) == baseline  # the same rule, same priority; nothing else moved
    assert whoami(lab, "--interface", TUNNEL_HOME) == lab.topo.vps_public


def test_wrong_peer_key_on_the_vps_is_repaired_and_the_tunnel_comes_back(
        site: Bootstrapped) -> None:
    lab = site.lab
    baseline = both_states(lab)
    home_key = wg(lab, "home", "public-key")
    wrong_key = lab.exec("vps", ["wg", "pubkey"], input=lab.exec("vps", ["wg", "genkey"]).stdout
                         ).stdout.decode().strip()
    # edited by hand and applied: the tunnel is really broken
    lab.exec("vps", ["bash", "-c",
                     f"sed -i 's|^PublicKey = {home_key}$|PublicKey = {wrong_key}|' "
                     "/etc/wireguard/wg0.conf && grep -q '^PublicKey = ' /etc/wireguard/wg0.conf"
                     " && wg syncconf wg0 <(wg-quick strip wg0)"])
    assert wg(lab, "vps", "peers") == wrong_key
    assert not ping(lab, "home", TUNNEL_VPS, count=2, wait=1)

    # the module's bootstraps came one after the other: the VPS's SSH limiter (3 at once,
    # then 9 a minute) may have no connection left for this run's proof, which it then drops
    # ("a new SSH connection ... timed out"); a minute's wait, as tests/lab/env.py does
    forget_ssh_rate(lab)
    report, _ = bootstrap(LABB.name)
    assert report.ok, describe(report)
    assert changed_steps(report, "vps") == ["wireguard"], describe(report)
    assert changed_steps(report, "home") == [], describe(report)
    step = next(s for s in report.hosts["vps"].steps if s.step == "wireguard")
    files = [c for c in step.changes if c.split(" ")[0] in ("create", "update", "remove")]
    assert files == ["update /etc/wireguard/wg0.conf"], step.changes

    assert wg(lab, "vps", "peers") == home_key
    assert ping(lab, "home", TUNNEL_VPS, count=3)
    age = handshake_age(lab, "vps")
    assert age is not None and age < 30, age
    assert both_states(lab) == baseline  # the same file again, byte for byte


def test_dry_run_on_the_converged_lab_lists_nothing(site: Bootstrapped) -> None:
    lab = site.lab
    before = both_states(lab)
    inventory = lab.inventory.read_text()
    report, out = bootstrap(LABB.name, dry_run=True)
    assert report.ok and report.dry_run, describe(report)
    for role, host in report.hosts.items():
        assert {s.status for s in host.steps} == {"ok"}, describe(report)
        assert host.round_trips == 1, (role, host.round_trips)  # the lock's script gathers
    assert "nothing to change" in out, out
    assert both_states(lab) == before
    assert lab.inventory.read_text() == inventory


# ------------------------------------------------------------------------------ a throw-away lab
def test_dry_run_on_a_fresh_lab_lists_every_change_and_changes_nothing(
        lab_factory: Callable[[str, int], Lab]) -> None:
    fresh = lab_factory(*FRESH)
    fresh.up()
    before = written_state(fresh)
    inventory = fresh.inventory.read_text()

    report, out = bootstrap(fresh.topo.name, inventory_dir=fresh.inventory_dir, dry_run=True)
    assert report.ok and report.dry_run, describe(report)
    want = {"vps": {"keys", "forwarding", "wireguard", "firewall"},
            "home": {"keys", "wireguard", "firewall", "service:game"}}
    for role, host in report.hosts.items():
        pending = {s.step for s in host.steps if s.status == "would change"}
        assert want[role] <= pending, describe(report)
        assert {s.status for s in host.steps} <= {"ok", "would change"}, describe(report)
        assert host.round_trips == 1, (role, host.round_trips)  # the lock's script gathers
        for s in host.steps:
            for change in s.changes:  # every change is listed...
                assert f"~ {change}" in out, change
    for path in ("/etc/wireguard/wg0.conf", "/etc/tunnelops/wg0.nft"):
        assert f"+++ b{path}" in out  # ...with its diff
    assert "create container tunnelops-game" in out

    after = written_state(fresh)
    assert after == before
    for role in ("vps", "home"):
        assert lab_file_absent(fresh, role, "/etc/wireguard/wg0.conf")
        assert lab_file_absent(fresh, role, "/etc/wireguard/wg0.key")
        assert "wg0" not in sh(fresh, role, "ip -o link show")
    assert "tunnelops" not in sh(fresh, "vps", "nft list tables")
    assert fresh.inventory.read_text() == inventory  # nothing recorded either


def lab_file_absent(lab: Lab, role: str, path: str) -> bool:
    return lab.exec(role, ["test", "-e", path], check=False).returncode == 1


def test_bad_hosts_fail_with_one_line_and_write_nothing(
        lab_factory: Callable[[str, int], Lab], tmp_path: Path) -> None:
    """On a FRESH lab, so that "nothing written" means something: a run that got as far as
    preparing the other host would generate its keys there."""
    fresh = lab_factory(*FRESH)
    fresh.up()
    alias = fresh.topo.alias
    # a user who may log in at home but has no sudo rights
    pub = Path(f"{fresh.key}.pub").read_bytes()
    sh(fresh, "home", "useradd -m -s /bin/bash nosudo && usermod -p '*' nosudo && "
                      "install -d -m 700 -o nosudo -g nosudo /home/nosudo/.ssh && "
                      "cat > /home/nosudo/.ssh/authorized_keys && "
                      "chown nosudo:nosudo /home/nosudo/.ssh/authorized_keys", input=pub)
    # a key the hosts have never seen, for home only
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "stranger")], check=True)
    blocks = re.split(r"(?m)^(?=Host )", fresh.ssh_config.read_text())
    badkey_config = tmp_path / "ssh_config.badkey"
    badkey_config.write_text("".join(
        re.sub(r"IdentityFile .*", f"IdentityFile {tmp_path / 'stranger'}", b)
        if b.startswith(f"Host {alias('home')}\n") else b for b in blocks))
    no_home_key = tmp_path / "known_hosts.nohome"
    no_home_key.write_text("".join(line for line in fresh.known_hosts.read_text()
                                   .splitlines(keepends=True)
                                   if not line.startswith(f"{alias('home')},")))
    cases = [  # site name, replacements, failing host as named, words the line must have
        ("nohost", {"vps": f"{fresh.topo.name}-nosuch"}, f"{fresh.topo.name}-nosuch",
         ["cannot reach", "ssh_config"]),
        ("badkey", {"ssh_config": str(badkey_config)}, alias("home"),
         ["refused our key", "authorized_keys", "IdentityFile"]),
        ("newhost", {"known_hosts": str(no_home_key)}, alias("home"),
         ["unknown host key", "--trust-new-host", str(no_home_key)]),
        ("nosudo", {"home": f"nosudo@{alias('home')}"}, f"nosudo@{alias('home')}",
         ["sudo", "passwordless sudo", "root"]),
        ("nopublic", {}, alias("vps"),
         ["no public IPv4", "set [vps] public_ip and wan_interface", "nopublic.toml"]),
    ]
    before = written_state(fresh)
    kh_before = no_home_key.read_text()
    for name, replace, dest, words in cases:
        if name == "nopublic":  # a VPS with no default route, so no public IPv4 to find
            sh(fresh, "vps", f"ip route del default && ip route add {fresh.topo.router_wan}/32"
                             f" via {fresh.topo.inet_vps_side}")
        # each in an inventory of its own: one beside another that shares its home but
        # not its VPS would be refused first, as a second site on the home's wg0 (fleet)
        inv_dir = tmp_path / name
        site_copy(fresh, inv_dir, name, **replace)
        res = inv("bootstrap", "--site", name, inventory_dir=inv_dir)
        both = res.stdout + res.stderr
        assert res.returncode == 1, (name, both)
        assert "Traceback" not in both, (name, both)
        errors = error_lines(res.stdout)
        assert len(errors) == 1, (name, both)  # one line, even at 80 columns
        assert errors[0].startswith(f"error: {dest}: "), (name, errors)
        for word in words:
            assert word in errors[0], (name, word, errors[0])
        assert written_state(fresh) == before, name
    assert no_home_key.read_text() == kh_before  # not trusted without --trust-new-host
    for role in ("vps", "home"):
        assert lab_file_absent(fresh, role, "/etc/wireguard/wg0.key")


# ------------------------------------------------------------------------------ other ways in
def test_sudo_user_gets_the_same_result(site: Bootstrapped, tmp_path: Path) -> None:
    lab = site.lab
    inv_dir = tmp_path / "inventory"
    site_copy(lab, inv_dir, "labbops", vps=f"ops@{LABB.alias('vps')}",
              home=f"ops@{LABB.alias('home')}")
    before = both_states(lab)
    logs = {role: len(sshd_log(lab, role)) for role in ("vps", "home")}
    report, _ = bootstrap("labbops", inventory_dir=inv_dir)
    assert report.ok, describe(report)
    for role, host in report.hosts.items():
        assert host.dest == f"ops@{LABB.alias(role)}"
        assert changed_steps(report, role) == [], describe(report)
        # the host lock and the facts in one script (was 2 before issue 14), and the check's
        # ping when the last handshake is old
        assert host.round_trips <= 2, (role, host.round_trips)
        new = logins(sshd_log(lab, role)[logs[role]:])
        assert len(new) == 1 and new[0].startswith("Accepted publickey for ops "), new
    assert both_states(lab) == before


def test_unknown_host_key_refused_then_recorded_with_trust_new_host(
        site: Bootstrapped, tmp_path: Path) -> None:
    lab = site.lab
    home = LABB.alias("home")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("".join(line for line in lab.known_hosts.read_text()
                                   .splitlines(keepends=True)
                                   if not line.startswith(f"{home},")))
    inv_dir = tmp_path / "inventory"
    site_copy(lab, inv_dir, "labbkh", known_hosts=str(known_hosts))
    before = both_states(lab)

    res = inv("bootstrap", "--site", "labbkh", inventory_dir=inv_dir)
    assert res.returncode == 1, res.stdout + res.stderr
    errors = error_lines(res.stdout)
    assert len(errors) == 1 and errors[0].startswith(f"error: {home}: unknown host key"), \
        res.stdout
    assert "--trust-new-host" in errors[0]
    assert lab.host_public_key("home") not in known_hosts.read_text()

    res = inv("bootstrap", "--site", "labbkh", "--trust-new-host", inventory_dir=inv_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert all(c["changed"] == 0 for c in summary(res.stdout).values()), res.stdout
    recorded = [line for line in known_hosts.read_text().splitlines()
                if lab.host_public_key("home") in line]
    assert recorded == [f"{LABB.home_lan} {lab.host_public_key('home')}"], recorded

    res = inv("bootstrap", "--site", "labbkh", inventory_dir=inv_dir)  # trusted from now on
    assert res.returncode == 0, res.stdout + res.stderr
    assert both_states(lab) == before
    wait_until("a live tunnel", lambda: ping(lab, "home", TUNNEL_VPS), 5)
