"""nftables rulesets: exact text, and nft itself accepts them.

nft runs inside `unshare --net`, a throw-away empty network namespace: nothing on this
machine is touched and nothing persists.
"""

from __future__ import annotations

import dataclasses
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tunnelops.backends import nftables as nft_backend
from tunnelops.facts import HostFacts
from tunnelops.inventory.new import new_site
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.tunnel import Tunnel
from tunnelops.naming import Names
from tunnelops.probes import NftSets
from tunnelops.probes.firewall import port_sets
from tunnelops.render import nftables, nfthost
from tunnelops.steps.context import Ctx

GAME = Service("game", "docker.io/example/game:latest",
               (PortSpec.parse("12345/udp"), PortSpec.parse("12346/tcp")), "gamer", home="home")
WEB = Service("web", "docker.io/library/nginx:1.25",
              (PortSpec.parse("8080/tcp"), PortSpec.parse("27015-27020/udp")), "www",
              home="home")
SITE = new_site("home", "vps", "home", services=(GAME,))
CUSTOM = Tunnel(interface="wgt", subnet="10.9.8.0/29", vps_address="10.9.8.5",  # type: ignore[arg-type]
                home_address="10.9.8.6", listen_port=51999)  # type: ignore[arg-type]


def nft_sets_list(table: str) -> str:
    """nft's text listing of a table with its sets' elements (render.port_sets reads it)."""
    return f"nft -n list table {table} 2>/dev/null"


def header(table: str) -> str:
    return ("# Managed by tunnelops: local edits are overwritten.\n"
            f"table inet {table}\n"
            f"delete table inet {table}\n"
            f"table inet {table} {{\n")


HEADER = header("tunnelops-wg0")
ICMP = ("icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem }"
        " accept\n")
def svc_sets(*names: str, counter: bool = False) -> str:
    count = "        counter\n" if counter else ""
    return "".join(f"    set {n} {{\n        type inet_service\n        flags interval\n"
                   f"{count}    }}\n" for n in names)


SVC_SETS = svc_sets("svc_tcp", "svc_udp")
R = " " * 8  # rule indentation


def vps_base(wan: str, wg: str, home: str, vps: str, subnet: str, *, snat: bool = False,
             homes: dict[str, str] | None = None) -> str:
    """vps_ruleset without its `add element` lines: the same whatever the services. The
    site's own table on the VPS is its NAT: each home has its pair of sets, DNATed to its
    address. With snat (client_ip = "snat") forwarded service traffic leaves from the VPS's
    tunnel address; without it only home's egress is masqueraded. The filter is the host's
    table (render.nfthost)."""
    homes = homes or {"home": home}

    def each(rule: str) -> str:
        return "".join(rule.format(h=h, a=a, p=p) for h, a in homes.items()
                       for p in ("tcp", "udp"))

    snat_rules = each(f'{R}oifname "{wg}" ip daddr {{a}} {{p}} dport @svc_{{p}}_{{h}} snat ip '
                      f'to {vps} comment "services of {{h}}"\n') if snat else ""
    return (
        header(f"tunnelops-{wg}")
        + svc_sets(*(f"svc_{p}_{h}" for h in homes for p in ("tcp", "udp")), counter=True)
        + "\n"
        "    chain prerouting {\n"
        f"{R}type nat hook prerouting priority dstnat; policy accept;\n"
        + each(f'{R}iifname "{wan}" {{p}} dport @svc_{{p}}_{{h}} dnat ip to {{a}} comment '
               '"services of {h}"\n') +
        "    }\n"
        "\n"
        # counting only: each port's element counts the packets forwarded into the tunnel
        "    chain count {\n"
        f"{R}type filter hook forward priority filter - 1; policy accept;\n"
        + each(f'{R}iifname "{wan}" oifname "{wg}" {{p}} dport @svc_{{p}}_{{h}}\n') +
        "    }\n"
        "\n"
        "    chain postrouting {\n"
        f"{R}type nat hook postrouting priority srcnat; policy accept;\n"
        f'{R}oifname "{wan}" ip saddr {subnet} masquerade comment "home egress"\n'
        + snat_rules +
        "    }\n"
        "}\n"
    )


CUSTOM_BASE = vps_base("ens3", "wgt", "10.9.8.6", "10.9.8.5", "10.9.8.0/29", snat=True)


def test_vps_ruleset_two_services_custom_tunnel() -> None:
    assert nftables.vps_ruleset("ens3", CUSTOM, [GAME, WEB], snat=True) == (
        CUSTOM_BASE
        + 'add element inet tunnelops-wgt svc_tcp_home { 8080 comment "web", '
        '12346 comment "game" }\n'
        'add element inet tunnelops-wgt svc_udp_home { 12345 comment "game", '
        '27015-27020 comment "web" }\n'
    )


