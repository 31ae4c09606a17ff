"""`status`: how a site is doing right now, read-only. For each tunnel (a home's, seen from
the hub) the latest handshake's age, the bytes both ways and the home's endpoint; for each
service its home, its container's state, uptime and restarts, and its ports with what the
VPS counted on them (nftables: each port set element counts the packets it forwards).

One script per host, no host lock, every host in parallel (several sites sharing a host:
still one script for it). report.py is the pure evaluation and the JSON, runner.py the
reading, view.py the table. The report is not ok when a tunnel has had no handshake for 3
minutes, or a service does not run: the exit status says so, for cron and monitoring.
"""

from tunnelops.status.report import (
    HANDSHAKE_MAX_AGE,
    PortStatus,
    ServiceStatus,
    SiteStatus,
    StatusReport,
    TunnelStatus,
    home_probes,
    hub_probes,
    site_status,
)
from tunnelops.status.runner import run

__all__ = ["HANDSHAKE_MAX_AGE", "PortStatus", "ServiceStatus", "SiteStatus", "StatusReport",
           "TunnelStatus", "home_probes", "hub_probes", "run", "site_status"]
