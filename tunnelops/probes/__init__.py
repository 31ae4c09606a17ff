"""Everything tunnelops reads from a host, one probe per thing (see base.py for the
protocol). Planning (tunnelops.facts) and verify (tunnelops.verify) ask for the same probes;
each phase reads all it needs from one host in ONE batched script."""

from tunnelops.probes.base import MARK, Batch, Probe, Readings, inline, sections
from tunnelops.probes.conntrack import Conntrack
from tunnelops.probes.files import (
    FOREIGN_KEY,
    Exists,
    File,
    FileFact,
    NonEmpty,
    Records,
    Text,
    Tree,
)
from tunnelops.probes.firewall import (
    AWALL_APPLIED,
    AWALL_LIVE,
    AwallLive,
    AwallPolicies,
    FirewalldZones,
    IptablesRules,
    NftRuleset,
    NftSets,
    NftTable,
    SetCounters,
    zone_of,
)
from tunnelops.probes.ip import Addrs, Routes, Rules, Uplink
from tunnelops.probes.networkmanager import NM_PROPS, NmProfile
from tunnelops.probes.podman import Account, Containers, Podman, RestartCounts
from tunnelops.probes.system import (
    COMMANDS,
    IP_JSON,
    Clock,
    Commands,
    DirEntries,
    IpForward,
    KernelWireguard,
    Listener,
    Listening,
    OsRelease,
    Pid1,
    Uid,
)
from tunnelops.probes.traffic import Egress, UdpCounters
from tunnelops.probes.wireguard import PathMtu, Ping, WgDump

__all__ = [
    "AWALL_APPLIED",
    "AWALL_LIVE",
    "COMMANDS",
    "FOREIGN_KEY",
    "IP_JSON",
    "MARK",
    "NM_PROPS",
    "Account",
    "Addrs",
    "AwallLive",
    "AwallPolicies",
    "Batch",
    "Clock",
    "Commands",
    "Conntrack",
    "Containers",
    "DirEntries",
    "Egress",
    "Exists",
    "File",
    "FileFact",
    "FirewalldZones",
    "IpForward",
    "IptablesRules",
    "KernelWireguard",
    "Listener",
    "Listening",
    "NftRuleset",
    "NftSets",
    "NftTable",
    "NmProfile",
    "NonEmpty",
    "OsRelease",
    "PathMtu",
    "Pid1",
    "Ping",
    "Podman",
    "Probe",
    "Readings",
    "Records",
    "RestartCounts",
    "Routes",
    "Rules",
    "SetCounters",
    "Text",
    "Tree",
    "UdpCounters",
    "Uid",
    "Uplink",
    "WgDump",
    "inline",
    "sections",
    "zone_of",
]
