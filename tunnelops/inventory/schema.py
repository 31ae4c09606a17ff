"""What a site file may say: its tables, their keys and the kind of each value (with an
example of each kind, for messages), the keys each table needs; InventoryError."""

from __future__ import annotations

# table -> key -> kind. Kinds: str, int, bool, str_list, str_table.
SCHEMA: dict[str, dict[str, str]] = {
    "site": {"name": "str", "ssh_config": "str", "known_hosts": "str", "whoami_url": "str",
             "client_ip": "str"},
    "vps": {"host": "str", "public_ip": "str", "wan_interface": "str"},
    "home": {"host": "str", "lan_interface": "str"},
    # several homes: [[homes]] tables instead of [home]
    "homes": {"name": "str", "host": "str", "lan_interface": "str", "address": "str"},
    "tunnel": {
        "interface": "str",
        "subnet": "str",
        "vps_address": "str",
        "home_address": "str",
        "listen_port": "int",
        "keepalive": "int",
        "route_table": "int",
        "rule_priority": "int",
        "mtu": "int",
    },
    "services": {
        "name": "str",
        "image": "str",
        "user": "str",
        "ports": "str_list",
        "env": "str_table",
        "volumes": "str_list",
        "command": "str_list",
        "network": "str",
        "allow_system_user": "bool",
        "home": "str",
    },
}
ARRAYS = ("homes", "services")  # arrays of tables: [[homes]], [[services]]
REQUIRED: dict[str, tuple[str, ...]] = {
    "site": (),
    "vps": ("host",),
    "home": ("host",),
    "homes": ("name", "host"),
    "tunnel": (),
    "services": ("name", "image", "user", "ports"),
}
EXAMPLES = {
    "str": '"text"',
    "int": "51821",
    "bool": "true",
    "str_list": '["12345/udp"]',
    "str_table": '{ KEY = "value" }',
}


KIND_NAMES = {
    "str": "a string",
    "int": "an integer",
    "bool": "true or false",
    "str_list": "an array of strings",
    "str_table": "a table of strings",
}


def has_kind(value: object, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return type(value) is int
    if kind == "bool":
        return type(value) is bool
    if kind == "str_list":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def toml_type(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")


class InventoryError(ValueError):
    """An inventory file is unreadable or invalid. str() is exactly one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
