"""A service user and its rootless Podman: the account, Podman's version and images, and the
containers tunnelops made, each read as the user (its own XDG_RUNTIME_DIR and HOME)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TypedDict

from tunnelops.probes.base import Probe, q
from tunnelops.render.podman import SERVICE_LABEL, as_user

# the fields of a passwd entry in $_pw, split by the shell
SPLIT_PW = "IFS=:; set -f; set -- $_pw; unset IFS; set +f; _uid=$3 _comment=$5 _home=$6"


def lookup(user: str, otherwise: str) -> str:
    """Shell setting _uid, _home and _comment from the user's passwd entry (one getent, its
    fields split by the shell: `id`, `getent | cut` were a program each, ~50 ms apiece on an
    emulated host); OTHERWISE (which exits) when there is no such user."""
    return f"_pw=$(getent passwd {q(user)}) || {{ {otherwise}; }}; {SPLIT_PW}"


# Podman's version, kept by tunnelops beside the identity of the binary that said it: device,
# inode, size, mtime and ctime (a package upgrade replaces the file: a new inode and ctime);
# `podman --version` only when that identity is not the one recorded (~0.3 s under emulation
# where `stat` is ~0.05 s). A line cut short lacks its final " ok" and is not believed.
# Recorded only by runs that may change the host (KEEP: not a dry run, verify or status) and
# once /var/lib/tunnelops is there (a host tunnelops has never changed is not written to).
VERSION_CACHE = "/var/lib/tunnelops/podman-version"


def version_shell(keep: bool) -> str:
    record = (f"; [ -n \"$_v\" ] && [ -n \"$_s\" ] && [ -d {VERSION_CACHE.rsplit('/', 1)[0]} ] "
              f"&& printf '%s\\n' \"$_s $_b $_v ok\" > {VERSION_CACHE}" if keep else "")
    return (
        "_b=$(command -v podman); _s=$(stat -L -c %d:%i:%s:%Y:%Z \"$_b\" 2>/dev/null); _l=; "
        f"[ -n \"$_s\" ] && [ -f {VERSION_CACHE} ] && IFS= read -r _l < {VERSION_CACHE}; "
        "case $_l in \"$_s $_b \"?*\" ok\") _v=${_l#\"$_s $_b \"}; _v=${_v% ok};; "
        "*) _v=$(podman --version) && case $_v in \"podman version \"*) "
        f"_v=${{_v#podman version }};; *) _v=;; esac{record};; esac; "
        "[ -n \"$_v\" ] && echo \"version=$_v\"")


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
        return (f"{lookup(self.user, 'exit 0')}; echo \"uid=$_uid\"; echo \"home=$_home\"; "
                "echo \"comment=$_comment\"; "
                f"[ -e /var/lib/systemd/linger/{u} ] && echo linger=yes; "
                "if [ -d /run/user/$_uid ]; then echo runtime=yes; else echo runtime=; fi")

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
    # record the version for the next read (version_shell); not part of what is read: the
    # same section, the same value
    keep: bool = field(default=False, compare=False, metadata={"key": False})
    kind = "podman"
    slow = True

    def shell(self) -> str:
        has = "".join(f"podman image exists {q(i)} 2>/dev/null && echo has_image={q(i)}; "
                      for i in self.images)
        # the version as root (the same binary the user runs), from tunnelops's record when
        # the binary is the one that said it (version_shell)
        inner = f"echo nofile=$(ulimit -Hn); {has}"
        return (f"command -v podman >/dev/null || exit 0; {version_shell(self.keep)}; "
                f"if _pw=$(getent passwd {q(self.user)}); then {SPLIT_PW}; "
                f"{as_user(self.user, inner, uid='$_uid', home='$_home')}; else "
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
        return (f"{lookup(self.user, 'echo nouser; exit 0')}; command -v podman >/dev/null && "
                f"{as_user(self.user, inner, uid='$_uid', home='$_home')}")

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
