"""Cold bootstraps over a slow WAN never trip the VPS's own SSH rate limiter (issue 15).

The first load of the VPS's nft table turns connection tracking on while the run's own SSH
connection is open: conntrack picks that connection up mid-stream, so its in-flight ACKs
are `ct state new` packets to port 22 until the VPS answers. A limiter that counted every
new-state packet spent its burst of 3 on them and dropped the guard's proof connection:
"SSH stopped working after the firewall change", a correct change reported as a lock-out
(measured in 4 of 6 runs at 50 ms RTT). It must count connection attempts only (SYN).

Own instance "labk" (index 16) with 50 ms of WAN latency:
- the mechanism, deterministically: TCP packets without SYN that conntrack sees as new (what
  a picked-up connection's in-flight ACKs are; here bare ACKs from the internet, raw-socket
  made inside the lab's inet namespace) must not use up the limiter, which must still stop
  the 4th real connection attempt in a burst;
- RUNS fresh bootstraps, each followed by a teardown (which deletes the table: tracking is
  off again, the next bootstrap is cold again), none failing on the guard's proof.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator

import pytest
from rich.console import Console

from tests.conftest import own_lab, slot
from tests.lab.env import forget_ssh_rate
from tunnelops import commands
from tunnelops.lab import Lab, Topology

pytestmark = pytest.mark.lab

TOPO = Topology(*slot("labk", 16))
RUNS = 5
RTT_MS = 50
GUARD_S = 8  # a failed run's watchdog restores within this; the product default is 20
LOCKOUT = "SSH stopped working after the firewall change"


# Inside the lab's `inet` namespace: N bare TCP ACKs to DST:22 from random ports (no such
# connection: conntrack, which picks up connections mid-stream, calls each `ct state new`),
# then one real connection attempt; prints "banner" if it got the SSH banner.
STRAY_ACKS = r"""
import random, socket, struct, sys
dst, src, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def csum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for _ in range(n):
    tcp = struct.pack("!HHIIBBHHH", random.randint(40000, 60000), 22, random.getrandbits(32),
                      random.getrandbits(32), 5 << 4, 0x10, 65535, 0, 0)
    pseudo = struct.pack("!4s4sBBH", socket.inet_aton(src), socket.inet_aton(dst), 0, 6, 20)
    raw.sendto(tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:], (dst, 0))
try:
    with socket.create_connection((dst, 22), timeout=3) as s:
        s.settimeout(3)
        print("banner" if s.recv(4) == b"SSH-" else "no banner")
except OSError as e:
    print(f"fails ({e})")
"""


def attempt_after_stray_acks(lab: Lab, n: int) -> str:
    return lab.exec("inet", ["python3", "-c", STRAY_ACKS, lab.topo.vps_public,
                             lab.topo.inet_vps_side, str(n)]).stdout.decode().strip()


def run(lab: Lab, what: str) -> tuple[bool, str]:
    out = io.StringIO()
    opts = commands.Options(inventory_dir=lab.inventory_dir, site=TOPO.name,
                            guard_seconds=GUARD_S, console=Console(file=out, width=200))
    report = (commands.bootstrap(opts, None, None) if what == "bootstrap"
              else commands.teardown(opts))
    errors = " | ".join(h.error for h in report.hosts.values() if h.error)
    return report.ok, errors or out.getvalue()[-2000:]


@pytest.fixture(scope="module")
def slow_lab() -> Iterator[Lab]:
    yield from own_lab(TOPO, rtt_ms=RTT_MS)


def test_the_limiter_counts_connection_attempts_not_other_new_packets(slow_lab: Lab) -> None:
    """Before the fix: 5 stray ACKs, and the next connection attempt timed out."""
    lab = slow_lab
    ok, why = run(lab, "bootstrap")
    assert ok, why
    try:
        forget_ssh_rate(lab)
        assert attempt_after_stray_acks(lab, 0) == "banner"  # the control
        forget_ssh_rate(lab)
        assert attempt_after_stray_acks(lab, 20) == "banner"
        # and it still limits: 3 attempts at once pass, the 4th is dropped
        forget_ssh_rate(lab)
        got = [attempt_after_stray_acks(lab, 0) for _ in range(4)]
        assert got[:3] == ["banner"] * 3 and got[3].startswith("fails"), got
    finally:
        torn, why = run(lab, "teardown")
        assert torn, why


def test_cold_bootstraps_at_50ms_never_trip_their_own_ssh_limiter(
        slow_lab: Lab, lab_report: Callable[[str], None]) -> None:
    lab = slow_lab
    outcomes: list[str] = []
    for _ in range(RUNS):
        tables = lab.exec("vps", ["nft", "list", "tables"]).stdout.decode()
        assert "tunnelops" not in tables  # the control: every run starts cold
        t0 = time.monotonic()
        ok, detail = run(lab, "bootstrap")
        outcomes.append(f"ok {time.monotonic() - t0:.1f}s" if ok else detail)
        if not ok:
            time.sleep(GUARD_S + 2)  # the watchdog restores first (no table), then undo
        torn, why = run(lab, "teardown")
        assert torn, why
    lockouts = [o for o in outcomes if LOCKOUT in o]
    lab_report(f"{RUNS} cold bootstraps at {RTT_MS} ms RTT: {len(lockouts)} tripped the "
               f"limiter; {outcomes}")
    assert lockouts == [], outcomes
    assert all(o.startswith("ok ") for o in outcomes), outcomes
