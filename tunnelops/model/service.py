"""Service: one container run by a rootless Podman user at home, exposed on the VPS: its
image, user, ports, environment, volumes, command and network."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tunnelops.model.ports import PortSpec
from tunnelops.model.values import ModelError, Where, check_name, check_text, show

USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
SERVICE_NETWORKS = ("auto", "pasta", "slirp4netns")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# An image reference as container tools parse it (distribution/reference's grammar):
# [domain[:port]/]path-component[/path-component...][:tag][@algorithm:hex]
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_RE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")
SYSTEM_UID_MAX = 999  # below 1000: root and the system's own accounts


def _check_volume(value: object, where: Where) -> str:
    text = check_text(value, "volume", where)
    parts = text.split(":")
    if not 2 <= len(parts) <= 3 or not all(parts) or not parts[1].startswith("/"):
        raise ModelError(f"volume {show(text)} is not HOST:CONTAINER[:OPTIONS]: "
                         "use e.g. \"/srv/game:/data:Z\"", where=where)
    return text


@dataclass(frozen=True)
class Service:
    """One container run by a rootless Podman user at home, exposed on the VPS."""

    name: str
    image: str
    ports: tuple[PortSpec, ...]
    user: str
    env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    # the container's network: "auto" (pasta where Podman 5 made it the default, else
    # slirp4netns), or one of them by name; either way its egress leaves through the tunnel
    network: str = "auto"
    # a rootless service runs as an ordinary user; a system account (uid < 1000) only when
    # the inventory says so (the uid is checked on the host, from the facts)
    allow_system_user: bool = False
    # the home whose container this is (None: the site's only home; Site sets it)
    home: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "service name")
        if self.home is not None:
            check_name(self.home, f"home of service {self.name!r}", ("home",))
        if self.network not in SERVICE_NETWORKS:
            raise ModelError(f"network {show(self.network)} of service {self.name!r} is not "
                             f"one of {', '.join(SERVICE_NETWORKS)}", where=("network",))
        image = self.image
        if not isinstance(image, str) or not IMAGE_RE.fullmatch(image):
            hint = (" (it would be read as a podman option)"
                    if isinstance(image, str) and image.startswith("-") else "")
            raise ModelError(f"image {show(image)} of service {self.name!r} is not an image "
                             f"reference{hint}: use e.g. \"docker.io/library/nginx:latest\"",
                             where=("image",))
        if not isinstance(self.user, str) or not USER_RE.fullmatch(self.user):
            raise ModelError(f"user {show(self.user)} of service {self.name!r} is not a unix "
                             "user name: use lowercase letters, digits, '_' or '-'",
                             where=("user",))
        if self.user == "root":
            raise ModelError(f"user 'root' of service {self.name!r}: a rootless service runs "
                             "as an ordinary user: use e.g. user = \"gamer\" (tunnelops "
                             "creates it)", where=("user",))
        if type(self.allow_system_user) is not bool:
            raise ModelError(f"allow_system_user of service {self.name!r} must be true or "
                             "false", where=("allow_system_user",))
        object.__setattr__(self, "ports", tuple(self.ports))
        if not self.ports:
            raise ModelError(f"service {self.name!r} has no ports: list at least one, "
                             "e.g. ports = [\"12345/udp\"]", where=("ports",))
        for index, port in enumerate(self.ports):
            if not isinstance(port, PortSpec):
                raise ModelError(f"port {show(port)} of service {self.name!r} is not a "
                                 "PortSpec: parse it with PortSpec.parse", where=("ports",))
            for earlier in self.ports[:index]:
                if port.overlaps(earlier):
                    raise ModelError(f"ports {earlier} and {port} of service {self.name!r} "
                                     "overlap: list each port once", where=("ports", str(port)))
        object.__setattr__(self, "env", tuple(tuple(pair) for pair in self.env))
        seen: set[str] = set()
        for pair in self.env:
            if len(pair) != 2:
                raise ModelError(f"env entry {show(pair)} is not a (key, value) pair",
                                 where=("env",))
            key, value = pair
            if not isinstance(key, str) or not ENV_KEY_RE.fullmatch(key):
                raise ModelError(f"env key {show(key)} is not a variable name: use letters, "
                                 "digits and '_', not starting with a digit", where=("env",))
            if key in seen:
                raise ModelError(f"env key {key!r} is set twice: keep one", where=("env",))
            seen.add(key)
            check_text(value, f"env {key}", ("env",))
        object.__setattr__(self, "volumes", tuple(self.volumes))
        for volume in self.volumes:
            _check_volume(volume, ("volumes",))
        object.__setattr__(self, "command", tuple(self.command))
        for arg in self.command:
            # A newline cannot be written into a Quadlet Exec= line.
            check_text(arg, "command argument", ("command",))

    @property
    def container_name(self) -> str:
        return f"tunnelops-{self.name}"

