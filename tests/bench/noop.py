"""Benchmark: a no-op run of a converged site, in SSH round trips and seconds, as ratios.

Compares, against one lab with WAN latency on the VPS link (default 50 ms RTT):
  tunnelops   the real `bootstrap` on a converged site (lock + one batched facts command)
  per-fact    the same facts, one remote command each over a reused connection (the way
              module-per-task tools work: 10-20 commands per host on this setup)
  per-conn    the same facts, a new SSH connection for each (naive scripts), home only:
              the VPS rate-limits new SSH connections (the seed's conn-limit), as it should
It reports ratios, not absolute times: this machine is noisy, so no test asserts on them.

    sudo .venv/bin/python -m tests.bench.noop [--rtt-ms 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tunnelops import commands
from tunnelops.engine import Run, fact_probes
from tunnelops.inventory import load
from tunnelops.lab import Lab, Topology
from tunnelops.probes import Batch
from tunnelops.remote import Remote


def _fact_commands(run: Run, role: str) -> list[str]:
    """The batched facts cut into its probes: one command per fact."""
    return [Batch([p]).script() for p in fact_probes(run.site, role).all()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtt-ms", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    lab = Lab(Topology("labperf", 12))
    lab.down()
    lab.up(rtt_ms=args.rtt_ms)
    try:
        opts = commands.Options(inventory_dir=Path("inventory"), site="labperf",
                                console=Console(file=io.StringIO()))
        commands.bootstrap(opts, None, None)
        site = load(lab.inventory)
        results: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.repeat):
            t0 = time.monotonic()
            report = commands.bootstrap(opts, None, None)
            assert report.ok and all(h.count("changed") == 0 for h in report.hosts.values())
            r = results.setdefault("tunnelops", {"seconds": [], "round trips": []})
            r["seconds"].append(time.monotonic() - t0)
            r["round trips"].append(report.hosts["vps"].round_trips)
            for mode in ("per-fact", "per-conn"):
                run = Run(site)
                t0, trips = time.monotonic(), 0
                roles = ("vps", "home") if mode == "per-fact" else ("home",)
                for role in roles:
                    remote = run.remotes[role]
                    for cmd in _fact_commands(run, role):
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
        table = Table(title=f"no-op run, WAN RTT {args.rtt_ms} ms to the VPS "
                            f"(median of {args.repeat})")
        for col in ("approach", "commands / host", "seconds", "× tunnelops"):
            table.add_column(col)
        for name, r in results.items():
            secs = statistics.median(r["seconds"])
            table.add_row(name, f"{statistics.median(r['round trips']):.0f}", f"{secs:.2f}",
                          f"{secs / base:.1f}×")
        Console().print(table)
    finally:
        lab.down()


if __name__ == "__main__":
    main()
