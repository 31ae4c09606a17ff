"""Live faults as data (issue 15): recorded facts of a converged host, one thing changed on
the running system while every file stays right, and the exact smallest fix planned -- or
nothing at all for the converged control. The same faults as tests/lab/test_live_faults.py,
for each backend: wg-quick (the lab's, and the Debian VPS's), NetworkManager (Fedora home,
which the namespace lab cannot activate), ifupdown-ng (Alpine VPS).
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.facts import generate
from tests.unit.facts.generate import HOME_PUB, INVENTORY, RANGE_SITE, SITE, VPS_IP, VPS_PUB
from tests.unit.shells import SHELLS
from tunnelops.backends import awall as awall_backend
from tunnelops.backends import ifupdown as ifupdown_backend
from tunnelops.backends import networkmanager, wglive
from tunnelops.changes import StepPlan
from tunnelops.facts import HostFacts
from tunnelops.render import podman as podman_render
from tunnelops.render.wireguard import home_wg_quick
from tunnelops.steps import home, teardown, vps
from tunnelops.steps.context import Ctx

SYNC = ("s=$(mktemp /run/tunnelops-strip.XXXXXX); wg-quick strip wg0 > \"$s\" && "
        "wg syncconf wg0 \"$s\"; rc=$?; rm -f \"$s\"; [ $rc = 0 ]")


def recorded(name: str) -> HostFacts:
    return generate.facts(name)


def nm_home() -> HostFacts:
    return recorded("fedora-home-converged")


def wg_quick_home() -> HostFacts:
    """The Fedora home as the lab's: NetworkManager cannot run the tunnel, wg-quick does."""
    f = recorded("fedora-home-converged")
    f.nm = {"running": False}
    f.files["/etc/wireguard/wg0.conf"] = dataclasses.replace(
        f.files["/etc/wireguard/wg0.conf"], content=home_wg_quick(SITE.tunnel, VPS_PUB, VPS_IP))
    f.firewalld["permanent"]["public"]["interfaces"] = ["wg0"]  # no profile binds it: the file
    return f


def home_plans(f: HostFacts) -> list[StepPlan]:
    return home.configure(Ctx(SITE, "home", f, peer_public_key=VPS_PUB, vps_public_ip=VPS_IP,
                              wan_interface="eth0"))


def vps_plans(f: HostFacts, site=RANGE_SITE) -> list[StepPlan]:
    ctx = Ctx(site, "vps", f, peer_public_key=HOME_PUB)
    ctx.vps_public_ip, ctx.wan_interface = vps.discover(ctx, INVENTORY)
    return vps.configure(ctx)


def changes(plans: list[StepPlan]) -> list[tuple[str, str, str]]:
    """(step, summary, shell) of every change planned."""
    return [(p.step, c.summary, c.shell()) for p in plans for c in p.changes]


def peer(f: HostFacts) -> dict:
    return f.wg["peers"][0]


# ---------------------------------------------------------------------------- the faults
def narrowed_allowed_ips(f: HostFacts) -> None:
    peer(f)["allowed_ips"] = ["192.168.2.1/32"]  # the seed's own first mistake


def wrong_endpoint(f: HostFacts) -> None:
    peer(f)["endpoint"] = "198.51.100.250:51821"


def keepalive_removed(f: HostFacts) -> None:
    peer(f)["keepalive"] = 0


def mtu_changed(f: HostFacts) -> None:
    f.wg["link"]["mtu"] = 1300


def rule_deleted(f: HostFacts) -> None:
    f.rules = [r for r in f.rules if r.get("src") != "192.168.2.2"]


def table_route_deleted(f: HostFacts) -> None:
    f.table_routes = []


WG_FAULTS: list[tuple[Callable[[HostFacts], None], str]] = [
    (narrowed_allowed_ips, "AllowedIPs 192.168.2.1/32, not 0.0.0.0/0"),
    (wrong_endpoint, "endpoint 198.51.100.250:51821, not 203.0.113.7:51821"),
    (keepalive_removed, "keepalive off, not 25"),
]


def test_converged_controls_plan_nothing() -> None:
    for plans in (home_plans(wg_quick_home()), home_plans(nm_home()),
                  vps_plans(recorded("debian-vps-converged"))):
        assert changes(plans) == []


