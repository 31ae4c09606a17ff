"""`status` (issue 11) from recorded probe output: the lab's two-home hub after verify's
probes (its WireGuard dump and the port counters of its site table, probes/cases/), each home
as podman lists its container. Pure: what the hosts printed in, the numbers out."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from tunnelops import commands
from tunnelops.inventory.new import new_site
from tunnelops.model.hosts import HomeSpec, HostRef
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.probes import Batch, Clock, Containers, Readings, RestartCounts, SetCounters, WgDump
from tunnelops.status import home_probes, hub_probes, site_status
from tunnelops.status.report import HANDSHAKE_MAX_AGE, StatusReport
from tunnelops.status.runner import plan

CASES = Path(__file__).parent / "probes" / "cases"
NOW = 1796205600
HOME_KEY, HOME2_KEY = "Cay1Qp4sHOME" + "A" * 31, "SCUj1uyuHOME2" + "A" * 30
SITE = new_site(
    "flt3b", "flt3b-vps",
    (HomeSpec(HostRef("flt3b-home")), HomeSpec(HostRef("flt3b-home2"), name="home2")),
    services=(Service("game", "localhost/tunnelops-echo:latest", (
        PortSpec.parse("12345/udp"), PortSpec.parse("12346/tcp")), "gamer", home="home"),
              Service("voice", "localhost/tunnelops-echo:latest", (
                  PortSpec.parse("12347/udp"), PortSpec.parse("12348/tcp")), "gamer",
                      home="home2")))


def recorded(kind: str, host: str) -> str:
    return next(c["output"] for c in json.loads((CASES / f"{kind}.json").read_text())
                if c["host"].startswith(host))


def wg_dump(*peers: tuple[str, str, str, int]) -> str:
    """probes.WgDump's output: the interface line, then a line per peer."""
    return "-\tVPSKEY=\t51821\toff\n" + "".join(
        f"{key}\t(none)\t{ep}\t{ips}\t{hs}\t15672\t14504\toff\n" for key, ep, ips, hs in peers)


def hub(*peers: tuple[str, str, str, int], counters: bool = True) -> Readings:
    r = Readings({})
    r.set(Clock(), NOW)
    r.set(WgDump("wg0"), WgDump("wg0").parse(wg_dump(*peers)))
    text = recorded("set_counters", "lab (Debian 12) vps") if counters else ""
    r.set(SetCounters("inet tunnelops-wg0"), SetCounters("inet tunnelops-wg0").parse(text))
    return r


def home(state: str = "running", started: int = NOW - 284) -> Readings:
    listing = [{"Names": ["tunnelops-game"], "State": state, "StartedAt": started,
                "Labels": {"tunnelops.service": "game"}},
               {"Names": ["tunnelops-voice"], "State": state, "StartedAt": started,
                "Labels": {"tunnelops.service": "voice"}}]
    r = Readings({})
    r.set(Clock(), NOW)
    r.set(Containers("gamer"), Containers("gamer").parse(json.dumps(listing)))
    r.set(RestartCounts("gamer"), RestartCounts("gamer").parse(
        recorded("restarts", "lab (Debian 12) home") + "\ntunnelops-voice 3\n"))
    return r


PEERS = ((HOME_KEY, "203.0.113.2:58639", "192.168.2.2/32", NOW - 12),
         (HOME2_KEY, "203.0.113.2:50174", "192.168.2.3/32", NOW - 40))


