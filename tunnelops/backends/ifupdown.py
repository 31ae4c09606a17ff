"""The VPS's wg0 through ifupdown-ng on Alpine (`use wireguard`), as in the seed. Needs the
kernel module: ifupdown-ng creates a kernel WireGuard link (no userspace fallback).

- A missing wg0 is brought up with `ifup wg0`, whose exit status is then not trusted:
  ifupdown-ng before 0.12 exits 0 even when every step failed, so the step reads the link
  back and fails unless wg0 is up with its address.
- A running wg0 is never taken down: no `ifdown wg0` (see render.ifupdown on why it can take
  the WAN with it). What differs is fixed live: peers, key and listen port with `wg syncconf`
  of the config file (the format ifupdown-ng feeds to `wg setconf`), the address and MTU with
  `ip`, a downed link with `ip link set up`.
"""

from __future__ import annotations

import shlex

from tunnelops.backends import netguard, wglive
from tunnelops.backends.originals import record_shell
from tunnelops.changes import Change, CommandChange, FileChange, StepPlan
from tunnelops.render.ifupdown import wg_stanza
from tunnelops.render.wireguard import vps_setconf
from tunnelops.steps.context import Ctx

INTERFACES = "/etc/network/interfaces"
SOURCE = "source-directory /etc/network/interfaces.d"


def readback(ctx: Ctx) -> str:
    """Shell failing the step unless the interface is up with its address."""
    i, t = shlex.quote(ctx.iface), ctx.tunnel
    want = f"{t.vps_address}/{t.prefixlen}"
    why = (f"{ctx.iface} is not up with {want} (ifupdown-ng's ifup before 0.12 exits 0 even "
           f"when it failed): run `ifup -v {ctx.iface}` on the VPS to see why")
    return (f"ip -4 -o addr show dev {i} 2>/dev/null | grep -qF ' inet {want} ' && "
            f"ip -o link show dev {i} 2>/dev/null | grep -Eq '[<,]UP[,>]' || "
            f"{{ echo {shlex.quote(why)} >&2; exit 1; }}")


def _live_fixes(ctx: Ctx, conf: str, conf_changed: bool) -> list[Change]:
    f, t, i = ctx.facts, ctx.tunnel, shlex.quote(ctx.iface)
    out: list[Change] = []
    link = f.wg.get("link")
    if link is not None and "UP" not in link.get("flags", []):
        out.append(CommandChange(f"bring {ctx.iface} up (it is down)",
                                 f"ip link set dev {i} up"))
    drift = wglive.peer_drift(conf, f.wg)
    if f.wg.get("public_key") in ("", "(none)"):
        drift.insert(0, "it has no private key")
    if conf_changed or drift:
        why = "; ".join(drift) if drift else "its config changed"
        out.append(CommandChange(f"sync {ctx.iface} with {ctx.wg_conf} ({why})",
                                 f"wg syncconf {i} {shlex.quote(ctx.wg_conf)}"))
    out += wglive.address_fixes(f, ctx.iface, f"{t.vps_address}/{t.prefixlen}")
    want = wglive.wanted_mtu(t, "ifupdown", None)
    if (why := wglive.mtu_drift(f, ctx.iface, want)) and want is not None:
        out.append(wglive.mtu_fix(ctx.iface, want, why))
    return out


def plan(ctx: Ctx, home_public_key: str | None) -> StepPlan:
    p = StepPlan("wireguard")
    f, iface = ctx.facts, shlex.quote(ctx.iface)
    stanza_path = f"/etc/network/interfaces.d/{ctx.iface}"
    conf = vps_setconf(ctx.tunnel, home_public_key)
    old_conf, old_stanza = f.file(ctx.wg_conf), f.file(stanza_path)
    conf_changed = old_conf is None or old_conf.content != conf
    stanza = wg_stanza(ctx.tunnel)
    if conf_changed:
        p.changes.append(FileChange(ctx.wg_conf, conf, old_conf.content if old_conf else None,
                                    mode=0o600, key_path=ctx.key_path))
    if old_stanza is None:  # Debian has no interfaces.d by default: teardown removes ours
        d = shlex.quote(stanza_path.rsplit("/", 1)[0])
        p.changes.append(CommandChange(
            f"create {d}", f"[ -d {d} ] || {{ mkdir -p {d} && {{ "
                           f"{record_shell('emptydir ' + d)}; }}; }}"))
    if old_stanza is None or old_stanza.content != stanza:
        p.changes.append(FileChange(stanza_path, stanza,
                                    old_stanza.content if old_stanza else None))
    interfaces = f.file(INTERFACES)
    if interfaces is None or SOURCE not in interfaces.content:
        base = interfaces.content if interfaces else ""
        p.changes.append(FileChange(INTERFACES, base + ("" if not base or base.endswith("\n")
                                                        else "\n") + SOURCE + "\n",
                                    interfaces.content if interfaces else None, backup=True))
    if not f.wg:
        p.changes.append(CommandChange(f"ifup {ctx.iface}", f"ifup {iface}"))
        p.post.append(readback(ctx))
    elif fixes := _live_fixes(ctx, conf, conf_changed):
        p.changes += fixes
        p.post.append(readback(ctx))
    if p.changes:
        p.guard = netguard.ifupdown(ctx, [ctx.wg_conf, stanza_path, INTERFACES])
    p.notes.append("ifupdown-ng (use wireguard)")
    return p
