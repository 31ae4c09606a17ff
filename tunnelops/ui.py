"""The console: live progress per host while a run goes, then the plan (for --dry-run) and a
recap that reads at a glance, like Ansible's `ok=12 changed=0 failed=0`."""

from __future__ import annotations

import threading

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tunnelops.report import RunReport

STATUS_STYLE = {"ok": "green", "changed": "yellow", "would change": "yellow", "failed": "red"}


class LiveUi:
    """One line per host: what it is doing now."""

    def __init__(self, console: Console, labels: dict[str, str]) -> None:
        self.console, self.labels = console, labels
        self.state = dict.fromkeys(labels, "waiting")
        self._lock = threading.Lock()
        self._live = Live(self._render(), console=console, transient=True,
                          refresh_per_second=10)

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        for role, label in self.labels.items():
            table.add_row(Text(role, style="bold"), label, Text.from_markup(self.state[role]))
        return table

    def phase(self, role: str, text: str) -> None:
        with self._lock:
            self.state[role] = text
            self._live.update(self._render())

    def __enter__(self) -> LiveUi:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)


def plan_view(report: RunReport, *, diffs: bool) -> Group:
    parts = []
    for role, host in report.hosts.items():
        for s in host.steps:
            if not s.changes:
                continue
            parts.append(Text(f"{role} {host.dest} · {s.step}", style="bold"))
            for c in s.changes:
                parts.append(Text(f"  ~ {c}", style=STATUS_STYLE.get(s.status, "")))
            if diffs:
                from rich.syntax import Syntax  # pygments: only a dry run shows diffs

                for d in s.diffs:
                    parts.append(Syntax(d.rstrip("\n"), "diff", theme="ansi_dark",
                                        background_color="default"))
    if not parts:
        parts.append(Text("nothing to change", style="green"))
    return Group(*parts)


def recap(report: RunReport) -> Table:
    title = "plan (dry run: nothing was changed)" if report.dry_run else "recap"
    table = Table(title=title, title_justify="left")
    # seconds: the host's whole run; of those, its scripts' own time on the host, and the
    # handshake's and the round trips' time between (the rest: planning, waiting for the
    # other host)
    for col in ("host", "ok", "changed" if not report.dry_run else "would change", "failed",
                "round trips", "connections", "seconds", "on host", "on wire"):
        table.add_column(col, justify="left" if col == "host" else "right")
    for role, h in report.hosts.items():
        changed = h.count("would change" if report.dry_run else "changed")
        failed = h.count("failed") + (1 if h.error and not h.count("failed") else 0)
        table.add_row(
            f"{role} ({h.dest})", f"[green]{h.count('ok')}",
            f"[yellow]{changed}" if changed else "0",
            f"[red]{failed}" if failed else "0", str(h.round_trips), str(h.connects),
            f"{h.seconds:.1f}", f"{h.host_seconds:.1f}", f"{h.wire_seconds:.1f}")
    return table


def summary_line(report: RunReport) -> str:
    parts = []
    for role, h in report.hosts.items():
        changed = h.count("would change" if report.dry_run else "changed")
        failed = h.count("failed") + (1 if h.error and not h.count("failed") else 0)
        parts.append(f"{role}: ok={h.count('ok')} changed={changed} failed={failed} "
                     f"round_trips={h.round_trips}")
    return " | ".join(parts) + f" ({report.seconds:.1f}s)"


def show(console: Console, report: RunReport) -> None:
    if report.dry_run:
        console.print(plan_view(report, diffs=True))
    console.print(recap(report))
    for role, h in report.hosts.items():
        for note in dict.fromkeys(h.notes):
            console.print(f"  [dim]{role}:[/] {escape(note)}", highlight=False)
    for h in report.hosts.values():
        if h.error:
            # one line each, whatever the width (grep, CI logs), and verbatim: an
            # error naming `[vps] public_ip` must not lose `[vps]` as markup
            console.print(f"[red]error[/]: {escape(h.error)}", highlight=False,
                          soft_wrap=True)
    console.print(summary_line(report), highlight=False, soft_wrap=True)