# ---------------------------------------------------------------------------- wg-quick home
@pytest.mark.parametrize(("fault", "why"), WG_FAULTS, ids=[f.__name__ for f, _ in WG_FAULTS])
def test_wg_quick_home_peer_drift_is_synced_from_its_file(
        fault: Callable[[HostFacts], None], why: str) -> None:
    f = wg_quick_home()
    fault(f)
    assert changes(home_plans(f)) == [
        ("wireguard", f"sync wg0 peers with its config ({why})", SYNC)]


def test_wg_quick_home_mtu_is_set_back_to_what_wg_quick_chose() -> None:
    """wg-quick gives wg0 its uplink's MTU minus 80 (enp1s0: 1500): that value comes back."""
    f = wg_quick_home()
    mtu_changed(f)
    assert changes(home_plans(f)) == [
        ("wireguard", "set wg0's MTU back to 1420 (MTU 1300, not 1420)",
         "ip link set dev wg0 mtu 1420")]
    # the inventory's MTU wins over wg-quick's own choice (and is in the file's [Interface])
    assert wglive.wanted_mtu(dataclasses.replace(SITE.tunnel, mtu=1380), "wg-quick", 1500) == 1380
    assert wglive.wanted_mtu(SITE.tunnel, "wg-quick", None) is None  # unknown: never guessed


def test_wg_quick_home_routing_is_repaired_live() -> None:
    f = wg_quick_home()
    rule_deleted(f)
    table_route_deleted(f)
    assert changes(home_plans(f)) == [
        ("wireguard", "add policy rule from 192.168.2.2/32 table 201",
         "ip -4 rule add from 192.168.2.2/32 table 201 priority 100"),
        ("wireguard", "add default route via wg0 in table 201",
         "ip -4 route replace default dev wg0 table 201")]


def test_wg_quick_home_several_faults_at_once_one_run() -> None:
    """Before, a peer drift hid the routing repairs: a second run was needed."""
    f = wg_quick_home()
    narrowed_allowed_ips(f)
    rule_deleted(f)
    mtu_changed(f)
    assert [c[1] for c in changes(home_plans(f))] == [
        "sync wg0 peers with its config (AllowedIPs 192.168.2.1/32, not 0.0.0.0/0)",
        "set wg0's MTU back to 1420 (MTU 1300, not 1420)",
        "add policy rule from 192.168.2.2/32 table 201"]


def test_wg_quick_home_address_added_by_hand_is_removed() -> None:
    f = wg_quick_home()
    wg0 = next(a for a in f.addrs if a["ifname"] == "wg0")
    wg0["addr_info"].append({"family": "inet", "local": "10.9.9.9", "prefixlen": 32})
    assert changes(home_plans(f)) == [
        ("wireguard", "remove address 10.9.9.9/32 from wg0",
         "ip -4 address del 10.9.9.9/32 dev wg0")]


# ---------------------------------------------------------------------------- NetworkManager
@pytest.mark.parametrize(("fault", "why"), [
    *WG_FAULTS, (mtu_changed, "MTU 1300, not 1420")],
    ids=[*(f.__name__ for f, _ in WG_FAULTS), "mtu_changed"])
def test_networkmanager_link_drift_reactivates_the_profile(
        fault: Callable[[HostFacts], None], why: str) -> None:
    """Peers and MTU are the link's own configuration, which activation sets from the
    profile; the profile itself is right, so nothing is imported or patched."""
    f = nm_home()
    fault(f)
    assert changes(home_plans(f)) == [("wireguard", f"re-activate wg0 ({why})",
                                       "nmcli connection up wg0")]


def test_networkmanager_routing_drift_is_reapplied_without_going_down() -> None:
    f = nm_home()
    rule_deleted(f)
    table_route_deleted(f)
    assert changes(home_plans(f)) == [(
        "wireguard", "reapply wg0's profile to the device (no rule from 192.168.2.2/32 table "
        "201; no default route via wg0 in table 201)", "nmcli device reapply wg0")]


