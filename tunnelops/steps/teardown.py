"""`inv teardown`: remove everything the site made on a host and put back what it edited,
from the host's facts like any other plan (so --dry-run shows it and a second run is a no-op).
Keys stay unless --purge-keys: a later bootstrap then keeps the same identity. Only what
tunnelops made goes (files it recorded or marked, never a directory tree); a service user it
created stays, with its home and data, unless --remove-users (and --delete-data).

Only the site's own: another site on the host (its record, steps.sites) keeps its table,
policies, ports, containers and users; what the sites share (the forwarding sysctl, the
originals of the files tunnelops edits, its state directories) goes with the last site. The
older tunnelops' fixed names go too when they were this site's (steps.legacy)."""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

from tunnelops.backends import firewalld, nftables, podman
from tunnelops.backends.awall import legacy_policies
from tunnelops.backends.originals import restore_shell
from tunnelops.backends.podman import USER_COMMENT
from tunnelops.backends.sysctl import ORIG_FORWARD
from tunnelops.backends.wgquick import clear_rules_shell
from tunnelops.changes import Change, CommandChange, FileChange, RemoveFile, StepPlan
from tunnelops.naming import HOST_FAMILY_TABLE, HOST_NFT_FILE, LEGACY
from tunnelops.render import nfthost
from tunnelops.render import podman as podman_render
from tunnelops.steps import legacy, safety, sites
from tunnelops.steps.context import (
    EDITED,
    NETWORK_ONLINE,
    NFT_BOOT_UNIT,
    SHARED,
    Ctx,
    owned_files,
)

STATE = ("/etc/tunnelops", "/var/lib/tunnelops", "/run/tunnelops")


def last(ctx: Ctx) -> bool:
    """Is this the host's last site? (No other record, and no older tunnelops' site that
    is not this one.)"""
    return not sites.others(ctx) and (legacy.ours(ctx) or not legacy.present(ctx.facts))


def _interface(ctx: Ctx) -> StepPlan:
    p, f, q = StepPlan("wireguard"), ctx.facts, shlex.quote
    iface = q(ctx.iface)
    conf = f.file(ctx.wg_conf)
    if not safety.ours(conf.content if conf else None):
        return p  # not our interface (or none): nothing of ours to take down
    if f.nm.get("exists"):
        p.changes.append(CommandChange(f"delete the NetworkManager profile {ctx.iface}",
                                       f"nmcli connection delete {iface} >/dev/null"))
    if f.wg:
        # Never `ifdown`: a stanza with `requires eth0` (the seed's, or an older
        # tunnelops') can take the WAN down with it (ifupdown-ng < 0.12). Deleting the link
        # is all ifdown would do for wg0; its stanza goes with the files.
        p.changes.append(CommandChange(
            f"take {ctx.iface} down",
            f"wg-quick down {iface} 2>/dev/null || ip link del {iface}"))
    if ctx.role == "home" and any(str(r.get("table")) == str(ctx.tunnel.route_table)
                                  for r in f.rules):
        p.changes.append(CommandChange(f"remove the policy rules to table "
                                       f"{ctx.tunnel.route_table}", clear_rules_shell(ctx)))
    return p


