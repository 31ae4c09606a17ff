"""The home end: packages, keys, the tunnel with policy routing (only traffic from the tunnel
address or to the VPS uses table 201; the main default route never moves), the firewall."""

from __future__ import annotations

from tunnelops import distros
from tunnelops.backends import firewalld, keys, networkmanager, nftables, packages, podman, wgquick
from tunnelops.changes import StepPlan
from tunnelops.probes import IP_JSON
from tunnelops.render import nftables as nft_render
from tunnelops.render.wireguard import home_wg_quick
from tunnelops.steps import legacy, sites
from tunnelops.steps.context import Ctx, PlanError


def wg_backend(ctx: Ctx) -> tuple[str, str]:
    """(backend, why): NetworkManager as in the seed when it can create the interface."""
    f = ctx.facts
    if not f.nm.get("running"):
        return "wg-quick", "NetworkManager is not running"
    if not f.kernel_wireguard:
        return "wg-quick", ("the kernel has no WireGuard module, which NetworkManager needs; "
                            "wg-quick with wireguard-go instead")
    return "networkmanager", "NetworkManager with kernel WireGuard"


def prepare(ctx: Ctx) -> list[StepPlan]:
    f = ctx.facts
    if f.distro is None:
        raise PlanError(f"{f.os_pretty or 'this distribution'} is not supported at home: use "
                        f"{distros.supported_labels()}")
    # iproute2 for `ip -j`: the live addresses, MTU, rules and routes are read as JSON
    need = ["wg", IP_JSON]
    backend, _ = wg_backend(ctx)
    if backend == "wg-quick":
        need.append("wg-quick")
        if not f.kernel_wireguard:
            need.append("wireguard-go")
    if not f.firewalld.get("running"):
        need.append("nft")
    if ctx.services:
        need += ["podman", "slirp4netns"]
    if any(s.network == "pasta" for s in ctx.services):
        need.append("pasta")
    return [packages.plan(f, need), keys.plan(ctx), podman.plan_users(ctx),
            podman.plan_images(ctx)]


def configure(ctx: Ctx) -> list[StepPlan]:
    """This home's part: its tunnel to the VPS, its firewall and containers (its own
    services only)."""
    vps_key = ctx.peer_public_key or "(the VPS public key, known once generated)"
    endpoint = ctx.vps_public_ip or "(the VPS public address)"
    moved = legacy.ours(ctx)
    backend, why = wg_backend(ctx)
    if backend == "networkmanager":
        wg = networkmanager.plan(ctx, vps_key, endpoint)
    else:
        wg = wgquick.plan(ctx, home_wg_quick(ctx.tunnel, vps_key, endpoint),
                          policy_routing=True)
    wg.notes.insert(0, f"{backend}: {why}")
    ports = [spec for svc in ctx.services for spec in svc.ports]
    if ctx.facts.firewalld.get("running"):
        fw = firewalld.plan(ctx, ports, legacy=moved)
    else:
        fw = nftables.plan(ctx, nft_render.home_ruleset(ctx.tunnel, ctx.services),
                           legacy=moved)
    services = [podman.plan_service(ctx, svc) for svc in ctx.services]
    return [sites.plan(ctx), wg, fw, podman.plan_network_online(ctx), *services,
            podman.plan_removed(ctx)]
