"""`tunnelops demo`: the whole story on this machine. The lab comes up, `bootstrap` provisions
its VPS and home server over SSH, a player on the fake internet reaches the container through
the VPS (and the game sees the player's own address, or the VPS's with client_ip = "snat"),
the container's egress is seen with the VPS address, and `verify` checks every link."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from tunnelops import commands, prog
from tunnelops.inventory.read import load
from tunnelops.lab.instance import Lab


@dataclass(frozen=True)
class Probe:
    what: str
    sender: str  # the address the probe left from
    expected: str  # the address the far end should see
    seen: str  # the address it saw ("" when there was no answer)
    answer: str

    @property
    def ok(self) -> bool:
        return bool(self.seen) and self.seen == self.expected


def probes(lab: Lab, snat: bool = False) -> list[Probe]:
    """A player on the fake internet (inet, 198.51.100.1) by TCP and UDP, and the container's
    egress: each with the address it left from and the one the other end saw."""
    vps, player = lab.topo.vps_public, lab.topo.inet_vps_side
    out = []
    for proto, port in (("TCP", 12346), ("UDP", 12345)):
        res = lab.exec("inet", ["timeout", "5", "socat", "-T", "3", "-",
                                f"{proto}:{vps}:{port}"],
                       input=b"hello from the internet\n", check=False)
        answer = res.stdout.decode(errors="replace").strip().replace("\n", " | ")
        m = re.search(r"\bpeer=(\S+)", answer)
        out.append(Probe(f"{proto} to {vps}:{port}", player, "192.168.2.1" if snat else player,
                         m.group(1) if m else "", answer or "(no answer)"))
    res = lab.exec("home", ["podman", "exec", "tunnelops-game", "wget", "-qO-",
                            lab.topo.whoami_url], user="gamer", check=False)
    seen = res.stdout.decode(errors="replace").strip()
    out.append(Probe("container egress to inet's what-is-my-address", "tunnelops-game", vps,
                     seen, seen or "(no answer)"))
    return out


def table(rows: list[Probe]) -> Table:
    t = Table(title_justify="left")
    for name in ("", "probe", "sent from", "the other end saw", "its answer"):
        t.add_column(name)
    for p in rows:
        t.add_row("[green]✓" if p.ok else "[red]✗", p.what, p.sender, p.seen or "-", p.answer)
    return t


def run(lab: Lab, console: Console, opts: commands.Options) -> bool:
    console.print(Rule("1. the lab: a VPS, a home server behind NAT, an internet"))
    lab.up()
    vps, home = lab.topo.alias("vps"), lab.topo.alias("home")
    console.print(Rule(f"2. {prog.name()} bootstrap --vps {vps} --home {home}"))
    report = commands.bootstrap(opts, vps, home)
    if not report.ok:
        return False
    snat = load(lab.inventory).snat
    console.print(Rule("3. a player on the internet, and the container's egress"))
    rows = probes(lab, snat)
    console.print(table(rows))
    console.print("  the game sees " + ("the VPS's tunnel address for every player "
                                        "(client_ip = snat)" if snat else
                                        "each player's own address (client_ip = preserve)"),
                  highlight=False)
    ok = all(p.ok for p in rows)
    console.print(Rule("4. the same bootstrap again: nothing to do"))
    again = commands.bootstrap(opts, vps, home)
    ok &= again.ok
    verify = getattr(commands, "verify", None)
    if verify is not None:
        console.print(Rule(f"5. {prog.name()} verify"))
        ok &= bool(verify(dataclasses.replace(opts, site=lab.topo.name)))
    return ok
