"""sudo with a password (issue 16): given once, to the prompt we detect, never followed by
script lines on the same stdin; a wrong one stops at one attempt; it never reaches a shell, a
log or the transcript. Against a real sudo on the session lab's home host."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.lab.env import sh
from tunnelops.lab import Lab
from tunnelops.remote import Remote, RemoteError, Transcript

pytestmark = pytest.mark.lab

USER = "pwops"
# a password that is also a shell command: if it ever reached `sh`, the file would appear
PASSWORD = "touch /tmp/tunnelops-sudo-pwned"
PWNED = "/tmp/tunnelops-sudo-pwned"
LOG = f"/var/log/sudo-{USER}.log"


def home(lab: Lab, script: str, stdin: bytes | None = None) -> str:
    return sh(lab, "home", script, input=stdin)


@pytest.fixture
def pwops(lab: Lab) -> Iterator[str]:
    """A user whose sudo asks for its password (3 tries, sudo's own log); removed after."""
    pub = (lab.key.parent / f"{lab.key.name}.pub").read_bytes()
    remove = (f"rm -f /etc/sudoers.d/80-{USER} {LOG} {PWNED} /var/run/sudo/ts/{USER}; "
              f"n=0; while pkill -KILL -u {USER} && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); "
              f"done; userdel -r {USER} 2>/dev/null; :")
    home(lab, remove)  # leftovers of a test that died
    home(lab, f"useradd -m -s /bin/sh {USER} && echo {USER}:'{PASSWORD}' | chpasswd && "
            f"install -d -m 700 -o {USER} -g {USER} /home/{USER}/.ssh && "
            f"cat > /home/{USER}/.ssh/authorized_keys && "
            f"chown {USER}:{USER} /home/{USER}/.ssh/authorized_keys && "
            f"printf '%s\\n' 'Defaults:{USER} passwd_tries=3, logfile={LOG}' "
            f"'{USER} ALL=(ALL) ALL' > /etc/sudoers.d/80-{USER} && "
            f"chmod 440 /etc/sudoers.d/80-{USER}", stdin=pub)
    try:
        yield f"{USER}@{lab.topo.alias('home')}"
    finally:
        home(lab, remove)


def remote(lab: Lab, dest: str, answer: str, transcript: Transcript) -> tuple[Remote, list]:
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return answer
    return Remote(dest, ssh_config=str(lab.ssh_config), known_hosts=str(lab.known_hosts),
                  transcript=transcript, ask_password=ask), asked


def test_the_password_is_given_once_to_sudos_prompt(lab: Lab, pwops: str) -> None:
    t = Transcript()
    r, asked = remote(lab, pwops, PASSWORD, t)
    try:
        assert r.run("id -u", check=True).stdout == "0\n"
        r.acquire_lock()  # the lock's channel goes through sudo the same way
        second = r.run("id -un; echo done", check=True)
    finally:
        r.close()
    assert second.stdout == "root\ndone\n" and second.stderr == ""
    assert len(asked) == 1  # asked once for the whole run
    assert PASSWORD not in t.text()
    assert home(lab, f"ls {PWNED} 2>/dev/null; :") == ""


def test_a_wrong_password_stops_at_one_attempt(lab: Lab, pwops: str) -> None:
    """Script lines used to follow the password on stdin: one typo was read as 3 attempts
    (with pam_faillock deny=3 the right password was then refused)."""
    r, asked = remote(lab, pwops, "not the password", Transcript())
    try:
        with pytest.raises(RemoteError) as e:
            r.run("id -u")
    finally:
        r.close()
    assert str(e.value) == (f"{pwops}: sudo refused the password for {USER} (one attempt "
                            "used): re-run and type it again")
    assert len(asked) == 1
    log = lab.exec("home", ["sh", "-c", f"cat {LOG}; :"]).stdout.decode()
    attempts = re.findall(r"(\d+) incorrect password attempts?", log)
    assert attempts == ["1"], log


def test_a_password_sudo_did_not_ask_for_never_reaches_a_shell(lab: Lab, pwops: str) -> None:
    """With `Defaults timestamp_type=global` sudo stops asking once it has been answered: the
    password sent ahead of the script was then run by `sh` as root (and printed in stderr
    and the transcript). Now it is sent only when sudo's prompt is seen."""
    home(lab, f"printf '%s\\n' 'Defaults:{USER} timestamp_type=global' >> /etc/sudoers.d/80-{USER}")
    t = Transcript()
    r, asked = remote(lab, pwops, PASSWORD, t)
    try:
        results = [r.run("id -u") for _ in range(3)]
    finally:
        r.close()
    assert [x.stdout for x in results] == ["0\n"] * 3
    assert all(x.stderr == "" for x in results), [x.stderr for x in results]
    assert len(asked) == 1
    assert PASSWORD not in t.text()
    assert home(lab, f"ls {PWNED} 2>/dev/null; :") == ""
