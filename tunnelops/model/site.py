"""Site: a hub (the VPS) and its homes, the tunnel between them and the services, checked
together (names, addresses, ports); each home's address in the tunnel; a site's copies with a
port added or removed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from tunnelops.model.hosts import HomeSpec, VpsSpec, same_host
from tunnelops.model.ports import PortSpec, as_port
from tunnelops.model.service import Service
from tunnelops.model.tunnel import Tunnel
from tunnelops.model.values import ModelError, Where, check_name, check_text, show

# What the game sees as a player's address: "preserve" (the player's own; the VPS only
# DNATs) or "snat" (the VPS's tunnel address, the seed's way: see its footnote 3).
CLIENT_IP_MODES = ("preserve", "snat")


def _addresses(homes: tuple[HomeSpec, ...], t: Tunnel) -> dict[str, IPv4Address]:
    """Each home's tunnel address: its own, else the next free one of the subnet from the
    tunnel's home_address on (the seed's .2, then .3, ...)."""
    taken: dict[IPv4Address, str] = {t.vps_address: "the VPS"}
    for index, home in enumerate(homes):
        a = home.address
        if a is None:
            continue
        where: Where = ("homes", index, "address")
        if a not in t.subnet or a in (t.subnet.network_address, t.subnet.broadcast_address):
            raise ModelError(f"address {a} of home {home.name!r} is not a host address of the "
                             f"tunnel subnet {t.subnet}: use one in it", where=where)
        if a in taken:
            raise ModelError(f"address {a} of home {home.name!r} is already {taken[a]}'s: give "
                             "each home its own address", where=where)
        taken[a] = f"home {home.name!r}"
    out: dict[str, IPv4Address] = {}
    start = int(t.home_address)
    last = int(t.subnet.broadcast_address)
    for index, home in enumerate(homes):
        address = home.address
        if address is None:
            address = next((IPv4Address(n) for n in range(start, last)
                            if IPv4Address(n) not in taken), None)
            if address is None:
                raise ModelError(f"the tunnel subnet {t.subnet} has no address left for home "
                                 f"{home.name!r}: use a larger subnet, e.g. a /24",
                                 where=("homes", index, "address"))
            taken[address] = f"home {home.name!r}"
        out[home.name] = address
    return out



def _check_optional_text(value: object, what: str) -> None:
    if value is None:
        return
    text = check_text(value, what, (what,))
    if not text:
        raise ModelError(f"{what} is empty: remove the key or give a value", where=(what,))


@dataclass(frozen=True)
class Site:
    """A hub (the VPS) and its homes: one WireGuard interface on the VPS with a peer per
    home, each home with its own tunnel address and services. `homes` may be given as one
    HomeSpec (the one-home site of a `[home]` inventory); it is always a tuple after."""

    name: str
    vps: VpsSpec
    homes: tuple[HomeSpec, ...]
    tunnel: Tunnel = Tunnel()  # noqa: RUF009 - frozen: one shared default is safe
    services: tuple[Service, ...] = ()
    ssh_config: str | None = None  # an ssh_config file to use instead of ~/.ssh/config
    known_hosts: str | None = None
    whoami_url: str | None = None  # what-is-my-address URL used by verify
    client_ip: str = "preserve"  # CLIENT_IP_MODES

    def __post_init__(self) -> None:
        check_name(self.name, "site name")
        if self.client_ip not in CLIENT_IP_MODES:
            raise ModelError(f"client_ip {show(self.client_ip)} is not a mode: use \"preserve\" "
                             "(the game sees each player's address) or \"snat\" (it sees the "
                             "VPS's tunnel address)", where=("client_ip",))
        _check_optional_text(self.ssh_config, "ssh_config")
        _check_optional_text(self.known_hosts, "known_hosts")
        if self.whoami_url is not None:
            url = self.whoami_url
            if (not isinstance(url, str) or not url.startswith(("http://", "https://"))
                    or any(ch.isspace() or not ch.isprintable() for ch in url)):
                raise ModelError(f"whoami_url {show(url)} is not an http(s) URL: "
                                 "use e.g. \"https://ifconfig.me/ip\"", where=("whoami_url",))
        homes = self._checked_homes()
        object.__setattr__(self, "homes", homes)
        # derived, not a field: a home's address given in the inventory stays the home's own
        # (None if it gave none), so a copy with another subnet re-derives the others
        addresses = _addresses(homes, self.tunnel)
        object.__setattr__(self, "_addresses", addresses)
        # the site-wide tunnel value carries the first home's address: the one-home
        # inventory's [tunnel] home_address; every home's own is `link(home)`
        first = addresses[homes[0].name]
        if self.tunnel.home_address != first:
            object.__setattr__(self, "tunnel", dataclasses.replace(self.tunnel,
                                                                   home_address=first))
        object.__setattr__(self, "services", self._homed(tuple(self.services)))
        self._check_services()

    def _checked_homes(self) -> tuple[HomeSpec, ...]:
        homes = (self.homes,) if isinstance(self.homes, HomeSpec) else tuple(self.homes)
        if not homes:
            raise ModelError(f"site {self.name!r} has no home: add a [home] table with "
                             "host = \"...\" (or [[homes]] entries)", where=("homes",))
        seen: dict[str, HomeSpec] = {}
        for index, home in enumerate(homes):
            if not isinstance(home, HomeSpec):
                raise ModelError(f"home {show(home)} is not a HomeSpec", where=("homes", index))
            if home.name in seen:
                raise ModelError(f"home name {home.name!r} is used twice: give each "
                                 "[[homes]] entry its own name", where=("homes", index, "name"))
            twin = next((h for h in seen.values() if same_host(h.host, home.host)), None)
            if twin is not None:
                raise ModelError(f"homes {twin.name!r} and {home.name!r} are the same host "
                                 f"{home.host}: list each home server once",
                                 where=("homes", index, "host"))
            seen[home.name] = home
        return homes

    def _homed(self, services: tuple[Service, ...]) -> tuple[Service, ...]:
        """Each service with its home named (the only home when the service says none)."""
        out = []
        names = [h.name for h in self.homes]
        for index, svc in enumerate(services):
            if svc.home is None:
                if len(names) > 1:
                    raise ModelError(f"service {svc.name!r} does not say which home runs it: "
                                     f"add home = \"{names[0]}\" (one of {', '.join(names)})",
                                     where=("services", index, "name"))
                svc = dataclasses.replace(svc, home=names[0])
            elif svc.home not in names:
                raise ModelError(f"service {svc.name!r} runs on home {svc.home!r}, which the "
                                 f"site does not have: use one of {', '.join(names)}",
                                 where=("services", index, "home"))
            out.append(svc)
        return tuple(out)

    def _check_services(self) -> None:
        ssh = PortSpec("tcp", self.vps.ssh_port, self.vps.ssh_port)
        wireguard = PortSpec("udp", self.tunnel.listen_port, self.tunnel.listen_port)
        names: dict[str, int] = {}
        for index, svc in enumerate(self.services):
            if svc.name in names:
                raise ModelError(f"service name {svc.name!r} is used twice: "
                                 "give each [[services]] entry its own name",
                                 where=("services", index, "name"))
            names[svc.name] = index
        for index, svc in enumerate(self.services):
            for port in svc.ports:
                where: Where = ("services", index, "ports", str(port))
                if port.overlaps(ssh):
                    raise ModelError(f"port {port} of service {svc.name!r} includes the VPS "
                                     f"SSH port {ssh}: pick another port", where=where)
                if port.overlaps(wireguard):
                    raise ModelError(f"port {port} of service {svc.name!r} includes the "
                                     f"WireGuard listen port {wireguard}: pick another port "
                                     "or change [tunnel] listen_port", where=where)
                for other in self.services[:index]:
                    for theirs in other.ports:
                        if port.overlaps(theirs) and other.home != svc.home:
                            raise ModelError(
                                f"port {port} of service {svc.name!r} (home {svc.home!r}) "
                                f"overlaps {theirs} of service {other.name!r} (home "
                                f"{other.home!r}): a public port forwards to one home: "
                                "pick another port", where=where)
                        if port.overlaps(theirs):
                            raise ModelError(
                                f"port {port} of service {svc.name!r} overlaps {theirs} of "
                                f"service {other.name!r}: give each port to one service",
                                where=where)

    @property
    def snat(self) -> bool:
        """Does the VPS rewrite the source of forwarded service traffic to its tunnel address?"""
        return self.client_ip == "snat"

    def home(self, name: str) -> HomeSpec:
        for home in self.homes:
            if home.name == name:
                return home
        raise ModelError(f"unknown home {name!r}: use one of "
                         f"{', '.join(h.name for h in self.homes)}")

    def address(self, home: HomeSpec | str) -> IPv4Address:
        """A home's address in the tunnel (its own, or the one the site gave it)."""
        name = home if isinstance(home, str) else home.name
        addresses: dict[str, IPv4Address] = self._addresses  # type: ignore[attr-defined]
        if name not in addresses:
            self.home(name)  # raises: unknown home
        return addresses[name]

    def link(self, home: HomeSpec | str) -> Tunnel:
        """The tunnel as one home sees it: the site's, with that home's address."""
        t, address = self.tunnel, self.address(home)
        return t if t.home_address == address else dataclasses.replace(t, home_address=address)

    def services_of(self, home: HomeSpec | str) -> tuple[Service, ...]:
        name = home if isinstance(home, str) else home.name
        return tuple(s for s in self.services if s.home == name)

    def home_view(self, home: HomeSpec | str) -> Site:
        """The site as one of its homes sees it: the hub and that home alone, at its own
        address, with its own services (verify checks each home of a site through its
        view). A one-home site is its own view."""
        spec = self.home(home) if isinstance(home, str) else home
        if len(self.homes) == 1:
            return self
        pinned = dataclasses.replace(spec, address=self.address(spec))
        return dataclasses.replace(self, homes=(pinned,), tunnel=self.link(spec),
                                   services=self.services_of(spec))

    def service(self, name: str) -> Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise ModelError(f"unknown service {name!r}: use one of {self._service_names()}")

    def _service_names(self) -> str:
        return ", ".join(svc.name for svc in self.services) or "(none)"

    def _pick_service(self, service_name: str | None, home_name: str | None = None) -> Service:
        if service_name is not None:
            svc = self.service(service_name)
            if home_name is not None and svc.home != self.home(home_name).name:
                raise ModelError(f"service {svc.name!r} runs on home {svc.home!r}, not "
                                 f"{home_name!r}: drop --home, or name a service of "
                                 f"{home_name!r}")
            return svc
        if not self.services:
            raise ModelError(f"site {self.name!r} has no services: add a [[services]] entry "
                             "to its inventory file first")
        candidates = self.services
        if home_name is not None:
            home = self.home(home_name)
            candidates = self.services_of(home)
            if not candidates:
                raise ModelError(f"home {home.name!r} has no services: add a [[services]] "
                                 f"entry with home = \"{home.name}\" to the inventory first")
        elif len(self.homes) > 1:
            raise ModelError(f"--home is required: site {self.name!r} has several homes "
                             f"({', '.join(h.name for h in self.homes)})")
        if len(candidates) > 1:
            names = ", ".join(svc.name for svc in candidates)
            raise ModelError("--service is required: "
                             + (f"home {home_name!r}" if home_name else f"site {self.name!r}")
                             + f" has several services ({names})")
        return candidates[0]

    def _with_service(self, new: Service) -> Site:
        services = tuple(new if svc.name == new.name else svc for svc in self.services)
        return dataclasses.replace(self, services=services)

    def with_port_added(self, spec: PortSpec | str, service_name: str | None = None,
                        home_name: str | None = None) -> Site:
        port = as_port(spec)
        target = self._pick_service(service_name, home_name)
        for svc in self.services:
            for theirs in svc.ports:
                if port.overlaps(theirs):
                    raise ModelError(f"port {port} is already used by service {svc.name!r} "
                                     f"({theirs}): pick another port")
        return self._with_service(dataclasses.replace(target, ports=(*target.ports, port)))

    def with_port_removed(self, spec: PortSpec | str, service_name: str | None = None) -> Site:
        port = as_port(spec)
        candidates: Iterable[Service] = (
            [self.service(service_name)] if service_name is not None else self.services
        )
        for svc in candidates:
            if port in svc.ports:
                remaining = tuple(p for p in svc.ports if p != port)
                if not remaining:
                    raise ModelError(f"removing {port} would leave service {svc.name!r} with "
                                     "no ports: delete its [[services]] entry instead")
                return self._with_service(dataclasses.replace(svc, ports=remaining))
        if service_name is not None:
            ports = ", ".join(str(p) for p in self.service(service_name).ports)
            raise ModelError(f"service {service_name!r} does not expose {port}: "
                             f"its ports are {ports}")
        raise ModelError(f"no service exposes {port}: nothing to remove "
                         "(give the exact port or range as listed in the inventory)")
