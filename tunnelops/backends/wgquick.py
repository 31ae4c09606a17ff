"""The WireGuard interface through wg-quick (VPS on Debian/Fedora; home without a usable
NetworkManager). With no kernel module, wg-quick falls back to wireguard-go by itself."""

from __future__ import annotations

import shlex

from tunnelops.backends import netguard
from tunnelops.backends.originals import enable_shell
from tunnelops.changes import CommandChange, FileChange, StepPlan
from tunnelops.render.wireguard import parse_wg_conf
from tunnelops.steps.context import Ctx


def _interface_section(text: str | None) -> list[tuple[str, str]]:
    if not text:
        return []
    return [kv for kv in parse_wg_conf(text).get("Interface", []) if kv[0] != "PrivateKey"]


def home_rules(ctx: Ctx) -> list[tuple[int, str, str]]:
    """(priority, selector, shell to add it) for the two policy rules home needs."""
    t = ctx.tunnel
    first, second = t.rule_priorities
    return [
        (first, f"from {t.home_address}/32",
         f"ip -4 rule add from {t.home_address}/32 table {t.route_table} priority {first}"),
        (second, f"to {t.vps_address}/32",
         f"ip -4 rule add to {t.vps_address}/32 table {t.route_table} priority {second}"),
    ]


def rule_present(ctx: Ctx, priority: int, selector: str) -> bool:
    t = ctx.tunnel
    kind, addr = selector.split(" ")
    ip = addr.removesuffix("/32")
    key = "src" if kind == "from" else "dst"
    for r in ctx.facts.rules:
        if r.get("priority") == priority and r.get(key) == ip \
                and str(r.get("table")) == str(t.route_table) \
                and r.get(f"{key}len", 32) == 32:
            return True
    return False


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
    elif file_changed or _peers_drifted(ctx, content):
        p.changes.append(CommandChange(
            f"sync {ctx.iface} peers with its config",
            f"s=$(mktemp /run/tunnelops-strip.XXXXXX); wg-quick strip {iface} > \"$s\" && "
            f"wg syncconf {iface} \"$s\"; rc=$?; rm -f \"$s\"; [ $rc = 0 ]"))
    elif policy_routing:
        p.changes += _routing_repairs(ctx)
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


def _half_up(ctx: Ctx) -> str | None:
    """Why a live interface is not what `wg-quick up` makes, if it is not."""
    f, t = ctx.facts, ctx.tunnel
    link = f.wg.get("link")
    if link is not None and "UP" not in link.get("flags", []):
        return "it is down"
    if f.wg.get("public_key") in ("", "(none)"):
        return "it has no private key"
    address = str(t.vps_address if ctx.role == "vps" else t.home_address)
    if not any(a.get("local") == address for i in f.addrs if i.get("ifname") == ctx.iface
               for a in i.get("addr_info", [])):
        return f"it lacks its address {address}"
    return None


def _peers_drifted(ctx: Ctx, content: str) -> bool:
    """The live interface no longer matches the file (e.g. `wg set` by hand)."""
    want = {v for k, v in parse_wg_conf(content).get("Peer", []) if k == "PublicKey"}
    have = {peer["public_key"] for peer in ctx.facts.wg.get("peers", [])}
    return want != have


def _routing_repairs(ctx: Ctx) -> list[CommandChange]:
    t, out = ctx.tunnel, []
    for prio, sel, add in home_rules(ctx):
        if not rule_present(ctx, prio, sel):
            out.append(CommandChange(f"add policy rule {sel} table {t.route_table}", add,
                                     f"+ ip rule {sel} table {t.route_table} priority {prio}"))
    if not any(r.get("dst") == "default" and r.get("dev") == ctx.iface
               for r in ctx.facts.table_routes):
        out.append(CommandChange(
            f"add default route via {ctx.iface} in table {t.route_table}",
            f"ip -4 route replace default dev {shlex.quote(ctx.iface)} table {t.route_table}"))
    return out
