"""verify beyond the check cases (test_checks.py): the chain's shape, the scripts it sends,
what a container's network and ports say, the MTU search as shell, the report and table."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from tests.unit.checks import cases
from tunnelops import verify
from tunnelops.backends.podman import published
from tunnelops.model.ports import PortSpec
from tunnelops.probes import MARK, Batch, UdpCounters
from tunnelops.probes.traffic import http_get
from tunnelops.probes.wireguard import PING_MIN, PMTU
from tunnelops.render import podman as podman_render
from tunnelops.verify import HostRun, Row, VerifyReport
from tunnelops.verify import client as client_check
from tunnelops.verify import view as verify_view
from tunnelops.verify.container import container_network, outbound_ok
from tunnelops.verify.laptop import MAX_PORTS_PER_SPEC, probe_ports
from tunnelops.verify.runner import LINKS, batches_for

SITE = cases.site()
URL = "http://198.51.100.1:8080/"
RECORDED = cases.RECORDED


def batches(site=SITE, url: str = URL) -> dict[str, Batch]:
    ctx = verify.Ctx(site, url, "tunnelops_probe_ab12")
    return batches_for(ctx, verify.chain(ctx))


def report(case: dict | None = None) -> VerifyReport:
    return VerifyReport(SITE.name, cases.rows(case or {}))


# ---------------------------------------------------------------- the chain
def test_the_chain_is_the_links_checks_in_their_order() -> None:
    """The links' own order (runner.LINKS, each module's checks()), dependencies already
    first: a new check is listed by its link alone."""
    ctx = verify.Ctx(SITE, URL)
    ids = [c.id for c in verify.chain(ctx)]
    assert ids == [c.id for link in LINKS for c in link.checks(ctx)]
    assert ids[:4] == ["ssh.vps", "ssh.home", "wg.vps", "wg.home"] and ids[-1] == "egress.game"
    assert [i for i in ids if i.startswith("vps.port.")] == [
        "vps.port.12345/udp", "vps.port.12346/tcp"]


def test_dependencies_come_first_and_exist() -> None:
    ctx = verify.Ctx(SITE, URL)
    order = verify.chain(ctx)
    for i, c in enumerate(order):
        for d in c.depends(ctx):
            assert d in order[:i], f"{c.id} depends on {d.id}, which is not before it"


def test_one_script_per_host_reads_every_probe_once() -> None:
    for host, batch in batches().items():
        keys = [p.key for p in batch]
        assert len(keys) == len(set(keys)), host
    # the dump and the clock after the ping, whose traffic starts a handshake if none is recent
    jobs = [[p.key for p in job] for job in batches()["home"].jobs]
    assert ["ping 192.168.2.1", "wg wg0", "now"] in jobs


# ---------------------------------------------------------------- the scripts
def test_scripts_are_valid_shell() -> None:
    for batch in batches(url="https://api.ipify.org/?format=text").values():
        proc = subprocess.run(["sh", "-n"], input=batch.script(), text=True,
                              capture_output=True)
        assert proc.returncode == 0, proc.stderr


def test_private_keys_never_travel() -> None:
    """The dump's first field (the private key) is replaced on the host, by awk."""
    for host in ("vps", "home"):
        text = (RECORDED / f"{host}.txt").read_text()
        first = text.split(f"{MARK} wg wg0\n", 1)[1].splitlines()[0]
        assert first.split("\t")[0] == "-"
    redact = "wg show wg0 dump | awk -F'\\t' 'NR==1{$1=\"-\"}1' OFS='\\t'"
    for batch in batches().values():
        script = batch.script()
        assert redact in script
        assert "private" not in script and ".key" not in script


def test_the_recorded_outputs_are_complete_and_a_cut_one_is_not() -> None:
    b = batches()["vps"]
    text = (RECORDED / "vps.txt").read_text()
    assert b.parse(text).complete
    assert not b.parse(text.split(f"{MARK} nft")[0]).complete


