"""The VPS's wg0 through ifupdown-ng on Alpine (`use wireguard`), as in the seed. Needs the
kernel module: ifupdown-ng creates a kernel WireGuard link (no userspace fallback)."""

from __future__ import annotations

import shlex

from tunnelops.backends import netguard
from tunnelops.backends.originals import record_shell
from tunnelops.changes import CommandChange, FileChange, StepPlan
from tunnelops.render.ifupdown import wg_stanza
from tunnelops.render.wireguard import vps_setconf
from tunnelops.steps.context import Ctx

INTERFACES = "/etc/network/interfaces"
SOURCE = "source-directory /etc/network/interfaces.d"


def plan(ctx: Ctx, wan: str, home_public_key: str | None) -> StepPlan:
    p = StepPlan("wireguard")
    f, iface = ctx.facts, shlex.quote(ctx.iface)
    stanza_path = f"/etc/network/interfaces.d/{ctx.iface}"
    conf = vps_setconf(ctx.tunnel, home_public_key)
    old_conf, old_stanza = f.file(ctx.wg_conf), f.file(stanza_path)
    conf_changed = old_conf is None or old_conf.content != conf
    stanza = wg_stanza(ctx.tunnel, wan)
    stanza_changed = old_stanza is None or old_stanza.content != stanza
    if conf_changed:
        p.changes.append(FileChange(ctx.wg_conf, conf, old_conf.content if old_conf else None,
                                    mode=0o600, key_path=ctx.key_path))
    if old_stanza is None:  # Debian has no interfaces.d by default: teardown removes ours
        d = shlex.quote(stanza_path.rsplit("/", 1)[0])
        p.changes.append(CommandChange(
            f"create {d}", f"[ -d {d} ] || {{ mkdir -p {d} && {{ "
                           f"{record_shell('emptydir ' + d)}; }}; }}"))
    if stanza_changed:
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
    elif stanza_changed:
        p.changes.append(CommandChange(f"restart {ctx.iface}",
                                       f"ifdown {iface} || true; ifup {iface}"))
    elif conf_changed:
        p.changes.append(CommandChange(f"sync {ctx.iface} with {ctx.wg_conf}",
                                       f"wg syncconf {iface} {shlex.quote(ctx.wg_conf)}"))
    if p.changes:
        p.guard = netguard.ifupdown(ctx, [ctx.wg_conf, stanza_path, INTERFACES])
    p.notes.append("ifupdown-ng (use wireguard)")
    return p
