"""What `status` reports, computed from what was read (pure): per site its tunnels and its
services, numbers not prose; and the probes each host is read with."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from tunnelops.model.hosts import HomeSpec
from tunnelops.model.site import Site
from tunnelops.naming import Names
from tunnelops.probes import Clock, Containers, Probe, Readings, RestartCounts, SetCounters, WgDump
from tunnelops.probes.podman import find
from tunnelops.render.nftables import home_sets

HANDSHAKE_MAX_AGE = 180  # s: WireGuard handshakes every 2 minutes while a peer is alive


@dataclass
class TunnelStatus:
    home: str
    handshake_age_s: int | None  # None: no handshake yet (or the hub not read)
    rx_bytes: int | None  # what the hub received from the home
    tx_bytes: int | None  # what it sent
    endpoint: str | None  # where the home's packets come from (its NAT's address)

    @property
    def ok(self) -> bool:
        return self.handshake_age_s is not None and self.handshake_age_s <= HANDSHAKE_MAX_AGE


@dataclass
class PortStatus:
    port: str
    packets: int | None  # into the tunnel, counted on the VPS (None: not counted there)
    bytes: int | None


@dataclass
class ServiceStatus:
    name: str
    home: str
    state: str  # podman's: running, exited, created...; "missing", "unknown" (home not read)
    uptime_s: int | None
    restarts: int | None
    ports: list[PortStatus] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == "running"


@dataclass
class SiteStatus:
    name: str
    tunnels: list[TunnelStatus]
    services: list[ServiceStatus]
    errors: dict[str, str] = field(default_factory=dict)  # host -> why it was not read

    @property
    def ok(self) -> bool:
        return not self.errors and all(t.ok for t in self.tunnels) \
            and all(s.ok for s in self.services)

    def problems(self) -> list[str]:
        out = [f"{host}: {why}" for host, why in self.errors.items()]
        out += [f"tunnel of {t.home}: " + ("no handshake yet" if t.handshake_age_s is None
                                           else f"last handshake {t.handshake_age_s} s ago")
                for t in self.tunnels if not t.ok]
        out += [f"service {s.name} ({s.home}): {s.state}" for s in self.services if not s.ok]
        return out


@dataclass
class HostRead:
    dest: str
    round_trips: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class StatusReport:
    sites: list[SiteStatus]
    hosts: dict[str, HostRead] = field(default_factory=dict)  # by destination
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.sites)

    def __bool__(self) -> bool:
        return self.ok

    def to_json(self) -> str:
        return json.dumps({
            "ok": self.ok,
            "sites": [{"name": s.name, "ok": s.ok, "errors": s.errors,
                       "tunnels": [asdict(t) for t in s.tunnels],
                       "services": [asdict(v) for v in s.services]} for s in self.sites],
            "hosts": {d: asdict(h) for d, h in self.hosts.items()},
            "seconds": round(self.seconds, 3),
        }, indent=2)


# ---------------------------------------------------------------- what is read
def hub_probes(site: Site) -> list[Probe]:
    i = site.tunnel.interface
    return [Clock(), WgDump(i), SetCounters(Names(i).nft_family_table)]


def home_probes(site: Site, home: HomeSpec) -> list[Probe]:
    users = sorted({s.user for s in site.services_of(home)})
    return [Clock(), *(p for u in users for p in (Containers(u), RestartCounts(u)))]


# ---------------------------------------------------------------- evaluation
def _tunnel(site: Site, home: HomeSpec, hub: Readings | None) -> TunnelStatus:
    if hub is None:
        return TunnelStatus(home.name, None, None, None, None)
    want = f"{site.address(home)}/32"
    peers = hub[WgDump(site.tunnel.interface)].get("peers", [])
    peer = next((p for p in peers if want in p.get("allowed_ips", [])), None)
    if peer is None:
        return TunnelStatus(home.name, None, None, None, None)
    hs, now = peer.get("latest_handshake") or 0, hub[Clock()]
    endpoint = peer.get("endpoint")
    return TunnelStatus(home.name, max(0, now - hs) if hs else None, peer.get("rx"),
                        peer.get("tx"), None if endpoint in (None, "(none)") else endpoint)


def _counted(site: Site, hub: Readings | None) -> dict[tuple[str, str], tuple[int, int]]:
    """(set, element) -> (packets, bytes), as the hub counted them."""
    if hub is None:
        return {}
    sets = hub[SetCounters(Names(site.tunnel.interface).nft_family_table)]
    return {(name, c["value"]): (c["packets"], c["bytes"]) for name, elems in sets.items()
            for c in elems}


def site_status(site: Site, hub: Readings | None, homes: Mapping[str, Readings | None],
                errors: Mapping[str, str] | None = None) -> SiteStatus:
    """The site as its hosts' readings say (None: that host was not read: ERRORS say why)."""
    tunnels = [_tunnel(site, h, hub) for h in site.homes]
    counted = _counted(site, hub)
    services = []
    for svc in site.services:
        home = site.home(svc.home or site.homes[0].name)
        r = homes.get(home.name)
        sets = home_sets(home.name)
        ports = [PortStatus(str(p), *counted.get((sets[p.proto], p.nft), (None, None)))
                 for p in svc.ports]
        if r is None:
            services.append(ServiceStatus(svc.name, home.name, "unknown", None, None, ports))
            continue
        c = find(r[Containers(svc.user)], svc.container_name)
        if c is None:
            services.append(ServiceStatus(svc.name, home.name, "missing", None, None, ports))
            continue
        state = str(c.get("State") or "unknown")
        started = c.get("StartedAt")
        uptime = max(0, r[Clock()] - int(started)) if state == "running" and \
            isinstance(started, int) and started > 0 else None
        restarts = c.get("Restarts")
        if not isinstance(restarts, int):
            restarts = r[RestartCounts(svc.user)].get(svc.container_name)
        services.append(ServiceStatus(svc.name, home.name, state, uptime, restarts, ports))
    return SiteStatus(site.name, tunnels, services, dict(errors or {}))
