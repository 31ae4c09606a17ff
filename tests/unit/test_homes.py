"""A site is a hub and its homes (issue 11): the model and the inventory of several homes,
and today's one-home files read unchanged."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tunnelops.inventory.find import find_site
from tunnelops.inventory.read import load, loads
from tunnelops.inventory.schema import InventoryError
from tunnelops.inventory.write import save
from tunnelops.model.hosts import HomeSpec, HostRef, VpsSpec
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.site import Site
from tunnelops.model.tunnel import Tunnel
from tunnelops.model.values import ModelError


def svc(name: str, *ports: str, home: str | None = None, user: str = "gamer") -> Service:
    return Service(name, "docker.io/example/game:latest", tuple(PortSpec.parse(p) for p in ports),
                   user, home=home)


def homes(*names: str, **addresses: str) -> tuple[HomeSpec, ...]:
    return tuple(HomeSpec(HostRef(f"{n}.lan"), name=n, address=addresses.get(n))
                 for n in names)


def site(*services: Service, hs: tuple[HomeSpec, ...] = (), **kw: object) -> Site:
    return Site("fleet", VpsSpec(HostRef("vps")), hs or homes("home", "voice", "friend"),
                services=services, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- model

def test_homes_get_the_next_free_addresses_and_their_own_link() -> None:
    s = site(svc("game", "12345/udp", home="home"), svc("mumble", "64738/tcp", home="voice"))
    assert [str(s.address(h)) for h in s.homes] == ["192.168.2.2", "192.168.2.3", "192.168.2.4"]
    link = s.link("voice")
    assert (link.home_address, link.vps_address, link.interface) == (
        IPv4Address("192.168.2.3"), IPv4Address("192.168.2.1"), "wg0")
    assert s.tunnel.home_address == IPv4Address("192.168.2.2")  # the first home's
    assert [x.name for x in s.services_of("voice")] == ["mumble"]
    assert s.services_of("friend") == ()


def test_an_explicit_address_is_skipped_by_the_others() -> None:
    s = site(hs=homes("home", "voice", "friend", home="192.168.2.3"))
    assert [str(s.address(h)) for h in s.homes] == ["192.168.2.3", "192.168.2.2", "192.168.2.4"]
    assert s.tunnel.home_address == IPv4Address("192.168.2.3")


def test_a_copy_with_another_subnet_derives_the_addresses_again() -> None:
    s = site()
    moved = dataclasses.replace(s, tunnel=Tunnel.from_values(subnet="10.9.0.0/24"))
    assert [str(moved.address(h)) for h in moved.homes] == ["10.9.0.2", "10.9.0.3", "10.9.0.4"]


def test_a_one_home_site_is_the_seed() -> None:
    s = Site("home", VpsSpec(HostRef("vps")), HomeSpec(HostRef("homeserver")),
             services=(svc("game", "12345/udp"),))
    assert [h.name for h in s.homes] == ["home"]
    assert s.services[0].home == "home"
    assert s.link(s.homes[0]) == Tunnel()


@pytest.mark.parametrize(("make", "message"), [
    (lambda: site(hs=homes("home", "home")),
     "home name 'home' is used twice: give each [[homes]] entry its own name"),
    (lambda: site(hs=(HomeSpec(HostRef("a.lan"), name="a"),
                      HomeSpec(HostRef("root@a.lan"), name="b"))),
     "homes 'a' and 'b' are the same host root@a.lan: list each home server once"),
    (lambda: site(hs=homes("home", "voice", voice="192.168.3.3")),
     "address 192.168.3.3 of home 'voice' is not a host address of the tunnel subnet "
     "192.168.2.0/24: use one in it"),
    (lambda: site(hs=homes("home", "voice", voice="192.168.2.1")),
     "address 192.168.2.1 of home 'voice' is already the VPS's: give each home its own "
     "address"),
    (lambda: site(hs=homes("home", "voice"), tunnel=Tunnel.from_values(subnet="10.0.0.0/30")),
     "the tunnel subnet 10.0.0.0/30 has no address left for home 'voice': use a larger "
     "subnet, e.g. a /24"),
    (lambda: site(svc("game", "12345/udp")),
     "service 'game' does not say which home runs it: add home = \"home\" (one of home, "
     "voice, friend)"),
    (lambda: site(svc("game", "12345/udp", home="attic")),
     "service 'game' runs on home 'attic', which the site does not have: use one of home, "
     "voice, friend"),
    (lambda: site(svc("game", "12345/udp", home="home"), svc("voice", "12345/udp", home="voice")),
     "port 12345/udp of service 'voice' (home 'voice') overlaps 12345/udp of service 'game' "
     "(home 'home'): a public port forwards to one home: pick another port"),
    (lambda: HomeSpec(HostRef("h"), name="vps"),
     "home name 'vps' is the VPS's own label: give the home another name, e.g. name = "
     "\"home2\""),
    (lambda: Site("fleet", VpsSpec(HostRef("vps")), ()),
     "site 'fleet' has no home: add a [home] table with host = \"...\" (or [[homes]] "
     "entries)"),
])
def test_home_errors_are_one_line(make, message: str) -> None:
    with pytest.raises(ModelError) as err:
        make()
    assert str(err.value) == message


def test_add_port_needs_the_home_when_there_are_several() -> None:
    s = site(svc("game", "12345/udp", home="home"), svc("mumble", "64738/tcp", home="voice"),
             svc("web", "8080/tcp", home="voice"))
    with pytest.raises(ModelError, match=r"^--home is required: site 'fleet' has several homes "
                                         r"\(home, voice, friend\)$"):
        s.with_port_added("12347/udp")
    added = s.with_port_added("12347/udp", home_name="home")
    assert added.service("game").ports[-1] == PortSpec.parse("12347/udp")
    with pytest.raises(ModelError, match=r"^--service is required: home 'voice' has several "
                                         r"services \(mumble, web\)$"):
        s.with_port_added("12347/udp", home_name="voice")
    with pytest.raises(ModelError, match=r"^home 'friend' has no services"):
        s.with_port_added("12347/udp", home_name="friend")
    with pytest.raises(ModelError, match=r"^service 'game' runs on home 'home', not 'voice'"):
        s.with_port_added("12347/udp", "game", "voice")
    # the service says which home: no --home needed
    assert s.with_port_added("12347/udp", "web").service("web").home == "voice"


# --------------------------------------------------------------------------- inventory

FLEET = """\
[site]
name = "fleet"

