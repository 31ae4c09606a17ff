"""Benchmark: a no-op run of a converged site, where its time goes, as ratios to the floor.

    sudo .venv/bin/python -m tests.bench.noop [--rtt-ms 50] [--repeat 5] [--name N --index I]
                                              [--keep] [--sections] [--compare] [--vm]

Brings up a lab (default instance labperf/12) with WAN latency on the VPS link, bootstraps
it, then times `tunnelops bootstrap` on the converged site beside the floor (see
breakdown.py). --sections: each facts section's own time on the host (each run as its own
command), beside the batched script's. --compare: the same facts one remote command each
over a reused connection (per-fact: the way module-per-task tools work), and a new SSH
connection for each (per-conn, home only: the VPS rate-limits new SSH, as it should).
Cold and add-port runs: tests.bench.cold, tests.bench.add_port.
"""

from __future__ import annotations

import statistics
import time

from rich.console import Console
from rich.table import Table

from tests.bench.breakdown import arguments, bench_lab, measure, tunnelops, unlimit
from tunnelops.engine import Run, fact_probes
from tunnelops.inventory.read import load
from tunnelops.lab import Lab
from tunnelops.probes import Batch
from tunnelops.remote import Remote


def _batched(run: Run, role: str) -> str:
    """The facts script a run sends (without the lock that wraps it)."""
    return fact_probes(run.site, role).batch([]).script()


def _fact_commands(run: Run, role: str) -> list[tuple[str, str]]:
    """The batched facts cut into its probes: (name, one command per probe)."""
    return [(p.key[:40], Batch([p]).script()) for p in fact_probes(run.site, role).all()]


def sections(lab: Lab) -> None:
    """Each facts section's time on the host, run alone, against the batched script's."""
    site = load(lab.inventory)
    run = Run(site)
    table = Table(title="facts: each section's seconds on the host, run alone (top 8), "
                        "and the batched script's", title_justify="left")
    for col in ("host", "section", "host s"):
        table.add_column(col)
    for role in ("vps", "home"):
        unlimit(lab)
        remote = run.remotes[role]
        try:
            remote.run(_batched(run, role), what="batched")
            timed = []
            for name, cmd in _fact_commands(run, role):
                remote.run(cmd, what=name)
                timed.append((remote.trips[-1].host or 0.0, name))
        finally:
            remote.close()
        batched = remote.trips[0].host or 0.0
        for secs, name in sorted(timed, reverse=True)[:8]:
            table.add_row(role, name, f"{secs:.3f}")
        table.add_row(role, f"[bold]sum of {len(timed)} sections",
                      f"{sum(s for s, _ in timed):.3f}")
        table.add_row(role, "[bold]the batched script", f"{batched:.3f}")
    Console(width=120).print(table)


def compare(lab: Lab, repeat: int) -> None:
    site = load(lab.inventory)
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(repeat):
        t0, t1, _prof = tunnelops(lab, "bootstrap")
        r = results.setdefault("tunnelops", {"seconds": [], "round trips": []})
        r["seconds"].append(t1 - t0)
        r["round trips"].append(_prof["runs"][0]["hosts"]["vps"]["round_trips"])
        for mode in ("per-fact", "per-conn"):
            run = Run(site)
            t0, trips = time.monotonic(), 0
            roles = ("vps", "home") if mode == "per-fact" else ("home",)
            unlimit(lab)
            for role in roles:
                remote = run.remotes[role]
                for _name, cmd in _fact_commands(run, role):
                    if mode == "per-conn":
                        remote.close()
                        remote = Remote(remote.dest, ssh_config=site.ssh_config,
                                        known_hosts=site.known_hosts)
                    remote.run(cmd)
                    trips += 1
                remote.close()
            r = results.setdefault(mode, {"seconds": [], "round trips": []})
            r["seconds"].append(time.monotonic() - t0)
            r["round trips"].append(trips / len(roles))
    base = statistics.median(results["tunnelops"]["seconds"])
    table = Table(title=f"no-op run vs. the same facts per command (median of {repeat})",
                  title_justify="left")
    for col in ("approach", "commands / host", "seconds", "× tunnelops"):
        table.add_column(col)
    for name, r in results.items():
        secs = statistics.median(r["seconds"])
        table.add_row(name, f"{statistics.median(r['round trips']):.0f}", f"{secs:.2f}",
                      f"{secs / base:.1f}×")
    Console(width=120).print(table)


def main() -> None:
    args = arguments(__doc__.split("\n\n")[0],
                     **{"--sections": {"action": "store_true",
                                       "help": "each facts section's time on the host"},
                        "--compare": {"action": "store_true",
                                      "help": "against per-fact and per-connection commands"}})
    with bench_lab(args) as lab:
        tunnelops(lab, "bootstrap")  # converge (the first run after up does the work)
        measure(lab, args, "no-op bootstrap", lambda: None, ("bootstrap",),
                ok=lambda out: "changed=0" in out and "changed=1" not in out)
        if args.sections:
            sections(lab)
        if args.compare:
            compare(lab, args.repeat)


if __name__ == "__main__":
    main()
