"""Reading for `status`: every host of the given sites read by ONE script (a host several
sites share, once), no host lock (read-only), all hosts in parallel."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tunnelops.model.site import Site
from tunnelops.probes import MARK, Batch, Probe, Readings
from tunnelops.remote import Remote, RemoteError, Transcript
from tunnelops.status.report import (
    HostRead,
    StatusReport,
    home_probes,
    hub_probes,
    site_status,
)

TIMEOUT_S = 30

# a host is its SSH destination and the files ssh reads for it
HostKey = tuple[str, str | None, str | None]


def host_key(site: Site, dest: str) -> HostKey:
    return dest, site.ssh_config, site.known_hosts


def plan(sites: Sequence[Site]) -> dict[HostKey, list[Probe]]:
    """What each host is read for, every site's needs of it together."""
    out: dict[HostKey, list[Probe]] = {}
    for site in sites:
        wanted = [(host_key(site, str(site.vps.host)), hub_probes(site)),
                  *((host_key(site, str(h.host)), home_probes(site, h)) for h in site.homes)]
        for key, probes in wanted:
            have = out.setdefault(key, [])
            have += [p for p in probes if p not in have]
    return out


def run(sites: Sequence[Site], *, trust_new: bool = False,
        transcript: Transcript | None = None) -> StatusReport:
    t0 = time.monotonic()
    batches = {k: Batch(ps) for k, ps in plan(sites).items()}
    readings: dict[HostKey, Readings | None] = {}
    hosts: dict[HostKey, HostRead] = {k: HostRead(k[0]) for k in batches}

    def read(key: HostKey) -> None:
        dest, ssh_config, known_hosts = key
        start = time.monotonic()
        remote = Remote(dest, ssh_config=ssh_config, known_hosts=known_hosts,
                        trust_new=trust_new, transcript=transcript, connect_timeout=5)
        try:
            res = remote.run(batches[key].script(), timeout=TIMEOUT_S, what="status")
            r = batches[key].parse(res.stdout) if MARK in res.stdout else None
            if r is None or not r.complete:
                err = (res.stderr or res.stdout).strip().splitlines()
                hosts[key].error = (f"{dest}: its status script failed: "
                                    f"{err[-1] if err else f'exit {res.exit}'}")
            readings[key] = r if r is not None and r.complete else None
        except RemoteError as e:
            hosts[key].error = str(e)
            readings[key] = None
        finally:
            hosts[key].round_trips = remote.round_trips
            hosts[key].seconds = time.monotonic() - start
            remote.close()

    with ThreadPoolExecutor(max(1, len(batches))) as pool:
        list(pool.map(read, batches))
    out = []
    for site in sites:
        hub_key = host_key(site, str(site.vps.host))
        keys = {h.name: host_key(site, str(h.host)) for h in site.homes}
        errors = {k[0]: hosts[k].error for k in (hub_key, *keys.values())
                  if hosts[k].error}
        out.append(site_status(site, readings.get(hub_key),
                               {n: readings.get(k) for n, k in keys.items()},
                               errors))  # type: ignore[arg-type]
    return StatusReport(out, {k[0]: h for k, h in hosts.items()}, time.monotonic() - t0)
