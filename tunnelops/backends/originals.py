"""Originals of files tunnelops edits but does not own (/etc/nftables.conf, a firewalld zone
file, /etc/network/interfaces), so `teardown` can put them back exactly as they were.

The first time tunnelops touches such a path it saves it under ORIG (or notes that it was
absent); later runs keep that first original. `restore_shell` puts every original back."""

from __future__ import annotations

import shlex

ORIG = "/var/lib/tunnelops/orig"
RECORDS = "/var/lib/tunnelops/created"  # one line per thing tunnelops created: "user NAME"...


def backup_shell(*paths: str) -> str:
    out = []
    for path in paths:
        p, o = shlex.quote(path), shlex.quote(ORIG + path)
        out.append(f"if [ ! -e {o} ] && [ ! -e {o}.absent ]; then mkdir -p \"$(dirname {o})\"; "
                   f"if [ -e {p} ]; then cp -a {p} {o}; else : > {o}.absent; fi; fi")
    return "\n".join(out)


def record_shell(what: str) -> str:
    """Note that tunnelops created something (a user, a directory, lingering)."""
    line = shlex.quote(what)
    records = shlex.quote(RECORDS)
    return (f"mkdir -p {shlex.quote(RECORDS.rsplit('/', 1)[0])}; grep -qxF {line} {records} "
            f"2>/dev/null || echo {line} >> {records}")


def restore_shell() -> str:
    return (f"if [ -d {ORIG} ]; then (cd {ORIG} && find . -type f) | while IFS= read -r f; do "
            "p=${f#.}; case $p in *.absent) rm -f \"${p%.absent}\";; "
            f"*) cp -a \"{ORIG}$p\" \"$p\";; esac; done; fi")


def enable_shell(unit: str) -> str:
    """Enable a system unit at boot; note it when tunnelops is the one that enabled it, so
    teardown disables exactly that (and leaves a unit someone else enabled alone)."""
    u = shlex.quote(unit)
    return (f"systemctl is-enabled -q {u} 2>/dev/null || {{ systemctl enable {u} >/dev/null "
            f"2>&1 && {{ {record_shell(f'enabled {unit}')}; }}; }}; :")
