"""NetworkManager properties patched onto the imported home connection."""

from __future__ import annotations

import pytest

from tunnelops.model.tunnel import Tunnel
from tunnelops.render import networkmanager as nm

CUSTOM = Tunnel(subnet="10.9.8.0/29", vps_address="10.9.8.5",  # type: ignore[arg-type]
                home_address="10.9.8.6", route_table=7000, rule_priority=2000,  # type: ignore[arg-type]
                mtu=1380)


def test_home_settings_seed() -> None:
    assert nm.home_settings(Tunnel()) == {
        "ipv4.method": "manual",
        "ipv4.addresses": "192.168.2.2/24",
        "ipv4.route-table": "201",
        "ipv4.routing-rules": "priority 100 from 192.168.2.2 table 201, "
                              "priority 101 to 192.168.2.1 table 201",
        "wireguard.ip4-auto-default-route": "0",
        "wireguard.peer-routes": "yes",
        "wireguard.mtu": "auto",
    }


def test_home_settings_custom() -> None:
    assert nm.home_settings(CUSTOM) == {
        "ipv4.method": "manual",
        "ipv4.addresses": "10.9.8.6/29",
        "ipv4.route-table": "7000",
        "ipv4.routing-rules": "priority 2000 from 10.9.8.6 table 7000, "
                              "priority 2001 to 10.9.8.5 table 7000",
        "wireguard.ip4-auto-default-route": "0",
        "wireguard.peer-routes": "yes",
        "wireguard.mtu": "1380",
    }


@pytest.mark.parametrize(
    ("prop", "value", "canonical"),
    [
        ("wireguard.ip4-auto-default-route", "0", "0"),
        ("wireguard.ip4-auto-default-route", "0 (false)", "0"),
        ("wireguard.ip4-auto-default-route", "no", "0"),
        ("wireguard.ip4-auto-default-route", "-1 (default)", "-1"),
        ("wireguard.ip4-auto-default-route", "1", "1"),
        ("wireguard.peer-routes", "yes", "yes"),
        ("wireguard.peer-routes", "true", "yes"),
        ("ipv4.routing-rules",
         "priority 100 from 192.168.2.2/32 table 201,priority 101 to 192.168.2.1/32 table 201",
         "priority 100 from 192.168.2.2 table 201, priority 101 to 192.168.2.1 table 201"),
        ("ipv4.routing-rules", "", ""),
        ("wireguard.mtu", "0", "auto"),
        ("ipv6.addresses", "fe80\\:\\:1/64", "fe80::1/64"),
        ("ipv4.route-table", " 201\n", "201"),
    ],
)
def test_normalise(prop: str, value: str, canonical: str) -> None:
    assert nm.normalise(prop, value) == canonical


def test_modify_args_only_differences() -> None:
    desired = nm.home_settings(Tunnel())
    # What the seed's import leaves: no table, no rules, automatic default route.
    current = {
        "ipv4.method": "manual",
        "ipv4.addresses": "192.168.2.2/24",
        "ipv4.route-table": "0",
        "ipv4.routing-rules": "",
        "wireguard.ip4-auto-default-route": "-1",
        "wireguard.peer-routes": "yes",
        "wireguard.mtu": "auto",
    }
    assert nm.modify_args(current, desired) == [
        "ipv4.route-table", "201",
        "ipv4.routing-rules", "priority 100 from 192.168.2.2 table 201, "
                              "priority 101 to 192.168.2.1 table 201",
        "wireguard.ip4-auto-default-route", "0",
    ]
    converged = {**current, **dict(zip(*[iter(nm.modify_args(current, desired))] * 2,
                                      strict=True))}
    assert nm.modify_args(converged, desired) == []
    # A property nmcli did not report is set.
    assert nm.modify_args({}, {"wireguard.peer-routes": "yes"}) == ["wireguard.peer-routes",
                                                                    "yes"]