def _firewall(ctx: Ctx) -> StepPlan:
    p, f, n = StepPlan("firewall"), ctx.facts, ctx.names
    moved = legacy.ours(ctx)
    if f.nft_table is not None:
        p.changes.append(CommandChange(f"delete table {n.nft_family_table}",
                                       f"nft delete table {n.nft_family_table}"))
    if moved and f.nft_legacy is not None:
        p.changes.append(CommandChange(f"delete table {LEGACY.nft_family_table}",
                                       f"nft delete table {LEGACY.nft_family_table}"))
    if ctx.home is None:
        p.changes += _host_table(ctx)
    if f.file(NFT_BOOT_UNIT) is not None and f.systemd and last(ctx):  # its file: SHARED
        p.changes.append(CommandChange("disable tunnelops-nftables.service",
                                       "systemctl disable tunnelops-nftables.service "
                                       ">/dev/null 2>&1 || true"))
    ours = [x for x in f.awall_enabled if x.startswith(n.awall_policy(""))]
    ours += [x for x in legacy_policies(ctx) if x in f.awall_enabled] if moved else []
    if ours:
        p.changes.append(CommandChange(f"awall disable {' '.join(ours)}",
                                       "awall disable " + " ".join(map(shlex.quote, ours))))
    if f.firewalld.get("running"):
        zone = firewalld.zone_of(f.firewalld, ctx.iface, "permanent") \
            or firewalld.zone_of(f.firewalld, ctx.iface)
        if zone:
            z, i = shlex.quote(zone), shlex.quote(ctx.iface)
            p.changes.append(CommandChange(
                f"take {ctx.iface} out of firewalld zone {zone}",
                f"firewall-cmd -q --permanent --zone={z} --remove-interface={i} || true; "
                f"firewall-cmd -q --zone={z} --remove-interface={i} || true"))
        ports = firewalld.recorded_ports(ctx, moved)
        pzone = zone or f.firewalld.get("default", "public")
        if ports:
            z = shlex.quote(pzone)
            flags = " ".join(f"--remove-port={shlex.quote(x)}" for x in ports)
            p.changes.append(CommandChange(
                f"close {' '.join(ports)} in firewalld zone {pzone}",
                f"firewall-cmd -q --permanent --zone={z} {flags} || true; "
                f"firewall-cmd -q --zone={z} {flags} || true"))
        if ctx.home is None:
            p.changes += _vps_zone(ctx)
    return p


def _host_table(ctx: Ctx) -> list[Change]:
    """An nftables VPS's own table (render.nfthost): the last site deletes it (its file goes
    with the shared files); beside other sites only this site's elements leave it, live and
    in the file a boot loads."""
    f = ctx.facts
    old = f.file(HOST_NFT_FILE)
    if last(ctx):
        return [CommandChange(f"delete table {HOST_FAMILY_TABLE}",
                              f"nft delete table {HOST_FAMILY_TABLE}")] \
            if f.nft_host is not None else []
    out: list[Change] = []
    if old is not None:
        kept = nfthost.with_sites(old.content, sites.hub_sites(ctx, ours=False))
        if kept != old.content:
            out.append(FileChange(HOST_NFT_FILE, kept, old.content, mode=0o644))
    if f.nft_host is not None:
        mine = {"tunnels": ctx.iface, "wireguard": str(ctx.tunnel.listen_port)}
        theirs = nfthost.elements(sites.hub_sites(ctx, ours=False))
        live = f.nft_host_sets
        # deletions only: what the others have (or someone added by hand) stays
        out += nftables.host_element_changes(
            {k: [e for e in v if e[0] != mine.get(k) or e in theirs.get(k, [])]
             for k, v in live.items()}, live)
    return out


def _vps_zone(ctx: Ctx) -> list[CommandChange]:
    """A firewalld VPS: the site's forwards (to its subnet) and WireGuard port out of the
    zones, so another site's stay as they are (the last site's originals are put back too)."""
    out, fw, t = [], ctx.facts.firewalld, ctx.tunnel
    for kind, flag in (("permanent", "--permanent "), ("runtime", "")):
        for zone, info in sorted(fw.get(kind, {}).items()):
            z = shlex.quote(zone)
            for fp in info.get("forward-ports", []):
                to = dict(kv.split("=", 1) for kv in fp.split(":") if "=" in kv).get("toaddr")
                try:
                    mine = to is not None and ipaddress.ip_address(to) in t.subnet
                except ValueError:
                    mine = False
                if mine:
                    out.append(CommandChange(
                        f"stop forwarding {fp} in zone {zone} ({kind})",
                        f"firewall-cmd -q {flag}--zone={z} --remove-forward-port="
                        f"{shlex.quote(fp)} || true"))
            if f"{t.listen_port}/udp" in info.get("ports", []):
                out.append(CommandChange(
                    f"close WireGuard {t.listen_port}/udp in zone {zone} ({kind})",
                    f"firewall-cmd -q {flag}--zone={z} --remove-port={t.listen_port}/udp "
                    "|| true"))
    return out


def _user_units(ctx: Ctx) -> list[tuple[str, str, str]]:
    """(user, unit, file) of every service of this home whose systemd user unit tunnelops
    installed: the Quadlet file, or the tunnel drop-in of a `podman generate systemd` unit."""
    out = []
    for svc in ctx.services:
        home = f"/home/{svc.user}"
        quadlet = f"{home}/.config/containers/systemd/{svc.container_name}.container"
        dropin = podman.generated_dropin_path(home, svc)
        if ctx.facts.file(quadlet):
            out.append((svc.user, f"{svc.container_name}.service", quadlet))
        if ctx.facts.file(dropin):
            out.append((svc.user, f"container-{svc.container_name}.service", dropin))
    return out


