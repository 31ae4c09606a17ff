"""Benchmark: a cold bootstrap (both hosts from nothing: keys, tunnel, firewall, forwarding,
the container), where its time goes, as ratios to the floor (see breakdown.py).

    sudo .venv/bin/python -m tests.bench.cold [--rtt-ms 50] [--repeat 5] [--name N --index I]

Before each measured run (not measured): `teardown --purge-keys`. The lab's hosts have their
packages installed already (they share this machine's /usr), and the image is imported:
the run installs nothing; the container's first start is in its `service:` step.
"""

from __future__ import annotations

from tests.bench.breakdown import arguments, bench_lab, measure, tunnelops


def main() -> None:
    args = arguments(__doc__.split("\n\n")[0])
    with bench_lab(args) as lab:
        measure(lab, args, "cold bootstrap",
                lambda: tunnelops(lab, "teardown", "--purge-keys"), ("bootstrap",))


if __name__ == "__main__":
    main()
