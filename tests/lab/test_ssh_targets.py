"""HOST is anything ssh accepts: an ssh_config alias (HostName, User, Port, IdentityFile,
ProxyJump honoured) or user@host[:port]; host keys are checked on every hop."""

from __future__ import annotations

import pytest

from tunnelops.remote import Remote, RemoteError

pytestmark = pytest.mark.lab


def _config(tmp_path, lab, extra: str) -> str:
    path = tmp_path / "ssh_config"
    path.write_text(extra + "\n" + lab.ssh_config.read_text())
    return str(path)


def test_proxyjump_through_home_to_the_vps(tmp_path, lab):
    cfg = _config(tmp_path, lab, (
        f"Host viahome\n    HostName {lab.topo.vps_public}\n    User ops\n    Port 22\n"
        f"    IdentityFile {lab.key}\n    ProxyJump {lab.topo.alias('home')}\n"))
    r = Remote("viahome", ssh_config=cfg, known_hosts=str(lab.known_hosts))
    try:
        out = r.run("hostname; id -un; echo $SSH_CONNECTION", sudo=False, check=True).stdout
    finally:
        r.close()
    host, user, conn = out.split("\n")[:3]
    assert (host, user) == (lab.topo.alias("vps"), "ops")
    # the VPS saw the connection come from home's NAT router, i.e. through the jump host
    assert conn.split()[0] == lab.topo.router_wan


def test_proxyjump_hop_host_key_is_checked(tmp_path, lab):
    cfg = _config(tmp_path, lab, (
        f"Host viahome\n    HostName {lab.topo.vps_public}\n    IdentityFile {lab.key}\n"
        f"    ProxyJump {lab.topo.alias('home')}\n"))
    known = tmp_path / "known_hosts"  # the VPS only: the jump host's key is unknown
    known.write_text("".join(line for line in lab.known_hosts.read_text().splitlines(True)
                             if line.startswith(lab.topo.alias("vps"))))
    r = Remote("viahome", ssh_config=cfg, known_hosts=str(known))
    with pytest.raises(RemoteError, match=r"unknown host key .* --trust-new-host"):
        r.connect()
    r.close()


def test_user_at_host_port_shorthand(tmp_path, lab):
    cfg = _config(tmp_path, lab, f"Host *\n    IdentityFile {lab.key}\n")
    r = Remote(f"ops@{lab.topo.home_lan}:22", ssh_config=cfg, known_hosts=str(lab.known_hosts))
    try:
        res = r.run("id -u", check=True)  # through sudo: ops is not root
    finally:
        r.close()
    assert res.stdout.strip() == "0"
    assert not r.is_root
