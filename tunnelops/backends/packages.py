"""Install what is missing with the host's package manager (apk, apt-get, dnf)."""

from __future__ import annotations

import shlex

from tunnelops.changes import CommandChange, StepPlan
from tunnelops.facts import IP_JSON, HostFacts
from tunnelops.steps.context import PlanError

# command -> package, per family
PACKAGES: dict[str, dict[str, str]] = {
    "wg": {"alpine": "wireguard-tools", "debian": "wireguard-tools", "fedora": "wireguard-tools"},
    "wg-quick": {"alpine": "wireguard-tools-wg-quick", "debian": "wireguard-tools",
                 "fedora": "wireguard-tools"},
    "wireguard-go": {"alpine": "wireguard-go", "debian": "wireguard-go",
                     "fedora": "wireguard-go"},
    "nft": {"alpine": "nftables", "debian": "nftables", "fedora": "nftables"},
    "awall": {"alpine": "awall"},
    "flock": {"alpine": "util-linux", "debian": "util-linux", "fedora": "util-linux"},
    "podman": {"alpine": "podman", "debian": "podman", "fedora": "podman"},
    "slirp4netns": {"alpine": "slirp4netns", "debian": "slirp4netns", "fedora": "slirp4netns"},
    "pasta": {"alpine": "passt", "debian": "passt", "fedora": "passt"},
    IP_JSON: {"alpine": "iproute2", "debian": "iproute2", "fedora": "iproute"},
}


def install_command(family: str, packages: list[str]) -> str:
    pk = " ".join(shlex.quote(p) for p in packages)
    return {
        "alpine": f"apk add --no-cache {pk}",
        "debian": "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                  f"--no-install-recommends {pk} || {{ apt-get update -q && "
                  f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                  f"--no-install-recommends {pk}; }}",
        "fedora": f"dnf install -y -q {pk}",
    }[family]


def plan(facts: HostFacts, commands: list[str]) -> StepPlan:
    p = StepPlan("packages")
    missing = [c for c in commands if not facts.has(c)]
    if not missing:
        return p
    family = facts.family
    try:
        pkgs = sorted({PACKAGES[c][family] for c in missing})
    except KeyError:
        raise PlanError(f"no package known for {', '.join(missing)} on {facts.os_pretty}: "
                        "install them by hand, then re-run") from None
    p.changes.append(CommandChange(f"install {' '.join(pkgs)}", install_command(family, pkgs)))
    return p
