"""`inv verify`: every link of the chain checked end to end, each failure named with its fix.

    laptop ─SSH─► VPS ─wg0─► home ─► container          (SSH, WireGuard, tunnel, routing)
    player ─► VPS public:PORT ─DNAT─► wg0 ─► home firewall ─► container      (ingress)
    container ─► slirp4netns/pasta ─► wg0 (policy rule) ─► VPS masquerade ─► internet (egress)

How it runs (round trips are the cost):
- ONE batched script per host (`vps_script`, `home_script`), VPS and home in parallel. Inside
  each script the slow parts (firewall-cmd, podman, pings, the path-MTU search, the container's
  egress request) run as parallel background sections; the output is `::tunnelops:: NAME`
  sections, parsed by `parse_state` into a `HostState`.
- The laptop's own probes run meanwhile: a TCP connection to VPS_PUBLIC:PORT per TCP port, and
  UDP datagrams to VPS_PUBLIC:PORT, repeated until the home script ends. Home's script starts by
  creating a temporary nft table with counters on wg0 (before and after home's firewall), waits
  until they count the laptop's datagrams (or gives up), reads them and deletes the table.
- `evaluate()` turns the states into rows: pure, unit-tested with recorded states.

Private keys never leave their host: `wg show dump` has its private-key column replaced by
"-" on the host before anything is printed.

Criteria worth knowing:
- TCP ingress passes when the connection is accepted and not closed within a second: the
  lab's echo image greets with `tcp-echo port=P peer=...` (shown); a real service that waits for
  the client to speak first passes by staying open. A connection accepted then closed at once
  is what Podman's port forwarder does when nothing listens in the container: a failure.
- UDP ingress passes when the datagrams are counted on home's wg0 AND after home's firewall,
  whether or not the service answers (the answer is shown when there is one).
- Tunnel MTU: the largest packet that passes with do-not-fragment, both ways, must equal wg0's
  MTU, and wg0's MTU plus WireGuard's overhead (60 bytes over IPv4) must fit the path to the
  VPS (measured from home the same way): otherwise large packets are fragmented outside the
  tunnel or lost where fragments or ICMP are filtered.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from tunnelops import verify_client
from tunnelops.backends.wglive import wanted_mtu
from tunnelops.facts import MARK, _json, _parse_firewalld, _parse_wg, _route_text, _sections
from tunnelops.model import PortSpec, Service, Site
from tunnelops.naming import HOST_FAMILY_TABLE, Names
from tunnelops.remote import Remote, RemoteError, Transcript
from tunnelops.render import nftables as nft_render

HANDSHAKE_MAX_AGE = 180  # WireGuard re-handshakes every 2 minutes while traffic flows
DEFAULT_WHOAMI_URL = "https://api.ipify.org"
WG_OVERHEAD = {4: 60, 6: 80}  # outer IP + UDP 8 + WireGuard 32
PING_MIN = 548  # smallest packet the MTU search tries (IPv4 minimum reassembly is 576)
MAX_PORTS_PER_SPEC = 32  # a range is probed on at most this many of its ports
UDP_WAIT_S = 2.5  # how long home waits for the laptop's datagrams on wg0
TCP_WAIT_S = 1.0  # how long an accepted TCP connection must stay open / greet
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ============================================================================ results
@dataclass
class Check:
    """One row: what was checked, what was measured, and the fix when it failed.
    ok=None: not checked (a link it depends on is unreachable)."""

    id: str
    name: str
    ok: bool | None
    measured: str
    hint: str = ""

    @property
    def status(self) -> str:
        return {True: "pass", False: "fail", None: "skip"}[self.ok]


@dataclass
class HostRun:
    dest: str
    round_trips: int = 0
    connects: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class VerifyReport:
    site: str
    checks: list[Check]
    hosts: dict[str, HostRun] = field(default_factory=dict)
    seconds: float = 0.0
    whoami_url: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def __bool__(self) -> bool:  # `if verify(...)`: all rows pass
        return self.ok

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]

    @property
    def first_failure(self) -> Check | None:
        """The first broken link in chain order: fix this one first."""
        return next(iter(self.failed), None)

    def check(self, check_id: str) -> Check:
        return next(c for c in self.checks if c.id == check_id)

    def to_json(self) -> str:
        first = self.first_failure
        return json.dumps({
            "site": self.site,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "whoami_url": self.whoami_url,
            "hosts": {r: {**asdict(h), "seconds": round(h.seconds, 3)}
                      for r, h in self.hosts.items()},
            "round_trips": sum(h.round_trips for h in self.hosts.values()),
            "first_failure": first.id if first else None,
            "checks": [{"id": c.id, "status": c.status, "check": c.name,
                        "measured": c.measured, "hint": c.hint} for c in self.checks],
        }, indent=2)


# ============================================================================ host side
def _q(s: object) -> str:
    return shlex.quote(str(s))


def _service_users(site: Site) -> dict[str, list[Service]]:
    users: dict[str, list[Service]] = {}
    for svc in site.services:
        users.setdefault(svc.user, []).append(svc)
    return users


def udp_specs(site: Site) -> list[PortSpec]:
    return [p for s in site.services for p in s.ports if p.proto == "udp"]


def tcp_specs(site: Site) -> list[PortSpec]:
    return [p for s in site.services for p in s.ports if p.proto == "tcp"]


def probe_ports(spec: PortSpec) -> list[int]:
    """The ports of a spec that are probed: all of them, or an even spread of a big range."""
    if spec.count <= MAX_PORTS_PER_SPEC:
        return list(range(spec.first, spec.last + 1))
    step = (spec.count - 1) / (MAX_PORTS_PER_SPEC - 1)
    return sorted({spec.first + round(i * step) for i in range(MAX_PORTS_PER_SPEC)})


_PRELUDE = f"""set +e
export LC_ALL=C PATH={PATH}
T=$(mktemp -d /tmp/tunnelops-verify.XXXXXX) || exit 1
m() {{ printf '\\n{MARK} %s\\n' "$*"; }}
# pmtu DEST HI: the largest packet (bytes, IP header included, at most HI) that reaches DEST
# and comes back with do-not-fragment set; 0 if none. A parallel search: each round pings
# up to 15 sizes at once, so a lossy size costs one -W per round, not one per size.
pmtu() {{
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
}}
"""


# firewalld's runtime zones when it runs (what it enforces), else the whole nft ruleset
_FIREWALL = (
    "if command -v firewall-cmd >/dev/null && z=$(firewall-cmd --list-all-zones 2>/dev/null); "
    "then m firewalld; echo running; sed -n 's/^DefaultZone=/default=/p' "
    "/etc/firewalld/firewalld.conf; echo @runtime; printf '%s\\n' \"$z\"; "
    "else m nft; command -v nft >/dev/null && nft -s list ruleset 2>/dev/null; fi")


def _common_sections(site: Site, peer_address: str) -> list[str]:
    """(shell) sections both hosts run, each as its own background job."""
    t = site.tunnel
    i = _q(t.interface)
    return [
        # the ping first: its traffic starts a handshake if none is recent, then the dump
        # (whose private key, column 1 of the first line, is replaced before it is printed)
        f"m ping; ping -n -q -c 3 -i 0.1 -W 1 {_q(peer_address)} 2>&1 | tail -n 2; "
        "m now; date +%s; "
        f"m wg; wg show {i} dump 2>/dev/null | awk -F'\\t' 'NR==1{{$1=\"-\"}}1' OFS='\\t'",
        # BusyBox ip (Alpine without iproute2) has no -j: its text is parsed instead
        f"m link; ip -4 -j addr show dev {i} 2>/dev/null || ip -4 addr show dev {i} 2>/dev/null",
        "m wgconf; for f in /etc/NetworkManager/system-connections/"
        f"{t.interface}.nmconnection /etc/network/interfaces.d/{t.interface} "
        f"/etc/wireguard/{t.interface}.conf; do [ -e \"$f\" ] && echo \"$f\"; done",
        # the MTU of the uplink (what wg-quick derives wg0's MTU from, as the plan does)
        "m uplink_mtu; d=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* dev \\([^ ]*\\).*/"
        "\\1/p'); [ -n \"$d\" ] && cat \"/sys/class/net/$d/mtu\"",
        f"m pmtu; if [ -r /sys/class/net/{i}/mtu ]; then mtu=$(cat /sys/class/net/{i}/mtu); "
        "if ping -n -q -M do -s 0 -c 1 -W 1 127.0.0.1 >/dev/null 2>&1; then "
        f"echo \"mtu=$mtu pmtu=$(pmtu {_q(peer_address)} $mtu)\"; else echo \"mtu=$mtu df=no\";"
        " fi; fi",
    ]


def _assemble(sections: list[str], head: str = "") -> str:
    """Every section a background job writing its own file, renamed when complete; the files
    are printed once all are there, then an `end` marker with their count (the parser checks
    it: a cut output is reported as such, never read as a broken host)."""
    jobs = [f"{{ ( {body} ) > \"$T/{n:02d}.part\" 2>/dev/null; "
            f"mv \"$T/{n:02d}.part\" \"$T/{n:02d}\"; }} &" for n, body in enumerate(sections)]
    count = len(sections)
    return (_PRELUDE + head + "\n".join(jobs) + "\nwait\n"
            f"n=0; while [ \"$(ls \"$T\" | grep -c '^[0-9][0-9]$')\" -lt {count} ] && "
            "[ $n -lt 300 ]; do sleep 0.05; n=$((n+1)); done\n"
            f"cat \"$T\"/[0-9][0-9]; m end; ls \"$T\" | grep -c '^[0-9][0-9]$'; echo {count}\n")


def vps_script(site: Site) -> str:
    """The VPS's one verify script: WireGuard, the tunnel, forwarding and the ruleset."""
    t = site.tunnel
    sections = [
        *_common_sections(site, str(t.home_address)),
        "m ip_forward; cat /proc/sys/net/ipv4/ip_forward",
        # a route lookup: nothing is sent
        "m uplink; ip -4 -j route get 1.1.1.1 2>/dev/null || ip -4 route get 1.1.1.1 2>/dev/null",
        "m awall; command -v awall >/dev/null && awall list 2>/dev/null",
        "m iptables; command -v awall >/dev/null && iptables-save 2>/dev/null",
        _FIREWALL,
        verify_client.vps_section(site),
    ]
    return _assemble(sections) + "rm -rf \"$T\"\n"  # (home's trap does this)


