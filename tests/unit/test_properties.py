"""Property tests: whatever the input, the answer is a valid value or a one-line error."""

from __future__ import annotations

import re
import string

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tunnelops.inventory.read import loads
from tunnelops.inventory.schema import InventoryError
from tunnelops.inventory.write import dumps
from tunnelops.model.hosts import HomeSpec, HostRef, VpsSpec
from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.site import Site
from tunnelops.model.tunnel import Tunnel
from tunnelops.model.values import NAME_RE, ModelError, check_name

SETTINGS = settings(max_examples=1000, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
METACHARS = ";|&$`'\"<>(){}*?!\\"


def one_line(message: str) -> bool:
    return bool(message) and len(message.splitlines()) == 1 and "\n" not in message


# --------------------------------------------------------------------------- ports

ports = st.integers(1, 65535)
protos = st.sampled_from(["tcp", "udp"])


@st.composite
def port_specs(draw: st.DrawFn) -> PortSpec:
    first = draw(ports)
    last = draw(st.integers(first, 65535)) if draw(st.booleans()) else first
    return PortSpec(draw(protos), first, last)


@SETTINGS
@given(port_specs(), st.sampled_from(["", " ", "\t", "\n"]), st.booleans())
def test_valid_port_specs_round_trip(spec: PortSpec, pad: str, upper: bool) -> None:
    text = str(spec)
    assert PortSpec.parse(text) == spec
    written = text.upper() if upper else text
    assert PortSpec.parse(f"{pad}{written}{pad}") == spec
    assert str(PortSpec.parse(text)) == text
    assert spec.count == spec.last - spec.first + 1 and spec.contains(spec.first)


port_like_text = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"[0-9+\-/ a-zA-Z\u0660-\u0669]{0,14}", fullmatch=True),
    st.builds(lambda a, b, p: f"{a}-{b}/{p}", st.integers(-5, 99999), st.integers(-5, 99999),
              st.sampled_from(["tcp", "udp", "UDP", "sctp", "", "tcp "])),
)


@SETTINGS
@given(port_like_text)
def test_any_text_parses_or_fails_in_one_line(text: str) -> None:
    try:
        spec = PortSpec.parse(text)
    except ModelError as err:
        assert one_line(str(err)), str(err)
        return
    assert spec.proto in ("tcp", "udp")
    assert 1 <= spec.first <= spec.last <= 65535
    assert re.fullmatch(r"[0-9]{1,5}(-[0-9]{1,5})?/(tcp|udp)", text.strip(), re.IGNORECASE)
    assert PortSpec.parse(str(spec)) == spec


@SETTINGS
@given(port_specs(), port_specs())
def test_overlap_is_symmetric_and_matches_sets(a: PortSpec, b: PortSpec) -> None:
    expected = a.proto == b.proto and bool(
        set(range(a.first, a.last + 1)) & set(range(b.first, b.last + 1))
    ) if a.count + b.count < 5000 else a.overlaps(b)
    assert a.overlaps(b) == b.overlaps(a) == expected


# --------------------------------------------------------------------------- names


@SETTINGS
@given(st.one_of(st.from_regex(r"[a-z][a-z0-9_-]{0,30}", fullmatch=True), st.text(max_size=40)))
def test_service_names(name: str) -> None:
    valid = NAME_RE.fullmatch(name) is not None
    try:
        check_name(name, "service name")
    except ModelError as err:
        assert not valid
        assert one_line(str(err))
    else:
        assert valid
        svc = Service(name, "docker.io/x/y:1", (PortSpec("udp", 1000, 1000),), "u")
        assert svc.container_name == f"tunnelops-{name}"


# --------------------------------------------------------------------------- hosts

host_chars = st.sampled_from(string.ascii_letters + string.digits + ".-_@:[]" + METACHARS
                             + " \t\n\x00é")


@SETTINGS
@given(st.one_of(st.text(host_chars, max_size=30), st.text(max_size=30)))
def test_hostref_parse_is_safe(text: str) -> None:
    try:
        ref = HostRef.parse(text)
    except ModelError as err:
        assert one_line(str(err)), str(err)
        return
    assert not set(text) & set(METACHARS)
    assert not any(ch.isspace() for ch in text)
    assert not text.startswith("-") and ref.alias and not ref.alias.startswith("-")
    assert str(ref) == text
    assert ref.port is None or 1 <= ref.port <= 65535


@SETTINGS
@given(st.text(host_chars, max_size=20), st.sampled_from(METACHARS), st.text(host_chars,
                                                                             max_size=20))
