"""Live progress for the slow parts of the lab (the VM tier: image build, boots): one line per
thing being waited for, with its latest news and how long it has taken."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


@contextlib.contextmanager
def live(console: Console) -> Iterator[Callable[[str, str], None]]:
    """A `report(what, text)` callable; each `what` gets its own line."""
    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[what]:<6}"),
                        TimeElapsedColumn(), TextColumn("{task.description}"),
                        console=console, transient=False)
    tasks: dict[str, TaskID] = {}
    lock = threading.Lock()

    def report(what: str, text: str) -> None:
        with lock:
            if what not in tasks:
                tasks[what] = progress.add_task(text, what=what, total=None)
            progress.update(tasks[what], description=text)

    with progress:
        yield report
        for task in tasks.values():
            progress.update(task, total=1, completed=1)
