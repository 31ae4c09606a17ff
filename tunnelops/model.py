"""Validated values describing one site: a VPS, a home server, the tunnel and the services.

Everything here is pure: constructing a value validates it, and every failure is a
ModelError whose message is one line naming the problem and the fix. Defaults are the
seed's manual setup (wg0, 192.168.2.0/24, .1 on the VPS, .2 at home, port 51821, table 201).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError

# Renderers put this where a private key belongs; the host substitutes its own key, so
# private keys never leave the host that generated them.
PRIVATE_KEY_PLACEHOLDER = "@TUNNELOPS_PRIVATE_KEY@"

PROTOCOLS = ("tcp", "udp")
DEFAULT_SSH_PORT = 22
# What the game sees as a player's address: "preserve" (the player's own; the VPS only
# DNATs) or "snat" (the VPS's tunnel address, the seed's way: see its footnote 3).
CLIENT_IP_MODES = ("preserve", "snat")

NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,30}")
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
SERVICE_NETWORKS = ("auto", "pasta", "slirp4netns")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TUNNEL_IFACE_RE = re.compile(r"[a-zA-Z0-9_-]{1,15}")
# Host interfaces may also carry a dot (VLANs such as eth0.100).
HOST_IFACE_RE = re.compile(r"[a-zA-Z0-9_.-]{1,15}")
# An image reference as container tools parse it (distribution/reference's grammar):
# [domain[:port]/]path-component[/path-component...][:tag][@algorithm:hex]
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_RE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")
SYSTEM_UID_MAX = 999  # below 1000: root and the system's own accounts
DEFAULT_HOME = "home"  # the name of a site's home when its inventory has one [home]
HUB = "vps"  # the VPS's label in the recap; no home may take it
_PORT_SPEC_RE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?/(tcp|udp)")
_PORT_PART_RE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_HOST_METACHARS = frozenset(";|&$`'\"<>(){}*?!\\")

Where = tuple[str | int, ...]


class ModelError(ValueError):
    """A value is invalid. str() is one line: the problem, then the fix after a colon.

    `where` locates the offending value relative to the object that raised it, e.g.
    ("listen_port",) or ("services", 1, "ports", "12345/udp"); the inventory turns it
    into a file line number.
    """

    def __init__(self, message: str, *, where: Where = ()) -> None:
        super().__init__(" ".join(message.split()))
        self.where: Where = where

    def within(self, *prefix: str | int) -> ModelError:
        """The same error, located inside a containing object."""
        return ModelError(str(self), where=(*prefix, *self.where))


def _show(value: object) -> str:
    """A user value quoted for a message; repr() keeps it on one line."""
    return repr(value) if isinstance(value, str) else repr(str(value))


def _check_int(value: object, what: str, low: int, high: int, where: Where) -> int:
    # bool is an int subclass; `true` in TOML must not become port 1.
    if type(value) is not int:
        raise ModelError(f"{what} must be an integer, got {_show(value)}: use {low}-{high}",
                         where=where)
    if not low <= value <= high:
        raise ModelError(f"{what} {value} is out of range: use {low}-{high}", where=where)
    return value


def _check_text(value: object, what: str, where: Where, *, allow_newline: bool = False) -> str:
    if not isinstance(value, str):
        raise ModelError(f"{what} must be a string, got {_show(value)}", where=where)
    bad = "\x00" if allow_newline else "\x00\n\r"
    if any(ch in bad for ch in value):
        raise ModelError(f"{what} {_show(value)} contains a newline or NUL: remove it",
                         where=where)
    return value


def check_name(value: object, what: str = "name", where: Where = ("name",)) -> str:
    """A service or site name: it ends up in file names, awall and container names."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ModelError(
            f"{what} {_show(value)} is not valid: use 1-31 characters a-z, 0-9, '_' or '-', "
            "starting with a letter",
            where=where,
        )
    return value


def check_interface(value: object, what: str, where: Where, *, tunnel: bool = False) -> str:
    pattern = TUNNEL_IFACE_RE if tunnel else HOST_IFACE_RE
    if not isinstance(value, str) or not pattern.fullmatch(value) or value in (".", ".."):
        allowed = "a-z, A-Z, 0-9, '_' or '-'" if tunnel else "a-z, A-Z, 0-9, '_', '.' or '-'"
        raise ModelError(f"{what} {_show(value)} is not an interface name: use 1-15 "
                         f"characters {allowed}", where=where)
    return value


