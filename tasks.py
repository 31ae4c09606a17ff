"""tunnelops tasks for `inv` in a checkout: `inv --list` and `inv --help TASK` are the manual.

The same tasks as the installed `tunnelops` command (tunnelops/cli.py defines them once);
here `./inventory` means this checkout's inventory/, from whatever directory inv runs in."""

from pathlib import Path

from tunnelops.cli import namespace

ns = namespace("inv", project=Path(__file__).resolve().parent)
