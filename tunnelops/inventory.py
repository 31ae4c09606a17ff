"""Site inventory files: inventory/NAME.toml <-> model.Site.

Reading uses tomllib and rejects unknown keys, so a typo is an error rather than a silently
ignored setting. Every error is one line, `FILE:LINE: what is wrong: how to fix it`; the line
is found by scanning the text for the offending table, key and (for ports) value.
Writing uses tomlkit on the existing document so the user's comments, key order and layout
survive, and replaces the file atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from tunnelops.locations import EXAMPLE_NAME
from tunnelops.model.hosts import DEFAULT_HOME, HomeSpec, HostRef, VpsSpec
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.site import Site
from tunnelops.model.tunnel import Tunnel
from tunnelops.model.values import ModelError, Where, check_name

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
_EXAMPLES = {
    "str": '"text"',
    "int": "51821",
    "bool": "true",
    "str_list": '["12345/udp"]',
    "str_table": '{ KEY = "value" }',
}


class InventoryError(ValueError):
    """An inventory file is unreadable or invalid. str() is exactly one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


@dataclasses.dataclass(frozen=True)
class _Loc:
    """Where a problem is: table ('' for top level), AoT index, key, and a value to find."""

    table: str
    index: int | None = None
    key: str | None = None
    needle: str | None = None

    @property
    def label(self) -> str:
        text = f"[{self.table}]" if self.table else "(top level)"
        return f"{text} {self.key!r}" if self.key else text


# --------------------------------------------------------------------------- locating lines

_NAME = r"[A-Za-z0-9_-]+"
_HEADER_RE = re.compile(
    rf"[ \t]*(\[\[?)[ \t]*({_NAME}(?:[ \t]*\.[ \t]*{_NAME})*)[ \t]*(\]\]?)[ \t]*(?:#.*)?"
)


def _key_re(key: str) -> re.Pattern[str]:
    k = re.escape(key)
    return re.compile(rf"[ \t]*(?:{k}|\"{k}\"|'{k}')[ \t]*[=.]")


def _bracket_delta(line: str) -> int:
    """Net '[' minus ']' outside strings and comments, to follow a multi-line array."""
    depth, quote, i = 0, "", 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        i += 1
    return depth


def _find_needle(lines: list[str], key_line: int, needle: str) -> int | None:
    literals = (f'"{needle}"', f"'{needle}'", needle)
    depth = 0
    for number in range(key_line, len(lines) + 1):
        line = lines[number - 1]
        if any(lit in line for lit in literals):
            return number
        depth += _bracket_delta(line if number > key_line else line.partition("=")[2])
        if depth <= 0:
            return None
    return None


def _locate(text: str, loc: _Loc) -> int:
    """1-based line of loc in text: the value, else the key, else the table header, else 1.
    Lines are counted on '\\n' only, as tomllib counts them."""
    lines = text.split("\n")
    key_re = _key_re(loc.key) if loc.key else None
    table_re = _key_re(loc.table) if loc.table else None
    current: tuple[str, int | None] = ("", None)
    seen_aot: dict[str, int] = {}
    table_line: int | None = None
    for number, line in enumerate(lines, 1):
        header = _HEADER_RE.fullmatch(line)
        if header and (header.group(1) == "[[") == (header.group(3) == "]]"):
            name = re.sub(r"[ \t]", "", header.group(2))
            index = None
            if header.group(1) == "[[":
                index = seen_aot[name] = seen_aot.get(name, -1) + 1
            current = (name, index)
            if table_line is None and name == loc.table and loc.index in (None, index):
                table_line = number
                if key_re is None:
                    return number
            continue
        in_target = current[0] == loc.table and loc.index in (None, current[1])
        if in_target and key_re is not None and key_re.match(line):
            if loc.needle is not None:
                found = _find_needle(lines, number, loc.needle)
                if found is not None:
                    return found
            return number
        # A table written as a top-level inline table or dotted key: `vps = {...}`.
        if table_re and current == ("", None) and table_line is None and table_re.match(line):
            table_line = number
    return table_line or 1


# --------------------------------------------------------------------------- reading