[vps]
host = "vps"

[[homes]]
name = "home"
host = "homeserver"

[[homes]]
name = "voice"
host = "pi@voicebox"   # the Raspberry Pi
address = "192.168.2.10"

[[services]]
name = "game"
home = "home"
image = "docker.io/example/game:latest"
user = "gamer"
ports = ["12345/udp"]

[[services]]
name = "mumble"
home = "voice"
image = "docker.io/example/mumble:latest"
user = "voice"
ports = ["64738/tcp", "64738/udp"]
"""


def test_load_homes() -> None:
    s = loads(FLEET, "inventory/fleet.toml")
    assert [(h.name, str(h.host), str(s.address(h))) for h in s.homes] == [
        ("home", "homeserver", "192.168.2.2"), ("voice", "pi@voicebox", "192.168.2.10")]
    assert [(x.name, x.home) for x in s.services] == [("game", "home"), ("mumble", "voice")]


@pytest.mark.parametrize(("old", "new", "message"), [
    ('name = "voice"\nhost', 'name = "home"\nhost',
     "inventory/fleet.toml:12: [homes] 'name': home name 'home' is used twice: give each "
     "[[homes]] entry its own name"),
    ('address = "192.168.2.10"', 'address = "192.168.2.1"',
     "inventory/fleet.toml:14: [homes] 'address': address 192.168.2.1 of home 'voice' is "
     "already the VPS's: give each home its own address"),
    ('home = "voice"', 'home = "attic"',
     "inventory/fleet.toml:25: [services] 'home': service 'mumble' runs on home 'attic', which "
     "the site does not have: use one of home, voice"),
    ('home = "voice"\n', '',
     "inventory/fleet.toml:24: [services] 'name': service 'mumble' does not say which home "
     "runs it: add home = \"home\" (one of home, voice)"),
    ('host = "pi@voicebox"', 'hots = "pi@voicebox"',
     "inventory/fleet.toml:13: [homes] unknown key 'hots': use one of name, host, "
     "lan_interface, address"),
    ('[vps]\nhost = "vps"\n', '[vps]\nhost = "vps"\n[home]\nhost = "h"\n',
     "inventory/fleet.toml:9: both [home] and [[homes]]: a site with one home has [home], one "
     "with several has a [[homes]] table each; keep one of them"),
    ('[vps]\nhost = "vps"\n', '[vps]\nhost = "vps"\n[tunnel]\nhome_address = "192.168.2.7"\n',
     "inventory/fleet.toml:7: [tunnel] 'home_address' is for a site with one [home]: give "
     "each [[homes]] entry its own address = \"...\" instead"),
])
def test_homes_errors_name_their_line(old: str, new: str, message: str) -> None:
    assert old in FLEET
    with pytest.raises(InventoryError) as err:
        loads(FLEET.replace(old, new, 1), "inventory/fleet.toml")
    assert str(err.value) == message


def test_homes_round_trip_keeping_comments(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET)
    s = load(path)
    save(path, s)
    assert path.read_text() == FLEET  # nothing to change: byte for byte
    third = HomeSpec(HostRef("friend.example.net"), name="friend")
    save(path, dataclasses.replace(s, homes=(*s.homes, third)))
    text = path.read_text()
    assert "# the Raspberry Pi" in text
    assert load(path).homes == (*s.homes, third)
    assert '[[homes]]\nname = "friend"\nhost = "friend.example.net"\n' in text


def test_a_one_home_file_grows_a_second_home(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    path.write_text('[vps]\nhost = "vps"\n\n[home]\nhost = "homeserver"  # the tower\n\n'
                    '[[services]]\nname = "game"\nimage = "docker.io/example/game:latest"\n'
                    'user = "gamer"\nports = ["12345/udp"]\n')
    s = load(path)
    save(path, s)  # one home: [home] stays as it is
    assert "[home]\n" in path.read_text() and "[[homes]]" not in path.read_text()
    two = dataclasses.replace(s, homes=(*s.homes, HomeSpec(HostRef("voicebox"), name="voice")))
    save(path, two)
    text = path.read_text()
    assert "[home]\n" not in text
    assert text.index("[[homes]]") < text.index("[[services]]")
    again = load(path)
    assert [h.name for h in again.homes] == ["home", "voice"]
    assert again.services[0].home == "home" and 'home = "home"' in text


def test_find_site_by_any_home(tmp_path: Path) -> None:
    (tmp_path / "fleet.toml").write_text(FLEET)
    assert find_site(tmp_path, home="pi@voicebox") == tmp_path / "fleet.toml"
    assert find_site(tmp_path, home="nobody") is None
