"""The WireGuard interface (`wg show dump`, its private key blanked on the host) and what
crosses the tunnel: pings and the largest packet that passes it."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import TypedDict

from tunnelops.probes.base import Probe, not_key, q

PING_MIN = 548  # smallest packet the MTU search tries (IPv4 minimum reassembly is 576)


class Peer(TypedDict):
    public_key: str
    endpoint: str | None
    allowed_ips: list[str]
    latest_handshake: int
    rx: int
    tx: int
    keepalive: int


class WgState(TypedDict, total=False):
    public_key: str
    listen_port: int
    peers: list[Peer]
    link: dict  # the interface's entry of Addrs, added by facts (not read by this probe)


@dataclass(frozen=True)
class WgDump(Probe[WgState]):
    """The live interface: its public key, listen port and peers; {} when there is none.
    The dump's first field (the private key) is replaced by "-" on the host. Read after the
    ping when both are in a batch: its traffic starts a handshake if none is recent."""

    interface: str
    kind = "wg"
    after = ("ping",)

    def shell(self) -> str:
        return (f"wg show {q(self.interface)} dump | "
                "awk -F'\\t' 'NR==1{$1=\"-\"}1' OFS='\\t'")

    def parse(self, text: str) -> WgState:
        rows = [r.split("\t") for r in text.splitlines() if r.strip()]
        if not rows:
            return {}
        head = rows[0]
        state: WgState = {
            "public_key": head[1] if len(head) > 1 else "",
            "listen_port": int(head[2]) if len(head) > 2 and head[2].isdigit() else 0,
            "peers": []}
        for r in rows[1:]:
            if len(r) >= 8:
                state["peers"].append({
                    "public_key": r[0], "endpoint": None if r[2] == "(none)" else r[2],
                    "allowed_ips": [] if r[3] == "(none)" else r[3].split(","),
                    "latest_handshake": int(r[4] or 0), "rx": int(r[5] or 0),
                    "tx": int(r[6] or 0), "keepalive": 0 if r[7] == "off" else int(r[7])})
        return state


def rehandshake(iface: str) -> str:
    """Shell: drop the sessions with the peers and handshake again at once, by removing and
    re-adding each peer with its live settings. Needed at home when the VPS re-created its
    peer (e.g. a repaired peer key): home would keep sending on its old session, which the
    VPS no longer knows, for up to ~15 s before retrying a handshake by itself; the VPS
    cannot start one (home is behind NAT)."""
    i = shlex.quote(iface)
    add = f"wg set {i} peer \"$k\" allowed-ips \"${{ips#(none)}}\" persistent-keepalive \"$ka\""
    return (f"wg show {i} dump | tail -n +2 | while IFS=\"$(printf '\\t')\" read -r k _ ep ips "
            f"_ _ _ ka; do wg set {i} peer \"$k\" remove; if [ \"$ep\" = '(none)' ]; then "
            f"{add}; else {add} endpoint \"$ep\"; fi; done")


def never_handshook(iface: str) -> str:
    """Shell condition: the interface has a peer with no handshake yet."""
    return (f"wg show {shlex.quote(iface)} latest-handshakes 2>/dev/null | "
            "awk '$2 == 0 { z = 1 } END { exit !z }'")


class PingResult(TypedDict, total=False):
    sent: int
    received: int
    rtt_ms: float


# ping_first TRIES WAIT DEST: single pings until the first reply, summarised as ping would
PING_FIRST = """ping_first() {
  n=0; while [ "$n" -lt "$1" ]; do n=$((n + 1))
    if ping -n -q -c 1 -W "$2" "$3" >/dev/null 2>&1; then
      echo "$n packets transmitted, 1 received"; return 0; fi
  done; echo "$n packets transmitted, 0 received"; return 1
}"""


@dataclass(frozen=True)
class Ping(Probe[PingResult]):
    """A few pings to an address; {} when ping printed no summary. With `rehandshake_on`,
    a first round that gets no answer renews the interface's sessions (rehandshake) and
    pings again: what a run that changed the tunnel checks before it says it works."""

    address: str
    count: int = not_key(3)
    interval: str = not_key("0.1")
    wait: int = not_key(1)
    rehandshake_on: str | None = not_key(None)
    # stop at the first reply: up to COUNT single pings of WAIT s each (a proof, not a
    # measure: no rtt), not COUNT pings always
    first_reply: bool = not_key(False)
    kind = "ping"
    slow = True
    functions = PING_FIRST

    def _ping(self) -> str:
        a = q(self.address)
        if not self.first_reply:
            return f"ping -n -q -c {self.count} -i {self.interval} -W {self.wait} {a}"
        return f"ping_first {self.count} {self.wait} {a}"

    def shell(self) -> str:
        ping = self._ping()
        if not self.rehandshake_on:
            return f"{ping} 2>&1 | tail -n 2"
        again = rehandshake(self.rehandshake_on)
        # A peer that never handshook (latest handshake 0) has no session to lose: its first
        # initiation went out before the other end could take it (the VPS's peer or port not
        # up yet, on a cold run) and WireGuard retries only 5 s later, so handshake at once
        # rather than after a failed round of pings.
        return (f"if {never_handshook(self.rehandshake_on)}; then {again}; fi; "
                f"if ! r=$({ping} 2>&1); then {again}; "
                f"r=$({ping} 2>&1); fi; printf '%s\\n' \"$r\" | tail -n 2")

    def parse(self, text: str) -> PingResult:
        m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", text)
        if not m:
            return {}
        out: PingResult = {"sent": int(m.group(1)), "received": int(m.group(2))}
        rtt = re.search(r"= [\d.]+/([\d.]+)/", text)
        if rtt:
            out["rtt_ms"] = float(rtt.group(1))
        return out


# pmtu DEST HI: the largest packet (bytes, IP header included, at most HI) that reaches DEST
# and comes back with do-not-fragment set; 0 if none. A parallel search: each round pings up
# to 15 sizes at once, so a lossy size costs one -W per round, not one per size.
PMTU = f"""pmtu() {{
  d=$1 hi=$2 lo={PING_MIN} t=$(mktemp -d "$T/pm.XXXXXX")
  p() {{ ping -n -q -M do -s $(($1 - 28)) -c 1 -W 1 "$d" >/dev/null 2>&1 && : > "$t/$1"; }}
  p "$hi" & p "$lo" & wait
  if [ -e "$t/$hi" ]; then echo "$hi"; return; fi
  [ -e "$t/$lo" ] || {{ echo 0; return; }}
  bad=$hi
  while [ $((bad - lo)) -gt 1 ]; do
    step=$(( (bad - lo + 15) / 16 ))
    s=$((lo + step)); while [ "$s" -lt "$bad" ]; do p "$s" & s=$((s + step)); done; wait
    s=$((lo + step)); while [ "$s" -lt "$bad" ]; do
      if [ -e "$t/$s" ]; then lo=$s; else bad=$s; break; fi; s=$((s + step)); done
  done
  echo "$lo"
}}"""


class PathMtuResult(TypedDict):
    dev: str
    mtu: int
    pmtu: int | None  # None: not measured (this ping cannot set do-not-fragment)


@dataclass(frozen=True)
class PathMtu(Probe["PathMtuResult | None"]):
    """The largest packet that reaches DEST and back with do-not-fragment, searched up to
    the MTU of the interface it leaves by (`via`, or the route's); None when there is no
    such interface."""

    dest: str
    via: str | None = None
    kind = "pmtu"
    slow = True
    functions = PMTU

    @property
    def key(self) -> str:
        return f"{self.kind} {self.dest}" + (f" via {self.via}" if self.via else "")

    def shell(self) -> str:
        dev = q(self.via) if self.via else (
            f"$(ip -4 route get {q(self.dest)} 2>/dev/null | "
            "sed -n 's/.* dev \\([^ ]*\\).*/\\1/p')")
        return (f"dev={dev}; [ -n \"$dev\" ] && [ -r \"/sys/class/net/$dev/mtu\" ] || exit 0; "
                "mtu=$(cat \"/sys/class/net/$dev/mtu\"); "
                "if ping -n -q -M do -s 0 -c 1 -W 1 127.0.0.1 >/dev/null 2>&1; then "
                f"echo \"dev=$dev mtu=$mtu pmtu=$(pmtu {q(self.dest)} $mtu)\"; "
                "else echo \"dev=$dev mtu=$mtu df=no\"; fi")

    def parse(self, text: str) -> PathMtuResult | None:
        kv = dict(w.split("=", 1) for w in text.split() if "=" in w)
        if not kv.get("mtu", "").isdigit():
            return None
        pmtu = kv.get("pmtu", "")
        return {"dev": kv.get("dev", ""), "mtu": int(kv["mtu"]),
                "pmtu": int(pmtu) if pmtu.isdigit() else None}
