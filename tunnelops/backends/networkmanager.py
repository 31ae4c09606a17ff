"""Home's tunnel as a NetworkManager profile, the seed's way: `nmcli connection import type
wireguard` of a wg-quick style file assembled on the host, then the seed's patch (route table,
routing rules, no automatic default route) with `nmcli connection modify`.

The import file carries the peer (key, endpoint, AllowedIPs 0.0.0.0/0, keepalive): when it
changes the profile is re-imported; other settings are patched in place, only where they differ.
"""

from __future__ import annotations

import shlex

from tunnelops.backends import netguard
from tunnelops.changes import CommandChange, FileChange, StepPlan
from tunnelops.render import networkmanager as render
from tunnelops.render.wireguard import home_import_conf
from tunnelops.steps.context import Ctx


def plan(ctx: Ctx, vps_public_key: str, endpoint: str, *, activate: bool = True) -> StepPlan:
    p = StepPlan("wireguard")
    f, name = ctx.facts, ctx.iface
    q = shlex.quote
    conf = home_import_conf(ctx.tunnel, vps_public_key, endpoint)
    old = f.file(ctx.wg_conf)
    conf_changed = old is None or old.content != conf
    if conf_changed:
        p.changes.append(FileChange(ctx.wg_conf, conf, old.content if old else None,
                                    mode=0o600, key_path=ctx.key_path))
    desired = render.home_settings(ctx.tunnel)
    exists = bool(f.nm.get("exists"))
    current = f.nm.get("values", {}) if exists and not conf_changed else {}
    args = render.modify_args(current, desired)
    zone = f.nm.get("values", {}).get("connection.zone") if exists else None
    if conf_changed and zone:  # the re-imported profile keeps its firewalld zone binding
        args += ["connection.zone", zone]
    if conf_changed or not exists:
        p.changes.append(CommandChange(
            f"import {ctx.wg_conf} into NetworkManager as {name}",
            (f"nmcli connection delete {q(name)} >/dev/null 2>&1 || true\n" if exists else "")
            + f"nmcli connection import type wireguard file {q(ctx.wg_conf)} >/dev/null"))
    if args:
        p.changes.append(CommandChange(
            f"patch {name}: " + ", ".join(args[0::2]),
            f"nmcli connection modify {q(name)} " + " ".join(q(a) for a in args),
            "\n".join(f"+ {k} = {v}" for k, v in zip(args[0::2], args[1::2], strict=True))))
    if activate and p.changes:
        p.changes.append(CommandChange(f"activate {name}", f"nmcli connection up {q(name)}"))
    if p.changes:
        p.guard = netguard.networkmanager(ctx)
    p.notes.append("NetworkManager profile (nmcli import + patch)")
    return p
