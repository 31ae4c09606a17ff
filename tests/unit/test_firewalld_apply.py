"""firewalld's changes in one process (backends/firewalld_dbus.py): the D-Bus calls the
script makes, against a stand-in `dbus` module that logs them and answers as a recorded
firewalld and NetworkManager would; and the shell around it, against a stand-in interpreter:
one start, firewall-cmd's own commands only where that process could not start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunnelops.backends.firewalld_dbus import APPLY, Op, apply_shell

FW = "/org/fedoraproject/FirewallD1"
NM = "/org/freedesktop/NetworkManager"
FAKE_DBUS = '''
import json, os


class DBusException(Exception):
    def __init__(self, msg=""):
        super().__init__(msg)
        self.msg = msg

    def get_dbus_message(self):
        return self.msg

    def get_dbus_name(self):
        return "org.fedoraproject.FirewallD1.Exception"


STATE = json.loads(os.environ["FAKE_DBUS"])


class Obj:
    def __init__(self, path):
        self.path = path

    def __getattr__(self, method):
        def call(*args, dbus_interface=""):
            words = [self.path, method, *map(str, args)]
            with open(os.environ["LOG"], "a") as f:
                f.write(" ".join(words) + "\\n")
            for key in (" ".join(words), " ".join(words[:2])):
                if key in STATE:
                    r = STATE[key]
                    if isinstance(r, dict):
                        raise DBusException(r["error"])
                    return r
            return None
        return call


class Bus:
    def name_has_owner(self, name):
        return name in STATE.get("owners", [])

    def get_object(self, name, path, introspect=True):
        assert not introspect, 'a proxy that introspects: firewalld builds its XML in Python'
        return Obj(str(path))


def SystemBus():
    return Bus()
'''
FIREWALLD = {"owners": ["org.fedoraproject.FirewallD1"],
             f"{FW}/config getZoneOfInterface": "",
             f"{FW}/config getZoneByName public": f"{FW}/config/zone/0",
             f"{FW}/config getZoneByName trusted": f"{FW}/config/zone/1"}
COLD = [Op("bind", "permanent", ("wg0",)), Op("bind", "runtime", ("wg0",)),
        Op("add", "permanent", ("12345/udp", "12346/tcp")),
        Op("add", "runtime", ("12345/udp", "12346/tcp"))]


def spec(ops: list[Op]) -> str:
    return json.dumps([[op.verb, op.kind, x] for op in ops for x in op.items])


def apply(tmp_path: Path, state: dict, ops: list[Op]) -> tuple[subprocess.CompletedProcess,
                                                                  list[str]]:
    """APPLY run by this interpreter with the stand-in dbus module (and a stand-in
    firewall-cmd on PATH); its exit, and the calls it made."""
    (tmp_path / "dbus.py").write_text(FAKE_DBUS)
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    (bin_ / "firewall-cmd").write_text(f"#!/bin/sh\necho \"firewall-cmd $*\" >> {tmp_path}/log\n")
    (bin_ / "firewall-cmd").chmod(0o755)
    log = tmp_path / "log"
    log.write_text("")
    res = subprocess.run([sys.executable, "-c", APPLY, "public", spec(ops)],
                         capture_output=True, text=True, check=False,
                         env={"PYTHONPATH": str(tmp_path), "FAKE_DBUS": json.dumps(state),
                              "LOG": str(log), "PATH": f"{bin_}:/usr/bin:/bin"})
    return res, log.read_text().splitlines()


def test_a_cold_firewall_step_is_firewall_cmds_calls_in_one_process(tmp_path: Path) -> None:
    """The four firewall-cmd commands' D-Bus calls, in their order: the permanent binding in
    the zone's file (no NetworkManager here), the runtime one, the ports of both views."""
    res, log = apply(tmp_path, FIREWALLD, COLD)
    assert res.returncode == 0, res.stderr
    assert log == [
        f"{FW}/config getZoneOfInterface wg0",
        f"{FW}/config getZoneByName public",
        f"{FW}/config/zone/0 addInterface wg0",
        f"{FW} changeZoneOfInterface public wg0",
        f"{FW}/config getZoneByName public", f"{FW}/config/zone/0 addPort 12345 udp",
        f"{FW}/config getZoneByName public", f"{FW}/config/zone/0 addPort 12346 tcp",
        f"{FW} addPort public 12345 udp 0", f"{FW} addPort public 12346 tcp 0"]


def test_an_interface_bound_elsewhere_leaves_that_zone_first(tmp_path: Path) -> None:
    state = {**FIREWALLD, f"{FW}/config getZoneOfInterface": "trusted"}
    res, log = apply(tmp_path, state, [Op("bind", "permanent", ("wg0",)),
                                       Op("remove", "permanent", ("1/tcp",)),
                                       Op("remove", "runtime", ("1/tcp",))])
    assert res.returncode == 0, res.stderr
    assert log == [f"{FW}/config getZoneOfInterface wg0",
                   f"{FW}/config getZoneByName trusted", f"{FW}/config/zone/1 removeInterface wg0",
                   f"{FW}/config getZoneByName public", f"{FW}/config/zone/0 addInterface wg0",
                   f"{FW}/config getZoneByName public", f"{FW}/config/zone/0 removePort 1 tcp",
                   f"{FW} removePort public 1 tcp"]