def test_hostref_refuses_metacharacters(before: str, meta: str, after: str) -> None:
    try:
        HostRef.parse(before + meta + after)
    except ModelError as err:
        assert one_line(str(err))
    else:
        raise AssertionError("a shell metacharacter was accepted")


# --------------------------------------------------------------------------- inventory

BASE = """\
# lab site
[site]
name = "lab"
whoami_url = "http://10.0.0.9/ip"

[vps]
host = "root@10.0.0.1:22"
public_ip = "10.0.0.1"
wan_interface = "eth0"

[home]
host = "home"

[tunnel]
subnet = "192.168.2.0/24"
listen_port = 51821
mtu = 1420

[[services]]
name = "game"
image = "docker.io/example/game:latest"
user = "gamer"
ports = [
    "12345/udp",
    "27015-27020/udp",
]
env = { MAX_PLAYERS = "8" }
volumes = ["/srv/game:/data:Z"]
command = ["--port", "12345"]

[[services]]
name = "web"
image = "docker.io/library/nginx:1.25"
user = "www"
ports = ["8080/tcp"]
"""

toml_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.text(max_size=12).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"')
                             .replace("\n", "\\n") + '"'),
    st.sampled_from(["true", "false", "1.5", "[]", "{}", '["1/udp"]', "[1, 2]",
                     '{ A = "b" }', "1979-05-27", '"12345/udp"', '"192.168.2.7"', "0",
                     "70000", '"wg0"', '"x y"', "nan", '[["a"]]']),
)


@st.composite
def mutated_inventories(draw: st.DrawFn) -> str:
    lines = BASE.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "delete", "insert", "text", "duplicate"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "value" and "=" in lines[i]:
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}= {draw(toml_values)}"
        elif kind == "delete":
            del lines[i]
        elif kind == "insert":
            key = draw(st.sampled_from(["name", "host", "ports", "mtu", "bogus", "env",
                                        "listen_port", "[tunnel]", "[[services]]", "[x]"]))
            lines.insert(i, key if key.startswith("[") else f"{key} = {draw(toml_values)}")
        elif kind == "text":
            lines[i] = draw(st.text(max_size=15))
        else:
            lines.insert(i, lines[i])
        if not lines:
            lines = [""]
    return "\n".join(lines)


@SETTINGS
@given(mutated_inventories())
def test_mutated_inventory_loads_or_fails_in_one_line(text: str) -> None:
    try:
        site = loads(text, "inventory/lab.toml", "lab")
    except InventoryError as err:
        message = str(err)
        assert one_line(message), message
        match = re.match(r"inventory/lab\.toml:(\d+): ", message)
        assert match, message
        assert 1 <= int(match.group(1)) <= text.count("\n") + 1
        return
    assert isinstance(site, Site)
    # Anything that loads can be written back and reads the same.
    assert loads(dumps(site, text, "lab"), "x", "lab") == site


@st.composite
def sites(draw: st.DrawFn) -> Site:
    used: list[PortSpec] = [PortSpec("tcp", 22, 22), PortSpec("udp", 51821, 51821)]
    services = []
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True),
                          max_size=3, unique=True))
    for name in names:
        specs = []
        for spec in draw(st.lists(port_specs(), min_size=1, max_size=4)):
            if not any(spec.overlaps(u) for u in used):
                used.append(spec)
                specs.append(spec)
        assume(specs)
        env = draw(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,5}", fullmatch=True),
                                   st.text(st.characters(blacklist_characters="\x00\n\r",
                                                         blacklist_categories=("Cs",)),
                                           max_size=8), max_size=2))
        services.append(Service(name, "docker.io/x/y:1", tuple(specs), "user",
                                env=tuple(env.items()),
                                command=tuple(draw(st.lists(st.text(
                                    st.characters(blacklist_characters="\x00\n\r",
                                                  blacklist_categories=("Cs",)),
                                    max_size=5), max_size=2)))))
    tunnel = Tunnel(mtu=draw(st.one_of(st.none(), st.integers(576, 9000))),
                    keepalive=draw(st.integers(0, 65535)))
    return Site(name="lab", vps=VpsSpec(HostRef("root@vps")), homes=HomeSpec(HostRef("h")),
                tunnel=tunnel, services=tuple(services))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
@given(sites())
def test_dumps_loads_round_trip(site: Site) -> None:
    text = dumps(site, None, "lab")
    assert loads(text, "x", "lab") == site
    # Editing the written text to another valid site gives exactly that site.
    again = dumps(site, BASE, "lab")
    assert loads(again, "x", "lab") == site
