"""What a host is and has, for planning: HostFacts, read by ONE batched script per host.

`probes()` names what is read (tunnelops.probes: each thing read is one probe, the same
verify asks for), `Batch(fp.all()).script()` reads it all in one round trip, and `read()`
turns the readings into HostFacts (pure). Plans are computed from HostFacts alone, so plan
tests are data: recorded outputs of Alpine, Fedora and Debian hosts in, changes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from tunnelops import distros
from tunnelops.backends.originals import ORIG as ORIGINALS
from tunnelops.backends.originals import RECORDS as CREATED
from tunnelops.naming import HOST_FAMILY_TABLE, HOST_NFT_APPLIED, LEGACY, RECORDS, Names
from tunnelops.probes import (
    AWALL_APPLIED,
    Account,
    Addrs,
    AwallLive,
    AwallPolicies,
    Batch,
    Clock,
    Commands,
    Containers,
    Exists,
    File,
    FileFact,
    FirewalldZones,
    IpForward,
    KernelWireguard,
    Listener,
    Listening,
    NftSets,
    NftTable,
    NmProfile,
    NonEmpty,
    OsRelease,
    Pid1,
    Podman,
    Probe,
    Readings,
    Records,
    Routes,
    Rules,
    Text,
    Tree,
    Uid,
    Uplink,
    WgDump,
)
from tunnelops.probes.firewall import port_sets
from tunnelops.probes.ip import defaults, link
from tunnelops.render.nftables import Element

STATE_DIRS = ("/etc/tunnelops", "/var/lib/tunnelops", "/run/tunnelops")


class FactsError(RuntimeError):
    pass


@dataclass
class HostFacts:
    os_id: str = ""
    os_like: tuple[str, ...] = ()
    os_version: str = ""
    os_pretty: str = ""
    uid: int = -1
    now: int = 0
    pid1: str = ""
    kernel_wireguard: bool = False
    commands: frozenset[str] = frozenset()
    files: dict[str, FileFact] = field(default_factory=dict)
    key_exists: bool = False
    public_key: str | None = None
    wg: dict = field(default_factory=dict)  # probes.WgDump, + "link": the link if it exists
    addrs: list = field(default_factory=list)  # ip -d -j addr: every link and its addresses
    rules: list = field(default_factory=list)  # ip -j rule
    table_routes: list = field(default_factory=list)  # ip -j route show table T
    main_default: list = field(default_factory=list)  # the main table's default routes
    main_routes: list = field(default_factory=list)  # ip -j route show table main
    uplink: dict = field(default_factory=dict)  # ip -j route get 198.51.100.255-ish target
    ip_forward: str = ""
    nft_table: str | None = None  # `nft -st list table inet tunnelops-IF` (no set elements)
    nft_applied: str | None = None  # what tunnelops recorded after its last apply
    nft_sets: dict[str, list[Element]] = field(default_factory=dict)  # live service port sets
    nft_legacy: str | None = None  # the table of an older tunnelops (`inet tunnelops`)
    nft_host: str | None = None  # the VPS's own table, shared by its sites (terse)
    nft_host_applied: str | None = None  # what its last load recorded
    # its sets' elements: name -> [(value, comment)]
    nft_host_sets: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    sites: dict[str, str] = field(default_factory=dict)  # site record path -> its JSON text
    firewalld: dict = field(default_factory=dict)  # running, default, runtime, permanent
    nm: dict = field(default_factory=dict)  # probes.NmProfile (home only)
    awall_enabled: tuple[str, ...] = ()
    awall_live: str = ""  # the live iptables rules, as awall's drift record keeps them
    awall_applied: str = ""  # the record
    users: dict = field(default_factory=dict)  # user -> account, podman, containers
    listening: list[Listener] = field(default_factory=list)  # ss -Hltunp
    originals: list[str] = field(default_factory=list)  # files saved for teardown (./etc/x)
    created: list[str] = field(default_factory=list)  # what tunnelops recorded making
    state_dirs: list[str] = field(default_factory=list)  # tunnelops's own, present

    # ---- derived
    @property
    def distro(self) -> distros.Distro | None:
        return distros.of({"ID": self.os_id, "ID_LIKE": " ".join(self.os_like)})

    @property
    def family(self) -> str:
        d = self.distro
        return d.family if d else "unknown"

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


@dataclass(frozen=True)
class UserProbes:
    account: Account
    podman: Podman
    containers: Containers


@dataclass(frozen=True)
class FactProbes:
    """The probes a host's facts are read by: one batch."""

    interface: str
    route_table: int
    key_path: str
    files: tuple[File, ...]
    users: tuple[UserProbes, ...]
    nm: NmProfile | None

    os = OsRelease()
    uid = Uid()
    clock = Clock()
    pid1 = Pid1()
    kernel_wg = KernelWireguard()
    commands = Commands()
    addrs = Addrs()
    rules = Rules()
    main_routes = Routes("main")
    uplink = Uplink()
    ip_forward = IpForward()
    listening = Listening()
    nft_legacy = NftTable(LEGACY.nft_family_table)
    nft_host = NftTable(HOST_FAMILY_TABLE)
    nft_host_applied = Text(HOST_NFT_APPLIED)
    nft_host_sets = NftSets(HOST_FAMILY_TABLE)
    sites = Records(RECORDS)
    fw_runtime = FirewalldZones("runtime")
    fw_permanent = FirewalldZones("permanent")
    originals = Tree(ORIGINALS)
    created = Text(CREATED)
    state_dirs = Exists(STATE_DIRS)
    awall = AwallPolicies()
    awall_live = AwallLive()
    awall_applied = Text(AWALL_APPLIED)

    @property
    def key(self) -> NonEmpty:
        return NonEmpty(self.key_path)

    @property
    def pubkey(self) -> Text:
        return Text(self.key_path.removesuffix(".key") + ".pub")

    @property
    def wg(self) -> WgDump:
        return WgDump(self.interface)

    @property
    def table_routes(self) -> Routes:
        return Routes(str(int(self.route_table)))

    # the site's own table (tunnelops.naming: named for its interface)
    @property
    def nft_table(self) -> NftTable:
        return NftTable(Names(self.interface).nft_family_table)

    @property
    def nft_applied(self) -> Text:
        return Text(Names(self.interface).nft_applied)

    @property
    def nft_sets(self) -> NftSets:
        return NftSets(Names(self.interface).nft_family_table)

    SINGLES: ClassVar[tuple[str, ...]] = (
        "os", "uid", "clock", "pid1", "kernel_wg", "commands", "key", "pubkey", "wg", "addrs",
        "rules", "table_routes", "main_routes", "uplink", "ip_forward", "listening",
        "nft_table", "nft_applied", "nft_sets", "nft_legacy", "nft_host", "nft_host_applied",
        "nft_host_sets", "sites", "fw_runtime", "fw_permanent", "originals",
        "created", "state_dirs", "awall", "awall_live", "awall_applied", "nm")

    def named(self) -> dict[str, Probe]:
        """The probes read once per host, by name (the files and users aside)."""
        return {n: p for n in self.SINGLES if (p := getattr(self, n)) is not None}

    def all(self) -> list[Probe]:
        return [*self.named().values(), *self.files,
                *(p for u in self.users for p in (u.account, u.podman, u.containers))]

    def batch(self, extra: Iterable[Probe] = ()) -> Batch:
        return Batch([*self.all(), *extra])