def nm_state(flags: int) -> dict:
    return {**FIREWALLD, "owners": [*FIREWALLD["owners"], "org.freedesktop.NetworkManager"],
            f"{NM} GetDeviceByIpIface wg0": f"{NM}/Devices/3",
            f"{NM}/Devices/3 Get org.freedesktop.NetworkManager.Device ActiveConnection":
                f"{NM}/ActiveConnection/2",
            f"{NM}/ActiveConnection/2 Get org.freedesktop.NetworkManager.Connection.Active "
            "Connection": f"{NM}/Settings/2",
            f"{NM}/Settings/2 Get org.freedesktop.NetworkManager.Settings.Connection Flags":
                flags}


def test_an_interface_networkmanager_holds_is_bound_by_firewall_cmd(tmp_path: Path) -> None:
    """A profile active on the interface: firewall-cmd sets its connection.zone (through
    libnm, which this process does not load), as before; the runtime binding stays ours."""
    res, log = apply(tmp_path, nm_state(0), COLD[:2])
    assert res.returncode == 0, res.stderr
    assert "firewall-cmd -q --permanent --zone=public --change-interface=wg0" in log
    assert not any("addInterface" in x or "getZoneOfInterface" in x for x in log)
    assert log[-1] == f"{FW} changeZoneOfInterface public wg0"


@pytest.mark.parametrize("flags", [2, 15])  # NM_GENERATED; the lab's external wireguard-go wg0
def test_a_profile_networkmanager_generated_is_not_one_firewall_cmd_sets(
        tmp_path: Path, flags: int) -> None:
    res, log = apply(tmp_path, nm_state(flags), COLD[:1])
    assert res.returncode == 0, res.stderr
    assert not any(x.startswith("firewall-cmd") for x in log)
    assert f"{FW}/config/zone/0 addInterface wg0" in log


def test_no_such_device_for_networkmanager_binds_in_the_zones_file(tmp_path: Path) -> None:
    state = {**nm_state(0), f"{NM} GetDeviceByIpIface wg0": {"error": "UnknownDevice"}}
    res, log = apply(tmp_path, state, COLD[:1])
    assert res.returncode == 0, res.stderr
    assert f"{FW}/config/zone/0 addInterface wg0" in log


def test_what_firewall_cmd_takes_for_success_is_success_and_an_error_stops(
        tmp_path: Path) -> None:
    state = {**FIREWALLD, f"{FW} changeZoneOfInterface": {"error": "ZONE_ALREADY_SET: public"},
             f"{FW}/config/zone/0 addPort 12345 udp": {"error": "ALREADY_ENABLED: 12345:udp"},
             f"{FW}/config/zone/0 addPort 12346 tcp": {"error": "INVALID_PORT: 12346"}}
    res, log = apply(tmp_path, state, COLD)
    assert res.returncode == 1
    assert res.stderr == "Error: INVALID_PORT: 12346\n"
    assert log[-1] == f"{FW}/config/zone/0 addPort 12346 tcp"  # the runtime ports: not tried


def test_firewalld_not_on_the_bus_changes_nothing_and_says_exit_3(tmp_path: Path) -> None:
    res, log = apply(tmp_path, {"owners": []}, COLD)
    assert (res.returncode, log) == (3, [])


# --------------------------------------------------------------------------- the shell around it
FAKE_PY = """#!/bin/sh
# a stand-in for firewall-cmd's interpreter: -c CODE ZONE OPS; logs its start
[ "$1" = -c ] || exec sh "$@"  # firewall-cmd itself
echo "python $3 $4" >> "$LOG"
exit "$CODE"
"""
FAKE_FIREWALL_CMD = """#!{py}
echo "firewall-cmd $*" >> "$LOG"
"""


@pytest.mark.parametrize("code", [0, 3, 1])
def test_one_start_of_the_interpreter_and_firewall_cmd_only_if_it_could_not_start(
        tmp_path: Path, code: int) -> None:
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "fakepython").write_text(FAKE_PY)
    (bin_ / "firewall-cmd").write_text(FAKE_FIREWALL_CMD.format(py=bin_ / "fakepython"))
    for f in bin_.iterdir():
        f.chmod(0o755)
    log = tmp_path / "log"
    script = (f"export PATH={bin_}:$PATH LOG={log} CODE={code}\n"
              f"( set -e\n{apply_shell('public', COLD)}\necho done >> {log}\n)")
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    lines = log.read_text().splitlines()
    assert lines[0] == f"python public {spec(COLD).replace(' ', '')}"
    if code == 0:
        assert (res.returncode, lines[1:]) == (0, ["done"])
    elif code == 3:
        assert res.returncode == 0
        assert lines[1:] == [
            "firewall-cmd -q --permanent --zone=public --change-interface=wg0",
            "firewall-cmd -q --zone=public --change-interface=wg0",
            "firewall-cmd -q --permanent --zone=public --add-port=12345/udp --add-port=12346/tcp",
            "firewall-cmd -q --zone=public --add-port=12345/udp --add-port=12346/tcp", "done"]
    else:
        assert (res.returncode, lines[1:]) == (1, [])  # the step fails, nothing more runs