def test_the_numbers_of_a_healthy_two_home_site() -> None:
    s = site_status(SITE, hub(*PEERS), {"home": home(), "home2": home()})
    assert s.ok and s.problems() == []
    report = json.loads(StatusReport([s]).to_json())
    assert report["ok"] is True
    assert report["sites"][0]["tunnels"] == [
        {"home": "home", "handshake_age_s": 12, "rx_bytes": 15672, "tx_bytes": 14504,
         "endpoint": "203.0.113.2:58639"},
        {"home": "home2", "handshake_age_s": 40, "rx_bytes": 15672, "tx_bytes": 14504,
         "endpoint": "203.0.113.2:50174"}]
    # the VPS's counters, each port's element (verify's probes went through them)
    assert report["sites"][0]["services"] == [
        {"name": "game", "home": "home", "state": "running", "uptime_s": 284, "restarts": 0,
         "ports": [{"port": "12345/udp", "packets": 17, "bytes": 765},
                   {"port": "12346/tcp", "packets": 12, "bytes": 656}]},
        {"name": "voice", "home": "home2", "state": "running", "uptime_s": 284,
         "restarts": 3,
         "ports": [{"port": "12347/udp", "packets": 17, "bytes": 765},
                   {"port": "12348/tcp", "packets": 12, "bytes": 656}]}]


def test_a_stale_handshake_or_a_stopped_service_is_not_ok() -> None:
    stale = ((HOME_KEY, "203.0.113.2:58639", "192.168.2.2/32", NOW - 12),
             (HOME2_KEY, "203.0.113.2:50174", "192.168.2.3/32", NOW - HANDSHAKE_MAX_AGE - 1))
    s = site_status(SITE, hub(*stale), {"home": home(), "home2": home()})
    assert not s.ok and s.problems() == ["tunnel of home2: last handshake 181 s ago"]
    never = ((HOME_KEY, "(none)", "192.168.2.2/32", 0), PEERS[1])
    s = site_status(SITE, hub(*never), {"home": home("exited", 0), "home2": home()})
    assert s.problems() == ["tunnel of home: no handshake yet", "service game (home): exited"]
    assert s.tunnels[0].endpoint is None and s.services[0].uptime_s is None
    assert not StatusReport([s])


def test_a_host_not_read_is_unknown_and_named() -> None:
    s = site_status(SITE, hub(*PEERS, counters=False), {"home": home(), "home2": None},
                    {"flt3b-home2": "flt3b-home2: connection timed out"})
    assert [(v.name, v.state, v.restarts) for v in s.services] == [
        ("game", "running", 0), ("voice", "unknown", None)]
    # no counting table (awall, firewalld): the ports' numbers are null, not zero
    assert [(p.packets, p.bytes) for p in s.services[0].ports] == [(None, None), (None, None)]
    assert s.problems() == ["flt3b-home2: flt3b-home2: connection timed out",
                            "service voice (home2): unknown"]
    # the hub not read: the tunnels have no numbers
    s = site_status(SITE, None, {"home": home(), "home2": home()}, {"flt3b-vps": "refused"})
    assert [t.handshake_age_s for t in s.tunnels] == [None, None] and not s.ok


def test_one_script_per_host_whatever_the_number_of_sites() -> None:
    """Two sites on one VPS (and one home): the VPS is read once, for both."""
    other = new_site("friend", "flt3b-vps", "flt3b-home", interface="wg1",
                     listen_port=51822, subnet="192.168.3.0/24")
    hosts = plan([SITE, other])
    assert sorted(k[0] for k in hosts) == ["flt3b-home", "flt3b-home2", "flt3b-vps"]
    vps = [p.key for p in hosts[("flt3b-vps", None, None)]]
    assert vps == [p.key for p in hub_probes(SITE)] + [
        "wg wg1", "set_counters inet tunnelops-wg1"]
    assert [p.key for p in home_probes(SITE, SITE.homes[1])] == [
        "now", "containers gamer", "restarts gamer"]
    # no lock, nothing written: the script only reads
    script = Batch(hosts[("flt3b-vps", None, None)]).script()
    assert "flock" not in script and " > /" not in script


def test_bad_flags_are_one_line_before_any_ssh(tmp_path: Path) -> None:
    opts = commands.Options(inventory_dir=tmp_path, site="lab",
                            console=Console(file=io.StringIO()))
    with pytest.raises(commands.UsageError, match=r"^--all and --site both name the sites: "
                                                  r"give one of them$"):
        commands.status(opts, all_sites=True)
    opts.site = None
    with pytest.raises(commands.UsageError, match=r"^no site in .*: run .*bootstrap"):
        commands.status(opts, all_sites=True)