def _probe_table(site: Site, table: str) -> str:
    """nft table counting UDP datagrams for the service ports on wg0: `pre` sees every one
    that arrives (before conntrack and the firewall), `in` those home's firewall let in."""
    wg = site.tunnel.interface
    pre, inp = [], []
    for spec in udp_specs(site):
        pre.append(f'iifname "{wg}" udp dport {spec.nft} counter comment "pre {spec}"')
        inp.append(f'iifname "{wg}" udp dport {spec.nft} counter comment "in {spec}"')
    return (f"table inet {table} {{\n"
            "  chain pre {\n    type filter hook prerouting priority -300; policy accept;\n"
            + "".join(f"    {r}\n" for r in pre) + "  }\n"
            "  chain in {\n    type filter hook input priority 100; policy accept;\n"
            + "".join(f"    {r}\n" for r in inp) + "  }\n}\n")


def _http_get(url: str) -> str:
    """Shell setting $out and $rc: URL fetched from inside the network namespace of $pid with
    the host's client (curl, wget or python3): the container's real egress path, without
    needing a client in its image. A host name is resolved by the host first: the host's
    resolver (e.g. 127.0.0.53) does not exist inside the container's namespace."""
    u = _q(url)
    m = re.match(r"https?://(\[[^\]]+\]|[^/:]+)(?::(\d+))?", url)
    host = m.group(1) if m else ""
    port = (m.group(2) if m else None) or ("443" if url.startswith("https") else "80")
    resolve = "r=; "
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        resolve = (f"a=$(getent ahostsv4 {_q(host)} | awk 'NR==1{{print $1}}'); "
                   f"r=${{a:+--resolve {_q(host)}:{port}:$a}}; ")
    ns = 'nsenter -t "$pid" -n'
    py = "import sys,urllib.request as u; sys.stdout.write(u.urlopen(sys.argv[1], timeout=4)" \
         ".read().decode())"
    return (f"{resolve}if command -v curl >/dev/null; then "
            f"out=$({ns} curl -sS -m 3 --connect-timeout 2 $r {u} 2>&1); "
            f"elif command -v wget >/dev/null; then out=$({ns} wget -qO- -T 4 {u} 2>&1); "
            f"else out=$({ns} python3 -c {_q(py)} {u} 2>&1); fi; rc=$?")


def _as_user(user: str, script: str) -> str:
    u = _q(user)
    return (f"runuser -u {u} -- env XDG_RUNTIME_DIR=/run/user/$(id -u {u}) "
            f"HOME=\"$(getent passwd {u} | cut -d: -f6)\" sh -c {_q('cd; ' + script)}")


def home_script(site: Site, whoami_url: str, probe_table: str) -> str:
    """Home's one verify script: WireGuard, the tunnel and its MTU, the path MTU to the VPS,
    policy routing, the firewall, the containers and their egress, and the UDP counters."""
    t = site.tunnel
    vps_ip = str(site.vps.public_ip) if site.vps.public_ip else ""
    n_udp = len(udp_specs(site))
    sections = [
        *_common_sections(site, str(t.vps_address)),
        "m rules; ip -4 -j rule 2>/dev/null",
        f"m table_routes; ip -4 -j route show table {int(t.route_table)} 2>/dev/null",
        "m main_default; ip -4 -j route show table main default 2>/dev/null",
        _FIREWALL,
    ]
    if vps_ip:
        sections.append(
            f"m underlay; dev=$(ip -4 -j route get {_q(vps_ip)} 2>/dev/null | "
            "sed -n 's/.*\"dev\":\"\\([^\"]*\\)\".*/\\1/p'); [ -n \"$dev\" ] && "
            f"echo \"dev=$dev mtu=$(cat /sys/class/net/$dev/mtu) "
            f"pmtu=$(pmtu {_q(vps_ip)} $(cat /sys/class/net/$dev/mtu))\"")
    get = _http_get(whoami_url)
    for user, services in _service_users(site).items():
        names = " ".join(_q(s.container_name) for s in services)
        body = [f"m containers {_q(user)}; if id {_q(user)} >/dev/null 2>&1; then "
                + _as_user(user, f"podman container inspect {names} 2>/dev/null")
                + "; else echo 'no such user'; fi"]
        for svc in services:
            c = _q(svc.container_name)
            body.append(
                f"m egress {svc.name}; pid=$(" +
                _as_user(user, f"podman container inspect -f '{{{{.State.Pid}}}}' {c}") +
                " 2>/dev/null); if [ \"${pid:-0}\" -gt 0 ] 2>/dev/null; then " + get +
                "; echo \"rc=$rc\"; printf '%s\\n' \"$out\" | head -c 400; "
                "else echo rc=nopid; fi")
        sections.append("; ".join(body))
    head = ""
    if n_udp:
        table = _q(probe_table)
        head = (f"trap 'nft delete table inet {table} 2>/dev/null; rm -rf \"$T\"' EXIT\n"
                "trap 'exit 1' HUP INT TERM\n"
                f"nft -f - >/dev/null 2>&1 <<'TUNNELOPS_PROBE'\n"
                f"{_probe_table(site, probe_table)}TUNNELOPS_PROBE\n")
        # wait until every `pre` counter moved (or UDP_WAIT_S), then briefly for `in`
        polls = int(UDP_WAIT_S * 10)
        sections.append(
            f"c() {{ nft list table inet {table} 2>/dev/null | grep -c \"packets [1-9].*\\\"$1 \" "
            "|| :; }; "
            f"n=0; while [ \"$(c pre)\" -lt {n_udp} ] && [ $n -lt {polls} ]; do sleep 0.1; "
            f"n=$((n+1)); done; n=0; while [ \"$(c in)\" -lt {n_udp} ] && [ $n -lt 3 ]; do "
            f"sleep 0.1; n=$((n+1)); done; m udp; nft list table inet {table} 2>&1")
    else:
        head = "trap 'rm -rf \"$T\"' EXIT\n"
    return _assemble(sections, head)


# ============================================================================ parsed state
@dataclass
class HostState:
    """What one host's verify script measured."""

    now: int = 0
    wg: dict = field(default_factory=dict)  # facts._parse_wg: public_key, listen_port, peers
    link: dict = field(default_factory=dict)  # ip -j addr show dev wg0 (mtu, flags, addr_info)
    wg_config: list[str] = field(default_factory=list)  # which config files exist
    ping: dict = field(default_factory=dict)  # sent, received, rtt_ms
    mtu: int = 0
    pmtu: int | None = None  # None: not measured (no DF ping)
    rules: list = field(default_factory=list)
    table_routes: list = field(default_factory=list)
    main_default: list = field(default_factory=list)
    ip_forward: str = ""
    uplink: dict = field(default_factory=dict)
    nft: str = ""
    awall: str = ""
    iptables: str = ""
    firewalld: dict = field(default_factory=dict)
    underlay: dict = field(default_factory=dict)  # dev, mtu, pmtu
    uplink_mtu: int | None = None  # the MTU of the interface of the route to the internet
    containers: dict = field(default_factory=dict)  # container name -> podman inspect dict
    users_missing: list[str] = field(default_factory=list)
    egress: dict = field(default_factory=dict)  # service -> {"rc": str, "body": str}
    udp: dict = field(default_factory=dict)  # "12345/udp" -> {"pre": n, "in": n}
    udp_error: str = ""
    complete: bool = False  # every section arrived (the `end` marker counts them)
    raw: dict = field(default_factory=dict)

    @property
    def wg_up(self) -> bool:
        return bool(self.wg) and "UP" in self.link.get("flags", [])

    @property
    def address(self) -> str | None:
        for a in self.link.get("addr_info", []):
            if a.get("family") == "inet":
                return f"{a['local']}/{a['prefixlen']}"
        return None


def _kv(text: str) -> dict[str, str]:
    return dict(w.split("=", 1) for w in text.split() if "=" in w)


