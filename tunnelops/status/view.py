"""`status` as tables: one per site, its tunnels, then its services."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tunnelops.status.report import HANDSHAKE_MAX_AGE, StatusReport


def _n(value: int | None, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "[red]never"
    text = f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"
    return text if seconds <= HANDSHAKE_MAX_AGE else f"[red]{text}"


def show(console: Console, report: StatusReport) -> None:
    for site in report.sites:
        tunnels = Table(title=f"site {site.name}: tunnels", title_justify="left")
        for col in ("home", "handshake", "rx bytes", "tx bytes", "endpoint"):
            tunnels.add_column(col, justify="left" if col in ("home", "endpoint") else "right")
        for t in site.tunnels:
            tunnels.add_row(t.home, _age(t.handshake_age_s), _n(t.rx_bytes), _n(t.tx_bytes),
                            t.endpoint or "-")
        console.print(tunnels)
        services = Table(title=f"site {site.name}: services", title_justify="left")
        for col in ("service", "home", "state", "uptime", "restarts", "ports (packets/bytes)"):
            services.add_column(col)
        for s in site.services:
            state = s.state if s.ok else f"[red]{s.state}"
            ports = ", ".join(f"{p.port} {_n(p.packets)}/{_n(p.bytes)}" for p in s.ports)
            services.add_row(s.name, s.home, state, _n(s.uptime_s, " s"), _n(s.restarts),
                             ports)
        console.print(services)
        for problem in site.problems():
            console.print(f"[red]✗[/] {problem}", highlight=False)
    trips = ", ".join(f"{d} {h.round_trips}" for d, h in report.hosts.items())
    console.print(f"status: {'ok' if report.ok else 'NOT OK'} · round trips: {trips} · "
                  f"{report.seconds:.1f}s", highlight=False)
