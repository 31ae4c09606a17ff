"""The installed `tunnelops` command: Invoke's Program bundling our tasks, as Fabric's `fab`.

On top of Invoke: the tunnelops version, --inventory, only the core flags that mean something
here (no --echo/--pty/--dry/... for shell commands we never run locally), -h/--help as help
wherever it appears, and errors that say what to type instead ("did you mean")."""

from __future__ import annotations

import ast
import difflib
import inspect
import os
import re
import sys

from invoke import Argument, Config, Exit, ParseError, Program
from invoke.completion.complete import print_completion_script
from invoke.parser import ParserContext
from invoke.util import enable_logging

from tunnelops import cli, profile, prog
from tunnelops.flags import HELP_TOKENS

NAME = "tunnelops"
CORE = ("complete", "debug", "help", "list", "list-depth", "list-format",
        "print-completion-script", "version")


def tunnelops_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # only to show it

    try:
        return version(NAME)
    except PackageNotFoundError:
        return "unknown (not installed: pip install .)"


class TunnelopsConfig(Config):
    """Invoke's config, under our own name: ~/.invoke.yaml or $INVOKE_* never change us."""

    prefix = NAME


class Tunnelops(Program):
    def __init__(self, binary: str = NAME) -> None:
        super().__init__(namespace=cli.namespace(binary),
                         name=NAME, binary=binary, binary_names=[binary],
                         config_class=TunnelopsConfig)

    @property
    def version(self) -> str:
        """The package's, read when shown (--version, --help): not on every run."""
        return tunnelops_version()

    @version.setter
    def version(self, _: str) -> None:
        """Program.__init__ sets one: ours is always the package's."""

    def core_args(self) -> list[Argument]:
        keep = [a for a in super().core_args() if a.names[0] in CORE]
        return [*keep, Argument(
            names=("inventory", "i"),
            help="the inventory directory (default: $TUNNELOPS_INVENTORY, else ./inventory "
                 "if it holds site files, else ~/.config/tunnelops)")]

    def parse_core(self, argv: list[str] | None) -> None:
        # Invoke's, minus the flags we dropped (--write-pyc)
        self.normalize_argv(argv)
        try:
            self.parse_core_args()
        except ParseError as e:
            raise Exit(self.explain(e), code=2) from None
        if self.args.debug.value:
            enable_logging()
        if self.args.version.value:
            self.print_version()
            raise Exit
        if self.args["print-completion-script"].value:
            print_completion_script(shell=self.args["print-completion-script"].value,
                                    names=self.binary_names)
            raise Exit

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as e:
            raise Exit(self.explain(e), code=2) from None
        # A task still wanting a positional value takes any token, flags included
        # (`tunnelops logs -h` would show the logs of "-h"): -h/--help is help there too.
        for ctx in self.tasks:
            for arg in ctx.positional_args:
                value = arg.value
                if isinstance(value, str) and value.startswith("-"):
                    if value in HELP_TOKENS:
                        self.args.help.value = ctx.name
                        return
                    raise Exit(self.unknown_flag(value, ctx), code=2)

    def parse_cleanup(self) -> None:
        try:
            super().parse_cleanup()
        except ParseError as e:
            raise Exit(self.explain(e), code=2) from None

    def update_config(self, merge: bool = True) -> None:
        # Only what our tasks read; Invoke's run/sudo settings have no flags here.
        self.config.load_overrides({NAME: {"prog": self.binary,
                                           "inventory": self.args.inventory.value}},
                                   merge=False)
        if merge:
            self.config.merge()

    # ------------------------------------------------------------------ help
    def print_help(self) -> None:
        print(f"{NAME} {self.version}: services in rootless Podman at home, reachable through "
              "a VPS over WireGuard.\n")
        super().print_help()
        print(f"`{self.binary} --help COMMAND` (or `{self.binary} COMMAND -h`) shows a "
              "command's flags.")

    def print_task_help(self, name: str) -> None:
        # Invoke's, with the positional arguments in the usage line and no "other tasks"
        ctx = self.parser.contexts[name]
        positional = "".join(f" {a.name.upper()}" for a in ctx.positional_args)
        print(f"Usage: {self.binary} [--core-opts] {name} [--options]{positional}\n")
        for line in (inspect.getdoc(self.collection[name]) or "").splitlines():
            print(self.leading_indent + line if line.strip() else "")
        print("\nOptions:")
        self.print_columns(ctx.help_tuples())

    # ------------------------------------------------------------------ errors
    def explain(self, e: ParseError) -> str:
        """Invoke's parse error as one line that says what to type instead."""
        msg, ctx = str(e), e.context
        where = f"{self.binary} {ctx.name}" if ctx is not None and ctx.name else self.binary
        if m := re.fullmatch(r"No idea what (.+) is!", msg):
            token = ast.literal_eval(m[1])
            if token.startswith("-"):
                return self.unknown_flag(token, ctx)
            return self.unknown_command(token)
        if m := re.fullmatch(r"'(.+)' did not receive required positional arguments: (.+)", msg):
            missing = " ".join(n.upper() for n in re.findall(r"'([^']+)'", m[2]))
            return (f"{self.binary} {m[1]}: {missing} is missing: see "
                    f"`{self.binary} {m[1]} --help`")
        if (m := re.match(r"Flag <Argument: ([\w-]+)", msg)) and "needed value" in msg:
            return f"{where}: --{m[1].replace('_', '-')} needs a value"
        return f"{where}: {msg}"

    def unknown_command(self, token: str) -> str:
        names = [n for name, aliases in self.collection.task_names.items()
                 for n in (name, *aliases)]
        close = [n for n in names if n.rsplit(".", 1)[-1] == token] or _closest(token, names)
        if close:
            return (f"{self.binary}: no command {token!r}: did you mean "
                    f"{' or '.join(repr(n) for n in close)}?")
        return f"{self.binary}: no command {token!r}: `{self.binary} --help` lists them"

    def unknown_flag(self, token: str, ctx: ParserContext | None) -> str:
        if ctx is not None and ctx.name:
            where, flags = f"{self.binary} {ctx.name}", list(ctx.flags)
        else:
            where, flags = self.binary, list(self.initial_context.flags)
        close = _closest(token, [f for f in flags if f.startswith("--")])
        hint = f"did you mean {' or '.join(close)}?" if close else f"see `{where} --help`"
        return f"{where}: no flag {token!r}: {hint}"


