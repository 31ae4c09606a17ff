"""What the plan refuses before any change, from recorded facts (issue 16): a tunnel that
would replace something of the user's, or swallow the route back to the laptop."""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest

from tests.unit.facts import generate
from tests.unit.facts.generate import SITE
from tunnelops import facts
from tunnelops.facts import FileFact, HostFacts
from tunnelops.model.tunnel import Tunnel
from tunnelops.probes import Listening
from tunnelops.steps import safety
from tunnelops.steps.context import Ctx, PlanError


def recorded(name: str) -> HostFacts:
    return generate.facts(name)


def ctx(f: HostFacts, **tunnel: object) -> Ctx:
    site = dataclasses.replace(SITE, tunnel=Tunnel.from_values(**tunnel)) if tunnel else SITE
    return Ctx(site, "home", f)


@pytest.mark.parametrize("name", sorted(generate.HOSTS))
def test_recorded_hosts_pass(name: str) -> None:
    """The control: fresh and converged hosts (tunnelops's own wg0 included) are fine, for
    the site whose facts they are (its peers' keys as they are)."""
    host = generate.HOSTS[name]()
    if host.role == "vps":
        keys = generate.FLEET_KEYS if host.site is generate.FLEET else {"home": generate.HOME_PUB}
        safety.check(Ctx(host.site, "vps", recorded(name), peer_keys=keys))
    else:
        safety.check(Ctx(host.site, "home", recorded(name), peer_public_key=generate.VPS_PUB))


def test_an_existing_interface_that_is_not_ours_is_refused() -> None:
    """`interface = "enp1s0"` was accepted and the uplink deleted: now refused."""
    f = recorded("fedora-home-fresh")
    f.wg = {"link": {"ifname": "enp1s0", "linkinfo": {"info_kind": "veth"}}}
    with pytest.raises(PlanError) as e:
        safety.check(ctx(f, interface="enp1s0"))
    assert str(e.value) == ("interface enp1s0 already exists and is not tunnelops's (a veth "
                            "link): set [tunnel] interface to a free name, e.g. wg1")


def test_a_wireguard_config_of_the_user_is_never_overwritten() -> None:
    f = recorded("debian-vps-fresh")
    f.files["/etc/wireguard/wg0.conf"] = FileFact(
        "/etc/wireguard/wg0.conf", "600", "root",
        "[Interface]\nPrivateKey = @TUNNELOPS_OTHER_PRIVATE_KEY@\nListenPort = 51820\n")
    with pytest.raises(PlanError, match=r"^/etc/wireguard/wg0.conf exists and was not written "
                                        r"by tunnelops .*: set \[tunnel\] interface to a free "
                                        r"name, e.g. wg1, or move the file away$"):
        safety.check(ctx(f))
    # ours (the marker of every file tunnelops writes) is fine
    conv = recorded("debian-vps-converged")
    assert "Managed by tunnelops" in conv.files["/etc/wireguard/wg0.conf"].content
    safety.check(ctx(conv))


def test_a_networkmanager_profile_of_the_user_is_refused() -> None:
    f = recorded("fedora-home-fresh")
    f.nm = {**f.nm, "exists": True}
    with pytest.raises(PlanError, match="a NetworkManager connection wg0 exists and is not "
                                        "tunnelops's"):
        safety.check(ctx(f))


def test_a_tunnel_subnet_overlapping_the_home_lan_is_refused() -> None:
    """A home LAN 192.168.1.0/24 (the recorded Fedora's) and a tunnel in it: home's replies
    to the laptop would follow table 201 into the tunnel."""
    f = recorded("fedora-home-fresh")
    with pytest.raises(PlanError) as e:
        safety.check(ctx(f, subnet="192.168.1.0/24"))
    assert str(e.value) == (
        "the tunnel subnet 192.168.1.0/24 overlaps enp1s0 192.168.1.50/24 on this host: "
        "traffic to it (SSH replies included) would go into the tunnel; set [tunnel] subnet "
        "to a free range, e.g. subnet = \"10.213.7.0/24\"")
    # a wider tunnel subnet that contains the LAN, and a route alone, count too
    with pytest.raises(PlanError, match="overlaps enp1s0"):
        safety.check(ctx(f, subnet="192.168.0.0/16"))
    g = copy.deepcopy(f)
    g.addrs = [a for a in g.addrs if a["ifname"] == "lo"]
    with pytest.raises(PlanError, match=re.escape("overlaps a route to 192.168.1.0/24 via "
                                                  "enp1s0")):
        safety.check(ctx(g, subnet="192.168.1.0/25"))
    safety.check(ctx(f, subnet="10.213.7.0/24"))  # the suggestion is free


def test_a_subnet_alone_brings_its_own_addresses() -> None:
    t = Tunnel.from_values(subnet="10.213.7.0/24")
    assert (str(t.vps_address), str(t.home_address)) == ("10.213.7.1", "10.213.7.2")
    assert Tunnel.from_values() == Tunnel()


SS = ("udp   UNCONN 0      0            0.0.0.0:12345      0.0.0.0:*    "
      'users:(("{proc}",pid=812,fd=5))\n'
      "tcp   LISTEN 0      128          0.0.0.0:22         0.0.0.0:*    "
      'users:(("sshd",pid=90,fd=3))\n')


def test_a_service_port_taken_by_another_process_is_refused() -> None:
    """A port already taken at home left the container `Created` after the VPS forwarded it
    (issue 13): now refused before any change, naming the process."""
    f = recorded("fedora-home-fresh")
    f.listening = Listening().parse(SS.format(proc="dnsmasq"))
    with pytest.raises(PlanError) as e:
        safety.check(ctx(f))
    assert str(e.value) == ("port 12345/udp of service 'game' is taken at home by dnsmasq "
                            "(pid 812): stop it, or give the service another port")
    # held by the service's own running container's forwarder: fine
    conv = recorded("fedora-home-converged")
    conv.listening = Listening().parse(SS.format(proc="rootlessport"))
    safety.check(ctx(conv))
    conv.users["gamer"]["containers"][0]["State"] = "exited"  # then it is someone else's
    with pytest.raises(PlanError, match="taken at home by rootlessport"):
        safety.check(ctx(conv))


def test_more_ports_than_rootless_podman_can_hold_are_refused() -> None:
    """add-port 30000-49999/tcp failed in rootlessport ("too many open files") after the old
    container was gone: refused before anything changes, with the limit stated."""
    from tunnelops.model.ports import PortSpec
    from tunnelops.model.site import Site
    f = recorded("fedora-home-converged")
    f.users["gamer"]["nofile"] = "20000"
    big: Site = SITE.with_port_added(PortSpec.parse("30000-49999/tcp"), "game")
    with pytest.raises(PlanError) as e:
        safety.check(Ctx(big, "home", f))
    assert str(e.value) == ("service 'game' publishes 20002 ports: rootless Podman holds an "
                            "open file per port and user gamer may hold 20000 (ulimit -Hn): "
                            "publish at most 19744, or raise the user's nofile limit")
    ok = SITE.with_port_added(PortSpec.parse("30000-39999/tcp"), "game")
    safety.check(Ctx(ok, "home", f))  # 10002 ports: within the limit


def test_ss_lines_parse() -> None:
    got = Listening().parse(SS.format(proc="x") + "garbage\n"
                                "udp UNCONN 0 0 [::]:51821 [::]:*\n")
    assert got == [facts.Listener("udp", 12345, "x", 812), facts.Listener("tcp", 22, "sshd", 90),
                   facts.Listener("udp", 51821, "?", None)]
