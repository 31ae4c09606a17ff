"""Home's tunnel as a NetworkManager profile, the seed's way: `nmcli connection import type
wireguard` of a wg-quick style file assembled on the host, then the seed's patch (route table,
routing rules, no automatic default route) with `nmcli connection modify`.

The import file carries the peer (key, endpoint, AllowedIPs 0.0.0.0/0, keepalive): when it
changes the profile is re-imported; other settings are patched in place, only where they differ.
"""

from __future__ import annotations

import shlex

from tunnelops.backends import netguard, wglive
from tunnelops.changes import CommandChange, FileChange, StepPlan
from tunnelops.render import networkmanager as render
from tunnelops.render.wireguard import home_import_conf
from tunnelops.steps.context import Ctx


def profile_peers(keyfile_peers: str) -> list[wglive.WantedPeer]:
    """The peers of the profile as its keyfile stores them (facts `nm_peers`:
    `[wireguard-peer.KEY]`, `endpoint=`, `allowed-ips=A;B;`, `persistent-keepalive=`)."""
    out, key, kv = [], None, {}

    def flush() -> None:
        if key is not None:
            ips = frozenset(x for x in kv.get("allowed-ips", "").split(";") if x)
            ka = kv.get("persistent-keepalive")
            out.append(wglive.WantedPeer(key, ips, kv.get("endpoint"),
                                         int(ka) if ka and ka.isdigit() else 0))

    for line in keyfile_peers.splitlines():
        if line.startswith("[wireguard-peer."):
            flush()
            key, kv = line.strip()[len("[wireguard-peer."):-1], {}
        elif "=" in line and key is not None:
            k, _, v = line.partition("=")
            kv[k.strip()] = v.strip()
    flush()
    return out


def _as_profile(peers: list[wglive.WantedPeer]) -> set[wglive.WantedPeer]:
    """What the keyfile keeps of a peer: an unset keepalive is stored as none (0)."""
    return {wglive.WantedPeer(p.public_key, p.allowed_ips, p.endpoint, p.keepalive or 0)
            for p in peers}


def live_drift(ctx: Ctx, conf: str) -> tuple[list[str], list[str]]:
    """(WireGuard-level, IP-level) differences of the active device from the profile."""
    f, t = ctx.facts, ctx.tunnel
    wg = wglive.peer_drift(conf, f.wg)
    if why := wglive.mtu_drift(f, ctx.iface, wglive.wanted_mtu(t, "networkmanager", None)):
        wg.append(why)
    ip = wglive.routing_drift(f, t)
    want = f"{t.home_address}/{t.prefixlen}"
    if f.addrs and wglive.addresses(f, ctx.iface) != [want]:
        ip.append(f"addresses {', '.join(wglive.addresses(f, ctx.iface)) or '(none)'}, "
                  f"not {want}")
    return wg, ip


def _activation(ctx: Ctx, conf: str, profile_changed: bool) -> CommandChange | None:
    """How the device comes to match the profile.

    - a changed profile, or a device not active: `nmcli connection up` (activation builds
      the device from the profile; an active profile's changes only reach the device then,
      or through reapply);
    - the profile is right and active, but the device's WireGuard settings (peers, keys,
      endpoint, keepalive) or MTU were changed behind NetworkManager's back (`wg set`, `ip
      link`): re-activate too -- those are the link's configuration, which activation sets;
    - only addresses, routes or routing rules are off (`ip rule del`...): `nmcli device
      reapply`, which re-applies the applied connection to the device without taking it
      down; NetworkManager's D-Bus API documents it for exactly this, reverting external
      changes to the IP configuration."""
    name, q = ctx.iface, shlex.quote(ctx.iface)
    if profile_changed:
        return CommandChange(f"activate {name}", f"nmcli connection up {q}")
    if not ctx.facts.wg:
        return CommandChange(f"activate {name} (it is not active)", f"nmcli connection up {q}")
    wg, ip = live_drift(ctx, conf)
    if wg:
        return CommandChange(f"re-activate {name} ({'; '.join(wg + ip)})",
                             f"nmcli connection up {q}")
    if ip:
        return CommandChange(f"reapply {name}'s profile to the device ({'; '.join(ip)})",
                             f"nmcli device reapply {q}")
    return None


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
    # the profile's own peers (edited in its keyfile, or by nmcli) against the import file's
    peers_changed = exists and _as_profile(profile_peers(f.nm.get("peers", ""))) != \
        _as_profile(wglive.wanted_peers(conf))
    reimport = conf_changed or not exists or peers_changed
    current = f.nm.get("values", {}) if exists and not reimport else {}
    args = render.modify_args(current, desired)
    zone = f.nm.get("values", {}).get("connection.zone") if exists else None
    if reimport and zone:  # the re-imported profile keeps its firewalld zone binding
        args += ["connection.zone", zone]
    if reimport:
        why = " (its peer differs from the file)" if peers_changed and not conf_changed else ""
        p.changes.append(CommandChange(
            f"import {ctx.wg_conf} into NetworkManager as {name}{why}",
            (f"nmcli connection delete {q(name)} >/dev/null 2>&1 || true\n" if exists else "")
            + f"nmcli connection import type wireguard file {q(ctx.wg_conf)} >/dev/null"))
    if args:
        p.changes.append(CommandChange(
            f"patch {name}: " + ", ".join(args[0::2]),
            f"nmcli connection modify {q(name)} " + " ".join(q(a) for a in args),
            "\n".join(f"+ {k} = {v}" for k, v in zip(args[0::2], args[1::2], strict=True))))
    if activate and (up := _activation(ctx, conf, bool(p.changes))):
        p.changes.append(up)
    if p.changes:
        p.guard = netguard.networkmanager(ctx)
    p.notes.append("NetworkManager profile (nmcli import + patch)")
    return p