def _containers(ctx: Ctx) -> StepPlan:
    p = StepPlan("services")
    # Units first: with the unit still loaded, systemd would start a removed container again
    # (Restart=always); a generated unit is also disabled and its file removed.
    for user, unit, _ in _user_units(ctx):
        u = shlex.quote(unit)
        extra = ""
        if unit.startswith("container-"):
            extra = (f"; systemctl --user disable {u} 2>/dev/null; "
                     f"rm -f .config/systemd/user/{u}")
        p.changes.append(CommandChange(
            f"stop {unit} of {user}",
            podman_render.as_user(user, f"systemctl --user stop {u}; systemctl --user "
                                        f"reset-failed {u} 2>/dev/null{extra}; :")))
    for user, info in ctx.facts.users.items():
        for c in info.get("containers", []):
            if podman.ours(ctx, user, c):
                name = (c.get("Names") or ["?"])[0]
                rm = f"podman rm -f -t 5 {shlex.quote(name)} >/dev/null"
                p.changes.append(CommandChange(f"remove container {name}",
                                               podman_render.as_user(user, rm)))
    return p


@dataclass(frozen=True)
class Options:
    purge_keys: bool = False  # the WireGuard keys too (a later bootstrap makes new ones)
    remove_users: bool = False  # service users tunnelops created (their home stays)
    delete_data: bool = False  # ... and their home, with the service's data in it


def _ours(ctx: Ctx, path: str, content: str) -> bool:
    return path in safety.recorded_files(ctx) or safety.ours(content)


def _files(ctx: Ctx, opts: Options) -> StepPlan:
    p, f, n = StepPlan("files"), ctx.facts, ctx.names
    alone = last(ctx)
    originals = {"/" + x.removeprefix("./").removesuffix(".absent") for x in f.originals}
    mine = [u for s in ctx.services for u in (s.user,)]
    # only what tunnelops made: recorded when it created the file, or carrying its marker;
    # the shared ones with the last site only; units of this home's services only
    units = {f"/home/{s.user}/.config/containers/systemd/{s.container_name}.container"
             for s in ctx.site.services if s.user in mine}
    for path in owned_files(ctx.site):
        ff = f.file(path)
        if ff is None or (path in SHARED and not alone):
            continue
        if path.endswith(".container") and path not in units:
            continue
        # under tunnelops's own directories, a file is tunnelops's
        if path.startswith(STATE) or _ours(ctx, path, ff.content):
            p.changes.append(RemoveFile(path, ff.content))
    if alone:
        for path in EDITED:  # no original saved (an older tunnelops): take out our lines only
            ff = f.file(path)
            if ff is not None and path not in originals and nftables.LEGACY_LINES[0] \
                    in ff.content:
                kept = nftables.without_lines(ff.content, nftables.LEGACY_LINES)
                p.changes.append(FileChange(path, kept, ff.content,
                                            mode=int(ff.mode or "644", 8)))
        if originals:
            p.changes.append(CommandChange(
                "put back the original " + ", ".join(sorted(originals)), restore_shell()))
        if any(o.startswith("/etc/firewalld/") for o in originals) and \
                f.firewalld.get("running"):
            p.post.append("firewall-cmd -q --reload")
        if f.ip_forward == "1":
            p.changes.append(CommandChange(
                "restore net.ipv4.ip_forward to its value before tunnelops",
                f"[ -s {ORIG_FORWARD} ] && sysctl -q -w net.ipv4.ip_forward=$(cat "
                f"{ORIG_FORWARD}) || true"))
    else:  # other sites stay: only this site's lines leave the files it shares with them
        ours = (*nftables.include_lines(n), *(nftables.LEGACY_LINES if legacy.ours(ctx) else ()))
        for path in nftables.CONF_PATHS:
            ff = f.file(path)
            if ff is not None and any(x in ff.content for x in ours[1::2]):
                p.changes.append(FileChange(path, nftables.without_lines(ff.content, ours),
                                            ff.content, mode=int(ff.mode or "644", 8)))
    if f.systemd:  # unit files and drop-ins removed above: the managers forget them
        if alone and f.file(NETWORK_ONLINE):
            p.post.append("systemctl daemon-reload")
        for user in sorted({user for user, _, _ in _user_units(ctx)}):
            p.post.append(podman_render.as_user(user, "systemctl --user daemon-reload"))
    p.changes += _records(ctx, opts, alone)
    if opts.purge_keys and f.key_exists:
        k, pub = shlex.quote(ctx.key_path), shlex.quote(ctx.pub_path)
        p.changes.append(CommandChange(f"remove the WireGuard keys {ctx.key_path}",
                                       f"rm -f {k} {pub}"))
        if alone and "dir /etc/wireguard" in f.created:
            # ours, and empty now: never a tree
            p.post.append("rmdir /etc/wireguard 2>/dev/null || true")
    present = f.state_dirs
    if alone and present:
        p.changes.append(CommandChange(f"remove {' '.join(present)}",
                                       "rm -rf " + " ".join(present)))
    elif not alone:
        p.post.append(f"rm -rf {shlex.quote(n.state)}")
    return p


