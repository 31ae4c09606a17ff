"""What every value of the model shares: ModelError (one line, the problem and the fix, and
where in its object the bad value is), and the checks of plain values: integers, text, names,
interface names, IPv4 addresses and networks."""

from __future__ import annotations

import re
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError

NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,30}")
TUNNEL_IFACE_RE = re.compile(r"[a-zA-Z0-9_-]{1,15}")
# Host interfaces may also carry a dot (VLANs such as eth0.100).
HOST_IFACE_RE = re.compile(r"[a-zA-Z0-9_.-]{1,15}")

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


def show(value: object) -> str:
    """A user value quoted for a message; repr() keeps it on one line."""
    return repr(value) if isinstance(value, str) else repr(str(value))


def check_int(value: object, what: str, low: int, high: int, where: Where) -> int:
    # bool is an int subclass; `true` in TOML must not become port 1.
    if type(value) is not int:
        raise ModelError(f"{what} must be an integer, got {show(value)}: use {low}-{high}",
                         where=where)
    if not low <= value <= high:
        raise ModelError(f"{what} {value} is out of range: use {low}-{high}", where=where)
    return value


def check_text(value: object, what: str, where: Where, *, allow_newline: bool = False) -> str:
    if not isinstance(value, str):
        raise ModelError(f"{what} must be a string, got {show(value)}", where=where)
    bad = "\x00" if allow_newline else "\x00\n\r"
    if any(ch in bad for ch in value):
        raise ModelError(f"{what} {show(value)} contains a newline or NUL: remove it",
                         where=where)
    return value


def check_name(value: object, what: str = "name", where: Where = ("name",)) -> str:
    """A service or site name: it ends up in file names, awall and container names."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ModelError(
            f"{what} {show(value)} is not valid: use 1-31 characters a-z, 0-9, '_' or '-', "
            "starting with a letter",
            where=where,
        )
    return value


def check_interface(value: object, what: str, where: Where, *, tunnel: bool = False) -> str:
    pattern = TUNNEL_IFACE_RE if tunnel else HOST_IFACE_RE
    if not isinstance(value, str) or not pattern.fullmatch(value) or value in (".", ".."):
        allowed = "a-z, A-Z, 0-9, '_' or '-'" if tunnel else "a-z, A-Z, 0-9, '_', '.' or '-'"
        raise ModelError(f"{what} {show(value)} is not an interface name: use 1-15 "
                         f"characters {allowed}", where=where)
    return value



def as_address(value: object, what: str) -> IPv4Address:
    if isinstance(value, IPv4Address):
        return value
    if not isinstance(value, str):
        raise ModelError(f"{what} must be an IPv4 address string, got {show(value)}: "
                         "use e.g. \"192.168.2.1\"", where=(what,))
    try:
        return IPv4Address(value)
    except AddressValueError:
        raise ModelError(f"{what} {show(value)} is not an IPv4 address: "
                         "use e.g. \"192.168.2.1\"", where=(what,)) from None


def as_network(value: object, what: str) -> IPv4Network:
    if isinstance(value, IPv4Network):
        return value
    if not isinstance(value, str):
        raise ModelError(f"{what} must be a CIDR string, got {show(value)}: "
                         "use e.g. \"192.168.2.0/24\"", where=(what,))
    try:
        return IPv4Network(value)
    except (AddressValueError, NetmaskValueError):
        raise ModelError(f"{what} {show(value)} is not an IPv4 network: "
                         "use e.g. \"192.168.2.0/24\"", where=(what,)) from None
    except ValueError:
        fixed = IPv4Network(value, strict=False)
        raise ModelError(f"{what} {show(value)} has host bits set: use {fixed}",
                         where=(what,)) from None

