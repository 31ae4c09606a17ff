"""The verify run: the chain's checks in order, everything they read from a host in ONE
batched script per host (VPS and home in parallel, the laptop's own probes meanwhile), then
each check evaluated: pure, so tested with recorded readings.

The chain, in the order it is shown:

    laptop ─SSH─► VPS ─wg0─► home ─► container           (ssh, wireguard, tunnel, routing)
    player ─► VPS public:PORT ─DNAT─► wg0 ─► home firewall ─► container   (vps_firewall,
                                                                 home_firewall, container,
                                                                 ingress, client)
    container ─► slirp4netns/pasta ─► wg0 (policy rule) ─► VPS masquerade ─► internet (egress)

Written once here: a check whose host could not be reached is "not checked: no SSH to HOST";
a failing check whose dependency failed first says "fix `THAT` first".
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tunnelops.model.site import Site
from tunnelops.probes import MARK, Batch, Probe, Readings
from tunnelops.remote import Remote, RemoteError, Transcript
from tunnelops.verify import (
    client,
    container,
    egress,
    home_firewall,
    ingress,
    routing,
    ssh,
    tunnel,
    vps_firewall,
    wireguard,
)
from tunnelops.verify.check import DEFAULT_WHOAMI_URL, HOSTS, Check, Ctx, State
from tunnelops.verify.laptop import (
    LaptopState,
    TcpConnect,
    UdpSend,
    UdpSender,
    probe_ports,
    tcp_probe,
)
from tunnelops.verify.report import HostRun, Row, VerifyReport

LINKS = (ssh, wireguard, tunnel, routing, vps_firewall, home_firewall, container, ingress,
         client, egress)
SCRIPT_TIMEOUT_S = 30


def script_timeout() -> float:
    """How long a host's verify script may take: 30 s, or TUNNELOPS_TIMEOUT (as for every
    remote command) on hosts known to be slower, e.g. emulated VMs, where home's script alone
    takes ~25 s."""
    return float(os.environ.get("TUNNELOPS_TIMEOUT", SCRIPT_TIMEOUT_S))


def chain(ctx: Ctx) -> list[Check]:
    """Every check of the site, dependencies first, otherwise in the links' order."""
    declared = [c for link in LINKS for c in link.checks(ctx)]
    ids = [c.id for c in declared]
    if len(set(ids)) != len(ids):
        raise ValueError(f"two checks share an id: {sorted(i for i in ids if ids.count(i) > 1)}")
    placed: list[Check] = []
    pending = list(declared)
    while pending:
        ready = next((c for c in pending if all(d in placed or d not in declared
                                                for d in c.depends(ctx))), None)
        if ready is None:
            raise ValueError(f"checks depend on each other: {[c.id for c in pending]}")
        placed.append(ready)
        pending.remove(ready)
    return placed


def probes(ctx: Ctx, checks: Sequence[Check]) -> dict[str, list[Probe]]:
    """What each host must read (and what the laptop measures), for these checks."""
    out: dict[str, list[Probe]] = {h: [] for h in (*HOSTS, "laptop")}
    for c in checks:
        for host, needed in c.needs(ctx).items():
            out[host] += [p for p in needed if p not in out[host]]
    return out


def evaluate(ctx: Ctx, hosts: Mapping[str, Readings | None], laptop: LaptopState,
             checks: Sequence[Check] | None = None) -> list[Row]:
    """Every row, in chain order, from what was read. Pure: no I/O."""
    s = State(ctx, hosts, laptop)
    for check in checks if checks is not None else chain(ctx):
        down = [h for h in check.needs(ctx) if h in HOSTS and not s.reached(h)
                and h not in check.tolerates]
        if down:
            row = Row(check.id, check.name(s), None, f"not checked: no SSH to {ctx.dest(down[0])}")
        else:
            out = check.evaluate(s)
            hint = "" if out.ok else out.hint
            if out.ok is False:
                cause = next((d for d in check.depends(ctx)
                              if (r := s.rows.get(d.id)) is not None and r.ok is False), None)
                hint = f"fix `{cause.id}` first" if cause else hint
            row = Row(check.id, check.name(s), out.ok, out.measured, hint)
        s.rows[check.id] = row
    return list(s.rows.values())


def whoami(site: Site, override: str | None = None) -> str:
    return override or site.whoami_url or DEFAULT_WHOAMI_URL


@dataclass
class Measured:
    """What one verify run read: each host's script output (None: no SSH, or its script
    failed: then `laptop.ssh` says why), the laptop's own measurements, each host's cost."""

    outputs: dict[str, str | None]
    laptop: LaptopState
    runs: dict[str, HostRun]

    def readings(self, ctx: Ctx, checks: Sequence[Check]) -> dict[str, Readings | None]:
        batches = batches_for(ctx, checks)
        return {h: None if out is None else batches[h].parse(out)
                for h, out in self.outputs.items()}


def batches_for(ctx: Ctx, checks: Sequence[Check]) -> dict[str, Batch]:
    needed = probes(ctx, checks)
    return {h: Batch(needed[h]) for h in HOSTS}


