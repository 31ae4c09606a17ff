"""Inventory files: loading, located one-line errors, comment-preserving saves, finding."""

from __future__ import annotations

import dataclasses
import os
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tunnelops.inventory.edit import update, update_discovered
from tunnelops.inventory.find import find_site
from tunnelops.inventory.new import new_site
from tunnelops.inventory.read import load, loads
from tunnelops.inventory.schema import InventoryError
from tunnelops.inventory.write import dumps, save
from tunnelops.model.hosts import HomeSpec, HostRef, VpsSpec
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.site import Site
from tunnelops.model.tunnel import Tunnel
from tunnelops.model.values import ModelError

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "example.toml"

SEED_SITE = Site(
    name="home",
    vps=VpsSpec(HostRef("myvps"), IPv4Address("203.0.113.7"), "eth0"),
    homes=HomeSpec(HostRef("homeserver")),
    tunnel=Tunnel(),
    services=(
        Service(
            name="game",
            image="docker.io/example/game:latest",
            ports=(PortSpec("udp", 12345, 12345), PortSpec("tcp", 12346, 12346)),
            user="gamer",
            env=(("MAX_PLAYERS", "8"),),
            volumes=("/srv/game:/data:Z",),
        ),
    ),
)

# Line numbers in the error tests below refer to this text.
BASE = """\
# lab site
[site]
name = "lab"

[vps]
host = "root@10.0.0.1"   # the VPS

[home]
host = "home"

[tunnel]
listen_port = 51821

[[services]]
name = "game"
image = "docker.io/example/game:latest"
user = "gamer"
ports = [
    "12345/udp",   # game traffic
    "12346/tcp",
]

[[services]]
name = "web"
image = "docker.io/library/nginx:1.25"
user = "www"
ports = ["8080/tcp"]
env = { TZ = "UTC" }
"""


