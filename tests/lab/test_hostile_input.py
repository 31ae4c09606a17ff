"""Safety (README "Safety"), against its own lab instance "labhi" (index 17).

Values are values: hostile host names, ports and site names are refused before any
connection; hostile service values reach podman as literal data, never as shell.

What the modules of the Safety promises share (the lab instance, run, state): safety_env.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import socket
import threading
from pathlib import Path

import pytest
from rich.console import Console

from tests.lab.env import sh
from tests.lab.safety_env import (
    PWNED,
    inv,
    lab_fixtures,
    run,
    site_copy,
)
from tunnelops import commands
from tunnelops.inventory.new import new_site
from tunnelops.inventory.read import load, loads
from tunnelops.inventory.write import save
from tunnelops.lab import Lab
from tunnelops.lab.topology import HOSTS

pytestmark = pytest.mark.lab

labs, pristine = lab_fixtures("labhi", 17)


# ============================================================================ 8a. hostile input
class Trap:
    """A TCP listener standing in for both hosts: counts every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()

    def close(self) -> None:
        self.sock.close()


HOSTILE_HOSTS = ["trap-vps;touch " + PWNED, "$(touch " + PWNED + ")", "`touch " + PWNED + "`",
                 "trap-vps'x", 'trap"vps', "trap-vps\ntouch " + PWNED, "-oProxyCommand=touch",
                 "trap vps", "trap|vps", "trap&vps", "root@trap>x"]


def test_hostile_hosts_ports_and_names_refused_before_any_connection(tmp_path: Path) -> None:
    trap = Trap()
    try:
        config = tmp_path / "ssh_config"
        config.write_text("".join(f"Host trap-{r}\n    HostName 127.0.0.1\n    Port {trap.port}\n"
                                  f"    User root\n\n" for r in HOSTS))
        inv_dir = tmp_path / "inventory"
        inv_dir.mkdir()
        good = new_site("trap", "trap-vps", "trap-home", ssh_config=str(config),
                        known_hosts=str(tmp_path / "known_hosts"))
        good = dataclasses.replace(good, services=(
            loads('[vps]\nhost="a"\n[home]\nhost="b"\n[[services]]\nname="game"\n'
                  'image="x/y:1"\nuser="gamer"\nports=["12345/udp"]\n').services))
        save(inv_dir / "trap.toml", good)
        text = (inv_dir / "trap.toml").read_text()
        bad_files = {
            "badhost": text.replace('host = "trap-vps"', 'host = "trap-vps;touch /tmp/x"'),
            "badname": text.replace('name = "game"', 'name = "ga;me"'),
            "badport": text.replace('"12345/udp"', '"12345/udp;id"'),
            "baduser": text.replace('user = "gamer"', 'user = "$(id)"'),
        }
        for name, body in bad_files.items():
            assert body != text, name
            (inv_dir / f"{name}.toml").write_text(body.replace('name = "trap"', f'name = "{name}"'))
        files = {p.name: p.read_bytes() for p in inv_dir.iterdir()}

        cases: list[tuple[list[str], str]] = []
        for host in HOSTILE_HOSTS:
            cases.append((["bootstrap", "--site", "evil", "--vps", host, "--home", "trap-home"],
                          "host"))
            cases.append((["bootstrap", "--site", "evil", "--vps", "trap-vps", "--home", host],
                          "host"))
        cases += [
            (["bootstrap", "--site", "x;id", "--vps", "trap-vps", "--home", "trap-home"], "site"),
            (["add-port", "12347/udp;id", "--site", "trap"], "12347/udp;id"),
            (["add-port", "$(id)/udp", "--site", "trap"], "$(id)"),
            (["add-port", "12347/udp", "--service", "game;id", "--site", "trap"], "game;id"),
            (["remove-port", "`id`/tcp", "--site", "trap"], "`id`"),
            *((["bootstrap", "--site", name], name.removeprefix("bad")) for name in bad_files),
        ]
        # In this process (fast) for every case, through `inv` for a few: the same one line.
        for argv, about in cases:
            opts = commands.Options(inventory_dir=inv_dir, site=argv[argv.index("--site") + 1],
                                    console=Console(file=io.StringIO()))
            with pytest.raises(commands.UsageError) as err:
                if argv[0] == "bootstrap":
                    vps = argv[argv.index("--vps") + 1] if "--vps" in argv else None
                    home = argv[argv.index("--home") + 1] if "--home" in argv else None
                    commands.bootstrap(opts, vps, home)
                else:
                    service = argv[argv.index("--service") + 1] if "--service" in argv else None
                    commands.change_port(opts, argv[1], service, add=argv[0] == "add-port")
            msg = str(err.value)
            assert "\n" not in msg and about.split("\n")[0] in msg, (argv, msg)
        for argv, about in cases[::5]:
            proc = inv(None, *argv, inventory_dir=inv_dir)  # type: ignore[arg-type]
            assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
            lines = (proc.stdout + proc.stderr).strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (argv, lines)
            assert about.split("\n")[0] in lines[0], (argv, lines)
        assert trap.accepted == 0
        assert {p.name: p.read_bytes() for p in inv_dir.iterdir()} == files
        assert not Path(PWNED).exists()

        # the control: a valid site does reach the trap (and fails there, in one line) --
        # once the bad files are gone: an unreadable site file beside it is refused too (a
        # collision with it on a shared host could not be ruled out: tunnelops.fleet)
        for name in bad_files:
            (inv_dir / f"{name}.toml").unlink()
        opts = commands.Options(inventory_dir=inv_dir, site="trap",
                                console=Console(file=io.StringIO()))
        report = commands.bootstrap(opts, None, None)
        assert not report.ok and trap.accepted >= 1
        assert all("\n" not in (h.error or "") and h.error for h in report.hosts.values())
    finally:
        trap.close()


