"""The channels of a Remote's one connection. Each command is a session channel running a
fixed command line (`sh -s`, `sudo -n sh -s`, ...) that reads its script on stdin. The next
command's channel can be opened while the current one runs (Warm); what a channel answers
is read until the remote's EOF and exit status (pump, exchange), until a line of our own
(read_until: the host lock's channel stays open), or handed on as it arrives (relay: `logs
--follow`). A dead transport is LinkLost, a deadline passed TimeoutError: the Remote says
which host and what was being done."""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable

import paramiko
from paramiko.ssh_exception import SSHException

from tunnelops.sshlink import LinkLost


def session(transport: paramiko.Transport, line: str, timeout: float) -> paramiko.Channel:
    """A new channel running LINE."""
    chan = transport.open_session(timeout=timeout)
    chan.exec_command(line)
    return chan


class Warm:
    """The next command's channel, opened beforehand. A command costs 3 round trips on a new
    channel -- its opening, the exec (OpenSSH grants the window for stdin only then), the
    script -- and 1 on a warm one; this one's first two are spent while the current command
    runs. An idle shell is harmless: it runs what it is sent, or nothing at EOF (the run
    ended, or the laptop vanished)."""

    def __init__(self, name: str) -> None:
        self.name = name  # its thread's
        self._spare: tuple[str, threading.Thread, dict] | None = None

    def open(self, transport: paramiko.Transport | None, line: str) -> None:
        """Open a channel now, in the background, and start LINE on it (`sh -s`, `sudo -n
        sh -s`): it waits on stdin for the script."""
        if transport is None or self._spare is not None:
            return
        box: dict = {}

        def open_() -> None:
            # on failure the next command opens its own, and says what is wrong
            with contextlib.suppress(SSHException, OSError, EOFError):
                box["chan"] = session(transport, line, 30)

        thread = threading.Thread(target=open_, daemon=True, name=self.name)
        thread.start()
        self._spare = (line, thread, box)

    def take(self, line: str) -> paramiko.Channel | None:
        """The channel opened beforehand, if it runs LINE (else None: open one)."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        spare[1].join()
        chan = spare[2].get("chan")
        if chan is None or spare[0] != line or chan.closed:
            if chan is not None:
                chan.close()
            return None
        return chan  # its command may have failed (sudo -n): as a new channel's would

    def close(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None and not spare[1].is_alive() and "chan" in spare[2]:
            spare[2]["chan"].close()  # one still opening dies with the connection


def pump(chan: paramiko.Channel, deadline: float, out: bytearray, err: bytearray,
         alive: Callable[[], bool], done: Callable[[bytearray], bool] | None = None) -> None:
    """Read the channel into OUT and ERR until the remote's EOF and exit status (not just
    its exit status: SSH may deliver it before the last of the output), or until DONE
    says OUT is enough. LinkLost when the transport died, TimeoutError past DEADLINE."""
    while True:
        if chan.recv_ready():
            out += chan.recv(65536)
            if done is not None and done(out):
                return
        elif chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        elif (chan.eof_received or chan.closed) and chan.exit_status_ready():
            return
        elif not alive():
            raise LinkLost
        else:
            if time.monotonic() > deadline:
                raise TimeoutError
            select.select([chan], [], [], 0.05)  # wakes on data, EOF or close


def exchange(chan: paramiko.Channel, stdin: bytes, early: bytes, timeout: float,
             alive: Callable[[], bool]) -> tuple[bytes, bytes, int]:
    """Send STDIN and close it, then read all the answer: (stdout, EARLY + stderr, exit
    status). The channel is closed after."""
    out, err = bytearray(), bytearray(early)
    try:
        if not chan.exit_status_ready():
            chan.sendall(stdin)
            chan.shutdown_write()
        pump(chan, time.monotonic() + timeout, out, err, alive)
        status = chan.recv_exit_status()
        if status == -1 and not alive():  # closed with no exit status: link gone
            raise LinkLost
    finally:
        chan.close()
    return bytes(out), bytes(err), status


def read_until(chan: paramiko.Channel, marker: bytes, early: bytes, timeout: float,
               stdin: bytes, alive: Callable[[], bool]) -> tuple[bytes, bytes]:
    """Send stdin (keeping the channel's stdin open) and read until a line starting with
    marker has arrived on stdout, or the remote ended: (stdout, stderr). The channel is
    closed if the link was lost or the time is up."""
    out, err = bytearray(), bytearray(early)

    def marked(buf: bytearray) -> bool:
        at = buf.find(marker)
        return at >= 0 and b"\n" in buf[at + len(marker):]

    try:
        if not chan.exit_status_ready():
            chan.sendall(stdin)
        pump(chan, time.monotonic() + timeout, out, err, alive, marked)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
    except (LinkLost, TimeoutError):
        chan.close()
        raise
    return bytes(out), bytes(err)


def relay(chan: paramiko.Channel, out: Callable[[bytes], None], err: Callable[[bytes], None],
          alive: Callable[[], bool], received: list[bytes]) -> int:
    """Hand on what the channel sends as it arrives (each piece also appended to RECEIVED),
    until it ends: its exit status; LinkLost when the transport died. On Ctrl-C, stdin is
    closed, the script gets 3 s to stop (its output dropped), and KeyboardInterrupt is
    re-raised."""
    muted = False

    def drain() -> bool:
        got = False
        for ready, recv, sink in ((chan.recv_ready, chan.recv, out),
                                  (chan.recv_stderr_ready, chan.recv_stderr, err)):
            while ready():
                data = recv(65536)
                received.append(data)
                if not muted:
                    sink(data)
                got = True
        return got

    try:
        while True:
            if not drain():
                if (chan.eof_received or chan.closed) and chan.exit_status_ready():
                    break
                if not alive():
                    raise LinkLost
                select.select([chan], [], [], 0.2)
        drain()
        return chan.recv_exit_status()
    except KeyboardInterrupt:
        # the user is done: let the script stop; drain() drops its output from now on
        muted = True
        with contextlib.suppress(SSHException, OSError):
            chan.shutdown_write()
            deadline = time.monotonic() + 3
            while not chan.exit_status_ready() and time.monotonic() < deadline:
                if not drain():
                    select.select([chan], [], [], 0.1)
        raise
