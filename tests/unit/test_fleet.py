"""Sites of one inventory that would collide on a host they share are refused before any SSH
(issue 11), naming both files, with the fix; copies of one deployment are not two sites."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tunnelops import fleet
from tunnelops.inventory.new import new_site
from tunnelops.inventory.write import save
from tunnelops.model.hosts import HomeSpec, HostRef
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service


def svc(name: str, port: str, user: str = "gamer") -> Service:
    return Service(name, "docker.io/example/game:latest", (PortSpec.parse(port),), user)


LAB = new_site("lab", "lab-vps", "lab-home", services=(svc("game", "12345/udp"),))
# a second site on the same VPS for another home: its own everything
FRIEND = new_site("friend", "lab-vps", "friend-home", services=(svc("voice", "64738/udp"),),
                  interface="wg1", listen_port=51822, subnet="192.168.3.0/24")


def check(site, *others) -> None:
    fleet.check(site, Path(f"inventory/{site.name}.toml"),
                [(Path(f"inventory/{o.name}.toml"), o) for o in others])


def test_sites_side_by_side_on_one_vps_pass() -> None:
    check(FRIEND, LAB)
    check(LAB, FRIEND)


@pytest.mark.parametrize(("change", "message"), [
    (dict(interface="wg0"),
     "friend.toml: interface wg0 on VPS lab-vps is site 'lab''s too (lab.toml): set [tunnel] "
     "interface to another, e.g. wg1"),
    (dict(listen_port=51821),
     "friend.toml: WireGuard listen port 51821/udp on VPS lab-vps is site 'lab''s too "
     "(lab.toml): set [tunnel] listen_port to another, e.g. 51822"),
    (dict(subnet="192.168.2.0/25"),
     "friend.toml: tunnel subnet 192.168.2.0/25 (theirs: 192.168.2.0/24) on VPS lab-vps is "
     "site 'lab''s too (lab.toml): set [tunnel] subnet to a free range, e.g. subnet = "
     "\"192.168.3.0/24\""),
    (dict(services=(svc("voice", "12340-12349/udp"),)),
     "friend.toml: port 12340-12349/udp (forwarded there as 12345/udp) on VPS lab-vps is site "
     "'lab''s too (lab.toml): give the service another port"),
])
def test_sites_colliding_on_the_vps_are_refused(change: dict, message: str) -> None:
    values = {"interface": "wg1", "listen_port": 51822, "subnet": "192.168.3.0/24",
              "services": FRIEND.services, **change}
    with pytest.raises(fleet.Collision) as err:
        check(new_site("friend", "lab-vps", "friend-home", **values), LAB)
    assert str(err.value) == message


def test_a_home_behind_two_vpses_needs_its_own_everything() -> None:
    second = new_site("second", "vps2", "lab-home", services=(svc("web", "8080/tcp", "www"),),
                      interface="wg1", subnet="192.168.3.0/24", route_table=202,
                      rule_priority=110)
    check(second, LAB)
    for change, what in [
        (dict(interface="wg0"), "interface wg0"),
        (dict(route_table=201), "routing table 201"),
        (dict(rule_priority=101), "policy rule priorities 101, 102"),
    ]:
        t = dataclasses.replace(second.tunnel, **change)
        with pytest.raises(fleet.Collision, match=f"^second.toml: {what} on home lab-home is "
                                                  r"site 'lab''s too \(lab.toml\): "):
            check(dataclasses.replace(second, tunnel=t), LAB)
    same_container = dataclasses.replace(second, services=(svc("game", "8080/tcp"),))
    with pytest.raises(fleet.Collision, match=r"container tunnelops-game of user gamer"):
        check(same_container, LAB)


def test_copies_of_one_deployment_are_not_compared() -> None:
    """Another file for the same VPS and homes (another known_hosts, a sudo user, a test's
    variant): the same site, whatever it says; the host's record decides (steps.sites)."""
    copy = dataclasses.replace(LAB, name="copy", known_hosts="/tmp/kh",
                               vps=dataclasses.replace(LAB.vps, host=HostRef("ops@lab-vps")))
    check(copy, LAB)
    check(dataclasses.replace(copy, tunnel=dataclasses.replace(LAB.tunnel, interface="eth0")),
          LAB)
    # a site of the same VPS with one more home is not a copy
    more = dataclasses.replace(LAB, name="more", homes=(
        *LAB.homes, HomeSpec(HostRef("voicebox"), name="voice")))
    with pytest.raises(fleet.Collision, match=r"^more.toml: interface wg0 on VPS lab-vps"):
        check(more, LAB)


def test_the_inventory_is_read_for_the_others(tmp_path: Path) -> None:
    save(tmp_path / "lab.toml", LAB)
    save(tmp_path / "friend.toml", FRIEND)
    (tmp_path / "example.toml").write_text("not even toml [")
    assert [p.name for p, _ in fleet.others(tmp_path / "friend.toml")] == ["lab.toml"]
    clash = dataclasses.replace(FRIEND, tunnel=dataclasses.replace(FRIEND.tunnel,
                                                                   listen_port=51821))
    with pytest.raises(fleet.Collision):
        fleet.check(clash, tmp_path / "friend.toml", fleet.others(tmp_path / "friend.toml"))
