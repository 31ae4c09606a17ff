"""The run: facts → plan → apply → check, on the hub (the VPS) and every home, all in
parallel wherever they don't depend on each other. The key exchange is the one join: a star,
each home's public key into the VPS's peers, the VPS's key into each home.

A home that fails (unreachable, refused, a step that fails) stops only its own part: the
VPS and the other homes go on, and the VPS keeps that home's peer as it has it. A VPS that
fails stops every home before anything is configured (there is nothing to serve them
through), and so does the failure of every home (there is nothing to serve: a site with one
home whose home cannot be reached leaves its VPS untouched too); teardown is each host's
own.

Round trips per host, counted by Remote:
  lock and facts (1: one script)              a converged site: nothing else (changed=0)
  + prepare (1: packages, keys)               only when something is missing
  + apply (1) + guard confirm (1)            only when something differs (the guard first
                                              proves a NEW connection still gets an SSH banner)
  + check (1: facts again, plan must be empty) only after changes
  + confirm (1)                               only when a run that died left a firewall
                                              change unconfirmed (after the same proof)
The changes are applied guarded, in segments (guarded.py); what the run tells, as it goes
and at its end, is report.py's. Steps know nothing about the CLI; `ui` (any object with the
Ui methods) shows progress.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tunnelops import facts as facts_mod
from tunnelops import prog
from tunnelops.backends import wglive
from tunnelops.changes import GUARD_DIR, StepPlan
from tunnelops.facts import FactProbes, HostFacts
from tunnelops.guarded import Applier, HostFailed
from tunnelops.model import HUB, HomeSpec, Site
from tunnelops.probes import DirEntries, Ping, Probe, Readings, inline, sections
from tunnelops.remote import Remote, RemoteError, Transcript, for_site
from tunnelops.report import HostReport, Phases, RunReport, StepResult, Ui
from tunnelops.steps import home as home_steps
from tunnelops.steps import safety
from tunnelops.steps import teardown as teardown_steps
from tunnelops.steps import vps as vps_steps
from tunnelops.steps.context import Ctx, PlanError, managed_files

HANDSHAKE_MAX_AGE = 180


def service_images(site: Site, home: HomeSpec | None = None) -> dict[str, list[str]]:
    """Each service user and the images of its services (facts read them as that user):
    HOME's own first, then every other user of the site (a service that moved away from
    this home leaves a container behind under its user)."""
    out: dict[str, list[str]] = {}
    mine = site.services if home is None else site.services_of(home)
    for s in (*mine, *(x for x in site.services if x not in mine)):
        out.setdefault(s.user, [])
        if s.image not in out[s.user] and s in mine:
            out[s.user].append(s.image)
    return dict(sorted(out.items()))


def fact_probes(site: Site, home: HomeSpec | str | None = None, *,
                keep: bool = False) -> FactProbes:
    """What the facts of one host of the site read (one batch): the hub's (HOME None, or
    "vps"), or a home's (its HomeSpec; "home": the site's first). KEEP: see facts.probes."""
    if isinstance(home, str):
        home = None if home == HUB else site.home(home) if home != "home" else site.homes[0]
    files, secret = managed_files(site)
    t = site.tunnel
    users = service_images(site, home) if home is not None else {}
    return facts_mod.probes(
        interface=t.interface, route_table=t.route_table,
        key_path=f"/etc/wireguard/{t.interface}.key", files=files, secret_files=secret,
        users=users, nm_connection=t.interface if home is not None else None, keep=keep)


class Run:
    def __init__(self, site: Site, *, dry_run: bool = False, trust_new: bool = False,
                 transcript: Transcript | None = None, ui: Ui | None = None,
                 guard_seconds: int = 20, inventory_path: str = "the inventory",
                 ask_password: Callable[[str], str] | None = None,
                 remotes: dict[str, Remote] | None = None, teardown: bool = False,
                 teardown_opts: teardown_steps.Options | None = None,
                 expect_changes: bool = False) -> None:
        self.site, self.dry_run = site, dry_run
        # known to change the hosts (add-port, teardown): the first apply's channel is
        # opened while the facts are gathered, as every later one is (Remote.keep_warm)
        self.expect_changes = expect_changes and not dry_run
        self.ui = self.phases = Phases(ui or Ui())
        self.teardown = teardown
        self.teardown_opts = teardown_opts or teardown_steps.Options()
        self.guard_seconds, self.src = guard_seconds, inventory_path
        # the hosts by name: the hub, then each home in the site's order
        self.homes: dict[str, HomeSpec] = {h.name: h for h in site.homes}
        self.hosts: tuple[str, ...] = (HUB, *self.homes)
        self.remotes = remotes or for_site(site, trust_new=trust_new, transcript=transcript,
                                           ask_password=ask_password, dry_run=dry_run)
        self.reports = {r: HostReport(r, self.remotes[r].dest) for r in self.hosts}
        self.ctx: dict[str, Ctx] = {}
        self.guard_token = secrets.token_hex(6)  # this run's own guard markers
        self._prep: dict[str, list[StepPlan]] = {}
        self._configured: dict[str, list[StepPlan]] = {}

    # ------------------------------------------------------------------ helpers
    def _kind(self, host: str) -> str:
        return "vps" if host == HUB else "home"

    def _live(self, host: str) -> bool:
        return self.reports[host].error is None

    def _both(self, fn: Callable[[str], None], hosts: tuple[str, ...] | None = None) -> None:
        """Run fn(host) for each live host in parallel; a failure stops only that host.
        Ctrl-C stops waiting at once: the connections are closed under the threads."""
        live = [r for r in (hosts or self.hosts) if self._live(r)]
        if not live:
            return
        pool = ThreadPoolExecutor(len(live))
        try:
            futures = {r: pool.submit(self._guarded, fn, r) for r in live}
            for f in futures.values():
                f.result()
        except KeyboardInterrupt:
            for remote in self.remotes.values():
                remote.close()
            raise
        finally:
            pool.shutdown(wait=False)

    def _guarded(self, fn: Callable[[str], None], role: str) -> None:
        try:
            fn(role)
        except HostFailed:  # the step results and rep.error already say what failed
            self.ui.phase(role, "[red]failed")
        except (RemoteError, PlanError, facts_mod.FactsError) as e:
            rep = self.reports[role]
            msg = str(e)
            rep.error = msg if msg.startswith(rep.dest) else f"{rep.dest}: {msg}"
            self.ui.phase(role, "[red]failed")

    def _gather(self, role: str, extra: list[Probe] | None = None, *, lock: bool = False,
                what: str = "gathering facts") -> tuple[HostFacts, Readings]:
        """The host's facts (one round trip), and what EXTRA probes read in the same one;
        with lock, read by the script that takes the host lock, in the same round trip (the
        lock is then held until the run ends)."""
        fp = fact_probes(self.site, self.homes.get(role), keep=not self.dry_run)
        batch = fp.batch(extra or [])
        remote, script = self.remotes[role], batch.script()
        res = (remote.run_locked(script, token=self.guard_token, what=what) if lock
               else remote.run(script, what=what))
        readings = batch.parse(res.stdout)
        f = facts_mod.read(fp, readings)
        if f.uid != 0:
            raise PlanError("commands do not run as root: log in as root or give the user "
                            "passwordless sudo (or a sudo password)")
        return f, readings

    # ------------------------------------------------------------------ phases
    def _facts(self, role: str) -> None:
        self.ui.phase(role, "connecting")
        remote = self.remotes[role]
        remote.connect()
        remote.keep_warm = self.expect_changes
        self.ui.phase(role, "taking the host lock, gathering facts")
        markers = DirEntries(GUARD_DIR, "guard.*")
        f, readings = self._gather(role, [markers], lock=True)
        # guards a run that died left armed (not those being undone or kept right now)
        guards = [m for m in readings[markers] if not m.endswith((".undo", ".kept"))]
        if guards and not self.dry_run:
            self._applier(role).confirm_pending(guards)
        self.reports[role].facts = f
        self.ctx[role] = Ctx(self.site, self._kind(role), f, guard_seconds=self.guard_seconds,
                             home=self.homes.get(role))

    def _plan_prepare(self, role: str) -> None:
        """Pure: what prepare would do, and whether this host can be served at all (a
        supported distribution, a VPS public address, nothing of another site's taken)."""
        self.ui.phase(role, "planning")
        ctx = self.ctx[role]
        if ctx.home is None:  # its WAN first: the site records' checks compare it
            ctx.vps_public_ip, ctx.wan_interface = vps_steps.discover(ctx, self.src)
        safety.check(ctx)
        self._prep[role] = (vps_steps if ctx.home is None else home_steps).prepare(ctx)

    def _prepare(self, role: str) -> None:
        """Packages, keys, service users and images: what every later step needs, before
        anything on any host is configured; then what it changed is read back (same
        round trip): only that (a user's Podman is read as that user: ~0.1-0.3 s)."""
        tail = inline(self._read_back(role))
        out = self._apply(role, self._prep[role], tail=tail)
        if tail and out is not None:  # read back by its own script: no extra round trip
            self._took(role, out)

    def _read_back(self, role: str) -> list[Probe]:
        """The facts the changed prepare steps can have changed."""
        fp = fact_probes(self.site, self.homes.get(role), keep=not self.dry_run)
        changed = {p.step for p in self._prep[role] if p.changed}
        return [*((fp.pubkey,) if "keys" in changed else ()),
                *((fp.commands,) if "packages" in changed else ()),
                *(p for u in fp.users if changed & {"service-users", "images"}
                  for p in (u.account, u.podman, u.containers))]

    def _took(self, role: str, out: str) -> None:
        """The facts read back by prepare's script (in OUT), over those gathered before."""
        r, f = Readings(sections(out)), self.ctx[role].facts
        fp = fact_probes(self.site, self.homes.get(role), keep=not self.dry_run)
        if fp.pubkey in r:
            f.public_key = r[fp.pubkey].strip() or f.public_key
            f.key_exists = True
        if fp.commands in r:
            f.commands = frozenset(r[fp.commands])
        for u in fp.users:
            if u.account in r:
                f.users[u.account.user] = facts_mod.user_facts(u, r)

    def _plans(self, ctx: Ctx) -> list[StepPlan]:
        if self.teardown:
            return teardown_steps.plan(ctx, self.teardown_opts)
        return (vps_steps if ctx.home is None else home_steps).configure(ctx)

    def _plan_configure(self, role: str) -> None:
        """Pure: the host's whole plan, refused if it would overwrite what is not ours."""
        self.ui.phase(role, "planning")
        plans = self._plans(self.ctx[role])
        if not self.teardown:
            safety.check_files(self.ctx[role], plans)
        self._configured[role] = plans

    def _configure(self, role: str) -> None:
        self._apply(role, self._configured[role])

    def _applier(self, role: str) -> Applier:
        return Applier(role, self.reports[role], self.remotes[role], self.ui, self.guard_token)

    def _apply(self, role: str, plans: list[StepPlan], tail: str = "") -> str | None:
        """Each step's result recorded; then, unless a dry run, the changed steps applied,
        guarded (guarded.Applier), TAIL at the end of the last script: its output (None:
        no script ran)."""
        rep = self.reports[role]
        for p in plans:
            status = "ok" if not p.changed else ("would change" if self.dry_run else "changed")
            rep.steps.append(StepResult(p.step, status, [c.summary for c in p.changes],
                                        [d for c in p.changes if (d := c.diff())], p.notes))
        if self.dry_run:
            return None
        return self._applier(role).apply(plans, tail)

    def _check(self, role: str) -> None:
        """After changes: facts again; the plan must now be empty and the tunnel alive."""
        self.ui.phase(role, "checking")
        self.remotes[role].keep_warm = False  # the last command: none to prepare for
        ctx = self.ctx[role]
        t = self.site.tunnel
        # the first reply is the proof: up to 3 tries of 1 s each, not 3 pings always (0.6 s
        # at least, on the cold path's last round trip)
        ping = Ping(str(t.vps_address), count=3, wait=1, first_reply=True,
                    rehandshake_on=t.interface)
        tunnel = ctx.home is not None and not self.teardown
        f, readings = self._gather(role, [ping] if tunnel else [], what="checking")
        new = Ctx(self.site, ctx.role, f, ctx.peer_public_key, ctx.vps_public_ip,
                  ctx.wan_interface, guard_seconds=self.guard_seconds, home=ctx.home,
                  peer_keys=ctx.peer_keys)
        left = [p for p in self._plans(new) if p.changed]
        rep = self.reports[role]
        for p in left:
            for s in rep.steps:
                if s.step == p.step:
                    s.status = "failed"
                    s.notes.append("check: still differs after apply: "
                                   + "; ".join(c.summary for c in p.changes))
            rep.error = rep.error or f"{rep.dest}: step {p.step} did not take effect"
        if tunnel and not readings[ping].get("received"):
            self._fail_step(role, "wireguard", f"no answer from {t.vps_address} through the "
                            f"tunnel: run {prog.cmd('verify')} to find the broken link")
        self.reports[role].facts = f

    def _liveness(self, role: str) -> None:
        """On a run that changed nothing, the facts already gathered are the check -- unless
        they show no recent handshake: a tunnel brought up by a run that died before its
        check may not have handshaken yet. Then the check's ping decides (one round trip)."""
        f = self.reports[role].facts
        if role == HUB or f is None or self.teardown:
            return
        now = f.now
        peers = f.wg.get("peers", [])
        hs = max((p["latest_handshake"] for p in peers), default=0)
        if not peers or not hs or (now and now - hs > HANDSHAKE_MAX_AGE):
            self._check(role)

    def _fail_step(self, role: str, step: str, why: str) -> None:
        rep = self.reports[role]
        for s in rep.steps:
            if s.step == step:
                s.status = "failed"
                s.notes.append(why)
        rep.error = rep.error or f"{rep.dest}: step {step}: {why}"

    # ------------------------------------------------------------------ the run
    def execute(self) -> RunReport:
        t0 = time.monotonic()
        starts = {r: time.monotonic() for r in self.hosts}
        try:
            if self.teardown:
                self._teardown()
            else:
                self._converge()
        finally:
            for r in self.hosts:
                rep, remote = self.reports[r], self.remotes[r]
                remote.close()
                rep.round_trips, rep.connects = remote.round_trips, remote.connects
                rep.connect_seconds, rep.trips = remote.connect_seconds, list(remote.trips)
                # from its handshake, if that began before the run (connect_soon)
                rep.seconds = time.monotonic() - min(starts[r], remote.started or starts[r])
                self.ui.phase(r, "[red]failed" if rep.error else "done")
                rep.timeline = self.phases.timeline.get(r, [])
        discovered = {}
        if HUB in self.ctx and self.ctx[HUB].vps_public_ip:
            discovered = {"public_ip": self.ctx[HUB].vps_public_ip,
                          "wan_interface": self.ctx[HUB].wan_interface or ""}
        return RunReport(self.reports, self.dry_run, discovered, time.monotonic() - t0)

    def _going(self) -> bool:
        """The VPS and at least one home still live: something to serve, and a way to."""
        return self._live(HUB) and any(self._live(h) for h in self.homes)

    def _converge(self) -> None:
        self._both(self._facts)
        # The VPS reachable and servable first: a VPS that cannot be reached, refuses us or
        # cannot be served (no public IPv4, unknown distribution) leaves every home untouched
        # too (no packages, no keys written). A home that cannot leaves only itself.
        if not self._going():
            return
        self._keys()  # what each end has now: the site records' checks compare them
        self._both(self._plan_prepare)
        if not self._going():
            return
        self._both(self._prepare)
        if not self._going():
            return
        self._keys()
        self._both(self._plan_configure)
        if not self._going():
            return
        self._both(self._configure)
        changed = any(s.status == "changed" for r in self.hosts for s in self.reports[r].steps)
        if not self.dry_run:
            self._both(self._check if changed else self._liveness)

    def _teardown(self) -> None:
        """Each host on its own: a host that cannot be reached stops only its teardown."""
        self._both(self._facts)
        self._both(self._plan_configure)
        self._both(self._configure)
        if not self.dry_run and any(s.status == "changed" for r in self.hosts
                                    for s in self.reports[r].steps):
            self._both(self._check)

    def _keys(self) -> None:
        """The key exchange, a star: each home's public key into the VPS's peers, the VPS's
        key (and address) into each home. A home that failed keeps the peer the VPS has for
        it (its part stops; the VPS does not drop it)."""
        hub = self.ctx[HUB]
        for name in self.homes:
            ctx = self.ctx.get(name)
            live = ctx is not None and self._live(name)
            hub.peer_keys[name] = ctx.facts.public_key if live and ctx else self._kept(name)
            if ctx is not None:
                ctx.peer_public_key = hub.facts.public_key
                ctx.vps_public_ip, ctx.wan_interface = hub.vps_public_ip, hub.wan_interface

    def _kept(self, home: str) -> str | None:
        hub = self.ctx[HUB]
        return wglive.peer_at(hub.facts, hub.wg_conf, self.site.address(home))
