"""The VM tier's pure parts: each VM's identity on its kernel command line, qemu's argv (TCG,
never KVM; a pidfile to stop it by), the host key read from the serial console, the image's
recipe key, and what pruning the cache keeps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tunnelops.lab import vm, vm_image
from tunnelops.lab.procs import LabError
from tunnelops.lab.topology import Topology

T = Topology("vmt", 40)
KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOuX0Y1d3yq3mYkM0r0Jb0o2k3zFh6QwW1V9tIu2F5aZ"


def test_kernel_cmdline_is_the_whole_identity() -> None:
    vps = vm.kernel_cmdline(T, "vps", KEY).split()
    home = vm.kernel_cmdline(T, "home", KEY).split()
    assert "tunnelops.role=vps" in vps and "tunnelops.role=home" in home
    assert "tunnelops.ip=198.51.100.50/24" in vps and "tunnelops.gw=198.51.100.1" in vps
    assert "tunnelops.ip=10.77.40.2/24" in home and "tunnelops.gw=10.77.40.1" in home
    assert "systemd.hostname=vmt-vps" in vps and f"tunnelops.key={KEY}" in home
    # the VPS runs neither NetworkManager nor firewalld (nftables, ifupdown-ng); home no ifupdown
    assert {"systemd.mask=NetworkManager.service", "systemd.mask=firewalld.service"} <= set(vps)
    assert "systemd.mask=networking.service" in home
    assert not any("NetworkManager" in w or "firewalld" in w for w in home)
    ids = {w for w in vps + home if w.startswith("systemd.machine_id=")}
    assert len(ids) == 2  # one per VM (and per instance: the alias is in it)


def test_qemu_emulates_never_kvm_and_leaves_a_pidfile(tmp_path: Path) -> None:
    img = vm_image.Image(tmp_path / "img")
    argv = vm.qemu_argv(T, "home", img, tmp_path / "state", KEY)
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi"
    assert argv[argv.index("-cpu") + 1] == "qemu64"
    assert "-enable-kvm" not in argv and not any("accel=kvm" in a or a == "kvm" for a in argv)
    assert "-daemonize" in argv
    assert argv[argv.index("-pidfile") + 1] == str(tmp_path / "state/vms/home/qemu.pid")
    assert argv[argv.index("-kernel") + 1] == str(img.kernel)
    assert f"file={tmp_path / 'state/vms/home/disk.qcow2'}," in argv[argv.index("-drive") + 1]
    assert "ifname=tap0" in argv[argv.index("-netdev") + 1]
    assert "debug.sock" not in " ".join(argv)
    debug = vm.qemu_argv(T, "home", img, tmp_path / "state", KEY, debug_shell=True)
    assert "systemd.debug_shell=ttyS1" in debug[debug.index("-append") + 1]


def test_macs_differ_between_vms_and_instances() -> None:
    macs = {vm.mac_address(t, r) for t in (T, Topology("vmu", 41)) for r in ("vps", "home")}
    assert len(macs) == 4 and all(m.startswith("52:54:00:") for m in macs)


def test_host_key_from_the_console_is_the_latest_boots() -> None:
    console = ("[  1.0] Linux version 6.12\r\nTUNNELOPS-HOSTKEY ssh-ed25519 AAAAfirst\r\n"
               "noise\nTUNNELOPS-HOSTKEY ssh-ed25519 AAAAsecond\n")
    assert vm.host_key_from_console(console) == "ssh-ed25519 AAAAsecond"
    assert vm.host_key_from_console("TUNNELOPS-HOSTKEY ssh-rsa AAAA\n") is None
    assert vm.host_key_from_console("") is None


def test_client_key_blob_takes_ed25519_only() -> None:
    assert vm.client_key_blob(f"ssh-ed25519 {KEY} tunnelops-vmt\n") == KEY
    with pytest.raises(LabError):
        vm.client_key_blob("ssh-rsa AAAAB3 x")


def test_recipe_key_follows_what_makes_the_image() -> None:
    r = vm_image.Recipe()
    assert r.key() == vm_image.Recipe().key() and len(r.key()) == 12
    more = dataclasses.replace(r, packages=(*r.packages, "htop"))
    assert more.key() != r.key() and more.base_key() != r.base_key()
    bigger = dataclasses.replace(r, size="8G")
    assert bigger.key() != r.key() and bigger.base_key() == r.base_key()


def test_prune_keeps_the_current_recipe_and_what_a_vm_uses(tmp_path: Path,
                                                           monkeypatch) -> None:
    tmp_path = tmp_path / "cache"
    tmp_path.mkdir()
    r = vm_image.Recipe()
    names = [f"vm-{r.key()}", f"vm-{r.key()}.lock", f"rootfs-{r.base_key()}",
             "vm-0123456789ab", "vm-0123456789ab.lock", "rootfs-aaaaaaaaaaaa",
             "vm-inuse0000000", "vm-building000.build", "debs-trixie"]
    for n in names:
        (tmp_path / n).mkdir() if not n.endswith(".lock") else (tmp_path / n).touch()
    monkeypatch.setattr(vm_image, "_in_use", lambda p: p.name == "vm-inuse0000000")
    gone = {p.name for p in vm_image.prune(tmp_path, r)}
    assert gone == {"vm-0123456789ab", "vm-0123456789ab.lock", "rootfs-aaaaaaaaaaaa"}
    assert {p.name for p in tmp_path.iterdir()} == set(names) - gone
