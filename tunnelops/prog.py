"""The command the user runs tunnelops by: `tunnelops` (the installed command) or `inv` (a
checkout's tasks.py). Messages that tell the user what to run next name the one they use:
new ones with cmd(); those written as "`inv ...`" (verify's hints, the engine's) are
rewritten by named() where commands.py hands reports to the console.

Process-wide on purpose: one process serves one command line, and the messages that name a
command are made deep in the engine and in verify, often on worker threads."""

from __future__ import annotations

_name = "inv"


def use(name: str) -> None:
    """Set the command messages name (the task layer does it, from the program's config)."""
    global _name
    _name = name


def name() -> str:
    return _name


def cmd(args: str) -> str:
    """A command to run, as messages show it: `PROG ARGS` in backquotes."""
    return f"`{_name} {args}`"


def named(text: str) -> str:
    """text with "`inv ..." commands spelled as the user's command."""
    return text if _name == "inv" else text.replace("`inv ", f"`{_name} ")
