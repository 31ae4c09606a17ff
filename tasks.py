"""tunnelops tasks: `inv --list` and `inv --help TASK` are the manual.

Thin on purpose: parse arguments, call tunnelops.commands, turn errors into one line and an
exit code. Everything else lives in the tunnelops package."""

from pathlib import Path

from invoke import Collection, Exit, task

from tunnelops import commands
from tunnelops.lab.tasks import ns as lab

HERE = Path(__file__).resolve().parent
COMMON = {
    "site": "site name, i.e. inventory/NAME.toml (default: the one matching the hosts)",
    "dry_run": "show every change (with diffs) and stop; change nothing",
    "trust_new_host": "accept and record an unknown SSH host key (check its fingerprint first)",
}


def _opts(site=None, dry_run=False, trust_new_host=False) -> commands.Options:
    inv_dir = commands.default_inventory_dir()
    if not inv_dir.is_dir():
        inv_dir = HERE / "inventory"
    return commands.Options(inventory_dir=inv_dir, site=site, dry_run=dry_run,
                            trust_new_host=trust_new_host)


def _exit(report) -> None:
    if not report.ok:
        raise Exit(code=1)


@task(help={"vps": "the VPS: an ssh_config alias, host, user@host or user@host:port",
            "home": "the home server, the same way", **COMMON})
def bootstrap(c, vps=None, home=None, site=None, dry_run=False, trust_new_host=False):
    """Provision both hosts, from nothing to serving: tunnel, firewall, forwarding, services."""
    try:
        _exit(commands.bootstrap(_opts(site, dry_run, trust_new_host), vps, home))
    except commands.UsageError as e:
        raise Exit(f"error: {e}", code=2) from None


PORT_HELP = {"port": "PORT/PROTO or FIRST-LAST/PROTO, e.g. 12347/udp or 27015-27020/udp",
             "service": "the service it belongs to (required when the site has several)",
             **COMMON}


@task(help=PORT_HELP)
def add_port(c, port, service=None, site=None, dry_run=False, trust_new_host=False):
    """Expose one more port end to end: VPS filter and DNAT, home firewall, container."""
    try:
        _exit(commands.change_port(_opts(site, dry_run, trust_new_host), port, service,
                                   add=True))
    except commands.UsageError as e:
        raise Exit(f"error: {e}", code=2) from None


@task(help=PORT_HELP)
def remove_port(c, port, service=None, site=None, dry_run=False, trust_new_host=False):
    """Undo add-port: the port leaves the inventory and every rule made for it goes."""
    try:
        _exit(commands.change_port(_opts(site, dry_run, trust_new_host), port, service,
                                   add=False))
    except commands.UsageError as e:
        raise Exit(f"error: {e}", code=2) from None


@task(help={"purge_keys": "also delete the WireGuard keys (a new bootstrap makes new ones)",
            **COMMON})
def teardown(c, site=None, purge_keys=False, dry_run=False, trust_new_host=False):
    """Remove everything tunnelops made on both hosts; put back the files it edited."""
    try:
        _exit(commands.teardown(_opts(site, dry_run, trust_new_host), purge_keys))
    except commands.UsageError as e:
        raise Exit(f"error: {e}", code=2) from None


@task
def demo(c):
    """The whole story on this machine: lab up, bootstrap, a player's probe, verify."""
    from tunnelops.lab.demo import run  # the lab needs root; import it only here
    from tunnelops.lab.instance import Lab

    opts = _opts()
    if not run(Lab(), opts.console, opts):
        raise Exit("demo: something failed (see above)", code=1)


ns = Collection(bootstrap, add_port, remove_port, teardown, demo, lab)
