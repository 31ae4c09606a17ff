"""What a step needs to compute its plan: the site, the host's facts, what the other host
told us (its public key, the VPS public address), and where tunnelops keeps its files."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunnelops.facts import HostFacts
from tunnelops.model.hosts import HomeSpec
from tunnelops.model.service import Service
from tunnelops.model.site import Site
from tunnelops.model.tunnel import Tunnel
from tunnelops.naming import HOST_NFT_FILE, LEGACY, Names
from tunnelops.render.wireguard import Peer


class PlanError(RuntimeError):
    """The host cannot be brought to the wanted state: one line, with the fix."""


@dataclass
class Ctx:
    """One host of the site: the hub (home None) or one of its homes."""

    site: Site
    role: str  # the kind of host: "vps" (the hub) or "home"
    facts: HostFacts
    # a home: the VPS's key; the hub with one home: that home's (None on a dry run before
    # keys exist)
    peer_public_key: str | None = None
    vps_public_ip: str | None = None
    wan_interface: str | None = None
    guard_seconds: int = 20
    notes: list[str] = field(default_factory=list)
    home: HomeSpec | None = None  # the home this host is (the site's first, if not said)
    # the hub: each home's public key (None: not known, e.g. a home that is down and was
    # never a peer)
    peer_keys: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.role != "vps" and self.home is None:
            self.home = self.site.homes[0]

    @property
    def tunnel(self) -> Tunnel:
        """The tunnel as this host sees it: the site's, or the home's own link."""
        return self.site.tunnel if self.home is None else self.site.link(self.home)

    @property
    def services(self) -> tuple[Service, ...]:
        """The services this host has a part in: all of them on the hub, its own at home."""
        return self.site.services if self.home is None else self.site.services_of(self.home)

    @property
    def names(self) -> Names:
        return Names(self.iface)

    @property
    def peers(self) -> list[Peer]:
        """The hub's peers: each home whose key is known, at its address, in site order."""
        keys = dict(self.peer_keys)
        if not keys and self.peer_public_key is not None:
            keys = {self.site.homes[0].name: self.peer_public_key}
        return [Peer(h.name, key, self.site.address(h)) for h in self.site.homes
                if (key := keys.get(h.name))]

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


SYSCTL = "/etc/sysctl.d/90-tunnelops.conf"  # shared by the sites of a host
NFT_BOOT_UNIT = "/etc/systemd/system/tunnelops-nftables.service"  # loads every site's table
NETWORK_ONLINE = "/etc/systemd/system/multi-user.target.d/90-tunnelops-network-online.conf"
# files of the host's, not of one site: the last site's teardown removes them
SHARED = (SYSCTL, HOST_NFT_FILE, NFT_BOOT_UNIT, NETWORK_ONLINE)


def owned_files(site: Site) -> list[str]:
    """Files that are the site's own (teardown removes them), and the older tunnelops' fixed
    names, which a site that was the host's one site moves to its own names."""
    i, n = site.tunnel.interface, Names(site.tunnel.interface)
    return [
        f"/etc/wireguard/{i}.conf", *SHARED, n.nft_file, f"/etc/network/interfaces.d/{i}",
        *(n.awall_file(p) for p in (n.awall_base, n.awall_ssh, n.awall_wireguard)),
        *(n.awall_file(n.awall_service(s.name)) for s in site.services),
        n.firewalld_record, n.record,
        # Quadlet units (or a generated unit's drop-in), where the service user's home is
        # the usual /home/USER
        *(f"/home/{s.user}/.config/containers/systemd/{s.container_name}.container"
          for s in site.services),
        *(f"/home/{s.user}/.config/systemd/user/container-{s.container_name}.service.d/"
          "90-tunnelops-tunnel.conf" for s in site.services),
        *legacy_files(site),
    ]


def legacy_files(site: Site) -> list[str]:
    """The fixed names of a host's one site before issue 11."""
    return [LEGACY.nft_file, LEGACY.nft_applied, LEGACY.awall_base,
            *(LEGACY.awall_file(p) for p in LEGACY.awall_fixed),
            *(LEGACY.awall_file(s.name) for s in site.services), LEGACY.firewalld_record]
