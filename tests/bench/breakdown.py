"""Where a tunnelops run's time goes, against a lab with WAN latency, as ratios to the floor.

The floor is measured in the same run, beside every measured command: a bare
`ssh -F <lab ssh_config> HOST true` to both hosts at once and `python -c 'import tunnelops'`
(the interpreter's start); floor = python + the slower ssh. A run is the real `tunnelops`
command in a new process (TUNNELOPS_PROFILE: it writes its own marks and each host's
phases and round trips), split into:

  interpreter    the process's start until tunnelops' first import
  imports        until main(): what the command line needs at module level
  command line   parsing, the inventory, the site (no SSH yet)
  run's imports  the engine and the console, imported once the handshakes are under way
  HOST connect   the SSH handshake
  HOST ...       each round trip by what it was, split into its seconds on the host (the
                 script's own, from /proc/uptime) and on the wire; each proof that a new
                 SSH connection gets a banner (`proving SSH after ...`: all on the wire, not
                 a round trip of the count); `rest`: planning (pure) and waiting for the
                 other host
  report         the recap
  exit           the interpreter's exit

Figures are medians over --repeat runs; each ratio is the median of (figure / the floor
measured just before it), since the machine's load moves both. Benchmarks report; they
assert nothing. The VPS's SSH rate limiter (burst 3, 9/minute) would drop the floor's and
the runs' connections: its set is flushed (inside the lab, not over SSH) before each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tunnelops.lab import Lab, Topology
from tunnelops.naming import HOST_FAMILY_TABLE

PROJECT = Path(__file__).resolve().parents[2]
ROLES = ("vps", "home")


def arguments(doc: str, **extra: object) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rtt-ms", type=int, default=50, help="WAN RTT to the VPS (default 50)")
    ap.add_argument("--repeat", type=int, default=5, help="measured runs (default 5)")
    ap.add_argument("--name", default=os.environ.get("TUNNELOPS_BENCH_LAB", "labperf"),
                    help="lab instance name (default $TUNNELOPS_BENCH_LAB or labperf)")
    ap.add_argument("--index", type=int,
                    default=int(os.environ.get("TUNNELOPS_BENCH_INDEX", "12")),
                    help="lab instance index (default $TUNNELOPS_BENCH_INDEX or 12)")
    ap.add_argument("--vm", action="store_true",
                    help="the VM tier (qemu VMs, as `inv lab.up --vm`; no added RTT: the\n"
                         "emulated hosts are the cost); pick --name/--index of your own")
    ap.add_argument("--keep", action="store_true",
                    help="use the instance if it is up, and leave it up")
    ap.add_argument("--against", metavar="DIR",
                    help="also measure the tunnelops package in DIR (e.g. an older tree with\n"
                         "tunnelops/profile.py), alternating with this one, same floor")
    for flag, kw in extra.items():
        ap.add_argument(flag, **kw)  # type: ignore[arg-type]
    return ap.parse_args()


@contextmanager
def bench_lab(args: argparse.Namespace) -> Iterator[Lab]:
    if args.vm:
        from tunnelops.lab.vm import VmLab

        lab: Lab = VmLab(Topology(args.name, args.index))
        args.rtt_ms = 0
        os.environ.setdefault("TUNNELOPS_TIMEOUT", "600")  # emulated hosts: seconds a script
    else:
        lab = Lab(Topology(args.name, args.index))
    if not args.keep:
        lab.down()
    up = lab.up(rtt_ms=args.rtt_ms)
    if "already_up" in up and not args.vm:
        have = json.loads((lab.state / "up.json").read_text()).get("rtt_ms")
        if have != args.rtt_ms:
            raise SystemExit(f"lab {args.name} is up with {have} ms RTT, not {args.rtt_ms}: "
                             "take it down or drop --keep")
    try:
        yield lab
    finally:
        if not args.keep:
            lab.down()


def unlimit(lab: Lab) -> None:
    """Forget the VPS's SSH rate limiter's recent connections (none before a bootstrap)."""
    family, table = HOST_FAMILY_TABLE.split()
    lab.exec("vps", ["nft", "flush", "set", family, table, "ssh_new4"], check=False)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ------------------------------------------------------------------------------ the floor
def floor(lab: Lab) -> dict[str, float]:
    """python -c 'import tunnelops', then ssh HOST true to both hosts at once."""
    unlimit(lab)
    t0 = time.time()
    subprocess.run([sys.executable, "-c", "import tunnelops"], check=True, cwd=PROJECT)
    out = {"python": time.time() - t0}
    procs, t0 = {}, time.time()
    for role in ROLES:
        procs[role] = subprocess.Popen(
            ["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", lab.topo.alias(role),
             "true"], stdin=subprocess.DEVNULL)
    left = dict(procs)
    while left:
        for role, p in list(left.items()):
            if p.poll() is not None:
                if p.returncode != 0:
                    raise SystemExit(f"floor: ssh {lab.topo.alias(role)} true failed")
                out[f"ssh {role}"] = time.time() - t0
                del left[role]
        time.sleep(0.002)
    out["floor"] = out["python"] + max(out[f"ssh {r}"] for r in ROLES)
    return out


# ------------------------------------------------------------------------------ a run
# `tunnelops ARGV` from the tree in argv[1]: this venv's editable finder (which maps the
# package to this checkout whatever sys.path says) left out
AGAINST = ("import sys; src = sys.argv.pop(1); sys.meta_path[:] = [f for f in sys.meta_path "
           "if 'editable' not in repr(f)]; sys.path.insert(0, src); import tunnelops; "
           "assert tunnelops.__file__.startswith(src), tunnelops.__file__; "
           "from tunnelops.program import main; sys.exit(main())")


def tunnelops(lab: Lab, *argv: str, ok: Callable[[str], bool] | None = None,
              source: str | None = None) -> tuple[float, float, dict]:
    """Run `tunnelops ARGV --site LAB` in a new process: (spawn time, end time, profile).
    source: a directory whose tunnelops package to run instead of this one."""
    exe = Path(sys.executable).parent / "tunnelops"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tunnelops"]
    if source:  # an editable install's finder would win over PYTHONPATH: without it
        cmd = [sys.executable, "-c", AGAINST, source]
    with tempfile.NamedTemporaryFile(suffix=".json") as prof:
        env = {**os.environ, "TUNNELOPS_PROFILE": prof.name, "COLUMNS": "200",
               "TUNNELOPS_INVENTORY": str(lab.inventory_dir)}
        unlimit(lab)
        t0 = time.time()
        res = subprocess.run([*cmd, *argv, "--site", lab.topo.name], cwd=PROJECT, env=env,
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        t1 = time.time()
        if res.returncode != 0 or (ok is not None and not ok(res.stdout)):
            raise SystemExit(f"tunnelops {' '.join(argv)} failed:\n{res.stdout}{res.stderr}")
        return t0, t1, json.loads(Path(prof.name).read_text())


def breakdown(t0: float, t1: float, prof: dict) -> dict[str, float]:
    """One run's figures (seconds), in the order they happen."""
    m = prof["marks"]
    out: dict[str, float] = defaultdict(float)
    out.update({"interpreter": m["interpreter"] - t0, "imports": m["main"] - m["interpreter"],
                "command line": m["run"] - m["main"]})
    if "imported" in m:  # the engine and the console, while the handshakes go on
        out["run's imports"] = m["imported"] - m["run"]
    for run in prof["runs"]:
        for role, h in run["hosts"].items():
            out[f"{role} connect"] += h["connect"]
            for what, secs, on_host in h["trips"]:
                out[f"{role} {what}: host"] += on_host or 0.0
                out[f"{role} {what}: wire"] += secs - (on_host or 0.0)
            for step, _status, secs in h.get("steps", []):
                if secs is not None:
                    out[f"{role}   step {step}"] += secs
            # planning (pure), waiting for the other host, and Python's own time
            out[f"{role} rest"] += h["seconds"] - h["connect"] - sum(t[1] for t in h["trips"])
            out[f"{role} on the host"] += sum(t[2] or 0.0 for t in h["trips"])
            out[f"{role} on the wire"] += h["connect"] + sum(t[1] - (t[2] or 0.0)
                                                           for t in h["trips"])
            out[f"{role} round trips"] += h["round_trips"]
    out["engine"] = m["ran"] - m["run"]
    out["report"] = m["shown"] - m["ran"]
    out["exit"] = t1 - m["shown"]
    out["total"] = t1 - t0
    # what the scripts' contents cost apart: the same run if they took no time on the hosts
    # (the hosts run in parallel; the longer one's scripts are on the critical path)
    out["total, less the slower host's script time"] = out["total"] - max(
        (out.get(f"{r} on the host", 0.0) for r in ROLES), default=0.0)
    return dict(out)


