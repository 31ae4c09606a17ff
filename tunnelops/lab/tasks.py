"""Tasks for the lab: `lab.up`, `lab.down`, `lab.status`, `lab.ssh HOST`.

lab.up writes the lab's site file into the inventory directory the other commands read
(--inventory, $TUNNELOPS_INVENTORY, ...), so `bootstrap --vps lab-vps --home lab-home` finds it."""

from __future__ import annotations

import os

from invoke import Collection, Context, Exit
from rich.console import Console
from rich.table import Table

from tunnelops import prog
from tunnelops.flags import inventory_dir, task
from tunnelops.lab.instance import Lab, LabError
from tunnelops.lab.topology import MAX_HOMES, Topology

_NAME_HELP = {"name": "lab instance name (default: $TUNNELOPS_LAB or 'lab')",
              "index": "instance number 0-99, picks its address range (default 0)"}


def make_lab(c: Context, name: str | None, index: str | int | None,
             homes: str | int | None = None) -> Lab:
    found = inventory_dir(c)
    try:
        return Lab(Topology(name or os.environ.get("TUNNELOPS_LAB", "lab"),
                            int(index if index is not None  # invoke passes a string
                                else os.environ.get("TUNNELOPS_LAB_INDEX", "0")),
                            int(homes or 1)),
                   inventory_dir=found.path)
    except ValueError as e:
        raise Exit(f"lab: {e}", code=2) from e


def need_root() -> None:
    if os.geteuid() != 0:
        raise Exit("lab: needs root (namespaces, mounts, links): run it with sudo or as root",
                   code=2)


@task(help={"rtt_ms": "add this much WAN round-trip latency between the internet and the VPS",
            "homes": f"how many home servers behind the NAT router: lab-home, lab-home2, ... "
                     f"(1-{MAX_HOMES}, default 1); the site file has each home with a service",
            **_NAME_HELP})
def up(c, rtt_ms=0, name=None, index=None, homes=None):
    """Bring the lab up: lab-vps, lab-home behind NAT, and the internet, on this machine."""
    need_root()
    lab = make_lab(c, name, index, homes)
    try:
        times = lab.up(rtt_ms=int(rtt_ms))
    except LabError as e:
        raise Exit(f"lab.up: {e}", code=1) from e
    console = Console()
    if "already_up" in times:
        console.print(f"lab '{lab.topo.name}' is already up: nothing to do")
    else:
        console.print(f"lab '{lab.topo.name}' up in {times['total']:.1f}s "
                      f"(ssh_config: {lab.ssh_config}, inventory: {lab.inventory})")
        vps, home = lab.topo.alias("vps"), lab.topo.alias("home")
        console.print(f"next: {prog.cmd(f'bootstrap --vps {vps} --home {home}')}"
                      if lab.topo.homes == 1 else
                      f"next: {prog.cmd(f'bootstrap --site {lab.topo.name}')}",
                      highlight=False, markup=False)
    _table(console, lab)


@task(help=_NAME_HELP)
def down(c, name=None, index=None):
    """Remove every namespace, link, process and file the lab made (also after a crash)."""
    need_root()
    lab = make_lab(c, name, index)
    try:
        lab.down()
    except LabError as e:
        raise Exit(f"lab.down: {e}", code=1) from e
    Console().print(f"lab '{lab.topo.name}' is down")


@task(help=_NAME_HELP)
def status(c, name=None, index=None):
    """Show each lab host: its address, its daemons and whether SSH answers."""
    _table(Console(), make_lab(c, name, index))


@task(help={"host": "vps, home, home2... (or the alias: lab-vps, lab-home)",
            "user": "log in as this user instead of root (e.g. ops, the sudo user)", **_NAME_HELP})
def ssh(c, host, user=None, name=None, index=None):
    """Open a shell on a lab host through real SSH with the lab's ssh_config."""
    lab = make_lab(c, name, index)
    role = host.removeprefix(f"{lab.topo.name}-")
    if role not in lab.hosts:
        raise Exit(f"lab.ssh: unknown host {host!r}: use one of "
                   f"{', '.join(lab.topo.alias(r) for r in lab.hosts)}", code=2)
    dest = lab.topo.alias(role) if not user else f"{user}@{lab.topo.alias(role)}"
    os.execvp("ssh", ["ssh", "-F", str(lab.ssh_config), dest])


def _table(console: Console, lab: Lab) -> None:
    table = Table(title=f"lab '{lab.topo.name}'")
    for col in ("host", "namespace", "address", "daemons", "ssh"):
        table.add_column(col)
    for row in lab.status():
        ssh_ = row.ssh
        style = "green" if ssh_.startswith("yes") else ("red" if ssh_ == "no" else "")
        table.add_row(lab.topo.alias(row.role) if row.role in lab.hosts else row.role, row.netns,
                      row.address, ", ".join(row.daemons) or "-",
                      f"[{style}]{ssh_}[/]" if style else ssh_)
        if not row.present:
            table.rows[-1].style = "dim"
    console.print(table)


def collection() -> Collection:
    return Collection("lab", up, down, status, ssh)
