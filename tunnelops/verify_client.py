"""verify's check "the service sees the client's address" (issue 12), one row per service
and protocol: what the service says it sees (`peer=ADDRESS` in the lab echo image's replies
to the laptop's probes) beside what the VPS saw the probe come from (its connection tracking:
the original source of the probe's connection to VPS_PUBLIC:PORT).

- client_ip = "preserve": passes when the service's peer is one of the sources the VPS saw
  on that port. 192.168.2.1 means the VPS SNATs; 10.0.2.100 (or any other address) that a
  port forwarder at home rewrites it (Podman's rootlessport).
- client_ip = "snat": what the mode promises is that every player appears as the VPS's
  tunnel address, so it passes when the service's peer is exactly that address, and fails
  when it is the player's own (the SNAT is missing) or anything else.
- A reply without `peer=`, or none at all, cannot be judged: the row says "could not be
  checked" (ok None), never that it passed. So does a VPS whose connection tracking cannot be
  read (no `conntrack`, no /proc/net/nf_conntrack), where only "snat" is judged.

Self-contained: `vps_section` is the VPS script's part (a `::tunnelops:: conntrack` section),
`rows` the evaluation; verify.py feeds them the laptop's replies.
"""

from __future__ import annotations

import re
import shlex

from tunnelops.model import PortSpec, Service, Site

SECTION = "conntrack"
WAIT_POLLS = 25  # x 0.1 s: how long the VPS waits for a probe it has not seen yet
_PEER = re.compile(r"\bpeer=\[?([0-9A-Fa-f:.]+?)\]?(?:\s|$)")
_ENTRY = re.compile(r"(?:^|\s)(tcp|udp)\s+\d+\s.*?\bsrc=(\S+) dst=(\S+) sport=\d+ dport=(\d+)")

Row = tuple[str, str, bool | None, str, str]  # id, name, ok, measured, hint


def _probed(site: Site) -> list[PortSpec]:
    """The ports whose replies the check reads: the first of each spec (the laptop probes it
    by TCP, and its UDP socket is connected to it)."""
    return [p for svc in site.services for p in svc.ports]


def vps_section(site: Site) -> str:
    """(shell) The VPS's connection-tracking entries of the probes to the service ports,
    waited for (briefly) until each probed port has one: the laptop's probes run meanwhile."""
    pub = site.vps.public_ip
    if pub is None or not site.services:
        return f"m {SECTION}; echo source=none"
    dst = re.escape(str(pub))
    want = [f"(^| ){p.proto} +[0-9]+ .*dst={dst} sport=[0-9]+ dport={p.first} "
            for p in _probed(site)]
    every = shlex.quote("|".join(want))
    checks = " && ".join(f"ct | grep -Eq {shlex.quote(w)}" for w in want)
    return (f"m {SECTION}; ct() {{ conntrack -L 2>/dev/null || cat /proc/net/nf_conntrack "
            "2>/dev/null; }; if conntrack -L >/dev/null 2>&1; then s=conntrack; "
            "elif [ -r /proc/net/nf_conntrack ]; then s=proc; else s=none; fi; "
            f"n=0; while [ $s != none ] && [ $n -lt {WAIT_POLLS} ] && ! {{ {checks}; }}; do "
            "sleep 0.1; n=$((n+1)); done; "
            f"echo source=$s; ct | grep -E {every} | head -n 200")


def parse_seen(text: str) -> tuple[str, dict[str, set[str]]]:
    """(where the VPS read it: conntrack, proc or none; "PORT/PROTO" -> the original source
    addresses of the connections it saw to that port)."""
    lines = text.strip().splitlines()
    source = lines[0].removeprefix("source=") if lines and lines[0].startswith("source=") \
        else "none"
    seen: dict[str, set[str]] = {}
    for line in lines[1:]:
        m = _ENTRY.search(line)
        if m:
            seen.setdefault(f"{m.group(4)}/{m.group(1)}", set()).add(m.group(2))
    return source, seen


