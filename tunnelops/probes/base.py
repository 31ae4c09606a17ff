"""The probe protocol: one small unit per thing read from a host, and the ONE script that
reads a whole batch of them in one round trip.

A probe is a frozen dataclass (its fields are its parameters: an interface, a user, a
path) with
- `shell()`: POSIX sh printing what it reads (dash, bash and BusyBox ash alike);
- `parse(text)`: that output as a typed value (JSON-like: dicts, lists, strings, numbers);
  `parse("")` is the value of "nothing there" (no such interface, no such tool);
- `slow`: it runs a slow program (firewall-cmd, podman, nmcli, nft, ping), so the batch
  runs it in a background job, in parallel with everything else;
- `after`: kinds of probes that must have run first when they are in the same batch (the
  WireGuard dump after the ping whose traffic starts a handshake; its own kind: the other
  probes of that kind): they share one job;
- `setup()` / `cleanup()`: shell run before any probe / when the script exits.

Equal probes are the same probe: planning and verify ask for the same `WgDump("wg0")`,
and a batch reads each once. Its `key` names its section in the output.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from tunnelops.trips import HOST_TIME_FN

MARK = "::tunnelops::"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
END = "end"

T = TypeVar("T")


def q(value: object) -> str:
    return shlex.quote(str(value))


def cat(path: str) -> str:
    """Shell printing the file PATH (shell text: quoted, or an expression) line by line with
    builtins only, its last line ended: `cat` is a program, ~50 ms on an emulated host."""
    return f"while IFS= read -r _l || [ -n \"$_l\" ]; do printf '%s\\n' \"$_l\"; done < {path}"


def not_key(default: Any = dataclasses.MISSING) -> Any:
    """A probe field that is no part of its key (how it reads, not what: a key file to
    redact with, a temporary table's name)."""
    return dataclasses.field(default=default, metadata={"key": False})


class Probe(Generic[T]):
    kind: ClassVar[str]
    slow: ClassVar[bool] = False
    after: ClassVar[tuple[str, ...]] = ()
    # shell functions the probe's shell calls, defined once at the top of the script
    functions: ClassVar[str] = ""

    @property
    def key(self) -> str:
        args = [str(getattr(self, f.name)) for f in dataclasses.fields(self)  # type: ignore
                if f.metadata.get("key", True)]
        return " ".join([self.kind, *args])

    def shell(self) -> str:
        raise NotImplementedError

    def parse(self, text: str) -> T:
        raise NotImplementedError

    def setup(self) -> str:
        return ""

    def cleanup(self) -> str:
        return ""


def sections(output: str) -> dict[str, str]:
    """`MARK NAME` lines and what follows each, up to the next one."""
    out: dict[str, list[str]] = {}
    cur = None
    for line in output.splitlines():
        if line.startswith(MARK + " "):
            cur = line[len(MARK) + 1:]
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in out.items()}


class Readings:
    """What one run of a batch printed: each probe's value, parsed once on first use."""

    def __init__(self, raw: dict[str, str], complete: bool = True) -> None:
        self.raw = raw
        self.complete = complete
        self._values: dict[str, Any] = {}

    def __getitem__(self, probe: Probe[T]) -> T:
        if probe.key not in self._values:
            self._values[probe.key] = probe.parse(self.raw.get(probe.key, ""))
        return self._values[probe.key]

    def __contains__(self, probe: Probe) -> bool:
        return probe.key in self.raw or probe.key in self._values

    def set(self, probe: Probe[T], value: T) -> None:
        """Replace what a probe read (tests: a fault made in the recorded state)."""
        self._values[probe.key] = value


def _ordered(probes: Sequence[Probe]) -> list[list[Probe]]:
    """The probes as jobs: each probe in its own, except that one whose `after` kinds are in
    the batch joins the job of the first of them, behind it."""
    kinds: dict[str, int] = {}
    jobs: list[list[Probe]] = []
    pending = list(probes)
    # a probe waits for the probes it runs after: place those first (stable otherwise)
    while pending:
        progressed = False
        for p in list(pending):
            deps = [k for k in p.after if any(o.kind == k for o in probes if o is not p)]
            if any(k not in kinds for k in deps):
                continue
            if deps:
                jobs[kinds[deps[0]]].append(p)
                kinds.setdefault(p.kind, kinds[deps[0]])
            else:
                kinds.setdefault(p.kind, len(jobs))
                jobs.append([p])
            pending.remove(p)
            progressed = True
        if not progressed:
            raise ValueError(f"probes wait for each other: {[p.key for p in pending]}")
    return jobs