def _link(text: str) -> dict:
    """`ip -j addr show dev IF`'s object, or the same keys read from its plain text."""
    if text.lstrip().startswith("["):
        return (_json(text, []) or [{}])[0]
    m = re.search(r"^\d+: \S+: <([^>]*)> mtu (\d+)", text, re.M)
    if not m:
        return {}
    addrs = [{"family": "inet", "local": a, "prefixlen": int(p)}
             for a, p in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/(\d+)", text)]
    return {"flags": m.group(1).split(","), "mtu": int(m.group(2)), "addr_info": addrs}


def parse_state(output: str) -> HostState:
    s = _sections(output)
    st = HostState(raw=s)
    end = s.get("end", "").split()
    st.complete = len(end) == 2 and end[0] == end[1]
    st.now = int(s.get("now", "0").strip() or 0)
    st.wg = _parse_wg(s.get("wg", ""))
    st.link = _link(s.get("link", ""))
    st.wg_config = s.get("wgconf", "").split()
    ping = s.get("ping", "")
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", ping)
    if m:
        st.ping = {"sent": int(m.group(1)), "received": int(m.group(2))}
        rtt = re.search(r"= [\d.]+/([\d.]+)/", ping)
        if rtt:
            st.ping["rtt_ms"] = float(rtt.group(1))
    up_mtu = s.get("uplink_mtu", "").strip()
    st.uplink_mtu = int(up_mtu) if up_mtu.isdigit() else None
    pm = _kv(s.get("pmtu", ""))
    st.mtu = int(pm.get("mtu", 0) or 0)
    st.pmtu = int(pm["pmtu"]) if pm.get("pmtu", "").isdigit() else None
    st.rules = _json(s.get("rules", ""), [])
    st.table_routes = _json(s.get("table_routes", ""), [])
    st.main_default = _json(s.get("main_default", ""), [])
    st.ip_forward = s.get("ip_forward", "").strip()
    up = s.get("uplink", "")
    st.uplink = (_json(up, []) or [{}])[0] if up.lstrip().startswith("[") else _route_text(up)
    st.nft = s.get("nft", "")
    st.awall = s.get("awall", "")
    st.iptables = s.get("iptables", "")
    st.firewalld = _parse_firewalld(s.get("firewalld", ""))
    und = _kv(s.get("underlay", ""))
    if und:
        st.underlay = {"dev": und.get("dev", ""), "mtu": int(und.get("mtu", 0) or 0),
                       "pmtu": int(und.get("pmtu", 0) or 0)}
    for name, body in s.items():
        if name.startswith("containers "):
            user = name.split(" ", 1)[1]
            found = _json(body[body.find("["):] if "[" in body else "", [])
            if not found and "no such user" in body:
                st.users_missing.append(user)
            for c in found:
                st.containers[c.get("Name", "").lstrip("/")] = c
        elif name.startswith("egress "):
            lines = body.splitlines()
            rc = lines[0].removeprefix("rc=") if lines and lines[0].startswith("rc=") else "?"
            st.egress[name.split(" ", 1)[1]] = {"rc": rc, "body": "\n".join(lines[1:]).strip()}
    if "udp" in s:
        for m in re.finditer(r'packets (\d+) bytes \d+ comment "(pre|in) ([^"]+)"', s["udp"]):
            st.udp.setdefault(m.group(3), {})[m.group(2)] = int(m.group(1))
        if not st.udp:
            st.udp_error = s["udp"].strip().splitlines()[-1] if s["udp"].strip() else \
                "the probe table could not be created"
    return st


# ============================================================================ nftables
_PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50,
               "srcnat": 100}


def _priority(text: str) -> int:
    m = re.fullmatch(r"\s*(-?\d+|[a-z]+)\s*(?:([+-])\s*(\d+))?\s*", text or "0")
    if not m:
        return 0
    base = int(m.group(1)) if m.group(1).lstrip("-").isdigit() else \
        _PRIORITIES.get(m.group(1), 0)
    if m.group(2):
        base += int(m.group(3)) * (1 if m.group(2) == "+" else -1)
    return base


@dataclass
class NftChain:
    table: str
    name: str
    kind: str = ""  # filter, nat, route; "" for a regular (non-base) chain
    hook: str = ""
    priority: int = 0
    policy: str = "accept"
    rules: list[str] = field(default_factory=list)
    # the named sets of the chain's table: name -> elements as nft writes them ("12345",
    # "27015-27020", "10.0.0.0/8"), shared by the table's chains
    sets: dict[str, list[str]] = field(default_factory=dict, repr=False)


_FAMILY = r"(?:(ip|ip6|inet|arp|bridge|netdev) )?"
_ADD_ELEMENT = re.compile(rf"add element {_FAMILY}(\S+) (\S+) (\{{.*)")
# the statements of a file such as the host's table (render.nfthost)
_ADD_CHAIN = re.compile(rf"add chain {_FAMILY}(\S+) (\S+)(?: \{{(.*)\}})?")
_ADD_RULE = re.compile(rf"add rule {_FAMILY}(\S+) (\S+) (.*)")
_FLUSH_CHAIN = re.compile(rf"flush chain {_FAMILY}(\S+) (\S+)")
_ADD_SET = re.compile(rf"add set {_FAMILY}(\S+) (\S+) \{{.*")


def _unquoted(line: str) -> str:
    return re.sub(r'"[^"]*"', '""', line)


def parse_nft(text: str) -> list[NftChain]:
    """Chains of `nft list ruleset` output with their hook, priority, policy and rules, and
    their table's named sets (`set NAME { ... elements = { ... } }` blocks, and the `add
    element` statements of a file such as ours)."""
    chains: list[NftChain] = []
    sets: dict[str, dict[str, list[str]]] = {}  # table -> set -> elements
    depth, table, chain = 0, "", None
    set_name, set_body = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        bare = _unquoted(line)
        delta = bare.count("{") - bare.count("}")
        if set_name and depth >= 2:
            set_body.append(line)
        if depth == 0 and line.startswith("table "):
            table = line[len("table "):].rstrip("{ ").strip()
        elif depth == 0 and (m := _ADD_ELEMENT.fullmatch(line)):
            name = f"{m.group(1) or 'ip'} {m.group(2)}"
            sets.setdefault(name, {}).setdefault(m.group(3), []).extend(
                v.strip('"') for v, _ in nft_render.element_list(m.group(4)))
        elif depth == 0 and (m := _ADD_SET.fullmatch(line)):
            sets.setdefault(f"{m.group(1) or 'ip'} {m.group(2)}", {}).setdefault(m.group(3), [])
            continue
        elif depth == 0 and (m := _ADD_CHAIN.fullmatch(line)):
            _statement_chain(chains, f"{m.group(1) or 'ip'} {m.group(2)}", m.group(3),
                             m.group(4) or "")
            continue
        elif depth == 0 and (m := _ADD_RULE.fullmatch(line)):
            _statement_chain(chains, f"{m.group(1) or 'ip'} {m.group(2)}",
                             m.group(3)).rules.append(m.group(4))
            continue
        elif depth == 0 and (m := _FLUSH_CHAIN.fullmatch(line)):
            _statement_chain(chains, f"{m.group(1) or 'ip'} {m.group(2)}",
                             m.group(3)).rules.clear()
            continue
        elif depth == 1 and line.startswith("set ") and line.endswith("{"):
            set_name, set_body = line[len("set "):-1].strip(), []
        elif depth == 1 and line.startswith("chain ") and line.endswith("{"):
            chain = NftChain(table, line[len("chain "):-1].strip())
            chains.append(chain)
        elif depth == 2 and chain is not None and delta == 0:
            m = re.match(r"type (\w+) hook (\w+)(?: device \S+)? priority ([^;]+);", line)
            if m:
                chain.kind, chain.hook, chain.priority = m.group(1), m.group(2), \
                    _priority(m.group(3))
            pol = re.search(r"policy (accept|drop);", line)
            if pol:
                chain.policy = pol.group(1)
            if not m and not line.startswith("policy "):
                chain.rules.append(line)
        depth += delta
        if depth < 2:
            chain = None
            if set_name:
                body = "\n".join(set_body)
                found = re.search(r"\belements\s*=\s*\{", body)
                elements = sets.setdefault(table, {}).setdefault(set_name, [])
                if found:
                    elements += [v.strip('"') for v, _ in
                                 nft_render.element_list(body[found.end() - 1:])]
                set_name = ""
    for c in chains:
        c.sets = sets.setdefault(c.table, {})
    return chains


def _statement_chain(chains: list[NftChain], table: str, name: str,
                     spec: str = "") -> NftChain:
    """The chain an `add chain`/`add rule` statement names (made on first mention), with the
    hook, priority and policy SPEC gives it."""
    chain = next((c for c in chains if c.table == table and c.name == name), None)
    if chain is None:
        chain = NftChain(table, name)
        chains.append(chain)
    m = re.search(r"type (\w+) hook (\w+)(?: device \S+)? priority ([^;]+);", spec)
    if m:
        chain.kind, chain.hook, chain.priority = m.group(1), m.group(2), _priority(m.group(3))
    if pol := re.search(r"policy (accept|drop);", spec):
        chain.policy = pol.group(1)
    return chain


@dataclass(frozen=True)
class Pkt:
    """A packet as far as rule matching goes: a NEW connection's first packet."""

    iif: str
    proto: str
    dport: int
    oif: str = ""
    saddr: str = ""
    daddr: str = ""
    dnat: bool = False  # conntrack says it was destination-NATed


def _tokens(rule: str) -> list[str]:
    rule = re.sub(r'\s*comment\s+"[^"]*"\s*$', "", rule)
    out, i = [], 0
    while i < len(rule):
        ch = rule[i]
        if ch.isspace():
            i += 1
        elif ch == "{":
            j = rule.index("}", i) if "}" in rule[i:] else len(rule)
            out.append(rule[i:j + 1])
            i = j + 1
        elif ch == '"':
            j = rule.index('"', i + 1) if '"' in rule[i + 1:] else len(rule)
            out.append(rule[i:j + 1])
            i = j + 1
        else:
            j = i
            while j < len(rule) and not rule[j].isspace():
                j += 1
            out.append(rule[i:j])
            i = j
    return out


def _values(tok: str) -> list[str]:
    tok = tok.strip()
    if tok.startswith("{"):
        return [v.strip().strip('"') for v in tok.strip("{}").split(",") if v.strip()]
    return [tok.strip('"')]


