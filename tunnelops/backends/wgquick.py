"""The WireGuard interface through wg-quick (VPS on Debian/Fedora; home without a usable
NetworkManager). With no kernel module, wg-quick falls back to wireguard-go by itself."""

from __future__ import annotations

import shlex

from tunnelops.backends import netguard, wglive
from tunnelops.backends.originals import enable_shell
from tunnelops.changes import CommandChange, FileChange, StepPlan
from tunnelops.render.wireguard import parse_wg_conf
from tunnelops.steps.context import Ctx


def _interface_section(text: str | None) -> list[tuple[str, str]]:
    if not text:
        return []
    return [kv for kv in parse_wg_conf(text).get("Interface", []) if kv[0] != "PrivateKey"]


def clear_rules_shell(ctx: Ctx) -> str:
    """Remove our two rules if present, so wg-quick's PostUp can add them without EEXIST."""
    t = ctx.tunnel
    first, second = t.rule_priorities
    return (f"while ip -4 rule del priority {first} table {t.route_table} 2>/dev/null; do :; done; "
            f"while ip -4 rule del priority {second} table {t.route_table} 2>/dev/null; do :; done")


def plan(ctx: Ctx, content: str, *, policy_routing: bool) -> StepPlan:
    p = StepPlan("wireguard")
    f, iface = ctx.facts, shlex.quote(ctx.iface)
    old = f.file(ctx.wg_conf)
    file_changed = old is None or old.content != content or old.mode != "600"
    if file_changed:
        p.changes.append(FileChange(ctx.wg_conf, content, old.content if old else None,
                                    mode=0o600, key_path=ctx.key_path))
    up = bool(f.wg)
    clear = clear_rules_shell(ctx) + "; " if policy_routing else ""
    half = _half_up(ctx) if up else None
    if not up:
        p.changes.append(CommandChange(f"bring {ctx.iface} up with wg-quick",
                                       f"{clear}wg-quick up {iface}"))
    elif half or (file_changed and _interface_section(old.content if old else None)
                  != _interface_section(content)):
        # half: a `wg-quick up` that died half-way (e.g. its run was killed) left the
        # interface behind; only down + up repairs it (syncconf sets no address, no link up)
        p.changes.append(CommandChange(
            f"restart {ctx.iface} ({half or 'interface settings changed'})",
            f"wg-quick down {iface} || ip link del {iface} || true; "
            f"{clear}wg-quick up {iface}"))
    else:
        p.changes += live_fixes(ctx, content, file_changed, policy_routing)
    if p.changes:
        p.guard = netguard.wg_quick(ctx, clear_rules_shell(ctx) if policy_routing else "")
    if not f.kernel_wireguard:
        p.notes.append("kernel has no WireGuard module: userspace wireguard-go (via wg-quick)")
    if f.systemd:
        if p.changes:
            p.post.append(enable_shell(f"wg-quick@{ctx.iface}.service"))
    else:
        p.notes.append(f"no systemd (PID 1 is {f.pid1 or '?'}): {ctx.iface} is not started "
                       "at boot")
    return p


def live_fixes(ctx: Ctx, content: str, file_changed: bool,
               policy_routing: bool) -> list[CommandChange]:
    """A running interface whose settings section is right: bring what is live back to the
    file, each with its own smallest command (the peers and listen port with `wg syncconf`,
    which keeps the sessions; an address added by hand and the MTU with `ip`; home's rules
    and table route with `ip rule` / `ip route`)."""
    f, i = ctx.facts, shlex.quote(ctx.iface)
    out = []
    drift = wglive.peer_drift(content, f.wg)
    if file_changed or drift:
        why = "; ".join(drift) if drift else "its config changed"
        out.append(CommandChange(
            f"sync {ctx.iface} peers with its config ({why})",
            f"s=$(mktemp /run/tunnelops-strip.XXXXXX); wg-quick strip {i} > \"$s\" && "
            f"wg syncconf {i} \"$s\"; rc=$?; rm -f \"$s\"; [ $rc = 0 ]"))
    t = ctx.tunnel
    address = t.vps_address if ctx.home is None else t.home_address
    out += wglive.address_fixes(f, ctx.iface, f"{address}/{t.prefixlen}")
    want = wglive.wanted_mtu(t, "wg-quick", wglive.uplink_mtu(f.uplink, f.addrs))
    if (why := wglive.mtu_drift(f, ctx.iface, want)) and want is not None:
        out.append(wglive.mtu_fix(ctx.iface, want, why))
    if policy_routing:
        out += wglive.routing_fixes(f, ctx.tunnel)
    return out


def _half_up(ctx: Ctx) -> str | None:
    """Why a live interface is not what `wg-quick up` makes, if it is not."""
    f, t = ctx.facts, ctx.tunnel
    link = f.wg.get("link")
    if link is not None and "UP" not in link.get("flags", []):
        return "it is down"
    if f.wg.get("public_key") in ("", "(none)"):
        return "it has no private key"
    address = str(t.vps_address if ctx.home is None else t.home_address)
    if not any(a.get("local") == address for i in f.addrs if i.get("ifname") == ctx.iface
               for a in i.get("addr_info", [])):
        return f"it lacks its address {address}"
    return None