def test_networkmanager_link_and_routing_drift_reactivate_once() -> None:
    f = nm_home()
    keepalive_removed(f)
    rule_deleted(f)
    assert changes(home_plans(f)) == [(
        "wireguard", "re-activate wg0 (keepalive off, not 25; no rule from 192.168.2.2/32 "
        "table 201)", "nmcli connection up wg0")]


def test_networkmanager_inactive_profile_is_activated() -> None:
    f = nm_home()
    f.wg = {}  # `nmcli connection down wg0`
    assert changes(home_plans(f)) == [("wireguard", "activate wg0 (it is not active)",
                                       "nmcli connection up wg0")]


def test_networkmanager_profile_peer_edited_is_reimported() -> None:
    """The profile's peer (its keyfile) narrowed while the import file is right."""
    f = nm_home()
    f.nm["peers"] = f.nm["peers"].replace("allowed-ips=0.0.0.0/0;", "allowed-ips=192.168.2.1/32;")
    summaries = [c[1] for c in changes(home_plans(f))]
    assert summaries[0] == ("import /etc/wireguard/wg0.conf into NetworkManager as wg0 (its "
                            "peer differs from the file)")
    assert summaries[-1] == "activate wg0"


def test_networkmanager_profile_peers_parse() -> None:
    assert networkmanager.profile_peers(nm_home().nm["peers"]) == [wglive.WantedPeer(
        VPS_PUB, frozenset({"0.0.0.0/0"}), f"{VPS_IP}:51821", 25)]
    assert networkmanager.profile_peers("") == []


# ---------------------------------------------------------------------------- firewalld, podman
def test_runtime_firewalld_port_removed_while_permanent_remains() -> None:
    f = nm_home()
    runtime = f.firewalld["runtime"]["public"]
    runtime["ports"] = [p for p in runtime["ports"] if p != "12345/udp"]
    fw = next(p for p in home_plans(f) if p.step == "firewall")
    assert [(c.summary, c.diff()) for c in fw.changes[1:]] == [
        ("open 12345/udp in zone public (runtime)",
         "+ firewall-cmd -q --zone=public --add-port=12345/udp")]
    assert fw.guard is not None  # a firewall command: under the dead man's switch


def game(f: HostFacts) -> dict:
    return f.users["gamer"]["containers"][0]


def test_container_stopped_is_started() -> None:
    f = nm_home()
    game(f)["State"] = "exited"
    assert changes(home_plans(f)) == [(
        "service:game", "start container tunnelops-game",
        "runuser -u gamer -- env XDG_RUNTIME_DIR=/run/user/$(id -u gamer) "
        "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$(id -u gamer)/bus HOME=\"$(getent "
        "passwd gamer | cut -d: -f6)\" sh -c 'cd; systemctl --user start "
        "tunnelops-game.service'")]


def test_container_recreated_by_hand_without_its_labels_is_replaced() -> None:
    f = nm_home()
    del game(f)["Labels"][podman_render.SPEC_LABEL]
    assert [c[1] for c in changes(home_plans(f))] == [
        "replace (its specification changed) container tunnelops-game (pasta)"]


def test_container_with_copied_labels_but_no_outbound_setting_is_replaced() -> None:
    """Its labels say it is ours and current; how it was created says otherwise."""
    f = nm_home()
    created = f.users["gamer"]["created"]["tunnelops-game"]
    created[:] = [a for a in created if not a.startswith("--network")]
    assert [c[1] for c in changes(home_plans(f))] == [
        "replace (its specification changed: created with --network (none), not "
        "pasta:--outbound,192.168.2.2) container tunnelops-game (pasta)"]
    f = nm_home()
    game(f)["Ports"] = game(f)["Ports"][:1]
    assert [c[1] for c in changes(home_plans(f))] == [
        "replace (its specification changed: publishes 12345->12345/udp) container "
        "tunnelops-game (pasta)"]


# ---------------------------------------------------------------------------- the VPS
def test_debian_vps_live_peer_listen_port_and_mtu() -> None:
    f = recorded("debian-vps-converged")
    peer(f)["allowed_ips"] = ["192.168.2.0/24"]
    f.wg["listen_port"] = 51999
    mtu_changed(f)
    assert changes(vps_plans(f)) == [
        ("wireguard", "sync wg0 peers with its config (AllowedIPs 192.168.2.0/24, not "
                      "192.168.2.2/32; listen port 51999, not 51821)", SYNC),
        ("wireguard", "set wg0's MTU back to 1420 (MTU 1300, not 1420)",
         "ip link set dev wg0 mtu 1420")]


