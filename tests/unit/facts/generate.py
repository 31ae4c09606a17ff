"""Regenerate the recorded facts outputs in this directory:

    .venv/bin/python -m tests.unit.facts.generate

Each NAME.txt is exactly what tunnelops' one facts batch (`facts.FactProbes`, as the engine
builds it) prints on a host: a `::tunnelops:: KEY` section per probe in the batch's order,
files as base64 (private keys already replaced by the placeholder, as the host does), then
the end marker. The probe list is taken from the batch itself, so a new probe appears here
(empty) by itself. The hosts are in hosts.py, the tools' output shapes in shapes.py.

Converged hosts hold the files tunnelops' own renderers write, so a converged host must plan
no change at all; rerun this script after a deliberate renderer change and review the diff.
The nft listings need a network namespace (`unshare -rn nft ...`): root or user namespaces.
"""

from __future__ import annotations

import base64
from pathlib import Path

from tests.unit.facts.hosts import (
    FLEET,
    FLEET_KEYS,
    FLEET_PEERS,
    FRIEND_PUB,
    HOSTS,
    VOICE_PUB,
    fedora_vps_zones,
)
from tests.unit.facts.oses import ALPINE_INTERFACES, DEBIAN_NFTABLES_CONF
from tests.unit.facts.shapes import (
    GAME,
    GAME_RANGE,
    HOME_PUB,
    INVENTORY,
    NAMES,
    NOW,
    RANGE_SITE,
    SITE,
    VPS_IP,
    VPS_PUB,
    Host,
    User,
    nft_list,
)
from tunnelops import facts as facts_mod
from tunnelops.engine import fact_probes
from tunnelops.facts import HostFacts
from tunnelops.probes import MARK, Probe, Readings, sections

HERE = Path(__file__).parent

__all__ = [
    "ALPINE_INTERFACES",
    "DEBIAN_NFTABLES_CONF",
    "FLEET",
    "FLEET_KEYS",
    "FLEET_PEERS",
    "FRIEND_PUB",
    "GAME",
    "GAME_RANGE",
    "HOME_PUB",
    "HOSTS",
    "INVENTORY",
    "NAMES",
    "NOW",
    "RANGE_SITE",
    "SITE",
    "VOICE_PUB",
    "VPS_IP",
    "VPS_PUB",
    "fact_probes",
    "facts",
    "fedora_vps_zones",
    "load",
    "nft_list",
    "output",
]


def _bodies(host: Host) -> dict[str, str]:
    """What the host prints for each probe of its facts batch, by the probe's key."""
    fp = fact_probes(host.site, host.role)
    out = {p.key: host.sections.get(name, "") for name, p in fp.named().items()}
    for f in fp.files:
        if f.path in host.files:
            mode, owner, text = host.files[f.path]
            out[f.key] = f"{mode} {owner}\n" + base64.b64encode(text.encode()).decode()
    for u in fp.users:
        user = host.users.get(u.account.user, User())
        out |= {u.account.key: user.account, u.podman.key: user.podman,
                u.containers.key: user.containers}
    return out


def output(host: Host) -> str:
    """What the facts batch prints on this host, section by section in the script's order."""
    bodies = _bodies(host)
    order: list[Probe] = list(fact_probes(host.site, host.role).batch())
    text = "".join(f"\n{MARK} {p.key}\n{bodies.get(p.key, '')}" for p in order)
    return text + f"\n{MARK} end\n{len(order)}\n{len(order)}\n"


def load(name: str) -> str:
    return (HERE / f"{name}.txt").read_text()


def facts(name: str) -> HostFacts:
    """The recorded host's facts, read as the engine reads them."""
    host = HOSTS[name]()
    fp = fact_probes(host.site, host.role)
    return facts_mod.read(fp, Readings(sections(load(name))))


def main() -> None:
    for name, make in HOSTS.items():
        path = HERE / f"{name}.txt"
        path.write_text(output(make()))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
