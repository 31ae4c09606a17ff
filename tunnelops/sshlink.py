"""The SSH link under a Remote: its errors, the host-key policy, and the socket, dialled by
us and tuned for a provisioning tool's small request/answer exchanges (no Nagle, quick ACKs,
a dead link noticed within seconds)."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import paramiko
from fabric import Connection

KEEPALIVE_S = 5
LINK_TIMEOUT_S = float(os.environ.get("TUNNELOPS_LINK_TIMEOUT", "15"))


class RemoteError(RuntimeError):
    """One line: the host, what failed, and what to do."""


class LinkLost(Exception):
    """The SSH transport died under a command (the kernel or a keepalive gave up)."""



class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown keys unless asked to trust them; then record them (a dry run trusts
    them for its own connection only: it writes nothing, known_hosts included)."""

    def __init__(self, dest: str, known_hosts: Path, trust_new: bool,
                 record: bool = True, accepted: list[str] | None = None) -> None:
        self.dest, self.known_hosts, self.trust_new = dest, known_hosts, trust_new
        self.record = record
        self.accepted = accepted if accepted is not None else []

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        if not self.trust_new:
            raise RemoteError(
                f"{self.dest}: unknown host key {key.get_name()} {key.fingerprint}: check it, "
                f"then re-run with --trust-new-host to record it in {self.known_hosts}")
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.accepted.append(f"{hostname} {key.get_name()} {key.fingerprint}")
        if not self.record:
            return
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def tune(sock: object) -> None:
    """The SSH socket: no Nagle delay on our small request/answer exchanges, and a dead link
    noticed within seconds (SSH keepalives every KEEPALIVE_S, and the kernel gives up on data
    not acknowledged within LINK_TIMEOUT_S), instead of minutes of silence."""
    if not isinstance(sock, socket.socket):  # a ProxyJump channel: its hop's socket counts
        return
    opts = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_S), ("TCP_KEEPINTVL", 2),
                        ("TCP_KEEPCNT", 3), ("TCP_USER_TIMEOUT", int(LINK_TIMEOUT_S * 1000))):
        if hasattr(socket, name):
            opts.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    for level, opt, value in opts:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, opt, value)


class Acking:
    """The SSH socket, acknowledging what arrives at once: TCP_QUICKACK again after each
    read (Linux leaves quick-ack mode by itself). sshd sends its small packets with Nagle on
    (it sets TCP_NODELAY for interactive sessions only), so each waits for our ACK of the one
    before, which a delayed ACK holds up to 40 ms: after authentication, before the first
    channel opens, that cost 36 ms at 50 ms RTT (0.255 -> 0.219 s, median of 8)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._ack()

    def _ack(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        self._ack()
        return data

    def __getattr__(self, name: str) -> object:  # send, settimeout, close, shutdown...
        return getattr(self._sock, name)


def dial(conn: Connection, timeout: float) -> None:
    """Open the TCP connection ourselves, tuned (tune) before the SSH handshake starts:
    with Nagle on, each of the handshake's back-to-back small writes (banner, KEXINIT,
    NEWKEYS, the service request...) waits for the previous one's ACK -- ~3 RTTs more per
    connection (measured: 0.50 s -> 0.36 s at 50 ms RTT). ProxyJump hops likewise; a
    ProxyCommand's pipe is left to it."""
    gateway = conn.gateway
    if isinstance(gateway, Connection):
        if not gateway.is_connected:
            dial(gateway, timeout)
        return
    if gateway:
        return
    sock = socket.create_connection((conn.host, int(conn.port)), timeout=timeout)
    tune(sock)
    conn.connect_kwargs["sock"] = Acking(sock) if hasattr(socket, "TCP_QUICKACK") else sock


def forget_socks(conn: Connection) -> None:
    """Drop the sockets dial handed to fabric: a later connect dials afresh."""
    conn.connect_kwargs.pop("sock", None)
    if isinstance(conn.gateway, Connection):
        forget_socks(conn.gateway)
