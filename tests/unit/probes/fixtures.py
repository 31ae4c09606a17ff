"""Probe fixtures as data: what a probe's shell printed on a host, and the value its parser
must make of it. cases/KIND.json holds each kind's cases, a list of

    {"host": "where the output comes from (a lab host, or a tool's documented form)",
     "probe": {"kind": "wg", "args": {"interface": "wg0"}},
     "output": "...", "value": ...}

capture.py records them from a running lab (every probe of the facts batch and of verify's
batches, on both hosts); hand-written cases (BusyBox's text, error outputs) sit beside them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tunnelops import probes
from tunnelops.model.ports import PortSpec
from tunnelops.probes import Probe

HERE = Path(__file__).parent / "cases"


def kinds() -> dict[str, type[Probe]]:
    """Every probe tunnelops has (every subclass in tunnelops.probes), by kind."""
    out: dict[str, type[Probe]] = {}
    todo = list(Probe.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith(f"{probes.__name__}."):
            out[cls.kind] = cls
    return out


def args(probe: Probe) -> dict[str, Any]:
    return {f.name: jsonable(getattr(probe, f.name)) for f in dataclasses.fields(probe)}  # type: ignore[arg-type]


def build(spec: dict) -> Probe:
    cls = kinds()[spec["kind"]]
    values = {}
    for k, v in spec.get("args", {}).items():
        if k == "specs":
            v = tuple(PortSpec.parse(x) for x in v)
        elif isinstance(v, list):
            v = tuple(v)
        values[k] = v
    return cls(**values)


def jsonable(value: Any) -> Any:
    if isinstance(value, PortSpec):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def load() -> list[tuple[str, dict]]:
    return [(f"{f.stem}: {c['host']}", c) for f in sorted(HERE.glob("*.json"))
            for c in json.loads(f.read_text())]
