"""The packages made of one module a concern keep their public face: `from tunnelops.model
import Site`, `inventory.load(...)` (what code written before the split says) give each public
name, the very object of the module it lives in."""

from __future__ import annotations

import importlib
import inspect

import pytest

FACADES = {
    "tunnelops.model": {
        "CLIENT_IP_MODES", "DEFAULT_HOME", "DEFAULT_SSH_PORT", "ENV_KEY_RE", "HOST_IFACE_RE",
        "HUB", "IMAGE_RE", "NAME_RE", "PRIVATE_KEY_PLACEHOLDER", "PROTOCOLS",
        "SERVICE_NETWORKS", "SYSTEM_UID_MAX", "TUNNEL_IFACE_RE", "USER_RE", "HomeSpec",
        "HostRef", "ModelError", "PortSpec", "Service", "Site", "Tunnel", "VpsSpec", "Where",
        "check_interface", "check_name", "same_host"},
    "tunnelops.inventory": {
        "ARRAYS", "REQUIRED", "SCHEMA", "InventoryError", "dumps", "find_site", "load", "loads",
        "locked", "new_site", "save", "site_files", "update", "update_discovered"},
}


@pytest.mark.parametrize("package", sorted(FACADES))
def test_the_facade_keeps_the_public_names(package: str) -> None:
    facade = importlib.import_module(package)
    assert set(facade.__all__) == FACADES[package]
    for name in FACADES[package]:
        value = getattr(facade, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            home = value.__module__  # where it is defined: one of the package's modules
            assert home.startswith(f"{package}."), name
            assert getattr(importlib.import_module(home), name) is value, name
