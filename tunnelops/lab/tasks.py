"""Tasks for the lab: `lab.up`, `lab.down`, `lab.status`, `lab.ssh HOST`.

lab.up writes the lab's site file into the inventory directory the other commands read
(--inventory, $TUNNELOPS_INVENTORY, ...), so `bootstrap --vps lab-vps --home lab-home` finds it."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from invoke import Collection, Context, Exit

from tunnelops import prog
from tunnelops.flags import inventory_dir, task
from tunnelops.lab.topology import MAX_HOMES, Topology

if TYPE_CHECKING:  # imported by the tasks that use them: `--help` needs neither
    from rich.console import Console

    from tunnelops.lab.instance import Lab

_NAME_HELP = {"name": "lab instance name (default: $TUNNELOPS_LAB or 'lab')",
              "index": "instance number 0-99, picks its address range (default 0)"}


def make_lab(c: Context, name: str | None, index: str | int | None, *,
             vm: bool | None = None, report=None, homes: str | int | None = None) -> Lab:
    """The instance; a VM instance (VmLab) when asked for, or when it was brought up as one
    (so lab.down, lab.status and lab.ssh need no --vm). HOMES: how many home servers (a
    namespace lab only)."""
    from tunnelops.lab.vm import open_lab

    found = inventory_dir(c)
    try:
        return open_lab(Topology(name or os.environ.get("TUNNELOPS_LAB", "lab"),
                                 int(index if index is not None  # invoke passes a string
                                     else os.environ.get("TUNNELOPS_LAB_INDEX", "0")),
                                 int(homes or 1)),
                        inventory_dir=found.path, vm=vm, report=report)
    except ValueError as e:
        raise Exit(f"lab: {e}", code=2) from e


def need_root() -> None:
    if os.geteuid() != 0:
        raise Exit("lab: needs root (namespaces, mounts, links): run it with sudo or as root",
                   code=2)


@task(help={"rtt_ms": "add this much WAN round-trip latency between the internet and the VPS",
            "vm": "make the VPS and home qemu VMs (Debian 13, systemd, kernel WireGuard, "
                  "NetworkManager, firewalld 2, Podman 5): ~2-4 min to boot, plus ~3 min "
                  "once to build the image",
            "homes": f"how many home servers behind the NAT router: lab-home, lab-home2, ... "
                     f"(1-{MAX_HOMES}, default 1; namespaces only); the site file has each "
                     "home with a service",
            **_NAME_HELP})
def up(c, rtt_ms=0, name=None, index=None, vm=False, homes=None):
    """Bring the lab up: lab-vps, lab-home behind NAT, and the internet, on this machine."""
    from rich.console import Console

    from tunnelops.lab.procs import LabError
    from tunnelops.lab.progress import live
    from tunnelops.lab.vm import is_vm_instance

    need_root()
    console = Console()
    plain = make_lab(c, name, index, vm=False, homes=homes)
    vm = vm or is_vm_instance(plain)
    if vm and not is_vm_instance(plain) and plain.is_up():
        raise Exit(f"lab.up: '{plain.topo.name}' is up as a namespace lab: "
                   f"`lab.down --name {plain.topo.name}` first", code=1)
    if vm and plain.topo.homes > 1:
        raise Exit("lab.up: --homes is for the namespace lab (the VM tier has one home): "
                   "drop --vm or --homes", code=2)
    with live(console) if vm else contextlib.nullcontext(None) as report:
        lab = make_lab(c, name, index, vm=vm, report=report, homes=homes)
        try:
            times = lab.up(rtt_ms=int(rtt_ms))
        except LabError as e:
            raise Exit(f"lab.up: {e}", code=1) from e
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
    from rich.console import Console

    from tunnelops.lab.procs import LabError

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
    from rich.console import Console

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
    from rich.table import Table

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
