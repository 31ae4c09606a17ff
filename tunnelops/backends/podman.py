"""A service's rootless container at home, the seed's way: run by the service's user, with
`--network slirp4netns:outbound_addr=wg0,port_handler=slirp4netns` (pasta's equivalent on
Podman 5, where pasta is the default) and one `-p 192.168.2.2:PORT:PORT` per port, so
players' traffic lands in it with their own address and its own egress leaves through the
VPS.

- The container carries a hash of its specification as a label: it is replaced only when the
  specification changed; otherwise a re-run leaves it running (same id, same start time).
- It survives a reboot: a Quadlet unit (Podman >= 4.4) or a `podman generate systemd` user
  unit, with lingering for the user. Without systemd as PID 1 (the lab) it is started
  directly, and the recap says so.
- Replies, UDP included: the forwarder (slirp4netns or pasta) answers from the address the
  port is published on, 192.168.2.2, so policy routing (`from 192.168.2.2 table 201`) sends
  them back through wg0 to whatever address the player has (with client_ip = "snat" they go
  to 192.168.2.1, which `to 192.168.2.1 table 201` routes the same way).
"""

from __future__ import annotations

import shlex

from tunnelops.backends.originals import record_shell
from tunnelops.changes import CommandChange, FileChange, RemoveFile, StepPlan
from tunnelops.model.service import Service
from tunnelops.render import podman as render
from tunnelops.render.podman import as_user
from tunnelops.steps import sites
from tunnelops.steps.context import NETWORK_ONLINE, Ctx, PlanError


def _version(info: dict) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in info.get("version", "0").split("-")[0].split(".")[:2])
    except ValueError:
        return (0,)


def network_kind(ctx: Ctx, info: dict, svc: Service | None = None) -> str:
    """The service's own choice, else pasta where Podman 5 made it the default (or
    slirp4netns is absent), else slirp4netns."""
    if svc is not None and svc.network != "auto":
        if svc.network == "pasta" and (4, 4) > _version(info) > (0,):
            raise PlanError(f"service {svc.name} asks for network pasta, which Podman "
                            f"{info.get('version')} does not have (4.4 or later does): set "
                            "network = \"slirp4netns\" or \"auto\"")
        return svc.network
    has_slirp, has_pasta = ctx.facts.has("slirp4netns"), ctx.facts.has("pasta")
    if _version(info) >= (5, 0):
        return "pasta" if has_pasta or not has_slirp else "slirp4netns"
    if not has_slirp and has_pasta and _version(info) >= (4, 4):
        return "pasta"
    return "slirp4netns"


def user_dirs(user: str, home: str, rel: str) -> str:
    """Shell making HOME/REL (and its missing parents) as the user, noting each directory it
    had to make, so teardown removes exactly those (when empty) and no other."""
    parts = rel.strip("/").split("/")
    out = []
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        path = f"{home}/{sub}"
        out.append(f"[ -d {shlex.quote(path)} ] || {{ "
                   f"{as_user(user, f'mkdir {shlex.quote(sub)}')} && "
                   f"{{ {record_shell(f'emptydir {path}')}; }}; }}")
    return "\n".join(out)


def _unit_dir(home: str) -> str:
    return f"{home}/.config/containers/systemd"


def generated_dropin_path(home: str, svc: Service) -> str:
    """The tunnel-wait drop-in of a `podman generate systemd` unit (Podman < 4.4)."""
    return (f"{home}/.config/systemd/user/container-{svc.container_name}.service.d/"
            "90-tunnelops-tunnel.conf")


NETWORK_ONLINE_DROPIN = NETWORK_ONLINE  # the host's: shared by its sites
NETWORK_ONLINE_WANTS = (
    "# Managed by tunnelops: local edits are overwritten.\n"
    "# Rootless Quadlet units wait for the system's network-online.target (Podman's\n"
    "# podman-user-wait-network-online.service, 90 s timeout); with nothing to pull it in\n"
    "# (Debian 13 with NetworkManager) it never becomes active and every start waits 90 s.\n"
    "[Unit]\n"
    "Wants=network-online.target\n")


