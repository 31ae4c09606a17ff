"""Podman argv and Quadlet units for a service."""

from __future__ import annotations

import dataclasses

import pytest

from tunnelops.model.ports import PortSpec
from tunnelops.model.service import Service
from tunnelops.model.tunnel import Tunnel
from tunnelops.model.values import ModelError
from tunnelops.render import podman

GAME = Service("game", "docker.io/example/game:latest",
               (PortSpec.parse("12345/udp"), PortSpec.parse("12346/tcp")), "gamer",
               env=(("MAX_PLAYERS", "8"),), volumes=("/srv/game:/data:Z",))
WEB = Service("web", "docker.io/library/nginx:1.25",
              (PortSpec.parse("8080/tcp"), PortSpec.parse("27015-27020/udp")), "www",
              env=(("MOTD", 'say "hi" 100%'), ("TZ", "UTC")),
              command=("nginx", "-g", "daemon off;"))
CUSTOM = Tunnel(interface="wgt", subnet="10.9.8.0/29", vps_address="10.9.8.5",  # type: ignore[arg-type]
                home_address="10.9.8.6")  # type: ignore[arg-type]


def test_network_option() -> None:
    # slirp4netns's own port handler: rootlessport would show the game 10.0.2.100 for all
    assert podman.network_option("slirp4netns", Tunnel()) == \
        "slirp4netns:outbound_addr=wg0,port_handler=slirp4netns"
    assert podman.network_option("slirp4netns", CUSTOM) == \
        "slirp4netns:outbound_addr=wgt,port_handler=slirp4netns"
    assert podman.network_option("pasta", CUSTOM) == "pasta:--outbound,10.9.8.6"
    with pytest.raises(ModelError) as err:
        podman.network_option("bridge", CUSTOM)
    assert str(err.value) == "unknown network kind 'bridge': use slirp4netns or pasta"


def test_publish_args() -> None:
    """On the tunnel's home address: replies leave from it, so policy routing sends them
    back through the tunnel to any player's address (UDP too)."""
    assert podman.publish_args(WEB, Tunnel()) == [
        "-p", "192.168.2.2:8080:8080/tcp", "-p", "192.168.2.2:27015-27020:27015-27020/udp"]
    assert podman.publish_args(WEB, CUSTOM)[1] == "10.9.8.6:8080:8080/tcp"


def test_run_args_seed() -> None:
    assert podman.run_args(GAME, Tunnel(), "slirp4netns", "0123456789abcdef") == [
        "run", "-d",
        "--name", "tunnelops-game",
        "--label", "tunnelops.spec=0123456789abcdef",
        "--label", "tunnelops.service=game",
        "--label", "tunnelops.tunnel=wg0",
        "--network", "slirp4netns:outbound_addr=wg0,port_handler=slirp4netns",
        "-p", "192.168.2.2:12345:12345/udp",
        "-p", "192.168.2.2:12346:12346/tcp",
        "-e", "MAX_PLAYERS=8",
        "-v", "/srv/game:/data:Z",
        "--restart", "unless-stopped", "--",
        "docker.io/example/game:latest",
    ]


def test_run_args_command_and_pasta() -> None:
    assert podman.run_args(WEB, CUSTOM, "pasta", "ffff") == [
        "run", "-d",
        "--name", "tunnelops-web",
        "--label", "tunnelops.spec=ffff",
        "--label", "tunnelops.service=web",
        "--label", "tunnelops.tunnel=wgt",
        "--network", "pasta:--outbound,10.9.8.6",
        "-p", "10.9.8.6:8080:8080/tcp",
        "-p", "10.9.8.6:27015-27020:27015-27020/udp",
        "-e", 'MOTD=say "hi" 100%',
        "-e", "TZ=UTC",
        "--restart", "unless-stopped", "--",
        "docker.io/library/nginx:1.25",
        "nginx", "-g", "daemon off;",
    ]


