"""Issue #4, "done means", end to end in the lab: after bootstrap, players on the internet reach
the rootless container through the VPS public address (TCP and UDP) and the container's own
traffic leaves through the VPS; `inv add-port` / `inv remove-port` change exactly one port end
to end in one command with one SSH login per host; a re-run afterwards changes nothing and
leaves the container running; bad input fails before any SSH connection.

Instance "labb" (index 4) is brought up fresh and bootstrapped once for the module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.labb_site import (
    CONTAINER,
    LABB,
    Bootstrapped,
    bootstrap,
    both_states,
    changed_steps,
    container_identity,
    describe,
    fresh_bootstrapped_labb,
    inv,
    logins,
    options,
    podman,
    sh,
    sshd_log,
    summary,
    tcp_echo,
    token,
    udp_echo,
    wait_until,
)
from tunnelops import commands

pytestmark = pytest.mark.lab

NEW_PORT = "12347/udp"
VOICE = """
[[services]]
name = "voice"
image = "localhost/tunnelops-echo:latest"
user = "gamer"
ports = ["27015-27017/udp"]
"""


@pytest.fixture(scope="module")
def site() -> Iterator[Bootstrapped]:
    """labb, fresh, after one bootstrap (commands.bootstrap: the report is kept)."""
    yield from fresh_bootstrapped_labb(via_cli=False)


def echoed_udp(site: Bootstrapped, port: int) -> None:
    t = token()
    got = wait_until(f"UDP echo on {port}", lambda: udp_echo(site.lab, port, t), 5)
    assert re.fullmatch(rf"udp-echo port={port} peer=\S+ got={t}\n", got), got


def echoed_tcp(site: Bootstrapped, port: int) -> None:
    t = token()
    got = wait_until(f"TCP echo on {port}", lambda: tcp_echo(site.lab, port, t), 5)
    assert re.fullmatch(rf"tcp-echo port={port} peer=\S+\n{t}\n", got), got


def site_dir(site: Bootstrapped, tmp_path: Path, name: str, *, hosts: str | None,
             extra: str = "") -> Path:
    """An inventory dir holding a copy of labb's site file as NAME; hosts=None keeps labb's
    hosts, else "PREFIX" gives PREFIX-vps / PREFIX-home (aliases nobody can reach)."""
    text = site.lab.inventory.read_text().replace(f'name = "{LABB.name}"', f'name = "{name}"')
    if hosts is not None:
        for role in ("vps", "home"):
            text = text.replace(f'host = "{LABB.alias(role)}"', f'host = "{hosts}-{role}"')
    d = tmp_path / name
    d.mkdir()
    (d / f"{name}.toml").write_text(text + extra)
    return d


def sshd_lines(site: Bootstrapped) -> dict[str, int]:
    return {role: len(sshd_log(site.lab, role)) for role in ("vps", "home")}


# ------------------------------------------------------------------------------ players
def test_players_reach_the_container_and_its_egress_leaves_through_the_vps(
        site: Bootstrapped) -> None:
    lab = site.lab
    assert site.report is not None and site.report.ok, describe(site.report)
    assert "service:game" in changed_steps(site.report, "home")
    echoed_udp(site, 12345)
    echoed_tcp(site, 12346)
    # only the listed port and protocol are forwarded: TCP 12345 is dropped by the VPS
    assert tcp_echo(lab, 12345, token()) == ""
    # the container runs rootless as the service's user
    assert podman(lab, "inspect", "--format", "{{.State.Running}}", CONTAINER).strip() == "true"
    # and its own connections leave through the tunnel and the VPS
    egress = podman(lab, "exec", CONTAINER, "wget", "-qO-", lab.topo.whoami_url).strip()
    assert egress == lab.topo.vps_public


# ------------------------------------------------------------------------------ add / remove
def test_add_port_works_end_to_end_in_one_command(site: Bootstrapped) -> None:
    lab = site.lab
    t = token()
    assert udp_echo(lab, 12347, t) == ""  # not yet
    logs = sshd_lines(site)
    res = inv("add-port", NEW_PORT, "--site", LABB.name)
    assert res.returncode == 0, res.stdout + res.stderr
    counts = summary(res.stdout)
    assert counts["vps"]["changed"] >= 1 and counts["home"]["changed"] >= 1, res.stdout
    for role in ("vps", "home"):  # one login per host (the firewall guard's probe is no login)
        new = logins(sshd_log(lab, role)[logs[role]:])
        assert len(new) == 1, (role, new)
    echoed_udp(site, 12347)
    echoed_udp(site, 12345)
    echoed_tcp(site, 12346)
    assert f'"{NEW_PORT}"' in lab.inventory.read_text()

    # adding it again: the hosts are only checked, with one connection each
    opts = options(LABB.name)
    report = commands.change_port(opts, NEW_PORT, None, add=True)
    assert report.ok, describe(report)
    for role, host in report.hosts.items():
        assert host.connects == 1, (role, host.connects)
        assert changed_steps(report, role) == [], describe(report)
    assert "already" in opts.console.file.getvalue()


def test_remove_port_closes_it_everywhere(site: Bootstrapped) -> None:
    lab = site.lab
    logs = sshd_lines(site)
    res = inv("remove-port", NEW_PORT, "--site", LABB.name)
    assert res.returncode == 0, res.stdout + res.stderr
    for role in ("vps", "home"):
        new = logins(sshd_log(lab, role)[logs[role]:])
        assert len(new) == 1, (role, new)
    assert udp_echo(lab, 12347, token()) == ""
    echoed_udp(site, 12345)  # the control: the rest still works
    echoed_tcp(site, 12346)

    assert "12347" not in sh(lab, "vps", "nft -s list ruleset")
    assert "12347" not in sh(lab, "vps", "cat /etc/tunnelops/wg0.nft")
    for args in ("--list-ports", "--permanent --list-ports"):
        ports = sh(lab, "home", f"firewall-cmd {args}").split()
        assert ports and "12347/udp" not in ports, (args, ports)
    assert "12347" not in sh(lab, "home", "nft -s list ruleset")
    assert "12347" not in sh(lab, "home", "cat /etc/tunnelops/wg0.firewalld-ports")
    published = podman(lab, "port", CONTAINER)
    assert "12345/udp" in published and "12347" not in published, published
    assert NEW_PORT not in lab.inventory.read_text()


def test_rerun_after_all_that_changes_nothing_and_keeps_the_container(
        site: Bootstrapped) -> None:
    lab = site.lab
    ident = container_identity(lab)
    before = both_states(lab)
    report, _ = bootstrap(LABB.name)
    assert report.ok, describe(report)
    for role, host in report.hosts.items():
        assert changed_steps(report, role) == [], describe(report)
        # the host lock and the facts in one script (was 2 before issue 14), and the check's
        # ping when the last handshake is old
        assert host.round_trips <= 2, (role, host.round_trips)
    assert container_identity(lab) == ident  # same Id, same StartedAt: not restarted
    assert both_states(lab) == before
    echoed_udp(site, 12345)


# ------------------------------------------------------------------------------ bad input
BAD = [  # argv, words the one line must have
    (["add-port", "0/udp"], ["port 0", "1-65535"]),
    (["add-port", "65536/tcp"], ["65536", "1-65535"]),
    (["add-port", "12347/sctp"], ["sctp", "tcp or udp"]),
    (["add-port", "27016/udp"], ["27016/udp", "'voice'", "27015-27017/udp"]),
    (["add-port", "22/tcp"], ["22/tcp", "SSH port"]),
    (["add-port", "51821/udp"], ["51821/udp", "WireGuard"]),
    (["add-port", "10-5/udp"], ["10-5", "reversed", "5-10/udp"]),
    (["add-port", "12347"], ["no protocol", "PORT/PROTO"]),
    (["add-port", "udp/12347"], ["'udp/12347'", "tcp or udp"]),
    (["remove-port", "0-12/tcp"], ["port 0", "1-65535"]),
]


def test_bad_port_input_fails_before_any_ssh(site: Bootstrapped, tmp_path: Path) -> None:
    """Hosts nobody can reach: any attempt to connect would fail with "cannot reach" (exit 1)
    instead of the port's own one-line error (exit 2)."""
    inv_dir = site_dir(site, tmp_path, "unreach", hosts="unreachable", extra=VOICE)
    text = (inv_dir / "unreach.toml").read_text()
    for argv, words in [*BAD, (["add-port", "12347/udp", "--service", "nope"],
                               ["unknown service 'nope'", "game, voice"])]:
        service = [] if "--service" in argv else ["--service", "game"]
        res = inv(*argv, *service, "--site", "unreach", inventory_dir=inv_dir)
        assert res.returncode == 2, (argv, res.stdout, res.stderr)
        assert res.stdout == "", (argv, res.stdout)
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, res.stderr)
        assert "cannot reach" not in lines[0]
        for word in words:
            assert word in lines[0], (argv, word, lines[0])
        assert (inv_dir / "unreach.toml").read_text() == text  # nothing recorded either
    # the positive control: valid input does get as far as connecting
    res = inv("add-port", "12348/udp", "--service", "voice", "--site", "unreach",
              inventory_dir=inv_dir)
    assert res.returncode == 1 and "cannot reach" in res.stdout, res.stdout + res.stderr


def test_bad_port_input_on_the_real_site_opens_no_connection(site: Bootstrapped) -> None:
    logs = sshd_lines(site)
    inventory = site.lab.inventory.read_text()
    for argv in (["add-port", "0/udp"], ["add-port", "22/tcp"], ["remove-port", "99999/udp"],
                 ["add-port", "12347/udp", "--service", "nope"]):
        res = inv(*argv, "--site", LABB.name)
        assert res.returncode == 2 and len(res.stderr.splitlines()) == 1, (argv, res.stderr)
    assert sshd_lines(site) == logs  # not even a TCP connection reached sshd
    assert site.lab.inventory.read_text() == inventory


def test_two_services_need_service_and_the_error_lists_them(
        site: Bootstrapped, tmp_path: Path) -> None:
    inv_dir = site_dir(site, tmp_path, "two", hosts="unreachable", extra=VOICE)
    res = inv("add-port", "12348/udp", "--site", "two", inventory_dir=inv_dir)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert "--service is required" in lines[0] and "(game, voice)" in lines[0], lines[0]
