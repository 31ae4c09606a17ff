"""What a host is and has, gathered in ONE batched command per host.

`script()` renders the shell script (pure), the host runs it, `parse()` turns its output into
`HostFacts` (pure). Plans are computed from HostFacts alone, so plan tests are data: recorded
facts of Alpine, Fedora and Debian hosts in, changes out.

Private keys never leave the host: wherever a managed file embeds one, the host replaces it by
the placeholder before sending the file (or by a mismatch marker if it is not the host's key).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tunnelops.model import PRIVATE_KEY_PLACEHOLDER, Tunnel
from tunnelops.naming import HOST_FAMILY_TABLE, HOST_NFT_APPLIED, LEGACY, RECORDS, Names
from tunnelops.render.networkmanager import home_settings
from tunnelops.render.nftables import Element, port_sets, set_elements

MARK = "::tunnelops::"
FOREIGN_KEY = "@TUNNELOPS_OTHER_PRIVATE_KEY@"
COMMANDS = ("wg", "wg-quick", "wireguard-go", "nft", "awall", "nmcli", "firewall-cmd", "podman",
            "systemctl", "rc-update", "apk", "apt-get", "dnf", "ifup", "flock", "ping", "sudo",
            "slirp4netns", "pasta", "loginctl", "runuser", "setpriv")
# Not a command, a capability: iproute2's `ip -j` (BusyBox ip, a fresh Alpine's, has no JSON,
# and without it the live addresses, MTU, rules and routes cannot be read).
IP_JSON = "ip-json"


def commands_shell() -> str:
    """Shell listing, one a line, the COMMANDS the host has, then IP_JSON if it can."""
    return (f"for c in {' '.join(COMMANDS)}; do command -v $c >/dev/null 2>&1 && echo $c; "
            f"done; ip -j link show lo >/dev/null 2>&1 && echo {IP_JSON}")

def nft_sets_list(table: str) -> str:
    """The live elements of a site's sets (numeric: ports, never service names): the whole
    table, whose set blocks are read (`nft list sets table T` lists every table's)."""
    return f"nft -n list table {table} 2>/dev/null"


# the site records of every site on the host (tunnelops.steps.sites), one after the other
SITE_RECORDS = (f"for f in {RECORDS}/*.json; do [ -f \"$f\" ] && "
                "{ printf '@@ %s\\n' \"$f\"; cat \"$f\"; echo; }; done")

# awall's live rules (both families) without counters, and what tunnelops recorded after its
# last `awall activate` (the same text then): awall itself has no record of what is live
AWALL_LIVE = ("{ iptables-save; ip6tables-save; } 2>/dev/null | "
              "sed -e '/^#/d' -e 's/ \\[[0-9]*:[0-9]*\\]$//'")
AWALL_APPLIED = "/var/lib/tunnelops/awall.applied"

# the NetworkManager properties tunnelops manages, read back with one `nmcli -g`
# (+ connection.zone: `firewall-cmd --permanent --change-interface` of an interface NM manages
# sets the profile's zone instead of writing the interface into the zone's file)
NM_PROPS = ("connection.type", "connection.interface-name", *home_settings(Tunnel()),
            "connection.zone")


class FactsError(RuntimeError):
    pass


@dataclass
class FileFact:
    path: str
    mode: str  # octal, e.g. "600"
    owner: str
    content: str


@dataclass(frozen=True)
class Listener:
    """A socket listening on the host (ss -Hltunp): which process holds which port."""

    proto: str
    port: int
    process: str
    pid: int | None


def parse_listening(text: str) -> list[Listener]:
    """`ss -Hltunp` lines: NETID STATE RECV-Q SEND-Q LOCAL PEER [users:(("name",pid=N,fd=M))]"""
    out = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 5 or cols[0] not in ("tcp", "udp"):
            continue
        port = cols[4].rpartition(":")[2]
        if not port.isdigit():
            continue
        proc = next((c for c in cols[6:] if c.startswith("users:")), "")
        m = re.search(r'\(\("([^"]*)",pid=(\d+)', proc)
        out.append(Listener(cols[0], int(port), m.group(1) if m else "?",
                            int(m.group(2)) if m else None))
    return out


@dataclass
class HostFacts:
    os_id: str = ""
    os_like: tuple[str, ...] = ()
    os_version: str = ""
    os_pretty: str = ""
    uid: int = -1
    pid1: str = ""
    kernel_wireguard: bool = False
    commands: frozenset[str] = frozenset()
    files: dict[str, FileFact] = field(default_factory=dict)
    key_exists: bool = False
    public_key: str | None = None
    wg: dict = field(default_factory=dict)  # interface state, see _parse_wg
    addrs: list = field(default_factory=list)  # ip -j addr
    rules: list = field(default_factory=list)  # ip -j rule
    table_routes: list = field(default_factory=list)  # ip -j route show table T
    main_default: list = field(default_factory=list)  # ip -j route show default (main)
    main_routes: list = field(default_factory=list)  # ip -j route show table main
    uplink: dict = field(default_factory=dict)  # ip -j route get 198.51.100.255-ish target
    ip_forward: str = ""
    nft_table: str | None = None  # `nft -st list table inet tunnelops-IF` (no set elements)
    nft_applied: str | None = None  # what tunnelops recorded after its last apply
    nft_sets: dict[str, list[Element]] = field(default_factory=dict)  # live service port sets
    nft_legacy: str | None = None  # the table of an older tunnelops (`inet tunnelops`)
    nft_host: str | None = None  # the VPS's own table, shared by its sites (terse)
    nft_host_applied: str | None = None  # what its last load recorded
    # its sets' elements: name -> [(value, comment)] (ifnames unquoted)
    nft_host_sets: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    sites: dict[str, str] = field(default_factory=dict)  # record path -> its JSON text
    firewalld: dict = field(default_factory=dict)
    nm: dict = field(default_factory=dict)
    awall_enabled: tuple[str, ...] = ()
    awall_active: str | None = None
    podman: dict = field(default_factory=dict)  # user -> {"version":..., "containers":[...]}
    users: dict = field(default_factory=dict)  # user -> {"uid":..,"home":..,"linger":bool}
    listening: list[Listener] = field(default_factory=list)  # ss -Hltunp
    raw: dict[str, str] = field(default_factory=dict)

    def lines(self, section: str) -> list[str]:
        return [x for x in self.raw.get(section, "").splitlines() if x.strip()]

    # ---- derived
    @property
    def family(self) -> str:
        ids = {self.os_id, *self.os_like}
        if "alpine" in ids:
            return "alpine"
        if ids & {"fedora", "rhel", "centos", "rocky", "almalinux"}:
            return "fedora"
        if ids & {"debian", "ubuntu"}:
            return "debian"
        return "unknown"

    @property
    def systemd(self) -> bool:
        return self.pid1 == "systemd" and "systemctl" in self.commands

    @property
    def openrc(self) -> bool:
        return "rc-update" in self.commands and self.pid1 in ("init", "openrc-init")

    def has(self, cmd: str) -> bool:
        return cmd in self.commands

    def file(self, path: str) -> FileFact | None:
        return self.files.get(path)


def _redacting_cat(path: str, keyfile: str) -> str:
    """Shell that prints PATH with its private key replaced by a placeholder, on any line the
    tools accept (wg's keys are case-insensitive, whitespace around them ignored), and the
    host's own key replaced wherever else it appears (a comment, a copy). Only shell builtins
    see the key (read, case, printf): it is never on a command line."""
    p, k = shlex.quote(path), shlex.quote(keyfile)
    sp = "[![:space:]]"
    return (
        f"k=; [ -r {k} ] && read -r k < {k}; "
        "while IFS= read -r l || [ -n \"$l\" ]; do "
        f"t=${{l#\"${{l%%{sp}*}}\"}}; case $t in "
        "[Pp][Rr][Ii][Vv][Aa][Tt][Ee][Kk][Ee][Yy]*) "
        f"v=${{t#*=}}; v=${{v#\"${{v%%{sp}*}}\"}}; v=${{v%\"${{v##*{sp}}}\"}}; "
        "if [ -n \"$k\" ] && [ \"$v\" = \"$k\" ]; then "
        f"printf '%s\\n' 'PrivateKey = {PRIVATE_KEY_PLACEHOLDER}'; "
        f"else printf '%s\\n' 'PrivateKey = {FOREIGN_KEY}'; fi;; "
        "*) if [ -n \"$k\" ]; then case $l in *\"$k\"*) "
        f"l=\"${{l%%\"$k\"*}}{PRIVATE_KEY_PLACEHOLDER}${{l#*\"$k\"}}\";; esac; fi; "
        f"printf '%s\\n' \"$l\";; esac; done < {p}"
    )


def script(*, interface: str, route_table: int, key_path: str, files: Iterable[str],
           secret_files: Iterable[str] = (),
           users: Mapping[str, Iterable[str]] | Iterable[str] = (),
           nm_connection: str | None = None, uplink_probe: str = "1.1.1.1") -> str:
    """The one facts command. Sections are `::tunnelops:: NAME` lines; files travel base64."""
    q = shlex.quote
    iface = q(interface)
    names = Names(interface)
    table = names.nft_family_table
    secret = set(secret_files)
    lines = [
        "set +e; export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"m() {{ printf '\\n{MARK} %s\\n' \"$*\"; }}",
        "m os; cat /etc/os-release 2>/dev/null",
        "m uid; id -u",
        "m now; date +%s",
        "m pid1; cat /proc/1/comm 2>/dev/null",
        "m kernel_wg; if [ -d /sys/module/wireguard ] || modprobe -n -q wireguard 2>/dev/null;"
        " then echo yes; else echo no; fi",
        "m commands; " + commands_shell(),
        f"m key; [ -s {q(key_path)} ] && echo exists",
        f"m pubkey; cat {q(key_path.removesuffix('.key') + '.pub')} 2>/dev/null",
    ]
    for path in files:
        cat = _redacting_cat(path, key_path) if path in secret else f"cat {q(path)}"
        lines.append(
            f"if [ -f {q(path)} ]; then m file {q(path)} $(stat -c '%a %U' {q(path)}); "
            f"( {cat} ) | base64 | tr -d '\\n'; fi")
    lines += [
        f"m wg; wg show {iface} dump 2>/dev/null | awk -F'\\t' 'NR==1{{$1=\"-\"}}1' OFS='\\t'",
        # -d: the link's kind (wireguard, or tun for wireguard-go); BusyBox ip has no -j
        f"m wg_link; ip -d -j link show {iface} 2>/dev/null || {{ ip link show {iface} "
        f">/dev/null 2>&1 && echo '[{{\"ifname\": \"?\"}}]'; }}",
        "m addrs; ip -4 -j addr 2>/dev/null",
        "m rules; ip -4 -j rule 2>/dev/null",
        f"m table_routes; ip -4 -j route show table {int(route_table)} 2>/dev/null",
        "m main_default; ip -4 -j route show default 2>/dev/null",
        "m main_routes; ip -4 -j route show table main 2>/dev/null",
        # BusyBox ip (a fresh Alpine) has no -j: its plain line is parsed instead
        f"m uplink; ip -4 -j route get {q(uplink_probe)} 2>/dev/null"
        f" || ip -4 route get {q(uplink_probe)} 2>/dev/null",
        "m ip_forward; cat /proc/sys/net/ipv4/ip_forward",
        # who listens where: a service port held by another process fails before any change
        "m listening; ss -Hltunp 2>/dev/null",
        f"m nft_table; command -v nft >/dev/null && nft -st list table {table} 2>/dev/null",
        f"m nft_applied; cat {names.nft_applied} 2>/dev/null",
        f"m nft_sets; command -v nft >/dev/null && {{ {nft_sets_list(table)}; }}",
        "m nft_legacy; command -v nft >/dev/null && "
        f"nft -st list table {LEGACY.nft_family_table} 2>/dev/null",
        f"m nft_host; command -v nft >/dev/null && nft -st list table {HOST_FAMILY_TABLE} "
        "2>/dev/null",
        f"m nft_host_applied; cat {HOST_NFT_APPLIED} 2>/dev/null",
        f"m nft_host_sets; command -v nft >/dev/null && {nft_sets_list(HOST_FAMILY_TABLE)}",
        f"m sites; {SITE_RECORDS}",
        # Two firewall-cmd calls in all (each costs ~0.2 s): every zone, runtime and permanent.
        "m firewalld; if command -v firewall-cmd >/dev/null && firewall-cmd --state"
        " >/dev/null 2>&1; then echo running; sed -n 's/^DefaultZone=/default=/p'"
        " /etc/firewalld/firewalld.conf; echo @runtime; firewall-cmd --list-all-zones;"
        " echo @permanent; firewall-cmd --permanent --list-all-zones; fi",
        "m orig; [ -d /var/lib/tunnelops/orig ] && (cd /var/lib/tunnelops/orig && find . -type f)",
        "m created; cat /var/lib/tunnelops/created 2>/dev/null",
        "m state_dirs; for d in /etc/tunnelops /var/lib/tunnelops /run/tunnelops; do"
        " [ -e $d ] && echo $d; done",
        "m awall; command -v awall >/dev/null && awall list 2>/dev/null",
        f"m awall_live; command -v awall >/dev/null && {{ {AWALL_LIVE}; }}",
        f"m awall_applied; cat {AWALL_APPLIED} 2>/dev/null",
    ]
    if nm_connection:
        props = ",".join(NM_PROPS)
        lines += [
            "m nm; command -v nmcli >/dev/null && nmcli -t -f RUNNING general status 2>/dev/null"
            f" && nmcli -g {props} connection show {q(nm_connection)} 2>/dev/null",
            # peers as the keyfile stores them (the private key is in [wireguard], not here)
            f"m nm_peers; f=/etc/NetworkManager/system-connections/{q(nm_connection)}"
            ".nmconnection; [ -f \"$f\" ] && grep -E '^\\[wireguard-peer|^(endpoint|"
            "allowed-ips|persistent-keepalive)=' \"$f\"",
        ]
    lines.append(user_lines(users))
    return "\n".join(lines) + "\n"


def user_lines(users: Mapping[str, Iterable[str]] | Iterable[str]) -> str:
    """Shell for the `user NAME` sections: who the service user is, whether lingering and its
    runtime dir exist, and (as the user, on its own session bus) Podman's version, the open
    files it may hold, which of its service images are present, and its tunnelops containers
    as JSON (last: the parser reads JSON to the end of the section)."""
    images = users if isinstance(users, Mapping) else dict.fromkeys(users, ())
    q, out = shlex.quote, []
    for user, imgs in images.items():
        u = q(user)
        has = "".join(f"podman image exists {q(i)} 2>/dev/null && echo has_image={q(i)}; "
                      for i in imgs)
        inner = ("cd; podman version --format \"version={{.Client.Version}}\"; "
                 f"echo nofile=$(ulimit -Hn); {has}"
                 # how each of our containers was created (its --network is not in `ps`)
                 "podman container inspect --format \"create {{.Name}} "
                 "{{json .Config.CreateCommand}}\" $(podman ps -aq --filter "
                 "label=tunnelops.service) 2>/dev/null; "
                 "podman ps -a --filter label=tunnelops.service --format json")
        out.append(
            f"m user {u}; if id {u} >/dev/null 2>&1; then uid=$(id -u {u}); "
            f"echo \"uid=$uid\"; echo \"home=$(getent passwd {u} | cut -d: -f6)\"; "
            f"echo \"comment=$(getent passwd {u} | cut -d: -f5)\"; "
            f"[ -e /var/lib/systemd/linger/{u} ] && echo linger=yes; "
            f"echo \"runtime=$([ -d /run/user/$uid ] && echo yes)\"; "
            "if command -v podman >/dev/null; then "
            f"runuser -u {u} -- env XDG_RUNTIME_DIR=/run/user/$uid HOME=$(getent passwd {u} "
            f"| cut -d: -f6) sh -c {q(inner)} 2>/dev/null; fi; "
            # no such user yet: Podman's version still decides the network and Quadlet
            "elif command -v podman >/dev/null; then "
            "podman --version 2>/dev/null | sed -n 's/^podman version /version=/p'; "
            "echo nofile=$(ulimit -Hn); fi")
    return "\n".join(out)


def parse_user(body: str) -> dict:
    info: dict = {"containers": [], "images": [], "created": {}}
    for line in body.splitlines():
        if line.startswith("create ") and not info.get("_json"):
            _, name, cmd = [*line.split(" ", 2), ""][:3]
            info["created"][name] = _json(cmd, None)
        elif line.startswith("[") or line.startswith("{") or info.get("_json"):
            info["_json"] = info.get("_json", "") + line + "\n"
        elif line.startswith("has_image="):
            info["images"].append(line.split("=", 1)[1])
        elif "=" in line:
            k, v = line.split("=", 1)
            info[k] = v
    info["containers"] = _json(info.pop("_json", ""), [])
    return info


def _records(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    cur = None
    for line in text.splitlines():
        if line.startswith("@@ "):
            cur = line[3:]
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


def _sections(output: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    cur = None
    for line in output.splitlines():
        if line.startswith(MARK + " "):
            cur = line[len(MARK) + 1:]
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in out.items()}


def _json(text: str, default):
    try:
        return json.loads(text) if text.strip() else default
    except json.JSONDecodeError:
        return default


def _route_text(text: str) -> dict:
    """`ip route get` without -j ("1.1.1.1 via GW dev IF  src ADDR") as -j would show it."""
    words = text.split()
    keys = {"via": "gateway", "dev": "dev", "src": "prefsrc"}
    route = {keys[w]: v for w, v in itertools.pairwise(words) if w in keys}
    return {"dst": words[0], **route} if words and "dev" in route else {}


def _parse_wg(text: str) -> dict:
    """`wg show IF dump` with the private key already replaced by '-' on the host."""
    rows = [r.split("\t") for r in text.splitlines() if r.strip()]
    if not rows:
        return {}
    head = rows[0]
    state = {"public_key": head[1] if len(head) > 1 else "",
             "listen_port": int(head[2]) if len(head) > 2 and head[2].isdigit() else 0,
             "peers": []}
    for r in rows[1:]:
        if len(r) >= 8:
            state["peers"].append({
                "public_key": r[0], "endpoint": None if r[2] == "(none)" else r[2],
                "allowed_ips": [] if r[3] == "(none)" else r[3].split(","),
                "latest_handshake": int(r[4] or 0), "rx": int(r[5] or 0), "tx": int(r[6] or 0),
                "keepalive": 0 if r[7] == "off" else int(r[7])})
    return state


def _parse_firewalld(text: str) -> dict:
    """{"running", "default", "runtime": {zone: {key: [values]}}, "permanent": {...}}"""
    if not text.startswith("running"):
        return {}
    out: dict = {"running": True, "default": "public", "runtime": {}, "permanent": {}}
    where, zone, key = None, None, ""
    for line in text.splitlines()[1:]:
        if line.startswith("default="):
            out["default"] = line.split("=", 1)[1].strip()
        elif line in ("@runtime", "@permanent"):
            where = out[line[1:]]
        elif where is not None and line and not line[0].isspace():
            zone = where.setdefault(line.split()[0], {})
        elif zone is not None and line.startswith("\t") and key:
            # forward-ports and rich rules: one per line after their key, tab-indented
            zone[key].append(line.strip())
        elif where is not None and zone is not None and ":" in line:
            key, _, v = line.strip().partition(":")
            zone[key] = v.split()
    return out


def parse(output: str) -> HostFacts:
    s = _sections(output)
    if "os" not in s:
        raise FactsError("the facts command printed nothing recognisable")
    osr = dict(line.split("=", 1) for line in s["os"].splitlines() if "=" in line)
    osr = {k: v.strip().strip('"') for k, v in osr.items()}
    f = HostFacts(
        os_id=osr.get("ID", ""), os_like=tuple(osr.get("ID_LIKE", "").split()),
        os_version=osr.get("VERSION_ID", ""), os_pretty=osr.get("PRETTY_NAME", ""),
        uid=int(s.get("uid", "-1").strip() or -1), pid1=s.get("pid1", "").strip(),
        kernel_wireguard=s.get("kernel_wg", "").strip() == "yes",
        commands=frozenset(s.get("commands", "").split()),
        key_exists=s.get("key", "").strip() == "exists",
        public_key=s.get("pubkey", "").strip() or None,
        wg=_parse_wg(s.get("wg", "")),
        addrs=_json(s.get("addrs", ""), []), rules=_json(s.get("rules", ""), []),
        table_routes=_json(s.get("table_routes", ""), []),
        main_default=_json(s.get("main_default", ""), []),
        main_routes=_json(s.get("main_routes", ""), []),
        uplink=(_json(s.get("uplink", ""), []) or [_route_text(s.get("uplink", ""))])[0],
        ip_forward=s.get("ip_forward", "").strip(),
        nft_table=s.get("nft_table") or None, nft_applied=s.get("nft_applied") or None,
        nft_sets=port_sets(s.get("nft_sets", "")),
        nft_legacy=s.get("nft_legacy") or None,
        nft_host=s.get("nft_host") or None, nft_host_applied=s.get("nft_host_applied") or None,
        nft_host_sets={name: [(v.strip('"'), c) for v, c in elems] for name, elems in
                       set_elements(s.get("nft_host_sets", "")).items()
                       if not name.startswith("ssh_")},
        sites=_records(s.get("sites", "")),
        listening=parse_listening(s.get("listening", "")),
        raw=s,
    )
    link = _json(s.get("wg_link", ""), [])
    if link:
        f.wg["link"] = link[0]
    for name, body in s.items():
        if name.startswith("file "):
            parts = name.split(" ")
            path, mode, owner = parts[1], parts[2] if len(parts) > 2 else "", \
                parts[3] if len(parts) > 3 else ""
            f.files[path] = FileFact(path, mode, owner,
                                     base64.b64decode(body.strip() or b"").decode())
        elif name.startswith("user "):
            f.users[name.split(" ", 1)[1]] = parse_user(body)
    f.firewalld = _parse_firewalld(s.get("firewalld", ""))
    if "nm" in s:
        vals = s["nm"].splitlines()
        f.nm = {"running": bool(vals) and vals[0] == "running",
                # NM also shows an external "tun" connection for a wireguard-go wg0: not ours
                "exists": len(vals) > 1 and vals[1] == "wireguard",
                "values": dict(zip(NM_PROPS, vals[1:], strict=False)),
                "peers": s.get("nm_peers", "")}
    aw = s.get("awall", "")
    f.awall_enabled = tuple(line.split()[0] for line in aw.splitlines()
                            if line.split()[1:2] == ["enabled"])
    return f
