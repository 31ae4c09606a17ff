"""Distributions in one table: what differs between them, and nothing else does.

A host's family comes from /etc/os-release (ID, then ID_LIKE): the first entry that names
one of them. Planning (steps, packages, teardown) and verify read the family's entry here;
a new distribution is one entry (plus, if it needs one, a backend) and its recorded facts.

- packages: the package that provides each command tunnelops needs (IP_JSON: an `ip` that
  speaks JSON), and the one command that installs them;
- vps_firewall: the VPS's firewall backend ("firewalld" is used while firewalld runs,
  else the family's nftables table);
- vps_network: how the VPS's tunnel interface is made ("ifupdown" where the kernel has
  WireGuard and ifupdown-ng is installed, else wg-quick);
- nft_conf: the file the distribution's nftables service loads at boot, where our table's
  include line goes; nft_boot "unit" instead loads our table with a unit of our own and
  leaves that file alone (where it is a firewall of its own, e.g. policy drop).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tunnelops.probes.system import IP_JSON


@dataclass(frozen=True)
class Distro:
    family: str
    label: str  # in messages: "Debian/Ubuntu"
    ids: frozenset[str]
    install: str  # shell, {packages} the quoted package names
    packages: Mapping[str, str]
    vps_firewall: str  # awall | nftables | firewalld
    vps_network: str  # ifupdown | wg-quick
    nft_conf: str = "/etc/nftables.conf"
    nft_boot: str = "include"  # include | unit

    def install_command(self, packages: Sequence[str]) -> str:
        return self.install.replace("{packages}", " ".join(shlex.quote(p) for p in packages))


# command -> package where most distributions agree; each entry overrides what differs
COMMON = {"wg": "wireguard-tools", "wg-quick": "wireguard-tools", "wireguard-go": "wireguard-go",
          "nft": "nftables", "flock": "util-linux", "podman": "podman",
          "slirp4netns": "slirp4netns", "pasta": "passt", IP_JSON: "iproute2"}
_APT = ("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        "{packages}")

DISTROS: tuple[Distro, ...] = (
    Distro("alpine", "Alpine", frozenset({"alpine"}), "apk add --no-cache {packages}",
           {**COMMON, "wg-quick": "wireguard-tools-wg-quick", "awall": "awall"},
           vps_firewall="awall", vps_network="ifupdown"),
    Distro("debian", "Debian/Ubuntu", frozenset({"debian", "ubuntu"}),
           f"{_APT} || {{ apt-get update -q && {_APT}; }}", COMMON,
           vps_firewall="nftables", vps_network="wg-quick"),
    Distro("fedora", "Fedora/RHEL", frozenset({"fedora", "rhel", "centos", "rocky",
                                               "almalinux"}),
           "dnf install -y -q {packages}", {**COMMON, IP_JSON: "iproute"},
           vps_firewall="firewalld", vps_network="wg-quick",
           nft_conf="/etc/sysconfig/nftables.conf"),
    # Arch's kernel has WireGuard (no wireguard-go in its repositories); its nftables.conf is
    # a firewall of its own (policy drop), so our table is loaded at boot by our own unit
    Distro("arch", "Arch Linux", frozenset({"arch"}), "pacman -S --needed --noconfirm {packages}",
           {c: p for c, p in COMMON.items() if c != "wireguard-go"},
           vps_firewall="nftables", vps_network="wg-quick", nft_boot="unit"),
)


def of(os_release: Mapping[str, str]) -> Distro | None:
    """The host's entry, from its os-release (ID first, then ID_LIKE); None: unsupported."""
    ids = [os_release.get("ID", ""), *os_release.get("ID_LIKE", "").split()]
    for d in DISTROS:
        if d.ids & set(ids):
            return d
    return None


def by_family(family: str) -> Distro | None:
    return next((d for d in DISTROS if d.family == family), None)


def supported_labels() -> str:
    labels = [d.label for d in DISTROS]
    return ", ".join(labels[:-1]) + " or " + labels[-1] if len(labels) > 1 else labels[0]


def vps_firewall(distro: Distro, firewalld_running: bool) -> str:
    """The VPS's firewall backend: the family's, firewalld only while it runs."""
    if distro.vps_firewall == "firewalld" and not firewalld_running:
        return "nftables"
    return distro.vps_firewall


FIREWALL_COMMANDS = {"awall": ("awall",), "nftables": ("nft",), "firewalld": ()}
