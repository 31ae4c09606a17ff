"""One SSH connection per host, reused for the whole run: the only way tunnelops talks to hosts.

Built on fabric.Connection for what ssh users expect (ssh_config aliases with HostName, User,
Port, IdentityFile, ProxyJump; user@host:port shorthand), with the policies a provisioning
tool needs on top:
- host keys: known_hosts is honoured; an unknown key is refused unless the user asked to trust
  it (then recorded); a changed key is always refused, with the line to remove.
- every command is a shell script sent on stdin to a fixed command line (`sh -s`, under
  `sudo -n` when not root): nothing we send is ever visible in a process list, and quoting
  is one concern (shlex.quote) instead of two.
- a transcript of every byte sent and received, and a count of round trips; each round trip's
  seconds on the laptop's clock and the script's own seconds on the host (the rest is the
  wire: the recap shows both).
- a host-side lock held by an open channel: if the laptop dies, the connection drops and the
  lock is released by itself. The lock is taken by the same script that gathers the facts
  (`run_locked`): one round trip for both.
Under it: channels.py (each command's channel), sudo.py (its password), sshlink.py (the
link), trips.py (round trips, transcript), hostlock.py (the lock's shell).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
from fabric import Config, Connection
from paramiko.ssh_exception import (
    AuthenticationException,
    BadHostKeyException,
    NoValidConnectionsError,
    SSHException,
)

from tunnelops import channels, hostlock
from tunnelops.hostlock import LOCK_WAIT_S, WATCHDOG_WAIT_S
from tunnelops.sshlink import (
    KEEPALIVE_S,
    LINK_TIMEOUT_S,
    HostKeyPolicy,
    LinkLost,
    RemoteError,
    dial,
    forget_socks,
    tune,
)
from tunnelops.sudo import Sudo
from tunnelops.trips import TIMED, Result, Transcript, Trip, host_seconds, split_host_time

if TYPE_CHECKING:
    from tunnelops.model import Site


def for_site(site: Site, *, trust_new: bool = False, transcript: Transcript | None = None,
             ask_password: Callable[[str], str] | None = None,
             dry_run: bool = False) -> dict[str, Remote]:
    """The Remote of each host of a site, by its name in the run (the hub's "vps", each
    home's own); a dry run records no new host key."""
    from tunnelops.model import HUB

    return {role: Remote(str(host.host), ssh_config=site.ssh_config,
                         known_hosts=site.known_hosts, trust_new=trust_new,
                         transcript=transcript, ask_password=ask_password,
                         record_new_hosts=not dry_run)
            for role, host in ((HUB, site.vps), *((h.name, h) for h in site.homes))}


def ssh_host(dest: str, ssh_config: str | None = None) -> str:
    """The host ssh connects to for DEST (an alias's ssh_config HostName), read on the
    laptop, no connection made."""
    config = Config(runtime_ssh_path=ssh_config) if ssh_config else Config()
    return str(Connection(dest, config=config).host)


def ssh_port(dest: str, ssh_config: str | None = None) -> int:
    """The port ssh connects to for DEST (user@host:port, or the alias's ssh_config Port):
    read on the laptop, no connection made."""
    config = Config(runtime_ssh_path=ssh_config) if ssh_config else Config()
    return int(Connection(dest, config=config).port)


class Remote:
    """An SSH destination (anything ssh accepts) and its one reused connection."""

    def __init__(self, dest: str, *, ssh_config: str | None = None,
                 known_hosts: str | None = None, trust_new: bool = False,
                 connect_timeout: float = 10, command_timeout: float | None = None,
                 transcript: Transcript | None = None,
                 ask_password: Callable[[str], str] | None = None,
                 record_new_hosts: bool = True) -> None:
        self.dest = dest
        # trusted unknown host keys, "host type fingerprint"; recorded unless record_new_hosts
        # is False (a dry run)
        self.new_host_keys: list[str] = []
        self._record_new = record_new_hosts
        # a dead link must fail a run, never hang it (TUNNELOPS_TIMEOUT for slow hosts/tests)
        self.command_timeout = command_timeout or float(os.environ.get("TUNNELOPS_TIMEOUT",
                                                                       "180"))
        self.transcript = transcript
        self.round_trips = 0
        self.connects = 0
        self.connect_seconds = 0.0  # the SSH handshake (TCP, key exchange, authentication)
        self.started: float | None = None  # time.monotonic() of the first handshake
        self.trips: list[Trip] = []
        self._lock_chan: paramiko.Channel | None = None
        config = Config(runtime_ssh_path=ssh_config) if ssh_config else Config()
        self.conn = Connection(dest, config=config, connect_timeout=int(connect_timeout))
        kh = known_hosts or self.conn.ssh_config.get("userknownhostsfile", "~/.ssh/known_hosts")
        self.known_hosts = Path(str(kh).split()[0]).expanduser()
        self._trust_new = trust_new
        self.is_root = False
        self.sudo = Sudo(dest, self.conn.user, ask_password)
        self._connecting: threading.Thread | None = None
        self._connect_error: BaseException | None = None
        # With keep_warm, each command's channel is opened for the next one beforehand (see
        # channels.Warm): the engine sets it while more commands will follow (changes to
        # apply).
        self.keep_warm = False
        self._warm = channels.Warm(f"warm {dest}")

    @property
    def label(self) -> str:
        return self.dest

    # ---------------------------------------------------------------- connection
    def _prepare(self, conn: Connection) -> None:
        client = conn.client
        client.get_host_keys().clear()
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(HostKeyPolicy(
            self.dest, self.known_hosts, self._trust_new, self._record_new, self.new_host_keys))
        if isinstance(conn.gateway, Connection):  # ProxyJump hops get the same policy
            self._prepare(conn.gateway)

    def connect_soon(self) -> None:
        """Start the SSH handshake in the background (its round trips are spent waiting:
        the caller imports and plans meanwhile); connect() waits for it and raises its
        error."""
        if self.conn.is_connected or self._connecting is not None:
            return

        def handshake() -> None:
            try:
                self._connect()
            except BaseException as e:  # handed to connect(), in the caller's thread
                self._connect_error = e

        self.started = self.started or time.monotonic()
        self._connecting = threading.Thread(target=handshake, daemon=True,
                                            name=f"connect {self.dest}")
        self._connecting.start()

    def connect(self) -> None:
        if self._connecting is not None:
            self._connecting.join()
            self._connecting, error, self._connect_error = None, self._connect_error, None
            if error is not None:
                raise error
        self._connect()

    def _connect(self) -> None:
        if self.conn.is_connected:
            return
        self._prepare(self.conn)
        host = f"{self.conn.user}@{self.conn.host}:{self.conn.port}"
        t0 = time.monotonic()
        self.started = self.started or t0
        try:
            dial(self.conn, float(self.conn.connect_timeout or 10))
            self.conn.open()
        except BadHostKeyException as e:
            raise RemoteError(
                f"{self.dest}: host key of {e.hostname} CHANGED (now {e.key.get_name()} "
                f"{e.key.fingerprint}); if the change is legitimate remove the old key with "
                f"`ssh-keygen -R {e.hostname} -f {self.known_hosts}`") from None
        except AuthenticationException as e:
            raise RemoteError(f"{self.dest}: SSH refused our key for {host} ({e}): add your "
                              "public key to the user's authorized_keys or set IdentityFile")\
                from None
        except (NoValidConnectionsError, TimeoutError, OSError) as e:
            raise RemoteError(f"{self.dest}: cannot reach {host} ({e}): check the host name, "
                              "its ssh_config entry and that sshd runs") from None
        except SSHException as e:
            raise RemoteError(f"{self.dest}: SSH failed for {host}: {e}") from None
        finally:
            forget_socks(self.conn)  # the transport owns it now (or it failed): not reused
        self.connect_seconds += time.monotonic() - t0
        self.connects += 1
        transport = self.conn.transport
        assert transport is not None
        transport.set_keepalive(KEEPALIVE_S)
        tune(transport.sock)
        self.is_root = self.conn.user == "root"

    def probe_new_connection(self, timeout: float = 5, within: float = 0,
                             what: str = "proving a new SSH connection gets through") -> None:
        """Prove that the host still accepts NEW SSH connections: a fresh TCP connection
        (through the ProxyJump gateway if there is one) must get an SSH banner. Our own
        connection would survive a lock-out rule (it is established); a new one would not.
        No login: `add-port` keeps its promise of one SSH connection per host.
        A failed attempt is made again until WITHIN seconds have passed: the VPS's own SSH
        rate limiter (9/minute, burst 3) drops a new connection that follows a few others
        from this address (quick re-runs) and admits one seconds later; a lock-out drops all."""
        host, port = self.conn.host, int(self.conn.port)
        t0 = time.monotonic()
        try:
            while True:
                left = t0 + within - time.monotonic()
                try:  # the first attempt gets the whole TIMEOUT, a retry what is left
                    banner = self._banner(host, port, timeout if left >= within
                                          else max(1.0, min(timeout, left)))
                    break
                except (OSError, SSHException) as e:
                    if time.monotonic() + 0.5 >= t0 + within:
                        raise RemoteError(f"{self.dest}: a new SSH connection to {host}:{port} "
                                          f"fails ({e or 'timed out'})") from None
                    time.sleep(0.5)
        finally:  # on the wire only: no script runs (not a round trip of the count)
            self.trips.append(Trip(what, time.monotonic() - t0))
        if not banner.startswith(b"SSH-"):
            raise RemoteError(f"{self.dest}: a new connection to {host}:{port} got no SSH "
                              "banner")

    def _banner(self, host: str, port: int, timeout: float) -> bytes:
        """The first bytes a new TCP connection to HOST:PORT receives."""
        if isinstance(self.conn.gateway, Connection) and self.conn.gateway.transport:
            sock = self.conn.gateway.transport.open_channel(
                "direct-tcpip", (host, port), ("", 0), timeout=timeout)
        else:
            sock = socket.create_connection((host, port), timeout=timeout)
        with sock:
            sock.settimeout(timeout)
            return sock.recv(64)

    def _alive(self) -> bool:
        t = self.conn.transport
        return t is not None and t.is_active()

    def close(self) -> None:
        self.keep_warm = False
        self._warm.close()
        if self._lock_chan is not None:
            self._lock_chan.close()
            self._lock_chan = None
        self.conn.close()

    def _broke(self, what: str, e: BaseException) -> RemoteError:
        return RemoteError(f"{self.dest}: the SSH connection broke during {what} ({e}): "
                           "check the link, then re-run (every step is idempotent)")

    def _lost(self, what: str, also: str = "") -> RemoteError:
        return RemoteError(f"{self.dest}: the SSH connection was lost during {what} (no "
                           f"answer for {LINK_TIMEOUT_S:.0f}s): check the link, then re-run "
                           f"(every step is idempotent{also})")

    def _overdue(self, what: str, timeout: float) -> RemoteError:
        return RemoteError(f"{self.dest}: {what} did not finish within {timeout:.0f}s: "
                           "check the host's load and link (TUNNELOPS_TIMEOUT raises the "
                           "limit)")

    # ---------------------------------------------------------------- commands
    def _open(self, sudo: bool, timeout: float) -> tuple[paramiko.Channel, bytes]:
        """A channel running our command line, through sudo's password prompt if it asks:
        (channel ready for the script on stdin, stderr it printed before the marker)."""
        transport = self.conn.transport
        assert transport is not None
        line = self.sudo.command_line(sudo, self.is_root)
        simple = not self.sudo.prompts(sudo, self.is_root)  # no prompt to answer
        chan = self._warm.take(line) if simple else None
        if chan is None:
            chan = channels.session(transport, line, timeout)
        chan.settimeout(timeout)
        if simple and self.keep_warm:
            self._warm.open(transport, line)
        if simple:
            return chan, b""
        return chan, self.sudo.answer(chan, timeout)

    def _exec(self, sudo: bool, stdin: str, timeout: float, what: str) -> Result:
        chan, early = self._open(sudo, timeout)
        try:
            out, err, status = channels.exchange(chan, stdin.encode(), early, timeout,
                                                 self._alive)
        except LinkLost:
            raise self._lost(what, "; a change that could cut SSH puts itself back unless "
                                   "proven") from None
        except TimeoutError:
            raise self._overdue(what, timeout) from None
        return Result(out.decode(errors="replace"), err.decode(errors="replace"), status)

    def run(self, script: str, *, sudo: bool = True, timeout: float | None = None,
            check: bool = False, what: str = "command") -> Result:
        """Run a shell script on the host (one round trip). The script travels on stdin."""
        self.connect()
        timeout = timeout or self.command_timeout
        body = TIMED + (script if script.endswith("\n") else script + "\n")
        if self.transcript:
            self.transcript.add(self.dest, "sent", body)  # the sudo password is never recorded
        self.round_trips += 1
        t0 = time.monotonic()
        try:
            res = self._exec(sudo, body, timeout, what)
        except (SSHException, EOFError, OSError) as e:
            raise self._broke(what, e) from None
        res.stderr, host = split_host_time(res.stderr)
        self.trips.append(Trip(what, time.monotonic() - t0, host))
        if self.transcript:
            self.transcript.add(self.dest, "received", res.stdout + res.stderr)
        if sudo and not self.is_root and self.sudo.wants_password(res.stderr):
            self.sudo.ask()
            return self.run(script, sudo=sudo, timeout=timeout, check=check, what=what)
        if sudo and not self.is_root:
            self.sudo.refused(res.stderr, res.exit)
        if check and not res.ok:
            last = (res.stderr or res.stdout).strip().splitlines()
            raise RemoteError(f"{self.dest}: {what} failed: {last[-1] if last else res.exit}")
        return res

    # ---------------------------------------------------------------- host-side lock
    def run_locked(self, script: str = "", *, token: str = "", wait: float = LOCK_WAIT_S,
                   what: str = "gathering facts") -> Result:
        """Take the host's tunnelops lock and run `script` under it, in ONE round trip; the
        lock is then held by this channel until close() (hostlock.locked_script says how)."""
        self.connect()
        end = f"::tunnelops-locked:: {secrets.token_hex(8)}"
        full = hostlock.locked_script(script, token=token, wait=wait, end=end)
        if self.transcript:
            self.transcript.add(self.dest, "sent", full)
        self.round_trips += 1
        t0 = time.monotonic()
        timeout = wait + WATCHDOG_WAIT_S + 10 + self.command_timeout
        try:
            chan, early = self._open(True, 30)
            try:
                out, err = channels.read_until(chan, f"\n{end} ".encode(), early, timeout,
                                               full.encode(), self._alive)
            except LinkLost:
                raise self._lost(what) from None
            except TimeoutError:
                raise self._overdue(what, timeout) from None
        except (SSHException, EOFError, OSError) as e:
            raise self._broke(what, e) from None
        text, errs = out.decode(errors="replace"), err.decode(errors="replace")
        if self.transcript:
            self.transcript.add(self.dest, "received", text + errs)
        head, found, tail = text.partition(f"\n{end} ")
        if not found:
            chan.close()
            self.trips.append(Trip(what, time.monotonic() - t0))
            if self.sudo.wants_password(errs):
                self.sudo.ask()
                return self.run_locked(script, token=token, wait=wait, what=what)
            if text.startswith("BUSY"):
                # the run's token is for the watchdogs, not for people
                holder = " ".join(w for w in text.split("BUSY", 1)[1].split()
                                  if not w.startswith("token=")) or "unknown holder"
                raise RemoteError(f"another tunnelops run holds the lock on {self.dest} "
                                  f"({holder}): wait for it to finish, then re-run")
            raise RemoteError(f"{self.dest}: could not take the tunnelops lock: "
                              f"{errs.strip() or text.strip() or 'no answer'}")
        self.trips.append(Trip(what, time.monotonic() - t0,
                               host_seconds(*([*tail.split(), "", ""][:2]))))
        self._lock_chan = chan
        return Result(head, errs, 0)

    def acquire_lock(self, wait: float = LOCK_WAIT_S, token: str = "") -> None:
        """The host lock alone (run_locked with no script), held until close()."""
        self.run_locked(token=token, wait=wait, what="taking the host lock")

    # ---------------------------------------------------------------- streaming
    def stream(self, script: str, out: Callable[[bytes], None],
               err: Callable[[bytes], None], *, sudo: bool = True,
               hold_stdin: bool = False) -> int:
        """Run a script, handing its output on as it arrives, until it ends (one round trip;
        no timeout: `logs --follow` runs until Ctrl-C). With hold_stdin the script's stdin
        stays open after the script, so it can wait on it: EOF means the laptop is gone.
        On Ctrl-C, stdin is closed, the script gets 3 s to stop, and KeyboardInterrupt is
        re-raised. Returns the exit status."""
        self.connect()
        if sudo and not self.is_root and self.sudo.password is None:
            self.run("true", what="checking sudo")  # asks for a password if sudo wants one
        body = script if script.endswith("\n") else script + "\n"
        if self.transcript:
            self.transcript.add(self.dest, "sent", body)
        self.round_trips += 1
        transport = self.conn.transport
        assert transport is not None
        try:
            chan, early = self._open(sudo, timeout=30)
            if early:
                err(early)
            if not chan.exit_status_ready():
                chan.sendall(body.encode())
                if not hold_stdin:
                    chan.shutdown_write()
        except (SSHException, OSError) as e:
            raise RemoteError(f"{self.dest}: cannot start a remote command ({e})") from None
        received: list[bytes] = [early]
        try:
            return channels.relay(chan, out, err, transport.is_active, received)
        except LinkLost:
            raise RemoteError(f"{self.dest}: the SSH connection broke: check the link, then "
                              "re-run") from None
        finally:
            chan.close()
            if self.transcript:
                self.transcript.add(self.dest, "received",
                                    b"".join(received).decode(errors="replace"))
