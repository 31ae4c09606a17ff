"""`verify`: every link of the chain checked end to end, each failure named with its fix.

One module per link (ssh, wireguard, tunnel, routing, vps_firewall, home_firewall,
container, ingress, egress), each a list of checks (check.py: what a check declares); the
runner reads what they need in ONE script per host and evaluates them; report.py is the
result, view.py its table.

Private keys never leave their host: the WireGuard dump's private-key column is blanked on
the host before anything is printed (probes.WgDump).
"""

from tunnelops.verify.check import DEFAULT_WHOAMI_URL, Check, Ctx, Outcome, State
from tunnelops.verify.laptop import LaptopState, TcpResult
from tunnelops.verify.report import HostRun, Row, VerifyReport
from tunnelops.verify.runner import chain, evaluate, probes, run, whoami

__all__ = ["DEFAULT_WHOAMI_URL", "Check", "Ctx", "HostRun", "LaptopState", "Outcome", "Row",
           "State", "TcpResult", "VerifyReport", "chain", "evaluate", "probes", "run",
           "whoami"]