class Batch:
    """Probes read together by one script. Every section writes its own file under a
    temporary directory (slow jobs in the background, fast ones in the foreground meanwhile);
    the files are printed in order once all are complete, then `MARK end` with their count,
    so a cut output is known as such and never read as a host that has nothing."""

    def __init__(self, probes: Iterable[Probe]) -> None:
        seen: dict[str, Probe] = {}
        for p in probes:
            if p.key in seen and seen[p.key] != p:
                raise ValueError(f"two different probes read {p.key!r}")
            seen.setdefault(p.key, p)
        self.probes = list(seen.values())
        self.jobs = _ordered(self.probes)

    def __iter__(self) -> Iterator[Probe]:
        return iter(p for job in self.jobs for p in job)

    def script(self) -> str:
        order = list(self)
        index = {p.key: n for n, p in enumerate(order)}
        cleanup = [c for p in order if (c := p.cleanup())]
        lines = [
            "set +e",
            f"export LC_ALL=C PATH={PATH}",
            "T=$(mktemp -d \"${TMPDIR:-/tmp}/tunnelops.XXXXXX\") || exit 1",
            # this trap replaces the one timing the script on the host (trips.TIMED): call it
            "_cleanup() {\n" + "\n".join([*cleanup, "rm -rf \"$T\"",
                                           f"! command -v {HOST_TIME_FN} >/dev/null 2>&1 || "
                                           f"{HOST_TIME_FN}"]) + "\n}",
            "trap _cleanup EXIT",
            "trap 'exit 1' HUP INT TERM",
            # _sec N KEY F: section N is what F prints (in a subshell: its variables stay its
            # own; never reading the script on stdin), in $T/N; $T/N.done once complete (a
            # builtin redirection: an `mv` each was ~25 ms of a slow host's CPU per section)
            f"_sec() {{ {{ printf '\\n{MARK} %s\\n' \"$2\"; ( \"$3\" ) </dev/null; }} "
            "> \"$T/$1\" 2>/dev/null; : > \"$T/$1.done\"; }",
        ]
        funcs: list[str] = []
        for p in order:
            if p.functions and p.functions not in funcs:
                funcs.append(p.functions)
        lines += funcs
        for n, p in enumerate(order):
            lines.append(f"p{n:03d}() {{\n{p.shell().strip() or ':'}\n}}")
        lines += [s for p in order if (s := p.setup())]
        slow = [job for job in self.jobs if any(p.slow for p in job)]
        fast = [job for job in self.jobs if job not in slow]
        for job in slow:
            calls = "; ".join(f"_sec {index[p.key]:03d} {q(p.key)} p{index[p.key]:03d}"
                              for p in job)
            lines.append(f"{{ {calls}; }} </dev/null &")
        for job in fast:
            lines += [f"_sec {index[p.key]:03d} {q(p.key)} p{index[p.key]:03d}" for p in job]
        count = len(order)
        lines += [
            "wait",
            # the sections complete, counted by the shell (ls | grep: two programs)
            "_count() { set -- \"$T\"/[0-9][0-9][0-9].done; "
            "if [ -e \"$1\" ]; then echo $#; else echo 0; fi; }",
            f"n=0; while [ \"$(_count)\" -lt {count} ] && [ $n -lt 300 ]; do sleep 0.05; "
            "n=$((n+1)); done",
            f"cat \"$T\"/[0-9][0-9][0-9]; printf '\\n{MARK} {END}\\n'; _count; echo {count}",
        ]
        return "\n".join(lines) + "\n"

    def parse(self, output: str) -> Readings:
        raw = sections(output)
        end = raw.pop(END, "").split()
        return Readings(raw, len(end) == 2 and end[0] == end[1])


def inline(probes: Iterable[Probe]) -> str:
    """Shell printing these probes' sections one after the other, in the current shell's
    context: for the tail of an apply script (no temporary files, no jobs)."""
    out = []
    for p in probes:
        out.append(f"printf '\\n{MARK} %s\\n' {q(p.key)}; (\n{p.shell()}\n) 2>/dev/null")
    return "\n".join(out)
