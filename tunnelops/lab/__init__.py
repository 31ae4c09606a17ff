"""The namespace lab: real SSH hosts (a VPS, a home server behind NAT, an internet) on one
machine, for the demo and every end-to-end test. See topology.py for the picture.

Its names are imported on first use (PEP 562): the command line imports lab.tasks for
`--help` without the machinery behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunnelops.lab.instance import HostStatus, Lab
    from tunnelops.lab.procs import LabError
    from tunnelops.lab.topology import Topology

__all__ = ["HostStatus", "Lab", "LabError", "Topology"]


def __getattr__(name: str) -> object:
    if name == "Topology":
        from tunnelops.lab import topology

        return topology.Topology
    if name == "LabError":
        from tunnelops.lab import procs

        return procs.LabError
    if name in __all__:
        from tunnelops.lab import instance

        return getattr(instance, name)
    raise AttributeError(f"module 'tunnelops.lab' has no attribute {name!r}")