def _records(ctx: Ctx, opts: Options, alone: bool = True) -> list[CommandChange]:
    """Undo what tunnelops recorded creating: lingering, a runtime dir, and (only when asked)
    the service users, whose home holds the service's data (a game's world save). With other
    sites on the host: only for users that none of them runs a service as."""
    out, emptied = [], []
    records = list(ctx.facts.created)
    theirs = {c.partition("/")[0] for o in sites.others(ctx) for c in o.containers}
    # users tunnelops made, known by their comment too: a plain teardown kept them (with their
    # data) but removed its records
    made = {u for u, info in ctx.facts.users.items()
            if info.get("uid") and info.get("comment") == USER_COMMENT}
    records += [f"user {u}" for u in sorted(made) if f"user {u}" not in records]
    for rec in records:
        kind, _, what = rec.partition(" ")
        w = shlex.quote(what)
        if kind in ("user", "linger", "runtime-dir") and what in theirs:
            continue
        if kind == "emptydir":  # made for a unit file: removed when nothing else is in it
            emptied.append(CommandChange(f"remove {what} (tunnelops made it)",
                                         f"rmdir {w} 2>/dev/null || true"))
            continue
        if kind not in ("user", "linger", "runtime-dir") and not alone:
            continue
        if kind == "enabled":  # the host's units (nftables' boot): with its last site
            out.append(CommandChange(f"disable {what} (tunnelops enabled it)",
                                     f"systemctl disable {w} >/dev/null 2>&1 || true"))
        elif kind == "user" and opts.remove_users:
            # podman's pause process (and a lingering user manager) keep the user busy
            # (each may fail: no logind in a container, nothing left to kill; set -e runs)
            stop = (f"loginctl terminate-user {w} 2>/dev/null || :; "
                    f"pkill -KILL -u {w} 2>/dev/null || :; "
                    f"n=0; while pgrep -u {w} >/dev/null 2>&1 && [ $n -lt 50 ]; do "
                    "sleep 0.1; n=$((n+1)); done; ")
            if opts.delete_data:
                out.append(CommandChange(
                    f"remove user {what} and its home with the service's data",
                    stop + f"userdel -r {w} 2>/dev/null || deluser --remove-home {w}"))
            else:
                out.append(CommandChange(
                    f"remove user {what} (its home and the service's data stay)",
                    stop + f"userdel {w} 2>/dev/null || deluser {w}"))
        elif kind == "linger":
            out.append(CommandChange(f"disable lingering for {what}",
                                     f"loginctl disable-linger {w}"))
        elif kind == "runtime-dir":
            out.append(CommandChange(f"remove /run/user of {what}",
                                     f"rm -rf /run/user/$(id -u {w})"))
    return out + emptied[::-1]  # the deepest directory first


def plan(ctx: Ctx, opts: Options | None = None) -> list[StepPlan]:
    opts = opts or Options()
    steps = [_containers(ctx)] if ctx.home is not None else []
    steps += [_interface(ctx), _firewall(ctx), _files(ctx, opts)]
    distro = ctx.facts.distro
    if distro and distro.vps_firewall == "awall" and any(s.changed for s in steps):
        steps[-1].post.append("awall activate --force")
    return steps