# --------------------------------------------------------------------------- ports


@dataclass(frozen=True, order=True)
class PortSpec:
    """One port or an inclusive port range of one protocol, e.g. 12345/udp, 27015-27020/udp."""

    proto: str
    first: int
    last: int

    def __post_init__(self) -> None:
        if self.proto not in PROTOCOLS:
            raise ModelError(f"protocol {_show(self.proto)} is not supported: use tcp or udp")
        for port in (self.first, self.last):
            _check_int(port, "port", 1, 65535, ())
        if self.first > self.last:
            raise ModelError(f"range {self.first}-{self.last} is reversed: "
                             f"write it as {self.last}-{self.first}")

    @classmethod
    def parse(cls, text: object) -> PortSpec:
        """Parse `12345/udp` or `27015-27020/udp` (whitespace around it and the protocol's
        case are forgiven; nothing else is)."""
        if not isinstance(text, str):
            raise ModelError(f"port spec {_show(text)} is not a string: write it as "
                             "\"12345/udp\" or \"27015-27020/udp\"")
        spec = text.strip()
        ports, slash, proto = spec.rpartition("/")
        if not slash:
            raise ModelError(f"{_show(spec)} has no protocol: use PORT/PROTO, "
                             "e.g. 12345/udp or 27015-27020/tcp")
        proto_lc = proto.lower() if proto.isascii() else proto
        if proto_lc not in PROTOCOLS:
            raise ModelError(f"protocol {_show(proto)} in {_show(spec)} is not supported: "
                             "use tcp or udp")
        if not _PORT_PART_RE.fullmatch(ports):
            raise ModelError(f"{_show(ports)} in {_show(spec)} is not a port or port range: "
                             "use e.g. 12345/udp or 27015-27020/udp")
        match = _PORT_SPEC_RE.fullmatch(f"{ports}/{proto_lc}")
        assert match is not None  # both halves were matched above
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        for port in (first, last):
            if not 1 <= port <= 65535:
                raise ModelError(f"port {port} in {_show(spec)} is out of range: use 1-65535")
        if first > last:
            raise ModelError(f"range {first}-{last} in {_show(spec)} is reversed: "
                             f"write it as {last}-{first}/{proto_lc}")
        return cls(proto_lc, first, last)

    def __str__(self) -> str:
        return f"{self.nft}/{self.proto}"

    @property
    def is_range(self) -> bool:
        return self.first != self.last

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    @property
    def nft(self) -> str:
        """nft and podman write ranges as first-last."""
        return f"{self.first}-{self.last}" if self.is_range else str(self.first)

    @property
    def awall(self) -> int | str:
        """awall takes a port number or a "first-last" string (it maps '-' to ':')."""
        return self.nft if self.is_range else self.first

    def overlaps(self, other: PortSpec) -> bool:
        return self.proto == other.proto and self.first <= other.last and other.first <= self.last

    def contains(self, port: int) -> bool:
        return self.first <= port <= self.last


def _as_port(value: PortSpec | str) -> PortSpec:
    return value if isinstance(value, PortSpec) else PortSpec.parse(value)


# --------------------------------------------------------------------------- tunnel


def _as_address(value: object, what: str) -> IPv4Address:
    if isinstance(value, IPv4Address):
        return value
    if not isinstance(value, str):
        raise ModelError(f"{what} must be an IPv4 address string, got {_show(value)}: "
                         "use e.g. \"192.168.2.1\"", where=(what,))
    try:
        return IPv4Address(value)
    except AddressValueError:
        raise ModelError(f"{what} {_show(value)} is not an IPv4 address: "
                         "use e.g. \"192.168.2.1\"", where=(what,)) from None


def _as_network(value: object, what: str) -> IPv4Network:
    if isinstance(value, IPv4Network):
        return value
    if not isinstance(value, str):
        raise ModelError(f"{what} must be a CIDR string, got {_show(value)}: "
                         "use e.g. \"192.168.2.0/24\"", where=(what,))
    try:
        return IPv4Network(value)
    except (AddressValueError, NetmaskValueError):
        raise ModelError(f"{what} {_show(value)} is not an IPv4 network: "
                         "use e.g. \"192.168.2.0/24\"", where=(what,)) from None
    except ValueError:
        fixed = IPv4Network(value, strict=False)
        raise ModelError(f"{what} {_show(value)} has host bits set: use {fixed}",
                         where=(what,)) from None


