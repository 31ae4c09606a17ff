"""The VPS end, the hub: packages, keys, forwarding, the WireGuard interface with a peer per
home, the firewall (inbound SSH rate-limited and WireGuard allowed, all else dropped; each
service's ports DNATed to its home, and SNAT with client_ip = "snat")."""

from __future__ import annotations

import ipaddress

from tunnelops import distros
from tunnelops.backends import (
    awall,
    firewalld_vps,
    ifupdown,
    keys,
    nftables,
    packages,
    sysctl,
    wgquick,
)
from tunnelops.changes import StepPlan
from tunnelops.probes import IP_JSON
from tunnelops.render import nftables as nft_render
from tunnelops.render import nfthost
from tunnelops.render.wireguard import vps_wg_quick
from tunnelops.steps import legacy, sites
from tunnelops.steps.context import Ctx, PlanError

# addresses that are never a VPS's public one (RFC 1918, CGNAT, loopback, link-local)
_NOT_PUBLIC = [ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
    "169.254.0.0/16", "0.0.0.0/8")]


def supported(ctx: Ctx) -> distros.Distro:
    distro = ctx.facts.distro
    if distro is None:
        raise PlanError(f"{ctx.facts.os_pretty or 'this distribution'} is not supported on the "
                        f"VPS: use {distros.supported_labels()}")
    return distro


def discover(ctx: Ctx, src: str) -> tuple[str, str]:
    """(public IPv4, WAN interface) from the inventory, else from the host's default route."""
    up = ctx.facts.uplink
    wan = ctx.site.vps.wan_interface or up.get("dev")
    if ctx.site.vps.public_ip:
        return str(ctx.site.vps.public_ip), wan or "eth0"
    addr = up.get("prefsrc")
    if not addr or not wan:
        raise PlanError(f"no IPv4 default route, so no public IPv4: give the VPS one, or set "
                        f"[vps] public_ip and wan_interface in {src}")
    if any(ipaddress.ip_address(addr) in n for n in _NOT_PUBLIC):
        raise PlanError(f"no public IPv4 (its uplink {wan} has {addr}): if it is NATed 1:1, "
                        f"set [vps] public_ip in {src}")
    return addr, wan


def wg_backend(ctx: Ctx) -> str:
    """ifupdown-ng's `use wireguard` as in the seed wherever it can run: it needs the kernel
    module, and ifupdown-ng itself -- Alpine's ifup, or on Debian/Ubuntu the ifupdown-ng
    package (its `ifparse` tells it from classic ifupdown, which has no WireGuard support).
    Otherwise wg-quick (with wireguard-go where the kernel has no module)."""
    f = ctx.facts
    d = f.distro
    # ifparse: ifupdown-ng's, where a distribution's default is classic ifupdown
    if d and (d.vps_network == "ifupdown" or f.has("ifparse")) and f.kernel_wireguard \
            and f.has("ifup"):
        return "ifupdown"
    return "wg-quick"


def firewall_backend(ctx: Ctx) -> str:
    return distros.vps_firewall(supported(ctx), bool(ctx.facts.firewalld.get("running")))


def prepare(ctx: Ctx) -> list[StepPlan]:
    supported(ctx)
    f = ctx.facts
    # iproute2 for `ip -j`: the live addresses, MTU, rules and routes are read as JSON
    need = ["wg", IP_JSON]
    if wg_backend(ctx) == "wg-quick":
        need.append("wg-quick")
        if not f.kernel_wireguard:
            need.append("wireguard-go")
    need += distros.FIREWALL_COMMANDS[firewall_backend(ctx)]
    return [packages.plan(f, need), keys.plan(ctx)]


def configure(ctx: Ctx) -> list[StepPlan]:
    site = ctx.site
    wan = ctx.wan_interface or "eth0"
    moved = legacy.ours(ctx)  # the older tunnelops' names are this site's: moved with it
    plans = [sites.plan(ctx), sysctl.plan(ctx)]
    if wg_backend(ctx) == "ifupdown":
        plans.append(ifupdown.plan(ctx, ctx.peers))
    else:
        plans.append(wgquick.plan(ctx, vps_wg_quick(site.tunnel, ctx.peers),
                                  policy_routing=False))
    backend = firewall_backend(ctx)
    if backend == "awall":
        plans.append(awall.plan(ctx, wan, site.services, legacy=moved))
    elif backend == "firewalld":
        plans.append(firewalld_vps.plan(ctx, wan, site.services))
    else:
        homes = {h.name: site.address(h) for h in site.homes}
        host = nfthost.host_ruleset(wan, site.vps.ssh_port, sites.hub_sites(ctx))
        plans.append(nftables.plan(ctx, nft_render.vps_ruleset(
            wan, site.tunnel, site.services, snat=site.snat, homes=homes), legacy=moved,
            host=host))
    plans[-1].notes.append(
        f"client_ip = snat: players reach home as {site.tunnel.vps_address}" if site.snat
        else "client_ip = preserve: players reach home with their own address (no SNAT)")
    return plans