def measure(ctx: Ctx, checks: Sequence[Check], remotes: dict[str, Remote]) -> Measured:
    """Run each host's script (in parallel) and the laptop's probes meanwhile."""
    return _measure(ctx.site, batches_for(ctx, checks), probes(ctx, checks)["laptop"], remotes)


def _measure(site: Site, batches: Mapping[str, Batch], laptop_probes: Sequence[Probe],
             remotes: dict[str, Remote]) -> Measured:
    """Each host's batch (hosts by name: "vps" and the homes), in parallel, and the
    laptop's probes meanwhile."""
    needed = {"laptop": list(laptop_probes)}
    hosts = tuple(batches)
    homes = [h for h in hosts if h != "vps"]
    done: set[str] = set()
    laptop = LaptopState()
    outputs: dict[str, str | None] = dict.fromkeys(hosts)
    runs = {h: HostRun(rm.dest) for h, rm in remotes.items()}
    before = {h: (rm.round_trips, rm.connects) for h, rm in remotes.items()}
    vps_ip = str(site.vps.public_ip) if site.vps.public_ip else None
    udp = [p.spec for p in needed["laptop"] if isinstance(p, UdpSend)]
    timeout = script_timeout()
    # The datagrams go on until home's script has read its counters (the sender is stopped
    # then), however long the host takes to get there: a fixed few seconds ran out before a
    # slow host had even made its counting table.
    sender = UdpSender(vps_ip, udp, limit_s=2 * timeout + 10) if vps_ip and udp else None

    def host(h: str) -> None:
        rm, hr, batch = remotes[h], runs[h], batches[h]
        start = time.monotonic()
        try:
            reused = rm.conn.is_connected
            rm.connect()
            laptop.ssh[h] = {"ms": (time.monotonic() - start) * 1000, "reused": reused}
            res = rm.run(batch.script(), timeout=timeout, what="verify")
            r = batch.parse(res.stdout) if MARK in res.stdout else None
            if r is not None and not r.complete:  # a cut output: once more
                res = rm.run(batch.script(), timeout=timeout, what="verify")
                r = batch.parse(res.stdout) if MARK in res.stdout else None
            if r is not None and r.complete:
                outputs[h] = res.stdout
            else:
                err = (res.stderr or res.stdout).strip().splitlines()
                laptop.ssh[h]["script_error"] = (
                    "its output was incomplete twice" if r is not None else
                    err[-1] if err else f"exit {res.exit}")
        except RemoteError as e:
            laptop.ssh.setdefault(h, {})["error"] = str(e)
            hr.error = str(e)
        finally:
            done.add(h)
            if h in homes and sender is not None and done >= set(homes):
                sender.stop.set()  # every home has read its counters
            hr.seconds = time.monotonic() - start

    tcp_jobs = [(p.spec, port) for p in needed["laptop"] if isinstance(p, TcpConnect)
                for port in probe_ports(p.spec)] if vps_ip else []
    try:
        with ThreadPoolExecutor(len(hosts) + 1 + len(tcp_jobs)) as pool:
            futures = [pool.submit(host, h) for h in hosts]
            if sender is not None:
                futures.append(pool.submit(sender.run))
            tcp_futures = [(spec, pool.submit(tcp_probe, vps_ip, port))
                           for spec, port in tcp_jobs]
            for f in futures:
                f.result()
            for spec, f in tcp_futures:
                laptop.tcp.setdefault(str(spec), []).append(f.result())
    finally:
        for h, rm in remotes.items():
            runs[h].round_trips = rm.round_trips - before[h][0]
            runs[h].connects = rm.connects - before[h][1]
    if sender is not None:
        laptop.udp_sent, laptop.udp_replies, laptop.udp_error = \
            sender.sent, sender.replies, sender.error
    return Measured(outputs, laptop, runs)


def context(site: Site, whoami_url: str | None = None) -> Ctx:
    """A run's context: its URL and its own name for the probe table at home."""
    return Ctx(site, whoami(site, whoami_url), f"tunnelops_probe_{secrets.token_hex(4)}")


def run(site: Site, *, whoami_url: str | None = None, trust_new: bool = False,
        transcript: Transcript | None = None,
        remotes: dict[str, Remote] | None = None) -> VerifyReport:
    """Measure everything (one script per host, laptop probes meanwhile), then evaluate.
    `remotes` ({"vps": Remote, "home": Remote}) are the caller's: used, counted, not closed;
    without them verify opens (and closes) one SSH connection per host."""
    t0 = time.monotonic()
    if len(site.homes) > 1:
        return run_homes(site, whoami_url=whoami_url, trust_new=trust_new,
                         transcript=transcript, remotes=remotes)
    ctx = context(site, whoami_url)
    checks = chain(ctx)
    owned = remotes is None
    remotes = remotes or {
        h: Remote(ctx.dest(h), ssh_config=site.ssh_config, known_hosts=site.known_hosts,
                  trust_new=trust_new, transcript=transcript, connect_timeout=5)
        for h in HOSTS}
    try:
        m = measure(ctx, checks, remotes)
    finally:
        if owned:
            for rm in remotes.values():
                rm.close()
    rows = evaluate(ctx, m.readings(ctx, checks), m.laptop, checks)
    return VerifyReport(site.name, rows, m.runs, time.monotonic() - t0, ctx.whoami_url)