_SEED_SUBNET = IPv4Network("192.168.2.0/24")
_SEED_VPS_ADDRESS = IPv4Address("192.168.2.1")
_SEED_HOME_ADDRESS = IPv4Address("192.168.2.2")


@dataclass(frozen=True)
class Tunnel:
    """The WireGuard link between the VPS and home, and home's policy routing."""

    interface: str = "wg0"
    subnet: IPv4Network = _SEED_SUBNET
    vps_address: IPv4Address = _SEED_VPS_ADDRESS
    home_address: IPv4Address = _SEED_HOME_ADDRESS
    listen_port: int = 51821
    keepalive: int = 25
    route_table: int = 201
    # The seed used priority 0, which sorts before the `local` table: even local deliveries
    # to the tunnel address would then be routed out of wg0. The two rules use P and P+1.
    rule_priority: int = 100
    mtu: int | None = None  # None: let wg-quick / NetworkManager choose

    def __post_init__(self) -> None:
        check_interface(self.interface, "interface", ("interface",), tunnel=True)
        subnet = _as_network(self.subnet, "subnet")
        object.__setattr__(self, "subnet", subnet)
        if subnet.prefixlen > 30:
            raise ModelError(f"subnet {subnet} has room for fewer than two peers: "
                             "use a /30 or larger, e.g. 192.168.2.0/24", where=("subnet",))
        for attr in ("vps_address", "home_address"):
            address = _as_address(getattr(self, attr), attr)
            object.__setattr__(self, attr, address)
            if address not in subnet:
                raise ModelError(f"{attr} {address} is outside subnet {subnet}: "
                                 f"use an address in {subnet}", where=(attr,))
            if address in (subnet.network_address, subnet.broadcast_address):
                raise ModelError(f"{attr} {address} is the network or broadcast address of "
                                 f"{subnet}: use a host address", where=(attr,))
        if self.vps_address == self.home_address:
            raise ModelError(f"home_address {self.home_address} equals vps_address: "
                             "give each peer its own address", where=("home_address",))
        _check_int(self.listen_port, "listen_port", 1, 65535, ("listen_port",))
        _check_int(self.keepalive, "keepalive", 0, 65535, ("keepalive",))
        # NetworkManager's import parses Table as a signed 32-bit number.
        _check_int(self.route_table, "route_table", 1, 2**31 - 1, ("route_table",))
        if self.route_table in (253, 254, 255):
            raise ModelError(f"route_table {self.route_table} is a kernel table "
                             "(default/main/local): use another number, e.g. 201",
                             where=("route_table",))
        # 0 is the local table's rule, 32766/32767 main and default: stay strictly between.
        _check_int(self.rule_priority, "rule_priority", 1, 32764, ("rule_priority",))
        if self.mtu is not None:
            _check_int(self.mtu, "mtu", 576, 9000, ("mtu",))

    @classmethod
    def from_values(cls, **values: object) -> Tunnel:
        """As an inventory gives it: a subnet alone brings its own addresses (its first two
        hosts: .1 the VPS, .2 home, as the seed's 192.168.2.0/24 does)."""
        if "subnet" in values and not {"vps_address", "home_address"} & values.keys():
            subnet = _as_network(values["subnet"], "subnet")
            hosts = [subnet.network_address + 1, subnet.network_address + 2]
            if subnet.prefixlen <= 30:
                values = {**values, "vps_address": hosts[0], "home_address": hosts[1]}
        return cls(**values)  # type: ignore[arg-type]

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    @property
    def rule_priorities(self) -> tuple[int, int]:
        """(from-home-address rule, to-vps-address rule)."""
        return self.rule_priority, self.rule_priority + 1


# --------------------------------------------------------------------------- services


def _check_volume(value: object, where: Where) -> str:
    text = _check_text(value, "volume", where)
    parts = text.split(":")
    if not 2 <= len(parts) <= 3 or not all(parts) or not parts[1].startswith("/"):
        raise ModelError(f"volume {_show(text)} is not HOST:CONTAINER[:OPTIONS]: "
                         "use e.g. \"/srv/game:/data:Z\"", where=where)
    return text


