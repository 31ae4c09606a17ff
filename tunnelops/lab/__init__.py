"""The namespace lab: real SSH hosts (a VPS, a home server behind NAT, an internet) on one
machine, for the demo and every end-to-end test. See topology.py for the picture."""

from tunnelops.lab.instance import HostStatus, Lab, LabError
from tunnelops.lab.topology import Topology

__all__ = ["HostStatus", "Lab", "LabError", "Topology"]
