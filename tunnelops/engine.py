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
Steps know nothing about the CLI; `ui` (any object with the Ui methods) shows progress.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tunnelops import facts as facts_mod
from tunnelops import prog
from tunnelops.backends import wglive
from tunnelops.changes import (
    GUARD_DIR,
    RESTORED,
    StepPlan,
    apply_script,
    confirm_shell,
    guard_marker,
    segments,
    step_outcomes,
    step_seconds,
)
from tunnelops.facts import FactProbes, HostFacts
from tunnelops.model import HUB, HomeSpec, Site
from tunnelops.probes import MARK, DirEntries, Ping, Probe, Readings, inline, sections
from tunnelops.remote import Remote, RemoteError, Transcript, Trip, for_site
from tunnelops.steps import home as home_steps
from tunnelops.steps import safety
from tunnelops.steps import teardown as teardown_steps
from tunnelops.steps import vps as vps_steps
from tunnelops.steps.context import Ctx, PlanError, managed_files

HANDSHAKE_MAX_AGE = 180
CLEANUP_DIRS = ("/etc/wireguard", "/etc/tunnelops", "/etc/sysctl.d", "/etc", "/etc/awall",
                "/etc/awall/optional", "/etc/network/interfaces.d")


class Ui:
    """What the engine tells whoever watches. The default says nothing."""

    def phase(self, role: str, text: str) -> None: ...


class _Phases(Ui):
    """Remembers each host's last phase (for Ctrl-C's message), then tells the real Ui."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui
        self.last: dict[str, str] = {}
        self.timeline: dict[str, list[tuple[float, str]]] = {}  # (time.time(), phase)

    def phase(self, role: str, text: str) -> None:
        self.last[role] = text
        self.timeline.setdefault(role, []).append((time.time(), text))
        self.ui.phase(role, text)


@dataclass
class StepResult:
    step: str
    status: str  # ok | changed | failed | would change
    changes: list[str] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None  # on the host, as its apply script measured it


@dataclass
class HostReport:
    role: str  # the host's name in the site: "vps" (the hub), or the home's name
    dest: str
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None
    round_trips: int = 0
    connects: int = 0
    seconds: float = 0.0
    facts: HostFacts | None = None
    connect_seconds: float = 0.0  # the SSH handshake
    trips: list[Trip] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (time.time(), phase)

    @property
    def host_seconds(self) -> float:
        """Spent by the scripts on the host, as the host counted it."""
        return sum(t.host or 0.0 for t in self.trips)

    @property
    def wire_seconds(self) -> float:
        """Spent between the laptop and the host: the handshake, and each round trip's
        seconds that were not the script's on the host."""
        return self.connect_seconds + sum(t.wire for t in self.trips)

    def count(self, status: str) -> int:
        return sum(1 for s in self.steps if s.status == status)

    @property
    def notes(self) -> list[str]:
        return [n for s in self.steps for n in s.notes]


@dataclass
class RunReport:
    hosts: dict[str, HostReport]
    dry_run: bool
    discovered: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(h.error is None and h.count("failed") == 0 for h in self.hosts.values())

    @property
    def failed(self) -> list[str]:
        """The hosts that failed, by name."""
        return [n for n, h in self.hosts.items() if h.error or h.count("failed")]


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


class _HostFailed(Exception):
    pass


