"""A host's changes applied, guarded: the changed steps in segments that end after each run
of guarded steps (changes.segments), one script each. After a segment with guards, a NEW
SSH connection must get through (the proof); the next segment's script then first keeps
what was proven (takes the guards' markers), unless their watchdog already put the host
back: then the host's part fails, saying the host restored itself. The last segment's
guards are kept by a confirmation of their own. A step that fails stops the host's part;
guarded changes applied before it are still proven and kept (left to their watchdog they
would be undone behind a re-run that finds them done). Guards a run that died left armed
are proven, then kept, by the next run (confirm_pending).

Round trips per segment: its script (1), and for guarded steps the proof (on the wire only:
no login, not a round trip of the count); the last segment's guards one confirmation (1)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
from tunnelops.probes import MARK
from tunnelops.sshlink import RemoteError

if TYPE_CHECKING:
    from tunnelops.remote import Remote
    from tunnelops.report import HostReport, Ui

CLEANUP_DIRS = ("/etc/wireguard", "/etc/tunnelops", "/etc/sysctl.d", "/etc", "/etc/awall",
                "/etc/awall/optional", "/etc/network/interfaces.d")


class HostFailed(Exception):
    """The host's part stops: its step results and its report's error already say why."""


@dataclass
class Applier:
    """Applies one host's plans, guarded; its report's step results (already recorded, one
    per plan) say what happened to each step."""

    role: str
    report: HostReport
    remote: Remote
    ui: Ui
    token: str  # the run's own guard markers

    def apply(self, plans: list[StepPlan], tail: str = "") -> str | None:
        """The changed steps of PLANS, segment by segment, TAIL at the end of the last
        script: that script's output (None: nothing to change). HostFailed or RemoteError
        when the host's part stopped; the steps not run then say why."""
        parts = segments(plans)
        if not parts:
            return None
        # more commands follow each of these (a confirmation, a segment, the check): each
        # one's channel is opened while the one before runs
        self.remote.keep_warm = True
        confirm: list[StepPlan] = []  # guarded steps the previous segment proved
        out = ""
        for i, seg in enumerate(parts):
            last = i == len(parts) - 1
            try:
                out = self.segment(seg, confirm, tail if last else "")
                guarded = [p for p in seg if p.guard]
                confirm = self.confirm(guarded, now=last) if guarded else []
            except (HostFailed, RemoteError) as e:
                later = {p.step for rest in parts[i + 1:] for p in rest}
                why = ("an earlier step failed" if isinstance(e, HostFailed)
                       else "the run stopped before it")
                for r in self.report.steps:
                    if r.step in later:
                        r.status = "failed"
                        r.notes.append(f"not run: {why}")
                raise
        return out

    def segment(self, pending: list[StepPlan], confirm: list[StepPlan], tail: str) -> str:
        """One script: these steps, after keeping what the previous segment proved (its
        guards' markers taken). Returns its output; raises HostFailed (step results say
        why) when it failed."""
        rep, remote = self.report, self.remote
        names = ", ".join(p.step for p in pending)
        self.ui.phase(self.role, "applying " + names)
        # TUNNELOPS_INTERRUPT=ROLE:STEP[:mid][,ROLE:STEP[:mid]] kills the remote script there
        # (tests only; one point per host)
        points = dict(x.split(":", 1) for x in
                      os.environ.get("TUNNELOPS_INTERRUPT", "").split(",") if ":" in x)
        script = apply_script(pending, cleanup_dirs=CLEANUP_DIRS,
                              interrupt=points.get(self.role), guard_token=self.token,
                              confirm=self.markers(confirm))
        res = remote.run(script + tail + "\n", what="applying " + names)
        if confirm and f"{MARK} {RESTORED}" in res.stdout:
            rep.error = self.restored(confirm)
            for p in pending:
                result = next(s for s in reversed(rep.steps) if s.step == p.step)
                result.status = "failed"
                result.notes.append("not run: the host put back the change before it")
            raise HostFailed
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
                self.confirm(guarded, now=True)
            raise HostFailed
        return res.stdout

    def markers(self, guarded: list[StepPlan]) -> tuple[str, ...]:
        return tuple(guard_marker(p.step, self.token) for p in guarded)

    def restored(self, guarded: list[StepPlan]) -> str:
        names = ", ".join(p.step for p in guarded)
        return (f"{self.report.dest}: SSH did not keep working after the {names} "
                "change: the host put its previous state back by itself; fix the cause, "
                "then re-run")

    def confirm(self, guarded: list[StepPlan], *, now: bool) -> list[StepPlan]:
        """Prove new SSH connections still get through; then keep the changes (their
        markers taken, unless the watchdog already put the host back: then fail), `now`, or
        leave that to the next segment's script (the steps are returned for it)."""
        names = ", ".join(p.step for p in guarded)
        self.ui.phase(self.role, f"checking SSH still works after the {names} change")
        remote = self.remote
        secs = max(p.guard.seconds for p in guarded if p.guard)
        try:
            # half the guard's time to get in (the rate limiter may admit us seconds later),
            # the other half left for the confirmation before the watchdog wakes
            remote.probe_new_connection(within=secs / 2,
                                        what=f"proving SSH after the {names} change")
        except RemoteError as e:
            raise RemoteError(
                f"SSH stopped working after the {names} change ({e}); the host restores its "
                f"previous state by itself within {secs}s: fix the cause, then re-run") \
                from None
        if now:
            res = remote.run(confirm_shell(self.markers(guarded)), timeout=15,
                             what=f"confirming the {names} change")
            if f"{MARK} {RESTORED}" in res.stdout:
                raise RemoteError(self.restored(guarded))
            return []
        return guarded

    def confirm_pending(self, markers: list[str]) -> None:
        """Guards a run left armed when it died before confirming them (we hold the lock:
        no live run owns them). Their watchdog would undo changes this run then finds done
        and keeps; so prove new SSH connections get through, then disarm them."""
        self.ui.phase(self.role, "confirming the firewall change of a run that died")
        try:
            self.remote.probe_new_connection(within=10)  # we hold the lock: no watchdog acts
        except RemoteError as e:
            raise RemoteError(f"SSH works only for connections made earlier ({e}): a firewall "
                              "change of a run that died blocks it; the host restores its "
                              "previous rules by itself within seconds: re-run then") from None
        # we hold the lock: their watchdog cannot be restoring now, so this always keeps them
        self.remote.run(confirm_shell([f"{GUARD_DIR}/{m}" for m in markers]),
                        timeout=15, what="confirming the change of a run that died")
