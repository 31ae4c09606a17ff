"""A new site with the seed's defaults, what bootstrap records when no site file matches."""

from __future__ import annotations

import dataclasses
from typing import Any

from tunnelops.model.hosts import HomeSpec, HostRef, VpsSpec
from tunnelops.model.site import Site
from tunnelops.model.tunnel import Tunnel
from tunnelops.model.values import ModelError


def new_site(name: str, vps: str | HostRef, home: str | HostRef | tuple[HomeSpec, ...],
             **overrides: Any) -> Site:
    """A Site with the seed's defaults; overrides may name any Tunnel, VpsSpec, HomeSpec or
    Site field (e.g. listen_port=51822, public_ip="203.0.113.7", services=(...)). `home` is
    the one home's host, or the homes themselves."""
    groups: dict[str, dict[str, Any]] = {"tunnel": {}, "vps": {}, "home": {}, "site": {}}
    fields = {
        "tunnel": {f.name for f in dataclasses.fields(Tunnel)},
        "vps": {"public_ip", "wan_interface"},
        "home": {"lan_interface"},
        "site": {"services", "ssh_config", "known_hosts", "whoami_url", "client_ip"},
    }
    for key, value in overrides.items():
        group = next((g for g, names in fields.items() if key in names), None)
        if group is None:
            known = ", ".join(sorted(set().union(*fields.values())))
            raise ModelError(f"unknown setting {key!r}: use one of {known}")
        groups[group][key] = value
    return Site(
        name=name,
        vps=VpsSpec(host=vps, **groups["vps"]),  # type: ignore[arg-type]
        homes=home if isinstance(home, tuple) else
        HomeSpec(host=home, **groups["home"]),  # type: ignore[arg-type]
        tunnel=Tunnel.from_values(**groups["tunnel"]),
        **groups["site"],
    )