def plan_network_online(ctx: Ctx) -> StepPlan:
    """The system's network-online.target wanted at boot (and reached now), so a rootless
    service's start waits for the network for as long as it takes to come up, not 90 s."""
    p = StepPlan("network-online")
    if not ctx.facts.systemd or not ctx.services:
        return p
    old = ctx.facts.file(NETWORK_ONLINE_DROPIN)
    if old is None or old.content != NETWORK_ONLINE_WANTS:
        d = shlex.quote(NETWORK_ONLINE_DROPIN.rsplit("/", 1)[0])
        if old is None:
            p.changes.append(CommandChange(
                f"create {d}", f"[ -d {d} ] || {{ mkdir {d} && {{ "
                               f"{record_shell('emptydir ' + d)}; }}; }}"))
        p.changes.append(FileChange(NETWORK_ONLINE_DROPIN, NETWORK_ONLINE_WANTS,
                                    old.content if old else None))
        p.post.append("systemctl daemon-reload && systemctl start network-online.target")
    return p


PULL_TIMEOUT_S = 600
# the comment of a user tunnelops made: teardown --remove-users knows it by it even after a
# plain teardown removed tunnelops's records (the user, with its data, was kept then)
USER_COMMENT = "tunnelops service user"


def plan_users(ctx: Ctx) -> StepPlan:
    """The service users, made before anything is configured on either host (prepare): a
    user that cannot be made fails the run while nothing forwards to it yet."""
    p, f = StepPlan("service-users"), ctx.facts
    for user in sorted({s.user for s in ctx.services}):
        info, u = f.users.get(user, {}), shlex.quote(user)
        if not info.get("uid"):
            p.changes.append(CommandChange(
                f"create user {user} for rootless podman",
                f"useradd -m -c {shlex.quote(USER_COMMENT)} {u} 2>/dev/null || "
                f"adduser -D -g {shlex.quote(USER_COMMENT)} {u}\n"
                f"{record_shell(f'user {user}')}\n"
                f"grep -q '^{user}:' /etc/subuid || usermod --add-subuids 200000-265535 {u}\n"
                f"grep -q '^{user}:' /etc/subgid || usermod --add-subgids 200000-265535 {u}"))
        if f.systemd:
            if info.get("linger") != "yes":
                p.changes.append(CommandChange(f"enable lingering for {user}",
                                               f"loginctl enable-linger {u}; "
                                               + record_shell(f"linger {user}")))
        elif info.get("runtime") != "yes":
            p.changes.append(CommandChange(
                f"create /run/user/UID for {user} (what logind would do)",
                f"install -d -m 700 -o {u} -g {u} /run/user/$(id -u {u}); "
                + record_shell(f"runtime-dir {user}")))
    return p


def plan_images(ctx: Ctx) -> StepPlan:
    """Each service's image present at home, pulled first (bounded) if it is not: a missing
    or misspelt image fails before the VPS forwards anything to it."""
    p = StepPlan("images")
    pulled: set[tuple[str, str]] = set()
    for svc in ctx.services:
        have = ctx.facts.users.get(svc.user, {}).get("images", [])
        if svc.image in have or (svc.user, svc.image) in pulled:
            continue
        pulled.add((svc.user, svc.image))
        img = shlex.quote(svc.image)
        p.changes.append(CommandChange(
            f"pull image {svc.image} for {svc.user}",
            as_user(svc.user, f"podman image exists {img} || {{ " + _or_fail(
                f"timeout {PULL_TIMEOUT_S} podman pull -q {img}",
                f"image {svc.image} of service {svc.name} cannot be pulled",
                ": check its name and the host's access to the registry") + "; }")))
    return p


def created_network(cmd: list[str]) -> str:
    """The --network a container was created with, from its create command ("" if none)."""
    for i, arg in enumerate(cmd):
        if arg in ("--network", "--net") and i + 1 < len(cmd):
            return cmd[i + 1]
        for flag in ("--network=", "--net="):
            if arg.startswith(flag):
                return arg[len(flag):]
    return ""


def published(container: dict) -> set[tuple[str, int, int]]:
    """(proto, host port, container port) of every port `podman ps` shows published."""
    out = set()
    for p in container.get("Ports") or []:
        for k in range(int(p.get("range") or 1)):
            out.add((p.get("protocol", "tcp"), int(p["host_port"]) + k,
                     int(p["container_port"]) + k))
    return out


def spec_drift(svc: Service, container: dict, created: list[str] | None,
               network: str) -> str | None:
    """Why a container whose spec label matches is still not the service's: created by hand
    (or by another tool) with the label copied but another network or other ports."""
    if created:
        have = created_network(created)
        if have != network:
            return f"created with --network {have or '(none)'}, not {network}"
    want = {(p.proto, n, n) for p in svc.ports for n in range(p.first, p.last + 1)}
    have_ports = published(container)
    if container.get("Ports") is not None and have_ports != want:
        shown = ", ".join(f"{h}->{c}/{pr}" for pr, h, c in sorted(have_ports)) or "none"
        return f"publishes {shown}"
    return None


