"""What the laptop measures itself, while the hosts run their scripts: a TCP connection to
VPS_PUBLIC:PORT per probed TCP port, and UDP datagrams to VPS_PUBLIC:PORT, repeated until
home's script (which counts them on its tunnel interface) ends.

- TCP passes when the connection is accepted and not closed within a second: the lab's echo
  image greets with `tcp-echo port=P peer=...` (shown); a real service that waits for the
  client to speak first passes by staying open. A connection accepted then closed at once
  is what Podman's port forwarder does when nothing listens in the container: a failure.
- UDP passes on home's counters (ingress.py), whether or not the service answers (the
  answer is shown when there is one).
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from dataclasses import dataclass, field

from tunnelops.model.ports import PortSpec

MAX_PORTS_PER_SPEC = 32  # a range is probed on at most this many of its ports
TCP_WAIT_S = 1.0  # how long an accepted TCP connection must stay open / greet


@dataclass(frozen=True)
class TcpConnect:
    """A laptop probe: connect to the VPS's public address on these ports."""

    spec: PortSpec


@dataclass(frozen=True)
class UdpSend:
    """A laptop probe: send datagrams to the VPS's public address on this spec's ports."""

    spec: PortSpec


@dataclass
class TcpResult:
    port: int
    outcome: str  # greeted | open | closed | refused | unreachable | timeout | error
    detail: str = ""


@dataclass
class LaptopState:
    ssh: dict = field(default_factory=dict)  # host -> {"ms", "reused"} or {"error": str}
    tcp: dict = field(default_factory=dict)  # "12346/tcp" -> [TcpResult]
    udp_sent: dict = field(default_factory=dict)  # "12345/udp" -> count
    udp_replies: dict = field(default_factory=dict)  # "12345/udp" -> first reply text
    udp_error: str = ""


def probe_ports(spec: PortSpec) -> list[int]:
    """The ports of a spec that are probed: all of them, or an even spread of a big range."""
    if spec.count <= MAX_PORTS_PER_SPEC:
        return list(range(spec.first, spec.last + 1))
    step = (spec.count - 1) / (MAX_PORTS_PER_SPEC - 1)
    return sorted({spec.first + round(i * step) for i in range(MAX_PORTS_PER_SPEC)})


def tcp_probe(addr: str, port: int, timeout: float = 2.0,
              wait: float = TCP_WAIT_S) -> TcpResult:
    try:
        s = socket.create_connection((addr, port), timeout=timeout)
    except ConnectionRefusedError:
        return TcpResult(port, "refused")
    except TimeoutError:
        return TcpResult(port, "timeout")
    except OSError as e:
        unreachable = e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)
        return TcpResult(port, "unreachable" if unreachable else "error", e.strerror or str(e))
    with s:
        s.settimeout(wait)
        try:
            data = s.recv(256)
        except TimeoutError:
            return TcpResult(port, "open")
        except OSError as e:
            return TcpResult(port, "closed", e.strerror or str(e))
        if not data:
            return TcpResult(port, "closed", "EOF")
        return TcpResult(port, "greeted", data.decode(errors="replace").splitlines()[0][:80])


class UdpSender:
    """Sends a datagram to every probed UDP port every 100 ms until stopped; keeps replies."""

    def __init__(self, addr: str, specs: list[PortSpec], limit_s: float = 8.0) -> None:
        self.addr, self.specs, self.limit = addr, specs, limit_s
        self.stop = threading.Event()
        self.sent: dict[str, int] = {str(s): 0 for s in specs}
        self.replies: dict[str, str] = {}
        self.error = ""

    def run(self) -> None:
        socks = []
        try:
            for spec in self.specs:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                sock.connect((self.addr, spec.first))  # a reply must come from there
                socks.append((spec, sock, probe_ports(spec)))
            deadline = time.monotonic() + self.limit
            while not self.stop.is_set() and time.monotonic() < deadline:
                for spec, sock, ports in socks:
                    for port in ports:
                        try:
                            if port == spec.first:
                                sock.send(b"tunnelops-verify\n")
                            else:
                                sock.sendto(b"tunnelops-verify\n", (self.addr, port))
                        except OSError:
                            pass  # an ICMP error from an earlier datagram: keep going
                    self.sent[str(spec)] += 1
                    try:
                        data = sock.recv(512)
                        self.replies.setdefault(str(spec), data.decode(errors="replace")
                                                .strip()[:80])
                    except OSError:
                        pass
                self.stop.wait(0.1)
        except OSError as e:
            self.error = str(e)
        finally:
            for _, sock, _ in socks:
                sock.close()