def test_home_script_counts_udp_on_the_tunnel_and_asks_from_the_container() -> None:
    script = batches()["home"].script()
    assert 'iifname "wg0" udp dport 12345 counter comment "pre 12345/udp"' in script
    assert "type filter hook input priority 100" in script
    assert "nft delete table inet tunnelops_probe_ab12" in script  # on exit, whatever happens
    assert "nsenter -t \"$pid\" -n curl -sS -m 3 --connect-timeout 2 $r " + URL in script
    # a host name is resolved by the host: the container's namespace has no resolver of its own
    named = http_get("https://api.ipify.org")
    assert "getent ahostsv4 api.ipify.org" in named and "--resolve api.ipify.org:443:$a" in named
    assert http_get("http://[::1]:8080/").startswith("r=; ")  # an address: nothing to resolve


def test_no_udp_ports_no_probe_table() -> None:
    site = dataclasses.replace(SITE, services=(dataclasses.replace(
        SITE.services[0], ports=(PortSpec.parse("12346/tcp"),)),))
    assert not any(isinstance(p, UdpCounters) for p in batches(site)["home"])
    assert "tunnelops_probe" not in batches(site)["home"].script()


@pytest.mark.parametrize("limit", [1500, 1420, 1337, 600, 548, 400])
def test_path_mtu_search(limit: int, tmp_path: Path) -> None:
    """The host-side search, with a `ping` that passes packets up to LIMIT bytes."""
    log = tmp_path / "pings"
    fake = (f"ping() {{ for a; do s=$a; done; for a; do case $prev in -s) s=$a;; esac; "
            f"prev=$a; done; echo $s >> {log}; [ $((s + 28)) -le {limit} ]; }}\n")
    script = (f"T=$(mktemp -d)\n{PMTU}\n{fake}pmtu 192.0.2.1 1500\nrm -rf \"$T\"\n")
    out = subprocess.run(["sh"], input=script, text=True, capture_output=True, timeout=20)
    assert out.stdout.strip() == str(limit if limit >= PING_MIN else 0)
    pings = log.read_text().split()
    assert len(pings) <= 2 + 3 * 15  # three rounds of at most 15 parallel pings


def test_probe_ports_spread_over_big_ranges() -> None:
    assert probe_ports(PortSpec.parse("27015-27020/udp")) == list(range(27015, 27021))
    big = probe_ports(PortSpec.parse("10000-20000/udp"))
    assert len(big) == MAX_PORTS_PER_SPEC and big[0] == 10000 and big[-1] == 20000


def test_conntrack_waits_for_the_probes_then_lists_them(tmp_path: Path) -> None:
    """The VPS's section run by sh with a stand-in `conntrack`: it prints only the entries of
    the probed ports to the VPS's public address, and waits for a missing one at most
    WAIT_POLLS x 0.1 s."""
    (tmp_path / "conntrack").write_text(
        "#!/bin/sh\n"
        "echo 'tcp      6 117 TIME_WAIT src=203.0.113.2 dst=198.51.100.60 sport=2 "
        "dport=12346 src=192.168.2.2 dst=203.0.113.2 sport=12346 dport=2 [ASSURED] use=1'\n"
        "echo 'tcp      6 117 ESTABLISHED src=203.0.113.9 dst=198.51.100.60 sport=3 "
        "dport=22 src=198.51.100.60 dst=203.0.113.9 sport=22 dport=3 [ASSURED] use=1'\n"
        "[ -e $0.udp ] && echo 'udp      17 29 src=198.51.100.1 dst=198.51.100.60 sport=4 "
        "dport=12345 src=192.168.2.2 dst=198.51.100.1 sport=12345 dport=4 use=1'\n"
        "exit 0\n")
    (tmp_path / "conntrack").chmod(0o755)
    probe = client_check.conntrack(verify.Ctx(SITE, URL))
    assert probe is not None

    def run() -> tuple[float, dict]:
        start = time.monotonic()
        out = subprocess.run(["sh", "-c", probe.shell()], capture_output=True, text=True,
                             timeout=20, check=True,
                             env={"PATH": f"{tmp_path}:/usr/bin:/bin"}).stdout
        return time.monotonic() - start, probe.parse(out)

    took, seen = run()  # no UDP entry: it waits, then gives what it has
    assert 2.0 < took < 6, took
    assert seen == {"source": "conntrack", "seen": {"12346/tcp": ["203.0.113.2"]}}
    (tmp_path / "conntrack.udp").write_text("")
    took, seen = run()
    assert took < 1.0, took
    assert seen == {"source": "conntrack", "seen": {"12345/udp": ["198.51.100.1"],
                                                    "12346/tcp": ["203.0.113.2"]}}
    no_ip = dataclasses.replace(SITE, vps=dataclasses.replace(SITE.vps, public_ip=None))
    assert client_check.conntrack(verify.Ctx(no_ip, URL)) is None