def fact_probes(site: Site, home: HomeSpec | str | None = None) -> FactProbes:
    """What the facts of one host of the site read (one batch): the hub's (HOME None, or
    "vps"), or a home's (its HomeSpec; "home": the site's first)."""
    if isinstance(home, str):
        home = None if home == HUB else site.home(home) if home != "home" else site.homes[0]
    files, secret = managed_files(site)
    t = site.tunnel
    users = service_images(site, home) if home is not None else {}
    return facts_mod.probes(
        interface=t.interface, route_table=t.route_table,
        key_path=f"/etc/wireguard/{t.interface}.key", files=files, secret_files=secret,
        users=users, nm_connection=t.interface if home is not None else None)


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
        self.ui = self.phases = _Phases(ui or Ui())
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
        except _HostFailed:  # the step results and rep.error already say what failed
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
        fp = fact_probes(self.site, self.homes.get(role))
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
            self._confirm_pending(role, guards)
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
        self._apply(role, self._prep[role], tail=inline(self._read_back(role)))

    def _read_back(self, role: str) -> list[Probe]:
        """The facts the changed prepare steps can have changed."""
        fp = fact_probes(self.site, self.homes.get(role))
        changed = {p.step for p in self._prep[role] if p.changed}
        return [*((fp.pubkey,) if "keys" in changed else ()),
                *((fp.commands,) if "packages" in changed else ()),
                *(p for u in fp.users if changed & {"service-users", "images"}
                  for p in (u.account, u.podman, u.containers))]

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

    def _apply(self, role: str, plans: list[StepPlan], tail: str = "") -> None:
        rep = self.reports[role]
        for p in plans:
            status = "ok" if not p.changed else ("would change" if self.dry_run else "changed")
            rep.steps.append(StepResult(p.step, status, [c.summary for c in p.changes],
                                        [d for c in p.changes if (d := c.diff())], p.notes))
        parts = segments(plans)
        if self.dry_run or not parts:
            return
        # more commands follow each of these (a confirmation, a segment, the check): each
        # one's channel is opened while the one before runs
        self.remotes[role].keep_warm = True
        confirm: list[StepPlan] = []  # guarded steps the previous segment proved
        out = ""
        for i, seg in enumerate(parts):
            last = i == len(parts) - 1
            try:
                out = self._apply_segment(role, seg, confirm, tail if last else "")
                guarded = [p for p in seg if p.guard]
                confirm = self._confirm_guards(role, guarded, now=last) if guarded else []
            except (_HostFailed, RemoteError) as e:
                later = {p.step for rest in parts[i + 1:] for p in rest}
                why = ("an earlier step failed" if isinstance(e, _HostFailed)
                       else "the run stopped before it")
                for r in rep.steps:
                    if r.step in later:
                        r.status = "failed"
                        r.notes.append(f"not run: {why}")
                raise
        if tail:  # what prepare made, read back by its own script: no extra round trip
            r, f = Readings(sections(out)), self.ctx[role].facts
            fp = fact_probes(self.site, self.homes.get(role))
            if fp.pubkey in r:
                f.public_key = r[fp.pubkey].strip() or f.public_key
                f.key_exists = True
            if fp.commands in r:
                f.commands = frozenset(r[fp.commands])
            for u in fp.users:
                if u.account in r:
                    f.users[u.account.user] = facts_mod.user_facts(u, r)

    def _apply_segment(self, role: str, pending: list[StepPlan], confirm: list[StepPlan],
                       tail: str) -> str:
        """One script: these steps, after keeping what the previous segment proved (its
        guards' markers taken). Returns its output; raises _HostFailed (step results say
        why) when it failed."""
        rep, remote = self.reports[role], self.remotes[role]
        names = ", ".join(p.step for p in pending)
        self.ui.phase(role, "applying " + names)
        # TUNNELOPS_INTERRUPT=ROLE:STEP[:mid][,ROLE:STEP[:mid]] kills the remote script there
        # (tests only; one point per host)
        points = dict(x.split(":", 1) for x in
                      os.environ.get("TUNNELOPS_INTERRUPT", "").split(",") if ":" in x)
        script = apply_script(pending, cleanup_dirs=CLEANUP_DIRS, interrupt=points.get(role),
                              guard_token=self.guard_token, confirm=self._markers(confirm))
        res = remote.run(script + tail + "\n", what="applying " + names)
        if confirm and f"{MARK} {RESTORED}" in res.stdout:
            rep.error = self._restored(role, confirm)
            for p in pending:
                result = next(s for s in reversed(rep.steps) if s.step == p.step)
                result.status = "failed"
                result.notes.append("not run: the host put back the change before it")
            raise _HostFailed
        outcomes = step_outcomes(res.stdout)
        timed = step_seconds(res.stdout)
        for p in pending:
            result = next(s for s in reversed(rep.steps) if s.step == p.step)
            result.seconds = timed.get(p.step, result.seconds)
        # No step failed, yet the script did not end well: it was killed (or the host went
        # down) mid-way, or after its last step, before the rest of its output (the tail).
        died = res.exit != 0 and "failed" not in outcomes.values()
        if died:
            done = [p.step for p in pending if outcomes.get(p.step) == "ok"]
            how = "was killed" if res.exit < 0 else f"stopped (exit status {res.exit})"
            rep.error = (f"{rep.dest}: the script applying {names} {how} "
                         + (f"after step {done[-1]}" if done else "before any step ended")
                         + ": re-run (every step is idempotent)")
        failed = died
        for p in pending:
            result = next(s for s in reversed(rep.steps) if s.step == p.step)
            if outcomes.get(p.step) != "ok":
                result.status = "failed"
                err = [x for x in res.stderr.strip().splitlines() if x.strip()]
                hint = err[-1] if err else f"exit status {res.exit}"
                if p.step not in outcomes:
                    hint = ("not run: the script stopped before it" if died
                            else "not run: an earlier step failed")
                result.notes.append(hint)
                if not failed:
                    rep.error = f"{rep.dest}: step {p.step} failed: {hint}"
                    if p.guard:
                        rep.error += (f"; the host puts back its previous state within "
                                      f"{p.guard.seconds}s")
                failed = True
        # Guarded changes that were applied are confirmed even when a later step failed:
        # left to their watchdog they would be undone behind a re-run that found them done.
        # A guarded step that failed is not: its watchdog puts the host back as it was.
        guarded = [p for p in pending if p.guard and outcomes.get(p.step) == "ok"]
        if failed:
            if guarded:
                self._confirm_guards(role, guarded, now=True)
            raise _HostFailed
        return res.stdout

    def _markers(self, guarded: list[StepPlan]) -> tuple[str, ...]:
        return tuple(guard_marker(p.step, self.guard_token) for p in guarded)

    def _restored(self, role: str, guarded: list[StepPlan]) -> str:
        names = ", ".join(p.step for p in guarded)
        return (f"{self.reports[role].dest}: SSH did not keep working after the {names} "
                "change: the host put its previous state back by itself; fix the cause, "
                "then re-run")

    def _confirm_guards(self, role: str, guarded: list[StepPlan], *,
                        now: bool) -> list[StepPlan]:
        """Prove new SSH connections still get through; then keep the changes (their
        markers taken, unless the watchdog already put the host back: then fail), `now`, or
        leave that to the next segment's script (the steps are returned for it)."""
        names = ", ".join(p.step for p in guarded)
        self.ui.phase(role, f"checking SSH still works after the {names} change")
        remote = self.remotes[role]
        secs = max(p.guard.seconds for p in guarded if p.guard)
        try:
            remote.probe_new_connection(what=f"proving SSH after the {names} change")
        except RemoteError as e:
            raise RemoteError(
                f"SSH stopped working after the {names} change ({e}); the host restores its "
                f"previous state by itself within {secs}s: fix the cause, then re-run") \
                from None
        if now:
            res = remote.run(confirm_shell(self._markers(guarded)), timeout=15,
                             what=f"confirming the {names} change")
            if f"{MARK} {RESTORED}" in res.stdout:
                raise RemoteError(self._restored(role, guarded))
            return []
        return guarded

    def _confirm_pending(self, role: str, markers: list[str]) -> None:
        """Guards a run left armed when it died before confirming them (we hold the lock:
        no live run owns them). Their watchdog would undo changes this run then finds done
        and keeps; so prove new SSH connections get through, then disarm them."""
        self.ui.phase(role, "confirming the firewall change of a run that died")
        try:
            self.remotes[role].probe_new_connection()
        except RemoteError as e:
            raise RemoteError(f"SSH works only for connections made earlier ({e}): a firewall "
                              "change of a run that died blocks it; the host restores its "
                              "previous rules by itself within seconds: re-run then") from None
        # we hold the lock: their watchdog cannot be restoring now, so this always keeps them
        self.remotes[role].run(confirm_shell([f"{GUARD_DIR}/{m}" for m in markers]),
                               timeout=15, what="confirming the change of a run that died")

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
