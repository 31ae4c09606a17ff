"""Record probe fixtures from a running, bootstrapped lab:

    .venv/bin/python -m tests.unit.probes.capture INVENTORY_DIR SITE [LABEL]

runs the facts batch and verify's batch on each host of the site (one round trip each) and
writes, for every probe, what it printed and what it parsed to into cases/KIND.json
(replacing the cases recorded from the same host before; hand-written ones stay). Review
the diff: a value that changed is a parser that changed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.unit.probes.fixtures import HERE, args, jsonable
from tunnelops.engine import fact_probes
from tunnelops.inventory.read import load
from tunnelops.remote import Remote
from tunnelops.verify.runner import batches_for, chain, context


def main(inventory_dir: str, site_name: str, label: str = "lab") -> None:
    site = load(Path(inventory_dir) / f"{site_name}.toml")
    ctx = context(site)
    verify_batches = batches_for(ctx, chain(ctx))
    found: dict[str, list[dict]] = {}
    for host in ("vps", "home"):
        remote = Remote(ctx.dest(host), ssh_config=site.ssh_config,
                        known_hosts=site.known_hosts)
        try:
            for batch in (fact_probes(site, host).batch(), verify_batches[host]):
                r = batch.parse(remote.run(batch.script(), what="capture").stdout)
                assert r.complete, f"{host}: a cut output"
                for p in batch:
                    found.setdefault(p.kind, []).append({
                        "host": f"{label} {host}", "probe": {"kind": p.kind, "args": args(p)},
                        "output": r.raw.get(p.key, ""), "value": jsonable(r[p])})
        finally:
            remote.close()
    HERE.mkdir(exist_ok=True)
    for kind, cases in found.items():
        path = HERE / f"{kind}.json"
        old = json.loads(path.read_text()) if path.exists() else []
        hosts = {c["host"] for c in cases}
        unique: dict[str, dict] = {}
        for c in cases:  # a probe read by both batches is recorded once
            unique.setdefault(json.dumps([c["host"], c["probe"]], sort_keys=True), c)
        kept = [c for c in old if c["host"] not in hosts]
        path.write_text(json.dumps(kept + list(unique.values()), indent=1,
                                   ensure_ascii=False) + "\n")
    print(f"recorded {sum(len(c) for c in found.values())} probe readings in {HERE}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
