"""Model values: parsing, validation and the one-line errors users see."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network

import pytest

from tunnelops.model.hosts import HomeSpec, HostRef, VpsSpec
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.site import Site
from tunnelops.model.tunnel import PRIVATE_KEY_PLACEHOLDER, Tunnel
from tunnelops.model.values import ModelError


def port(text: str) -> PortSpec:
    return PortSpec.parse(text)


def service(name: str, *ports: str, **kw: object) -> Service:
    args: dict[str, object] = {"image": "docker.io/example/game:latest", "user": "gamer"}
    args.update(kw)
    return Service(name=name, ports=tuple(port(p) for p in ports), **args)  # type: ignore[arg-type]


def site(*services: Service, **kw: object) -> Site:
    args: dict[str, object] = {"name": "home", "vps": VpsSpec(HostRef("myvps")),
                               "homes": HomeSpec(HostRef("homeserver")), "services": services}
    args.update(kw)
    return Site(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- PortSpec


@pytest.mark.parametrize(
    ("text", "proto", "first", "last", "canonical"),
    [
        ("12345/udp", "udp", 12345, 12345, "12345/udp"),
        ("12346/tcp", "tcp", 12346, 12346, "12346/tcp"),
        ("27015-27020/udp", "udp", 27015, 27020, "27015-27020/udp"),
        ("  80/TCP\n", "tcp", 80, 80, "80/tcp"),
        ("1/Udp", "udp", 1, 1, "1/udp"),
        ("65535/udp", "udp", 65535, 65535, "65535/udp"),
        ("7-7/tcp", "tcp", 7, 7, "7/tcp"),
        ("00080/tcp", "tcp", 80, 80, "80/tcp"),
    ],
)
def test_port_parse(text: str, proto: str, first: int, last: int, canonical: str) -> None:
    spec = port(text)
    assert (spec.proto, spec.first, spec.last) == (proto, first, last)
    assert str(spec) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12345", "'12345' has no protocol: use PORT/PROTO, e.g. 12345/udp or 27015-27020/tcp"),
        ("", "'' has no protocol: use PORT/PROTO, e.g. 12345/udp or 27015-27020/tcp"),
        ("12345/sctp", "protocol 'sctp' in '12345/sctp' is not supported: use tcp or udp"),
        ("12345/", "protocol '' in '12345/' is not supported: use tcp or udp"),
        ("70000/udp", "port 70000 in '70000/udp' is out of range: use 1-65535"),
        ("0/tcp", "port 0 in '0/tcp' is out of range: use 1-65535"),
        ("10-70000/tcp", "port 70000 in '10-70000/tcp' is out of range: use 1-65535"),
        ("20-10/udp", "range 20-10 in '20-10/udp' is reversed: write it as 10-20/udp"),
        ("+1/udp", "'+1' in '+1/udp' is not a port or port range: "
                   "use e.g. 12345/udp or 27015-27020/udp"),
        ("١٢/udp", "'١٢' in '١٢/udp' is not a port or port range: "
                   "use e.g. 12345/udp or 27015-27020/udp"),
        ("123456/udp", "'123456' in '123456/udp' is not a port or port range: "
                       "use e.g. 12345/udp or 27015-27020/udp"),
        ("1 - 2/udp", "'1 - 2' in '1 - 2/udp' is not a port or port range: "
                      "use e.g. 12345/udp or 27015-27020/udp"),
        ("udp/12345", "protocol '12345' in 'udp/12345' is not supported: use tcp or udp"),
    ],
)
def test_port_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ModelError) as err:
        port(text)
    assert str(err.value) == message


def test_port_parse_rejects_non_strings() -> None:
    with pytest.raises(ModelError, match="is not a string"):
        PortSpec.parse(12345)


def test_port_properties() -> None:
    single, span = port("12345/udp"), port("27015-27020/udp")
    assert (single.is_range, single.count, single.nft, single.awall) == (False, 1, "12345", 12345)
    assert (span.is_range, span.count, span.nft, span.awall) == (
        True, 6, "27015-27020", "27015-27020")
    assert span.contains(27015) and span.contains(27020) and not span.contains(27021)
    assert not single.contains(12346)


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("27015-27020/udp", "27020/udp", True),
        ("27015-27020/udp", "27010-27015/udp", True),
        ("27015-27020/udp", "27021/udp", False),
        ("27015-27020/udp", "27018/tcp", False),
        ("53/udp", "53/udp", True),
    ],
)
def test_port_overlaps(a: str, b: str, overlap: bool) -> None:
    assert port(a).overlaps(port(b)) is overlap
    assert port(b).overlaps(port(a)) is overlap


def test_port_constructor_validates() -> None:
    with pytest.raises(ModelError, match="protocol 'icmp' is not supported: use tcp or udp"):
        PortSpec("icmp", 1, 1)
    with pytest.raises(ModelError, match="range 9-3 is reversed: write it as 3-9"):
        PortSpec("udp", 9, 3)
    with pytest.raises(ModelError, match="port must be an integer"):
        PortSpec("udp", True, 1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Tunnel


def test_tunnel_defaults_are_the_seed() -> None:
    t = Tunnel()
    assert t.interface == "wg0"
    assert t.subnet == IPv4Network("192.168.2.0/24")
    assert (t.vps_address, t.home_address) == (IPv4Address("192.168.2.1"),
                                               IPv4Address("192.168.2.2"))
    assert (t.listen_port, t.keepalive, t.route_table, t.mtu) == (51821, 25, 201, None)
    assert t.rule_priorities == (100, 101)
    assert t.prefixlen == 24


def test_tunnel_accepts_strings() -> None:
    t = Tunnel(subnet="10.9.8.0/29", vps_address="10.9.8.5",  # type: ignore[arg-type]
               home_address="10.9.8.6")  # type: ignore[arg-type]
    assert t.home_address == IPv4Address("10.9.8.6") and t.prefixlen == 29


@pytest.mark.parametrize(
    ("kwargs", "message", "where"),
    [
        ({"interface": "wg 0"}, "interface 'wg 0' is not an interface name: use 1-15 characters "
         "a-z, A-Z, 0-9, '_' or '-'", ("interface",)),
        ({"interface": "a" * 16}, None, ("interface",)),
        ({"subnet": "192.168.2.1/24"}, "subnet '192.168.2.1/24' has host bits set: "
         "use 192.168.2.0/24", ("subnet",)),
        ({"subnet": "nonsense"}, "subnet 'nonsense' is not an IPv4 network: "
         "use e.g. \"192.168.2.0/24\"", ("subnet",)),
        ({"subnet": "192.168.2.0/31"}, None, ("subnet",)),
        ({"vps_address": "10.0.0.1"}, "vps_address 10.0.0.1 is outside subnet 192.168.2.0/24: "
         "use an address in 192.168.2.0/24", ("vps_address",)),
        ({"home_address": "192.168.2.255"}, "home_address 192.168.2.255 is the network or "
         "broadcast address of 192.168.2.0/24: use a host address", ("home_address",)),
        ({"home_address": "192.168.2.1"}, "home_address 192.168.2.1 equals vps_address: "
         "give each peer its own address", ("home_address",)),
        ({"listen_port": 0}, "listen_port 0 is out of range: use 1-65535", ("listen_port",)),
        ({"listen_port": "51821"}, "listen_port must be an integer, got '51821': use 1-65535",
         ("listen_port",)),
        ({"keepalive": -1}, "keepalive -1 is out of range: use 0-65535", ("keepalive",)),
        ({"route_table": 254}, "route_table 254 is a kernel table (default/main/local): "
         "use another number, e.g. 201", ("route_table",)),
        ({"route_table": 0}, None, ("route_table",)),
        ({"rule_priority": 0}, "rule_priority 0 is out of range: use 1-32764", ("rule_priority",)),
        ({"rule_priority": 32765}, None, ("rule_priority",)),
        ({"mtu": 500}, "mtu 500 is out of range: use 576-9000", ("mtu",)),
        ({"mtu": True}, "mtu must be an integer, got 'True': use 576-9000", ("mtu",)),
    ],
)
def test_tunnel_errors(kwargs: dict[str, object], message: str | None,
                       where: tuple[str, ...]) -> None:
    with pytest.raises(ModelError) as err:
        Tunnel(**kwargs)  # type: ignore[arg-type]
    if message is not None:
        assert str(err.value) == message
    assert err.value.where == where


# --------------------------------------------------------------------------- Service


def test_service_valid() -> None:
    svc = service("game", "12345/udp", "27015-27020/udp", env=(("A", "1"),),
                  volumes=("data:/data",), command=("--flag", "x y"))
    assert svc.container_name == "tunnelops-game"
    assert svc.ports == (port("12345/udp"), port("27015-27020/udp"))


@pytest.mark.parametrize(
    ("kwargs", "message", "where"),
    [
        ({"name": "Game"}, "service name 'Game' is not valid: use 1-31 characters a-z, 0-9, "
         "'_' or '-', starting with a letter", ("name",)),
        ({"name": "g" * 32}, None, ("name",)),
        ({"image": ""}, "image '' of service 'game' is not an image reference: "
         "use e.g. \"docker.io/library/nginx:latest\"", ("image",)),
        ({"image": "a b"}, None, ("image",)),
        ({"user": "Root"}, "user 'Root' of service 'game' is not a unix user name: use "
         "lowercase letters, digits, '_' or '-'", ("user",)),
        ({"ports": ()}, "service 'game' has no ports: list at least one, "
         "e.g. ports = [\"12345/udp\"]", ("ports",)),
        ({"ports": (port("27015-27020/udp"), port("27018/udp"))},
         "ports 27015-27020/udp and 27018/udp of service 'game' overlap: list each port once",
         ("ports", "27018/udp")),
        ({"env": (("1A", "x"),)}, "env key '1A' is not a variable name: use letters, digits "
         "and '_', not starting with a digit", ("env",)),
        ({"env": (("A", "x\ny"),)}, "env A 'x\\ny' contains a newline or NUL: remove it",
         ("env",)),
        ({"env": (("A", "1"), ("A", "2"))}, "env key 'A' is set twice: keep one", ("env",)),
        ({"volumes": ("/srv/game",)}, "volume '/srv/game' is not HOST:CONTAINER[:OPTIONS]: "
         "use e.g. \"/srv/game:/data:Z\"", ("volumes",)),
        ({"volumes": ("/a:data",)}, None, ("volumes",)),
        ({"command": ("a\x00",)}, "command argument 'a\\x00' contains a newline or NUL: "
         "remove it", ("command",)),
    ],
)
def test_service_errors(kwargs: dict[str, object], message: str | None,
                        where: tuple[str, ...]) -> None:
    args: dict[str, object] = {"name": "game", "image": "docker.io/example/game:latest",
                               "ports": (port("12345/udp"),), "user": "gamer"}
    args.update(kwargs)
    with pytest.raises(ModelError) as err:
        Service(**args)  # type: ignore[arg-type]
    if message is not None:
        assert str(err.value) == message
    assert err.value.where == where
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- HostRef


@pytest.mark.parametrize(
    ("text", "alias", "user", "port_"),
    [
        ("myvps", "myvps", None, None),
        ("203.0.113.7", "203.0.113.7", None, None),
        ("root@203.0.113.7", "203.0.113.7", "root", None),
        ("admin@vps.example.org:2222", "vps.example.org", "admin", 2222),
        ("vps:22", "vps", None, 22),
        ("[2001:db8::1]:2200", "2001:db8::1", None, 2200),
        ("me@[2001:db8::1]", "2001:db8::1", "me", None),
        ("2001:db8::1", "2001:db8::1", None, None),
    ],
)
def test_hostref_parse(text: str, alias: str, user: str | None, port_: int | None) -> None:
    ref = HostRef.parse(text)
    assert (ref.alias, ref.user, ref.port) == (alias, user, port_)
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "host is empty: use an ssh_config alias, host or user@host[:port]"),
        ("my vps", "host 'my vps' contains whitespace or control characters: remove them"),
        ("-oProxyCommand=x", "host '-oProxyCommand=x' starts with '-', which ssh reads as an "
         "option: use the host name"),
        ("vps;reboot", "host 'vps;reboot' contains shell metacharacters ';': use an ssh_config "
         "alias for anything unusual"),
        ("$(id)@vps", "host '$(id)@vps' contains shell metacharacters '$()': use an ssh_config "
         "alias for anything unusual"),
        ("vps:0", "port 0 in host 'vps:0' is out of range: use 1-65535"),
        ("vps:ssh", "port 'ssh' in host 'vps:ssh' is not a number: use 1-65535"),
        ("@vps", "host '@vps' has an empty or doubled user part: use user@host"),
        ("[::1", "host '[::1' has an unclosed or empty '[...]': use [2001:db8::1]:22"),
        ("root@", "host 'root@' has no usable host name: use an ssh_config alias, host or "
         "user@host[:port]"),
    ],
)
def test_hostref_errors(text: str, message: str) -> None:
    with pytest.raises(ModelError) as err:
        HostRef.parse(text)
    assert str(err.value) == message


def test_hostref_equality_is_by_text() -> None:
    assert HostRef("vps") == HostRef.parse("vps")
    assert HostRef("vps") != HostRef("root@vps")


def test_vps_ssh_port_comes_from_host() -> None:
    assert VpsSpec(HostRef("vps")).ssh_port == 22
    assert VpsSpec(HostRef("vps:2222")).ssh_port == 2222


def test_vps_host_error_is_located() -> None:
    with pytest.raises(ModelError) as err:
        VpsSpec("bad host")  # type: ignore[arg-type]
    assert err.value.where == ("host",)


# --------------------------------------------------------------------------- Site


def test_site_cross_service_errors() -> None:
    game = service("game", "12345/udp", "12346/tcp")
    with pytest.raises(ModelError) as err:
        site(game, service("game", "1000/udp"))
    assert str(err.value) == ("service name 'game' is used twice: give each [[services]] "
                              "entry its own name")
    assert err.value.where == ("services", 1, "name")

    with pytest.raises(ModelError) as err:
        site(game, service("web", "8080/tcp", "12340-12350/udp"))
    assert str(err.value) == ("port 12340-12350/udp of service 'web' overlaps 12345/udp of "
                              "service 'game': give each port to one service")
    assert err.value.where == ("services", 1, "ports", "12340-12350/udp")

    with pytest.raises(ModelError) as err:
        site(service("game", "51821/udp"))
    assert str(err.value) == ("port 51821/udp of service 'game' includes the WireGuard listen "
                              "port 51821/udp: pick another port or change [tunnel] listen_port")

    with pytest.raises(ModelError) as err:
        site(service("game", "20-30/tcp"))
    assert str(err.value) == ("port 20-30/tcp of service 'game' includes the VPS SSH port "
                              "22/tcp: pick another port")
    # 51821/tcp and 22/udp are fine: only the protocol in use is reserved.
    assert site(service("game", "51821/tcp", "22/udp")).services


def test_site_ssh_port_follows_the_vps_host() -> None:
    s = Site(name="home", vps=VpsSpec(HostRef("vps:2222")), homes=HomeSpec(HostRef("h")),
             services=(service("game", "22/tcp"),))
    assert s.services[0].ports == (port("22/tcp"),)
    with pytest.raises(ModelError, match="VPS SSH port 2222/tcp"):
        dataclasses.replace(s, services=(service("game", "2222/tcp"),))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Home"}, "site name 'Home' is not valid: use 1-31 characters a-z, 0-9, '_' "
         "or '-', starting with a letter"),
        ({"whoami_url": "ftp://x"}, "whoami_url 'ftp://x' is not an http(s) URL: "
         "use e.g. \"https://ifconfig.me/ip\""),
        ({"ssh_config": ""}, "ssh_config is empty: remove the key or give a value"),
        ({"client_ip": "SNAT"}, "client_ip 'SNAT' is not a mode: use \"preserve\" (the game "
         "sees each player's address) or \"snat\" (it sees the VPS's tunnel address)"),
        ({"client_ip": None}, "client_ip 'None' is not a mode: use \"preserve\" (the game "
         "sees each player's address) or \"snat\" (it sees the VPS's tunnel address)"),
    ],
)
def test_site_field_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError) as err:
        site(**kwargs)
    assert str(err.value) == message


def test_site_client_ip_default_is_preserve() -> None:
    assert site().client_ip == "preserve" and not site().snat
    assert site(client_ip="snat").snat


def test_site_service_lookup() -> None:
    s = site(service("game", "12345/udp"), service("web", "8080/tcp"))
    assert s.service("web").ports == (port("8080/tcp"),)
    with pytest.raises(ModelError) as err:
        s.service("mail")
    assert str(err.value) == "unknown service 'mail': use one of game, web"


def test_with_port_added() -> None:
    s = site(service("game", "12345/udp", "12346/tcp"))
    added = s.with_port_added("27015-27020/udp")
    assert added.service("game").ports == (port("12345/udp"), port("12346/tcp"),
                                           port("27015-27020/udp"))
    assert s.service("game").ports == (port("12345/udp"), port("12346/tcp"))  # unchanged
    two = site(service("game", "12345/udp"), service("web", "8080/tcp"))
    assert two.with_port_added(port("8443/tcp"), "web").service("web").ports == (
        port("8080/tcp"), port("8443/tcp"))


@pytest.mark.parametrize(
    ("services", "spec", "name", "message"),
    [
        ((), "1000/udp", None, "site 'home' has no services: add a [[services]] entry to its "
         "inventory file first"),
        (("game", "web"), "1000/udp", None, "--service is required: site 'home' has several "
         "services (game, web)"),
        (("game",), "1000/udp", "mail", "unknown service 'mail': use one of game"),
        (("game", "web"), "12345/udp", "web", "port 12345/udp is already used by service "
         "'game' (12345/udp): pick another port"),
        (("game",), "12340-12349/udp", None, "port 12340-12349/udp is already used by service "
         "'game' (12345/udp): pick another port"),
        (("game",), "51821/udp", None, "port 51821/udp of service 'game' includes the WireGuard "
         "listen port 51821/udp: pick another port or change [tunnel] listen_port"),
    ],
)
def test_with_port_added_errors(services: tuple[str, ...], spec: str, name: str | None,
                                message: str) -> None:
    ports = {"game": "12345/udp", "web": "8080/tcp"}
    s = site(*(service(n, ports[n]) for n in services))
    with pytest.raises(ModelError) as err:
        s.with_port_added(spec, name)
    assert str(err.value) == message


def test_with_port_removed() -> None:
    s = site(service("game", "12345/udp", "12346/tcp"), service("web", "8080/tcp", "8443/tcp"))
    assert s.with_port_removed("8443/tcp").service("web").ports == (port("8080/tcp"),)
    assert s.with_port_removed(" 12345/UDP", "game").service("game").ports == (
        port("12346/tcp"),)


@pytest.mark.parametrize(
    ("spec", "name", "message"),
    [
        ("9999/udp", None, "no service exposes 9999/udp: nothing to remove (give the exact port "
         "or range as listed in the inventory)"),
        ("8080/tcp", "game", "service 'game' does not expose 8080/tcp: its ports are "
         "12345/udp, 12346/tcp"),
        ("8080/tcp", None, "removing 8080/tcp would leave service 'web' with no ports: delete "
         "its [[services]] entry instead"),
        ("1/udp", "mail", "unknown service 'mail': use one of game, web"),
    ],
)
def test_with_port_removed_errors(spec: str, name: str | None, message: str) -> None:
    s = site(service("game", "12345/udp", "12346/tcp"), service("web", "8080/tcp"))
    with pytest.raises(ModelError) as err:
        s.with_port_removed(spec, name)
    assert str(err.value) == message


def test_model_error_is_one_line_and_relocatable() -> None:
    err = ModelError("a\nb\r\n  c", where=("ports",))
    assert str(err) == "a b c"
    moved = err.within("services", 2)
    assert (str(moved), moved.where) == ("a b c", ("services", 2, "ports"))
    assert isinstance(err, ValueError)


def test_placeholder_is_not_a_key() -> None:
    assert PRIVATE_KEY_PLACEHOLDER == "@TUNNELOPS_PRIVATE_KEY@"
