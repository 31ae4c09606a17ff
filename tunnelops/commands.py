"""The commands behind `tunnelops ...` (and `inv ...`): find and validate the site (before any
SSH), run the engine, record what it discovered, print. cli.py only parses arguments and
calls these.

What only some commands need is imported by them (verify, logs, teardown's steps), and a
run imports the engine and the console only once both hosts' SSH handshakes are under way:
that import then costs nothing, the handshakes' round trips being spent waiting anyway."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tunnelops import fleet, profile, prog
from tunnelops.inventory.edit import locked, update, update_discovered
from tunnelops.inventory.find import find_site, site_files
from tunnelops.inventory.new import new_site
from tunnelops.inventory.read import load
from tunnelops.inventory.schema import InventoryError
from tunnelops.inventory.write import save
from tunnelops.model.hosts import DEFAULT_HOME, HUB
from tunnelops.model.ports import PortSpec
from tunnelops.model.site import Site
from tunnelops.model.values import ModelError
from tunnelops.remote import Remote, RemoteError, Transcript, for_site, ssh_port

if TYPE_CHECKING:
    from rich.console import Console

    from tunnelops.report import RunReport
    from tunnelops.status import StatusReport
    from tunnelops.verify import VerifyReport


class UsageError(RuntimeError):
    """Bad input: one line naming the problem and the fix; nothing on any host changed."""


class CommandError(RuntimeError):
    """A command that could not do its job (a host unreachable, a container missing): one
    line naming the host and the fix."""


class Interrupted(RuntimeError):
    """Ctrl-C during a run: one line saying where each host was and how to converge."""


def _console() -> Console:
    from rich.console import Console  # not for --help, nor before the handshakes start

    return Console()


@dataclass
class Options:
    inventory_dir: Path
    site: str | None = None
    dry_run: bool = False
    trust_new_host: bool = False
    guard_seconds: int = 20
    console: Console = field(default_factory=_console)
    transcript: Transcript | None = None
    inventory_source: str = ""  # how inventory_dir was chosen, for messages


def _where(opts: Options) -> str:
    return f"{opts.inventory_dir} ({opts.inventory_source})" if opts.inventory_source \
        else str(opts.inventory_dir)


def resolve_site(opts: Options, vps: str | None = None, home: str | None = None, *,
                 converge: bool = False) -> tuple[Path, Site]:
    """The site file and its Site; a new file from --vps/--home when there is none yet.
    converge: the command changes hosts, so a site that collides with another site of the
    inventory on a host they share is refused here, before any SSH."""
    try:
        path = find_site(opts.inventory_dir, vps=vps, home=home, site=opts.site)
        if path is not None:
            site = load(path)
            homes = [str(h.host) for h in site.homes]
            if (vps and str(site.vps.host) != vps) or (home and home not in homes):
                raise UsageError(f"{path} describes vps={site.vps.host} "
                                 f"home{'s' if len(homes) > 1 else ''}={','.join(homes)}, "
                                 f"not {vps}/{home}: pass --site NAME for another site")
        else:
            if not (vps and home):
                raise UsageError(_no_site(opts, vps, home))
            name = opts.site or "site"
            site = new_site(name, vps, home)
            path = opts.inventory_dir / f"{name}.toml"
        if converge:
            fleet.check(site, path, fleet.others(path))
        return path, with_ssh_port(site, path)
    except (InventoryError, ModelError, fleet.Collision) as e:
        raise UsageError(str(e)) from None


def _no_site(opts: Options, vps: str | None, home: str | None) -> str:
    """Why there is no site to work on, and the command that makes one."""
    if not (vps or home):
        return (f"no site in {_where(opts)}: run {prog.cmd('bootstrap --vps HOST --home HOST')}"
                " first, or point --inventory (or $TUNNELOPS_INVENTORY) at your inventory")
    given = f"--vps {shlex.quote(vps)}" if vps else f"--home {shlex.quote(home or '')}"
    both = f"--vps {shlex.quote(vps or 'HOST')} --home {shlex.quote(home or 'HOST')}"
    return (f"{'--home' if vps else '--vps'} is missing: no site in {_where(opts)} has {given},"
            f" and a new one needs both hosts: {prog.cmd('bootstrap ' + both)}")


def with_ssh_port(site: Site, path: Path) -> Site:
    """The site with the VPS's real SSH port (an ssh_config alias's Port counts, not only
    host:port), so the firewall always lets it in and no service may take it."""
    port = ssh_port(str(site.vps.host), site.ssh_config)
    try:
        return dataclasses.replace(site, vps=dataclasses.replace(site.vps, port=port))
    except ModelError as e:
        raise UsageError(f"{path}: {e}") from None


def run(site: Site, path: Path, opts: Options, **mode: object) -> RunReport:
    profile.mark("run")
    remotes = for_site(site, trust_new=opts.trust_new_host, transcript=opts.transcript,
                       dry_run=opts.dry_run)
    for remote in remotes.values():
        remote.connect_soon()
    from tunnelops import ui  # while the handshakes are in flight (see above)
    from tunnelops.engine import Run

    profile.mark("imported")
    labels = {HUB: str(site.vps.host), **{h.name: str(h.host) for h in site.homes}}
    with ui.LiveUi(opts.console, labels) as live:
        engine = Run(site, dry_run=opts.dry_run, trust_new=opts.trust_new_host,
                     transcript=opts.transcript, ui=live, guard_seconds=opts.guard_seconds,
                     inventory_path=str(path), remotes=remotes, **mode)
        try:
            report = engine.execute()
        except KeyboardInterrupt:
            where = "; ".join(f"{labels[r]}: {t}" for r, t in engine.phases.last.items())
            raise Interrupted(
                f"interrupted ({where or 'before connecting'}): what was applied stays, a "
                f"change that could cut SSH puts itself back within {opts.guard_seconds}s "
                "unless proven; re-run the same command to converge") from None
    profile.mark("ran")
    _name_commands(report)
    ui.show(opts.console, report)
    profile.mark("shown")
    profile.record(report)
    if opts.dry_run:
        for remote in engine.remotes.values():
            for key in remote.new_host_keys:
                opts.console.print(f"dry run: new host key {key} trusted for this run only, "
                                   f"not written to {remote.known_hosts}",
                                   highlight=False, markup=False, soft_wrap=True)
    return report


def bootstrap(opts: Options, vps: str | None, home: str | None) -> RunReport:
    path, site = resolve_site(opts, vps, home, converge=True)
    report = run(site, path, opts)
    if not opts.dry_run and report.discovered:
        with locked(path):
            if not path.exists():
                save(path, site)
                opts.console.print(f"recorded the site in {path}")
        update_discovered(path, report.discovered["public_ip"],
                          report.discovered["wan_interface"] or None)
    return report


def _has_port(site: Site, spec: PortSpec, service: str | None) -> bool:
    return any(spec in s.ports for s in site.services if service in (None, s.name))


def change_port(opts: Options, spec_text: str, service: str | None, *, add: bool,
                home: str | None = None) -> RunReport:
    """add-port / remove-port: record it in the inventory, then converge the hosts, which
    touches exactly what the port needs (the VPS's forwarding of it to its home: one element
    of a port set with nftables; that home's firewall; the container's port mapping). HOME:
    the home whose service gets the port (needed only when the site has several). Bad input
    fails here, before any SSH connection -- a port another site of the inventory forwards
    on the same VPS too. The file is changed under its lock, against what it says at that
    moment: two commands at once both land (the second run then waits for the host lock)."""
    try:
        spec = PortSpec.parse(spec_text)
    except ModelError as e:
        raise UsageError(str(e)) from None
    path, site = resolve_site(opts)  # the other sites are compared below, after the flags
    noop: list[bool] = []

    def change(current: Site) -> Site:
        current = with_ssh_port(current, path)
        try:
            if service is not None:
                current.service(service)  # an unknown service is an error even when idle
            if home is not None:
                current.home(home)
            if _has_port(current, spec, service) == add:
                noop.append(True)
                fleet.check(current, path, fleet.others(path))
                return current
            new = (current.with_port_added(spec, service, home) if add
                   else current.with_port_removed(spec, service))
            fleet.check(new, path, fleet.others(path))
            return new
        except (ModelError, fleet.Collision, InventoryError) as e:
            raise UsageError(str(e)) from None

    new = change(site) if opts.dry_run else with_ssh_port(update(path, change), path)
    verb = "added" if add else "removed"
    if noop:
        opts.console.print(f"{spec} is {'already' if add else 'not'} in {path.name}: "
                           "converging the hosts only")
    elif not opts.dry_run:
        opts.console.print(f"{verb} {spec} in {path}")
    report = run(new, path, opts, expect_changes=not noop)
    if not report.ok and not opts.dry_run and not noop:
        # the file says what the hosts must become; any later run finishes it
        undo = prog.cmd(f"{'remove' if add else 'add'}-port {spec}")
        opts.console.print(f"{spec} is {verb} in {path.name}, but not on every host yet: "
                           f"re-run {prog.cmd('bootstrap')} to finish (or undo it with {undo})")
    return report


def teardown(opts: Options, purge_keys: bool = False, remove_users: bool = False,
             delete_data: bool = False) -> RunReport:
    """Remove everything tunnelops made on both hosts; keys too with purge_keys; the service
    users it created with remove_users (their home and data too with delete_data)."""
    if delete_data and not remove_users:
        raise UsageError("--delete-data deletes the home of the service users tunnelops "
                         "created: give --remove-users too")
    from tunnelops.steps import teardown as teardown_steps

    path, site = resolve_site(opts)
    return run(site, path, opts, teardown=True, expect_changes=True,
               teardown_opts=teardown_steps.Options(purge_keys, remove_users, delete_data))


def verify(opts: Options, whoami_url: str | None = None,
           as_json: bool = False) -> VerifyReport:
    """`inv verify`: check every link of the site end to end; the report is truthy when
    every row passes. Prints the table (or JSON for scripts and monitoring)."""
    from tunnelops.verify import run as run_verify
    from tunnelops.verify import view as verify_view

    _, site = resolve_site(opts)
    if whoami_url is not None and not whoami_url.startswith(("http://", "https://")):
        raise UsageError(f"--whoami-url {whoami_url!r} is not an http(s) URL: "
                         "use e.g. https://api.ipify.org")
    report = run_verify(site, whoami_url=whoami_url, trust_new=opts.trust_new_host,
                        transcript=opts.transcript)
    _name_verify_commands(report)
    if as_json:
        opts.console.file.write(report.to_json() + "\n")
    else:
        verify_view.show(opts.console, report)
    return report


def status(opts: Options, all_sites: bool = False, as_json: bool = False) -> StatusReport:
    """`status`: how the site (or every site of the inventory) is doing now, read-only: one
    script per host, no lock, hosts in parallel. The report is truthy when every tunnel
    handshook in the last 3 minutes and every service runs."""
    from tunnelops import status as status_mod
    from tunnelops.status import view as status_view

    if all_sites and opts.site:
        raise UsageError("--all and --site both name the sites: give one of them")
    if all_sites:
        paths = site_files(opts.inventory_dir)
        if not paths:
            raise UsageError(_no_site(opts, None, None))
        try:
            sites = [load(p) for p in paths]
        except (InventoryError, ModelError) as e:
            raise UsageError(str(e)) from None
    else:
        sites = [resolve_site(opts)[1]]
    report = status_mod.run(sites, trust_new=opts.trust_new_host, transcript=opts.transcript)
    if as_json:
        opts.console.file.write(report.to_json() + "\n")
    else:
        status_view.show(opts.console, report)
    return report


def _name_verify_commands(report: VerifyReport) -> None:
    """Commands that messages name, as the user runs tunnelops (see prog)."""
    for check in report.checks:
        check.hint = prog.named(check.hint)


def _name_commands(report: RunReport) -> None:
    """Commands that messages name, as the user runs tunnelops (see prog)."""
    for host in report.hosts.values():
        host.error = prog.named(host.error) if host.error else host.error
        for step in host.steps:
            step.notes = [prog.named(n) for n in step.notes]


def logs(opts: Options, service: str, *, follow: bool = False, lines: str | int = 50,
         out: BinaryIO | None = None, err: BinaryIO | None = None) -> bool:
    """`tunnelops logs SERVICE`: the container's logs, as its user at home, through one SSH
    connection; with follow, until Ctrl-C (which ends it normally)."""
    from tunnelops import logs as logs_mod

    try:
        count = logs_mod.parse_lines(lines)
    except ValueError as e:
        raise UsageError(str(e)) from None
    _, site = resolve_site(opts)
    try:
        svc = site.service(service)
    except ModelError as e:
        raise UsageError(str(e)) from None
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer

    def sink(stream: BinaryIO):
        def write(data: bytes) -> None:
            stream.write(data)
            stream.flush()
        return write

    home = Remote(str(site.home(svc.home or DEFAULT_HOME).host), ssh_config=site.ssh_config,
                  known_hosts=site.known_hosts, trust_new=opts.trust_new_host,
                  transcript=opts.transcript)
    try:
        status = home.stream(logs_mod.script(svc, follow=follow, lines=count),
                             sink(out), sink(err), hold_stdin=follow)
    except KeyboardInterrupt:
        return True  # the user stopped following: that is how --follow ends
    except RemoteError as e:
        raise CommandError(str(e)) from None
    finally:
        home.close()
    if status == logs_mod.NO_USER:
        raise CommandError(f"{home.dest}: user {svc.user} of service {svc.name} does not exist "
                           f"there yet: run {prog.cmd('bootstrap')}")
    if status == logs_mod.NO_CONTAINER:
        raise CommandError(f"{home.dest}: service {svc.name} has no container "
                           f"({svc.container_name}, user {svc.user}) yet: run "
                           f"{prog.cmd('bootstrap')}")
    if status != 0:
        raise CommandError(f"{home.dest}: podman logs {svc.container_name} (as {svc.user}) "
                           f"failed with exit status {status} (its message is above)")
    return True
