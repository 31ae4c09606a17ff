"""What a site is called on a host: every table, file, policy and record it makes there.

Sites side by side on one host never touch each other, so everything a site makes there is
named for it -- from its tunnel interface (`wg0`): the nftables table `inet tunnelops-wg0`
and its file, the awall policies `tunnelops-wg0-*`, the firewalld port record, the site
record. The interface, not the site's name in the inventory, because on a host it is unique
by necessity (two sites cannot share one interface), and it is the same for every copy of a
site's inventory: another laptop, another file name. The record (`record`) says which site
that is, by name, and what it claims on the host (see tunnelops.steps.sites).

Before issue 11 a host had one site and fixed names (`inet tunnelops`, /etc/awall/base.json,
...): LEGACY. A run of the site that made them moves them to its own names and removes the
old ones (tunnelops.steps.legacy); teardown removes both.

Shared by every site of the host, and released only with the last one: the forwarding
sysctl file, the saved originals of the files tunnelops edits, the host lock, and on an
nftables VPS the host's own table (HOST_*: its default-deny filter, which no site's table can
hold -- every base chain on a hook must accept a packet, so one site's `policy drop` would
drop the other's WireGuard port -- with each site's interface and port as set elements).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STATE = "/var/lib/tunnelops"
RECORDS = f"{STATE}/sites"
HOST_TABLE = "tunnelops-host"
HOST_FAMILY_TABLE = f"inet {HOST_TABLE}"
HOST_NFT_FILE = "/etc/tunnelops/host.nft"
HOST_STATE = f"{STATE}/host"
HOST_NFT_APPLIED = f"{HOST_STATE}/nft.applied"


def policy_word(text: str) -> str:
    """TEXT in awall's policy names (letters, digits and '-' only: its loader matches
    `^[%w-]+$`), '_' written as '-'."""
    return re.sub(r"[^A-Za-z0-9-]", "-", text)


@dataclass(frozen=True)
class Names:
    """The names of one site on a host, from its tunnel interface."""

    iface: str

    # ---- the record of the site on the host
    @property
    def record(self) -> str:
        return f"{RECORDS}/{self.iface}.json"

    @property
    def state(self) -> str:
        """The site's own state directory (teardown removes it)."""
        return f"{STATE}/{self.iface}"

    # ---- nftables
    @property
    def nft_table(self) -> str:
        return f"tunnelops-{self.iface}"

    @property
    def nft_family_table(self) -> str:
        return f"inet {self.nft_table}"

    @property
    def nft_file(self) -> str:
        return f"/etc/tunnelops/{self.iface}.nft"

    @property
    def nft_applied(self) -> str:
        return f"{self.state}/nft.applied"

    @property
    def nft_rollback(self) -> str:
        return f"{self.state}/nft.rollback"

    @property
    def nft_rollback_file(self) -> str:
        return f"{self.state}/nft.file.rollback"

    # ---- awall: optional policies, all enabled; zones and services named for the site too
    # (awall merges every policy's named objects into one namespace)
    def awall_policy(self, what: str) -> str:
        return f"tunnelops-{policy_word(self.iface)}-{policy_word(what)}"

    def awall_file(self, policy: str) -> str:
        return f"/etc/awall/optional/{policy}.json"

    @property
    def awall_base(self) -> str:
        return self.awall_policy("base")

    @property
    def awall_ssh(self) -> str:
        return self.awall_policy("ssh")

    @property
    def awall_wireguard(self) -> str:
        return self.awall_policy("wireguard")

    def awall_service(self, service: str) -> str:
        return self.awall_policy(f"service-{service}")

    @property
    def awall_inet(self) -> str:
        return self.awall_policy("inet")

    @property
    def awall_vpn(self) -> str:
        return self.awall_policy("vpn")

    def awall_service_key(self, service: str) -> str:
        """The name of a service's ports in awall's service dictionary."""
        return self.awall_policy(service)

    # ---- firewalld
    @property
    def firewalld_record(self) -> str:
        """The ports tunnelops opened for this site in a firewalld zone."""
        return f"/etc/tunnelops/{self.iface}.firewalld-ports"


@dataclass(frozen=True)
class LegacyNames:
    """The names of the one site a host had before issue 11."""

    nft_table: str = "tunnelops"
    nft_file: str = "/etc/tunnelops/tunnelops.nft"
    nft_applied: str = f"{STATE}/nft.applied"
    awall_base: str = "/etc/awall/base.json"
    firewalld_record: str = "/etc/tunnelops/firewalld-ports"
    awall_fixed: tuple[str, ...] = ("ssh", "wireguard")

    @property
    def nft_family_table(self) -> str:
        return f"inet {self.nft_table}"

    def awall_file(self, policy: str) -> str:
        return f"/etc/awall/optional/{policy}.json"


LEGACY = LegacyNames()
