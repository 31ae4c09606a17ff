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


def _call(fn, *args, **kwargs) -> None:
    """Run a command: bad input exits 2 with its one line, a failed run exits 1."""
    try:
        report = fn(*args, **kwargs)
    except commands.UsageError as e:
        raise Exit(f"error: {e}", code=2) from None
    except commands.Interrupted as e:
        raise Exit(f"{e}", code=130) from None
    if not getattr(report, "ok", report):
        raise Exit(code=1)


@task(help={"vps": "the VPS: an ssh_config alias, host, user@host or user@host:port",
            "home": "the home server, the same way", **COMMON})
def bootstrap(c, vps=None, home=None, site=None, dry_run=False, trust_new_host=False):
    """Provision both hosts, from nothing to serving: tunnel, firewall, forwarding, services."""
    _call(commands.bootstrap, _opts(site, dry_run, trust_new_host), vps, home)


PORT_HELP = {"port": "PORT/PROTO or FIRST-LAST/PROTO, e.g. 12347/udp or 27015-27020/udp",
             "service": "the service it belongs to (required when the site has several)",
             **COMMON}


@task(help=PORT_HELP)
def add_port(c, port, service=None, site=None, dry_run=False, trust_new_host=False):
    """Expose one more port end to end: VPS filter and DNAT, home firewall, container."""
    _call(commands.change_port, _opts(site, dry_run, trust_new_host), port, service, add=True)


@task(help=PORT_HELP)
def remove_port(c, port, service=None, site=None, dry_run=False, trust_new_host=False):
    """Undo add-port: the port leaves the inventory and every rule made for it goes."""
    _call(commands.change_port, _opts(site, dry_run, trust_new_host), port, service, add=False)


@task(help={"purge_keys": "also delete the WireGuard keys (a new bootstrap makes new ones)",
            "remove_users": "also remove the service users tunnelops created (their home "
                            "and the services' data stay)",
            "delete_data": "with --remove-users: delete their home too, the services' data "
                           "with it",
            **COMMON})
def teardown(c, site=None, purge_keys=False, remove_users=False, delete_data=False,
             dry_run=False, trust_new_host=False):
    """Remove everything tunnelops made on both hosts; put back the files it edited."""
    _call(commands.teardown, _opts(site, dry_run, trust_new_host), purge_keys, remove_users,
          delete_data)


@task(help={"site": COMMON["site"],
            "json": "print the rows as JSON (for scripts and monitoring) instead of a table",
            "whoami_url": "what-is-my-address URL for the egress check (default: the site's "
                          "[site] whoami_url, else https://api.ipify.org)",
            "trust_new_host": COMMON["trust_new_host"]})
def verify(c, site=None, json=False, whoami_url=None, trust_new_host=False):
    """Check every link end to end and name the broken one with its fix (exit 1 if any)."""
    _call(commands.verify, _opts(site, trust_new_host=trust_new_host), whoami_url, json)


@task
def demo(c):
    """The whole story on this machine: lab up, bootstrap, a player's probe, verify."""
    from tunnelops.lab.demo import run  # the lab needs root; import it only here
    from tunnelops.lab.instance import Lab

    opts = _opts()
    if not run(Lab(), opts.console, opts):
        raise Exit("demo: something failed (see above)", code=1)


ns = Collection(bootstrap, add_port, remove_port, teardown, verify, demo, lab)
