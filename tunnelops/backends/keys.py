"""WireGuard keys: generated on the host if missing, never regenerated, never read back.

Only the public key leaves the host. `umask 077` before `wg genkey` so the private key is
never readable by anyone else, not even for an instant."""

from __future__ import annotations

import shlex

from tunnelops.backends.originals import record_shell
from tunnelops.changes import CommandChange, StepPlan
from tunnelops.steps.context import Ctx


def plan(ctx: Ctx) -> StepPlan:
    p = StepPlan("keys")
    k, pub = shlex.quote(ctx.key_path), shlex.quote(ctx.pub_path)
    if not ctx.facts.key_exists:
        p.changes.append(CommandChange(
            f"generate a WireGuard key pair in {ctx.key_path}",
            "[ -d /etc/wireguard ] || { install -d -m 700 /etc/wireguard; "
            f"{record_shell('dir /etc/wireguard')}; }}\n"
            f"(umask 077; wg genkey > {k}.new && mv -f {k}.new {k})\n"
            f"wg pubkey < {k} > {pub}.new && chmod 644 {pub}.new && mv -f {pub}.new {pub}"))
    elif not ctx.facts.public_key:
        p.changes.append(CommandChange(
            f"derive {ctx.pub_path} from the existing key",
            f"wg pubkey < {k} > {pub}.new && chmod 644 {pub}.new && mv -f {pub}.new {pub}"))
    return p
