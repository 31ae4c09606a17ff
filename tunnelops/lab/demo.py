"""`tunnelops demo`: the whole story on this machine. The lab comes up, `bootstrap` provisions
its VPS and home server over SSH, a player on the fake internet reaches the container through
the VPS, the container's egress is seen with the VPS address, and `verify` checks every
link."""

from __future__ import annotations

import dataclasses

from rich.console import Console
from rich.rule import Rule

from tunnelops import commands, prog
from tunnelops.lab.instance import Lab


def probes(lab: Lab) -> list[tuple[str, str]]:
    """(what, answer) from a player on the fake internet, and the container's egress."""
    vps = lab.topo.vps_public
    out = []
    for proto, port in (("TCP", 12346), ("UDP", 12345)):
        addr = f"{proto}:{vps}:{port}"
        res = lab.exec("inet", ["timeout", "5", "socat", "-T", "3", "-", addr],
                       input=b"hello from the internet\n", check=False)
        out.append((f"{proto} {vps}:{port} from inet",
                    res.stdout.decode(errors="replace").strip().replace("\n", " | ")
                    or "(no answer)"))
    res = lab.exec("home", ["podman", "exec", "tunnelops-game", "wget", "-qO-",
                            lab.topo.whoami_url], user="gamer", check=False)
    out.append(("container egress seen by inet's what-is-my-address",
                res.stdout.decode(errors="replace").strip() or "(no answer)"))
    return out


def run(lab: Lab, console: Console, opts: commands.Options) -> bool:
    console.print(Rule("1. the lab: a VPS, a home server behind NAT, an internet"))
    lab.up()
    vps, home = lab.topo.alias("vps"), lab.topo.alias("home")
    console.print(Rule(f"2. {prog.name()} bootstrap --vps {vps} --home {home}"))
    report = commands.bootstrap(opts, vps, home)
    if not report.ok:
        return False
    console.print(Rule("3. a player on the internet, and the container's egress"))
    ok = True
    for what, answer in probes(lab):
        good = answer != "(no answer)"
        ok &= good
        console.print(f"  {'[green]✓' if good else '[red]✗'}[/] {what}: {answer}",
                      highlight=False)
    console.print(Rule("4. the same bootstrap again: nothing to do"))
    again = commands.bootstrap(opts, vps, home)
    ok &= again.ok
    verify = getattr(commands, "verify", None)
    if verify is not None:
        console.print(Rule(f"5. {prog.name()} verify"))
        ok &= bool(verify(dataclasses.replace(opts, site=lab.topo.name)))
    return ok