def error(text: str, source: str = "inventory/lab.toml") -> str:
    with pytest.raises(InventoryError) as err:
        loads(text, source, "lab")
    message = str(err.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- loading


def test_load_example_is_the_seed() -> None:
    assert load(EXAMPLE) == SEED_SITE


def test_load_base() -> None:
    site = loads(BASE, "x", "lab")
    assert site.name == "lab"
    assert site.vps.host.user == "root"
    assert [s.name for s in site.services] == ["game", "web"]
    assert site.service("web").env == (("TZ", "UTC"),)


def test_site_name_defaults_to_the_file_stem() -> None:
    text = BASE.replace('[site]\nname = "lab"\n', "")
    assert loads(text, "inventory/lab.toml", "lab").name == "lab"


def test_bad_file_stem_without_site_name() -> None:
    text = BASE.replace('[site]\nname = "lab"\n', "")
    with pytest.raises(InventoryError) as err:
        loads(text, "inventory/My Site.toml", "My Site")
    assert str(err.value) == ("inventory/My Site.toml:1: [site] has no name and the file name "
                              "'My Site' is not a valid site name: add [site] name = \"home\"")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # TOML syntax error
        ('listen_port = 51821', 'listen_port = 51821 51822',
         "inventory/lab.toml:12: Expected newline or end of document after a statement "
         "(at line 12, column 21); fix the TOML syntax"),
        # bad port, inside a multi-line array: the element's own line
        ('"12346/tcp",', '"70000/tcp",',
         "inventory/lab.toml:20: [services] 'ports': port 70000 in '70000/tcp' is out of "
         "range: use 1-65535"),
        # bad port in a one-line array of the second service
        ('ports = ["8080/tcp"]', 'ports = ["8080/tcp", "8081"]',
         "inventory/lab.toml:27: [services] 'ports': '8081' has no protocol: use PORT/PROTO, "
         "e.g. 12345/udp or 27015-27020/tcp"),
        # unknown key
        ('host = "home"', 'host = "home"\nhots = "x"',
         "inventory/lab.toml:10: [home] unknown key 'hots': use one of host, lan_interface"),
        # unknown key in the second [[services]]
        ('user = "www"', 'user = "www"\nport = 1',
         "inventory/lab.toml:27: [services] unknown key 'port': use one of name, image, user, "
         "ports, env, volumes, command, network, allow_system_user, home"),
        # duplicate service name: the second one's name line
        ('name = "web"', 'name = "game"',
         "inventory/lab.toml:24: [services] 'name': service name 'game' is used twice: give "
         "each [[services]] entry its own name"),
        # a port overlapping another service's: the later service's element
        ('ports = ["8080/tcp"]', 'ports = ["8080/tcp", "12340-12349/UDP"]',
         "inventory/lab.toml:27: [services] 'ports': port 12340-12349/udp of service 'web' "
         "overlaps 12345/udp of service 'game': give each port to one service"),
        # service port == the tunnel's listen port
        ('"12345/udp",   # game traffic', '"12345/udp",   # game traffic\n    "51821/udp",',
         "inventory/lab.toml:20: [services] 'ports': port 51821/udp of service 'game' includes "
         "the WireGuard listen port 51821/udp: pick another port or change [tunnel] "
         "listen_port"),
        # overlapping ports within one service
        ('"12346/tcp",', '"12346/tcp", "12345/udp",',
         "inventory/lab.toml:19: [services] 'ports': ports 12345/udp and 12345/udp of service "
         "'game' overlap: list each port once"),
        # wrong type
        ('listen_port = 51821', 'listen_port = "51821"',
         "inventory/lab.toml:12: [tunnel] 'listen_port': expected an integer, got a string: "
         "write e.g. listen_port = 51821"),
        # model error in [tunnel]
        ('listen_port = 51821', 'listen_port = 51821\nroute_table = 254',
         "inventory/lab.toml:13: [tunnel] 'route_table': route_table 254 is a kernel table "
         "(default/main/local): use another number, e.g. 201"),
        # bad host
        ('host = "root@10.0.0.1"', 'host = "root@10.0.0.1;x"',
         "inventory/lab.toml:6: [vps] 'host': host 'root@10.0.0.1;x' contains shell "
         "metacharacters ';': use an ssh_config alias for anything unusual"),
        # missing required key: the table header
        ('image = "docker.io/library/nginx:1.25"\n', "",
         "inventory/lab.toml:23: [[services]] is missing 'image': add image = \"text\""),
        # unknown table
        ("[tunnel]", "[tunel]",
         "inventory/lab.toml:11: unknown table [tunel]: use [site], [vps], [home] (or "
         "[[homes]]), [tunnel] and [[services]]"),
        # env with a non-string value
        ('env = { TZ = "UTC" }', "env = { TZ = 1 }",
         "inventory/lab.toml:28: [services] 'env': expected a table of strings, got a table: "
         "write e.g. env = { KEY = \"value\" }"),
        # client_ip: one of two modes
        ('name = "lab"', 'name = "lab"\nclient_ip = "nat"',
         "inventory/lab.toml:4: [site] 'client_ip': client_ip 'nat' is not a mode: use "
         "\"preserve\" (the game sees each player's address) or \"snat\" (it sees the VPS's "
         "tunnel address)"),
        ('name = "lab"', 'name = "lab"\nclient_ip = true',
         "inventory/lab.toml:4: [site] 'client_ip': expected a string, got a boolean: write "
         "e.g. client_ip = \"text\""),
        # site-level value
        ('name = "lab"', 'name = "lab"\nwhoami_url = "ftp://x"',
         "inventory/lab.toml:4: [site] 'whoami_url': whoami_url 'ftp://x' is not an http(s) "
         "URL: use e.g. \"https://ifconfig.me/ip\""),
    ],
)
def test_error_lines(old: str, new: str, message: str) -> None:
    assert old in BASE
    assert error(BASE.replace(old, new, 1)) == message


def test_missing_table() -> None:
    text = BASE.replace('[home]\nhost = "home"\n', "")
    assert error(text) == ("inventory/lab.toml:1: [home] table is missing: add [home] with "
                           "host = \"...\" (or a [[homes]] table per home)")


def test_unknown_top_level_key() -> None:
    text = "# x\nlisten_port = 1\n" + BASE
    assert error(text) == ("inventory/lab.toml:2: unknown top-level key 'listen_port': keys "
                           "belong in a table, e.g. under [tunnel]")