def _name_match(pattern: str, name: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else pattern == name


def _port_match(values: list[str], port: int) -> bool:
    for v in values:
        if "-" in v:
            a, _, b = v.partition("-")
            if a.isdigit() and b.isdigit() and int(a) <= port <= int(b):
                return True
        elif v.isdigit() and int(v) == port:
            return True
    return False


def _addr_match(values: list[str], addr: str) -> bool:
    if not addr:
        return False
    for v in values:
        try:
            if ipaddress.ip_address(addr) in ipaddress.ip_network(v, strict=False):
                return True
        except ValueError:
            continue
    return False


_VERDICTS = ("accept", "drop", "reject", "masquerade", "return")


def _set_or_values(tok: str, sets: dict[str, list[str]] | None) -> list[str] | None:
    """The values TOK stands for: a named set's elements (`@svc_udp`; None for a set this
    reader was not shown), else TOK's own values."""
    if tok.startswith("@"):
        return None if sets is None or tok[1:] not in sets else sets[tok[1:]]
    return _values(tok)


def rule_action(rule: str, pkt: Pkt,
                sets: dict[str, list[str]] | None = None) -> tuple[str, str] | None:
    """(action, argument) when PKT matches every condition of RULE; None when it doesn't
    or when the rule has a condition this reader does not understand (then it is ignored).
    SETS are the named sets of the rule's table, for matches such as `udp dport @svc_udp`."""
    toks = _tokens(rule)
    i = 0

    def neg_and_value(k: int) -> tuple[bool, str, int]:
        if k < len(toks) and toks[k] == "!=":
            return True, toks[k + 1] if k + 1 < len(toks) else "", k + 2
        return False, toks[k] if k < len(toks) else "", k + 1

    while i < len(toks):
        tok = toks[i]
        if tok in ("iifname", "oifname", "iif", "oif"):
            neg, val, i = neg_and_value(i + 1)
            name = pkt.iif if tok.startswith("i") else pkt.oif
            names = _set_or_values(val, sets)
            if names is None or any(_name_match(v, name) for v in names) == neg:
                return None
        elif tok == "ip" and i + 1 < len(toks) and toks[i + 1] in ("saddr", "daddr"):
            neg, val, j = neg_and_value(i + 2)
            addr = pkt.saddr if toks[i + 1] == "saddr" else pkt.daddr
            addrs = _set_or_values(val, sets)
            if addrs is None or _addr_match(addrs, addr) == neg:
                return None
            i = j
        elif tok in ("tcp", "udp") and i + 1 < len(toks) and toks[i + 1] == "dport":
            neg, val, j = neg_and_value(i + 2)
            ports = _set_or_values(val, sets)
            if ports is None or tok != pkt.proto or _port_match(ports, pkt.dport) == neg:
                return None
            i = j
        elif tok == "meta" and i + 2 < len(toks) and toks[i + 1] == "l4proto":
            if pkt.proto not in _values(toks[i + 2]):
                return None
            i += 3
        elif tok == "ct" and i + 2 < len(toks) and toks[i + 1] in ("state", "status"):
            vals = [v for x in _values(toks[i + 2]) for v in x.split(",")]
            have = "new" if toks[i + 1] == "state" else ("dnat" if pkt.dnat else "")
            if have not in vals:
                return None
            i += 3
        elif tok == "counter":
            i += 1
            while i + 1 < len(toks) and toks[i] in ("packets", "bytes"):
                i += 2
        elif tok in _VERDICTS:
            return tok, ""
        elif tok in ("dnat", "snat"):
            rest = toks[i + 1:]
            if rest[:1] in (["ip"], ["ip6"]):
                rest = rest[1:]
            target = rest[1] if len(rest) > 1 and rest[0] == "to" else ""
            return tok, target.split(":")[0] if target.count(":") <= 1 else target
        elif tok in ("jump", "goto") and i + 1 < len(toks):
            return tok, toks[i + 1]
        else:
            return None  # not understood: this rule is not counted on
    return None


def _run_chain(chains: list[NftChain], chain: NftChain, pkt: Pkt,
               depth: int = 0) -> tuple[str, str, str] | None:
    """First terminal (action, argument, where) in CHAIN, following jumps."""
    for rule in chain.rules:
        act = rule_action(rule, pkt, chain.sets)
        if act is None:
            continue
        if act[0] in ("jump", "goto") and depth < 8:
            target = next((c for c in chains if c.table == chain.table and c.name == act[1]),
                          None)
            res = _run_chain(chains, target, pkt, depth + 1) if target else None
            if res is not None and res[0] != "return":
                return res
            if act[0] == "goto":
                return None
            continue
        return act[0], act[1], f"{chain.table} {chain.name}: {rule}"
    return None


def nft_filter(chains: list[NftChain], hook: str, pkt: Pkt) -> tuple[bool, str]:
    """Does PKT get through every base filter chain on HOOK? (ok, the deciding rule)."""
    base = sorted((c for c in chains if c.hook == hook and c.kind == "filter"),
                  key=lambda c: c.priority)
    why = f"no {hook} chain: accepted"
    for c in base:
        res = _run_chain(chains, c, pkt)
        if res is None:
            if c.policy == "drop":
                return False, f"{c.table} {c.name}: policy drop (no rule accepts it)"
            why = f"{c.table} {c.name}: policy accept"
        elif res[0] in ("drop", "reject"):
            return False, res[2]
        else:
            why = res[2]
    return True, why


def nft_nat(chains: list[NftChain], hook: str, pkt: Pkt) -> tuple[str, str, str] | None:
    """The first NAT action (dnat/snat/masquerade) PKT meets on HOOK, if any."""
    for c in sorted((c for c in chains if c.hook == hook and c.kind == "nat"),
                    key=lambda c: c.priority):
        res = _run_chain(chains, c, pkt)
        if res is not None and res[0] in ("dnat", "snat", "masquerade"):
            return res
    return None


# ============================================================================ iptables (awall)
def _ipt_port_match(line: str, spec: PortSpec, port: int) -> bool | None:
    """True/False when the line matches by destination port; None when it has no port test."""
    if f"-p {spec.proto}" not in line:
        return None if "--dport" not in line and "--dports" not in line else False
    m = re.search(r"--dports? (\S+)", line)
    if not m:
        return None
    return _port_match(m.group(1).replace(":", "-").split(","), port)


def iptables_rules(text: str) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    cur = None
    for line in text.splitlines():
        if line.startswith("*"):
            cur = tables.setdefault(line[1:].strip(), [])
        elif cur is not None and line.startswith("-A "):
            cur.append(line)
    return tables


# ============================================================================ evaluation
@dataclass
class TcpResult:
    port: int
    outcome: str  # greeted | open | closed | refused | unreachable | timeout | error
    detail: str = ""


@dataclass
class LaptopState:
    ssh: dict = field(default_factory=dict)  # role -> {"ms": float} or {"error": str}
    tcp: dict = field(default_factory=dict)  # "12346/tcp" -> [TcpResult]
    udp_sent: dict = field(default_factory=dict)  # "12345/udp" -> count
    udp_replies: dict = field(default_factory=dict)  # "12345/udp" -> first reply text
    udp_error: str = ""


def _short_key(key: str | None) -> str:
    return f"{key[:8]}…" if key else "(none)"


def _ago(seconds: int) -> str:
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


class _Rows:
    def __init__(self) -> None:
        self.rows: list[Check] = []

    def add(self, id: str, name: str, ok: bool | None, measured: str, hint: str = "") -> Check:
        c = Check(id, name, ok, measured, "" if ok else hint)
        self.rows.append(c)
        return c

    def failed(self, *ids: str) -> list[Check]:
        return [c for c in self.rows if c.ok is False and c.id in ids]

    def get(self, id: str) -> Check | None:
        return next((c for c in self.rows if c.id == id), None)


def _wg_backend(st: HostState) -> str:
    conf = " ".join(st.wg_config)
    if "nmconnection" in conf:
        return "networkmanager"
    return "ifupdown" if "interfaces.d" in conf else "wg-quick"


def _wanted_mtu(site: Site, st: HostState) -> int | None:
    """The MTU bootstrap gives wg0 (the plan's own rule: backends.wglive.wanted_mtu)."""
    return wanted_mtu(site.tunnel, _wg_backend(st), st.uplink_mtu)


def _mtu_fix(site: Site, st: HostState, mtu: int) -> str:
    i = site.tunnel.interface
    if _wg_backend(st) == "networkmanager":
        return f"nmcli connection up {i}"
    return f"ip link set dev {i} mtu {mtu}"


def _wg_up_hint(site: Site, st: HostState, role: str) -> str:
    i = site.tunnel.interface
    how = {"networkmanager": f"`nmcli connection up {i}`", "ifupdown": f"`ifup {i}`",
           "wg-quick": f"`wg-quick up {i}`"}[_wg_backend(st)]
    where = "at home" if role == "home" else "on the VPS"
    return f"bring it up {where} with {how}, or re-run `inv bootstrap`"


def evaluate(site: Site, vps: HostState | None, home: HostState | None,
             laptop: LaptopState, whoami_url: str = DEFAULT_WHOAMI_URL) -> list[Check]:
    """Every row, in chain order, from what was measured. Pure: no I/O."""
    r = _Rows()
    t = site.tunnel
    wg_name = t.interface
    vps_ip = str(site.vps.public_ip) if site.vps.public_ip else \
        (vps.uplink.get("prefsrc") if vps else None)
    states = {"vps": vps, "home": home}
    hosts = {"vps": str(site.vps.host), "home": str(site.homes[0].host)}

    # ---- 1. SSH
    for role in ("vps", "home"):
        info = laptop.ssh.get(role, {})
        if "error" in info:
            hint = info["error"]
            if role == "vps" and "timed out" in hint:
                hint += (" (tunnelops' VPS firewall lets an address open 3 SSH connections at "
                         "once, then 9 a minute: after many runs in a row, wait a minute)")
            r.add(f"ssh.{role}", f"SSH to {hosts[role]}", False, "no connection", hint)
        else:
            r.add(f"ssh.{role}", f"SSH to {hosts[role]}", states[role] is not None,
                  "connection reused" if info.get("reused") else
                  f"connected in {info.get('ms', 0):.0f} ms",
                  f"connected, but the verify script failed on {hosts[role]}: "
                  f"{info.get('script_error', 'no output')}")

    def skip(id: str, name: str, role: str) -> None:
        r.add(id, name, None, f"not checked: no SSH to {hosts[role]}")

    # ---- 2. WireGuard
    for role, st, want_addr in (("vps", vps, t.vps_address), ("home", home, t.home_address)):
        name = f"{role} {wg_name} up, address, port"
        if st is None:
            skip(f"wg.{role}", name, role)
            continue
        addr = st.address
        port = st.wg.get("listen_port", 0)
        if not st.wg:
            r.add(f"wg.{role}", name, False, f"{wg_name} does not exist",
                  _wg_up_hint(site, st, role))
        elif not st.wg_up:
            r.add(f"wg.{role}", name, False, f"{wg_name} exists but is down",
                  _wg_up_hint(site, st, role))
        elif addr != f"{want_addr}/{t.prefixlen}":
            r.add(f"wg.{role}", name, False, f"address {addr or '(none)'}",
                  f"{wg_name} should have {want_addr}/{t.prefixlen}: re-run `inv bootstrap`")
        elif role == "vps" and port != t.listen_port:
            r.add(f"wg.{role}", name, False, f"listening on {port or 'no port'}",
                  f"the VPS must listen on {t.listen_port}/udp ([tunnel] listen_port): "
                  "re-run `inv bootstrap`")
        elif (want_mtu := _wanted_mtu(site, st)) and st.mtu and st.mtu != want_mtu:
            r.add(f"wg.{role}", name, False, f"{addr}, MTU {st.mtu}, not {want_mtu}",
                  f"set it back: `{_mtu_fix(site, st, want_mtu)}`, or re-run `inv bootstrap`")
        else:
            r.add(f"wg.{role}", name, True,
                  f"{addr}, port {port}{' (dials out)' if role == 'home' else ''}, "
                  f"MTU {st.mtu or st.link.get('mtu', '?')}")
    both = vps is not None and home is not None and vps.wg and home.wg
    name = "peer keys = the other end's keys"
    if both:
        assert vps is not None and home is not None
        vps_peers = [p["public_key"] for p in vps.wg.get("peers", [])]
        home_peers = [p["public_key"] for p in home.wg.get("peers", [])]
        vk, hk = vps.wg.get("public_key"), home.wg.get("public_key")
        bad = []
        if hk not in vps_peers:
            bad.append(f"the VPS's peer is {', '.join(map(_short_key, vps_peers)) or 'none'},"
                       f" not home's key {_short_key(hk)}")
        if vk not in home_peers:
            bad.append(f"home's peer is {', '.join(map(_short_key, home_peers)) or 'none'}, "
                       f"not the VPS's key {_short_key(vk)}")
        r.add("wg.keys", name, not bad,
              "; ".join(bad) if bad else f"vps has {_short_key(hk)}, home has {_short_key(vk)}",
              "re-run `inv bootstrap`: it puts each side's actual public key into the other's "
              "peer")
    else:
        r.add("wg.keys", name, None, "not checked: WireGuard is not up on both ends")

    vps_peer = (vps.wg.get("peers") or [None])[0] if vps and vps.wg else None
    home_peer = (home.wg.get("peers") or [None])[0] if home and home.wg else None
    if vps is not None and vps.wg:
        allowed = vps_peer["allowed_ips"] if vps_peer else []
        want = f"{t.home_address}/32"
        r.add("wg.vps_peer", "vps peer AllowedIPs", allowed == [want],
              ", ".join(allowed) or "no peer",
              f"the VPS peer must allow exactly {want} (AllowedIPs): re-run `inv bootstrap`")
    else:
        r.add("wg.vps_peer", "vps peer AllowedIPs", None,
              f"not checked: no {wg_name} on the VPS")
    if home is not None and home.wg:
        endpoint = home_peer.get("endpoint") if home_peer else None
        allowed = home_peer["allowed_ips"] if home_peer else []
        want_ep = f"{vps_ip}:{t.listen_port}" if vps_ip else None
        problems = []
        if want_ep and endpoint != want_ep:
            problems.append(f"endpoint {endpoint or '(none)'} is not {want_ep}")
        if "0.0.0.0/0" not in allowed:
            problems.append(f"AllowedIPs {', '.join(allowed) or '(none)'} lack 0.0.0.0/0: the "
                            "containers' traffic can't enter the tunnel")
        keepalive = home_peer.get("keepalive", 0) if home_peer else 0
        if home_peer and keepalive != t.keepalive:
            problems.append(f"keepalive {keepalive or 'off'}, not {t.keepalive}: home is behind "
                            "NAT, the VPS cannot reach it once the router forgets the mapping")
        r.add("wg.home_peer", "home peer endpoint, AllowedIPs", not problems,
              "; ".join(problems) if problems else f"{endpoint}, {', '.join(allowed)}",
              "re-run `inv bootstrap` (home's peer: Endpoint = VPS_PUBLIC:"
              f"{t.listen_port}, AllowedIPs = 0.0.0.0/0, PersistentKeepalive = {t.keepalive})")
    else:
        r.add("wg.home_peer", "home peer endpoint, AllowedIPs", None,
              f"not checked: no {wg_name} at home")
    name = f"handshake < {HANDSHAKE_MAX_AGE // 60} min, traffic both ways"
    if home_peer is not None and home is not None:
        hs = home_peer.get("latest_handshake", 0)
        age = home.now - hs if hs else None
        rx, tx = home_peer.get("rx", 0), home_peer.get("tx", 0)
        traffic = f"home rx {_size(rx)}, tx {_size(tx)}"
        if age is None:
            r.add("wg.handshake", name, False, f"never; {traffic}",
                  "no handshake: check the keys row, that the VPS allows "
                  f"{t.listen_port}/udp and that home can reach {vps_ip or 'the VPS'}")
        elif age > HANDSHAKE_MAX_AGE:
            r.add("wg.handshake", name, False, f"{_ago(age)}; {traffic}",
                  f"the tunnel is stale: check the keys row and that {t.listen_port}/udp "
                  "reaches the VPS; `wg show` on both ends")
        else:
            r.add("wg.handshake", name, rx > 0 and tx > 0, f"{_ago(max(age, 0))}; {traffic}",
                  "no traffic one way: check the keys row and the VPS firewall")
    else:
        r.add("wg.handshake", name, None, "not checked: home has no peer")

    # ---- 3. tunnel reachability and MTU
    wg_failed = [c.id for c in r.rows if c.ok is False and c.id.startswith("wg.")]
    for role, st, other, dst in (("home", home, "VPS", t.vps_address),
                                 ("vps", vps, "home", t.home_address)):
        name = f"ping {role} → {other} ({dst}) in the tunnel"
        if st is None:
            skip(f"tunnel.ping.{role}", name, role)
            continue
        p = st.ping
        got = p.get("received", 0)
        measured = (f"{got}/{p.get('sent', 0)} replies" +
                    (f", {p['rtt_ms']:.1f} ms" if "rtt_ms" in p else "")) if p else "no answer"
        hint = (f"fix `{wg_failed[0]}` first" if wg_failed else
                f"the tunnel passes no traffic: `wg show` on both ends; on home check the "
                f"rule `to {t.vps_address} table {t.route_table}`")
        r.add(f"tunnel.ping.{role}", name, got > 0, measured, hint)
    name = f"tunnel path MTU (DF, both ways) vs {wg_name} MTU"
    if vps is None or home is None:
        r.add("tunnel.mtu", name, None, "not checked: needs both hosts")
    else:
        r.add("tunnel.mtu", name, *_mtu_row(site, vps, home, wg_failed))

    # ---- 4. home policy routing
    if home is None:
        for id_, nm in (("home.rule_from", "rule"), ("home.rule_to", "rule"),
                        ("home.table", "route"), ("home.main_default", "route")):
            skip(id_, f"home policy {nm}", "home")
    else:
        _routing_rows(r, site, home)

    # ---- 5. VPS forwarding and firewall
    if vps is None:
        skip("vps.forwarding", "vps IPv4 forwarding", "vps")
        skip("vps.firewall", "vps firewall allows SSH, WireGuard", "vps")
        for svc in site.services:
            for spec in svc.ports:
                skip(f"vps.port.{spec}", f"vps forwards {spec} to home", "vps")
    else:
        _vps_rows(r, site, vps)

    # ---- 6. home firewall
    for svc in site.services:
        for spec in svc.ports:
            name = f"home firewall opens {spec} on {wg_name}"
            if home is None:
                skip(f"home.port.{spec}", name, "home")
            else:
                r.add(f"home.port.{spec}", name, *_home_port(site, home, spec))

    # ---- 7. containers
    for svc in site.services:
        if home is None:
            for what in ("running", "network", "ports"):
                skip(f"container.{svc.name}.{what}", f"container {svc.container_name}", "home")
        else:
            _container_rows(r, site, home, svc)

    # ---- 8. ingress
    for svc in site.services:
        for spec in svc.ports:
            _ingress_row(r, site, home, laptop, svc, spec, vps_ip)

    # ---- 8b. the client's address, as the service sees it
    for svc in site.services:
        for row in verify_client.rows(site, svc, _echo_replies(svc, laptop),
                                      vps.raw.get(verify_client.SECTION, "") if vps else None):
            r.add(*row)

    # ---- 9. egress
    for svc in site.services:
        _egress_row(r, site, home, svc, vps_ip, whoami_url)
    return r.rows


def _echo_replies(svc: Service, laptop: LaptopState) -> dict[str, str | None]:
    """What the laptop's probes read on each spec's first port: the TCP greeting, the UDP
    reply (verify_client looks for `peer=` in them)."""
    out: dict[str, str | None] = {}
    for spec in svc.ports:
        if spec.proto == "tcp":
            res = next((x for x in laptop.tcp.get(str(spec), []) if x.port == spec.first), None)
            out[str(spec)] = res.detail if res is not None and res.outcome == "greeted" else None
        else:
            out[str(spec)] = laptop.udp_replies.get(str(spec))
    return out


def _mtu_row(site: Site, vps: HostState, home: HostState,
             wg_failed: list[str]) -> tuple[bool | None, str, str]:
    t = site.tunnel
    if not (vps.wg_up and home.wg_up):
        return None, f"not checked: {t.interface} is not up on both ends", ""
    if home.pmtu is None or vps.pmtu is None:
        return None, "not measured: `ping -M do` is missing (install iputils' ping)", ""
    measured = (f"MTU {home.mtu}/{vps.mtu} (home/vps); passes {home.pmtu} home→vps, "
                f"{vps.pmtu} vps→home")
    if home.pmtu == 0 or vps.pmtu == 0:
        return False, measured, (f"fix `{wg_failed[0]}` first" if wg_failed else
                                 "no packet passes the tunnel: see the ping rows")
    biggest = max(home.mtu, vps.mtu)
    u = home.underlay
    if u.get("pmtu"):
        overhead = WG_OVERHEAD[4]
        measured += f"; path {u['pmtu']}, needs {biggest + overhead}"
        if biggest + overhead > u["pmtu"]:
            fit = u["pmtu"] - overhead
            return False, measured, (
                f"{t.interface}'s MTU {biggest} is larger than the path allows ({u['pmtu']} − "
                f"{overhead} bytes of WireGuard = {fit}): set [tunnel] mtu = {fit} (or lower)"
                " in the inventory and re-run `inv bootstrap`")
    elif site.vps.public_ip:
        measured += f"; path not measured (no ping reply from {site.vps.public_ip})"
    if home.pmtu < home.mtu or vps.pmtu < vps.mtu:
        fit = min(home.pmtu, vps.pmtu)
        return False, measured, (
            f"packets between {fit + 1} and {biggest} bytes are lost in the tunnel: set "
            f"[tunnel] mtu = {fit} in the inventory and re-run `inv bootstrap`")
    return True, measured, ""


def _rule_present(rules: list, key: str, addr: str, table: int) -> dict | None:
    for rule in rules:
        if rule.get(key) == addr and rule.get(f"{key}len", 32) == 32 \
                and str(rule.get("table")) == str(table) \
                and int(rule.get("priority", 0)) < 32766:
            return rule
    return None


def _routing_rows(r: _Rows, site: Site, home: HostState) -> None:
    t = site.tunnel
    first, second = t.rule_priorities
    # wg-quick and NetworkManager add the rules and the route with wg0 and remove them with it
    down = "" if home.wg else \
        f" (they come back with {t.interface}: fix `wg.home` first)"
    for id_, key, addr, prio, word in (("home.rule_from", "src", t.home_address, first, "from"),
                                       ("home.rule_to", "dst", t.vps_address, second, "to")):
        name = f"home rule {word} {addr} → table {t.route_table}"
        rule = _rule_present(home.rules, key, str(addr), t.route_table)
        r.add(id_, name, rule is not None,
              f"priority {rule['priority']}, lookup {rule['table']}" if rule
              else f"no rule {word} {addr} → table {t.route_table}",
              f"add it: `ip -4 rule add {word} {addr}/32 table {t.route_table} priority {prio}`"
              f", or re-run `inv bootstrap`{down}")
    via = [x for x in home.table_routes if x.get("dst") == "default"]
    ok = any(x.get("dev") == t.interface for x in via)
    r.add("home.table", f"home table {t.route_table} default via {t.interface}", ok,
          ", ".join(f"default dev {x.get('dev')}" for x in via) or "no default route",
          f"add it: `ip -4 route replace default dev {t.interface} table {t.route_table}`, "
          f"or re-run `inv bootstrap`{down}")
    bad = [x for x in home.main_default if x.get("dev") == t.interface]
    r.add("home.main_default", f"home main table default not via {t.interface}", not bad,
          ", ".join(f"default {'via ' + x['gateway'] + ' ' if x.get('gateway') else ''}"
                    f"dev {x.get('dev')}" for x in home.main_default) or "no default route",
          f"home's own traffic would all go through the VPS: remove it (`ip -4 route del "
          f"default dev {t.interface}`) and keep {t.interface}'s routes in table "
          f"{t.route_table} (Table = {t.route_table} / ipv4.route-table)")


def _vps_backend(vps: HostState) -> str:
    if vps.awall.strip() and any(" enabled" in line for line in vps.awall.splitlines()):
        return "awall"
    if vps.firewalld.get("running"):
        return "firewalld"
    return "nftables"


def _vps_rows(r: _Rows, site: Site, vps: HostState) -> None:
    t = site.tunnel
    r.add("vps.forwarding", "vps IPv4 forwarding", vps.ip_forward == "1",
          f"ip_forward = {vps.ip_forward or '?'}",
          "enable it: `sysctl -w net.ipv4.ip_forward=1` (tunnelops writes "
          "/etc/sysctl.d/90-tunnelops.conf), or re-run `inv bootstrap`")
    backend = _vps_backend(vps)
    wan = site.vps.wan_interface or vps.uplink.get("dev") or "eth0"
    pub = str(site.vps.public_ip or vps.uplink.get("prefsrc") or "")
    fix = {"nftables": f"re-run `inv bootstrap` (it restores table {HOST_FAMILY_TABLE}, "
                         f"the VPS's filter, and {Names(t.interface).nft_family_table}: its "
                         "rules and the ports in its sets)",
           "awall": "re-run `inv bootstrap` (it re-enables the policies and runs "
                    "`awall activate`)",
           "firewalld": "re-run `inv bootstrap` (it restores the zones' ports, forward-ports "
                        "and masquerade)"}[backend]
    # SSH and WireGuard
    allowed = {}
    for proto, port, what in (("tcp", site.vps.ssh_port, "SSH"),
                              ("udp", t.listen_port, "WireGuard")):
        allowed[what] = _vps_input_allows(backend, vps, wan, pub, proto, port)
    ok = all(a[0] for a in allowed.values())
    r.add("vps.firewall", f"vps firewall allows SSH {site.vps.ssh_port}/tcp, WireGuard "
          f"{t.listen_port}/udp", ok,
          f"{backend}: " + ", ".join(f"{w} {'accepted' if a[0] else 'BLOCKED'}"
                                     for w, a in allowed.items()),
          "; ".join(f"{w}: {a[1]}" for w, a in allowed.items() if not a[0]) + f": {fix}")
    for svc in site.services:
        for spec in svc.ports:
            parts = _vps_port(backend, vps, site, wan, pub, spec)
            missing = [k for k, (good, _) in parts.items() if not good and k != "no SNAT"]
            problems = [f"{' and '.join(missing)} for {spec} missing on the VPS"] if missing \
                else []
            if not parts.get("no SNAT", (True, ""))[0]:
                problems.append(f"the VPS SNATs {spec} to {t.vps_address}, so the game sees "
                                "that and not the player (client_ip = preserve)")
            r.add(f"vps.port.{spec}", f"vps forwards {spec} to home",
                  all(good for good, _ in parts.values()),
                  f"{backend}: " + ", ".join(f"{k} {'✓' if good else '✗ (' + why + ')'}"
                                             for k, (good, why) in parts.items()),
                  "; ".join(problems) + f": {fix}")


def _vps_input_allows(backend: str, vps: HostState, wan: str, pub: str, proto: str,
                      port: int) -> tuple[bool, str]:
    if backend == "nftables":
        return nft_filter(parse_nft(vps.nft), "input",
                          Pkt(iif=wan, proto=proto, dport=port, daddr=pub))
    if backend == "firewalld":
        fw = vps.firewalld
        zone = _fw_zone(fw, wan)
        info = fw.get("runtime", {}).get(zone, {})
        svc = {"tcp/22": "ssh"}.get(f"{proto}/{port}")
        ok = _fw_port_open(info, proto, port) or (svc in info.get("services", []))
        return ok, f"zone {zone}"
    lines = iptables_rules(vps.iptables).get("filter", [])
    spec = PortSpec(proto, port, port)
    ok = any(_ipt_port_match(line, spec, port) and "-j ACCEPT" in line for line in lines)
    return ok, "no ACCEPT rule in iptables-save"


def _vps_port(backend: str, vps: HostState, site: Site, wan: str, pub: str,
              spec: PortSpec) -> dict[str, tuple[bool, str]]:
    """filter, DNAT, and SNAT (client_ip = "snat") or its absence ("preserve")."""
    t = site.tunnel
    home, tun = str(t.home_address), str(t.vps_address)
    ports = [spec.first, spec.last] if spec.is_range else [spec.first]
    out: dict[str, tuple[bool, str]] = {}
    if backend == "nftables":
        chains = parse_nft(vps.nft)
        fil, dn, sn = [], [], []
        for port in ports:
            pkt = Pkt(iif=wan, proto=spec.proto, dport=port, daddr=pub)
            d = nft_nat(chains, "prerouting", pkt)
            dn.append(d is not None and d[0] == "dnat" and d[1] == home)
            fwd = Pkt(iif=wan, oif=t.interface, proto=spec.proto, dport=port, daddr=home,
                      dnat=True)
            fil.append(nft_filter(chains, "forward", fwd)[0])
            s = nft_nat(chains, "postrouting", fwd)
            sn.append(s is not None and (s[0] == "masquerade" or (s[0] == "snat"
                                                                   and s[1] == tun)))
        out["filter"] = (all(fil), "forward not accepted")
        out["DNAT"] = (all(dn), f"no dnat to {home}")
        snat = (sn, f"no snat to {tun}", f"snat to {tun}")
    elif backend == "firewalld":
        fw = vps.firewalld
        zone = _fw_zone(fw, wan)
        fps = " ".join(fw.get("runtime", {}).get(zone, {}).get("forward-ports", []))
        port_txt = f"{spec.first}-{spec.last}" if spec.is_range else str(spec.first)
        fwd = f"port={port_txt}:proto={spec.proto}:" in fps and f"toaddr={home}" in fps
        wgzone = _fw_zone(fw, t.interface)
        masq = fw.get("runtime", {}).get(wgzone, {}).get("masquerade", ["no"]) == ["yes"]
        out["filter"] = (fwd, f"no forward-port in zone {zone}")
        out["DNAT"] = (fwd, f"no forward-port in zone {zone}")
        snat = ([masq], f"no masquerade in zone {wgzone}", f"masquerade in zone {wgzone}")
    else:
        tabs = iptables_rules(vps.iptables)
        nat, fil = tabs.get("nat", []), tabs.get("filter", [])

        def has(lines: list[str], pred: Callable[[str], bool], port: int) -> bool:
            return any(pred(line) and _ipt_port_match(line, spec, port) is not False
                       and (_ipt_port_match(line, spec, port) or "--dport" not in line)
                       for line in lines)

        out["filter"] = (all(has(fil, lambda x: "-j ACCEPT" in x and "--dport" in x, p)
                             for p in ports), "no ACCEPT rule")
        out["DNAT"] = (all(has(nat, lambda x: f"--to-destination {home}" in x, p)
                           for p in ports), f"no DNAT to {home}")
        def snats(x: str) -> bool:
            return f"--to-source {tun}" in x or ("-j MASQUERADE" in x
                                                 and f"-o {t.interface}" in x)

        snat = ([has(nat, snats, p) for p in ports], f"no SNAT to {tun}", f"SNAT to {tun}")
    done, missing, present = snat
    if site.snat:
        out["SNAT"] = (all(done), missing)
    else:
        out["no SNAT"] = (not any(done), present)
    return out


def _fw_zone(fw: dict, iface: str) -> str:
    for zone, info in fw.get("runtime", {}).items():
        if iface in info.get("interfaces", []):
            return zone
    return fw.get("default", "public")


def _fw_port_open(info: dict, proto: str, port: int) -> bool:
    for p in info.get("ports", []):
        rng, _, pr = p.partition("/")
        if pr == proto and _port_match([rng], port):
            return True
    return False


def _home_port(site: Site, home: HostState, spec: PortSpec) -> tuple[bool, str, str]:
    wg = site.tunnel.interface
    ports = [spec.first, spec.last] if spec.is_range else [spec.first]
    fw_spec = f"{spec.first}-{spec.last}/{spec.proto}" if spec.is_range else str(spec)
    if home.firewalld.get("running"):
        zone = _fw_zone(home.firewalld, wg)
        info = home.firewalld.get("runtime", {}).get(zone, {})
        target = (info.get("target") or ["default"])[0]
        ok = target.upper() == "ACCEPT" or all(_fw_port_open(info, spec.proto, p)
                                               for p in ports)
        opened = " ".join(info.get("ports", [])) or "none"
        return ok, f"firewalld zone {zone}: " + ("open" if ok else f"closed (open: {opened})"), (
            f"open it: `firewall-cmd --zone={zone} --add-port={fw_spec}` and the same with "
            "--permanent, or re-run `inv bootstrap`")
    chains = parse_nft(home.nft)
    results = [nft_filter(chains, "input", Pkt(iif=wg, proto=spec.proto, dport=p,
                                              daddr=str(site.tunnel.home_address)))
               for p in ports]
    ok = all(x[0] for x in results)
    return ok, ("nftables: " + ("accepted" if ok else f"dropped by {results[0][1]}")), (
        f"re-run `inv bootstrap` (it restores home's table "
        f"{Names(site.tunnel.interface).nft_family_table} and the ports in its sets)")


_NET_FLAGS = ("--network", "--net")


def container_network(info: dict) -> str:
    """The --network value the container was created with (options included)."""
    cmd = info.get("Config", {}).get("CreateCommand") or []
    for i, arg in enumerate(cmd):
        for flag in _NET_FLAGS:
            if arg == flag and i + 1 < len(cmd):
                return cmd[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return info.get("HostConfig", {}).get("NetworkMode", "")


def outbound_ok(network: str, site: Site) -> bool:
    """Does this --network make the container's egress leave through the tunnel?"""
    t = site.tunnel
    kind, _, opts = network.partition(":")
    if kind == "slirp4netns":
        values = dict(o.split("=", 1) for o in opts.split(",") if "=" in o)
        return values.get("outbound_addr") in (t.interface, str(t.home_address))
    if kind == "pasta":
        args = [a for o in opts.split(",") for a in o.split("=", 1)]
        for i, a in enumerate(args[:-1]):
            if a in ("--outbound", "-o") and args[i + 1] == str(t.home_address):
                return True
            if a in ("--outbound-if4", "--outbound-if") and args[i + 1] == t.interface:
                return True
    return False


def published(info: dict) -> set[tuple[str, int, int]]:
    """(proto, host port, container port) of every published port."""
    out = set()
    bindings = info.get("HostConfig", {}).get("PortBindings") or {}
    for key, binds in bindings.items():
        cport_txt, _, proto = key.partition("/")
        cfirst, _, clast = cport_txt.partition("-")
        cports = range(int(cfirst), int(clast or cfirst) + 1)
        for b in binds or []:
            hp = b.get("HostPort", "") or cfirst
            hfirst, _, hlast = hp.partition("-")
            hports = range(int(hfirst), int(hlast or hfirst) + 1)
            for hpn, cpn in zip(hports, cports, strict=False):
                out.add((proto or "tcp", hpn, cpn))
    return out


def _container_rows(r: _Rows, site: Site, home: HostState, svc: Service) -> None:
    t = site.tunnel
    c = home.containers.get(svc.container_name)
    u = svc.user
    if c is None and u in home.users_missing:
        r.add(f"container.{svc.name}.running", f"container {svc.container_name} running",
              False, f"user {u} does not exist at home",
              "re-run `inv bootstrap`: it creates the user and the container")
        for what in ("network", "ports"):
            r.add(f"container.{svc.name}.{what}", f"container {svc.container_name} {what}",
                  None, "not checked: no container")
        return
    start = f"re-run `inv bootstrap` (or as {u}: `podman start {svc.container_name}`)"
    base = svc.container_name
    if c is None:
        r.add(f"container.{svc.name}.running", f"{base} running", False,
              f"no container {svc.container_name} for user {u}",
              "re-run `inv bootstrap`: it creates the service's container")
        for what in ("network", "ports"):
            r.add(f"container.{svc.name}.{what}", f"{base} {what}", None,
                  "not checked: no container")
        return
    state = c.get("State", {})
    running = bool(state.get("Running"))
    r.add(f"container.{svc.name}.running", f"{base} running", running,
          f"{state.get('Status', '?')}" + (f", pid {state.get('Pid')}, user {u}" if running
                                           else f", exit code {state.get('ExitCode', '?')}"),
          start)
    net = container_network(c)
    want = f"slirp4netns:outbound_addr={t.interface} or pasta:--outbound,{t.home_address}"
    r.add(f"container.{svc.name}.network", f"{base} network: egress via {t.interface}",
          outbound_ok(net, site),
          net if outbound_ok(net, site) or not net else
          f"{net} (no outbound setting: egress takes home's default route)",
          f"its traffic leaves through home's router, not the VPS: it needs --network {want};"
          " re-run `inv bootstrap` (it recreates the container)")
    have = published(c)
    want_ports = {(p.proto, n, n) for p in svc.ports for n in range(p.first, p.last + 1)}
    missing, extra = want_ports - have, have - want_ports

    def fmt(ports: Iterable[tuple[str, int, int]]) -> str:
        return ", ".join(f"{h}->{c}/{p}" for p, h, c in sorted(ports, key=lambda x: (x[1], x[0])))

    r.add(f"container.{svc.name}.ports", f"{base} published ports = inventory",
          not missing and not extra,
          fmt(have) or "none" if not (missing or extra) else
          "; ".join(x for x in (f"missing {fmt(missing)}" if missing else "",
                                f"extra {fmt(extra)}" if extra else "") if x),
          "re-run `inv bootstrap` (it recreates the container with one -p per inventory port)")


def _first_failed(r: _Rows, prefixes: tuple[str, ...]) -> Check | None:
    return next((c for c in r.rows if c.ok is False and c.id.startswith(prefixes)), None)


def _ingress_row(r: _Rows, site: Site, home: HostState | None, laptop: LaptopState,
                 svc: Service, spec: PortSpec, vps_ip: str | None) -> None:
    id_ = f"ingress.{spec}"
    where = f"{vps_ip}:{spec.nft}/{spec.proto}" if vps_ip else f"VPS:{spec}"
    name = (f"ingress laptop → {where} → container" if spec.proto == "tcp" else
            f"ingress laptop → {where} → home {site.tunnel.interface}")
    if not vps_ip:
        r.add(id_, name, None, "not checked: the VPS public address is unknown "
              "(run `inv bootstrap`, it records [vps] public_ip)")
        return
    upstream = _first_failed(r, ("wg.", "tunnel.ping", "home.rule_to", "vps.",
                                 f"home.port.{spec}", f"container.{svc.name}.running",
                                 f"container.{svc.name}.ports"))
    cause = f"fix `{upstream.id}` first" if upstream else ""
    if spec.proto == "tcp":
        results: list[TcpResult] = laptop.tcp.get(str(spec), [])
        good = [x for x in results if x.outcome in ("greeted", "open")]
        ok = bool(results) and len(good) == len(results)
        first = results[0] if results else None
        if ok and first is not None:
            shown = next((x for x in results if x.outcome == "greeted"), first)
            measured = (f"{len(results)} port(s): " if len(results) > 1 else "") + (
                f"accepted, service says {shown.detail!r}" if shown.outcome == "greeted"
                else "accepted and held open (the service waits for the client)")
        else:
            bad = next((x for x in results if x.outcome not in ("greeted", "open")), None)
            measured = f"port {bad.port}: {bad.outcome}" + (f" ({bad.detail})" if bad.detail
                                                             else "") if bad else "not probed"
        symptom = {
            "timeout": "no answer: the VPS drops it (DNAT/filter) or the tunnel is down",
            "refused": "refused: nothing listens at home on this port (is the container "
                       "running and publishing it?)",
            "unreachable": "rejected: home's firewall (or the VPS) refuses it",
            "closed": "accepted then closed at once: nothing listens inside the container",
        }
        bad_outcome = next((x.outcome for x in results if x.outcome not in ("greeted", "open")),
                           "")
        r.add(id_, name, ok, measured, cause or symptom.get(bad_outcome, measured))
        return
    sent = laptop.udp_sent.get(str(spec), 0)
    reply = laptop.udp_replies.get(str(spec))
    if home is None:
        r.add(id_, name, None, f"sent {sent} datagram(s); not confirmed: no SSH to home")
        return
    counts = home.udp.get(str(spec))
    if counts is None:
        err = home.udp_error or laptop.udp_error or "no counter"
        r.add(id_, name, False, f"sent {sent}; arrival not measured ({err})",
              "home needs nft for this probe (the nftables package)")
        return
    pre, inp = counts.get("pre", 0), counts.get("in", 0)
    measured = (f"{sent} sent, {pre} on home {site.tunnel.interface}, {inp} past its firewall"
                + (f"; reply {reply!r}" if reply else "; no reply (not required)"))
    if pre and inp:
        r.add(id_, name, True, measured)
    elif pre:
        r.add(id_, name, False, measured, cause or
              f"home's firewall drops {spec} although the home firewall row finds it open: "
              f"another rule drops it (look at `nft list ruleset` at home); bootstrap only "
              f"manages the port in {site.tunnel.interface}'s zone")
    else:
        r.add(id_, name, False, measured, cause or
              f"nothing reached home: check the VPS's DNAT/filter for {spec} and the tunnel")


_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


def _egress_row(r: _Rows, site: Site, home: HostState | None, svc: Service,
                vps_ip: str | None, url: str) -> None:
    id_ = f"egress.{svc.name}"
    name = f"egress {svc.container_name} → internet: address = VPS"
    if home is None:
        r.add(id_, name, None, "not checked: no SSH to home")
        return
    res = home.egress.get(svc.name)
    c = home.containers.get(svc.container_name)
    if res is None or res["rc"] == "nopid" or c is None or not c.get("State", {}).get("Running"):
        r.add(id_, name, None, "not checked: the container is not running")
        return
    found = _IPV4.findall(res["body"])
    seen = found[0] if found else None
    upstream = _first_failed(r, (f"container.{svc.name}.network", "home.rule_from",
                                 "home.table", "wg.", "tunnel.ping"))
    if res["rc"] != "0" or seen is None:
        body = res["body"].strip().splitlines()
        r.add(id_, name, False, f"no answer ({body[-1] if body else 'rc=' + res['rc']})",
              f"fix `{upstream.id}` first" if upstream else
              f"the container's traffic goes nowhere: check the VPS masquerade for "
              f"{site.tunnel.subnet} (home egress) and that {url} is reachable")
        return
    ok = seen == vps_ip
    r.add(id_, name, ok, f"{url} sees {seen}" + ("" if ok else f", not {vps_ip}"),
          (f"fix `{upstream.id}` first" if upstream else
           f"its traffic leaves through {seen}, not the tunnel, although its outbound "
           f"setting, the rule from {site.tunnel.home_address} → table "
           f"{site.tunnel.route_table} and the tunnel all pass: look for another rule or route "
           f"at home that takes it first (`ip rule`, `ip route get 1.1.1.1 from "
           f"{site.tunnel.home_address}`)"))


# ============================================================================ laptop probes
def tcp_probe(addr: str, port: int, timeout: float = 2.0,
              wait: float = TCP_WAIT_S) -> TcpResult:
    try:
        s = socket.create_connection((addr, port), timeout=timeout)
    except ConnectionRefusedError:
        return TcpResult(port, "refused")
    except TimeoutError:
        return TcpResult(port, "timeout")
    except OSError as e:
        outcome = "unreachable" if e.errno in (113, 101) else "error"
        return TcpResult(port, outcome, e.strerror or str(e))
    with s:
        s.settimeout(wait)
        try:
            data = s.recv(256)
        except TimeoutError:
            return TcpResult(port, "open")
        except OSError as e:
            return TcpResult(port, "closed", e.strerror or str(e))
        if not data:
            return TcpResult(port, "closed", "EOF")
        return TcpResult(port, "greeted", data.decode(errors="replace").splitlines()[0][:80])


class UdpSender:
    """Sends a datagram to every probed UDP port every 100 ms until stopped; keeps replies."""

    def __init__(self, addr: str, specs: list[PortSpec], limit_s: float = 8.0) -> None:
        self.addr, self.specs, self.limit = addr, specs, limit_s
        self.stop = threading.Event()
        self.sent: dict[str, int] = {str(s): 0 for s in specs}
        self.replies: dict[str, str] = {}
        self.error = ""

    def run(self) -> None:
        socks = []
        try:
            for spec in self.specs:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                sock.connect((self.addr, spec.first))  # a reply must come from there
                socks.append((spec, sock, probe_ports(spec)))
            deadline = time.monotonic() + self.limit
            while not self.stop.is_set() and time.monotonic() < deadline:
                for spec, sock, ports in socks:
                    for port in ports:
                        try:
                            if port == spec.first:
                                sock.send(b"tunnelops-verify\n")
                            else:
                                sock.sendto(b"tunnelops-verify\n", (self.addr, port))
                        except OSError:
                            pass  # an ICMP error from an earlier datagram: keep going
                    self.sent[str(spec)] += 1
                    try:
                        data = sock.recv(512)
                        self.replies.setdefault(str(spec), data.decode(errors="replace")
                                                .strip()[:80])
                    except OSError:
                        pass
                self.stop.wait(0.1)
        except OSError as e:
            self.error = str(e)
        finally:
            for _, sock, _ in socks:
                sock.close()


# ============================================================================ the run
def whoami(site: Site, override: str | None = None) -> str:
    return override or site.whoami_url or DEFAULT_WHOAMI_URL


def run(site: Site, *, whoami_url: str | None = None, trust_new: bool = False,
        transcript: Transcript | None = None,
        remotes: dict[str, Remote] | None = None) -> VerifyReport:
    """Measure everything (one script per host, laptop probes meanwhile), then evaluate.
    `remotes` ({"vps": Remote, "home": Remote}) are the caller's: used, counted, not closed;
    without them verify opens (and closes) one SSH connection per host."""
    t0 = time.monotonic()
    url = whoami(site, whoami_url)
    owned = remotes is None
    remotes = remotes or {
        role: Remote(str(host), ssh_config=site.ssh_config, known_hosts=site.known_hosts,
                     trust_new=trust_new, transcript=transcript, connect_timeout=5)
        for role, host in (("vps", site.vps.host), ("home", site.homes[0].host))}
    laptop = LaptopState()
    states: dict[str, HostState | None] = {"vps": None, "home": None}
    runs = {role: HostRun(rm.dest) for role, rm in remotes.items()}
    before = {role: (rm.round_trips, rm.connects) for role, rm in remotes.items()}
    table = f"tunnelops_probe_{secrets.token_hex(4)}"
    vps_ip = str(site.vps.public_ip) if site.vps.public_ip else None
    sender = UdpSender(vps_ip, udp_specs(site)) if vps_ip and udp_specs(site) else None
    scripts = {"vps": vps_script(site), "home": home_script(site, url, table)}

    def host(role: str) -> None:
        rm, hr = remotes[role], runs[role]
        start = time.monotonic()
        try:
            reused = rm.conn.is_connected
            rm.connect()
            laptop.ssh[role] = {"ms": (time.monotonic() - start) * 1000, "reused": reused}
            res = rm.run(scripts[role], timeout=30, what="verify")
            st = parse_state(res.stdout) if MARK in res.stdout else None
            if st is not None and not st.complete:  # a cut output: once more
                res = rm.run(scripts[role], timeout=30, what="verify")
                st = parse_state(res.stdout) if MARK in res.stdout else None
            if st is not None and st.complete:
                states[role] = st
            else:
                err = (res.stderr or res.stdout).strip().splitlines()
                laptop.ssh[role]["script_error"] = (
                    "its output was incomplete twice" if st is not None else
                    err[-1] if err else f"exit {res.exit}")
        except RemoteError as e:
            laptop.ssh.setdefault(role, {})["error"] = str(e)
            hr.error = str(e)
        finally:
            if role == "home" and sender is not None:
                sender.stop.set()
            hr.seconds = time.monotonic() - start

    tcp_jobs = [(spec, port) for spec in tcp_specs(site) for port in probe_ports(spec)] \
        if vps_ip else []
    try:
        with ThreadPoolExecutor(3 + len(tcp_jobs)) as pool:
            futures = [pool.submit(host, "vps"), pool.submit(host, "home")]
            if sender is not None:
                futures.append(pool.submit(sender.run))
            tcp_futures = [(spec, pool.submit(tcp_probe, vps_ip, port))
                           for spec, port in tcp_jobs]
            for f in futures:
                f.result()
            for spec, f in tcp_futures:
                laptop.tcp.setdefault(str(spec), []).append(f.result())
    finally:
        for role, rm in remotes.items():
            runs[role].round_trips = rm.round_trips - before[role][0]
            runs[role].connects = rm.connects - before[role][1]
            if owned:
                rm.close()
    if sender is not None:
        laptop.udp_sent, laptop.udp_replies, laptop.udp_error = \
            sender.sent, sender.replies, sender.error
    checks = evaluate(site, states["vps"], states["home"], laptop, url)
    return VerifyReport(site.name, checks, runs, time.monotonic() - t0, url)