def probes(*, interface: str, route_table: int, key_path: str, files: Iterable[str],
           secret_files: Iterable[str] = (),
           users: Mapping[str, Iterable[str]] | Iterable[str] = (),
           nm_connection: str | None = None, keep: bool = False) -> FactProbes:
    """What one host's facts read: these files (those in SECRET_FILES with the host's
    private key redacted on the host), each service user with its images, and a
    NetworkManager profile (home). KEEP: the read may record what speeds up the next one
    (Podman's version: a run that may change the host, never a dry run, verify or status)."""
    secret = set(secret_files)
    images = users if isinstance(users, Mapping) else dict.fromkeys(users, ())
    return FactProbes(
        interface=interface, route_table=route_table, key_path=key_path,
        files=tuple(File(p, key_path if p in secret else None) for p in files),
        users=tuple(UserProbes(Account(u), Podman(u, tuple(imgs), keep), Containers(u))
                    for u, imgs in images.items()),
        nm=NmProfile(nm_connection) if nm_connection else None)


def user_facts(up: UserProbes, r: Readings) -> dict:
    """One service user as the plan sees it: account, Podman and containers in one dict."""
    podman, containers = r[up.podman], r[up.containers]
    return {**r[up.account], **{k: v for k, v in podman.items() if k != "images"},
            "images": list(podman.get("images", [])),
            "containers": containers["containers"], "created": containers["created"]}


def read(fp: FactProbes, r: Readings) -> HostFacts:
    """HostFacts from one run of the facts batch."""
    if fp.os.key not in r.raw:
        raise FactsError("the facts command printed nothing recognisable")
    if not r.complete:
        raise FactsError("the facts command's output was cut short: re-run")
    osr = r[fp.os]
    addrs = r[fp.addrs]
    wg = dict(r[fp.wg])
    if (lk := link(addrs, fp.interface)) is not None:
        wg["link"] = lk
    main = r[fp.main_routes]
    runtime, permanent = r[fp.fw_runtime], r[fp.fw_permanent]
    firewalld = {"running": True, "default": runtime.get("default", "public"),
                 "runtime": runtime.get("zones", {}),
                 "permanent": permanent.get("zones", {})} if runtime.get("running") else {}
    return HostFacts(
        os_id=osr.get("ID", ""), os_like=tuple(osr.get("ID_LIKE", "").split()),
        os_version=osr.get("VERSION_ID", ""), os_pretty=osr.get("PRETTY_NAME", ""),
        uid=r[fp.uid], now=r[fp.clock], pid1=r[fp.pid1], kernel_wireguard=r[fp.kernel_wg],
        commands=frozenset(r[fp.commands]), key_exists=r[fp.key],
        public_key=r[fp.pubkey].strip() or None,
        files={f.path: fact for f in fp.files if (fact := r[f]) is not None},
        wg=wg, addrs=addrs, rules=r[fp.rules], table_routes=r[fp.table_routes],
        main_default=defaults(main), main_routes=main, uplink=r[fp.uplink],
        ip_forward=r[fp.ip_forward], nft_table=r[fp.nft_table],
        nft_applied=r[fp.nft_applied] or None, nft_sets=port_sets(r[fp.nft_sets]),
        nft_legacy=r[fp.nft_legacy], nft_host=r[fp.nft_host],
        nft_host_applied=r[fp.nft_host_applied] or None,
        nft_host_sets={k: v for k, v in r[fp.nft_host_sets].items()
                       if not k.startswith("ssh_")},
        sites=r[fp.sites],
        firewalld=firewalld, nm=dict(r[fp.nm]) if fp.nm else {},
        awall_enabled=tuple(n for n, status in r[fp.awall].items() if status == "enabled"),
        awall_live=r[fp.awall_live], awall_applied=r[fp.awall_applied],
        users={u.account.user: user_facts(u, r) for u in fp.users},
        listening=r[fp.listening],
        originals=r[fp.originals],
        created=[x for x in r[fp.created].splitlines() if x.strip()],
        state_dirs=r[fp.state_dirs])
