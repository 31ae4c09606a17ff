"""nftables rulesets: exact text, and nft itself accepts them.

nft runs inside `unshare --net`, a throw-away empty network namespace: nothing on this
machine is touched and nothing persists.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tunnelops.backends import nftables as nft_backend
from tunnelops.model import PortSpec, Service, Tunnel
from tunnelops.probes import NftSets
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
SVC_SETS = (
    "    set svc_tcp {\n"
    "        type inet_service\n"
    "        flags interval\n"
    "    }\n"
    "    set svc_udp {\n"
    "        type inet_service\n"
    "        flags interval\n"
    "    }\n"
)
R = " " * 8  # rule indentation


def vps_base(wan: str, wg: str, home: str, vps: str, subnet: str, ssh: int, listen: int,
             *, snat: bool = False) -> str:
    """vps_ruleset without its `add element` lines: the same whatever the services. With
    snat (client_ip = "snat") forwarded service traffic leaves from the VPS's tunnel
    address; without it only home's egress is masqueraded."""
    snat_rules = (
        f'{R}oifname "{wg}" ip daddr {home} tcp dport @svc_tcp snat ip to {vps} comment '
        '"services"\n'
        f'{R}oifname "{wg}" ip daddr {home} udp dport @svc_udp snat ip to {vps} comment '
        '"services"\n') if snat else ""
    return (
        HEADER + SETS + SVC_SETS + "\n"
        "    chain input {\n"
        f"{R}type filter hook input priority filter; policy drop;\n"
        f"{R}ct state established,related accept\n"
        f"{R}ct state invalid drop\n"
        f"{R}iif lo accept\n"
        f'{R}iifname "{wg}" accept\n'
        f"{R}{ICMP}"
        f"{R}{ICMPV6}"
        f'{R}ip6 saddr fe80::/10 udp dport 546 accept comment "dhcpv6 replies"\n'
        f"{R}tcp dport {ssh} tcp flags & (syn | ack) == syn ct state new update @ssh_new4 "
        "{ ip saddr limit rate over "
        '9/minute burst 3 packets } drop comment "ssh rate limit"\n'
        f"{R}tcp dport {ssh} tcp flags & (syn | ack) == syn ct state new update @ssh_new6 "
        "{ ip6 saddr limit rate over "
        '9/minute burst 3 packets } drop comment "ssh rate limit"\n'
        f'{R}tcp dport {ssh} accept comment "ssh"\n'
        f'{R}udp dport {listen} accept comment "wireguard"\n'
        "    }\n"
        "\n"
        "    chain forward {\n"
        f"{R}type filter hook forward priority filter; policy drop;\n"
        f"{R}ct state established,related accept\n"
        f"{R}ct state invalid drop\n"
        f'{R}iifname "{wg}" oifname "{wan}" accept comment "home egress through the VPS"\n'
        f'{R}iifname "{wan}" oifname "{wg}" ip daddr {home} tcp dport @svc_tcp ct status dnat '
        'accept comment "services"\n'
        f'{R}iifname "{wan}" oifname "{wg}" ip daddr {home} udp dport @svc_udp ct status dnat '
        'accept comment "services"\n'
        "    }\n"
        "\n"
        "    chain prerouting {\n"
        f"{R}type nat hook prerouting priority dstnat; policy accept;\n"
        f'{R}iifname "{wan}" tcp dport @svc_tcp dnat ip to {home} comment "services"\n'
        f'{R}iifname "{wan}" udp dport @svc_udp dnat ip to {home} comment "services"\n'
        "    }\n"
        "\n"
        "    chain postrouting {\n"
        f"{R}type nat hook postrouting priority srcnat; policy accept;\n"
        f'{R}oifname "{wan}" ip saddr {subnet} masquerade comment "home egress"\n'
        + snat_rules +
        "    }\n"
        "}\n"
    )


CUSTOM_BASE = vps_base("ens3", "wgt", "10.9.8.6", "10.9.8.5", "10.9.8.0/29", 2222, 51999,
                       snat=True)


def test_vps_ruleset_two_services_custom_tunnel() -> None:
    assert nftables.vps_ruleset("ens3", CUSTOM, [GAME, WEB], ssh_port=2222, snat=True) == (
        CUSTOM_BASE
        + 'add element inet tunnelops svc_tcp { 8080 comment "web", 12346 comment "game" }\n'
        'add element inet tunnelops svc_udp { 12345 comment "game", '
        '27015-27020 comment "web" }\n'
    )


def test_vps_ruleset_without_services_is_the_same_base() -> None:
    text = nftables.vps_ruleset("eth0", Tunnel(), [])
    assert text == vps_base("eth0", "wg0", "192.168.2.2", "192.168.2.1", "192.168.2.0/24",
                            22, 51821)
    assert "add element" not in text
    one = nftables.vps_ruleset("eth0", Tunnel(), [GAME])
    assert nftables.base(one) == text  # a service only adds elements
    assert one == text + ('add element inet tunnelops svc_tcp { 12346 comment "game" }\n'
                          'add element inet tunnelops svc_udp { 12345 comment "game" }\n')


