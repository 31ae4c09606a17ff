"""`tunnelops logs SERVICE`: the service's container logs, read at home by the service's own
user (rootless: root's podman does not see the container), through one SSH connection.

With --follow the script waits on its stdin as well as on podman: when the laptop goes away
(Ctrl-C, or the link dies) stdin reaches EOF and podman is stopped, rather than lingering at
home until the container next writes a line."""

from __future__ import annotations

import re
import shlex

from tunnelops.model.service import Service
from tunnelops.render.podman import as_user

NO_USER, NO_CONTAINER = 3, 4  # the script's exit statuses for what is not there (yet)
LINES_RE = re.compile(r"^(all|\d{1,7})$")


def parse_lines(text: str | int) -> int | None:
    """--lines: a count, or 'all' (None). ValueError with the fix otherwise."""
    value = str(text).strip().lower()
    if not LINES_RE.fullmatch(value):
        raise ValueError(f"--lines {text!r} is not a number of lines: use e.g. 100, or all")
    return None if value == "all" else int(value)


def script(svc: Service, *, follow: bool, lines: int | None) -> str:
    """Shell for the home host, as root: one line (see below), exit 3/4 when the user or
    the container does not exist."""
    u, c = shlex.quote(svc.user), shlex.quote(svc.container_name)
    args = ["podman", "logs", *(["--follow"] if follow else []),
            *(["--tail", str(lines)] if lines is not None else []), svc.container_name]
    inner = (f"podman container exists {c} || exit {NO_CONTAINER}; "
             f"exec {shlex.join(args)}")
    check = f"id -u {u} >/dev/null 2>&1 || exit {NO_USER}"
    if not follow:
        return f"{check}; {as_user(svc.user, inner)}\n"
    # One line on purpose: `sh -s` reads its script from the same stdin the watcher reads,
    # so nothing of the script may still be unread when the watcher starts. The watcher
    # stops podman itself (runuser's child): runuser, signalled, would wait 2 s and print
    # "Session terminated"; it ends by itself once podman does.
    return (f"{check}; exec 3<&0; {as_user(svc.user, inner)} & p=$!; "
            "{ read -r _ <&3; pkill -TERM -P $p 2>/dev/null || kill $p 2>/dev/null; } & w=$!; "
            "wait $p; s=$?; kill $w 2>/dev/null; exit $s\n")
