"""The tasks, once, for both command lines: the installed `tunnelops` (program.py) and `inv`
in a checkout (tasks.py). `tunnelops --help` and `tunnelops --help TASK` are the manual.

Thin on purpose: read the flags and the program's settings, call tunnelops.commands, turn
errors into one line and an exit code. A new command is one task here, added to TASKS.
The commands are imported by the task that runs them: `--help` needs none of them (nor
SSH, nor the console)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Collection, Context, Exit

from tunnelops.flags import Command, inventory_dir, task
from tunnelops.lab import tasks as lab_tasks

if TYPE_CHECKING:
    from tunnelops import commands

COMMON = {
    "site": "site name, i.e. INVENTORY/NAME.toml (default: the one matching the hosts, or the "
            "only one)",
    "dry_run": "show every change (with diffs) and stop; change nothing, here or on the hosts",
    "trust_new_host": "accept an unknown SSH host key and record it in known_hosts (check its "
                      "fingerprint first; a dry run accepts it for itself only)",
}


def _opts(c: Context, site: str | None = None, dry_run: bool = False,
          trust_new_host: bool = False) -> commands.Options:
    from tunnelops import commands

    found = inventory_dir(c)
    return commands.Options(inventory_dir=found.path, inventory_source=found.source, site=site,
                            dry_run=dry_run, trust_new_host=trust_new_host)


def _call(name: str, *args, **kwargs) -> None:
    """Run commands.NAME: bad input exits 2 with its one line, a failed run exits 1."""
    from tunnelops import commands

    try:
        report = getattr(commands, name)(*args, **kwargs)
    except commands.UsageError as e:
        raise Exit(f"error: {e}", code=2) from None
    except commands.CommandError as e:
        raise Exit(f"error: {e}", code=1) from None
    except commands.Interrupted as e:
        raise Exit(f"{e}", code=130) from None
    if not getattr(report, "ok", report):
        raise Exit(code=1)


@task(help={"vps": "the VPS: an ssh_config alias, host, user@host or user@host:port",
            "home": "the home server, the same way", **COMMON})
def bootstrap(c, vps=None, home=None, site=None, dry_run=False, trust_new_host=False):
    """Provision both hosts, from nothing to serving: tunnel, firewall, forwarding, services."""
    _call("bootstrap", _opts(c, site, dry_run, trust_new_host), vps, home)


PORT_HELP = {"port": "PORT/PROTO or FIRST-LAST/PROTO, e.g. 12347/udp or 27015-27020/udp",
             "service": "the service it belongs to (required when the site has several)",
             **COMMON}


@task(help={**PORT_HELP, "home": "the home whose service gets it (required when the site "
                                 "has several homes and --service does not say)"})
def add_port(c, port, service=None, home=None, site=None, dry_run=False, trust_new_host=False):
    """Expose one more port end to end: VPS filter and DNAT to its home, that home's
    firewall, its container."""
    _call("change_port", _opts(c, site, dry_run, trust_new_host), port, service, add=True,
          home=home)


@task(help=PORT_HELP)
def remove_port(c, port, service=None, site=None, dry_run=False, trust_new_host=False):
    """Undo add-port: the port leaves the inventory and every rule made for it goes."""
    _call("change_port", _opts(c, site, dry_run, trust_new_host), port, service,
          add=False)


@task(help={"purge_keys": "also delete the WireGuard keys (a new bootstrap makes new ones)",
            "remove_users": "also remove the service users tunnelops created (their home "
                            "and the services' data stay)",
            "delete_data": "with --remove-users: delete their home too, the services' data "
                           "with it",
            **COMMON})
def teardown(c, site=None, purge_keys=False, remove_users=False, delete_data=False,
             dry_run=False, trust_new_host=False):
    """Remove everything tunnelops made on both hosts; put back the files it edited."""
    _call("teardown", _opts(c, site, dry_run, trust_new_host), purge_keys, remove_users,
          delete_data)


@task(help={"site": COMMON["site"],
            "json": "print the rows as JSON (for scripts and monitoring) instead of a table",
            "whoami_url": "what-is-my-address URL for the egress check (default: the site's "
                          "[site] whoami_url, else https://api.ipify.org)",
            "trust_new_host": COMMON["trust_new_host"]})
def verify(c, site=None, json=False, whoami_url=None, trust_new_host=False):
    """Check every link end to end and name the broken one with its fix (exit 1 if any)."""
    _call("verify", _opts(c, site, trust_new_host=trust_new_host), whoami_url, json)


@task(help={"site": COMMON["site"],
            "all": "every site of the inventory (each host read once)",
            "json": "print the numbers as JSON (for scripts and monitoring) instead of tables",
            "trust_new_host": COMMON["trust_new_host"]})
def status(c, site=None, all=False, json=False, trust_new_host=False):
    """How the site is doing now: each tunnel's handshake and traffic, each service's state,
    uptime, restarts and port counters; read-only (exit 1 when something is down)."""
    _call("status", _opts(c, site, trust_new_host=trust_new_host), all, json)


@task(help={"service": "the service (its name in the inventory, e.g. game)",
            "follow": "keep printing new lines until Ctrl-C",
            "lines": "how many of the last lines to show first: a number, or 'all' "
                     "(default 50)",
            "site": COMMON["site"], "trust_new_host": COMMON["trust_new_host"]})
def logs(c, service, follow=False, lines="50", site=None, trust_new_host=False):
    """Show a service's container logs from the home server (one SSH connection)."""
    _call("logs", _opts(c, site, trust_new_host=trust_new_host), service,
          follow=follow, lines=lines)


@task(help={"name": "lab instance name (default: $TUNNELOPS_LAB or 'lab')",
            "index": "instance number 0-99, picks its address range (default 0)"})
def demo(c, name=None, index=None):
    """The whole story on this machine: lab up, bootstrap, a player's probe, verify."""
    from tunnelops.lab.demo import run  # the lab needs root; import it only here
    from tunnelops.lab.procs import LabError

    lab_tasks.need_root()
    lab = lab_tasks.make_lab(c, name, index)
    opts = _opts(c)
    try:
        ok = run(lab, opts.console, opts)
    except LabError as e:
        raise Exit(f"demo: {e}", code=1) from None
    if not ok:
        raise Exit("demo: something failed (see above)", code=1)


TASKS = (bootstrap, add_port, remove_port, teardown, verify, status, logs, demo)


def namespace(prog_name: str = "tunnelops", project: Path | None = None) -> Collection:
    """The tasks as a Collection, configured for the program that runs them."""
    ns = Collection(*TASKS, lab_tasks.collection())
    ns.configure({"tunnelops": {"prog": prog_name, "inventory": None,
                                "project": str(project) if project else None}})
    for name in ns.task_names:
        t = ns[name]
        if isinstance(t, Command):
            t.dotted = name
    return ns
