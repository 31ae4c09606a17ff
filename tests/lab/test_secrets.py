"""Safety (README "Safety"), against its own lab instance "labse" (index 9).

Secrets stay where they are born: no private key ever reaches the laptop, a command line,
an environment, the transcript or the inventory (every process of both hosts sampled while a
bootstrap and an add-port run).

What the modules of the Safety promises share (the lab instance, run, state): safety_env.py.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import threading
import uuid
from collections.abc import Callable

import pytest

from tests.lab.env import sh
from tests.lab.safety_env import (
    fresh,
    lab_fixtures,
    run,
)
from tunnelops.lab import Lab
from tunnelops.lab.topology import HOSTS
from tunnelops.remote import Transcript

pytestmark = pytest.mark.lab

labs, pristine = lab_fixtures("labse", 9)


# ============================================================================ 3. secrets
POLLER = r"""
import json, os, sys, time
stop, rate = sys.argv[1], float(sys.argv[2])
seen, samples, t0 = set(), 0, time.monotonic()
while not os.path.exists(stop) and time.monotonic() - t0 < 300:
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            for what in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{pid}/{what}", "rb") as f:
                        seen.add(f.read().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    pass
    samples += 1
    time.sleep(1 / rate)
print(json.dumps({"seen": sorted(seen), "samples": samples,
                  "seconds": time.monotonic() - t0}))
"""


class Poller:
    """Every command line and environment of every process inside a lab host, sampled
    20+ times a second in a background thread, until stopped."""

    def __init__(self, lab: Lab, role: str, rate: float = 40) -> None:
        self.lab, self.role, self.stop_file = lab, role, f"/tmp/poll-stop-{uuid.uuid4().hex}"
        self.result: dict = {}
        self.thread = threading.Thread(target=self._run, args=(rate,), daemon=True)
        self.thread.start()

    def _run(self, rate: float) -> None:
        out = self.lab.exec(self.role, ["python3", "-c", POLLER, self.stop_file, str(rate)],
                            timeout=320)
        self.result = json.loads(out.stdout)

    def stop(self) -> dict:
        self.lab.exec(self.role, ["touch", self.stop_file])
        self.thread.join(30)
        return self.result


def b64_decoded(text: str) -> str:
    """Whatever base64 the text carries (the facts send files that way), decoded."""
    out = []
    for blob in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
        with contextlib.suppress(binascii.Error, ValueError):
            out.append(base64.b64decode(blob + "=" * (-len(blob) % 4)).decode(errors="replace"))
    return "\n".join(out)


def test_private_keys_never_leave_their_host(labs: Lab, pristine: dict[str, dict[str, str]],
                                             lab_report: Callable[[str], None]) -> None:
    fresh(labs, pristine)  # keys are generated during this very run
    inventory_before = labs.inventory.read_text()
    pollers = {role: Poller(labs, role) for role in HOSTS}
    transcript = Transcript()
    try:
        up = run(labs, transcript=transcript)
        assert up.ok, up
        added = run(labs, "add-port", port="12347/udp", transcript=transcript)
        assert added.ok and added.changed() > 0, added
    finally:
        polled = {role: p.stop() for role, p in pollers.items()}
    keys = {r: sh(labs, r, "cat /etc/wireguard/wg0.key").strip() for r in HOSTS}
    pubs = {r: sh(labs, r, "cat /etc/wireguard/wg0.pub").strip() for r in HOSTS}
    for role in HOSTS:
        assert len(base64.b64decode(keys[role])) == 32 and keys[role] != pubs[role]

    sent = transcript.text()
    haystacks = {
        "transcript": sent,
        "transcript, base64-decoded": b64_decoded(sent),
        "console": up.output + added.output,
        "inventory": labs.inventory.read_text(),
        **{f"processes on {r}": "\n".join(polled[r]["seen"]) for r in HOSTS},
    }
    # the controls: the transcript did carry the public keys, the pollers did see the run
    for role in HOSTS:
        assert pubs[role] in sent
        result = polled[role]
        rate = result["samples"] / result["seconds"]
        assert rate >= 20, f"{role} polled at {rate:.0f} Hz only"
        assert any("wireguard-go wg0" in c for c in result["seen"]), role
        assert any("podman" in c for c in polled["home"]["seen"])
    for role, key in keys.items():
        raw = base64.b64decode(key)
        for name, text in haystacks.items():
            assert key not in text and raw.hex() not in text, f"{role}'s key in {name}"
        # on the host itself: only its key file and the WireGuard config hold it
        holders = sh(labs, role, "find /etc /run /tmp /root /home /var/lib/tunnelops /var/log "
                                 f"/var/tmp /var/backups -xdev -type f -exec grep -lsF -- {key} "
                                 "{} + 2>/dev/null; :").split()
        assert sorted(holders) == ["/etc/wireguard/wg0.conf", "/etc/wireguard/wg0.key"], holders
        modes = sh(labs, role, "stat -c '%n %a %U %G' /etc/wireguard /etc/wireguard/wg0.key "
                               "/etc/wireguard/wg0.conf /etc/wireguard/wg0.pub").splitlines()
        assert modes == ["/etc/wireguard 700 root root", "/etc/wireguard/wg0.key 600 root root",
                         "/etc/wireguard/wg0.conf 600 root root",
                         "/etc/wireguard/wg0.pub 644 root root"], (role, modes)
    labs.inventory.write_text(inventory_before)  # 12347/udp out again (next run converges)
    lab_report(f"secrets: {len(transcript.entries)} transcript entries, processes polled at "
               + ", ".join(f"{r} {polled[r]['samples'] / polled[r]['seconds']:.0f} Hz "
                           f"({len(polled[r]['seen'])} distinct)" for r in HOSTS))
