"""Dead man's switches for network changes (issue 16): the tunnel interface, its addresses,
policy rules and routes, the NetworkManager profile, the forwarding sysctl.

Each backend's step that touches them carries one of these guards: the files it may write are
saved before the change with whether the interface was up; unless the laptop then proves that
a NEW SSH connection gets through, the host takes the new interface down and brings the old
one back as it was (or leaves none, if there was none). Such a change can cut SSH: a tunnel
subnet that swallows the route back to the laptop, rules that send SSH replies into table 201,
or the user's own SSH reaching the host through the tunnel.
"""

from __future__ import annotations

import shlex

from tunnelops.changes import SNAPSHOT_DIR, Guard, restore_files, snapshot_files
from tunnelops.steps.context import Ctx

NM_DIR = "/etc/NetworkManager/system-connections"


def _state(step: str) -> str:
    return shlex.quote(f"{SNAPSHOT_DIR}/{step}")


def _was_up(step: str, iface: str) -> str:
    return f"if ip link show {shlex.quote(iface)} >/dev/null 2>&1; then : > {_state(step)}/up; fi"


def wg_quick(ctx: Ctx, clear_rules: str, step: str = "wireguard") -> Guard:
    """wg-quick: down with the new config, the old config back, up again if it was up."""
    i, d = shlex.quote(ctx.iface), _state(step)
    files = [ctx.wg_conf]
    snapshot = [snapshot_files(step, files), _was_up(step, ctx.iface)]
    restore = [f"wg-quick down {i} >/dev/null 2>&1 || ip link del {i} 2>/dev/null",
               clear_rules, restore_files(step, files),
               f"if [ -e {d}/up ]; then wg-quick up {i}; fi"]
    if ctx.facts.systemd:
        snapshot.append(f"if systemctl -q is-enabled wg-quick@{i} 2>/dev/null; then "
                        f": > {d}/enabled; fi")
        restore.append(f"[ -e {d}/enabled ] || systemctl disable wg-quick@{i} 2>/dev/null")
    return Guard("; ".join(snapshot), "; ".join(x for x in restore if x),
                 seconds=ctx.guard_seconds)


def networkmanager(ctx: Ctx, step: str = "wireguard") -> Guard:
    """NetworkManager: the new profile deleted, the old keyfile (if any) loaded again, and
    activated again if it was active."""
    i, d = shlex.quote(ctx.iface), _state(step)
    keyfile = f"{NM_DIR}/{ctx.iface}.nmconnection"
    files = [ctx.wg_conf, keyfile]
    snapshot = [snapshot_files(step, files),
                f"if nmcli -t -f GENERAL.STATE connection show {i} 2>/dev/null "
                f"| grep -q activated; then : > {d}/up; fi"]
    restore = [f"nmcli connection delete {i} >/dev/null 2>&1", restore_files(step, files),
               f"if [ -e {d}/1 ]; then nmcli connection load {shlex.quote(keyfile)}; "
               f"[ ! -e {d}/up ] || nmcli connection up {i}; fi"]
    return Guard("; ".join(snapshot), "; ".join(restore), seconds=ctx.guard_seconds)


def ifupdown(ctx: Ctx, paths: list[str], step: str = "wireguard") -> Guard:
    """ifupdown-ng: the link deleted (never `ifdown`, which may cascade to the WAN link its
    stanza requires), the old stanza and config back, and up again if it was up."""
    i, d = shlex.quote(ctx.iface), _state(step)
    snapshot = [snapshot_files(step, paths), _was_up(step, ctx.iface)]
    restore = [f"ip link del {i} 2>/dev/null", restore_files(step, paths),
               f"if [ -e {d}/up ]; then ifup {i}; fi"]
    return Guard("; ".join(snapshot), "; ".join(restore), seconds=ctx.guard_seconds)


def sysctl(ctx: Ctx, path: str, step: str = "forwarding") -> Guard:
    """The forwarding sysctl: its runtime value and the drop-in file as they were."""
    d = _state(step)
    snapshot = [snapshot_files(step, [path]),
                f"cat /proc/sys/net/ipv4/ip_forward > {d}/ip_forward"]
    restore = [restore_files(step, [path]),
               f"sysctl -q -w net.ipv4.ip_forward=\"$(cat {d}/ip_forward)\""]
    return Guard("; ".join(snapshot), "; ".join(restore), seconds=ctx.guard_seconds)
