"""HOST is anything ssh accepts: an ssh_config alias (HostName, User, Port, IdentityFile,
ProxyJump honoured) or user@host[:port]; host keys are checked on every hop."""

from __future__ import annotations

import os
import time

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


def test_a_warm_channel_has_its_shell_ready_before_the_script_is_sent(lab):
    """keep_warm (a run with changes to apply): the next command's channel and shell are
    started while the current command runs, so that command costs one round trip instead of
    three. The shell that runs the second script started before it was sent (the lab's hosts
    share this machine's clock); without keep_warm, after."""
    hz = os.sysconf("SC_CLK_TCK")
    for warm in (False, True):
        r = Remote(lab.topo.alias("home"), ssh_config=str(lab.ssh_config),
                   known_hosts=str(lab.known_hosts))
        r.keep_warm = warm
        try:
            r.run("sleep 0.5", check=True)
            sent = time.clock_gettime(time.CLOCK_BOOTTIME)
            ticks = r.run("cut -d' ' -f22 /proc/$$/stat", check=True).stdout
        finally:
            r.close()
        started = int(ticks) / hz  # the shell's start, since boot (10 ms ticks: floored)
        if warm:
            assert started < sent - 0.2, (started, sent)
        else:
            assert started > sent - 0.02, (started, sent)