@dataclass(frozen=True)
class Service:
    """One container run by a rootless Podman user at home, exposed on the VPS."""

    name: str
    image: str
    ports: tuple[PortSpec, ...]
    user: str
    env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    # the container's network: "auto" (pasta where Podman 5 made it the default, else
    # slirp4netns), or one of them by name; either way its egress leaves through the tunnel
    network: str = "auto"
    # a rootless service runs as an ordinary user; a system account (uid < 1000) only when
    # the inventory says so (the uid is checked on the host, from the facts)
    allow_system_user: bool = False
    # the home whose container this is (None: the site's only home; Site sets it)
    home: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "service name")
        if self.home is not None:
            check_name(self.home, f"home of service {self.name!r}", ("home",))
        if self.network not in SERVICE_NETWORKS:
            raise ModelError(f"network {_show(self.network)} of service {self.name!r} is not "
                             f"one of {', '.join(SERVICE_NETWORKS)}", where=("network",))
        image = self.image
        if not isinstance(image, str) or not IMAGE_RE.fullmatch(image):
            hint = (" (it would be read as a podman option)"
                    if isinstance(image, str) and image.startswith("-") else "")
            raise ModelError(f"image {_show(image)} of service {self.name!r} is not an image "
                             f"reference{hint}: use e.g. \"docker.io/library/nginx:latest\"",
                             where=("image",))
        if not isinstance(self.user, str) or not USER_RE.fullmatch(self.user):
            raise ModelError(f"user {_show(self.user)} of service {self.name!r} is not a unix "
                             "user name: use lowercase letters, digits, '_' or '-'",
                             where=("user",))
        if self.user == "root":
            raise ModelError(f"user 'root' of service {self.name!r}: a rootless service runs "
                             "as an ordinary user: use e.g. user = \"gamer\" (tunnelops "
                             "creates it)", where=("user",))
        if type(self.allow_system_user) is not bool:
            raise ModelError(f"allow_system_user of service {self.name!r} must be true or "
                             "false", where=("allow_system_user",))
        object.__setattr__(self, "ports", tuple(self.ports))
        if not self.ports:
            raise ModelError(f"service {self.name!r} has no ports: list at least one, "
                             "e.g. ports = [\"12345/udp\"]", where=("ports",))
        for index, port in enumerate(self.ports):
            if not isinstance(port, PortSpec):
                raise ModelError(f"port {_show(port)} of service {self.name!r} is not a "
                                 "PortSpec: parse it with PortSpec.parse", where=("ports",))
            for earlier in self.ports[:index]:
                if port.overlaps(earlier):
                    raise ModelError(f"ports {earlier} and {port} of service {self.name!r} "
                                     "overlap: list each port once", where=("ports", str(port)))
        object.__setattr__(self, "env", tuple(tuple(pair) for pair in self.env))
        seen: set[str] = set()
        for pair in self.env:
            if len(pair) != 2:
                raise ModelError(f"env entry {_show(pair)} is not a (key, value) pair",
                                 where=("env",))
            key, value = pair
            if not isinstance(key, str) or not ENV_KEY_RE.fullmatch(key):
                raise ModelError(f"env key {_show(key)} is not a variable name: use letters, "
                                 "digits and '_', not starting with a digit", where=("env",))
            if key in seen:
                raise ModelError(f"env key {key!r} is set twice: keep one", where=("env",))
            seen.add(key)
            _check_text(value, f"env {key}", ("env",))
        object.__setattr__(self, "volumes", tuple(self.volumes))
        for volume in self.volumes:
            _check_volume(volume, ("volumes",))
        object.__setattr__(self, "command", tuple(self.command))
        for arg in self.command:
            # A newline cannot be written into a Quadlet Exec= line.
            _check_text(arg, "command argument", ("command",))

    @property
    def container_name(self) -> str:
        return f"tunnelops-{self.name}"


# --------------------------------------------------------------------------- hosts


