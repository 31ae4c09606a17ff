"""Names and addresses of one lab instance: pure values, no I/O.

    laptop (this machine's namespace) ── LAN 10.77.N.0/24 ── router ── inet ── vps
                                             ├── home                (NAT)
                                             └── home2 ... (--homes)

- `home` sits behind `router`, which masquerades its LAN to the fake internet: the VPS can
  never open a connection to home, so the tunnel must be dialled from home, as in real life.
- `inet` is the internet: it routes between the router and the VPS and serves what-is-my-address.
- The laptop reaches home over the LAN, and the VPS through the router, like a laptop at home.
  Its only route into the lab is a /32 to the VPS public address on the lab's own link.
Several instances can run side by side: instance N uses LAN 10.77.N.0/24 and VPS 198.51.100.(10+N);
everything else lives inside the instance's own namespaces. With `homes` > 1 the extra homes
(home2, home3, ...) sit on the same LAN behind the same router, at 10.77.N.3, .4, ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
ROLES = ("vps", "home", "inet", "router")  # of a one-home lab; Topology.roles in general
HOSTS = ("vps", "home")  # full hosts of a one-home lab (own namespaces and sshd); .hosts
MAX_HOMES = 5
SUDO_USER = "ops"
PODMAN_USER = "gamer"
WHOAMI_PORT = 8080


@dataclass(frozen=True)
class Topology:
    name: str = "lab"
    index: int = 0
    homes: int = 1

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"lab name {self.name!r} is invalid: use 1-8 lowercase letters/digits")
        if not 0 <= self.index <= 99:
            raise ValueError(f"lab index {self.index} is out of range: use 0-99")
        if not 1 <= self.homes <= MAX_HOMES:
            raise ValueError(f"lab homes {self.homes} is out of range: use 1-{MAX_HOMES}")

    @property
    def home_roles(self) -> tuple[str, ...]:
        """home, home2, home3, ..."""
        return ("home", *(f"home{n}" for n in range(2, self.homes + 1)))

    @property
    def hosts(self) -> tuple[str, ...]:
        """The full hosts (their own sshd): the VPS and every home."""
        return ("vps", *self.home_roles)

    @property
    def roles(self) -> tuple[str, ...]:
        return (*self.hosts, "inet", "router")

    def netns(self, role: str) -> str:
        return f"{self.name}-{role}"

    def alias(self, role: str) -> str:
        """The ssh_config alias of a full host (vps, home)."""
        return f"{self.name}-{role}"

    @property
    def laptop_link(self) -> str:
        return f"{self.name}-lan"

    @property
    def lan_prefix(self) -> str:
        return f"10.77.{self.index}"

    @property
    def router_lan(self) -> str:
        return f"{self.lan_prefix}.1"

    @property
    def home_lan(self) -> str:
        return f"{self.lan_prefix}.2"

    def lan_address(self, home: str) -> str:
        """A home's address on the LAN: home .2, home2 .3, ..."""
        n = int(home.removeprefix("home") or 1)
        return f"{self.lan_prefix}.{1 + n}"

    @property
    def laptop_lan(self) -> str:
        return f"{self.lan_prefix}.100"

    # The fake internet: the same inside every instance, except the VPS public address,
    # which the laptop routes to and so must differ between instances.
    inet_vps_side: str = "198.51.100.1"
    inet_router_side: str = "203.0.113.1"
    router_wan: str = "203.0.113.2"

    @property
    def vps_public(self) -> str:
        return f"198.51.100.{10 + self.index}"

    @property
    def whoami_url(self) -> str:
        return f"http://{self.inet_vps_side}:{WHOAMI_PORT}/"

    def address(self, role: str) -> str:
        if role in self.home_roles:
            return self.lan_address(role)
        return {
            "vps": self.vps_public,
            "inet": self.inet_vps_side,
            "router": self.router_wan,
        }[role]