def peer(reply: str | None) -> str | None:
    m = _PEER.search(reply or "")
    return m.group(1) if m else None


def rows(site: Site, svc: Service, replies: dict[str, str | None],
         vps_text: str | None) -> list[Row]:
    """One row per protocol the service has: its first port whose reply names a peer (else
    its first port of that protocol). `replies`: "PORT/PROTO" (the spec) -> the reply read
    on the spec's first port; `vps_text`: the VPS's section, None without SSH to the VPS."""
    out = []
    for proto in ("tcp", "udp"):
        specs = [p for p in svc.ports if p.proto == proto]
        if specs:
            spec = next((p for p in specs if peer(replies.get(str(p)))), specs[0])
            out.append(_row(site, svc, spec, replies.get(str(spec)), vps_text))
    return out


def _row(site: Site, svc: Service, spec: PortSpec, reply: str | None,
         vps_text: str | None) -> Row:
    t = site.tunnel
    vps_addr, port = str(t.vps_address), f"{spec.first}/{spec.proto}"
    id_ = f"client.{svc.name}.{spec.proto}"
    name = (f"{svc.name} sees {vps_addr} on {port} (client_ip = snat)" if site.snat
            else f"{svc.name} sees the client's address on {port}")

    def row(ok: bool | None, measured: str, hint: str = "") -> Row:
        return id_, name, ok, measured, hint

    if site.vps.public_ip is None:
        return row(None, "not checked: the VPS public address is unknown (run bootstrap)")
    if vps_text is None:
        return row(None, "not checked: no SSH to the VPS")
    seen_by = peer(reply)
    if reply is None:
        return row(None, f"could not be checked: no answer on {port}" + (
            " (a service that does not answer unknown datagrams; the lab's echo image "
            "answers every one)" if spec.proto == "udp" else " (see its ingress row)"))
    if seen_by is None:
        return row(None, f"could not be checked: the answer names no peer ({reply[:40]!r})")
    source, seen = parse_seen(vps_text)
    client = seen.get(port, set())
    shown = ", ".join(sorted(client)[:3]) or "?"
    forwarder = (f"something at home rewrites the source (Podman's rootlessport shows "
                 f"10.0.2.100): the container needs slirp4netns with port_handler=slirp4netns "
                 f"(or pasta) and -p {t.home_address}:PORT:PORT; re-run `inv bootstrap` (it "
                 "recreates the container)")
    if site.snat:
        if seen_by == vps_addr:
            return row(True, f"{svc.name} sees {vps_addr}: every player appears as the VPS"
                       + (f" (clients the VPS saw on {port}: {shown})" if client else ""))
        if seen_by in client:
            return row(False, f"{svc.name} sees {seen_by}, the client's own address, not "
                       f"{vps_addr}", f"the VPS does not SNAT {spec} (client_ip = snat): "
                       "re-run `inv bootstrap`")
        return row(False, f"{svc.name} sees {seen_by}, not {vps_addr}", forwarder)
    if source == "none":
        return row(None, f"{svc.name} sees {seen_by}; not compared: the VPS's connection "
                   "tracking cannot be read (install conntrack)")
    if seen_by in client:
        return row(True, f"{svc.name} sees {seen_by}, the address the VPS saw the probe "
                   "come from")
    if not client:
        return row(None, f"{svc.name} sees {seen_by}; not compared: the VPS has no record of "
                   f"the probe on {port}")
    if seen_by == vps_addr:
        return row(False, f"{svc.name} sees {vps_addr}, the VPS's tunnel address, not the "
                   f"client's {shown}", f"the VPS SNATs {spec} (client_ip = preserve wants "
                   "no SNAT): re-run `inv bootstrap`")
    return row(False, f"{svc.name} sees {seen_by}, not the client's {shown}", forwarder)