def plan_service(ctx: Ctx, svc: Service) -> StepPlan:
    p = StepPlan(f"service:{svc.name}")
    f, t = ctx.facts, ctx.tunnel
    info = f.users.get(svc.user, {})
    kind = network_kind(ctx, info, svc)
    spec = render.spec_hash(svc, t, render.network_option(kind, t))
    current = next((c for c in info.get("containers", [])
                    if c.get("Labels", {}).get(render.SERVICE_LABEL) == svc.name), None)
    run = "podman " + shlex.join(render.run_args(svc, t, kind, spec))
    rm = f"podman rm -f -t 5 {shlex.quote(svc.container_name)} >/dev/null 2>&1 || true"
    quadlet = f.systemd and _version(info) >= (4, 4)
    home = info.get("home") or f"/home/{svc.user}"
    unit_changed = False  # a unit file (or drop-in) written: the user's systemd must reload
    if quadlet:
        unit_path = f"{_unit_dir(home)}/{svc.container_name}.container"
        unit = render.quadlet_unit(svc, t, kind, spec)
        old = f.file(unit_path)
        if old is None:  # by the user: root's `mkdir -p` would leave ~/.config root's, 0700
            p.changes.append(CommandChange(
                f"create ~/.config/containers/systemd of {svc.user}",
                user_dirs(svc.user, home, ".config/containers/systemd")))
        if old is None or old.content != unit:
            unit_changed = True
            p.changes.append(FileChange(unit_path, unit, old.content if old else None,
                                        owner=f"{svc.user}:{svc.user}"))
    elif f.systemd:  # the generated unit waits for the tunnel through a drop-in
        dropin = generated_dropin_path(home, svc)
        want, old = render.tunnel_dropin(t), f.file(dropin)
        if old is None:
            p.changes.append(CommandChange(
                f"create the drop-in directory of container-{svc.container_name}.service",
                user_dirs(svc.user, home, dropin.rsplit("/", 1)[0]
                          .removeprefix(f"{home}/"))))
        if old is None or old.content != want:
            unit_changed = True
            p.changes.append(FileChange(dropin, want, old.content if old else None,
                                        owner=f"{svc.user}:{svc.user}"))
    same = current is not None and current.get("Labels", {}).get(render.SPEC_LABEL) == spec
    drift = spec_drift(svc, current, info.get("created", {}).get(svc.container_name),
                       render.network_option(kind, t)) if same and current else None
    running = current is not None and current.get("State") == "running"
    service_unit = f"{svc.container_name}.service"
    if same and not drift and unit_changed:  # e.g. the ordering changed: same container
        p.changes.append(CommandChange(f"reload the systemd user units of {svc.user}",
                                       as_user(svc.user, "systemctl --user daemon-reload")))
    if not same or drift:
        why = "create" if current is None else \
            f"replace (its specification changed{': ' + drift if drift else ''})"
        check = "podman " + shlex.join(render.create_args(svc, t, kind, spec, _new(svc)))
        if quadlet:
            # the new specification checked first (image, options), the old container
            # untouched until then; the unit's restart then replaces it
            script = as_user(svc.user, f"{_checked(svc, check)}; podman rm {_new(svc)} "
                                       ">/dev/null; systemctl --user daemon-reload && "
                                       f"systemctl --user restart {service_unit}")
        elif current is None:
            script = as_user(svc.user, f"{rm}; {run} >/dev/null")
        else:
            script = as_user(svc.user, _swap(svc, check))
        p.changes.append(CommandChange(f"{why} container {svc.container_name} ({kind})",
                                       script, "+ " + run))
        if current is not None:
            p.notes.append(f"restarts {svc.container_name} (its players are dropped for a "
                           f"moment): {_what_changes(svc, current)}")
    elif not running:
        start = (f"systemctl --user start {service_unit}" if quadlet
                 else f"podman start {shlex.quote(svc.container_name)} >/dev/null")
        p.changes.append(CommandChange(f"start container {svc.container_name}",
                                       as_user(svc.user, start)))
    if not f.systemd:
        p.notes.append(f"no systemd (PID 1 is {f.pid1 or '?'}): {svc.container_name} runs "
                       "directly and will not come back after a reboot")
    elif quadlet:
        p.notes.append(f"{service_unit}: Quadlet unit, {svc.user} lingering: starts at boot "
                       f"once {t.interface} is up")
    elif not quadlet:
        p.notes.append(f"Podman {info.get('version')} has no Quadlet: "
                       "a generated systemd user unit")
        if not same or drift:
            p.changes.append(CommandChange(
                f"install a systemd user unit for {svc.container_name}",
                as_user(svc.user, f"mkdir -p ~/.config/systemd/user && cd ~/.config/systemd/user"
                                  f" && podman generate systemd --new --name --files "
                                  f"{shlex.quote(svc.container_name)} >/dev/null && "
                                  f"systemctl --user daemon-reload && systemctl --user enable "
                                  f"container-{svc.container_name}.service")))
    p.notes.append(f"{svc.container_name}: {render.network_option(kind, t)}")
    return p


