"""nftables as `nft -j` shows it, read once for everyone: the service port sets the plan
compares with (backends.nftables) and the ruleset verify follows a packet through.

`read()` turns nft's JSON documents into chains (family, table, hook, priority, policy,
rules as nft's expression objects) and named sets. `verdict()`, `nat()` and `rule_action()`
follow a NEW connection's first packet through them: a rule with a condition this reader
does not understand is not counted on (it neither accepts nor drops), so the answer errs
towards "not accepted", never towards a false pass.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from tunnelops.render.nftables import Element

Json = Any


@dataclass
class Chain:
    family: str
    table: str
    name: str
    type: str = ""  # filter, nat, route; "" for a regular (non-base) chain
    hook: str = ""
    prio: int = 0
    policy: str = "accept"
    rules: list[dict] = field(default_factory=list)  # nft's rule objects ("expr", "comment")

    @property
    def where(self) -> str:
        return f"{self.family} {self.table} {self.name}"


@dataclass
class Ruleset:
    chains: list[Chain] = field(default_factory=list)
    # (family, table) -> set name -> elements as nft's JSON gives them
    sets: dict[tuple[str, str], dict[str, list[Json]]] = field(default_factory=dict)

    def table_sets(self, chain: Chain) -> dict[str, list[Json]]:
        return self.sets.get((chain.family, chain.table), {})


def documents(text: str) -> list[Json]:
    """`nft -j` prints one JSON document per command, one a line."""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # an error message (no such table): nothing to read there
    return out


def read(docs: Json | list[Json]) -> Ruleset:
    objects = [o for d in (docs if isinstance(docs, list) else [docs])
               for o in (d.get("nftables", []) if isinstance(d, dict) else [])]
    rs = Ruleset()
    chains: dict[tuple[str, str, str], Chain] = {}
    for o in objects:
        if "chain" in o:
            c = o["chain"]
            chain = Chain(c["family"], c["table"], c["name"], c.get("type", ""),
                          c.get("hook", ""), int(c.get("prio", 0)), c.get("policy", "accept"))
            chains[(chain.family, chain.table, chain.name)] = chain
            rs.chains.append(chain)
        elif "set" in o:
            s = o["set"]
            rs.sets.setdefault((s["family"], s["table"]), {})[s["name"]] = list(
                s.get("elem", []))
    for o in objects:
        if "rule" in o:
            r = o["rule"]
            owner = chains.get((r["family"], r["table"], r["chain"]))
            if owner is not None:
                owner.rules.append(r)
    return rs


def _value(elem: Json) -> Json:
    return elem["elem"]["val"] if isinstance(elem, dict) and "elem" in elem else elem


def port_elements(elems: list[Json]) -> list[Element]:
    """A port set's elements (ports, port ranges, their comments) in port order; anything
    that is not a port is skipped."""
    out = []
    for e in elems:
        comment = e["elem"].get("comment", "") if isinstance(e, dict) and "elem" in e else ""
        v = _value(e)
        if isinstance(v, int):
            out.append(Element(v, v, comment))
        elif isinstance(v, dict) and "range" in v and all(isinstance(x, int) for x in v["range"]):
            out.append(Element(v["range"][0], v["range"][1], comment))
    return sorted(out)


def element_values(elems: list[Json]) -> list[tuple[str, str]]:
    """Any set's elements as (value, comment): a port `12345`, a range `27015-27020`, a
    name `wg0`, an address; values of other shapes (concatenations) are skipped."""
    out = []
    for e in elems:
        comment = e["elem"].get("comment", "") if isinstance(e, dict) and "elem" in e else ""
        v = _value(e)
        if isinstance(v, (int, str)):
            out.append((str(v), comment))
        elif isinstance(v, dict) and "range" in v and len(v["range"]) == 2:
            out.append((f"{v['range'][0]}-{v['range'][1]}", comment))
        elif isinstance(v, dict) and "prefix" in v:
            out.append((f"{v['prefix']['addr']}/{v['prefix']['len']}", comment))
    return out


def element_counters(elems: list[Json]) -> list[dict | None]:
    """Each element's counter ({"packets", "bytes"}; None for one that has none), in the
    order of element_values (the same elements it keeps)."""
    out: list[dict | None] = []
    for e in elems:
        v = _value(e)
        if not (isinstance(v, (int, str)) or (isinstance(v, dict) and (
                ("range" in v and len(v["range"]) == 2) or "prefix" in v))):
            continue
        c = e["elem"].get("counter") if isinstance(e, dict) and "elem" in e else None
        out.append(c if isinstance(c, dict) else None)
    return out


# ---------------------------------------------------------------- following a packet
@dataclass(frozen=True)
class Pkt:
    """A packet as far as rule matching goes: a NEW connection's first packet."""

    iif: str
    proto: str
    dport: int
    oif: str = ""
    saddr: str = ""
    daddr: str = ""
    dnat: bool = False  # conntrack says it was destination-NATed