@dataclass(frozen=True)
class HostRef:
    """An ssh destination exactly as the user wrote it: an ssh_config alias, host,
    user@host, user@host:port or [v6]:port. str() gives back the original text."""

    text: str
    alias: str = field(init=False, compare=False)
    user: str | None = field(init=False, compare=False)
    port: int | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        alias, user, port = _parse_host(self.text)
        object.__setattr__(self, "alias", alias)
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "port", port)

    @classmethod
    def parse(cls, text: object) -> HostRef:
        if not isinstance(text, str):
            raise ModelError(f"host {_show(text)} must be a string: use e.g. \"myvps\" or "
                             "\"root@203.0.113.7\"")
        return cls(text)

    def __str__(self) -> str:
        return self.text


def _parse_host(text: object) -> tuple[str, str | None, int | None]:
    if not isinstance(text, str):
        raise ModelError(f"host {_show(text)} must be a string: use e.g. \"myvps\"")
    if not text:
        raise ModelError("host is empty: use an ssh_config alias, host or user@host[:port]")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ModelError(f"host {_show(text)} contains whitespace or control characters: "
                         "remove them")
    if text.startswith("-"):
        raise ModelError(f"host {_show(text)} starts with '-', which ssh reads as an option: "
                         "use the host name")
    bad = sorted(set(text) & _HOST_METACHARS)
    if bad:
        raise ModelError(f"host {_show(text)} contains shell metacharacters "
                         f"{''.join(bad)!r}: use an ssh_config alias for anything unusual")
    user: str | None = None
    rest = text
    if "@" in text:
        user, _, rest = text.rpartition("@")
        if not user or "@" in user:
            raise ModelError(f"host {_show(text)} has an empty or doubled user part: "
                             "use user@host")
    port_text: str | None = None
    if rest.startswith("["):
        alias, bracket, after = rest[1:].partition("]")
        if not bracket or not alias:
            raise ModelError(f"host {_show(text)} has an unclosed or empty '[...]': "
                             "use [2001:db8::1]:22")
        if after:
            if not after.startswith(":"):
                raise ModelError(f"host {_show(text)} has text after ']': use [ADDRESS]:PORT")
            port_text = after[1:]
    elif rest.count(":") == 1:
        alias, _, port_text = rest.partition(":")
    else:
        alias = rest  # a bare name, or a bare IPv6 address with no port
    if not alias or "/" in alias or alias.startswith("-"):
        raise ModelError(f"host {_show(text)} has no usable host name: "
                         "use an ssh_config alias, host or user@host[:port]")
    port: int | None = None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
            raise ModelError(f"port {_show(port_text)} in host {_show(text)} is not a number: "
                             "use 1-65535")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ModelError(f"port {port} in host {_show(text)} is out of range: use 1-65535")
    return alias, user, port


def _as_host(value: HostRef | str) -> HostRef:
    return value if isinstance(value, HostRef) else HostRef.parse(value)


@dataclass(frozen=True)
class VpsSpec:
    host: HostRef
    public_ip: IPv4Address | None = None  # discovered by bootstrap
    wan_interface: str | None = None  # discovered by bootstrap
    # the port ssh really connects to (ssh_config's Port for an alias), resolved on the
    # laptop before any connection: the VPS firewall must always let it in
    port: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "host", _as_host(self.host))
        except ModelError as err:
            raise err.within("host") from None
        if self.public_ip is not None:
            object.__setattr__(self, "public_ip", _as_address(self.public_ip, "public_ip"))
        if self.wan_interface is not None:
            check_interface(self.wan_interface, "wan_interface", ("wan_interface",))
        if self.port is not None:
            _check_int(self.port, "SSH port", 1, 65535, ("host",))

    @property
    def ssh_port(self) -> int:
        return self.port or self.host.port or DEFAULT_SSH_PORT


@dataclass(frozen=True)
class HomeSpec:
    """One home server of a site: its ssh destination, its name in the site (what the recap,
    `--home` and the services' `home` say) and its address in the tunnel (None: the site
    gives it the next free one)."""

    host: HostRef
    lan_interface: str | None = None
    name: str = DEFAULT_HOME
    address: IPv4Address | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "host", _as_host(self.host))
        except ModelError as err:
            raise err.within("host") from None
        if self.lan_interface is not None:
            check_interface(self.lan_interface, "lan_interface", ("lan_interface",))
        check_name(self.name, "home name")
        if self.name == HUB:
            raise ModelError(f"home name {HUB!r} is the VPS's own label: give the home "
                             "another name, e.g. name = \"home2\"", where=("name",))
        if self.address is not None:
            object.__setattr__(self, "address", _as_address(self.address, "address"))