class _Reader:
    """Turns parsed TOML data into a Site, raising InventoryError with a located line."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def fail(self, loc: _Loc, message: str) -> InventoryError:
        return InventoryError(f"{self.source}:{_locate(self.text, loc)}: {message}")

    def model_error(self, err: ModelError, table: str, index: int | None = None,
                    raw_ports: Mapping[tuple[int, str], str] | None = None) -> InventoryError:
        where: Where = err.where
        if len(where) >= 2 and where[0] in ARRAYS and isinstance(where[1], int):
            table, index, where = str(where[0]), where[1], where[2:]
        key = where[0] if where and isinstance(where[0], str) else None
        needle = where[1] if len(where) > 1 and isinstance(where[1], str) else None
        if needle is not None and raw_ports is not None and index is not None:
            needle = raw_ports.get((index, needle), needle)
        loc = _Loc(table, index, key, needle)
        return self.fail(loc, f"{loc.label}: {err}")

    def table(self, data: Mapping[str, Any], name: str, index: int | None = None,
              value: object = None) -> dict[str, Any]:
        """Check one table's keys and value kinds; returns its plain values."""
        if value is None:
            value = data.get(name, {})
        label = f"[[{name}]]" if name in ARRAYS else f"[{name}]"
        if not isinstance(value, dict):
            raise self.fail(_Loc(name, index), f"{label} must be a table: write it as {label} "
                            "followed by key = value lines")
        schema = SCHEMA[name]
        for key, item in value.items():
            loc = _Loc(name, index, key)
            if key not in schema:
                raise self.fail(loc, f"[{name}] unknown key {key!r}: use one of "
                                f"{', '.join(schema)}")
            kind = schema[key]
            if not _has_kind(item, kind):
                raise self.fail(loc, f"{loc.label}: expected {_KIND_NAMES[kind]}, got "
                                f"{_toml_type(item)}: write e.g. {key} = {_EXAMPLES[kind]}")
        for key in REQUIRED[name]:
            if key not in value:
                raise self.fail(_Loc(name, index), f"{label} is missing {key!r}: add "
                                f"{key} = {_EXAMPLES[SCHEMA[name][key]]}")
        return value

    def read(self, data: dict[str, Any], stem: str) -> Site:
        for name, value in data.items():
            is_table = isinstance(value, dict) or (
                isinstance(value, list) and bool(value)
                and all(isinstance(v, dict) for v in value))
            if name not in SCHEMA and not is_table:
                owner = next((t for t, keys in SCHEMA.items() if name in keys), "site")
                table = f"[[{owner}]]" if owner in ARRAYS else f"[{owner}]"
                raise self.fail(_Loc("", key=name), f"unknown top-level key {name!r}: keys "
                                f"belong in a table, e.g. under {table}")
            if name not in SCHEMA:
                raise self.fail(_Loc(name), f"unknown table [{name}]: use [site], [vps], "
                                "[home] (or [[homes]]), [tunnel] and [[services]]")
            if name not in ARRAYS and not isinstance(value, dict):
                raise self.fail(_Loc("", key=name), f"{name!r} must be a table: write it as "
                                f"[{name}] followed by key = value lines")
        if "vps" not in data:
            raise self.fail(_Loc("vps"), '[vps] table is missing: add [vps] with host = "..."')
        if "home" in data and "homes" in data:
            raise self.fail(_Loc("homes"), "both [home] and [[homes]]: a site with one home "
                            "has [home], one with several has a [[homes]] table each; keep "
                            "one of them")
        if "home" not in data and "homes" not in data:
            raise self.fail(_Loc("home"), '[home] table is missing: add [home] with '
                            'host = "..." (or a [[homes]] table per home)')
        site_t = self.table(data, "site")
        vps_t = self.table(data, "vps")
        tunnel_t = self.table(data, "tunnel")
        if "homes" in data and "home_address" in tunnel_t:
            raise self.fail(_Loc("tunnel", key="home_address"), "[tunnel] 'home_address' is "
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
            raise self.fail(_Loc("", key="services"), "'services' must be an array of tables: "
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
                    raise self.fail(_Loc("services", index, "ports", text),
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
                raise self.fail(_Loc("site"), f"[site] has no name and the file name "
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
            raise self.fail(_Loc("", key="homes"), "'homes' must be an array of tables: "
                            "write each home as a [[homes]] table")
        homes = []
        for index, item in enumerate(raw):
            try:
                homes.append(HomeSpec(**self.table(data, "homes", index, item)))
            except ModelError as err:
                raise self.model_error(err, "homes", index) from None
        return tuple(homes)


_KIND_NAMES = {
    "str": "a string",
    "int": "an integer",
    "bool": "true or false",
    "str_list": "an array of strings",
    "str_table": "a table of strings",
}


def _has_kind(value: object, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return type(value) is int
    if kind == "bool":
        return type(value) is bool
    if kind == "str_list":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _toml_type(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")


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


# --------------------------------------------------------------------------- writing


def _tunnel_values(t: Tunnel) -> dict[str, object]:
    return {
        "interface": t.interface,
        "subnet": str(t.subnet),
        "vps_address": str(t.vps_address),
        "home_address": str(t.home_address),
        "listen_port": t.listen_port,
        "keepalive": t.keepalive,
        "route_table": t.route_table,
        "rule_priority": t.rule_priority,
        "mtu": t.mtu,
    }


_NORMALISE: dict[str, Callable[[Any], object]] = {
    "subnet": lambda v: IPv4Network(v),
    "vps_address": lambda v: IPv4Address(v),
    "home_address": lambda v: IPv4Address(v),
    "public_ip": lambda v: IPv4Address(v),
}


def _unwrap(item: object) -> object:
    import tomlkit

    return item.unwrap() if isinstance(item, tomlkit.items.Item) else item


def _same(key: str, existing: object, desired: object) -> bool:
    existing = _unwrap(existing)
    if existing == desired:
        return True
    convert = _NORMALISE.get(key)
    if convert is None:
        return False
    try:
        return bool(convert(existing) == convert(desired))
    except (ValueError, TypeError):
        return False


def _update_table(table: Any, values: Mapping[str, object],
                  skip_when_absent: Mapping[str, object] | None = None) -> None:
    """Set changed keys, add missing ones, delete keys whose value became None.
    A key absent from the file whose value equals skip_when_absent[key] stays absent."""
    for key, value in values.items():
        present = key in table
        if value is None:
            if present:
                del table[key]
        elif present:
            if not _same(key, table[key], value):
                table[key] = value
        elif skip_when_absent is None or skip_when_absent.get(key, object()) != value:
            table[key] = value


def _port_list(items: object) -> list[str] | None:
    try:
        return [str(PortSpec.parse(_unwrap(v))) for v in items]  # type: ignore[attr-defined]
    except (ModelError, TypeError):
        return None


def _update_ports(table: Any, desired: list[str]) -> None:
    import tomlkit

    current = table.get("ports")
    if current is None or not isinstance(current, tomlkit.items.Array):
        table["ports"] = desired
        return
    existing = _port_list(current)
    if existing == desired:
        return
    if existing is not None:
        # Edit in place so the array keeps its layout and the comments of kept items.
        for i in reversed(range(len(existing))):
            if existing[i] not in desired:
                del current[i]
        kept = [p for p in existing if p in desired]
        for port in desired:
            if port not in kept:
                current.append(port)
        if _port_list(current) == desired:
            return
    table["ports"] = desired


def _update_service(table: Any, svc: Service, write_home: bool = False) -> None:
    import tomlkit

    _update_table(table, {"name": svc.name, "image": svc.image, "user": svc.user,
                          "network": svc.network}, skip_when_absent={"network": "auto"})
    if write_home or "home" in table:  # a one-home site's services need not say it
        _update_table(table, {"home": svc.home})
    _update_ports(table, [str(p) for p in svc.ports])
    env = dict(svc.env)
    current_env = table.get("env")
    if current_env is None:
        if env:
            inline = tomlkit.inline_table()
            inline.update(env)
            table["env"] = inline
    elif _unwrap(current_env) != env:
        if env and isinstance(current_env, (tomlkit.items.InlineTable, tomlkit.items.Table)):
            for key in [k for k in current_env if k not in env]:
                del current_env[key]
            _update_table(current_env, env)
        elif env:
            table["env"] = env
        else:
            del table["env"]
    for key, values in (("volumes", list(svc.volumes)), ("command", list(svc.command))):
        if key in table:
            if _unwrap(table[key]) != values:
                table[key] = values
        elif values:
            table[key] = values
    if (svc.allow_system_user or "allow_system_user" in table) \
            and _unwrap(table.get("allow_system_user")) != svc.allow_system_user:
        table["allow_system_user"] = svc.allow_system_user


def _new_service_table(svc: Service, write_home: bool = False) -> Any:
    import tomlkit

    table = tomlkit.table()
    _update_service(table, svc, write_home)
    return table


def _home_values(home: HomeSpec) -> dict[str, object]:
    return {"name": home.name, "host": str(home.host), "lan_interface": home.lan_interface,
            "address": None if home.address is None else str(home.address)}


def _update_homes(doc: Any, site: Site) -> bool:
    """[home] for a site with one home named "home" whose file says [home] (or is new),
    else a [[homes]] table per home. True when the file has [[homes]]."""
    import tomlkit
    import tomlkit.items

    one = site.homes[0]
    if (len(site.homes) == 1 and one.name == DEFAULT_HOME and one.address is None
            and "homes" not in doc):
        if "home" not in doc:
            doc.append("home", tomlkit.table())
        _update_table(doc["home"], {"host": str(one.host), "lan_interface": one.lan_interface})
        return False
    if "home" in doc:
        del doc["home"]
    if "homes" not in doc or not isinstance(doc["homes"], tomlkit.items.AoT):
        if "homes" in doc:
            del doc["homes"]
        aot = tomlkit.aot()
        for home in site.homes:
            table = tomlkit.table()
            _update_table(table, _home_values(home))
            aot.append(table)
        _insert_after(doc, "homes", aot, "vps")
        return True
    aot = doc["homes"]
    wanted = {h.name: h for h in site.homes}
    for i in reversed(range(len(aot))):
        if _unwrap(aot[i].get("name")) not in wanted:
            del aot[i]
    present = {_unwrap(t.get("name")): t for t in aot}
    for home in site.homes:
        if home.name in present:
            _update_table(present[home.name], _home_values(home))
        else:
            table = tomlkit.table()
            _update_table(table, _home_values(home))
            aot.append(table)
    return True


def _insert_after(doc: Any, key: str, value: Any, after: str) -> None:
    """doc[key] = value, placed right after the `after` table (else at the end)."""
    keys = list(doc.keys())
    if after not in keys:
        doc.append(key, value)
        return
    rest = [(k, doc[k]) for k in keys[keys.index(after) + 1:]]
    for k, _ in rest:
        del doc[k]
    doc.append(key, value)
    for k, v in rest:
        doc.append(k, v)


def _update_services(doc: Any, services: tuple[Service, ...], *,
                     write_home: bool = False) -> None:
    import tomlkit

    if "services" not in doc:
        if services:
            aot = tomlkit.aot()
            for svc in services:
                aot.append(_new_service_table(svc, write_home))
            doc.append("services", aot)
        return
    aot = doc["services"]
    if not isinstance(aot, tomlkit.items.AoT):
        # Written as an inline array of tables: rewrite it as [[services]] tables.
        del doc["services"]
        _update_services(doc, services, write_home=write_home)
        return
    wanted = {svc.name: svc for svc in services}
    for i in reversed(range(len(aot))):
        if _unwrap(aot[i].get("name")) not in wanted:
            del aot[i]
    present = {_unwrap(t.get("name")): t for t in aot}
    for svc in services:
        if svc.name in present:
            _update_service(present[svc.name], svc, write_home)
        else:
            if len(aot):
                aot[-1].add(tomlkit.nl())  # a blank line between [[services]] tables
            aot.append(_new_service_table(svc, write_home))


def dumps(site: Site, existing: str | None = None, stem: str | None = None) -> str:
    """The inventory text for site, editing `existing` text when given."""
    import tomlkit  # here: reading a site (every run) needs tomllib alone

    doc: Any = tomlkit.parse(existing) if existing is not None else tomlkit.document()
    fresh = existing is None
    if fresh:
        doc.add(tomlkit.comment("tunnelops site inventory: inventory/example.toml explains "
                                "every key."))
        doc.add(tomlkit.nl())

    def table(name: str) -> Any:
        if name not in doc:
            doc.append(name, tomlkit.table())
        return doc[name]

    site_values: dict[str, object] = {
        "name": site.name,
        "ssh_config": site.ssh_config,
        "known_hosts": site.known_hosts,
        "whoami_url": site.whoami_url,
    }
    if fresh or "site" in doc or site.name != stem or site.snat or any(
            v is not None for v in list(site_values.values())[1:]):
        # the default mode is written into a new file (so it can be found), never added to
        # an existing one that does not say it
        _update_table(table("site"), {**site_values, "client_ip": site.client_ip},
                      None if fresh else {"client_ip": "preserve"})
        if fresh:
            table("site")["client_ip"].comment(
                'the game sees players\' own addresses ("preserve") or the VPS\'s ("snat")')
    _update_table(table("vps"), {
        "host": str(site.vps.host),
        "public_ip": None if site.vps.public_ip is None else str(site.vps.public_ip),
        "wan_interface": site.vps.wan_interface,
    })
    several = _update_homes(doc, site)
    values = _tunnel_values(site.tunnel)
    defaults = None if fresh else _tunnel_values(Tunnel())
    if several:  # each [[homes]] entry says its own address
        values["home_address"] = None
        defaults = {k: v for k, v in (defaults or {}).items() if k != "home_address"} or None
    if fresh or "tunnel" in doc or site.tunnel != Tunnel():
        _update_table(table("tunnel"), values, defaults)
    _update_services(doc, site.services, write_home=several)
    return tomlkit.dumps(doc)


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same directory and rename: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: str | os.PathLike[str], site: Site) -> None:
    """Write site to path, keeping the existing file's comments, order and formatting."""
    path = Path(path)
    existing: str | None = None
    if path.exists():
        existing = path.read_text(encoding="utf-8")
        loads(existing, str(path), path.stem)  # never rewrite a file we cannot read back
    _write_atomic(path, dumps(site, existing, path.stem))


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """The inventory's lock (flock on its directory: no file is made, and a site file replaced
    by rename stays covered): every read-modify-write of a site file by tunnelops happens
    under it, so two commands never lose each other's changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update(path: str | os.PathLike[str], change: Callable[[Site], Site]) -> Site:
    """Apply `change` to the site as the file says it NOW, and save the result: under the
    file's lock, and compare-and-swap against anything else writing it meanwhile (an editor):
    the change is applied again to what the file became. Returns the new site."""
    path = Path(path)
    with locked(path):
        while True:
            before = path.read_text(encoding="utf-8")
            new = change(loads(before, str(path), path.stem))
            text = dumps(new, before, path.stem)
            if path.read_text(encoding="utf-8") != before:
                continue  # changed under us by something that does not take the lock
            if text != before:
                _write_atomic(path, text)
            return new


def update_discovered(path: str | os.PathLike[str], public_ip: IPv4Address | str | None,
                      wan_interface: str | None) -> Site:
    """Record what bootstrap discovered about the VPS (None: not discovered, keep what the
    file says); rewrites the file only if something changed. Returns the updated site."""
    changes: dict[str, object] = {}
    if public_ip is not None:
        changes["public_ip"] = public_ip
    if wan_interface is not None:
        changes["wan_interface"] = wan_interface

    def change(site: Site) -> Site:
        try:
            vps = dataclasses.replace(site.vps, **changes)  # type: ignore[arg-type]
        except ModelError as err:
            raise InventoryError(f"{path}: discovered value rejected: {err}") from None
        return dataclasses.replace(site, vps=vps)

    # what every re-run finds: the file already says it (read, not rendered, to know that)
    current = load(path)
    if change(current) == current:
        return current
    return update(path, change)


# --------------------------------------------------------------------------- finding


def _candidates(inventory_dir: Path) -> list[Path]:
    return sorted(p for p in inventory_dir.glob("*.toml") if p.name != EXAMPLE_NAME)


def site_files(inventory_dir: str | os.PathLike[str]) -> list[Path]:
    """Every site file of the inventory (example.toml aside), by name."""
    directory = Path(inventory_dir)
    return _candidates(directory) if directory.is_dir() else []


def _hosts(path: Path) -> tuple[object, list[object]]:
    """(the VPS host, every home's host) as the file writes them."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InventoryError(f"{path}: cannot read it ({err}): fix or remove it") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        loads(text, str(path), path.stem)  # raises the located syntax error
        raise  # pragma: no cover - loads always raises for undecodable text
    vps, home, homes = data.get("vps"), data.get("home"), data.get("homes")
    tables = [home] if isinstance(home, dict) else homes if isinstance(homes, list) else []
    return (vps.get("host") if isinstance(vps, dict) else None,
            [t.get("host") for t in tables if isinstance(t, dict)])


def find_site(inventory_dir: str | os.PathLike[str], vps: str | None = None,
              home: str | None = None, site: str | None = None) -> Path | None:
    """The inventory file for a site: by name, else by its hosts, else the only one.
    None when there is none yet (bootstrap then creates one)."""
    directory = Path(inventory_dir)
    if site is not None:
        try:
            check_name(site, "site name")
        except ModelError as err:
            raise InventoryError(f"--site: {err}") from None
        path = directory / f"{site}.toml"
        return path if path.exists() else None
    candidates = _candidates(directory) if directory.is_dir() else []
    if vps is not None or home is not None:
        matches = []
        for path in candidates:
            vps_host, home_hosts = _hosts(path)
            if (vps is None or vps_host == vps) and (home is None or home in home_hosts):
                matches.append(path)
        if len(matches) > 1:
            names = ", ".join(p.name for p in matches)
            raise InventoryError(f"several sites in {directory} match these hosts ({names}): "
                                 "pass --site NAME")
        return matches[0] if matches else None
    if len(candidates) > 1:
        names = ", ".join(p.stem for p in candidates)
        raise InventoryError(f"several sites in {directory} ({names}): pass --site NAME")
    return candidates[0] if candidates else None


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
