"""Link 1: the laptop's SSH connection to each host, and whether its verify script ran."""

from __future__ import annotations

from dataclasses import dataclass

from tunnelops.verify.check import HOSTS, Check, Ctx, Outcome, State


@dataclass(frozen=True)
class Ssh(Check):
    host: str
    tolerates = HOSTS  # it is the row that says a host could not be reached

    @property
    def id(self) -> str:
        return f"ssh.{self.host}"

    def name(self, s: State) -> str:
        return f"SSH to {s.ctx.dest(self.host)}"

    def evaluate(self, s: State) -> Outcome:
        info = s.laptop.ssh.get(self.host, {})
        if "error" in info:
            hint = info["error"]
            if self.host == "vps" and "timed out" in hint:
                hint += (" (tunnelops' VPS firewall lets an address open 3 SSH connections at "
                         "once, then 9 a minute: after many runs in a row, wait a minute)")
            return Outcome(False, "no connection", hint)
        return Outcome(s.reached(self.host),
                       "connection reused" if info.get("reused") else
                       f"connected in {info.get('ms', 0):.0f} ms",
                       f"connected, but the verify script failed on {s.ctx.dest(self.host)}: "
                       f"{info.get('script_error', 'no output')}")


def checks(ctx: Ctx) -> list[Check]:
    return [Ssh("vps"), Ssh("home")]