def test_vps_peer_endpoint_is_left_to_roaming() -> None:
    """The VPS's config gives home's peer no endpoint (home is behind NAT): whatever the
    VPS learned is not drift."""
    f = recorded("debian-vps-converged")
    peer(f)["endpoint"] = "198.51.100.99:1234"
    assert changes(vps_plans(f)) == []


def alpine(fault: Callable[[HostFacts], None] | None = None) -> list[StepPlan]:
    f = recorded("alpine-vps-converged")
    if fault:
        fault(f)
    return vps_plans(f, SITE)


def test_alpine_ifupdown_live_drift_fixed_without_ifdown() -> None:
    assert changes(alpine()) == []
    plans = alpine(lambda f: (narrowed_allowed_ips(f), mtu_changed(f)))
    wg = next(p for p in plans if p.step == "wireguard")
    assert [(c.summary, c.shell()) for c in wg.changes] == [
        ("sync wg0 with /etc/wireguard/wg0.conf (AllowedIPs 192.168.2.1/32, not "
         "192.168.2.2/32)", "wg syncconf wg0 /etc/wireguard/wg0.conf"),
        ("set wg0's MTU back to 1420 (MTU 1300, not 1420)", "ip link set dev wg0 mtu 1420")]
    assert "ifdown" not in "".join(c.shell() for c in wg.changes) + "".join(wg.post)
    assert wg.post == [ifupdown_backend.readback(
        Ctx(SITE, "vps", HostFacts()))]


def test_alpine_ifupdown_downed_link_is_set_up() -> None:
    def down(f: HostFacts) -> None:
        f.wg["link"]["flags"] = ["POINTOPOINT", "NOARP"]

    wg = next(p for p in alpine(down) if p.step == "wireguard")
    assert [(c.summary, c.shell()) for c in wg.changes] == [
        ("bring wg0 up (it is down)", "ip link set dev wg0 up")]


def test_alpine_ifupdown_mtu_from_the_inventory() -> None:
    site = dataclasses.replace(SITE, tunnel=dataclasses.replace(SITE.tunnel, mtu=1380))
    f = recorded("alpine-vps-converged")
    wg = next(p for p in vps_plans(f, site) if p.step == "wireguard")
    assert [c.summary for c in wg.changes] == [
        "update /etc/network/interfaces.d/wg0",
        "set wg0's MTU back to 1380 (MTU 1420, not 1380)"]


# ---------------------------------------------------------------------------- ifup's readback
# `ip` as a shell function: it wins over BusyBox's own applet (which busybox sh prefers to
# anything on PATH) and prints what iproute2's and BusyBox's `ip -o` print
FAKE_IP = """ip() {
  case "$*" in
    "-4 -o addr show dev wg0") [ -n "$ADDR" ] &&
      echo "4: wg0    inet $ADDR scope global wg0\\       valid_lft forever";;
    "-o link show dev wg0") echo "4: wg0: <$FLAGS> mtu 1420 qdisc noqueue state UNKNOWN";;
    *) return 1;;
  esac
}
"""


@pytest.mark.parametrize("shell", SHELLS, ids=[" ".join(s) for s in SHELLS])
@pytest.mark.parametrize(("addr", "flags", "ok"), [
    ("192.168.2.1/24", "POINTOPOINT,NOARP,UP,LOWER_UP", True),
    ("192.168.2.1/24", "POINTOPOINT,NOARP", False),  # created, never set up
    ("192.168.2.1/32", "POINTOPOINT,NOARP,UP,LOWER_UP", False),  # the seed's missing prefix
    ("", "POINTOPOINT,NOARP,UP,LOWER_UP", False),
])
def test_ifup_result_is_read_back(shell: list[str], tmp_path: Path, addr: str, flags: str,
                                  ok: bool) -> None:
    """ifupdown-ng's ifup before 0.12 exits 0 whatever happened: the step's status is the
    interface's, read back with `ip` (BusyBox's or iproute2's -o output)."""
    script = FAKE_IP + ifupdown_backend.readback(Ctx(SITE, "vps", HostFacts()))
    res = subprocess.run([*shell, "-c", script], capture_output=True, text=True, timeout=10,
                         env={"PATH": "/usr/bin:/bin", "ADDR": addr, "FLAGS": flags},
                         check=False, cwd=tmp_path)
    assert (res.returncode == 0) is ok, res.stderr
    if not ok:
        assert res.stderr.strip() == (
            "wg0 is not up with 192.168.2.1/24 (ifupdown-ng's ifup before 0.12 exits 0 even "
            "when it failed): run `ifup -v wg0` on the VPS to see why")


