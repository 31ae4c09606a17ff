"""What a step needs to compute its plan: the site, the host's facts, what the other host
told us (its public key, the VPS public address), and where tunnelops keeps its files."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunnelops.facts import HostFacts
from tunnelops.model import Site


class PlanError(RuntimeError):
    """The host cannot be brought to the wanted state: one line, with the fix."""


@dataclass
class Ctx:
    site: Site
    role: str  # "vps" or "home"
    facts: HostFacts
    peer_public_key: str | None = None  # None on a dry run before keys exist
    vps_public_ip: str | None = None
    wan_interface: str | None = None
    guard_seconds: int = 20
    notes: list[str] = field(default_factory=list)

    @property
    def tunnel(self):
        return self.site.tunnel

    @property
    def iface(self) -> str:
        return self.site.tunnel.interface

    @property
    def key_path(self) -> str:
        return f"/etc/wireguard/{self.iface}.key"

    @property
    def pub_path(self) -> str:
        return f"/etc/wireguard/{self.iface}.pub"

    @property
    def wg_conf(self) -> str:
        return f"/etc/wireguard/{self.iface}.conf"


# Files tunnelops edits but does not own: a line or two of ours in someone else's file.
EDITED = ("/etc/nftables.conf", "/etc/sysconfig/nftables.conf", "/etc/network/interfaces")


def managed_files(site: Site) -> tuple[list[str], list[str]]:
    """(every file tunnelops may manage on either host, those that embed a private key).
    Read by the one facts command before the distribution is known: cheap to over-ask."""
    return [*owned_files(site), *EDITED], [f"/etc/wireguard/{site.tunnel.interface}.conf"]


def owned_files(site: Site) -> list[str]:
    """Files that are tunnelops' own: teardown removes them."""
    i = site.tunnel.interface
    return [
        f"/etc/wireguard/{i}.conf", "/etc/sysctl.d/90-tunnelops.conf",
        "/etc/tunnelops/tunnelops.nft", "/etc/systemd/system/tunnelops-nftables.service",
        f"/etc/network/interfaces.d/{i}",
        "/etc/awall/base.json", "/etc/awall/optional/ssh.json",
        "/etc/awall/optional/wireguard.json", "/etc/tunnelops/firewalld-ports",
        *(f"/etc/awall/optional/{s.name}.json" for s in site.services),
        # Quadlet units (or a generated unit's drop-in), where the service user's home is
        # the usual /home/USER
        *(f"/home/{s.user}/.config/containers/systemd/{s.container_name}.container"
          for s in site.services),
        *(f"/home/{s.user}/.config/systemd/user/container-{s.container_name}.service.d/"
          "90-tunnelops-tunnel.conf" for s in site.services),
        "/etc/systemd/system/multi-user.target.d/90-tunnelops-network-online.conf",
    ]