def same_host(a: HostRef, b: HostRef) -> bool:
    """Do two destinations name one machine? By the host part: `ops@vps` and `vps:22` are
    `vps` (an ssh_config alias is not resolved: two aliases of one machine are two hosts)."""
    return a.alias == b.alias and (a.port or DEFAULT_SSH_PORT) == (b.port or DEFAULT_SSH_PORT)


def _addresses(homes: tuple[HomeSpec, ...], t: Tunnel) -> dict[str, IPv4Address]:
    """Each home's tunnel address: its own, else the next free one of the subnet from the
    tunnel's home_address on (the seed's .2, then .3, ...)."""
    taken: dict[IPv4Address, str] = {t.vps_address: "the VPS"}
    for index, home in enumerate(homes):
        a = home.address
        if a is None:
            continue
        where: Where = ("homes", index, "address")
        if a not in t.subnet or a in (t.subnet.network_address, t.subnet.broadcast_address):
            raise ModelError(f"address {a} of home {home.name!r} is not a host address of the "
                             f"tunnel subnet {t.subnet}: use one in it", where=where)
        if a in taken:
            raise ModelError(f"address {a} of home {home.name!r} is already {taken[a]}'s: give "
                             "each home its own address", where=where)
        taken[a] = f"home {home.name!r}"
    out: dict[str, IPv4Address] = {}
    start = int(t.home_address)
    last = int(t.subnet.broadcast_address)
    for index, home in enumerate(homes):
        address = home.address
        if address is None:
            address = next((IPv4Address(n) for n in range(start, last)
                            if IPv4Address(n) not in taken), None)
            if address is None:
                raise ModelError(f"the tunnel subnet {t.subnet} has no address left for home "
                                 f"{home.name!r}: use a larger subnet, e.g. a /24",
                                 where=("homes", index, "address"))
            taken[address] = f"home {home.name!r}"
        out[home.name] = address
    return out


# --------------------------------------------------------------------------- site


def _check_optional_text(value: object, what: str) -> None:
    if value is None:
        return
    text = _check_text(value, what, (what,))
    if not text:
        raise ModelError(f"{what} is empty: remove the key or give a value", where=(what,))


