"""The record of which site made what on a host, and the refusals it makes possible.

Each site leaves a record on each of its hosts (/var/lib/tunnelops/sites/IFACE.json: its
name and its Claim, tunnelops.claims), written before anything else is configured, so a run
that dies still leaves it. A run reads every record of the host with its facts and, before
any change (safety.check), refuses:

- another site on the same interface: the record names another site, and none of the
  tunnel's current peers (the homes' keys on the VPS, the VPS's key at home) is among the
  record's. Site files that are copies of one deployment (another file name, another
  known_hosts, a variant a test makes) name the same interface and the same peers: they
  are the same site, and the record keeps the name it was made with;
- a claim that collides with another site's (its listen port, subnet, a public port; at
  home its routing table, rule priorities, ports, containers);
- the fixed names of an older tunnelops (steps.legacy) when they are not this site's.

Teardown removes the site's record last; the host's shared files go with the last record.
"""

from __future__ import annotations

import dataclasses

from tunnelops.changes import FileChange, StepPlan
from tunnelops.claims import Claim, conflict, home_claim, hub_claim
from tunnelops.render.nfthost import HubSite
from tunnelops.steps import legacy
from tunnelops.steps.context import Ctx, PlanError


def claim(ctx: Ctx) -> Claim:
    """What this site holds on this host now (its peers as far as they are known). A copy
    of the site (its record's peers are its own) keeps the name the record was made with:
    copies of one deployment converge to the same record."""
    if ctx.home is None:
        mine = hub_claim(ctx.site, tuple(p.public_key for p in ctx.peers), ctx.wan_interface)
    else:
        peers = (ctx.peer_public_key,) if ctx.peer_public_key else ()
        mine = home_claim(ctx.site, ctx.home.name, peers)
    rec = own(ctx)
    if rec is not None and rec.site != mine.site and set(rec.peers) & set(mine.peers):
        mine = dataclasses.replace(mine, site=rec.site)
    if rec is not None and mine.kind == "hub" and not mine.wan:
        mine = dataclasses.replace(mine, wan=rec.wan)  # not known on this run: as recorded
    return mine


def records(ctx: Ctx) -> dict[str, Claim]:
    """Every site's record on this host, by interface (unreadable ones ignored)."""
    out = {}
    for text in ctx.facts.sites.values():
        c = Claim.from_json(text)
        if c is not None:
            out[c.iface] = c
    return out


def own(ctx: Ctx) -> Claim | None:
    return records(ctx).get(ctx.iface)


def others(ctx: Ctx) -> list[Claim]:
    return [c for iface, c in sorted(records(ctx).items()) if iface != ctx.iface]


def _where(ctx: Ctx) -> str:
    return "this VPS" if ctx.home is None else "this home"


def check(ctx: Ctx) -> None:
    """Refused before any change: see the module's docstring."""
    mine, rec = claim(ctx), own(ctx)
    if rec is not None and rec.site != ctx.site.name and rec.peers \
            and not set(rec.peers) & set(mine.peers):
        raise PlanError(f"{ctx.iface} on {_where(ctx)} is site {rec.site!r}'s (another "
                        f"inventory's: its peers are not this site's): give this site its own "
                        f"[tunnel] interface, e.g. {_free(ctx)}, or tear site {rec.site!r} "
                        "down first")
    if rec is None and (old := legacy.present(ctx.facts)) and not legacy.ours(ctx):
        raise PlanError(f"{_where(ctx)} has the site of an older tunnelops ({', '.join(old)}),"
                        f" and {ctx.iface} is not its interface: run that site's bootstrap "
                        "first (it moves it to names of its own), then this one")
    for theirs in others(ctx):
        if (c := conflict(mine, theirs)) is not None:
            what, fix = c
            raise PlanError(f"{what} is site {theirs.site!r}'s ({theirs.iface}) on "
                            f"{_where(ctx)}: {fix}")
        firewalld = ctx.home is None and ctx.facts.firewalld.get("running")
        if firewalld and theirs.client_ip and theirs.client_ip != mine.client_ip:
            raise PlanError(f"client_ip = {mine.client_ip!r}, but site {theirs.site!r} "
                            f"({theirs.iface}) on this VPS has {theirs.client_ip!r}, and "
                            "firewalld's trusted zone (which masquerades for \"snat\") is "
                            f"the host's: set [site] client_ip = \"{theirs.client_ip}\"")


def hub_sites(ctx: Ctx, *, ours: bool = True) -> list[HubSite]:
    """Every site the VPS's own table serves (render.nfthost): this one (unless OURS is
    false: its teardown) and the others its records name."""
    claims = [*([claim(ctx)] if ours else []), *(c for c in others(ctx) if c.kind == "hub")]
    return sorted(HubSite(c.iface, c.listen_port or 0, c.site) for c in claims)


def _free(ctx: Ctx) -> str:
    used = set(records(ctx)) | {a.get("ifname") for a in ctx.facts.addrs}
    return next(f"wg{n}" for n in range(1, 100) if f"wg{n}" not in used)


def plan(ctx: Ctx) -> StepPlan:
    """The site's record, before anything else is configured."""
    p = StepPlan("site")
    path, want = ctx.names.record, claim(ctx).to_json()
    old = ctx.facts.file(path)
    if old is None or old.content != want:
        p.changes.append(FileChange(path, want, old.content if old else None))
    return p