# ------------------------------------------------------------------------------ the table
class Figures:
    """Each iteration's floor and run figures; medians and ratios at the end."""

    def __init__(self) -> None:
        self.floors: list[dict[str, float]] = []
        self.runs: list[dict[str, float]] = []

    def add(self, fl: dict[str, float], run: dict[str, float]) -> None:
        self.floors.append(fl)
        self.runs.append(run)

    def table(self, title: str) -> Table:
        table = Table(title=title, title_justify="left")
        for col in ("figure", "seconds", "× floor"):
            table.add_column(col, justify="left" if col == "figure" else "right")
        keys = list(dict.fromkeys(k for r in self.runs for k in r))
        for k in ("python", "ssh vps", "ssh home", "floor"):
            vals = [f[k] for f in self.floors]
            ratios = [f[k] / f["floor"] for f in self.floors]
            table.add_row(f"[dim]floor: {k}[/]", f"{statistics.median(vals):.3f}",
                          f"{statistics.median(ratios):.2f}")
        for k in keys:
            vals = [r.get(k, 0.0) for r in self.runs]
            if "round trips" in k:
                table.add_row(k, f"{statistics.median(vals):.0f}", "")
                continue
            ratios = [r.get(k, 0.0) / f["floor"] for r, f in zip(self.runs, self.floors,
                                                                 strict=True)]
            style = "bold" if k == "total" else ""
            table.add_row(f"[{style}]{k}[/]" if style else k, f"{statistics.median(vals):.3f}",
                          f"{statistics.median(ratios):.2f}")
        return table


