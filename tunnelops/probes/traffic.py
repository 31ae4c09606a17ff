"""Traffic verify makes or waits for on a host: a container's own request to the internet,
and the players' datagrams counted as they arrive on the tunnel interface."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import urlsplit

from tunnelops.model.ports import PortSpec
from tunnelops.probes.base import Probe, not_key, q
from tunnelops.render.podman import as_user


def http_get(url: str) -> str:
    """Shell setting $out and $rc: URL fetched from inside the network namespace of $pid with
    the host's client (curl, wget or python3): the container's real egress path, without
    needing a client in its image. A host name is resolved by the host first: the host's
    resolver (e.g. 127.0.0.53) does not exist inside the container's namespace."""
    u = q(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    resolve = "r=; "
    try:
        ipaddress.ip_address(host)
    except ValueError:
        resolve = (f"a=$(getent ahostsv4 {q(host)} | awk 'NR==1{{print $1}}'); "
                   f"r=${{a:+--resolve {q(host)}:{port}:$a}}; ")
    ns = 'nsenter -t "$pid" -n'
    py = "import sys,urllib.request as u; sys.stdout.write(u.urlopen(sys.argv[1], timeout=4)" \
         ".read().decode())"
    return (f"{resolve}if command -v curl >/dev/null; then "
            f"out=$({ns} curl -sS -m 3 --connect-timeout 2 $r {u} 2>&1); "
            f"elif command -v wget >/dev/null; then out=$({ns} wget -qO- -T 4 {u} 2>&1); "
            f"else out=$({ns} python3 -c {q(py)} {u} 2>&1); fi; rc=$?")


class EgressResult(TypedDict):
    rc: str  # the client's exit status; "nopid": the container does not run
    body: str


@dataclass(frozen=True)
class Egress(Probe[EgressResult]):
    """What URL answers to a request made from inside the container's network namespace
    (a what-is-my-address service: the address the container's traffic leaves by)."""

    user: str
    container: str
    url: str = not_key()
    kind = "egress"
    slow = True

    def shell(self) -> str:
        pid = as_user(self.user, f"podman container inspect -f '{{{{.State.Pid}}}}' "
                                 f"{q(self.container)}")
        return (f"pid=$({pid} 2>/dev/null); if [ \"${{pid:-0}}\" -gt 0 ] 2>/dev/null; then "
                f"{http_get(self.url)}; echo \"rc=$rc\"; printf '%s\\n' \"$out\" | head -c 400; "
                "else echo rc=nopid; fi")

    def parse(self, text: str) -> EgressResult:
        lines = text.splitlines()
        rc = lines[0].removeprefix("rc=") if lines and lines[0].startswith("rc=") else "?"
        return {"rc": rc, "body": "\n".join(lines[1:]).strip()}


UDP_WAIT_S = 2.5  # how long home waits for the laptop's datagrams on the tunnel interface


class UdpCounts(TypedDict):
    counts: dict[str, dict[str, int]]  # "12345/udp" -> {"pre": n, "in": n}
    error: str


@dataclass(frozen=True)
class UdpCounters(Probe[UdpCounts]):
    """Datagrams for the UDP service ports counted on the tunnel interface by a temporary
    nft table made before anything else runs: `pre` sees every one that arrives (before
    conntrack and the firewall), `in` those the host's firewall let in. Waits until every
    `pre` counter moved (or UDP_WAIT_S), then briefly for `in`; the table is deleted when
    the script exits."""

    interface: str
    specs: tuple[PortSpec, ...]
    table: str = not_key("tunnelops_probe")
    kind = "udp"
    slow = True

    @property
    def key(self) -> str:
        return " ".join([self.kind, self.interface, *map(str, self.specs)])

    def ruleset(self) -> str:
        wg = self.interface
        rules = {where: [f'iifname "{wg}" udp dport {s.nft} counter comment "{where} {s}"'
                         for s in self.specs] for where in ("pre", "in")}
        return (f"table inet {self.table} {{\n"
                "  chain pre {\n    type filter hook prerouting priority -300; policy accept;\n"
                + "".join(f"    {r}\n" for r in rules["pre"]) + "  }\n"
                "  chain in {\n    type filter hook input priority 100; policy accept;\n"
                + "".join(f"    {r}\n" for r in rules["in"]) + "  }\n}\n")

    def setup(self) -> str:
        return (f"nft -f - >/dev/null 2>&1 <<'TUNNELOPS_PROBE'\n{self.ruleset()}"
                "TUNNELOPS_PROBE")

    def cleanup(self) -> str:
        return f"nft delete table inet {q(self.table)} 2>/dev/null"

    def shell(self) -> str:
        t, n = q(self.table), len(self.specs)
        polls = int(UDP_WAIT_S * 10)
        return (f"c() {{ nft list table inet {t} 2>/dev/null | grep -c \"packets [1-9].*\\\"$1 \""
                " || :; }; "
                f"n=0; while [ \"$(c pre)\" -lt {n} ] && [ $n -lt {polls} ]; do sleep 0.1; "
                f"n=$((n+1)); done; n=0; while [ \"$(c in)\" -lt {n} ] && [ $n -lt 3 ]; do "
                f"sleep 0.1; n=$((n+1)); done; nft -j list table inet {t} 2>&1")

    def parse(self, text: str) -> UdpCounts:
        counts: dict[str, dict[str, int]] = {}
        try:
            doc = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            doc = {}
        for o in doc.get("nftables", []) if isinstance(doc, dict) else []:
            rule = o.get("rule")
            where, _, spec = (rule or {}).get("comment", "").partition(" ")
            counter = next((e["counter"] for e in (rule or {}).get("expr", [])
                            if isinstance(e, dict) and "counter" in e), None)
            if where in ("pre", "in") and counter is not None:
                counts.setdefault(spec, {})[where] = int(counter.get("packets", 0))
        lines = text.strip().splitlines()
        error = "" if counts else (lines[-1] if lines else
                                   "the probe table could not be created")
        return {"counts": counts, "error": error}
