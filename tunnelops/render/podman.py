"""The rootless Podman container of a service, as `podman run` argv or a Quadlet unit.

The container's network makes its outbound traffic leave through the tunnel:
- slirp4netns: `slirp4netns:outbound_addr=wg0`, the seed's option (podman-run(1)), with
  `port_handler=slirp4netns`: the default handler (rootlessport) relays each connection from
  its own address, so the game saw 10.0.2.100 for every player.
- pasta: options follow "pasta:" comma-separated (podman-run(1) --network). We pass
  `--outbound,HOME_ADDRESS` (passt(1) -o/--outbound: bind outbound sockets to an address):
  the source address selects the tunnel's policy-routing rule. pasta's --outbound-if4 is
  avoided on purpose: it also makes wg0 the template interface for the container's
  addresses and routes, and wg0's routes live in table 201, not in main.
Ports are published on the tunnel's home address (`-p 192.168.2.2:PORT:PORT/PROTO`): the
forwarder's socket then answers from that address, so replies (UDP too, which has no
connection to follow) match home's rule `from 192.168.2.2 table 201` and go back through the
tunnel, whatever the player's address (client_ip = "preserve"), and to 192.168.2.1 alike.
Argument lists are never joined into shell text here (the engine quotes them), but for
`as_user`: the one shell wrapper every command run as a service user goes through.
Quadlet key names are those of podman-systemd.unit(5) ([Container] section).
"""

from __future__ import annotations

import hashlib
import json
import shlex

from tunnelops.model.service import Service
from tunnelops.model.tunnel import Tunnel
from tunnelops.model.values import ModelError

MANAGED = "# Managed by tunnelops: local edits are overwritten."
NETWORK_KINDS = ("slirp4netns", "pasta")
SPEC_LABEL = "tunnelops.spec"
SERVICE_LABEL = "tunnelops.service"
# the site's tunnel interface (tunnelops.naming), so sites side by side at one home tell
# their containers apart; not in the spec hash: a container made before it is not replaced
TUNNEL_LABEL = "tunnelops.tunnel"


def user_env(user_q: str, uid_expr: str, home_expr: str | None = None) -> str:
    """`env ...` for a command root runs as a user (`runuser -u USER -- ENV CMD`): what rootless
    podman needs from a login session, i.e. the user's runtime directory, home and its OWN
    D-Bus session bus. runuser keeps root's environment, and root's SSH session carries
    DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/0/bus (pam_systemd, dbus-user-session):
    podman then cannot reach the user's systemd ("dial unix /run/user/0/bus: permission
    denied"), falls back to cgroupfs with warnings and each call takes ~3x longer.
    `user_q` is the shell-quoted user name, `uid_expr` shell text giving its uid, `home_expr`
    its home (default: looked up)."""
    home = home_expr or f"$(getent passwd {user_q} | cut -d: -f6)"
    return (f"env XDG_RUNTIME_DIR=/run/user/{uid_expr} "
            f"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{uid_expr}/bus "
            f"HOME=\"{home}\"")


def as_user(user: str, argv_or_script: str, uid: str | None = None,
            home: str | None = None) -> str:
    """Shell running a command as USER with the environment rootless podman needs (UID,
    HOME: shell expressions for the user's uid and home, when the caller has them: each
    lookup is a program, ~50 ms on an emulated host)."""
    u = shlex.quote(user)
    uid_expr = uid if uid else f"$(id -u {u})"
    inner = shlex.quote("cd; " + argv_or_script)
    return f"runuser -u {u} -- {user_env(u, uid_expr, home)} sh -c {inner}"


def network_option(kind: str, t: Tunnel) -> str:
    if kind == "slirp4netns":
        return f"slirp4netns:outbound_addr={t.interface},port_handler=slirp4netns"
    if kind == "pasta":
        return f"pasta:--outbound,{t.home_address}"
    raise ModelError(f"unknown network kind {kind!r}: use slirp4netns or pasta")


def spec_hash(svc: Service, t: Tunnel, network: str) -> str:
    """16 hex digits identifying everything that defines the container, stored as a label
    so a changed service is recreated and an unchanged one left alone."""
    spec = {
        "version": 1,
        "name": svc.container_name,
        "image": svc.image,
        "user": svc.user,
        "network": network,
        "publish": publish_args(svc, t),
        "env": [list(pair) for pair in svc.env],
        "volumes": list(svc.volumes),
        "command": list(svc.command),
    }
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _publish(port_nft: str, proto: str, t: Tunnel) -> str:
    return f"{t.home_address}:{port_nft}:{port_nft}/{proto}"


def publish_args(svc: Service, t: Tunnel) -> list[str]:
    """One `-p` per port spec on the tunnel's home address, same port inside and out (the
    VPS forwards it unchanged)."""
    args: list[str] = []
    for port in svc.ports:
        args += ["-p", _publish(port.nft, port.proto, t)]
    return args