THREE = {"home": IPv4Address("192.168.2.2"), "voice": IPv4Address("192.168.2.3"),
         "friend": IPv4Address("192.168.2.4")}
VOICE = Service("mumble", "docker.io/example/mumble:latest",
                (PortSpec.parse("64738/tcp"), PortSpec.parse("64738/udp")), "voice",
                home="voice")


def test_vps_ruleset_forwards_each_service_to_its_home() -> None:
    """A pair of sets per home, DNATed to its address; a home without services has its
    (empty) pair, so a port added there later is an element, not a reload."""
    text = nftables.vps_ruleset("eth0", Tunnel(), [GAME, VOICE], homes=THREE, snat=True)
    assert text == vps_base("eth0", "wg0", "", "192.168.2.1", "192.168.2.0/24",
                            snat=True, homes={h: str(a) for h, a in THREE.items()}) + (
        'add element inet tunnelops-wg0 svc_tcp_home { 12346 comment "game" }\n'
        'add element inet tunnelops-wg0 svc_udp_home { 12345 comment "game" }\n'
        'add element inet tunnelops-wg0 svc_tcp_voice { 64738 comment "mumble" }\n'
        'add element inet tunnelops-wg0 svc_udp_voice { 64738 comment "mumble" }\n')
    assert '@svc_udp_voice dnat ip to 192.168.2.3 comment "services of voice"' in text
    assert nftables.split(text)[1] == {
        "svc_tcp_friend": [], "svc_udp_friend": [],
        "svc_tcp_home": [nftables.Element(12346, 12346, "game")],
        "svc_udp_home": [nftables.Element(12345, 12345, "game")],
        "svc_tcp_voice": [nftables.Element(64738, 64738, "mumble")],
        "svc_udp_voice": [nftables.Element(64738, 64738, "mumble")]}


def test_vps_ruleset_without_services_is_the_same_base() -> None:
    text = nftables.vps_ruleset("eth0", Tunnel(), [])
    assert text == vps_base("eth0", "wg0", "192.168.2.2", "192.168.2.1", "192.168.2.0/24")
    assert "add element" not in text
    one = nftables.vps_ruleset("eth0", Tunnel(), [GAME])
    assert nftables.split(one)[0] == text  # a service only adds elements
    assert one == text + (
        'add element inet tunnelops-wg0 svc_tcp_home { 12346 comment "game" }\n'
        'add element inet tunnelops-wg0 svc_udp_home { 12345 comment "game" }\n')


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
        'add element inet tunnelops-wg0 svc_tcp { 8080 comment "web", 12346 comment "game" }\n'
        'add element inet tunnelops-wg0 svc_udp { 12345 comment "game", '
        '27015-27020 comment "web" }\n'
    )
    assert "add element" not in nftables.home_ruleset(Tunnel(), [])


def test_split_and_elements() -> None:
    text = nftables.vps_ruleset("ens3", CUSTOM, [GAME, WEB], snat=True)
    base, elements = nftables.split(text)
    assert base == CUSTOM_BASE
    E = nftables.Element
    assert elements == {"svc_tcp_home": [E(8080, 8080, "web"), E(12346, 12346, "game")],
                        "svc_udp_home": [E(12345, 12345, "game"), E(27015, 27020, "web")]}
    assert nftables.service_elements([GAME, WEB], ["home"]) == elements
    assert nftables.service_elements([GAME, WEB]) == {  # home's own pair
        "svc_tcp": elements["svc_tcp_home"], "svc_udp": elements["svc_udp_home"]}
    assert nftables.service_elements([]) == {"svc_tcp": [], "svc_udp": []}
    assert nftables.split(CUSTOM_BASE) == (CUSTOM_BASE, {"svc_tcp_home": [],
                                                         "svc_udp_home": []})
    assert E(27015, 27020, "web").nft == '27015-27020 comment "web"'
    assert E(12345, 12345).nft == E(12345, 12345).key == "12345"
    assert nftables.delete_element("inet tunnelops-wgt", "svc_udp_home",
                                   [E(27015, 27020, "web")]) == (
        "delete element inet tunnelops-wgt svc_udp_home { 27015-27020 }")


def nft(tmp_path: Path, text: str, script: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "ruleset.nft"
    path.write_text(text)
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script.replace("FILE", str(path))],
        capture_output=True, text=True, timeout=30, check=False,
    )