# ---------------------------------------------------------------- containers
@pytest.mark.parametrize("kind", podman_render.NETWORK_KINDS)
def test_the_network_tunnelops_renders_counts_as_outbound(kind: str) -> None:
    assert outbound_ok(podman_render.network_option(kind, SITE.tunnel), SITE)


@pytest.mark.parametrize("network,ok", [
    ("slirp4netns:outbound_addr=192.168.2.2", True),
    ("slirp4netns:port_handler=slirp4netns,outbound_addr=wg0", True),
    ("pasta:-o,192.168.2.2", True),
    ("pasta:--outbound-if4,wg0", True),
    ("slirp4netns", False), ("slirp4netns:outbound_addr=eth0", False), ("pasta", False),
    ("host", False), ("bridge", False), ("", False)])
def test_outbound_settings(network: str, ok: bool) -> None:
    assert outbound_ok(network, SITE) is ok


def test_container_network_from_create_command() -> None:
    info = {"created": {"c": ["podman", "run", "--network=pasta:-o,192.168.2.2"]},
            "networks": {"c": "pasta"}}
    assert container_network(info, "c") == "pasta:-o,192.168.2.2"
    assert container_network({"created": {}, "networks": {"c": "slirp4netns"}}, "c") == \
        "slirp4netns"


def test_published_ports_with_ranges() -> None:
    """As `podman ps` shows them: a range is one entry with its length."""
    c = {"Ports": [{"host_ip": "", "container_port": 27015, "host_port": 27015, "range": 2,
                    "protocol": "udp"},
                   {"host_ip": "", "container_port": 80, "host_port": 8080, "range": 1,
                    "protocol": "tcp"}]}
    assert published(c) == {("udp", 27015, 27015), ("udp", 27016, 27016), ("tcp", 8080, 80)}


# ---------------------------------------------------------------- report and UI
def test_json_report() -> None:
    r = report({"patches": [{"host": "home", "probe": "rules", "set": []}]})
    r.hosts = {"vps": HostRun("prba-vps", 1, 1, 0.4), "home": HostRun("prba-home", 1, 1, 0.6)}
    data = json.loads(r.to_json())
    assert data["ok"] is False and data["first_failure"] == "home.rule_from"
    assert data["round_trips"] == 2
    row = next(c for c in data["checks"] if c["id"] == "home.rule_from")
    assert set(row) == {"id", "status", "check", "measured", "hint"}
    assert row["status"] == "fail"
    assert Row("x", "x", None, "m").status == "skip"


def test_table_view() -> None:
    r = report()
    r.hosts = {"vps": HostRun("prba-vps", 1, 1), "home": HostRun("h", 1, 1)}
    r.seconds = 0.9
    console = Console(record=True, width=160)
    verify_view.show(console, r)
    text = console.export_text()
    assert "✓ │ vps forwards 12345/udp to home" in text
    assert "hint" not in text.splitlines()[2]  # no hint column when all pass
    assert text.strip().endswith(f"verify prba: {len(r.checks)} passed, 0 failed · round "
                                 "trips: vps 1, home 1 · 0.9s")
    bad = report({"patches": [{"host": "home", "probe": "rules", "set": []}]})
    console = Console(record=True, width=200)
    verify_view.show(console, bad)
    text = console.export_text()
    assert "hint" in text and "✗ │ home rule from 192.168.2.2 → table 201" in text
    assert "first broken link: home rule from 192.168.2.2 → table 201 (home.rule_from)" in text