def run_args(svc: Service, t: Tunnel, network_kind: str, spec: str) -> list[str]:
    """argv after `podman` that creates and starts the service's container."""
    args = [
        "run", "-d",
        "--name", svc.container_name,
        "--label", f"{SPEC_LABEL}={spec}",
        "--label", f"{SERVICE_LABEL}={svc.name}",
        "--label", f"{TUNNEL_LABEL}={t.interface}",
        "--network", network_option(network_kind, t),
        *publish_args(svc, t),
    ]
    for key, value in svc.env:
        args += ["-e", f"{key}={value}"]
    for volume in svc.volumes:
        args += ["-v", volume]
    # `--`: nothing from the inventory after it is ever read as a podman option
    return [*args, "--restart", "unless-stopped", "--", svc.image, *svc.command]


def create_args(svc: Service, t: Tunnel, network_kind: str, spec: str, name: str) -> list[str]:
    """argv after `podman` creating (not starting) the service's container under `name`."""
    args = run_args(svc, t, network_kind, spec)
    i = args.index("--name")
    return ["create", *args[2:i + 1], name, *args[i + 2:]]


def _unit_value(value: str) -> str:
    """A value in a unit file: '%' is a systemd specifier, so it is doubled."""
    return value.replace("%", "%%")


def _unit_word(value: str) -> str:
    """One word of a space-separated unit value (Environment=, Exec=), systemd-quoted."""
    escaped = _unit_value(value)
    if escaped and not any(ch in escaped for ch in " \t\"'\\"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def device_unit(interface: str) -> str:
    """systemd's device unit for a network interface, named as `systemd-escape --path`
    names it (systemd.device(5)): `-` and other bytes outside [A-Za-z0-9:_.] become \\xNN."""
    path = f"sys/subsystem/net/devices/{interface}"
    out = []
    for i, ch in enumerate(path):
        if ch == "/":
            out.append("-")
        elif (ch.isascii() and ch.isalnum()) or ch in ":_" or (ch == "." and i > 0):
            out.append(ch)
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode()))
    return "".join(out) + ".device"


def tunnel_wait(t: Tunnel) -> tuple[list[str], list[str]]:
    """([Unit] lines, [Service] lines) that start a service's unit only once the tunnel is
    up, at boot and at every (re)start: its egress leaves through the tunnel, and without it
    slirp4netns refuses `outbound_addr=wg0` and pasta would bind egress to an address that is
    not there yet. A user manager sees the system's devices: the start waits for wg0's device
    unit (made by NetworkManager or wg-quick, whichever runs the tunnel), then for its address
    (set just after the link is made). The tunnel down for good: the start times out and
    Restart= tries again later, never so fast that systemd's start limit gives up on it."""
    dev = device_unit(t.interface)
    unit = [
        f"# Egress leaves through {t.interface}: start once it is up (NetworkManager or wg-quick)",
        f"Wants={dev}",
        f"After={dev}",
    ]
    service = [
        f"ExecStartPre=/bin/sh -c 'until ip -4 -o addr show dev {t.interface} 2>/dev/null "
        f"| grep -qF \" {t.home_address}/\"; do sleep 0.5; done'",
        "RestartSec=10",
    ]
    return unit, service


def tunnel_dropin(t: Tunnel) -> str:
    """A drop-in for a `podman generate systemd` unit (no Quadlet): the same tunnel wait."""
    unit, service = tunnel_wait(t)
    return "\n".join([MANAGED, "[Unit]", *unit, "", "[Service]", *service]) + "\n"


def quadlet_unit(svc: Service, t: Tunnel, network_kind: str, spec: str) -> str:
    """A Quadlet .container unit for the service's user (~/.config/containers/systemd/)."""
    container = [
        "[Container]",
        f"ContainerName={svc.container_name}",
        f"Image={_unit_value(svc.image)}",
        f"Network={network_option(network_kind, t)}",
        *(f"PublishPort={_publish(p.nft, p.proto, t)}" for p in svc.ports),
        *(f"Environment={_unit_word(f'{k}={v}')}" for k, v in svc.env),
        *(f"Volume={_unit_value(v)}" for v in svc.volumes),
        f"Label={SPEC_LABEL}={spec}",
        f"Label={SERVICE_LABEL}={svc.name}",
        f"Label={TUNNEL_LABEL}={t.interface}",
    ]
    if svc.command:
        container.append("Exec=" + " ".join(_unit_word(arg) for arg in svc.command))
    wait_unit, wait_service = tunnel_wait(t)
    sections = [
        [MANAGED, "[Unit]", f"Description=tunnelops service {svc.name}", *wait_unit],
        container,
        ["[Service]", *wait_service, "Restart=always"],
        ["[Install]", "WantedBy=default.target"],
    ]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"
