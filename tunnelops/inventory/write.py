"""Writing a site file: tomlkit edits the existing document, so the user's comments, key
order and layout survive; the file is replaced atomically, and never one that does not read
back. tomlkit is imported here, when writing: reading a site (every run) needs tomllib alone."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from tunnelops.inventory.read import loads
from tunnelops.model.hosts import DEFAULT_HOME, HomeSpec
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.site import Site
from tunnelops.model.tunnel import Tunnel
from tunnelops.model.values import ModelError


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


def write_atomic(path: Path, text: str) -> None:
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
    write_atomic(path, dumps(site, existing, path.stem))
