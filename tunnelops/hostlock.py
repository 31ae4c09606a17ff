"""The host lock: one tunnelops run at a time on a host, held by an open SSH channel.

flock on an open channel: the lock dies with the connection, so a run that died never leaves
a lock behind; a live one is reported with its pid and start time. A run that died may leave
its apply script running on the host, though (until its next write to the dead connection):
the lock is only taken once it has ended; a guard's watchdog restoring what a run left
unproven is waited for, and the script then reads what it put back. The script runs once
the lock is ours, in a subshell without the lock's descriptor (nothing it starts may hold
the lock) and with stdin at EOF, and ends with a line of our own on stdout; the channel then
stays open, holding the lock (Remote.run_locked).
"""

from __future__ import annotations

import shlex

LOCK_PATH = "/run/tunnelops.lock"
APPLY_LOCK_PATH = LOCK_PATH + ".apply"  # held (shared) by every apply script while it runs
LOCK_WAIT_S = 5
WATCHDOG_WAIT_S = 90  # a restore by a guard's watchdog (firewall-cmd --reload is slow on VMs)


def locked_script(script: str, *, token: str, wait: float, end: str) -> str:
    """The shell that takes the lock (waiting up to WAIT s; BUSY and the holder, exit 75,
    when it cannot), runs SCRIPT under it, prints `END T0 T1` (its host seconds) and holds
    the lock until the laptop closes the channel."""
    info = shlex.quote(LOCK_PATH + ".info")
    body = script if not script or script.endswith("\n") else script + "\n"
    return (
        "read -r __t0 __ </proc/uptime 2>/dev/null\n"
        f"exec 9>>{shlex.quote(LOCK_PATH)}\n"
        # a guard's watchdog restoring what a run left unproven: wait for it
        f"if ! flock -w {int(wait)} 9 && ! {{ grep -qs '^watchdog' {info} && "
        f"flock -w {WATCHDOG_WAIT_S} 9; }}; then echo BUSY; cat {info} 2>/dev/null; "
        "exit 75; fi\n"
        # the apply script of a run whose connection died may still be running: wait
        f"exec 8>>{shlex.quote(APPLY_LOCK_PATH)}\n"
        f"if ! flock -w {int(wait)} 8; then echo BUSY; echo 'the changes of a run that "
        "lost its connection are still being applied'; exit 75; fi\n"
        "exec 8>&-\n"
        f"echo \"pid=$$ since=$(date -u +%Y-%m-%dT%H:%M:%SZ) token={token}\" > {info}\n"
        # stdin as a script's was (EOF): this channel's stays open, to hold the lock
        f"(\nexec 9>&- </dev/null\n{body})\n"
        "read -r __t1 __ </proc/uptime 2>/dev/null\n"
        f"printf '\\n{end} %s %s\\n' \"$__t0\" \"$__t1\"\n"
        "read -r _ || true\n"   # hold until the laptop closes the channel
        f"rm -f {info}\n"
    )
