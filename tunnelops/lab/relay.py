"""A userspace stand-in for `tc qdisc ... netem delay` (this kernel has no sch_netem).

Two TAP devices, one in each network namespace, joined by this process: every Ethernet frame
read on one side is written to the other after DELAY milliseconds. Run inside the first
namespace (so the process itself never lives in the machine's own namespace):

    python -m tunnelops.lab.relay DELAY_MS TAP_A NETNS_B_PATH TAP_B
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import heapq
import os
import select
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def _tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def main(argv: list[str]) -> None:
    delay = float(argv[0]) / 1000
    a = _tap(argv[1])
    _setns(argv[2])
    b = _tap(argv[3])
    peer = {a: b, b: a}
    queue: list[tuple[float, int, int, bytes]] = []
    seq = 0
    poll = select.poll()
    poll.register(a, select.POLLIN)
    poll.register(b, select.POLLIN)
    print("READY", flush=True)
    while True:
        timeout = -1 if not queue else max(0.0, (queue[0][0] - time.monotonic()) * 1000)
        for fd, _ in poll.poll(timeout):
            while True:
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                seq += 1
                heapq.heappush(queue, (time.monotonic() + delay, seq, peer[fd], frame))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            with contextlib.suppress(OSError):  # the other side is down: the wire drops it
                os.write(out, frame)


if __name__ == "__main__":
    main(sys.argv[1:])