def test_home_ruleset() -> None:
    assert nftables.home_ruleset(Tunnel(), [GAME, WEB]) == (
        HEADER + SVC_SETS + "\n"
        "    chain input {\n"
        f"{R}type filter hook input priority filter; policy accept;\n"
        f'{R}iifname != "wg0" accept\n'
        f"{R}ct state established,related accept\n"
        f"{R}ct state invalid drop\n"
        f"{R}{ICMP}"
        f'{R}tcp dport @svc_tcp accept comment "services"\n'
        f'{R}udp dport @svc_udp accept comment "services"\n'
        f'{R}drop comment "nothing else from the tunnel"\n'
        "    }\n"
        "}\n"
        'add element inet tunnelops svc_tcp { 8080 comment "web", 12346 comment "game" }\n'
        'add element inet tunnelops svc_udp { 12345 comment "game", '
        '27015-27020 comment "web" }\n'
    )
    assert "add element" not in nftables.home_ruleset(Tunnel(), [])


def test_base_and_elements() -> None:
    text = nftables.vps_ruleset("ens3", CUSTOM, [GAME, WEB], ssh_port=2222, snat=True)
    assert nftables.base(text) == CUSTOM_BASE
    assert nftables.base(CUSTOM_BASE) == CUSTOM_BASE
    E = nftables.Element
    assert nftables.service_elements([GAME, WEB]) == {
        "svc_tcp": [E(8080, 8080, "web"), E(12346, 12346, "game")],
        "svc_udp": [E(12345, 12345, "game"), E(27015, 27020, "web")]}
    assert nftables.service_elements([]) == {"svc_tcp": [], "svc_udp": []}
    assert E(27015, 27020, "web").nft == '27015-27020 comment "web"'
    assert E(12345, 12345).nft == E(12345, 12345).key == "12345"
    assert nftables.delete_element("svc_udp", [E(27015, 27020, "web")]) == (
        "delete element inet tunnelops svc_udp { 27015-27020 }")


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
    "vps-snat": nftables.vps_ruleset("eth0", Tunnel(), [GAME], snat=True),
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


def test_nft_lists_the_elements_we_wrote(tmp_path: Path) -> None:
    """nft's own listing of the sets (what the facts command reads) parses back to exactly
    the rendered elements, comments and ranges included."""
    result = nft(tmp_path, RULESETS["vps-custom"], f"nft -f FILE && {NftSets().shell()}")
    assert result.returncode == 0, result.stderr
    assert NftSets().parse(result.stdout) == nftables.service_elements([GAME, WEB])


def test_element_changes_touch_nothing_else(tmp_path: Path) -> None:
    """The backend's element commands, run by a shell as the apply script does: the set
    changes, every rule keeps its handle and counter, the SSH limiter's set keeps its
    element; and the guard's snapshot restores the elements too."""
    E = nftables.Element
    changes = nft_backend.element_changes(
        {"svc_udp": [E(12345, 12345, "game"), E(12347, 12347, "game")]},
        nftables.service_elements([GAME, WEB]))
    assert [c.summary for c in changes] == [
        "delete 8080/tcp (web) from set svc_tcp", "delete 12346/tcp (game) from set svc_tcp",
        "delete 27015-27020/udp (web) from set svc_udp", "add 12347/udp (game) to set svc_udp"]
    rules = "nft -a list table inet tunnelops | grep -v elements"
    script = (
        "nft -f FILE && nft add element inet tunnelops ssh_new4 '{ 203.0.113.9 }' && "
        "nft add rule inet tunnelops input counter packets 7 bytes 700 && "
        f"{rules} > before && " + " && ".join(c.script for c in changes) + " && "
        f"{rules} > after && cmp before after && {NftSets().shell()} && "
        "nft list set inet tunnelops ssh_new4 | grep -c 203.0.113.9 && "
        f"{{ {nft_backend.SNAPSHOT}; }} > snap && nft delete table inet tunnelops && "
        f"nft -f snap && echo @restored && {NftSets().shell()}")
    result = nft(tmp_path, RULESETS["vps-custom"], f"cd {tmp_path} && {script}")
    assert result.returncode == 0, result.stderr
    live, _, restored = result.stdout.partition("@restored\n")
    want = {"svc_tcp": [], "svc_udp": [E(12345, 12345, "game"), E(12347, 12347, "game")]}
    assert NftSets().parse(live) == NftSets().parse(restored) == want
    assert "counter packets 7 bytes 700" in (tmp_path / "after").read_text()