# ============================================================================ 8b. literal data
def test_hostile_service_values_reach_podman_as_literal_data(labs: Lab) -> None:
    def pwned(n: int) -> str:
        return f"{PWNED}-{n}"

    env = (("SEMI", f"x; touch {pwned(1)}"), ("SUBST", f"$(touch {pwned(2)})"),
           ("TICKS", f"`touch {pwned(3)}`"), ("QUOTES", f"'\"; touch {pwned(4)}; echo '\""),
           ("MORE", "a|b&c>d<e(f){g}*?!\\ $HOME ${IFS} %s %n \t tab"))
    volume_dir = f"/srv/t;touch {pwned(5)} $(touch {pwned(6)}) 'q\""
    command = ("/bin/sh", "/echo.sh", f"$(touch {pwned(7)})", f"`touch {pwned(8)}`",
               f"a;touch {pwned(9)}", "it's \"quoted\"", "")
    labs.exec("home", ["mkdir", "-p", "-m", "755", volume_dir])
    site = load(labs.inventory)
    game = dataclasses.replace(site.services[0], env=env, volumes=(f"{volume_dir}:/data:ro",),
                               command=command)
    name = site_copy(labs, "hostile", services=(game,))
    out = run(labs, site=name)
    assert out.ok, out
    info = json.loads(labs.exec("home", ["podman", "inspect", game.container_name],
                                user="gamer").stdout)[0]
    for key, value in env:
        assert f"{key}={value}" in info["Config"]["Env"], key
    assert [m["Source"] for m in info["Mounts"]] == [volume_dir]
    assert [info["Path"], *info["Args"]] == list(command)
    assert info["State"]["Running"]
    for role in HOSTS:
        assert sh(labs, role, f"ls -d {PWNED}* 2>/dev/null; :") == "", role
    inside = labs.exec("home", ["podman", "exec", game.container_name, "ls", "/tmp"],
                       user="gamer").stdout.decode()
    assert "pwned" not in inside
    assert not list(Path("/tmp").glob(Path(PWNED).name + "*"))
    again = run(labs, site=name)
    assert again.ok and again.changed() == 0, again  # the same spec, read back the same
    assert run(labs).ok  # the lab's own service again