# ---------------------------------------------------------------- a site of several homes
@dataclass(frozen=True)
class HomeChain:
    """One home's part of the site's verify: the site as that home sees it (its address,
    its services: Site.home_view) and the chain of checks of that view."""

    name: str
    ctx: Ctx
    checks: list[Check]


def home_chains(site: Site, whoami_url: str | None = None) -> list[HomeChain]:
    base = context(site, whoami_url)
    out = []
    for home in site.homes:
        ctx = Ctx(site.home_view(home), base.whoami_url, base.probe_table, len(site.homes))
        out.append(HomeChain(home.name, ctx, chain(ctx)))
    return out


def home_batches(chains: Sequence[HomeChain]) -> tuple[dict[str, Batch], list[Probe]]:
    """ONE batch per host: the VPS's reads everything every home's checks need of it, each
    home's its own; and what the laptop measures, for all of them."""
    vps: list[Probe] = []
    laptop: list[Probe] = []
    homes: dict[str, Batch] = {}
    for hc in chains:
        needed = probes(hc.ctx, hc.checks)
        vps += [p for p in needed["vps"] if p not in vps]
        laptop += [p for p in needed["laptop"] if p not in laptop]
        homes[hc.name] = Batch(needed["home"])
    return {"vps": Batch(vps), **homes}, laptop


def of_home(check: Check, ctx: Ctx) -> bool:
    """Is this check about the home (it reads it, or it is the home's own row)?"""
    return "home" in check.needs(ctx) or getattr(check, "host", None) == "home"


def merge_rows(per_home: Sequence[tuple[str, list[Row]]],
               home_ids: set[str] = frozenset()) -> list[Row]:  # type: ignore[assignment]
    """The rows of every home's chain as one list: a row of the VPS alone (HOME_IDS are the
    others) that every home has alike (SSH to it, its WireGuard interface) once; any other
    is its home's, named for it (`HOME: ...`, id `HOME:ID`), its hint's "fix `ID` first"
    pointing at its home's row."""
    counts: dict[str, list[Row]] = {}
    for _, rows in per_home:
        for r in rows:
            counts.setdefault(r.id, []).append(r)
    shared = {i for i, rs in counts.items() if i not in home_ids
              and len(rs) == len(per_home) and all(r == rs[0] for r in rs)}
    out: list[Row] = []
    seen: set[str] = set()
    for home, rows in per_home:
        for r in rows:
            if r.id in shared:
                if r.id not in seen:
                    seen.add(r.id)
                    out.append(r)
                continue
            hint = r.hint
            for i in counts:
                if i not in shared and f"fix `{i}` first" == hint:
                    hint = f"fix `{home}:{i}` first"
            out.append(Row(f"{home}:{r.id}", f"{home}: {r.name}", r.ok, r.measured, hint))
    return out


def run_homes(site: Site, *, whoami_url: str | None = None, trust_new: bool = False,
              transcript: Transcript | None = None,
              remotes: dict[str, Remote] | None = None) -> VerifyReport:
    """verify of a site of several homes: the hub and each home read in one script each
    (all in parallel), each home's chain evaluated through its view of the site."""
    t0 = time.monotonic()
    chains = home_chains(site, whoami_url)
    batches, laptop_probes = home_batches(chains)
    owned = remotes is None
    dests = {"vps": str(site.vps.host), **{h.name: str(h.host) for h in site.homes}}
    remotes = remotes or {
        h: Remote(d, ssh_config=site.ssh_config, known_hosts=site.known_hosts,
                  trust_new=trust_new, transcript=transcript, connect_timeout=5)
        for h, d in dests.items()}
    try:
        m = _measure(site, batches, laptop_probes, remotes)
    finally:
        if owned:
            for rm in remotes.values():
                rm.close()
    rows = evaluate_homes(chains, batches, m.outputs, m.laptop)
    return VerifyReport(site.name, rows, m.runs, time.monotonic() - t0,
                        chains[0].ctx.whoami_url)


def evaluate_homes(chains: Sequence[HomeChain], batches: Mapping[str, Batch],
                   outputs: Mapping[str, str | None], laptop: LaptopState) -> list[Row]:
    """Every home's chain evaluated on the VPS's readings and its own (pure), the rows
    merged (merge_rows)."""
    per_home = []
    home_ids: set[str] = set()
    for hc in chains:
        view = {"vps": outputs.get("vps"), "home": outputs.get(hc.name)}
        view_batches = {"vps": batches["vps"], "home": batches[hc.name]}
        readings = {h: None if out is None else view_batches[h].parse(out)
                    for h, out in view.items()}
        seen = dataclasses.replace(laptop, ssh={"vps": laptop.ssh.get("vps", {}),
                                                "home": laptop.ssh.get(hc.name, {})})
        per_home.append((hc.name, evaluate(hc.ctx, readings, seen, hc.checks)))
        home_ids |= {c.id for c in hc.checks if of_home(c, hc.ctx)}
    return merge_rows(per_home, home_ids)
