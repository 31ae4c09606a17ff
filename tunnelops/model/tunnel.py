"""Tunnel: the WireGuard link between the VPS and home, and home's policy routing. Its
defaults are the seed's (wg0, 192.168.2.0/24, .1 on the VPS, .2 at home, port 51821, table 201)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from tunnelops.model.values import ModelError, as_address, as_network, check_int, check_interface

# Renderers put this where a private key belongs; the host substitutes its own key, so
# private keys never leave the host that generated them.
PRIVATE_KEY_PLACEHOLDER = "@TUNNELOPS_PRIVATE_KEY@"

_SEED_SUBNET = IPv4Network("192.168.2.0/24")
_SEED_VPS_ADDRESS = IPv4Address("192.168.2.1")
_SEED_HOME_ADDRESS = IPv4Address("192.168.2.2")


@dataclass(frozen=True)
class Tunnel:
    """The WireGuard link between the VPS and home, and home's policy routing."""

    interface: str = "wg0"
    subnet: IPv4Network = _SEED_SUBNET
    vps_address: IPv4Address = _SEED_VPS_ADDRESS
    home_address: IPv4Address = _SEED_HOME_ADDRESS
    listen_port: int = 51821
    keepalive: int = 25
    route_table: int = 201
    # The seed used priority 0, which sorts before the `local` table: even local deliveries
    # to the tunnel address would then be routed out of wg0. The two rules use P and P+1.
    rule_priority: int = 100
    mtu: int | None = None  # None: let wg-quick / NetworkManager choose

    def __post_init__(self) -> None:
        check_interface(self.interface, "interface", ("interface",), tunnel=True)
        subnet = as_network(self.subnet, "subnet")
        object.__setattr__(self, "subnet", subnet)
        if subnet.prefixlen > 30:
            raise ModelError(f"subnet {subnet} has room for fewer than two peers: "
                             "use a /30 or larger, e.g. 192.168.2.0/24", where=("subnet",))
        for attr in ("vps_address", "home_address"):
            address = as_address(getattr(self, attr), attr)
            object.__setattr__(self, attr, address)
            if address not in subnet:
                raise ModelError(f"{attr} {address} is outside subnet {subnet}: "
                                 f"use an address in {subnet}", where=(attr,))
            if address in (subnet.network_address, subnet.broadcast_address):
                raise ModelError(f"{attr} {address} is the network or broadcast address of "
                                 f"{subnet}: use a host address", where=(attr,))
        if self.vps_address == self.home_address:
            raise ModelError(f"home_address {self.home_address} equals vps_address: "
                             "give each peer its own address", where=("home_address",))
        check_int(self.listen_port, "listen_port", 1, 65535, ("listen_port",))
        check_int(self.keepalive, "keepalive", 0, 65535, ("keepalive",))
        # NetworkManager's import parses Table as a signed 32-bit number.
        check_int(self.route_table, "route_table", 1, 2**31 - 1, ("route_table",))
        if self.route_table in (253, 254, 255):
            raise ModelError(f"route_table {self.route_table} is a kernel table "
                             "(default/main/local): use another number, e.g. 201",
                             where=("route_table",))
        # 0 is the local table's rule, 32766/32767 main and default: stay strictly between.
        check_int(self.rule_priority, "rule_priority", 1, 32764, ("rule_priority",))
        if self.mtu is not None:
            check_int(self.mtu, "mtu", 576, 9000, ("mtu",))

    @classmethod
    def from_values(cls, **values: object) -> Tunnel:
        """As an inventory gives it: a subnet alone brings its own addresses (its first two
        hosts: .1 the VPS, .2 home, as the seed's 192.168.2.0/24 does)."""
        if "subnet" in values and not {"vps_address", "home_address"} & values.keys():
            subnet = as_network(values["subnet"], "subnet")
            hosts = [subnet.network_address + 1, subnet.network_address + 2]
            if subnet.prefixlen <= 30:
                values = {**values, "vps_address": hosts[0], "home_address": hosts[1]}
        return cls(**values)  # type: ignore[arg-type]

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    @property
    def rule_priorities(self) -> tuple[int, int]:
        """(from-home-address rule, to-vps-address rule)."""
        return self.rule_priority, self.rule_priority + 1

