"""Link 4: home's policy routing: only traffic from the tunnel address or to the VPS uses
the tunnel's table, whose default route is the tunnel; the main table's default never
moves."""

from __future__ import annotations

from dataclasses import dataclass

from tunnelops.probes import Routes, Rules, WgDump
from tunnelops.probes.ip import defaults
from tunnelops.verify.check import Check, Ctx, Outcome, State


def _down(s: State) -> str:
    """wg-quick and NetworkManager add the rules and the route with wg0, remove them with it."""
    t = s.site.tunnel
    up = s.read("home", WgDump(t.interface))
    return "" if up else f" (they come back with {t.interface}: fix `wg.home` first)"


def table(ctx: Ctx) -> Routes:
    return Routes(str(int(ctx.site.tunnel.route_table)))


@dataclass(frozen=True)
class Rule(Check):
    """A rule `from HOME_ADDRESS` or `to VPS_ADDRESS`, before main, into the tunnel's table."""

    word: str  # from | to

    @property
    def id(self) -> str:
        return f"home.rule_{self.word}"

    def _rule(self, ctx: Ctx) -> tuple[str, str, int]:
        t = ctx.site.tunnel
        first, second = t.rule_priorities
        if self.word == "from":
            return "src", str(t.home_address), first
        return "dst", str(t.vps_address), second

    def name(self, s: State) -> str:
        t = s.site.tunnel
        return f"home rule {self.word} {self._rule(s.ctx)[1]} → table {t.route_table}"

    def needs(self, ctx: Ctx) -> dict:
        return {"home": (Rules(), WgDump(ctx.site.tunnel.interface))}

    def evaluate(self, s: State) -> Outcome:
        t = s.site.tunnel
        key, addr, prio = self._rule(s.ctx)
        rule = next((r for r in s.read("home", Rules())
                     if r.get(key) == addr and r.get(f"{key}len", 32) == 32
                     and str(r.get("table")) == str(t.route_table)
                     and int(r.get("priority", 0)) < 32766), None)
        return Outcome(rule is not None,
                       f"priority {rule['priority']}, lookup {rule['table']}" if rule
                       else f"no rule {self.word} {addr} → table {t.route_table}",
                       f"add it: `ip -4 rule add {self.word} {addr}/32 table {t.route_table} "
                       f"priority {prio}`, or re-run `inv bootstrap`{_down(s)}")


@dataclass(frozen=True)
class TableDefault(Check):
    id = "home.table"

    def name(self, s: State) -> str:
        t = s.site.tunnel
        return f"home table {t.route_table} default via {t.interface}"

    def needs(self, ctx: Ctx) -> dict:
        return {"home": (table(ctx), WgDump(ctx.site.tunnel.interface))}

    def evaluate(self, s: State) -> Outcome:
        t = s.site.tunnel
        via = defaults(s.read("home", table(s.ctx)))
        return Outcome(any(x.get("dev") == t.interface for x in via),
                       ", ".join(f"default dev {x.get('dev')}" for x in via) or
                       "no default route",
                       f"add it: `ip -4 route replace default dev {t.interface} table "
                       f"{t.route_table}`, or re-run `inv bootstrap`{_down(s)}")


@dataclass(frozen=True)
class MainDefault(Check):
    id = "home.main_default"

    def name(self, s: State) -> str:
        return f"home main table default not via {s.site.tunnel.interface}"

    def needs(self, ctx: Ctx) -> dict:
        return {"home": (Routes("main"),)}

    def evaluate(self, s: State) -> Outcome:
        t = s.site.tunnel
        main = defaults(s.read("home", Routes("main")))
        bad = [x for x in main if x.get("dev") == t.interface]
        shown = [f"default {'via ' + x['gateway'] + ' ' if x.get('gateway') else ''}"
                 f"dev {x.get('dev')}" for x in main]
        return Outcome(not bad, ", ".join(shown) or "no default route",
                       f"home's own traffic would all go through the VPS: remove it (`ip -4 "
                       f"route del default dev {t.interface}`) and keep {t.interface}'s routes "
                       f"in table {t.route_table} (Table = {t.route_table} / ipv4.route-table)")


def checks(ctx: Ctx) -> list[Check]:
    return [Rule("from"), Rule("to"), TableDefault(), MainDefault()]