@dataclass(frozen=True)
class Site:
    """A hub (the VPS) and its homes: one WireGuard interface on the VPS with a peer per
    home, each home with its own tunnel address and services. `homes` may be given as one
    HomeSpec (the one-home site of a `[home]` inventory); it is always a tuple after."""

    name: str
    vps: VpsSpec
    homes: tuple[HomeSpec, ...]
    tunnel: Tunnel = Tunnel()
    services: tuple[Service, ...] = ()
    ssh_config: str | None = None  # an ssh_config file to use instead of ~/.ssh/config
    known_hosts: str | None = None
    whoami_url: str | None = None  # what-is-my-address URL used by verify
    client_ip: str = "preserve"  # CLIENT_IP_MODES

    def __post_init__(self) -> None:
        check_name(self.name, "site name")
        if self.client_ip not in CLIENT_IP_MODES:
            raise ModelError(f"client_ip {_show(self.client_ip)} is not a mode: use \"preserve\" "
                             "(the game sees each player's address) or \"snat\" (it sees the "
                             "VPS's tunnel address)", where=("client_ip",))
        _check_optional_text(self.ssh_config, "ssh_config")
        _check_optional_text(self.known_hosts, "known_hosts")
        if self.whoami_url is not None:
            url = self.whoami_url
            if (not isinstance(url, str) or not url.startswith(("http://", "https://"))
                    or any(ch.isspace() or not ch.isprintable() for ch in url)):
                raise ModelError(f"whoami_url {_show(url)} is not an http(s) URL: "
                                 "use e.g. \"https://ifconfig.me/ip\"", where=("whoami_url",))
        homes = self._checked_homes()
        object.__setattr__(self, "homes", homes)
        # derived, not a field: a home's address given in the inventory stays the home's own
        # (None if it gave none), so a copy with another subnet re-derives the others
        addresses = _addresses(homes, self.tunnel)
        object.__setattr__(self, "_addresses", addresses)
        # the site-wide tunnel value carries the first home's address: the one-home
        # inventory's [tunnel] home_address; every home's own is `link(home)`
        first = addresses[homes[0].name]
        if self.tunnel.home_address != first:
            object.__setattr__(self, "tunnel", dataclasses.replace(self.tunnel,
                                                                   home_address=first))
        object.__setattr__(self, "services", self._homed(tuple(self.services)))
        self._check_services()

    def _checked_homes(self) -> tuple[HomeSpec, ...]:
        homes = (self.homes,) if isinstance(self.homes, HomeSpec) else tuple(self.homes)
        if not homes:
            raise ModelError(f"site {self.name!r} has no home: add a [home] table with "
                             "host = \"...\" (or [[homes]] entries)", where=("homes",))
        seen: dict[str, HomeSpec] = {}
        for index, home in enumerate(homes):
            if not isinstance(home, HomeSpec):
                raise ModelError(f"home {_show(home)} is not a HomeSpec", where=("homes", index))
            if home.name in seen:
                raise ModelError(f"home name {home.name!r} is used twice: give each "
                                 "[[homes]] entry its own name", where=("homes", index, "name"))
            twin = next((h for h in seen.values() if same_host(h.host, home.host)), None)
            if twin is not None:
                raise ModelError(f"homes {twin.name!r} and {home.name!r} are the same host "
                                 f"{home.host}: list each home server once",
                                 where=("homes", index, "host"))
            seen[home.name] = home
        return homes

    def _homed(self, services: tuple[Service, ...]) -> tuple[Service, ...]:
        """Each service with its home named (the only home when the service says none)."""
        out = []
        names = [h.name for h in self.homes]
        for index, svc in enumerate(services):
            if svc.home is None:
                if len(names) > 1:
                    raise ModelError(f"service {svc.name!r} does not say which home runs it: "
                                     f"add home = \"{names[0]}\" (one of {', '.join(names)})",
                                     where=("services", index, "name"))
                svc = dataclasses.replace(svc, home=names[0])
            elif svc.home not in names:
                raise ModelError(f"service {svc.name!r} runs on home {svc.home!r}, which the "
                                 f"site does not have: use one of {', '.join(names)}",
                                 where=("services", index, "home"))
            out.append(svc)
        return tuple(out)

    def _check_services(self) -> None:
        ssh = PortSpec("tcp", self.vps.ssh_port, self.vps.ssh_port)
        wireguard = PortSpec("udp", self.tunnel.listen_port, self.tunnel.listen_port)
        names: dict[str, int] = {}
        for index, svc in enumerate(self.services):
            if svc.name in names:
                raise ModelError(f"service name {svc.name!r} is used twice: "
                                 "give each [[services]] entry its own name",
                                 where=("services", index, "name"))
            names[svc.name] = index
        for index, svc in enumerate(self.services):
            for port in svc.ports:
                where: Where = ("services", index, "ports", str(port))
                if port.overlaps(ssh):
                    raise ModelError(f"port {port} of service {svc.name!r} includes the VPS "
                                     f"SSH port {ssh}: pick another port", where=where)
                if port.overlaps(wireguard):
                    raise ModelError(f"port {port} of service {svc.name!r} includes the "
                                     f"WireGuard listen port {wireguard}: pick another port "
                                     "or change [tunnel] listen_port", where=where)
                for other in self.services[:index]:
                    for theirs in other.ports:
                        if port.overlaps(theirs) and other.home != svc.home:
                            raise ModelError(
                                f"port {port} of service {svc.name!r} (home {svc.home!r}) "
                                f"overlaps {theirs} of service {other.name!r} (home "
                                f"{other.home!r}): a public port forwards to one home: "
                                "pick another port", where=where)
                        if port.overlaps(theirs):
                            raise ModelError(
                                f"port {port} of service {svc.name!r} overlaps {theirs} of "
                                f"service {other.name!r}: give each port to one service",
                                where=where)

    @property
    def snat(self) -> bool:
        """Does the VPS rewrite the source of forwarded service traffic to its tunnel address?"""
        return self.client_ip == "snat"

    def home(self, name: str) -> HomeSpec:
        for home in self.homes:
            if home.name == name:
                return home
        raise ModelError(f"unknown home {name!r}: use one of "
                         f"{', '.join(h.name for h in self.homes)}")

    def address(self, home: HomeSpec | str) -> IPv4Address:
        """A home's address in the tunnel (its own, or the one the site gave it)."""
        name = home if isinstance(home, str) else home.name
        addresses: dict[str, IPv4Address] = self._addresses  # type: ignore[attr-defined]
        if name not in addresses:
            self.home(name)  # raises: unknown home
        return addresses[name]

    def link(self, home: HomeSpec | str) -> Tunnel:
        """The tunnel as one home sees it: the site's, with that home's address."""
        t, address = self.tunnel, self.address(home)
        return t if t.home_address == address else dataclasses.replace(t, home_address=address)

    def services_of(self, home: HomeSpec | str) -> tuple[Service, ...]:
        name = home if isinstance(home, str) else home.name
        return tuple(s for s in self.services if s.home == name)

    def home_view(self, home: HomeSpec | str) -> Site:
        """The site as one of its homes sees it: the hub and that home alone, at its own
        address, with its own services (verify checks each home of a site through its
        view). A one-home site is its own view."""
        spec = self.home(home) if isinstance(home, str) else home
        if len(self.homes) == 1:
            return self
        pinned = dataclasses.replace(spec, address=self.address(spec))
        return dataclasses.replace(self, homes=(pinned,), tunnel=self.link(spec),
                                   services=self.services_of(spec))

    def service(self, name: str) -> Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise ModelError(f"unknown service {name!r}: use one of {self._service_names()}")

    def _service_names(self) -> str:
        return ", ".join(svc.name for svc in self.services) or "(none)"

    def _pick_service(self, service_name: str | None, home_name: str | None = None) -> Service:
        if service_name is not None:
            svc = self.service(service_name)
            if home_name is not None and svc.home != self.home(home_name).name:
                raise ModelError(f"service {svc.name!r} runs on home {svc.home!r}, not "
                                 f"{home_name!r}: drop --home, or name a service of "
                                 f"{home_name!r}")
            return svc
        if not self.services:
            raise ModelError(f"site {self.name!r} has no services: add a [[services]] entry "
                             "to its inventory file first")
        candidates = self.services
        if home_name is not None:
            home = self.home(home_name)
            candidates = self.services_of(home)
            if not candidates:
                raise ModelError(f"home {home.name!r} has no services: add a [[services]] "
                                 f"entry with home = \"{home.name}\" to the inventory first")
        elif len(self.homes) > 1:
            raise ModelError(f"--home is required: site {self.name!r} has several homes "
                             f"({', '.join(h.name for h in self.homes)})")
        if len(candidates) > 1:
            names = ", ".join(svc.name for svc in candidates)
            raise ModelError("--service is required: "
                             + (f"home {home_name!r}" if home_name else f"site {self.name!r}")
                             + f" has several services ({names})")
        return candidates[0]

    def _with_service(self, new: Service) -> Site:
        services = tuple(new if svc.name == new.name else svc for svc in self.services)
        return dataclasses.replace(self, services=services)

    def with_port_added(self, spec: PortSpec | str, service_name: str | None = None,
                        home_name: str | None = None) -> Site:
        port = _as_port(spec)
        target = self._pick_service(service_name, home_name)
        for svc in self.services:
            for theirs in svc.ports:
                if port.overlaps(theirs):
                    raise ModelError(f"port {port} is already used by service {svc.name!r} "
                                     f"({theirs}): pick another port")
        return self._with_service(dataclasses.replace(target, ports=(*target.ports, port)))

    def with_port_removed(self, spec: PortSpec | str, service_name: str | None = None) -> Site:
        port = _as_port(spec)
        candidates: Iterable[Service] = (
            [self.service(service_name)] if service_name is not None else self.services
        )
        for svc in candidates:
            if port in svc.ports:
                remaining = tuple(p for p in svc.ports if p != port)
                if not remaining:
                    raise ModelError(f"removing {port} would leave service {svc.name!r} with "
                                     "no ports: delete its [[services]] entry instead")
                return self._with_service(dataclasses.replace(svc, ports=remaining))
        if service_name is not None:
            ports = ", ".join(str(p) for p in self.service(service_name).ports)
            raise ModelError(f"service {service_name!r} does not expose {port}: "
                             f"its ports are {ports}")
        raise ModelError(f"no service exposes {port}: nothing to remove "
                         "(give the exact port or range as listed in the inventory)")
