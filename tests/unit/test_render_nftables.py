"""nftables rulesets: exact text, and nft itself accepts them.

nft runs inside `unshare --net`, a throw-away empty network namespace: nothing on this
machine is touched and nothing persists.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tunnelops.model import PortSpec, Service, Tunnel
from tunnelops.render import nftables

GAME = Service("game", "docker.io/example/game:latest",
               (PortSpec.parse("12345/udp"), PortSpec.parse("12346/tcp")), "gamer")
WEB = Service("web", "docker.io/library/nginx:1.25",
              (PortSpec.parse("8080/tcp"), PortSpec.parse("27015-27020/udp")), "www")
CUSTOM = Tunnel(interface="wgt", subnet="10.9.8.0/29", vps_address="10.9.8.5",  # type: ignore[arg-type]
                home_address="10.9.8.6", listen_port=51999)  # type: ignore[arg-type]

HEADER = (
    "# Managed by tunnelops: local edits are overwritten.\n"
    "table inet tunnelops\n"
    "delete table inet tunnelops\n"
    "table inet tunnelops {\n"
)
ICMP = ("icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem }"
        " accept\n")
ICMPV6 = ("icmpv6 type { echo-request, destination-unreachable, packet-too-big, time-exceeded, "
          "parameter-problem, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } "
          "accept\n")
SETS = (
    "    set ssh_new4 {\n"
    "        type ipv4_addr\n"
    "        flags dynamic, timeout\n"
    "        timeout 1m\n"
    "    }\n"
    "    set ssh_new6 {\n"
    "        type ipv6_addr\n"
    "        flags dynamic, timeout\n"
    "        timeout 1m\n"
    "    }\n"
)
R = " " * 8  # rule indentation


def test_vps_ruleset_two_services_custom_tunnel() -> None:
    assert nftables.vps_ruleset("ens3", CUSTOM, [GAME, WEB], ssh_port=2222) == (
        HEADER + SETS + "\n"
        "    chain input {\n"
        f"{R}type filter hook input priority filter; policy drop;\n"
        f"{R}ct state established,related accept\n"
        f"{R}ct state invalid drop\n"
        f"{R}iif lo accept\n"
        f'{R}iifname "wgt" accept\n'
        f"{R}{ICMP}"
        f"{R}{ICMPV6}"
        f'{R}ip6 saddr fe80::/10 udp dport 546 accept comment "dhcpv6 replies"\n'
        f"{R}tcp dport 2222 ct state new update @ssh_new4 {{ ip saddr limit rate over "
        '9/minute burst 3 packets } drop comment "ssh rate limit"\n'
        f"{R}tcp dport 2222 ct state new update @ssh_new6 {{ ip6 saddr limit rate over "
        '9/minute burst 3 packets } drop comment "ssh rate limit"\n'
        f'{R}tcp dport 2222 accept comment "ssh"\n'
        f'{R}udp dport 51999 accept comment "wireguard"\n'
        "    }\n"
        "\n"
        "    chain forward {\n"
        f"{R}type filter hook forward priority filter; policy drop;\n"
        f"{R}ct state established,related accept\n"
        f"{R}ct state invalid drop\n"
        f'{R}iifname "wgt" oifname "ens3" accept comment "home egress through the VPS"\n'
        f'{R}iifname "ens3" oifname "wgt" ip daddr 10.9.8.6 udp dport 12345 ct status dnat '
        'accept comment "service game"\n'
        f'{R}iifname "ens3" oifname "wgt" ip daddr 10.9.8.6 tcp dport 12346 ct status dnat '
        'accept comment "service game"\n'
        f'{R}iifname "ens3" oifname "wgt" ip daddr 10.9.8.6 tcp dport 8080 ct status dnat '
        'accept comment "service web"\n'
        f'{R}iifname "ens3" oifname "wgt" ip daddr 10.9.8.6 udp dport 27015-27020 ct status '
        'dnat accept comment "service web"\n'
        "    }\n"
        "\n"
        "    chain prerouting {\n"
        f"{R}type nat hook prerouting priority dstnat; policy accept;\n"
        f'{R}iifname "ens3" udp dport 12345 dnat ip to 10.9.8.6 comment "game"\n'
        f'{R}iifname "ens3" tcp dport 12346 dnat ip to 10.9.8.6 comment "game"\n'
        f'{R}iifname "ens3" tcp dport 8080 dnat ip to 10.9.8.6 comment "web"\n'
        f'{R}iifname "ens3" udp dport 27015-27020 dnat ip to 10.9.8.6 comment "web"\n'
        "    }\n"
        "\n"
        "    chain postrouting {\n"
        f"{R}type nat hook postrouting priority srcnat; policy accept;\n"
        f'{R}oifname "ens3" ip saddr 10.9.8.0/29 masquerade comment "home egress"\n'
        f'{R}oifname "wgt" ip daddr 10.9.8.6 udp dport 12345 snat ip to 10.9.8.5 comment '
        '"game"\n'
        f'{R}oifname "wgt" ip daddr 10.9.8.6 tcp dport 12346 snat ip to 10.9.8.5 comment '
        '"game"\n'
        f'{R}oifname "wgt" ip daddr 10.9.8.6 tcp dport 8080 snat ip to 10.9.8.5 comment '
        '"web"\n'
        f'{R}oifname "wgt" ip daddr 10.9.8.6 udp dport 27015-27020 snat ip to 10.9.8.5 comment '
        '"web"\n'
        "    }\n"
        "}\n"
    )


def test_vps_ruleset_without_services() -> None:
    text = nftables.vps_ruleset("eth0", Tunnel(), [])
    assert text.count("dnat") == 0 and text.count("snat") == 0
    assert (
        "    chain prerouting {\n"
        f"{R}type nat hook prerouting priority dstnat; policy accept;\n"
        "    }\n"
    ) in text
    assert f'{R}tcp dport 22 accept comment "ssh"\n{R}udp dport 51821 accept' in text


def test_home_ruleset() -> None:
    assert nftables.home_ruleset(Tunnel(), [GAME, WEB]) == (
        HEADER +
        "    chain input {\n"
        f"{R}type filter hook input priority filter; policy accept;\n"
        f'{R}iifname != "wg0" accept\n'
        f"{R}ct state established,related accept\n"
        f"{R}ct state invalid drop\n"
        f"{R}{ICMP}"
        f'{R}udp dport 12345 accept comment "service game"\n'
        f'{R}tcp dport 12346 accept comment "service game"\n'
        f'{R}tcp dport 8080 accept comment "service web"\n'
        f'{R}udp dport 27015-27020 accept comment "service web"\n'
        f'{R}drop comment "nothing else from the tunnel"\n'
        "    }\n"
        "}\n"
    )


def nft(tmp_path: Path, text: str, script: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "ruleset.nft"
    path.write_text(text)
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script.replace("FILE", str(path))],
        capture_output=True, text=True, timeout=30, check=False,
    )


RULESETS = {
    "vps-seed": nftables.vps_ruleset("eth0", Tunnel(), [GAME]),
    "vps-custom": nftables.vps_ruleset("ens3.100", CUSTOM, [GAME, WEB], ssh_port=2222),
    "vps-empty": nftables.vps_ruleset("eth0", Tunnel(), []),
    "home": nftables.home_ruleset(CUSTOM, [GAME, WEB]),
    "home-empty": nftables.home_ruleset(Tunnel(), []),
}


@pytest.mark.parametrize("name", sorted(RULESETS))
def test_nft_accepts_ruleset(tmp_path: Path, name: str) -> None:
    result = nft(tmp_path, RULESETS[name], "nft -c -f FILE")
    assert result.returncode == 0, result.stderr


def test_loading_twice_replaces_only_our_table(tmp_path: Path) -> None:
    # Another tool's table survives, and a second load (table already present) succeeds.
    script = ("nft add table inet other && nft add chain inet other c && "
              "nft -f FILE && nft -f FILE && nft list tables")
    result = nft(tmp_path, RULESETS["vps-custom"], script)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "table inet other\ntable inet tunnelops\n"