def _closest(token: str, names: list[str]) -> list[str]:
    """The likeliest meant names: difflib's best, and any as good (lab.stauts is lab.status,
    not every lab.* that shares its prefix)."""
    scored = sorted(((difflib.SequenceMatcher(None, token, n).ratio(), n) for n in names),
                    reverse=True)
    if not scored or scored[0][0] < 0.6:
        return []
    return [n for score, n in scored[:3] if score >= scored[0][0] - 0.05]


def print_task_help(name: str) -> None:
    """A task's help as `PROG --help NAME` prints it (for `inv TASK -h`)."""
    Tunnelops(prog.name()).run([prog.name(), "--help", name], exit=False)


def main() -> None:
    profile.mark("main")
    code: int | str | None = 0
    try:
        Tunnelops().run()
    except BrokenPipeError:
        # `tunnelops --help | head`: the reader left; not an error of ours (Python's recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    except SystemExit as e:
        code = e.code
    _exit(code)


def _exit(code: int | str | None) -> None:
    """Exit now, as sys.exit would, but without the interpreter's teardown: freeing every
    module and object of a run costs ~0.1 s (0.3 s on a loaded machine) and does nothing
    for us -- the connections are closed, the files written and closed by now. Output is
    flushed and the profile written first."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    profile.finish()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader left, or it is closed
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            code = code or 141
    os._exit(code or 0)