def test_peer_drift_reads_the_config_as_wg_syncconf_does() -> None:
    conf = home_wg_quick(SITE.tunnel, VPS_PUB, "vps.example.net")  # a host name endpoint
    live = copy.deepcopy(wg_quick_home().wg)
    peer_ = live["peers"][0]
    peer_["endpoint"] = "198.51.100.1:51821"
    assert wglive.peer_drift(conf, live) == []  # a name resolves to anything: not compared
    assert wglive.peer_drift(conf, {}) == []  # no interface: the caller brings it up
    live["peers"].append({**peer_, "public_key": HOME_PUB})
    assert wglive.peer_drift(conf, live) == ["peer ZCgYP8TZ… is not in the config"]


# ---------------------------------------------------------------------------- awall
def test_awall_live_rules_flushed_are_activated_again() -> None:
    """The policy files and the enabled list are right, the live rules are not (`iptables
    -F`, a reboot without the iptables service...): activate again, under the guard."""
    def flushed(f: HostFacts) -> None:
        f.awall_live = "*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\nCOMMIT"

    fw = next(p for p in alpine(flushed) if p.step == "firewall")
    assert [c.summary for c in fw.changes] == ["awall activate (the live rules drifted)"]
    assert fw.changes[0].shell().startswith("awall activate --force\n")
    assert fw.changes[0].shell().endswith(f"{awall_backend.LIVE} > {awall_backend.APPLIED}")
    assert fw.guard is not None


def test_awall_guard_restores_what_activation_changed_also_for_the_next_boot() -> None:
    """`awall activate --force` saves the rules to /etc/iptables and /etc/ipset.d for the
    iptables and ipset services: restoring the live tables alone would bring a lock-out
    back at the next reboot."""
    g = awall_backend.guard(20)
    for d in ("/etc/awall", "/etc/iptables", "/etc/ipset.d"):
        assert f"cp -a {d} {awall_backend.ROLLBACK}/" in g.snapshot
    assert "rm -rf /etc/iptables; [ ! -d /var/lib/tunnelops/awall.rollback/iptables ] || " \
           "cp -a /var/lib/tunnelops/awall.rollback/iptables /etc/iptables" in g.restore
    assert "rm -rf /etc/ipset.d; [ ! -d /var/lib/tunnelops/awall.rollback/ipset.d ] || " \
           "cp -a /var/lib/tunnelops/awall.rollback/ipset.d /etc/ipset.d" in g.restore
    # sets before the rules that use them; the record goes, so the next run re-activates
    assert g.restore.index("ipset restore") < g.restore.index("iptables-restore")
    assert g.restore.endswith(f"rm -f {awall_backend.APPLIED}")


def test_alpine_teardown_never_runs_ifdown() -> None:
    """Teardown of an Alpine VPS whose stanza still says `requires eth0` (the seed's, an
    older tunnelops'): ifdown wg0 could take eth0 with it; the link is deleted instead."""
    f = recorded("alpine-vps-converged")
    stanza = "/etc/network/interfaces.d/wg0"
    f.files[stanza] = dataclasses.replace(
        f.files[stanza], content=f.files[stanza].content.replace(
            "\tuse wireguard", "\trequires eth0\n\tuse wireguard"))
    plans = teardown.plan(Ctx(SITE, "vps", f))
    wg = next(p for p in plans if p.step == "wireguard")
    assert [(c.summary, c.shell()) for c in wg.changes] == [
        ("take wg0 down", "wg-quick down wg0 2>/dev/null || ip link del wg0")]
    assert "ifdown" not in "".join(c.shell() for p in plans for c in p.changes)
