"""The VPS's connection tracking of the laptop's probes to the service ports: where each
came from, before any NAT (the original source), for verify to compare with what the service
says it saw (issue 12)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypedDict

from tunnelops.model.ports import PortSpec
from tunnelops.probes.base import Probe, q

WAIT_POLLS = 25  # x 0.1 s: how long the VPS waits for a probe it has not seen yet
_ENTRY = re.compile(r"(?:^|\s)(tcp|udp)\s+\d+\s.*?\bsrc=(\S+) dst=(\S+) sport=\d+ dport=(\d+)")


class Seen(TypedDict):
    source: str  # where it was read: conntrack, proc, or none (then nothing can be)
    seen: dict[str, list[str]]  # "PORT/PROTO" -> the original sources of its connections


@dataclass(frozen=True)
class Conntrack(Probe[Seen]):
    """The entries to PUBLIC_IP on the first port of each spec, waited for (briefly) until
    each has one: the laptop's probes run meanwhile. At most 200 entries are printed."""

    public_ip: str
    specs: tuple[PortSpec, ...]
    kind = "conntrack"
    slow = True

    @property
    def key(self) -> str:
        return " ".join([self.kind, self.public_ip, *map(str, self.specs)])

    def shell(self) -> str:
        if not self.specs:
            return "echo source=none"
        dst = re.escape(self.public_ip)
        want = [f"(^| ){p.proto} +[0-9]+ .*dst={dst} sport=[0-9]+ dport={p.first} "
                for p in self.specs]
        checks = " && ".join(f"ct | grep -Eq {q(w)}" for w in want)
        return ("ct() { conntrack -L 2>/dev/null || cat /proc/net/nf_conntrack 2>/dev/null; }; "
                "if conntrack -L >/dev/null 2>&1; then s=conntrack; "
                "elif [ -r /proc/net/nf_conntrack ]; then s=proc; else s=none; fi; "
                f"n=0; while [ $s != none ] && [ $n -lt {WAIT_POLLS} ] && ! {{ {checks}; }}; do "
                "sleep 0.1; n=$((n+1)); done; "
                f"echo source=$s; ct | grep -E {q('|'.join(want))} | head -n 200")

    def parse(self, text: str) -> Seen:
        lines = text.strip().splitlines()
        source = lines[0].removeprefix("source=") if lines and lines[0].startswith(
            "source=") else "none"
        seen: dict[str, set[str]] = {}
        for line in lines[1:]:
            m = _ENTRY.search(line)
            if m:
                seen.setdefault(f"{m.group(4)}/{m.group(1)}", set()).add(m.group(2))
        return {"source": source, "seen": {k: sorted(v) for k, v in sorted(seen.items())}}
