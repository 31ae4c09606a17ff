"""The hosts of a site: HostRef (an ssh destination as the user wrote it), VpsSpec (the hub)
and HomeSpec (one home server), and when two destinations name one machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from tunnelops.model.values import (
    ModelError,
    as_address,
    check_int,
    check_interface,
    check_name,
    show,
)

DEFAULT_SSH_PORT = 22
DEFAULT_HOME = "home"  # the name of a site's home when its inventory has one [home]
HUB = "vps"  # the VPS's label in the recap; no home may take it
_HOST_METACHARS = frozenset(";|&$`'\"<>(){}*?!\\")


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
            raise ModelError(f"host {show(text)} must be a string: use e.g. \"myvps\" or "
                             "\"root@203.0.113.7\"")
        return cls(text)

    def __str__(self) -> str:
        return self.text


def _parse_host(text: object) -> tuple[str, str | None, int | None]:
    if not isinstance(text, str):
        raise ModelError(f"host {show(text)} must be a string: use e.g. \"myvps\"")
    if not text:
        raise ModelError("host is empty: use an ssh_config alias, host or user@host[:port]")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ModelError(f"host {show(text)} contains whitespace or control characters: "
                         "remove them")
    if text.startswith("-"):
        raise ModelError(f"host {show(text)} starts with '-', which ssh reads as an option: "
                         "use the host name")
    bad = sorted(set(text) & _HOST_METACHARS)
    if bad:
        raise ModelError(f"host {show(text)} contains shell metacharacters "
                         f"{''.join(bad)!r}: use an ssh_config alias for anything unusual")
    user: str | None = None
    rest = text
    if "@" in text:
        user, _, rest = text.rpartition("@")
        if not user or "@" in user:
            raise ModelError(f"host {show(text)} has an empty or doubled user part: "
                             "use user@host")
    port_text: str | None = None
    if rest.startswith("["):
        alias, bracket, after = rest[1:].partition("]")
        if not bracket or not alias:
            raise ModelError(f"host {show(text)} has an unclosed or empty '[...]': "
                             "use [2001:db8::1]:22")
        if after:
            if not after.startswith(":"):
                raise ModelError(f"host {show(text)} has text after ']': use [ADDRESS]:PORT")
            port_text = after[1:]
    elif rest.count(":") == 1:
        alias, _, port_text = rest.partition(":")
    else:
        alias = rest  # a bare name, or a bare IPv6 address with no port
    if not alias or "/" in alias or alias.startswith("-"):
        raise ModelError(f"host {show(text)} has no usable host name: "
                         "use an ssh_config alias, host or user@host[:port]")
    port: int | None = None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
            raise ModelError(f"port {show(port_text)} in host {show(text)} is not a number: "
                             "use 1-65535")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ModelError(f"port {port} in host {show(text)} is out of range: use 1-65535")
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
            object.__setattr__(self, "public_ip", as_address(self.public_ip, "public_ip"))
        if self.wan_interface is not None:
            check_interface(self.wan_interface, "wan_interface", ("wan_interface",))
        if self.port is not None:
            check_int(self.port, "SSH port", 1, 65535, ("host",))

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
            object.__setattr__(self, "address", as_address(self.address, "address"))


def same_host(a: HostRef, b: HostRef) -> bool:
    """Do two destinations name one machine? By the host part: `ops@vps` and `vps:22` are
    `vps` (an ssh_config alias is not resolved: two aliases of one machine are two hosts)."""
    return a.alias == b.alias and (a.port or DEFAULT_SSH_PORT) == (b.port or DEFAULT_SSH_PORT)
