"""How tunnelops's tasks take their input, under `tunnelops` and `inv` alike: flags, and the
settings the program passes in its config (its name, --inventory).

Invoke gives each flag the first free letter of its name as a short flag: `--home` took -h
(help everywhere else) and -s meant --site in one task, --service in another. Here short
flags come from one table instead: a letter means the same thing in every task, no task takes
one of the program's own letters, and the rest are long flags only."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Context, Exit, Task
from invoke import task as invoke_task

from tunnelops import prog
from tunnelops.locations import InventoryDir, inventory_from_environment

# One letter, one meaning, in every task.
SHORT = {
    "dry_run": "n",
    "site": "s",
    "trust_new_host": "t",
    "json": "j",
    "all": "a",
    "follow": "f",
    "user": "u",
}
# The tunnelops program's own short flags (see program.py): never a task's.
CORE_SHORT = frozenset("dhilDFV")
HELP_TOKENS = ("-h", "--help")


class Command(Task):
    """An Invoke task with tunnelops's short flags and a guard for its positional values."""

    dotted: str | None = None  # its name on the command line (e.g. lab.ssh), set by cli.py

    def __init__(self, body: Callable, **kwargs: Any) -> None:
        kwargs.setdefault("auto_shortflags", False)
        super().__init__(body, **kwargs)

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        if name in SHORT:
            opts["names"].append(SHORT[name])
        return opts

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list:
        # Invoke consumes self.help while it builds the arguments: keep it for the next
        # parser (a second program run in one process, help printed from within a task).
        kept = dict(self.help)
        try:
            return super().get_arguments(ignore_unknown_help)
        finally:
            self.help = kept

    def __call__(self, c: Any, *args: Any, **kwargs: Any) -> Any:
        prog.use(settings(c).get("prog") or prog.name())  # what messages call the command
        # The parser gives a task that still wants a positional value any token, flags
        # included: `inv add-port -h` would try the port "-h". (The tunnelops program
        # catches this while parsing; inv does not, so the task does.)
        params = list(inspect.signature(self.body).parameters)[1:]
        values = dict(zip(params, args, strict=False)) | kwargs
        for name in self.positional:
            value = values.get(name)
            if isinstance(value, str) and value.startswith("-"):
                if value in HELP_TOKENS:
                    show_help(self.dotted or self.name)
                    raise Exit(code=0)
                raise Exit(f"error: {value!r} is not a {name.upper()}: see "
                           f"{prog.cmd('--help ' + (self.dotted or self.name))}", code=2)
        return super().__call__(c, *args, **kwargs)


def show_help(name: str) -> None:
    from tunnelops.program import print_task_help  # the program imports the tasks

    print_task_help(name)


def task(*args: Any, **kwargs: Any) -> Any:
    """invoke.task, making a Command (`@task` and `@task(help=...)` alike)."""
    kwargs.setdefault("klass", Command)
    return invoke_task(*args, **kwargs)


def settings(c: Context) -> dict[str, Any]:
    """What the program passes its tasks (config `tunnelops`): its name, --inventory, and for
    `inv` the checkout whose inventory/ counts as ./inventory."""
    try:
        return dict(c.config.tunnelops)
    except AttributeError:  # a Context made without the program's config
        return {}


def inventory_dir(c: Context) -> InventoryDir:
    """The inventory directory for this run (see locations.find_inventory)."""
    s = settings(c)
    project = s.get("project")
    return inventory_from_environment(s.get("inventory"), Path(project) if project else None)