def _members(right: Json, sets: dict[str, list[Json]]) -> list[Json] | None:
    """What the right-hand side stands for: a named set's elements (None for a set this
    reader was not shown), an anonymous set's, a list, or one value."""
    if isinstance(right, str) and right.startswith("@"):
        found = sets.get(right[1:])
        return None if found is None else [_value(e) for e in found]
    if isinstance(right, dict) and "set" in right:
        return [_value(e) for e in right["set"]]
    if isinstance(right, list):
        return right
    return [right]


def _name_in(name: str, values: list[Json]) -> bool:
    return any(isinstance(v, str) and (name.startswith(v[:-1]) if v.endswith("*") else v == name)
               for v in values)


def _port_in(port: int, values: list[Json]) -> bool:
    for v in values:
        if isinstance(v, int) and v == port:
            return True
        if isinstance(v, dict) and "range" in v and v["range"][0] <= port <= v["range"][1]:
            return True
    return False


def _addr_in(addr: str, values: list[Json]) -> bool:
    if not addr:
        return False
    for v in values:
        if isinstance(v, dict) and "prefix" in v:
            v = f"{v['prefix']['addr']}/{v['prefix']['len']}"
        elif isinstance(v, dict) and "range" in v:
            lo, hi = (ipaddress.ip_address(x) for x in v["range"])
            if lo <= ipaddress.ip_address(addr) <= hi:
                return True
            continue
        try:
            if ipaddress.ip_address(addr) in ipaddress.ip_network(str(v), strict=False):
                return True
        except ValueError:
            continue
    return False


def _match(m: Json, pkt: Pkt, sets: dict[str, list[Json]]) -> bool | None:
    """Whether PKT matches one `match` expression; None when it is not understood."""
    left, right, op = m.get("left"), m.get("right"), m.get("op", "==")
    if op not in ("==", "!=", "in") or not isinstance(left, dict):
        return None
    values = _members(right, sets)
    if values is None:
        return None
    hit: bool
    if "meta" in left:
        key = left["meta"].get("key")
        if key in ("iifname", "iif", "oifname", "oif"):
            hit = _name_in(pkt.iif if key.startswith("i") else pkt.oif, values)
        elif key == "l4proto":
            hit = pkt.proto in values
        else:
            return None
    elif "payload" in left:
        proto, fld = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("tcp", "udp") and fld == "dport":
            if proto != pkt.proto:  # `tcp dport != 22` is a TCP packet's test too
                return False
            hit = _port_in(pkt.dport, values)
        elif proto == "ip" and fld in ("saddr", "daddr"):
            hit = _addr_in(pkt.saddr if fld == "saddr" else pkt.daddr, values)
        else:
            return None
    elif "ct" in left and left["ct"].get("key") in ("state", "status"):
        have = "new" if left["ct"]["key"] == "state" else ("dnat" if pkt.dnat else "")
        flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
        hit = have in flat
    else:
        return None
    return not hit if op == "!=" else hit


_VERDICTS = ("accept", "drop", "reject", "masquerade", "return")
_NEUTRAL = ("counter", "log")


def rule_action(rule: dict, pkt: Pkt,
                sets: dict[str, list[Json]] | None = None) -> tuple[str, str] | None:
    """(action, argument) when PKT matches every condition of RULE; None when it doesn't
    or when the rule has a condition this reader does not understand (then it is ignored).
    SETS are the named sets of the rule's table, for matches such as `udp dport @svc_udp`."""
    for expr in rule.get("expr", []):
        (kind, arg), = expr.items() if isinstance(expr, dict) and len(expr) == 1 else [(None, None)]
        if kind == "match":
            if not _match(arg, pkt, sets or {}):
                return None
        elif kind in _NEUTRAL:
            continue
        elif kind in _VERDICTS:
            return kind, ""
        elif kind in ("dnat", "snat"):
            return kind, str((arg or {}).get("addr", ""))
        elif kind in ("jump", "goto"):
            return kind, str((arg or {}).get("target", ""))
        else:
            return None  # not understood: this rule is not counted on
    return None


