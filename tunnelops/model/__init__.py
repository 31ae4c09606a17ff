"""Validated values describing one site: a VPS, its home servers, the tunnel and the services.

Everything here is pure: constructing a value validates it, and every failure is a
ModelError whose message is one line naming the problem and the fix. Defaults are the
seed's manual setup (wg0, 192.168.2.0/24, .1 on the VPS, .2 at home, port 51821, table 201).

One module a concern: values.py (ModelError, the checks of plain values), ports.py (PortSpec),
tunnel.py (Tunnel), service.py (Service), hosts.py (HostRef, VpsSpec, HomeSpec), site.py (Site:
a hub and its homes). This module is the public face: their names, importable from here.
"""

from __future__ import annotations

from tunnelops.model.hosts import (
    DEFAULT_HOME,
    DEFAULT_SSH_PORT,
    HUB,
    HomeSpec,
    HostRef,
    VpsSpec,
    same_host,
)
from tunnelops.model.ports import PROTOCOLS, PortSpec
from tunnelops.model.service import (
    ENV_KEY_RE,
    IMAGE_RE,
    SERVICE_NETWORKS,
    SYSTEM_UID_MAX,
    USER_RE,
    Service,
)
from tunnelops.model.site import CLIENT_IP_MODES, Site
from tunnelops.model.tunnel import PRIVATE_KEY_PLACEHOLDER, Tunnel
from tunnelops.model.values import (
    HOST_IFACE_RE,
    NAME_RE,
    TUNNEL_IFACE_RE,
    ModelError,
    Where,
    check_interface,
    check_name,
)

__all__ = [
    "CLIENT_IP_MODES",
    "DEFAULT_HOME",
    "DEFAULT_SSH_PORT",
    "ENV_KEY_RE",
    "HOST_IFACE_RE",
    "HUB",
    "IMAGE_RE",
    "NAME_RE",
    "PRIVATE_KEY_PLACEHOLDER",
    "PROTOCOLS",
    "SERVICE_NETWORKS",
    "SYSTEM_UID_MAX",
    "TUNNEL_IFACE_RE",
    "USER_RE",
    "HomeSpec",
    "HostRef",
    "ModelError",
    "PortSpec",
    "Service",
    "Site",
    "Tunnel",
    "VpsSpec",
    "Where",
    "check_interface",
    "check_name",
    "same_host",
]
