"""sudo for a user who is not root: passwordless (`sudo -n`), or with a password asked once
(on the terminal, or by the caller's ask_password) when sudo says it wants one, and given
only to sudo's own prompt (`sudo -S -p PROMPT`): the script follows on stdin only after a
marker says sudo let us in, so a password sudo did not ask for (cached credentials) never
reaches a shell, and a wrong one stops at one attempt."""

from __future__ import annotations

import getpass
import select
import shlex
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tunnelops.sshlink import RemoteError

if TYPE_CHECKING:
    import paramiko

# sudo -S -p: our own prompt, so we answer only when sudo asks; then a marker once it let us in
SUDO_PROMPT = "[tunnelops] sudo password:"
SUDO_OK = "tunnelops-sudo-ok"


def terminal_password(prompt: str) -> str:
    """Ask on the terminal; with none (CI, a pipe) there is nobody to ask: EOFError."""
    if not sys.stdin.isatty():
        raise EOFError
    return getpass.getpass(prompt)


class Sudo:
    """The sudo of one host's login user (DEST's USER): the command line a script runs
    under, and the password, once sudo asked for it."""

    def __init__(self, dest: str, user: str,
                 ask_password: Callable[[str], str] | None = None) -> None:
        self.dest, self.user = dest, user
        self._ask = ask_password or terminal_password
        self.password: str | None = None

    def command_line(self, sudo: bool, is_root: bool) -> str:
        if not sudo or is_root:
            return "sh -s"
        if self.password is not None:
            # the prompt is ours to recognise; the marker says sudo let us in: only then does
            # the script go on stdin (never after a password sudo did not ask for)
            inner = f"printf '%s\\n' {SUDO_OK} >&2; exec sh -s"
            return f"sudo -S -p {shlex.quote(SUDO_PROMPT)} sh -c {shlex.quote(inner)}"
        return "sudo -n sh -s"

    def prompts(self, sudo: bool, is_root: bool) -> bool:
        """Whether a channel of this command line has sudo's prompt to answer first."""
        return sudo and not is_root and self.password is not None

    def wants_password(self, stderr: str) -> bool:
        """sudo -n said it needs a password, and we have none yet: ask(), then run again."""
        return self.password is None and "a password is required" in stderr

    def ask(self) -> None:
        try:
            self.password = self._ask(f"[sudo] password for {self.dest}: ")
        except (EOFError, KeyboardInterrupt):
            user = self.user
            raise RemoteError(f"{self.dest}: sudo wants a password for {user} and there is no "
                              f"terminal to type it: give {user} passwordless sudo (NOPASSWD) "
                              "or log in as root") from None

    def refused(self, stderr: str, status: int) -> None:
        """RemoteError when sudo said the user may not use it at all."""
        if status != 0 and ("is not in the sudoers" in stderr or "not allowed to" in stderr):
            raise RemoteError(f"{self.dest}: user {self.user} may not use sudo: log in "
                              "as root or grant sudo (e.g. add the user to the sudo/wheel group)")

    def answer(self, chan: paramiko.Channel, timeout: float) -> bytes:
        """Through sudo's prompt on CHAN (the password given once, when sudo asks) until
        sudo let us in: what it printed on stderr after the marker; or, when sudo said no
        (not in sudoers, ...), all it printed (the channel then has its exit status)."""
        prompt, ok = SUDO_PROMPT.encode(), SUDO_OK.encode() + b"\n"
        buf, answered = b"", False
        deadline = time.monotonic() + timeout
        while ok not in buf:
            if chan.recv_stderr_ready():
                buf += chan.recv_stderr(4096)
            elif chan.exit_status_ready():  # sudo said no (not in sudoers, ...)
                return buf
            elif time.monotonic() > deadline:
                chan.close()
                raise RemoteError(f"{self.dest}: sudo did not answer within {timeout:.0f}s")
            else:
                select.select([chan], [], [], 0.05)
            if prompt in buf:
                if answered:  # asked again: the password was wrong; one attempt, no more
                    chan.close()
                    self.password = None
                    raise RemoteError(f"{self.dest}: sudo refused the password for "
                                      f"{self.user} (one attempt used): re-run and type "
                                      "it again")
                chan.sendall((self.password + "\n").encode())
                answered, buf = True, buf.replace(prompt, b"", 1)
        return buf.split(ok, 1)[1]
