"""Refusals before any change (issue 16): what the facts already show would cut SSH or
destroy what tunnelops did not make. Pure: facts in, a PlanError (one line, with the fix) out.

- the tunnel interface exists and is not tunnelops's (`interface = "eth0"` would have been
  deleted and re-made as a tunnel: the host's uplink gone);
- the tunnel's config file or NetworkManager profile exists and is not tunnelops's (the
  user's own tunnel and key, overwritten);
- a file it would write exists and is not tunnelops's (`check_files`, on the whole plan);
- the tunnel subnet overlaps an address or a route of the host (a home LAN of 192.168.2.0/24
  with the seed's default subnet sends home's SSH replies into table 201 and out of wg0);
- anything another site on the host holds, by its record (steps.sites).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from tunnelops.changes import FileChange, StepPlan
from tunnelops.model.service import SYSTEM_UID_MAX
from tunnelops.steps import sites
from tunnelops.steps.context import Ctx, PlanError

MANAGED = "Managed by tunnelops"
# candidate subnets suggested in the overlap error, the first that is free on the host
_SUGGEST = ("10.213.7.0/24", "172.31.213.0/24", "192.168.213.0/24", "10.99.213.0/24")


def ours(text: str | None) -> bool:
    return text is not None and MANAGED in text


def check(ctx: Ctx) -> None:
    _interface(ctx)
    sites.check(ctx)  # another site's interface, port, subnet...: named by its record
    _subnet(ctx)
    _users(ctx)
    _ports(ctx)


# what holds a published port for a rootless container: its port forwarder
_FORWARDERS = {"rootlessport", "rootlessport-child", "pasta", "pasta.avx2", "slirp4netns",
               "conmon"}
OPEN_FILES_MARGIN = 256  # what rootless Podman's forwarder needs beside one file per port


def _ports(ctx: Ctx) -> None:
    """Each service port free at home (or held by the service's own running container), and
    no more ports than rootless Podman can hold open (one file each, up to the user's hard
    `nofile`: 30000-49999 failed in rootlessport after the old container was gone)."""
    f = ctx.facts
    for svc in ctx.services:
        info = f.users.get(svc.user, {})
        ours = any(c.get("Labels", {}).get("tunnelops.service") == svc.name
                   and c.get("State") == "running" for c in info.get("containers", []))
        for spec in svc.ports:
            for lst in f.listening:
                if lst.proto == spec.proto and spec.contains(lst.port) \
                        and not (ours and lst.process in _FORWARDERS):
                    who = f"{lst.process} (pid {lst.pid})" if lst.pid else lst.process
                    raise PlanError(f"port {lst.port}/{lst.proto} of service {svc.name!r} is "
                                    f"taken at home by {who}: stop it, or give the service "
                                    "another port")
        count = sum(p.count for p in svc.ports)
        limit = info.get("nofile", "")
        if limit.isdigit() and count > int(limit) - OPEN_FILES_MARGIN:
            raise PlanError(f"service {svc.name!r} publishes {count} ports: rootless Podman "
                            f"holds an open file per port and user {svc.user} may hold "
                            f"{limit} (ulimit -Hn): publish at most "
                            f"{int(limit) - OPEN_FILES_MARGIN}, or raise the user's nofile "
                            "limit")


def _users(ctx: Ctx) -> None:
    """A rootless service never runs as a system account (uid < 1000) unless asked."""
    for svc in ctx.services:
        uid = ctx.facts.users.get(svc.user, {}).get("uid", "")
        if uid.isdigit() and int(uid) <= SYSTEM_UID_MAX and not svc.allow_system_user:
            raise PlanError(f"user {svc.user!r} (uid {uid}) of service {svc.name!r} is a "
                            "system account: use an ordinary user (tunnelops creates it), or "
                            "set allow_system_user = true in its [[services]] entry")


def _interface(ctx: Ctx) -> None:
    f, i = ctx.facts, ctx.iface
    conf = f.file(ctx.wg_conf)
    if conf is not None and not ours(conf.content):
        raise PlanError(f"{ctx.wg_conf} exists and was not written by tunnelops (a tunnel of "
                        f"yours?): set [tunnel] interface to a free name, e.g. "
                        f"{_free_name(ctx)}, or move the file away")
    mine = conf is not None
    link = f.wg.get("link")
    if link is not None and not mine:
        kind = (link.get("linkinfo") or {}).get("info_kind", "")
        raise PlanError(f"interface {i} already exists and is not tunnelops's"
                        + (f" (a {kind} link)" if kind else "")
                        + f": set [tunnel] interface to a free name, e.g. {_free_name(ctx)}")
    if f.nm.get("exists") and not mine:
        raise PlanError(f"a NetworkManager connection {i} exists and is not tunnelops's: set "
                        f"[tunnel] interface to a free name, e.g. {_free_name(ctx)}, or "
                        f"delete it (nmcli connection delete {i})")


def _free_name(ctx: Ctx) -> str:
    used = {a.get("ifname") for a in ctx.facts.addrs}
    return next(f"wg{n}" for n in range(1, 100) if f"wg{n}" not in used
                and f"wg{n}" != ctx.iface)


def _host_networks(ctx: Ctx) -> Iterator[tuple[str, ipaddress.IPv4Network]]:
    """(what, network) of every IPv4 address and main-table route not on the tunnel."""
    for link in ctx.facts.addrs:
        if link.get("ifname") == ctx.iface:
            continue
        for a in link.get("addr_info", []):
            if a.get("family", "inet") == "inet" and a.get("local"):
                net = ipaddress.ip_interface(f"{a['local']}/{a.get('prefixlen', 32)}").network
                yield f"{link.get('ifname')} {a['local']}/{a.get('prefixlen', 32)}", net
    for r in ctx.facts.main_routes:
        dst, dev = r.get("dst", ""), r.get("dev")
        if dst in ("", "default") or dev == ctx.iface:
            continue
        try:
            net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            yield f"a route to {dst} via {dev}", net


def _subnet(ctx: Ctx) -> None:
    t = ctx.tunnel
    nets = list(_host_networks(ctx))
    for what, net in nets:
        if net.overlaps(t.subnet) and not net.is_loopback:
            free = next((s for s in _SUGGEST
                         if not any(n.overlaps(ipaddress.ip_network(s)) for _, n in nets)),
                        _SUGGEST[0])
            raise PlanError(f"the tunnel subnet {t.subnet} overlaps {what} on this host: "
                            f"traffic to it (SSH replies included) would go into the tunnel; "
                            f"set [tunnel] subnet to a free range, e.g. subnet = \"{free}\"")


def recorded_files(ctx: Ctx) -> set[str]:
    """Files tunnelops created on this host (its record of them)."""
    return {rec[5:] for rec in ctx.facts.created if rec.startswith("file ")}


def check_files(ctx: Ctx, plans: list[StepPlan]) -> None:
    """No file we did not make is overwritten: files tunnelops only edits (a line of ours
    in /etc/nftables.conf) are saved first and put back by teardown (`backup`); files that
    are its own carry its marker or are in its record."""
    mine = recorded_files(ctx)
    for p in plans:
        for c in p.changes:
            if (isinstance(c, FileChange) and c.old is not None and not c.backup
                    and not ours(c.old) and c.path not in mine
                    and not c.path.startswith(("/etc/tunnelops/", "/var/lib/tunnelops/"))):
                raise PlanError(f"{c.path} exists and was not written by tunnelops (step "
                                f"{p.step}): move it away (teardown will not restore it), "
                                "then re-run")
