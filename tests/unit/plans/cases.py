"""Plan cases as data: recorded facts of a host (tests/unit/facts/NAME.txt), perhaps changed,
in; the exact changes out. cases/*.json hold lists of

    {"name": "...", "facts": "alpine-vps-fresh", "role": "vps",
     "site": "SITE" | "RANGE_SITE", "site_changes": {"add_port": "12347/udp", ...},
     "peer_key": "HOME_PUB", "phase": "all" | "prepare" | "configure",
     "patches": [{"path": "/awall_enabled", "set": ["ssh", "wireguard"]}],
     "expect": {"steps": [["packages", ["install ..."]], ...],      every step, in order
                "step": {"firewall": ["..."]},                        some steps
                "scripts": {"packages: install awall": "apk add ..."},
                "diffs": {"firewall: open ...": "+ firewall-cmd ..."},  what --dry-run shows
                "notes": {"wireguard": ["..."]}, "guard": {"firewall": true},
                "post": {"wireguard": ["...", {"enable": "UNIT"}]}, "converged": true,
                "error": "one line"}}

Patches change HostFacts fields with the check cases' operations (a JSON pointer whose first
step is the field: /nm/values/connection.zone); nft_sets take [first, last, comment].
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tests.unit.checks.cases import patch
from tests.unit.facts import generate
from tunnelops.backends.originals import enable_shell
from tunnelops.changes import StepPlan
from tunnelops.facts import HostFacts
from tunnelops.render.nftables import Element
from tunnelops.steps import home, vps
from tunnelops.steps.context import Ctx, PlanError

HERE = Path(__file__).parent
SITES = {"SITE": generate.SITE, "RANGE_SITE": generate.RANGE_SITE}
KEYS = {"HOME_PUB": generate.HOME_PUB, "VPS_PUB": generate.VPS_PUB}


def _convert(field: str, value: object) -> object:
    if field == "nft_sets":
        return {k: [Element(*e) for e in v] for k, v in value.items()}  # type: ignore[union-attr]
    if field in ("awall_enabled", "os_like"):
        return tuple(value)  # type: ignore[arg-type]
    if field == "commands":
        return frozenset(value)  # type: ignore[arg-type]
    return value


def patch_facts(f: HostFacts, op: dict) -> None:
    steps = op["path"].strip("/").split("/", 1)
    current = getattr(f, steps[0])
    if steps[0] == "nft_sets":
        current = {k: [list(dataclasses.astuple(e)) for e in v] for k, v in current.items()}
    new = patch(current, {**op, "path": steps[1] if len(steps) > 1 else ""})
    setattr(f, steps[0], _convert(steps[0], new))


def site(case: dict):
    s = SITES[case.get("site", "SITE")]
    ch = case.get("site_changes", {})
    if "add_port" in ch:
        s = s.with_port_added(ch["add_port"])
    if "remove_port" in ch:
        s = s.with_port_removed(ch["remove_port"])
    if "listen_port" in ch:
        s = dataclasses.replace(s, tunnel=dataclasses.replace(s.tunnel,
                                                              listen_port=ch["listen_port"]))
    if "public_ip" in ch:
        s = dataclasses.replace(s, vps=dataclasses.replace(s.vps, public_ip=ch["public_ip"]))
    return s


def plans(case: dict) -> list[StepPlan]:
    f = generate.facts(case["facts"])
    for op in case.get("patches", []):
        patch_facts(f, op)
    s, role, phase = site(case), case.get("role", "vps"), case.get("phase", "all")
    if role == "vps":
        ctx = Ctx(s, "vps", f, peer_public_key=KEYS[case.get("peer_key", "HOME_PUB")])
        ctx.vps_public_ip, ctx.wan_interface = vps.discover(ctx, generate.INVENTORY)
        module = vps
    else:
        ctx = Ctx(s, "home", f, peer_public_key=KEYS[case.get("peer_key", "VPS_PUB")],
                  vps_public_ip=generate.VPS_IP, wan_interface="eth0")
        module = home
    out = module.prepare(ctx) if phase in ("all", "prepare") else []
    return out + (module.configure(ctx) if phase in ("all", "configure") else [])


def check(case: dict) -> list[str]:
    want = case["expect"]
    try:
        got = plans(case)
    except PlanError as e:
        return [] if want.get("error") == str(e) else [f"refused: {e}"]
    if "error" in want:
        return [f"planned, not refused with {want['error']!r}"]
    problems = []
    summary = [[p.step, [c.summary for c in p.changes]] for p in got]
    by_step = {p.step: p for p in got}
    if "steps" in want and summary != want["steps"]:
        problems.append(f"steps: {summary}")
    for step, changes in want.get("step", {}).items():
        have = [c.summary for c in by_step[step].changes]
        if have != changes:
            problems.append(f"{step}: {have}")
    for key, script in want.get("scripts", {}).items():
        step, _, what = key.partition(": ")
        found = [c for c in by_step[step].changes if c.summary == what]
        if not found or found[0].shell() != script:
            problems.append(f"{key}: {found[0].shell() if found else 'no such change'!r}")
    for key, diff in want.get("diffs", {}).items():
        step, _, what = key.partition(": ")
        found = [c for c in by_step[step].changes if c.summary == what]
        if not found or found[0].diff() != diff:
            problems.append(f"{key}: {found[0].diff() if found else 'no such change'!r}")
    for step, notes in want.get("notes", {}).items():
        if by_step[step].notes != notes:
            problems.append(f"{step} notes: {by_step[step].notes}")
    for step, posts in want.get("post", {}).items():
        # {"enable": UNIT}: enable_shell's (it records into the host state, a tmp dir here)
        posts = [enable_shell(x["enable"]) if isinstance(x, dict) else x for x in posts]
        if by_step[step].post != posts:
            problems.append(f"{step} post: {by_step[step].post}")
    for step, guarded in want.get("guard", {}).items():
        if (by_step[step].guard is not None) != guarded:
            problems.append(f"{step} guard: {by_step[step].guard}")
    if want.get("converged") and (any(p.changes for p in got) or
                                  any(p.guard or p.post for p in got)):
        problems.append(f"not converged: {summary}")
    return problems


def load() -> list[tuple[str, dict]]:
    return [(f"{f.stem}: {c['name']}", c) for f in sorted((HERE / "cases").glob("*.json"))
            for c in json.loads(f.read_text())]
