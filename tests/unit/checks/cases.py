"""Check cases as data: a fault made in the recorded healthy readings (recorded/, from a
real lab: capture.py), and the rows it must produce. cases/LINK.json holds each link's
cases, a list of

    {"name": "...",                                   what the fault is
     "site": {"add_ports": ["27015-27016/udp"], "client_ip": "snat"},   the site, changed
     "patches": [{"host": "home", "probe": "rules", "remove_where": {"src": "192.168.2.2"}}],
     "laptop": {"tcp": {"12346/tcp": [{"port": 12346, "outcome": "refused"}]}},
     "expect": {"first_failure": "home.rule_from", "ok": true,
                "rows": {"home.rule_from": {"hint": "...", "measured_startswith": "..."}}}}

A patch names a host and a probe by its key, and changes what that probe read (`path`: a
JSON pointer into its value, ~1 for a "/"): `set`, `add` (+ `value`; appends, or inserts
at an index), `remove` (the item at path), `remove_where` (list items with these values),
`shift` (+ a number); `nft_remove_rule` (the one rule whose nft words contain this) and
`nft_remove_element` ([set, value]) edit an `nft -j` ruleset; `unreachable` drops the host.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunnelops import netfilter
from tunnelops.inventory.read import load as load_site
from tunnelops.model.ports import PortSpec
from tunnelops.model.site import Site
from tunnelops.probes import Readings
from tunnelops.verify import Ctx, LaptopState, Row, TcpResult, chain, evaluate
from tunnelops.verify.runner import Measured, batches_for

HERE = Path(__file__).parent
RECORDED = HERE / "recorded"


def site(changes: dict | None = None) -> Site:
    s = load_site(RECORDED / "site.toml")
    changes = changes or {}
    for spec in changes.get("add_ports", []):
        svc = s.services[0]
        s = replace(s, services=(replace(svc, ports=(*svc.ports, PortSpec.parse(spec))),
                                 *s.services[1:]))
    if "ports" in changes:
        svc = s.services[0]
        s = replace(s, services=(replace(svc, ports=tuple(
            PortSpec.parse(p) for p in changes["ports"])), *s.services[1:]))
    if "whoami_url" in changes:
        s = replace(s, whoami_url=changes["whoami_url"])
    if "client_ip" in changes:
        s = replace(s, client_ip=changes["client_ip"])
    return s


def laptop(changes: dict | None = None) -> LaptopState:
    data = json.loads((RECORDED / "laptop.json").read_text()) | (changes or {})
    data["tcp"] = {k: [TcpResult(**x) for x in v] for k, v in data["tcp"].items()}
    return LaptopState(**data)


def _steps(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/") if p != ""]


def _at(value: Any, steps: list[str]) -> Any:
    for step in steps:
        value = value[int(step)] if isinstance(value, list) else value[step]
    return value


def _assign(value: Any, steps: list[str], new: Any) -> Any:
    if not steps:
        return new
    parent = _at(value, steps[:-1])
    last = steps[-1]
    parent[int(last) if isinstance(parent, list) else last] = new
    return value


def _nft_rules(docs: list) -> list[tuple[list, dict]]:
    return [(d["nftables"], o) for d in docs for o in d.get("nftables", []) if "rule" in o]


def patch(value: Any, op: dict) -> Any:
    value = copy.deepcopy(value)
    steps = _steps(op.get("path", ""))
    if "set" in op:
        return _assign(value, steps, op["set"])
    if "shift" in op:
        return _assign(value, steps, _at(value, steps) + op["shift"])
    if "add" in op:
        target = _at(value, steps)
        target.insert(op.get("at", len(target)), op["add"])
        return value
    if "remove" in op:
        target = _at(value, steps[:-1])
        del target[int(steps[-1]) if isinstance(target, list) else steps[-1]]
        return value
    if "remove_where" in op:
        target = _at(value, steps)
        kept = [x for x in target if not all(x.get(k) == v for k, v in op["remove_where"].items())]
        assert len(kept) < len(target), f"nothing matches {op['remove_where']}"
        target[:] = kept
        return value
    if "nft_remove_rule" in op:
        found = [(objs, o) for objs, o in _nft_rules(value)
                 if op["nft_remove_rule"] in netfilter.describe(o["rule"])]
        assert len(found) == 1, f"{len(found)} rules match {op['nft_remove_rule']!r}"
        found[0][0].remove(found[0][1])
        return value
    if "nft_remove_element" in op:
        name, elem = op["nft_remove_element"]
        for d in value:
            for o in d.get("nftables", []):
                s = o.get("set", {})
                if s.get("name") == name:
                    before = len(s["elem"])
                    s["elem"] = [e for e in s["elem"] if netfilter.port_elements([e]) and
                                 netfilter.port_elements([e])[0].key != str(elem)]
                    assert len(s["elem"]) == before - 1, f"no element {elem} in {name}"
        return value
    raise ValueError(f"unknown patch {op}")


def rows(case: dict) -> list[Row]:
    """The rows of the recorded site with this case's faults."""
    s = site(case.get("site"))
    ctx = Ctx(s, s.whoami_url or "", "tunnelops_probe")
    checks = chain(ctx)
    outputs = {h: (RECORDED / f"{h}.txt").read_text() for h in ("vps", "home")}
    hosts: dict[str, Readings | None] = Measured(outputs, laptop(), {}).readings(ctx, checks)
    batches = batches_for(ctx, checks)
    for op in case.get("patches", []):
        h = op["host"]
        if op.get("unreachable"):
            hosts[h] = None
            continue
        probe = next((p for p in batches[h].probes if p.key == op["probe"]), None)
        assert probe is not None, f"{h} reads no probe {op['probe']!r}"
        r = hosts[h]
        assert r is not None
        r.set(probe, patch(r[probe], op))
    return evaluate(ctx, hosts, laptop(case.get("laptop")), checks)


