"""PortSpec: one port or a port range of one protocol, as the inventory writes it
(12345/udp, 27015-27020/udp), and as nft, podman and awall want it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tunnelops.model.values import ModelError, check_int, show

PROTOCOLS = ("tcp", "udp")
_PORT_SPEC_RE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?/(tcp|udp)")
_PORT_PART_RE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")


@dataclass(frozen=True, order=True)
class PortSpec:
    """One port or an inclusive port range of one protocol, e.g. 12345/udp, 27015-27020/udp."""

    proto: str
    first: int
    last: int

    def __post_init__(self) -> None:
        if self.proto not in PROTOCOLS:
            raise ModelError(f"protocol {show(self.proto)} is not supported: use tcp or udp")
        for port in (self.first, self.last):
            check_int(port, "port", 1, 65535, ())
        if self.first > self.last:
            raise ModelError(f"range {self.first}-{self.last} is reversed: "
                             f"write it as {self.last}-{self.first}")

    @classmethod
    def parse(cls, text: object) -> PortSpec:
        """Parse `12345/udp` or `27015-27020/udp` (whitespace around it and the protocol's
        case are forgiven; nothing else is)."""
        if not isinstance(text, str):
            raise ModelError(f"port spec {show(text)} is not a string: write it as "
                             "\"12345/udp\" or \"27015-27020/udp\"")
        spec = text.strip()
        ports, slash, proto = spec.rpartition("/")
        if not slash:
            raise ModelError(f"{show(spec)} has no protocol: use PORT/PROTO, "
                             "e.g. 12345/udp or 27015-27020/tcp")
        proto_lc = proto.lower() if proto.isascii() else proto
        if proto_lc not in PROTOCOLS:
            raise ModelError(f"protocol {show(proto)} in {show(spec)} is not supported: "
                             "use tcp or udp")
        if not _PORT_PART_RE.fullmatch(ports):
            raise ModelError(f"{show(ports)} in {show(spec)} is not a port or port range: "
                             "use e.g. 12345/udp or 27015-27020/udp")
        match = _PORT_SPEC_RE.fullmatch(f"{ports}/{proto_lc}")
        assert match is not None  # both halves were matched above
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        for port in (first, last):
            if not 1 <= port <= 65535:
                raise ModelError(f"port {port} in {show(spec)} is out of range: use 1-65535")
        if first > last:
            raise ModelError(f"range {first}-{last} in {show(spec)} is reversed: "
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


def as_port(value: PortSpec | str) -> PortSpec:
    return value if isinstance(value, PortSpec) else PortSpec.parse(value)

