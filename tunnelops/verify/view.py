"""How `inv verify` looks: one table row per check (✓/✗, what, measured, the fix), the first
broken link, and a recap line with the round trips per host and the time."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tunnelops.verify.report import VerifyReport

MARKS = {"pass": ("✓", "green"), "fail": ("✗", "red"), "skip": ("–", "dim")}


def table(report: VerifyReport) -> Table:
    failing = not report.ok
    t = Table(title=f"verify {report.site}", title_justify="left")
    t.add_column("", no_wrap=True)
    t.add_column("check", ratio=3)
    t.add_column("measured", ratio=3)
    if failing:  # the hint column only when there is something to fix
        t.add_column("hint", ratio=3, style="yellow")
    for c in report.checks:
        mark, style = MARKS[c.status]
        row = [Text(mark, style=style), Text(c.name, style="dim" if c.ok is None else ""),
               Text(c.measured, style="dim" if c.ok is None else "")]
        if failing:
            row.append(Text(c.hint))
        t.add_row(*row)
    return t


def recap(report: VerifyReport) -> Text:
    counts = {s: sum(1 for c in report.checks if c.status == s) for s in MARKS}
    trips = ", ".join(f"{role} {h.round_trips}" for role, h in report.hosts.items())
    line = Text()
    line.append(f"verify {report.site}: ")
    line.append(f"{counts['pass']} passed", style="green")
    line.append(", ")
    line.append(f"{counts['fail']} failed", style="red" if counts["fail"] else "")
    if counts["skip"]:
        line.append(f", {counts['skip']} not checked", style="dim")
    line.append(f" · round trips: {trips} · {report.seconds:.1f}s")
    return line


def view(report: VerifyReport) -> Group:
    parts: list = [table(report)]
    first = report.first_failure
    if first is not None:
        broken = Text("first broken link: ", style="bold red")
        broken.append(f"{first.name}", style="bold")
        broken.append(f" ({first.id}): {first.hint}")
        parts.append(broken)
    parts.append(recap(report))
    return Group(*parts)


def show(console: Console, report: VerifyReport) -> None:
    console.print(view(report))
