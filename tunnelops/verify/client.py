"""Link 8b: the service sees the client's address (issue 12), one row per service and
protocol: what the service says it sees (`peer=ADDRESS` in the lab echo image's replies to
the laptop's probes) beside what the VPS saw the probe come from (its connection tracking:
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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.probes.conntrack import Conntrack
from tunnelops.verify.check import Check, Ctx, Outcome, State, skip
from tunnelops.verify.laptop import TcpConnect, UdpSend

_PEER = re.compile(r"\bpeer=\[?([0-9A-Fa-f:.]+?)\]?(?:\s|$)")


def peer(reply: str | None) -> str | None:
    m = _PEER.search(reply or "")
    return m.group(1) if m else None


def conntrack(ctx: Ctx) -> Conntrack | None:
    ip = ctx.site.vps.public_ip
    specs = tuple(p for svc in ctx.site.services for p in svc.ports)
    return Conntrack(str(ip), specs) if ip else None


def reply(s: State, spec: PortSpec) -> str | None:
    """What the laptop's probe read on the spec's first port: the TCP greeting, the UDP
    reply."""
    if spec.proto == "tcp":
        res = next((x for x in s.laptop.tcp.get(str(spec), []) if x.port == spec.first), None)
        return res.detail if res is not None and res.outcome == "greeted" else None
    return s.laptop.udp_replies.get(str(spec))


@dataclass(frozen=True)
class ClientAddress(Check):
    service: Service
    proto: str

    @property
    def id(self) -> str:
        return f"client.{self.service.name}.{self.proto}"

    def spec(self, s: State) -> PortSpec:
        """Its first port whose reply names a peer, else its first port of the protocol."""
        specs = [p for p in self.service.ports if p.proto == self.proto]
        return next((p for p in specs if peer(reply(s, p))), specs[0])

    def name(self, s: State) -> str:
        port = f"{self.spec(s).first}/{self.proto}"
        return (f"{self.service.name} sees {s.site.tunnel.vps_address} on {port} (client_ip = "
                f"snat)" if s.site.snat else f"{self.service.name} sees the client's address "
                f"on {port}")

    def needs(self, ctx: Ctx) -> dict:
        specs = [p for p in self.service.ports if p.proto == self.proto]
        laptop = tuple(TcpConnect(p) if p.proto == "tcp" else UdpSend(p) for p in specs)
        ct = conntrack(ctx)
        return {"laptop": laptop, **({"vps": (ct,)} if ct else {})}

    def evaluate(self, s: State) -> Outcome:
        t, svc, spec = s.site.tunnel, self.service, self.spec(s)
        vps_addr, port = str(t.vps_address), f"{spec.first}/{spec.proto}"
        ct = conntrack(s.ctx)
        if ct is None:
            return skip("not checked: the VPS public address is unknown (run bootstrap)")
        answer = reply(s, spec)
        seen_by = peer(answer)
        if answer is None:
            return skip(f"could not be checked: no answer on {port}" + (
                " (a service that does not answer unknown datagrams; the lab's echo image "
                "answers every one)" if spec.proto == "udp" else " (see its ingress row)"))
        if seen_by is None:
            return skip(f"could not be checked: the answer names no peer ({answer[:40]!r})")
        read = s.read("vps", ct)
        client = set(read["seen"].get(port, []))
        shown = ", ".join(sorted(client)[:3]) or "?"
        forwarder = (f"something at home rewrites the source (Podman's rootlessport shows "
                     f"10.0.2.100): the container needs slirp4netns with port_handler="
                     f"slirp4netns (or pasta) and -p {t.home_address}:PORT:PORT; re-run `inv "
                     "bootstrap` (it recreates the container)")
        if s.site.snat:
            if seen_by == vps_addr:
                return Outcome(True, f"{svc.name} sees {vps_addr}: every player appears as the "
                               "VPS" + (f" (clients the VPS saw on {port}: {shown})"
                                        if client else ""))
            if seen_by in client:
                return Outcome(False, f"{svc.name} sees {seen_by}, the client's own address, "
                               f"not {vps_addr}", f"the VPS does not SNAT {spec} (client_ip = "
                               "snat): re-run `inv bootstrap`")
            return Outcome(False, f"{svc.name} sees {seen_by}, not {vps_addr}", forwarder)
        if read["source"] == "none":
            return skip(f"{svc.name} sees {seen_by}; not compared: the VPS's connection "
                        "tracking cannot be read (install conntrack)")
        if seen_by in client:
            return Outcome(True, f"{svc.name} sees {seen_by}, the address the VPS saw the "
                           "probe come from")
        if not client:
            return skip(f"{svc.name} sees {seen_by}; not compared: the VPS has no record of "
                        f"the probe on {port}")
        if seen_by == vps_addr:
            return Outcome(False, f"{svc.name} sees {vps_addr}, the VPS's tunnel address, not "
                           f"the client's {shown}", f"the VPS SNATs {spec} (client_ip = "
                           "preserve wants no SNAT): re-run `inv bootstrap`")
        return Outcome(False, f"{svc.name} sees {seen_by}, not the client's {shown}", forwarder)


def checks(ctx: Ctx) -> list[Check]:
    return [ClientAddress(svc, proto) for svc in ctx.site.services for proto in ("tcp", "udp")
            if any(p.proto == proto for p in svc.ports)]
