"""firewalld's zone changes over its D-Bus API, by ONE process of the interpreter firewall-cmd
runs on: the calls firewall-cmd makes for `[--permanent] --change-interface`, `--add-port` and
`--remove-port`, without its imports (firewall.client, GObject, libnm: most of each call's
time, and the lab's cold firewall step was four of them).

firewall-cmd itself where it decides more than firewalld's calls: `--permanent
--change-interface` of an interface NetworkManager holds (a profile active on it that
NetworkManager did not generate) sets that profile's connection.zone through libnm, when
firewall-cmd can import it; that one operation is handed to firewall-cmd, which decides as
before. Where the process cannot start (no dbus module, firewalld not on the bus) it exits 3
having changed nothing, and the same operations run as firewall-cmd commands."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from tunnelops.probes.firewall import DBUS_PRELUDE

# argv: the zone, the operations as JSON: [[verb, kind, item], ...], verb "bind" (item: an
# interface), "add" or "remove" (item: PORT/PROTO); kind "permanent" or "runtime". What
# firewall-cmd takes for success (a port already open, an interface already in the zone) is
# success; any other error: its message on stderr, exit 1, the operations after it not run.
APPLY = DBUS_PRELUDE + r"""
import subprocess
FINE = ("ALREADY_ENABLED", "NOT_ENABLED", "ZONE_ALREADY_SET", "ALREADY_SET")
zone, ops = sys.argv[1], json.loads(sys.argv[2])
try:
    bus = dbus.SystemBus()
    if not bus.name_has_owner(F):  # firewall-cmd says so, in its words
        sys.exit(3)
    fw = obj(bus, F, "/org/fedoraproject/FirewallD1")
    cfg = obj(bus, F, "/org/fedoraproject/FirewallD1/config")
except dbus.DBusException:
    sys.exit(3)


def call(obj, iface, method, *args):
    try:
        return getattr(obj, method)(*args, dbus_interface=iface)
    except dbus.DBusException as e:
        msg = e.get_dbus_message() or e.get_dbus_name() or str(e)
        if msg.split(":")[0].strip() in FINE:
            return None
        sys.stderr.write("Error: %s\n" % msg)
        sys.exit(1)


def config_zone(name):
    return obj(bus, F, call(cfg, F + ".config", "getZoneByName", name))


def nm_holds(iface):
    # firewall-cmd's test (fw_nm.nm_get_connection_of_interface): NetworkManager's device of
    # that IP interface has an active connection whose profile it did not generate; where
    # this cannot tell, firewall-cmd decides
    try:
        if not bus.name_has_owner(N):
            return False
        nm = obj(bus, N, "/org/freedesktop/NetworkManager")
        try:
            dev = nm.GetDeviceByIpIface(iface, dbus_interface=N)
        except dbus.DBusException:
            return False  # no device of that name
        ac = obj(bus, N, dev).Get(N + ".Device", "ActiveConnection", dbus_interface=P)
        if ac == "/":
            return False
        con = obj(bus, N, ac).Get(N + ".Connection.Active", "Connection",
                                        dbus_interface=P)
        flags = obj(bus, N, con).Get(N + ".Settings.Connection", "Flags",
                                           dbus_interface=P)
        return not flags & 2  # NM_SETTINGS_CONNECTION_FLAG_NM_GENERATED
    except dbus.DBusException:
        return True


for verb, kind, item in ops:
    if verb == "bind" and kind == "permanent":
        if nm_holds(item):
            code = subprocess.call(["firewall-cmd", "-q", "--permanent", "--zone=" + zone,
                                    "--change-interface=" + item])
            if code:
                sys.exit(code)
            continue
        old = str(call(cfg, F + ".config", "getZoneOfInterface", item) or "")
        if old != zone:
            if old:
                call(config_zone(old), F + ".config.zone", "removeInterface", item)
            call(config_zone(zone), F + ".config.zone", "addInterface", item)
    elif verb == "bind":
        call(fw, F + ".zone", "changeZoneOfInterface", zone, item)
    else:
        port, proto = item.split("/")
        method = "addPort" if verb == "add" else "removePort"
        if kind == "permanent":
            call(config_zone(zone), F + ".config.zone", method, port, proto)
        elif verb == "add":
            call(fw, F + ".zone", method, zone, port, proto, 0)
        else:
            call(fw, F + ".zone", method, zone, port, proto)
"""

OPTION = {"bind": "--change-interface", "add": "--add-port", "remove": "--remove-port"}


@dataclass(frozen=True)
class Op:
    verb: str  # bind, add, remove
    kind: str  # permanent, runtime
    items: tuple[str, ...]  # the interface; the ports


def firewall_cmd(zone: str, op: Op) -> str:
    """The firewall-cmd command of one operation (every port of it in one call)."""
    q = shlex.quote
    flag = "--permanent " if op.kind == "permanent" else ""
    return (f"firewall-cmd -q {flag}--zone={q(zone)} "
            + " ".join(f"{OPTION[op.verb]}={q(x)}" for x in op.items))


def apply_shell(zone: str, ops: list[Op]) -> str:
    """Shell running OPS in one process of firewall-cmd's interpreter (its first line, read by
    a builtin); firewall-cmd's commands where that process could not start (exit 3)."""
    q = shlex.quote
    spec = json.dumps([[op.verb, op.kind, x] for op in ops for x in op.items],
                      separators=(",", ":"))
    fallback = "; ".join(firewall_cmd(zone, op) for op in ops)
    return ("_py=; IFS= read -r _py < \"$(command -v firewall-cmd)\" 2>/dev/null || :; "
            "_py=${_py#\\#!}; _rc=3\n"
            f"case $_py in *python*) $_py -c {q(APPLY)} {q(zone)} {q(spec)} "
            "&& _rc=0 || _rc=$?;; esac\n"
            f"case $_rc in 0) ;; 3) {fallback};; *) exit $_rc;; esac")