RULESETS = {
    "vps-seed": nftables.vps_ruleset("eth0", Tunnel(), [GAME]),
    "vps-custom": nftables.vps_ruleset("ens3.100", CUSTOM, [GAME, WEB]),
    "host": nfthost.host_ruleset("eth0", 22, [nfthost.HubSite("wg0", 51821, "lab")]),
    "host-empty": nfthost.host_ruleset("ens3.100", 2222, []),
    "vps-snat": nftables.vps_ruleset("eth0", Tunnel(), [GAME], snat=True),
    "vps-empty": nftables.vps_ruleset("eth0", Tunnel(), []),
    "vps-three-homes": nftables.vps_ruleset("eth0", Tunnel(), [GAME, VOICE], homes=THREE,
                                            snat=True),
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
    assert result.stdout == "table inet other\ntable inet tunnelops-wgt\n"


def test_two_sites_tables_live_side_by_side(tmp_path: Path) -> None:
    """Each site's file replaces its own table only: wg1's second load leaves wg0's."""
    wg1 = nftables.vps_ruleset("eth0", Tunnel(interface="wg1", listen_port=51822,
                                              subnet="192.168.3.0/24",  # type: ignore[arg-type]
                                              vps_address="192.168.3.1",  # type: ignore[arg-type]
                                              home_address="192.168.3.2"),  # type: ignore[arg-type]
                               [dataclasses.replace(GAME, ports=(PortSpec.parse("12347/udp"),))])
    (tmp_path / "wg1.nft").write_text(wg1)
    result = nft(tmp_path, RULESETS["vps-seed"],
                 f"nft -f FILE && nft -f {tmp_path}/wg1.nft && nft -f {tmp_path}/wg1.nft && "
                 f"nft list tables && {nft_sets_list('inet tunnelops-wg0')}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("table inet tunnelops-wg0\ntable inet tunnelops-wg1\n")
    assert nftables.port_sets(result.stdout)["svc_udp_home"] == [
        nftables.Element(12345, 12345, "game")]


def test_the_older_table_goes_in_the_transaction_that_loads_the_new(tmp_path: Path) -> None:
    """The backend's load of a site that was the host's one site: `inet tunnelops` (an
    older tunnelops' table) is deleted by the same `nft -f -` that loads the new table."""
    old = HEADER.replace("tunnelops-wg0", "tunnelops") + "    chain input {\n" \
        f"{R}type filter hook input priority filter; policy drop;\n    }}\n}}\n"
    (tmp_path / "old.nft").write_text(old)
    names = Names("wg0")
    load = nft_backend.plan(
        Ctx(SITE, "vps", HostFacts(nft_legacy="table inet tunnelops {}\n")),
        RULESETS["vps-seed"], legacy=True)
    command = next(c for c in load.changes if c.summary.startswith("load table"))
    assert command.summary == "load table inet tunnelops-wg0, in place of inet tunnelops"
    script = command.script.replace(names.nft_file, "FILE").replace(
        names.state, str(tmp_path)).split("\n", 1)[0]
    result = nft(tmp_path, RULESETS["vps-seed"],
                 f"nft add table inet other && nft -f {tmp_path}/old.nft && {script} && "
                 "nft list tables")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "table inet other\ntable inet tunnelops-wg0\n"


def test_nft_lists_the_elements_we_wrote(tmp_path: Path) -> None:
    """nft's own listing of the sets (what the facts command reads) parses back to exactly
    the rendered elements, comments and ranges included."""
    table = "inet tunnelops-wgt"
    result = nft(tmp_path, RULESETS["vps-custom"], f"nft -f FILE && {NftSets(table).shell()}")
    assert result.returncode == 0, result.stderr
    assert port_sets(NftSets(table).parse(result.stdout)) == \
        nftables.service_elements([GAME, WEB], ["home"])


def test_element_changes_touch_nothing_else(tmp_path: Path) -> None:
    """The backend's element commands, run by a shell as the apply script does: the set
    changes, every rule keeps its handle and counter, the SSH limiter's set (the host's
    table) keeps its element; and the guard's snapshot restores the elements too."""
    E = nftables.Element
    table = "inet tunnelops-wgt"
    changes = nft_backend.element_changes(
        table, {"svc_udp_home": [E(12345, 12345, "game"), E(12347, 12347, "game")]},
        nftables.service_elements([GAME, WEB], ["home"]))
    assert [c.summary for c in changes] == [
        "delete 8080/tcp (web) from set svc_tcp_home",
        "delete 12346/tcp (game) from set svc_tcp_home",
        "delete 27015-27020/udp (web) from set svc_udp_home",
        "add 12347/udp (game) to set svc_udp_home"]
    (tmp_path / "host.nft").write_text(RULESETS["host"])
    host = "inet tunnelops-host"
    rules = f"nft -a list table {table} | grep -v elements"
    sets = nft_sets_list(table)
    script = (
        f"nft -f host.nft && nft -f FILE && nft add element {host} ssh_new4 "
        "'{ 203.0.113.9 }' && "
        f"nft add rule {table} prerouting counter packets 7 bytes 700 && "
        f"{rules} > before && " + " && ".join(c.script for c in changes) + " && "
        f"{rules} > after && cmp before after && {sets} && "
        f"nft list set {host} ssh_new4 | grep -c 203.0.113.9 && "
        f"{nft_backend.snapshot(table, ['svc_tcp_home', 'svc_udp_home'])} > snap && "
        f"nft delete table {table} && "
        f"nft -f snap && echo @restored && {sets}")
    result = nft(tmp_path, RULESETS["vps-custom"], f"cd {tmp_path} && {script}")
    assert result.returncode == 0, result.stderr
    live, _, restored = result.stdout.partition("@restored\n")
    want = {"svc_tcp_home": [],
            "svc_udp_home": [E(12345, 12345, "game"), E(12347, 12347, "game")]}
    assert nftables.port_sets(live) == nftables.port_sets(restored) == want
    assert "counter packets 7 bytes 700" in (tmp_path / "after").read_text()


def test_the_host_table_is_reloaded_keeping_every_sites_elements(tmp_path: Path) -> None:
    """Two sites on the VPS: the host's table lets both WireGuard ports and tunnels in. A
    reload of its file (a change of its rules) never deletes the table, so another site's
    element and the SSH limiter's memory survive; one site's element commands touch only
    its own."""
    two = nfthost.host_ruleset("eth0", 22, [nfthost.HubSite("wg0", 51821, "lab"),
                                            nfthost.HubSite("wg1", 51822, "friend")])
    host = "inet tunnelops-host"
    (tmp_path / "two.nft").write_text(two)
    (tmp_path / "one.nft").write_text(RULESETS["host"])
    gone = nft_backend.host_element_changes(nfthost.host_elements(RULESETS["host"]),
                                            nfthost.host_elements(two))
    assert [c.summary for c in gone] == [
        f"delete wg1 from set tunnels of {host}", f"delete 51822 from set wireguard of {host}"]
    script = (f"nft -f two.nft && nft add element {host} ssh_new4 '{{ 203.0.113.9 }}' && "
              f"nft add element {host} wireguard '{{ 51999 }}' && nft -f one.nft && "
              f"{nft_sets_list(host)} && echo @gone && "
              + " && ".join(c.script for c in gone) + f" && {nft_sets_list(host)}")
    result = nft(tmp_path, "", f"cd {tmp_path} && {script}")
    assert result.returncode == 0, result.stderr
    kept, _, after = result.stdout.partition("@gone\n")
    sets = nftables.set_elements(kept)
    assert sets["wireguard"] == [("51821", "lab"), ("51822", "friend"), ("51999", "")]
    assert sets["tunnels"] == [('"wg0"', "lab"), ('"wg1"', "friend")]
    assert sets["ssh_new4"][0][0] == "203.0.113.9"
    assert nftables.set_elements(after)["wireguard"] == [("51821", "lab"), ("51999", "")]


def test_the_host_table_lets_each_sites_wireguard_and_tunnel_in() -> None:
    text = nfthost.host_ruleset("eth0", 2222, [nfthost.HubSite("wg0", 51821, "lab")])
    assert text.startswith("# Managed by tunnelops: local edits are overwritten.\n"
                           "add table inet tunnelops-host\n")
    assert "delete table" not in text  # a reload keeps the sets' elements
    for rule in ('input iifname @tunnels accept comment "the homes"',
                 'input tcp dport 2222 accept comment "ssh"',
                 'input udp dport @wireguard accept comment "wireguard"',
                 'forward iifname @tunnels oifname "eth0" accept comment "home egress through '
                 'the VPS"',
                 'forward iifname "eth0" oifname @tunnels ct status dnat accept comment '
                 '"services"'):
        assert f"add rule inet tunnelops-host {rule}\n" in text
    assert text.endswith('add element inet tunnelops-host tunnels { "wg0" comment "lab" }\n'
                         'add element inet tunnelops-host wireguard { 51821 comment "lab" }\n')
    assert nfthost.host_elements(text) == {"tunnels": [("wg0", "lab")],
                                           "wireguard": [("51821", "lab")]}