def test_syntax_error_duplicate_key() -> None:
    text = BASE.replace('name = "lab"', 'name = "lab"\nname = "lab2"')
    assert error(text).startswith("inventory/lab.toml:4: Cannot overwrite a value")


def test_services_must_be_tables() -> None:
    text = 'services = 3\n[vps]\nhost = "v"\n[home]\nhost = "h"\n'
    assert error(text) == ("inventory/lab.toml:1: 'services' must be an array of tables: "
                           "write each service as a [[services]] table")


def test_load_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as err:
        load(tmp_path / "none.toml")
    assert str(err.value) == (f"{tmp_path / 'none.toml'}: cannot read it (No such file or "
                              "directory): check the path or create it with bootstrap")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[vps]\nhost = "\xff"\n')
    with pytest.raises(InventoryError) as err:
        load(bad)
    assert str(err.value) == f"{bad}:2: the file is not UTF-8: save it as UTF-8"


# --------------------------------------------------------------------------- saving


def test_save_keeps_comments_and_order(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    original = EXAMPLE.read_text()
    path.write_text(original)
    site = load(path).with_port_added("27015-27020/udp")
    save(path, site)
    expected = original.replace(
        'ports = ["12345/udp", "12346/tcp"]  #',
        'ports = ["12345/udp", "12346/tcp", "27015-27020/udp"]  #',
    )
    assert expected != original
    assert path.read_text() == expected
    assert load(path) == site
    # Nothing changed: nothing rewritten.
    save(path, site)
    assert path.read_text() == expected


def test_client_ip_is_read_and_written_keeping_comments(tmp_path: Path) -> None:
    """Absent means "preserve", which is never added to a file that does not say it; a
    switch changes only that value, the comments around it stay."""
    path = tmp_path / "lab.toml"
    path.write_text(BASE)
    site = load(path)
    assert site.client_ip == "preserve" and not site.snat
    save(path, dataclasses.replace(site, services=site.services[:1]))
    assert "client_ip" not in path.read_text()
    path.write_text(BASE)
    snat = update(path, lambda s: dataclasses.replace(s, client_ip="snat"))
    assert snat.snat and load(path) == snat
    assert path.read_text() == BASE.replace('name = "lab"\n', 'name = "lab"\nclient_ip = "snat"\n')
    text = path.read_text().replace('client_ip = "snat"', 'client_ip = "snat"   # for now')
    path.write_text(text)
    update(path, lambda s: dataclasses.replace(s, client_ip="preserve"))
    assert path.read_text() == text.replace('"snat"   # for now', '"preserve"   # for now')


def test_save_removes_a_port_from_a_multiline_array(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(BASE)
    site = load(path).with_port_removed("12346/tcp")
    save(path, site)
    assert path.read_text() == BASE.replace('    "12346/tcp",\n', "")
    assert load(path) == site


def test_save_discovered_and_tunnel_changes(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(BASE)
    site = update_discovered(path, "198.51.100.4", "ens3")
    assert (site.vps.public_ip, site.vps.wan_interface) == (IPv4Address("198.51.100.4"), "ens3")
    text = path.read_text()
    assert text == BASE.replace(
        'host = "root@10.0.0.1"   # the VPS\n',
        'host = "root@10.0.0.1"   # the VPS\npublic_ip = "198.51.100.4"\nwan_interface = "ens3"\n',
    )
    assert update_discovered(path, None, None) == site  # nothing new: kept
    assert path.read_text() == text
    with pytest.raises(InventoryError) as err:
        update_discovered(path, "not-an-ip", None)
    assert str(err.value) == (f"{path}: discovered value rejected: public_ip 'not-an-ip' is "
                              "not an IPv4 address: use e.g. \"192.168.2.1\"")
    changed = dataclasses.replace(site, tunnel=dataclasses.replace(site.tunnel, mtu=1380))
    save(path, changed)
    assert path.read_text() == text.replace("listen_port = 51821\n",
                                            "listen_port = 51821\nmtu = 1380\n")
    assert load(path) == changed


def test_save_adds_and_removes_services(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(BASE)
    site = load(path)
    mail = Service("mail", "docker.io/example/mail:1", (PortSpec("tcp", 25, 25),), "mail",
                   env=(("A", "x y"),), command=("--verbose",))
    new = dataclasses.replace(site, services=(site.services[1], mail))
    save(path, new)
    assert path.read_text() == BASE.replace(
        BASE[BASE.index("[[services]]"):BASE.index('[[services]]\nname = "web"')], ""
    ) + (
        "\n"
        "[[services]]\n"
        'name = "mail"\n'
        'image = "docker.io/example/mail:1"\n'
        'user = "mail"\n'
        'ports = ["25/tcp"]\n'
        'env = {A = "x y"}\n'
        'command = ["--verbose"]\n'
    )
    loaded = load(path)
    assert [s.name for s in loaded.services] == ["web", "mail"]
    assert loaded == new


def test_save_rewrites_inline_services(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text('services = [{ name = "a", image = "i", user = "u", ports = ["1/udp"] }]\n'
                    '[vps]\nhost = "v"\n[home]\nhost = "h"\n')
    site = load(path)
    save(path, site.with_port_added("2/udp"))
    assert load(path) == site.with_port_added("2/udp")
    assert "[[services]]" in path.read_text()


def test_save_new_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "home.toml"
    save(path, SEED_SITE)
    assert path.read_text() == (
        "# tunnelops site inventory: inventory/example.toml explains every key.\n"
        "\n"
        "[site]\n"
        'name = "home"\n'
        'client_ip = "preserve" # the game sees players\' own addresses ("preserve") or the '
        'VPS\'s ("snat")\n'
        "\n"
        "[vps]\n"
        'host = "myvps"\n'
        'public_ip = "203.0.113.7"\n'
        'wan_interface = "eth0"\n'
        "\n"
        "[home]\n"
        'host = "homeserver"\n'
        "\n"
        "[tunnel]\n"
        'interface = "wg0"\n'
        'subnet = "192.168.2.0/24"\n'
        'vps_address = "192.168.2.1"\n'
        'home_address = "192.168.2.2"\n'
        "listen_port = 51821\n"
        "keepalive = 25\n"
        "route_table = 201\n"
        "rule_priority = 100\n"
        "\n"
        "[[services]]\n"
        'name = "game"\n'
        'image = "docker.io/example/game:latest"\n'
        'user = "gamer"\n'
        'ports = ["12345/udp", "12346/tcp"]\n'
        'env = {MAX_PLAYERS = "8"}\n'
        'volumes = ["/srv/game:/data:Z"]\n'
    )
    assert load(path) == SEED_SITE
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["home.toml"]  # no temp file left


def test_save_refuses_to_overwrite_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text("[vps\n")
    with pytest.raises(InventoryError, match="fix the TOML syntax"):
        save(path, SEED_SITE)
    assert path.read_text() == "[vps\n"


def test_save_keeps_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(BASE)
    os.chmod(path, 0o600)
    save(path, load(path).with_port_added("9000/udp", "web"))
    assert oct(path.stat().st_mode & 0o777) == "0o600"


# --------------------------------------------------------------------------- finding


def write_site(directory: Path, name: str, vps: str, home: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(f'[vps]\nhost = "{vps}"\n[home]\nhost = "{home}"\n')
    return path


def test_find_site(tmp_path: Path) -> None:
    (tmp_path / "example.toml").write_text(EXAMPLE.read_text())
    assert find_site(tmp_path) is None
    lab = write_site(tmp_path, "lab", "root@10.0.0.1", "home")
    assert find_site(tmp_path) == lab
    prod = write_site(tmp_path, "prod", "myvps", "homeserver")
    with pytest.raises(InventoryError) as err:
        find_site(tmp_path)
    assert str(err.value) == f"several sites in {tmp_path} (lab, prod): pass --site NAME"
    assert find_site(tmp_path, site="prod") == prod
    assert find_site(tmp_path, site="nope") is None
    assert find_site(tmp_path, vps="myvps") == prod
    assert find_site(tmp_path, vps="myvps", home="homeserver") == prod
    assert find_site(tmp_path, vps="myvps", home="other") is None
    write_site(tmp_path, "prod2", "myvps", "home2")
    with pytest.raises(InventoryError) as err:
        find_site(tmp_path, vps="myvps")
    assert str(err.value) == (f"several sites in {tmp_path} match these hosts (prod.toml, "
                              "prod2.toml): pass --site NAME")
    with pytest.raises(InventoryError) as err:
        find_site(tmp_path, site="../etc")
    assert str(err.value).startswith("--site: site name '../etc' is not valid")
    assert find_site(tmp_path / "missing") is None


def test_find_site_reports_syntax_errors(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("[vps\n")
    with pytest.raises(InventoryError) as err:
        find_site(tmp_path, vps="x")
    assert str(err.value).startswith(f"{tmp_path / 'a.toml'}:1: ")


def test_new_site() -> None:
    site = new_site("lab", "root@10.0.0.1", HostRef("home"), listen_port=51999,
                    public_ip="203.0.113.9", whoami_url="http://10.0.0.9/ip")
    assert site.tunnel == Tunnel(listen_port=51999)
    assert site.vps == VpsSpec(HostRef("root@10.0.0.1"), IPv4Address("203.0.113.9"))
    assert site.whoami_url == "http://10.0.0.9/ip"
    with pytest.raises(ModelError, match="unknown setting 'colour'"):
        new_site("lab", "v", "h", colour="blue")


def test_concurrent_updates_never_lose_each_other(tmp_path: Path) -> None:
    """Two add-ports at once: each read-modify-write under the file's lock, against what the
    file says at that moment. (Before, the second save dropped the first one's port, and the
    next run removed it from the hosts.)"""
    import threading
    import time

    path = tmp_path / "lab.toml"
    path.write_text(BASE)
    ports = ["12347/udp", "12348/udp", "12349/tcp"]

    def add(port: str) -> None:
        def change(site: Site) -> Site:
            time.sleep(0.2)  # both have read the file before either writes, without the lock
            return site.with_port_added(port, "game")
        update(path, change)

    threads = [threading.Thread(target=add, args=(p,)) for p in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    game = load(path).service("game")
    assert {str(p) for p in game.ports} >= set(ports)
    assert "# " in path.read_text()  # comments kept


def test_update_applies_the_change_again_when_the_file_changed_under_it(
        tmp_path: Path) -> None:
    """An editor saving meanwhile (no lock): compare-and-swap, the change is redone on it."""
    path = tmp_path / "lab.toml"
    path.write_text(BASE)
    calls = []

    def change(site: Site) -> Site:
        calls.append(1)
        if len(calls) == 1:  # someone else writes between our read and our write
            path.write_text(path.read_text().replace('"12346/tcp"', '"12346/tcp", "12350/tcp"'))
        return site.with_port_added("12347/udp", "game")

    new = update(path, change)
    assert len(calls) == 2
    got = {str(p) for p in load(path).service("game").ports}
    assert {"12350/tcp", "12347/udp"} <= got and new == load(path)


def test_service_network_round_trips_and_is_validated() -> None:
    from tunnelops.model.values import ModelError
    text = ('[vps]\nhost = "v"\n[home]\nhost = "h"\n[[services]]\nname = "game"\n'
            'image = "x/y:1"\nuser = "gamer"\nports = ["12345/udp"]\nnetwork = "slirp4netns"\n')
    site = loads(text)
    assert site.services[0].network == "slirp4netns"
    assert 'network = "slirp4netns"' in dumps(site, text)
    auto = loads(text.replace('network = "slirp4netns"\n', ""))
    assert auto.services[0].network == "auto"
    assert "network" not in dumps(auto)  # the default is not written out
    try:
        loads(text.replace('"slirp4netns"', '"bridge"'))
    except (ModelError, InventoryError) as e:
        assert "network" in str(e) and "auto, pasta, slirp4netns" in str(e)
    else:
        raise AssertionError("an unknown network was accepted")
