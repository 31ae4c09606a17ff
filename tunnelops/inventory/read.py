"""Reading a site file (tomllib) into a Site: unknown keys and wrong kinds refused, every
error one line, `FILE:LINE: what is wrong: how to fix it`."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunnelops.inventory.lines import Loc, locate
from tunnelops.inventory.schema import (
    ARRAYS,
    EXAMPLES,
    KIND_NAMES,
    REQUIRED,
    SCHEMA,
    InventoryError,
    has_kind,
    toml_type,
)
from tunnelops.model.hosts import HomeSpec, VpsSpec
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.site import Site
from tunnelops.model.tunnel import Tunnel
from tunnelops.model.values import ModelError, Where


class _Reader:
    """Turns parsed TOML data into a Site, raising InventoryError with a located line."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def fail(self, loc: Loc, message: str) -> InventoryError:
        return InventoryError(f"{self.source}:{locate(self.text, loc)}: {message}")

    def model_error(self, err: ModelError, table: str, index: int | None = None,
                    raw_ports: Mapping[tuple[int, str], str] | None = None) -> InventoryError:
        where: Where = err.where
        if len(where) >= 2 and where[0] in ARRAYS and isinstance(where[1], int):
            table, index, where = str(where[0]), where[1], where[2:]
        key = where[0] if where and isinstance(where[0], str) else None
        needle = where[1] if len(where) > 1 and isinstance(where[1], str) else None
        if needle is not None and raw_ports is not None and index is not None:
            needle = raw_ports.get((index, needle), needle)
        loc = Loc(table, index, key, needle)
        return self.fail(loc, f"{loc.label}: {err}")

    def table(self, data: Mapping[str, Any], name: str, index: int | None = None,
              value: object = None) -> dict[str, Any]:
        """Check one table's keys and value kinds; returns its plain values."""
        if value is None:
            value = data.get(name, {})
        label = f"[[{name}]]" if name in ARRAYS else f"[{name}]"
        if not isinstance(value, dict):
            raise self.fail(Loc(name, index), f"{label} must be a table: write it as {label} "
                            "followed by key = value lines")
        schema = SCHEMA[name]
        for key, item in value.items():
            loc = Loc(name, index, key)
            if key not in schema:
                raise self.fail(loc, f"[{name}] unknown key {key!r}: use one of "
                                f"{', '.join(schema)}")
            kind = schema[key]
            if not has_kind(item, kind):
                raise self.fail(loc, f"{loc.label}: expected {KIND_NAMES[kind]}, got "
                                f"{toml_type(item)}: write e.g. {key} = {EXAMPLES[kind]}")
        for key in REQUIRED[name]:
            if key not in value:
                raise self.fail(Loc(name, index), f"{label} is missing {key!r}: add "
                                f"{key} = {EXAMPLES[SCHEMA[name][key]]}")
        return value

    def read(self, data: dict[str, Any], stem: str) -> Site:
        for name, value in data.items():
            is_table = isinstance(value, dict) or (
                isinstance(value, list) and bool(value)
                and all(isinstance(v, dict) for v in value))
            if name not in SCHEMA and not is_table:
                owner = next((t for t, keys in SCHEMA.items() if name in keys), "site")
                table = f"[[{owner}]]" if owner in ARRAYS else f"[{owner}]"
                raise self.fail(Loc("", key=name), f"unknown top-level key {name!r}: keys "
                                f"belong in a table, e.g. under {table}")
            if name not in SCHEMA:
                raise self.fail(Loc(name), f"unknown table [{name}]: use [site], [vps], "
                                "[home] (or [[homes]]), [tunnel] and [[services]]")
            if name not in ARRAYS and not isinstance(value, dict):
                raise self.fail(Loc("", key=name), f"{name!r} must be a table: write it as "
                                f"[{name}] followed by key = value lines")
        if "vps" not in data:
            raise self.fail(Loc("vps"), '[vps] table is missing: add [vps] with host = "..."')
        if "home" in data and "homes" in data:
            raise self.fail(Loc("homes"), "both [home] and [[homes]]: a site with one home "
                            "has [home], one with several has a [[homes]] table each; keep "
                            "one of them")
        if "home" not in data and "homes" not in data:
            raise self.fail(Loc("home"), '[home] table is missing: add [home] with '
                            'host = "..." (or a [[homes]] table per home)')
        site_t = self.table(data, "site")
        vps_t = self.table(data, "vps")
        tunnel_t = self.table(data, "tunnel")
        if "homes" in data and "home_address" in tunnel_t:
            raise self.fail(Loc("tunnel", key="home_address"), "[tunnel] 'home_address' is "
                            "for a site with one [home]: give each [[homes]] entry its own "
                            'address = "..." instead')

        try:
            tunnel = Tunnel.from_values(**tunnel_t)
        except ModelError as err:
            raise self.model_error(err, "tunnel") from None
        try:
            vps = VpsSpec(**vps_t)
        except ModelError as err:
            raise self.model_error(err, "vps") from None
        homes = self.homes(data)

        raw_services = data.get("services", [])
        if not isinstance(raw_services, list):
            raise self.fail(Loc("", key="services"), "'services' must be an array of tables: "
                            "write each service as a [[services]] table")
        services: list[Service] = []
        raw_ports: dict[tuple[int, str], str] = {}
        for index, raw in enumerate(raw_services):
            svc_t = self.table(data, "services", index, raw)
            ports: list[PortSpec] = []
            for text in svc_t["ports"]:
                try:
                    port = PortSpec.parse(text)
                except ModelError as err:
                    raise self.fail(Loc("services", index, "ports", text),
                                    f"[services] 'ports': {err}") from None
                ports.append(port)
                raw_ports.setdefault((index, str(port)), text)
            try:
                services.append(Service(
                    name=svc_t["name"],
                    image=svc_t["image"],
                    user=svc_t["user"],
                    ports=tuple(ports),
                    env=tuple(svc_t.get("env", {}).items()),
                    volumes=tuple(svc_t.get("volumes", ())),
                    command=tuple(svc_t.get("command", ())),
                    network=svc_t.get("network", "auto"),
                    allow_system_user=svc_t.get("allow_system_user", False),
                    home=svc_t.get("home"),
                ))
            except ModelError as err:
                raise self.model_error(err, "services", index, raw_ports) from None

        name = site_t.get("name", stem)
        try:
            return Site(
                name=name,
                vps=vps,
                homes=homes,
                tunnel=tunnel,
                services=tuple(services),
                ssh_config=site_t.get("ssh_config"),
                known_hosts=site_t.get("known_hosts"),
                whoami_url=site_t.get("whoami_url"),
                client_ip=site_t.get("client_ip", "preserve"),
            )
        except ModelError as err:
            if "name" not in site_t and err.where == ("name",):
                raise self.fail(Loc("site"), f"[site] has no name and the file name "
                                f"{stem!r} is not a valid site name: add [site] "
                                f'name = "home"') from None
            raise self.model_error(err, "site", raw_ports=raw_ports) from None


    def homes(self, data: dict[str, Any]) -> tuple[HomeSpec, ...]:
        if "home" in data:
            try:
                return (HomeSpec(**self.table(data, "home")),)
            except ModelError as err:
                raise self.model_error(err, "home") from None
        raw = data["homes"]
        if not isinstance(raw, list) or not raw:
            raise self.fail(Loc("", key="homes"), "'homes' must be an array of tables: "
                            "write each home as a [[homes]] table")
        homes = []
        for index, item in enumerate(raw):
            try:
                homes.append(HomeSpec(**self.table(data, "homes", index, item)))
            except ModelError as err:
                raise self.model_error(err, "homes", index) from None
        return tuple(homes)



def loads(text: str, source: str = "<inventory>", stem: str = "site") -> Site:
    """Parse inventory text. `source` names the file in messages; `stem` is the site name
    used when [site] has none."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = " ".join(str(err).split())
        match = re.search(r"at line (\d+)", message)
        line = int(match.group(1)) if match else max(1, text.count("\n") + 1)
        raise InventoryError(f"{source}:{line}: {message}; fix the TOML syntax") from None
    return _Reader(text, source).read(data, stem)


def load(path: str | os.PathLike[str]) -> Site:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InventoryError(f"{path}: cannot read it ({err.strerror or err}): check the path "
                             "or create it with bootstrap") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InventoryError(f"{path}:{line}: the file is not UTF-8: save it as UTF-8") from None
    return loads(text, str(path), path.stem)
