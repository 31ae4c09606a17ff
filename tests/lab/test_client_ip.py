"""Issue 12, "the game sees the real player", for real: players on the fake internet (the lab's
`inet` namespace, 198.51.100.1, and the laptop behind home's router, 203.0.113.2) send TCP
and UDP through the VPS, and the echo container's reply says whom it saw (`peer=...`).

- client_ip = "preserve" (the default): the player's own address, UDP replies included (the
  container publishes on the tunnel's home address with slirp4netns's port handler, the VPS
  does not SNAT). Before this, every player was 10.0.2.100 (rootlessport).
- client_ip = "snat": 192.168.2.1, the VPS's tunnel address (the seed's way).
- A switch between the two converges in one run that changes only the VPS's firewall (the
  container keeps running), leaves no stale NAT rule, and the next run says changed=0;
  add-port / remove-port keep working in both modes, as set elements (no table reload).

Own instance "labg" (index 18), its inventory in a temporary directory, brought up fresh and
bootstrapped once for the module; the tests run in order, each leaving the next its mode.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import own_lab, slot
from tests.lab.labb_site import (
    changed_steps,
    container_identity,
    describe,
    options,
    sh,
    tcp_echo,
    token,
    udp_echo,
    wait_until,
)
from tunnelops import commands, verify
from tunnelops.inventory.edit import update
from tunnelops.inventory.read import load
from tunnelops.lab import Lab, Topology, demo
from tunnelops.report import RunReport

pytestmark = pytest.mark.lab

TOPO = Topology(*slot("labg", 18))
TUNNEL_VPS = "192.168.2.1"
NEW_UDP, NEW_TCP = 12347, 12348  # the echo image answers on both


@pytest.fixture(scope="module")
def labg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    for lab in own_lab(TOPO, tmp_path_factory.mktemp("inventory")):
        report = run(lab, commands.bootstrap, None, None)
        assert report.ok, describe(report)
        yield lab


def run(lab: Lab, command, *args, **kw) -> RunReport:
    # forget the VPS SSH limiter's memory of us: this module runs the tool more often than
    # the product's 3 connections per 20 s allow one address
    sh(lab, "vps", "nft flush set inet tunnelops-host ssh_new4 2>/dev/null || true")
    return command(options(TOPO.name, lab.inventory_dir), *args, **kw)


def set_mode(lab: Lab, mode: str) -> None:
    update(lab.inventory, lambda s: dataclasses.replace(s, client_ip=mode))


def peer(reply: str) -> str:
    m = re.search(r"\bpeer=(\S+)", reply)
    assert m, f"no peer in {reply!r}"
    return m.group(1)


def seen_from_inet(lab: Lab, port: int, proto: str) -> str:
    """The address the container saw a probe from the fake internet come from."""
    t = token()
    probe = tcp_echo if proto == "tcp" else udp_echo
    reply = wait_until(f"{proto} echo on {port} from inet",
                       lambda: (lambda r: r if t in r else "")(probe(lab, port, t)), 10)
    return peer(str(reply))


def seen_from_laptop(lab: Lab, port: int) -> str:
    """The same over UDP from this machine (the laptop, behind home's router)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.connect((lab.topo.vps_public, port))  # a reply must come from the VPS's address
        s.send(b"from the laptop\n")
        return peer(s.recv(512).decode())


def postrouting(lab: Lab) -> list[str]:
    """The rules of the VPS's NAT postrouting chain, without their handles."""
    text = sh(lab, "vps", "nft list chain inet tunnelops-wg0 postrouting")
    return [line.strip() for line in text.splitlines()
            if "masquerade" in line or " snat " in line]


def table_handle(lab: Lab) -> str:
    return sh(lab, "vps", "nft -a list table inet tunnelops-wg0").splitlines()[0]


def client_rows(lab: Lab) -> dict[str, tuple[bool | None, str]]:
    sh(lab, "vps", "nft flush set inet tunnelops-host ssh_new4 2>/dev/null || true")
    report = verify.run(load(lab.inventory))
    assert report.ok, [(c.id, c.measured, c.hint) for c in report.checks if c.ok is False]
    return {c.id: (c.ok, c.measured) for c in report.checks if c.id.startswith("client.")}


MASQ = 'oifname "eth0" ip saddr 192.168.2.0/24 masquerade comment "home egress"'
SNAT = [f'oifname "wg0" ip daddr 192.168.2.2 {p} dport @svc_{p}_home snat ip to {TUNNEL_VPS} '
        'comment "services of home"' for p in ("tcp", "udp")]


def assert_switched(lab: Lab, mode: str) -> None:
    """One run: only the VPS's firewall changes (and the site's record there, which says the
    mode: a firewalld VPS's sites must agree on it), the container keeps running; the next run
    changes nothing."""
    before = container_identity(lab)
    set_mode(lab, mode)
    report = run(lab, commands.bootstrap, None, None)
    assert report.ok, describe(report)
    assert changed_steps(report, "vps") == ["site", "firewall"], describe(report)
    assert changed_steps(report, "home") == [], describe(report)
    assert container_identity(lab) == before
    again = run(lab, commands.bootstrap, None, None)
    assert again.ok and [changed_steps(again, r) for r in again.hosts] == [[], []], \
        describe(again)
    assert postrouting(lab) == ([MASQ, *SNAT] if mode == "snat" else [MASQ])


# ------------------------------------------------------------------------------ the tests
def test_preserve_the_game_sees_each_player(labg: Lab) -> None:
    t = labg.topo
    assert load(labg.inventory).client_ip == "preserve"
    assert postrouting(labg) == [MASQ]  # no SNAT of what is forwarded into the tunnel
    assert seen_from_inet(labg, 12346, "tcp") == t.inet_vps_side == "198.51.100.1"
    assert seen_from_inet(labg, 12345, "udp") == t.inet_vps_side  # and the reply came back
    assert seen_from_laptop(labg, 12345) == t.router_wan == "203.0.113.2"
    shown = demo.probes(labg)  # the demo's table: a player's probe beside whom the game saw
    assert [(p.sender, p.seen, p.ok) for p in shown[:2]] == [(t.inet_vps_side,) * 2 + (True,)] * 2
    rows = client_rows(labg)
    assert rows == {
        "client.game.tcp": (True, "game sees 203.0.113.2, the address the VPS saw the probe "
                                  "come from"),
        "client.game.udp": (True, "game sees 203.0.113.2, the address the VPS saw the probe "
                                  "come from")}


def test_switch_to_snat_converges_in_one_run(labg: Lab) -> None:
    assert_switched(labg, "snat")
    assert seen_from_inet(labg, 12346, "tcp") == TUNNEL_VPS
    assert seen_from_inet(labg, 12345, "udp") == TUNNEL_VPS
    assert [(p.seen, p.ok) for p in demo.probes(labg, snat=True)[:2]] == [(TUNNEL_VPS, True)] * 2
    rows = client_rows(labg)
    assert [ok for ok, _ in rows.values()] == [True, True]
    assert all(m.startswith(f"game sees {TUNNEL_VPS}: every player appears as the VPS")
               for _, m in rows.values()), rows


@pytest.mark.parametrize("mode", ["snat", "preserve"])
def test_add_and_remove_port(labg: Lab, mode: str) -> None:
    """In both modes: a port is one set element more, then one less (the table is never
    reloaded: its handle stays), and the new port's players are seen as the mode says."""
    if load(labg.inventory).client_ip != mode:
        assert_switched(labg, mode)
    expected = TUNNEL_VPS if mode == "snat" else labg.topo.inet_vps_side
    handle = table_handle(labg)
    for port, proto in ((NEW_UDP, "udp"), (NEW_TCP, "tcp")):
        report = run(labg, commands.change_port, f"{port}/{proto}", None, add=True)
        assert report.ok, describe(report)
        assert seen_from_inet(labg, port, proto) == expected
    assert table_handle(labg) == handle
    assert seen_from_inet(labg, 12345, "udp") == expected  # the old ports carry on
    for port, proto in ((NEW_UDP, "udp"), (NEW_TCP, "tcp")):
        report = run(labg, commands.change_port, f"{port}/{proto}", None, add=False)
        assert report.ok, describe(report)
    assert udp_echo(labg, NEW_UDP, "gone") == "" and tcp_echo(labg, NEW_TCP, "gone") == ""
    assert table_handle(labg) == handle
    assert postrouting(labg) == ([MASQ, *SNAT] if mode == "snat" else [MASQ])


def test_inventory_says_the_mode_it_was_left_in(labg: Lab) -> None:
    """The switches went through the inventory writer: one key, in [site], comments kept."""
    text = Path(labg.inventory).read_text()
    assert text.count("client_ip") == 1 and '\nclient_ip = "preserve"\n' in text
    assert text.startswith("# ")  # the lab's header comment is still there