def test_spec_hash() -> None:
    net = podman.network_option("slirp4netns", Tunnel())
    digest = podman.spec_hash(GAME, Tunnel(), net)
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert digest == podman.spec_hash(GAME, Tunnel(), net)  # deterministic
    changes = [
        dataclasses.replace(GAME, image="docker.io/example/game:2"),
        dataclasses.replace(GAME, ports=(PortSpec.parse("12345/udp"),)),
        dataclasses.replace(GAME, env=(("MAX_PLAYERS", "9"),)),
        dataclasses.replace(GAME, volumes=()),
        dataclasses.replace(GAME, command=("--hard",)),
        dataclasses.replace(GAME, user="other"),
    ]
    digests = {podman.spec_hash(svc, Tunnel(), net) for svc in changes}
    digests.add(podman.spec_hash(GAME, Tunnel(), podman.network_option("pasta", Tunnel())))
    assert digest not in digests and len(digests) == len(changes) + 1


def test_quadlet_unit_seed() -> None:
    assert podman.quadlet_unit(GAME, Tunnel(), "slirp4netns", "0123456789abcdef") == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "[Unit]\n"
        "Description=tunnelops service game\n"
        "# Egress leaves through wg0: start once it is up (NetworkManager or wg-quick)\n"
        "Wants=sys-subsystem-net-devices-wg0.device\n"
        "After=sys-subsystem-net-devices-wg0.device\n"
        "\n"
        "[Container]\n"
        "ContainerName=tunnelops-game\n"
        "Image=docker.io/example/game:latest\n"
        "Network=slirp4netns:outbound_addr=wg0,port_handler=slirp4netns\n"
        "PublishPort=192.168.2.2:12345:12345/udp\n"
        "PublishPort=192.168.2.2:12346:12346/tcp\n"
        "Environment=MAX_PLAYERS=8\n"
        "Volume=/srv/game:/data:Z\n"
        "Label=tunnelops.spec=0123456789abcdef\n"
        "Label=tunnelops.service=game\n"
        "Label=tunnelops.tunnel=wg0\n"
        "\n"
        "[Service]\n"
        "ExecStartPre=/bin/sh -c 'until ip -4 -o addr show dev wg0 2>/dev/null "
        "| grep -qF \" 192.168.2.2/\"; do sleep 0.5; done'\n"
        "RestartSec=10\n"
        "Restart=always\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def test_quadlet_unit_quotes_words() -> None:
    assert podman.quadlet_unit(WEB, CUSTOM, "pasta", "ffff") == (
        "# Managed by tunnelops: local edits are overwritten.\n"
        "[Unit]\n"
        "Description=tunnelops service web\n"
        "# Egress leaves through wgt: start once it is up (NetworkManager or wg-quick)\n"
        "Wants=sys-subsystem-net-devices-wgt.device\n"
        "After=sys-subsystem-net-devices-wgt.device\n"
        "\n"
        "[Container]\n"
        "ContainerName=tunnelops-web\n"
        "Image=docker.io/library/nginx:1.25\n"
        "Network=pasta:--outbound,10.9.8.6\n"
        "PublishPort=10.9.8.6:8080:8080/tcp\n"
        "PublishPort=10.9.8.6:27015-27020:27015-27020/udp\n"
        'Environment="MOTD=say \\"hi\\" 100%%"\n'
        "Environment=TZ=UTC\n"
        "Label=tunnelops.spec=ffff\n"
        "Label=tunnelops.service=web\n"
        "Label=tunnelops.tunnel=wgt\n"
        'Exec=nginx -g "daemon off;"\n'
        "\n"
        "[Service]\n"
        "ExecStartPre=/bin/sh -c 'until ip -4 -o addr show dev wgt 2>/dev/null "
        "| grep -qF \" 10.9.8.6/\"; do sleep 0.5; done'\n"
        "RestartSec=10\n"
        "Restart=always\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )
