"""The one site a host had before issue 11, under fixed names (tunnelops.naming.LEGACY): the
nftables table `inet tunnelops`, awall's base.json/ssh.json/wireguard.json/NAME.json, the
firewalld port record /etc/tunnelops/firewalld-ports, /etc/tunnelops/tunnelops.nft.

Those names are a site's own when its WireGuard config on the host is tunnelops's: an older
tunnelops served one site per host, so the site whose interface it made is the one it served.
Its next run moves them to the site's own names (each backend, in the step that makes the
new ones, under the same guard) and nothing of the old names is left. Another site finding
them is refused before any change (steps.sites): they belong to a site that has not been
moved yet, and its forwarding would be taken over.
"""

from __future__ import annotations

from tunnelops.backends import nftables
from tunnelops.facts import HostFacts
from tunnelops.naming import LEGACY
from tunnelops.steps.context import Ctx

MANAGED = "Managed by tunnelops"


def present(f: HostFacts) -> list[str]:
    """What of the old names the host has, in words (empty: nothing)."""
    out = []
    if nftables.legacy_present(f):
        out.append(f"table {LEGACY.nft_family_table}")
    if f.file(LEGACY.awall_base) is not None or any(
            n in f.awall_enabled for n in LEGACY.awall_fixed):
        out.append("awall policies base, ssh, wireguard")
    if f.file(LEGACY.firewalld_record) is not None:
        out.append(LEGACY.firewalld_record)
    return out


def ours(ctx: Ctx) -> bool:
    """Are the old names on this host this site's? (There are some, and the site's
    WireGuard config is tunnelops's.)"""
    conf = ctx.facts.file(ctx.wg_conf)
    return bool(present(ctx.facts)) and conf is not None and MANAGED in conf.content
