"""Benchmark: `add-port` on a converged site, where its time goes, as ratios to the floor
(see breakdown.py).

    sudo .venv/bin/python -m tests.bench.add_port [--rtt-ms 50] [--repeat 5] [--port 12347/udp]

Before each measured run (not measured): the port removed again (`remove-port`).
"""

from __future__ import annotations

from tests.bench.breakdown import arguments, bench_lab, measure, tunnelops


def main() -> None:
    args = arguments(__doc__.split("\n\n")[0],
                     **{"--port": {"default": "12347/udp", "help": "the port (default 12347/udp;"
                                   " the lab's image answers on 12345-12349)"}})
    with bench_lab(args) as lab:
        tunnelops(lab, "bootstrap")  # converged first
        measure(lab, args, f"add-port {args.port}",
                lambda: tunnelops(lab, "remove-port", args.port), ("add-port", args.port))
        tunnelops(lab, "remove-port", args.port)


if __name__ == "__main__":
    main()