def _new(svc: Service) -> str:
    return f"{svc.container_name}-new"


def _checked(svc: Service, create: str) -> str:
    """Shell: create the new container beside the old one (nothing is bound yet), or fail
    with podman's reason in one line while the old one goes on serving."""
    new = shlex.quote(_new(svc))
    return (f"podman rm -f {new} >/dev/null 2>&1; " + _or_fail(
        create, f"{svc.container_name}: the new container cannot be created",
        "; the old one still serves"))


def _or_fail(command: str, what: str, fix: str, before_exit: str = "") -> str:
    """Shell running COMMAND; if it fails (after BEFORE_EXIT), the step fails with one line:
    WHAT (the last line of COMMAND's own error)FIX."""
    q, undo = shlex.quote, f"{before_exit}; " if before_exit else ""
    return (f"err=$({command} 2>&1 >/dev/null) || {{ {undo}printf '%s (%s)%s\\n' {q(what)} "
            f"\"$(printf '%s' \"$err\" | tail -n 1)\" {q(fix)} >&2; exit 1; }}")


def _swap(svc: Service, create: str) -> str:
    """Shell replacing the service's container so that the old one serves until the new one
    runs: create the new one, stop the old one (their ports are the same), start the new
    one; if it does not start, the old one is started again and the step fails saying why."""
    old, new = shlex.quote(svc.container_name), shlex.quote(_new(svc))
    back = f"podman rm -f {new} >/dev/null 2>&1; podman start {old} >/dev/null 2>&1"
    return (f"{_checked(svc, create)}; podman stop -t 5 {old} >/dev/null 2>&1; "
            + _or_fail(f"podman start {new}", f"{svc.container_name}: the new container "
                       "does not start", "; the old one serves again", before_exit=back)
            + f"; podman rm -f {old} >/dev/null && podman rename {new} {old}")


def _what_changes(svc: Service, current: dict) -> str:
    want = sorted((p.proto, n) for p in svc.ports for n in range(p.first, p.last + 1))
    have = sorted((x.get("protocol", "tcp"), int(x["host_port"]) + k)
                  for x in current.get("Ports") or [] for k in range(int(x.get("range") or 1)))
    return "its ports change" if want != have else "its specification changed"


def ours(ctx: Ctx, user: str, container: dict) -> bool:
    """Is this tunnelops container the site's? Its tunnel label says so; one made before
    the label (an older tunnelops: one site per host) is, unless another site's record on
    the host claims it."""
    labels = container.get("Labels") or {}
    if render.SERVICE_LABEL not in labels:
        return False
    if render.TUNNEL_LABEL in labels:
        return labels[render.TUNNEL_LABEL] == ctx.iface
    cname = (container.get("Names") or [""])[0]
    return not any(f"{user}/{cname}" in c.containers for c in sites.others(ctx))


def plan_removed(ctx: Ctx) -> StepPlan:
    """The site's containers at this home for services it no longer has here (another
    site's are never touched)."""
    p = StepPlan("services-removed")
    wanted = {s.name for s in ctx.services}
    for user, info in ctx.facts.users.items():
        for c in info.get("containers", []):
            name = c.get("Labels", {}).get(render.SERVICE_LABEL)
            if name and name not in wanted and ours(ctx, user, c):
                cname = (c.get("Names") or [f"tunnelops-{name}"])[0]
                p.changes.append(CommandChange(
                    f"remove container {cname} (service {name} is gone)",
                    as_user(user, f"podman rm -f -t 5 {shlex.quote(cname)} >/dev/null")))
                unit = f"{info.get('home', '')}/.config/containers/systemd/{cname}.container"
                if ctx.facts.file(unit):
                    p.changes.append(RemoveFile(unit, ctx.facts.file(unit).content))
    return p