def _run_chain(rs: Ruleset, chain: Chain, pkt: Pkt,
               depth: int = 0) -> tuple[str, str, str] | None:
    """First terminal (action, argument, where) in CHAIN, following jumps."""
    for rule in chain.rules:
        act = rule_action(rule, pkt, rs.table_sets(chain))
        if act is None:
            continue
        if act[0] in ("jump", "goto") and depth < 8:
            target = next((c for c in rs.chains if (c.family, c.table, c.name)
                           == (chain.family, chain.table, act[1])), None)
            res = _run_chain(rs, target, pkt, depth + 1) if target else None
            if res is not None and res[0] != "return":
                return res
            if act[0] == "goto":
                return None
            continue
        return act[0], act[1], f"{chain.family} {chain.table} {chain.name}: {describe(rule)}"
    return None


def verdict(rs: Ruleset, hook: str, pkt: Pkt) -> tuple[bool, str]:
    """Does PKT get through every base filter chain on HOOK? (ok, the deciding rule)."""
    base = sorted((c for c in rs.chains if c.hook == hook and c.type == "filter"),
                  key=lambda c: c.prio)
    why = f"no {hook} chain: accepted"
    for c in base:
        res = _run_chain(rs, c, pkt)
        if res is None:
            if c.policy == "drop":
                return False, f"{c.family} {c.table} {c.name}: policy drop (no rule accepts it)"
            why = f"{c.family} {c.table} {c.name}: policy accept"
        elif res[0] in ("drop", "reject"):
            return False, res[2]
        else:
            why = res[2]
    return True, why


def nat(rs: Ruleset, hook: str, pkt: Pkt) -> tuple[str, str, str] | None:
    """The first NAT action (dnat/snat/masquerade) PKT meets on HOOK, if any."""
    for c in sorted((c for c in rs.chains if c.hook == hook and c.type == "nat"),
                    key=lambda c: c.prio):
        res = _run_chain(rs, c, pkt)
        if res is not None and res[0] in ("dnat", "snat", "masquerade"):
            return res
    return None


# ---------------------------------------------------------------- words for the table
def _term(v: Json, quote: bool) -> str:
    if isinstance(v, dict) and "set" in v:
        return "{ " + ", ".join(_term(_value(x), quote) for x in v["set"]) + " }"
    if isinstance(v, dict) and "range" in v:
        return "-".join(str(x) for x in v["range"])
    if isinstance(v, dict) and "prefix" in v:
        return f"{v['prefix']['addr']}/{v['prefix']['len']}"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    if isinstance(v, str) and quote and not v.startswith("@"):
        return f'"{v}"'
    return str(v)


def _left(left: Json) -> tuple[str, bool]:
    if isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key", "?")
        return (key if key in ("iifname", "oifname", "iif", "oif") else f"meta {key}"), \
            key.endswith("name")
    if isinstance(left, dict) and "payload" in left:
        p = left["payload"]
        return f"{p.get('protocol', '?')} {p.get('field', '?')}", False
    if isinstance(left, dict) and "ct" in left:
        return f"ct {left['ct'].get('key', '?')}", False
    return "…", False


def describe(rule: dict) -> str:
    """A rule in (nearly) nft's own words, for the deciding rule a row shows."""
    words = []
    for expr in rule.get("expr", []):
        if not isinstance(expr, dict) or len(expr) != 1:
            continue
        (kind, arg), = expr.items()
        if kind == "match":
            left, quote = _left(arg.get("left"))
            op = "!= " if arg.get("op") == "!=" else ""
            words.append(f"{left} {op}{_term(arg.get('right'), quote)}")
        elif kind in ("dnat", "snat"):
            addr = (arg or {}).get("addr", "")
            port = f":{arg['port']}" if isinstance(arg, dict) and "port" in arg else ""
            words.append(f"{kind} ip to {addr}{port}")
        elif kind in ("jump", "goto"):
            words.append(f"{kind} {(arg or {}).get('target', '')}")
        else:
            words.append(kind)
    if rule.get("comment"):
        words.append(f'comment "{rule["comment"]}"')
    return " ".join(words)
