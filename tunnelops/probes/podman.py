"""A service user and its rootless Podman: the account, Podman's version and images, and the
containers tunnelops made, each read as the user (its own XDG_RUNTIME_DIR and HOME)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypedDict

from tunnelops.probes.base import Probe, q
from tunnelops.render.podman import SERVICE_LABEL, as_user


def _kv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@dataclass(frozen=True)
class Account(Probe[dict[str, str]]):
    """Who the user is (uid, home, comment) and whether lingering and its runtime dir
    exist; {} when there is no such user."""

    user: str
    kind = "account"

    def shell(self) -> str:
        u = q(self.user)
        return (f"id {u} >/dev/null 2>&1 || exit 0; uid=$(id -u {u}); echo \"uid=$uid\"; "
                f"echo \"home=$(getent passwd {u} | cut -d: -f6)\"; "
                f"echo \"comment=$(getent passwd {u} | cut -d: -f5)\"; "
                f"[ -e /var/lib/systemd/linger/{u} ] && echo linger=yes; "
                "echo \"runtime=$([ -d /run/user/$uid ] && echo yes)\"")

    def parse(self, text: str) -> dict[str, str]:
        return _kv(text)


class PodmanInfo(TypedDict, total=False):
    version: str
    nofile: str  # the open files the user may hold (ulimit -Hn)
    images: list[str]  # which of the asked images are present


@dataclass(frozen=True)
class Podman(Probe[PodmanInfo]):
    """Podman's version, the open files the user may hold, and which of the service images
    it has, as the user; with no such user yet, root's Podman version (it still decides
    the network and Quadlet for the first run, which creates the user)."""

    user: str
    images: tuple[str, ...] = ()
    kind = "podman"
    slow = True

    def shell(self) -> str:
        u = q(self.user)
        has = "".join(f"podman image exists {q(i)} 2>/dev/null && echo has_image={q(i)}; "
                      for i in self.images)
        # `podman --version` (the same version as `podman version`'s client) answers before
        # Podman sets up its runtime: ~0.5 s under emulation where `podman version` took 1.3 s
        inner = ("v=$(podman --version) && case $v in \"podman version \"*) "
                 "echo \"version=${v#podman version }\";; esac; "
                 f"echo nofile=$(ulimit -Hn); {has}")
        return ("command -v podman >/dev/null || exit 0; "
                f"if id {u} >/dev/null 2>&1; then {as_user(self.user, inner)}; else "
                "podman --version | sed -n 's/^podman version /version=/p'; "
                "echo nofile=$(ulimit -Hn); fi")

    def parse(self, text: str) -> PodmanInfo:
        info: PodmanInfo = {}
        images = []
        for line in text.splitlines():
            k, _, v = line.partition("=")
            if k == "has_image":
                images.append(v)
            elif k in ("version", "nofile"):
                info[k] = v  # type: ignore[literal-required]
        if info or images:
            info["images"] = images
        return info


class ContainersInfo(TypedDict):
    user: bool  # the user exists
    containers: list[dict]  # `podman ps -a --format json` of tunnelops's containers
    created: dict[str, list[str]]  # name -> the command it was created with
    networks: dict[str, str]  # name -> its network mode (HostConfig.NetworkMode)


@dataclass(frozen=True)
class Containers(Probe[ContainersInfo]):
    """The user's tunnelops containers (label tunnelops.service): their state and ports as
    `podman ps` shows them, and how each was created (its --network is not in `ps`): two
    podman commands (each one seconds under emulation), the listing's ids inspected, read
    from its JSON by shell builtins."""

    user: str
    kind = "containers"
    slow = True

    def shell(self) -> str:
        u = q(self.user)
        label = f"label={SERVICE_LABEL}"
        # the listing first (printed last: the parser reads the inspected lines first); its
        # containers' ids are its top-level "Id" lines (Podman indents its JSON by 4)
        inner = (f"j=$(podman ps -a --filter {label} --format json); ids=; "
                 "IFS='\n'; set -f; for l in $j; do case $l in '    \"Id\": \"'*) "
                 "l=${l#*: \\\"}; ids=\"$ids ${l%%\\\"*}\";; esac; done; unset IFS; "
                 # a listing of another shape: its ids as before
                 "[ -n \"$ids\" ] || case $j in *'\"Id\"'*) "
                 f"ids=$(podman ps -aq --filter {label});; esac; "
                 "[ -z \"$ids\" ] || podman container inspect --format \"create {{.Name}} "
                 "{{json .HostConfig.NetworkMode}} {{json .Config.CreateCommand}}\" "
                 "$ids 2>/dev/null; printf '%s\\n' \"$j\"")
        return (f"id {u} >/dev/null 2>&1 || {{ echo nouser; exit 0; }}; "
                f"command -v podman >/dev/null && {as_user(self.user, inner)}")

    def parse(self, text: str) -> ContainersInfo:
        out: ContainersInfo = {"user": text.strip() != "nouser", "containers": [],
                               "created": {}, "networks": {}}
        listing: list[str] = []
        for line in text.splitlines():
            if line.startswith("create ") and not listing:
                name, mode, cmd = [*line[len("create "):].split(" ", 2), "", ""][:3]
                out["created"][name] = _loads(cmd, None)
                out["networks"][name] = _loads(mode, "") or ""
            elif listing or line.startswith(("[", "{")):
                listing.append(line)
        out["containers"] = _loads("\n".join(listing), []) or []
        return out


def _loads(text: str, default: object) -> object:
    try:
        return json.loads(text) if text.strip() else default
    except json.JSONDecodeError:
        return default


def find(info: ContainersInfo, name: str) -> dict | None:
    return next((c for c in info["containers"] if name in (c.get("Names") or [])), None)


@dataclass(frozen=True)
class RestartCounts(Probe[dict[str, int]]):
    """How many times podman restarted each of the user's tunnelops containers (its
    restart policy: `podman ps` has no such column before Podman 4.6), by name."""

    user: str
    kind = "restarts"
    slow = True

    def shell(self) -> str:
        inner = ("podman container inspect --format '{{.Name}} {{.RestartCount}}' "
                 f"$(podman ps -aq --filter label={SERVICE_LABEL}) 2>/dev/null")
        return (f"id {q(self.user)} >/dev/null 2>&1 || exit 0; "
                f"command -v podman >/dev/null && {as_user(self.user, inner)}")

    def parse(self, text: str) -> dict[str, int]:
        out = {}
        for line in text.splitlines():
            name, _, count = line.strip().partition(" ")
            if name and count.isdigit():
                out[name] = int(count)
        return out
