"""Record a healthy site's verify readings from a running, bootstrapped lab:

    .venv/bin/python -m tests.unit.checks.capture INVENTORY_DIR SITE

writes recorded/{site.toml,vps.txt,home.txt,laptop.json}: the site's inventory file, what
each host's verify script printed (probe sections; private keys never among them), and what
the laptop measured (SSH, TCP, UDP). The check cases (cases/*.json) are faults made in
these readings. Review the diff after re-recording: numbers move (pids, ages, counters).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from tunnelops import verify
from tunnelops.inventory.read import load
from tunnelops.remote import Remote
from tunnelops.verify.runner import chain, context, measure

HERE = Path(__file__).parent / "recorded"


def main(inventory_dir: str, site_name: str) -> None:
    path = Path(inventory_dir) / f"{site_name}.toml"
    site = load(path)
    ctx = context(site)
    checks = chain(ctx)
    remotes = {h: Remote(ctx.dest(h), ssh_config=site.ssh_config,
                         known_hosts=site.known_hosts) for h in ("vps", "home")}
    try:
        m = measure(ctx, checks, remotes)
    finally:
        for r in remotes.values():
            r.close()
    rows = verify.evaluate(ctx, m.readings(ctx, checks), m.laptop, checks)
    bad = [r for r in rows if not r.ok]
    if bad or None in m.outputs.values():
        raise SystemExit(f"the site is not healthy, not recorded: {bad}")
    HERE.mkdir(exist_ok=True)
    # this machine's paths (the lab's ssh_config) are nobody else's
    lines = [x for x in path.read_text().splitlines(keepends=True)
             if not x.startswith(("ssh_config", "known_hosts"))]
    (HERE / "site.toml").write_text("".join(lines))
    for host, out in m.outputs.items():
        (HERE / f"{host}.txt").write_text(out or "")
    laptop = asdict(m.laptop)
    laptop["ssh"] = {h: {"ms": round(v["ms"]), "reused": v["reused"]}
                     for h, v in laptop["ssh"].items()}
    (HERE / "laptop.json").write_text(json.dumps(laptop, indent=2) + "\n")
    print(f"recorded {site_name} in {HERE}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
