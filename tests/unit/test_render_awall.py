"""awall policies: valid JSON, the seed's structure, awall's real attribute names."""

from __future__ import annotations

import json
from ipaddress import IPv4Address

from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.tunnel import Tunnel
from tunnelops.render import awall

GAME = Service("game", "docker.io/example/game:latest",
               (PortSpec.parse("12345/udp"), PortSpec.parse("12346/tcp")), "gamer", home="home")
RANGE = Service("srcds", "docker.io/example/srcds:1",
                (PortSpec.parse("27015-27020/udp"), PortSpec.parse("27015/tcp")), "steam",
                home="steambox")
def managed(text: str) -> str:
    """Expected text with MANAGED standing for the notice (keeps lines under 100)."""
    return text.replace("MANAGED", "Managed by tunnelops: local edits are overwritten.")


CUSTOM = Tunnel(interface="wgt", subnet="10.9.8.0/29", vps_address="10.9.8.5",  # type: ignore[arg-type]
                home_address="10.9.8.6", listen_port=51999)  # type: ignore[arg-type]


def test_base_policy_text() -> None:
    assert awall.dumps(awall.base_policy("eth0", Tunnel(), "lab")) == managed("""\
{
    "description": "MANAGED Base zones and policies of site lab (wg0)",
    "zone": {
        "tunnelops-wg0-inet": {
            "iface": "eth0"
        },
        "tunnelops-wg0-vpn": {
            "iface": "wg0"
        }
    },
    "policy": [
        {
            "in": "tunnelops-wg0-vpn",
            "action": "accept"
        },
        {
            "out": "tunnelops-wg0-vpn",
            "action": "accept"
        },
        {
            "out": "tunnelops-wg0-inet",
            "action": "accept"
        },
        {
            "in": "_fw",
            "action": "accept"
        },
        {
            "in": "tunnelops-wg0-inet",
            "action": "drop"
        }
    ],
    "snat": [
        {
            "out": "tunnelops-wg0-inet"
        }
    ]
}
""")


def test_base_policy_custom_interfaces() -> None:
    policy = json.loads(awall.dumps(awall.base_policy("ens3", CUSTOM)))
    assert policy["zone"] == {"tunnelops-wgt-inet": {"iface": "ens3"},
                              "tunnelops-wgt-vpn": {"iface": "wgt"}}
    # awall's policy names are letters, digits and '-': an interface's '_' is written '-'
    under = json.loads(awall.dumps(awall.base_policy("ens3", Tunnel(interface="wg_a"))))
    assert set(under["zone"]) == {"tunnelops-wg-a-inet", "tunnelops-wg-a-vpn"}


def test_ssh_policy_is_the_seed_counting_connection_attempts_only() -> None:
    inet = "tunnelops-wg0-inet"
    assert awall.ssh_policy(Tunnel()) == {
        "description": "Managed by tunnelops: local edits are overwritten. Allow SSH from "
                       "internet",
        "filter": [{"in": inet, "out": "_fw", "service": "ssh", "match": "-m tcp --syn",
                    "action": "accept", "conn-limit": {"count": 3, "interval": 20}},
                   {"in": inet, "out": "_fw", "service": "ssh", "action": "accept"}],
    }


def test_ssh_policy_on_another_port_names_its_service() -> None:
    # the VPS's SSH, the same for every site of the host: one name, which awall gives the
    # limiter's chain (limit-tunnelops-ssh-0: under iptables' 28 characters)
    other = awall.ssh_policy(CUSTOM, 2222, count=5, interval=60)
    assert other["service"] == {"tunnelops-ssh": {"proto": "tcp", "port": 2222}}
    assert [f["service"] for f in other["filter"]] == ["tunnelops-ssh"] * 2
    assert other["filter"][0]["conn-limit"] == {"count": 5, "interval": 60}


def test_wireguard_policy_text() -> None:
    assert awall.dumps(awall.wireguard_policy(CUSTOM)) == managed("""\
{
    "description": "MANAGED Allow WireGuard (wgt) from internet",
    "service": {
        "tunnelops-wgt-wireguard": {
            "proto": "udp",
            "port": 51999
        }
    },
    "filter": [
        {
            "in": "tunnelops-wgt-inet",
            "out": "_fw",
            "service": "tunnelops-wgt-wireguard",
            "action": "accept"
        }
    ]
}
""")


def test_service_policy_text() -> None:
    assert awall.dumps(awall.service_policy(RANGE, CUSTOM, snat=True,
                                            address=IPv4Address("10.9.8.3"))) == managed("""\
{
    "description": "MANAGED Forward srcds traffic to home steambox (10.9.8.3) through wgt",
    "service": {
        "tunnelops-wgt-srcds": [
            {
                "proto": "udp",
                "port": "27015-27020"
            },
            {
                "proto": "tcp",
                "port": 27015
            }
        ]
    },
    "filter": [
        {
            "in": "tunnelops-wgt-inet",
            "out": "tunnelops-wgt-vpn",
            "service": "tunnelops-wgt-srcds",
            "action": "accept"
        }
    ],
    "dnat": [
        {
            "in": "tunnelops-wgt-inet",
            "service": "tunnelops-wgt-srcds",
            "to-addr": "10.9.8.3"
        }
    ],
    "snat": [
        {
            "out": "tunnelops-wgt-vpn",
            "service": "tunnelops-wgt-srcds",
            "to-addr": "10.9.8.5"
        }
    ]
}
""")


def test_service_policy_has_the_seed_structure() -> None:
    policy = json.loads(awall.dumps(awall.service_policy(GAME, Tunnel(), snat=True)))
    # The seed's game.json, with its JSON fixed, names for the site and "to-addr".
    key, inet, vpn = "tunnelops-wg0-game", "tunnelops-wg0-inet", "tunnelops-wg0-vpn"
    assert policy == {
        "description": "Managed by tunnelops: local edits are overwritten. Forward game "
                       "traffic to home home (192.168.2.2) through wg0",
        "service": {key: [{"proto": "udp", "port": 12345}, {"proto": "tcp", "port": 12346}]},
        "filter": [{"in": inet, "out": vpn, "service": key, "action": "accept"}],
        "dnat": [{"in": inet, "service": key, "to-addr": "192.168.2.2"}],
        "snat": [{"out": vpn, "service": key, "to-addr": "192.168.2.1"}],
    }
    # client_ip = "preserve" (the default): the same without its snat section
    del policy["snat"]
    assert awall.service_policy(GAME, Tunnel()) == policy


def test_dumps_is_deterministic_json() -> None:
    for policy in (awall.base_policy("eth0", Tunnel()), awall.ssh_policy(Tunnel()),
                   awall.wireguard_policy(Tunnel()), awall.service_policy(GAME, Tunnel())):
        text = awall.dumps(policy)
        assert json.loads(text) == policy
        assert text.endswith("}\n") and text == awall.dumps(json.loads(text))
