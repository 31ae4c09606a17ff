"""Issue #4, "only the rules for what changed are touched", on the VPS's nftables, for real:
`inv add-port` / `inv remove-port` change one element of a service port set (svc_udp_home) and
nothing else. The proof is what a reload of `table inet tunnelops-wg0` would change:

- the table's handle (a reload deletes and re-creates the table, so it gets a new handle;
  rule handles alone prove nothing: nft gives the new table's rules the same ones again),
- the handles of its sets, chains and rules,
- the record of the last load (/var/lib/tunnelops/wg0/nft.applied: rewritten by every load),
- the same of the VPS's own table `inet tunnelops-host` (the filter its sites share), and an
  element of its SSH rate limiter's set ssh_new4, put there by hand.

The host's table is never deleted by a load (its file adds what is missing and replaces the
rules): a rule of it deleted by hand comes back with its sets' elements kept, the SSH
limiter's memory included; a site's table reloads by itself.

And the element does its job: UDP echo through the VPS works on the added port, stops after
remove-port, and the existing ports keep working throughout.

Own instance "labi" (index 13), its inventory in a temporary directory, brought up fresh and
bootstrapped once for the module, taken down at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.conftest import own_lab, slot
from tests.lab.labb_site import bootstrap, describe, inv, sh, summary, token, udp_echo, wait_until
from tunnelops.lab import Lab, Topology

pytestmark = pytest.mark.lab

LABI = Topology(*slot("labi", 13))
NEW_PORT = 12347
SENTINEL = "203.0.113.250"  # an address the SSH limiter "remembers", put there by hand


@pytest.fixture(scope="module")
def labi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    up = own_lab(LABI, tmp_path_factory.mktemp("inventory"))
    lab = next(up)
    try:
        report, out = bootstrap(LABI.name, lab.inventory_dir)
        assert report.ok, describe(report) + out[-2000:]
        yield lab
    finally:
        up.close()


def run_cli(lab: Lab, *args: str) -> str:
    # forget the SSH limiter's memory of the laptop (tests connect more often than people),
    # then remember the sentinel: only a reload of the table would forget it
    sh(lab, "vps", "nft flush set inet tunnelops-host ssh_new4 && nft add element inet "
                   f"tunnelops-host ssh_new4 '{{ {SENTINEL} timeout 10m }}'")
    res = inv(*args, "--site", LABI.name, inventory_dir=lab.inventory_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def vps_plan(lab: Lab, *args: str) -> dict[str, list[str]]:
    """What `inv ... --dry-run` says it would change on the VPS: step -> change summaries."""
    out = run_cli(lab, *args, "--dry-run")
    steps: dict[str, list[str]] = {}
    cur: list[str] | None = None
    for line in out.splitlines():
        if m := re.match(r"(vps|home) \S+ · (\S+)$", line.strip()):
            cur = steps.setdefault(m.group(2), []) if m.group(1) == "vps" else None
        elif cur is not None and line.startswith("  ~ "):
            cur.append(line[4:].strip())
        else:
            cur = None
    return steps


def snapshot(lab: Lab) -> dict[str, str]:
    # the sets' elements are looked at by themselves (the laptop's address comes and goes
    # in ssh_new4 as the tool connects): the rest is every handle of the table
    out = {}
    for name, state in (("table", "wg0"), ("host", "host")):
        table = sh(lab, "vps", f"nft -a list table inet tunnelops-{state}")
        out[name] = re.sub(r"\n\s*elements = \{[^}]*\}", "", table)
        record = f"/var/lib/tunnelops/{state}/nft.applied"
        out[f"{name} applied"] = sh(lab, "vps", f"sha256sum {record}; stat -c %Y {record}")
    return out


def svc_udp_home(lab: Lab) -> str:
    text = sh(lab, "vps", "nft list set inet tunnelops-wg0 svc_udp_home")
    m = re.search(r"elements = \{([^}]*)\}", text)
    # each element counts what it forwards (status reads it): its counter is state
    return re.sub(r" counter packets \d+ bytes \d+", "", " ".join(m.group(1).split())) \
        if m else ""


def echoes(lab: Lab, port: int) -> bool:
    t = token()
    return bool(re.fullmatch(rf"udp-echo port={port} peer=\S+ got={t}\n",
                             udp_echo(lab, port, t)))


def assert_untouched(lab: Lab, before: dict[str, str]) -> None:
    assert snapshot(lab) == before  # no load of either table since
    limiter = sh(lab, "vps", "nft list set inet tunnelops-host ssh_new4")
    assert SENTINEL in limiter, limiter


def test_add_port_adds_one_element_and_touches_nothing_else(labi: Lab) -> None:
    assert svc_udp_home(labi) == '12345 comment "game"'
    assert not echoes(labi, NEW_PORT)
    assert echoes(labi, 12345)  # the control: the port forwarded since bootstrap
    # the site's record says its ports (sites side by side compare them), and the firewall
    assert vps_plan(labi, "add-port", f"{NEW_PORT}/udp") == {
        "site": ["update /var/lib/tunnelops/sites/wg0.json"], "firewall": [
            "update /etc/tunnelops/wg0.nft", f"add {NEW_PORT}/udp (game) to set svc_udp_home"]}
    before = snapshot(labi)
    out = run_cli(labi, "add-port", f"{NEW_PORT}/udp")
    assert summary(out)["vps"]["changed"] == 2, out  # those two steps, and only them
    assert_untouched(labi, before)
    assert svc_udp_home(labi) == f'12345 comment "game", {NEW_PORT} comment "game"'
    assert (f'add element inet tunnelops-wg0 svc_udp_home {{ 12345 comment "game", {NEW_PORT} '
            'comment "game" }') in sh(labi, "vps", "cat /etc/tunnelops/wg0.nft")
    wait_until(f"UDP echo on {NEW_PORT}", lambda: echoes(labi, NEW_PORT), 5)
    assert echoes(labi, 12345)


def test_remove_port_deletes_exactly_its_element(labi: Lab) -> None:
    assert vps_plan(labi, "remove-port", f"{NEW_PORT}/udp") == {
        "site": ["update /var/lib/tunnelops/sites/wg0.json"], "firewall": [
            "update /etc/tunnelops/wg0.nft",
            f"delete {NEW_PORT}/udp (game) from set svc_udp_home"]}
    before = snapshot(labi)
    out = run_cli(labi, "remove-port", f"{NEW_PORT}/udp")
    assert summary(out)["vps"]["changed"] == 2, out
    assert_untouched(labi, before)
    assert svc_udp_home(labi) == '12345 comment "game"'
    assert str(NEW_PORT) not in sh(labi, "vps", "cat /etc/tunnelops/wg0.nft")
    assert not echoes(labi, NEW_PORT)
    assert echoes(labi, 12345)


def test_a_rerun_changes_nothing(labi: Lab) -> None:
    before = snapshot(labi)
    out = run_cli(labi, "bootstrap")
    assert {role: c["changed"] for role, c in summary(out).items()} == {"vps": 0, "home": 0}
    assert_untouched(labi, before)


def test_an_element_deleted_by_hand_comes_back_without_a_reload(labi: Lab) -> None:
    """Element drift is repaired from the live set, like any port change."""
    sh(labi, "vps", "nft delete element inet tunnelops-wg0 svc_udp_home '{ 12345 }'")
    assert not echoes(labi, 12345)
    assert vps_plan(labi, "bootstrap") == {"firewall": ["add 12345/udp (game) to set svc_udp_home"]}
    before = snapshot(labi)
    out = run_cli(labi, "bootstrap")
    assert summary(out)["vps"]["changed"] == 1, out
    assert_untouched(labi, before)
    wait_until("UDP echo on 12345", lambda: echoes(labi, 12345), 5)


def test_a_rule_deleted_by_hand_reloads_the_table(labi: Lab) -> None:
    """The control: drift of the base is still repaired by a reload, which the probes of
    this module do see (the table's handle changes); the host's table stays as it was."""
    sh(labi, "vps", "h=$(nft -a list chain inet tunnelops-wg0 prerouting | sed -n "
                    "'s/.*udp dport @svc_udp_home dnat.*# handle \\([0-9]*\\)$/\\1/p'); "
                    "nft delete rule inet tunnelops-wg0 prerouting handle \"$h\"")
    assert not echoes(labi, 12345)
    assert vps_plan(labi, "bootstrap") == {
        "firewall": ["load table inet tunnelops-wg0 (the live table drifted)"]}
    before = snapshot(labi)
    run_cli(labi, "bootstrap")
    after = snapshot(labi)
    assert after["table"].splitlines()[0] != before["table"].splitlines()[0]  # the handle
    assert (after["host"], after["host applied"]) == (before["host"], before["host applied"])
    assert SENTINEL in sh(labi, "vps", "nft list set inet tunnelops-host ssh_new4")
    assert svc_udp_home(labi) == '12345 comment "game"'
    wait_until("UDP echo on 12345", lambda: echoes(labi, 12345), 5)


def test_a_rule_of_the_host_table_deleted_by_hand_comes_back_and_its_sets_stay(
        labi: Lab) -> None:
    """WireGuard's rule out of the host's table: the tunnel's handshakes stop getting in.
    The reload replaces its rules in place (`flush chain`, `add rule`): the table, its sets
    and their elements (the sites' ports, the SSH limiter's memory) stay; the site's table is
    not touched."""
    sh(labi, "vps", "h=$(nft -a list chain inet tunnelops-host input | sed -n "
                    "'s/.*udp dport @wireguard accept.*# handle \\([0-9]*\\)$/\\1/p'); "
                    "nft delete rule inet tunnelops-host input handle \"$h\"")
    assert "@wireguard" not in sh(labi, "vps", "nft list chain inet tunnelops-host input")
    assert vps_plan(labi, "bootstrap") == {
        "firewall": ["load table inet tunnelops-host (the live table drifted)"]}
    before = snapshot(labi)
    run_cli(labi, "bootstrap")
    after = snapshot(labi)
    assert after["host"].splitlines()[0] == before["host"].splitlines()[0]  # not re-created
    assert "udp dport @wireguard accept" in after["host"]
    assert after["host applied"] != before["host applied"]
    assert (after["table"], after["table applied"]) == (before["table"],
                                                        before["table applied"])
    assert SENTINEL in sh(labi, "vps", "nft list set inet tunnelops-host ssh_new4")
    assert '"wg0" comment "labi' in sh(labi, "vps", "nft list set inet tunnelops-host tunnels")
    out = run_cli(labi, "bootstrap")
    assert {role: c["changed"] for role, c in summary(out).items()} == {"vps": 0, "home": 0}
    wait_until("UDP echo on 12345", lambda: echoes(labi, 12345), 5)