def report(figures: Figures, title: str, args: argparse.Namespace, loads: list[str]) -> None:
    console = Console(width=120)
    console.print(figures.table(f"{title}, WAN RTT {args.rtt_ms} ms to the VPS, median of "
                                f"{len(figures.runs)} (load before each: {'; '.join(loads)})"))
    totals = [r["total"] / f["floor"] for r, f in zip(figures.runs, figures.floors, strict=True)]
    console.print(f"total / floor per run: {', '.join(f'{x:.2f}' for x in totals)}",
                  highlight=False)


def measure(lab: Lab, args: argparse.Namespace, title: str,
            before: Callable[[], None], argv: tuple[str, ...],
            ok: Callable[[str], bool] | None = None) -> Figures:
    """Per iteration: before() (unmeasured), the floor, then the run; with --against, then
    before() and the other tree's run too, against the same floor."""
    sources = {"this tree": None, **({f"--against {args.against}": args.against}
                                     if args.against else {})}
    figures = {name: Figures() for name in sources}
    loads = []
    for _ in range(args.repeat):
        loads.append(load())
        fl = floor(lab)
        for name, source in sources.items():
            before()
            figures[name].add(fl, breakdown(*tunnelops(lab, *argv, ok=ok, source=source)))
    for name, figs in figures.items():
        report(figs, f"{title} ({name})" if args.against else title, args, loads)
    return figures["this tree"]