_TESTS = {"": lambda have, want: have == want,
          "_startswith": lambda have, want: have.startswith(want),
          "_endswith": lambda have, want: have.endswith(want),
          "_contains": lambda have, want: want in have}


def check(case: dict, got: list[Row]) -> list[str]:
    """What in the rows differs from the case's expectations (nothing: it passes)."""
    want = case["expect"]
    by_id = {r.id: r for r in got}
    problems = []
    if "first_failure" in want:
        first = next((r for r in got if r.ok is False), None)
        if (first.id if first else None) != want["first_failure"]:
            problems.append(f"first failure {first.id if first else None}, not "
                            f"{want['first_failure']}: " + (f"{first.measured} | {first.hint}"
                                                            if first else ""))
    if "ok" in want and all(r.ok is not False for r in got) != want["ok"]:
        problems.append(f"rows {'pass' if want['ok'] else 'fail'}: "
                        f"{[r.id for r in got if r.ok is False]}")
    if "all_pass" in want and [r.id for r in got if r.ok is not True]:
        problems.append(f"not passing: {[(r.id, r.measured) for r in got if not r.ok]}")
    for row_id, fields in want.get("rows", {}).items():
        row = by_id.get(row_id)
        if row is None:
            problems.append(f"no row {row_id}")
            continue
        for key, expected in fields.items():
            name, test = next((key.removesuffix(sfx), t) for sfx, t in
                              sorted(_TESTS.items(), key=lambda x: -len(x[0])) if
                              key.endswith(sfx))
            have = getattr(row, name)
            if not test(have, expected):
                problems.append(f"{row_id}.{key}: {have!r}, not {expected!r}")
    return problems


def load() -> list[tuple[str, dict]]:
    return [(f"{f.stem}: {c['name']}", c) for f in sorted((HERE / "cases").glob("*.json"))
            for c in json.loads(f.read_text())]
