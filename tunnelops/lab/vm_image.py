"""The VM tier's disk image: Debian 13 (trixie) built once with debootstrap, cached by its recipe.

One image serves both VMs of every instance (each boots a copy-on-write overlay of it; what
makes a VM the VPS or home is on its kernel command line, see vm_guest.sh):

    .lab/cache/vm-KEY/base.qcow2   the root file system (ext4, no partition table)
    .lab/cache/vm-KEY/vmlinuz      its kernel and initramfs, for qemu's direct kernel boot
    .lab/cache/vm-KEY/initrd.img
    .lab/cache/vm-KEY/image.json   what was built, when, how long it took
    .lab/cache/rootfs-BASE/        what debootstrap made (BASE: a hash of suite and packages)
    .lab/cache/debs-trixie/        the downloaded .debs (a new debootstrap downloads nothing)

KEY is a hash of the recipe (suite, packages, size, the configure and boot scripts): change any
of them and the next `lab.up --vm` builds a new image -- in ~15 s when only the scripts
changed, ~3 minutes from nothing: debootstrap in two stages, the first (download, unpack) in
this machine's namespace, the second (every package's maintainer scripts) and the
configuration in namespaces of their own with no network, so nothing a package starts can
touch this machine; then `mkfs.ext4 -d` (no loop device, no mount) and `qemu-img convert`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tunnelops.lab.topology import PODMAN_USER, SUDO_USER

HERE = Path(__file__).resolve().parent
FORMAT = 1  # bump when the build itself changes in a way the recipe does not show
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# debootstrap --variant=minbase resolves Depends, not Recommends: everything is named.
PACKAGES = (
    # systemd as PID 1, logind (lingering), a user D-Bus for rootless podman's cgroups
    "systemd-sysv", "dbus", "dbus-user-session", "libpam-systemd", "udev", "kmod",
    "linux-image-amd64", "initramfs-tools", "e2fsprogs", "procps", "less", "sudo",
    "openssh-server", "iproute2", "iputils-ping", "netbase", "curl", "socat", "python3",
    # the network: kernel WireGuard (module in the kernel), NetworkManager at home,
    # ifupdown-ng on the VPS, firewalld at home, nftables on the VPS
    "wireguard-tools", "network-manager", "ifupdown-ng", "ifupdown-ng-compat", "firewalld",
    "nftables",
    # rootless Podman 5: pasta by default, slirp4netns where asked, netavark
    "podman", "passt", "slirp4netns", "uidmap", "catatonit", "crun", "netavark", "aardvark-dns",
)
Report = Callable[[str], None]


class ImageError(RuntimeError):
    """One line: what failed while building the VM image, and what to do."""


@dataclass(frozen=True)
class Recipe:
    suite: str = "trixie"
    packages: tuple[str, ...] = PACKAGES
    size: str = "4G"  # the ext4 file system (sparse; the overlays grow, not the base)

    def key(self) -> str:
        """Hash of everything that defines the image's content."""
        h = hashlib.sha256(json.dumps({"format": FORMAT, **asdict(self)},
                                      sort_keys=True).encode())
        for script in ("vm_rootfs.sh", "vm_guest.sh"):
            h.update((HERE / script).read_bytes())
        return h.hexdigest()[:12]

    def base_key(self) -> str:
        """Hash of what debootstrap makes (suite, packages): the configuration scripts can
        change without a new debootstrap (a rebuild then takes seconds, not minutes)."""
        return hashlib.sha256(json.dumps({"format": FORMAT, "suite": self.suite,
                                          "packages": self.packages}).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Image:
    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "base.qcow2"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def info(self) -> dict:
        try:
            return json.loads((self.dir / "image.json").read_text())
        except (OSError, ValueError):
            return {}

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.disk, self.kernel, self.initrd,
                                         self.dir / "image.json"))


def image_dir(cache: Path, recipe: Recipe) -> Path:
    return cache / f"vm-{recipe.key()}"


def cached(cache: Path, recipe: Recipe | None = None) -> Image | None:
    img = Image(image_dir(cache, recipe or Recipe()))
    return img if img.complete() else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build per recipe at a time: a second `lab.up --vm` waits, then finds it built."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _stream(argv: Sequence[str], report: Report, what: str, *, timeout: float,
            cwd: Path | None = None) -> None:
    """Run argv, passing each output line to report; raise ImageError with the last lines."""
    tail: list[str] = []
    deadline = time.monotonic() + timeout
    with subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, cwd=cwd, text=True, errors="replace",
                          start_new_session=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail = [*tail[-4:], line]
                report(f"{what}: {line[:100]}")
            if time.monotonic() > deadline:
                proc.kill()
                raise ImageError(f"{what} took over {timeout:.0f}s: {' | '.join(tail[-2:])}")
        rc = proc.wait()
    if rc != 0:
        raise ImageError(f"{what} failed (exit {rc}): {' | '.join(tail[-3:]) or 'no output'}")


def isolated(argv: Sequence[str]) -> list[str]:
    """argv in new network, PID and mount namespaces: only lo (down), no route anywhere, its
    own process tree (everything in it dies with it), mounts that vanish with it."""
    return ["unshare", "--net", "--pid", "--fork", "--mount", "--uts", "--ipc",
            "--propagation", "private", "--", *argv]


def build(cache: Path, recipe: Recipe | None = None, *, report: Report = lambda _: None,
          mirror: str | None = None) -> Image:
    """The image for recipe: from the cache, else built now (minutes)."""
    recipe, cache = recipe or Recipe(), cache.resolve()
    final = image_dir(cache, recipe)
    with _locked(cache / f"vm-{recipe.key()}.lock"):
        img = Image(final)
        if img.complete():
            return img
        for tool in ("debootstrap", "qemu-img", "mkfs.ext4", "unshare"):
            if shutil.which(tool) is None:
                raise ImageError(f"{tool} is missing: run `bash tunnelops/lab/setup.sh` (it "
                                 "installs qemu-system-x86 qemu-utils debootstrap)")
        work = cache / f"vm-{recipe.key()}.build"
        subprocess.run(["rm", "-rf", "--one-file-system", str(work), str(final)], check=True)
        work.mkdir(parents=True)
        try:
            times = _build(work, recipe, cache, report,
                           mirror or os.environ.get("TUNNELOPS_VM_MIRROR", DEFAULT_MIRROR))
            out = work / "out"
            (out / "image.json").write_text(json.dumps(
                {"key": recipe.key(), "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 **times, **asdict(recipe)}, indent=1))
            out.rename(final)
            prune(cache, recipe)
        finally:
            subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
        return Image(final)


def _in_use(path: Path) -> bool:
    """Whether a running process (a VM's qemu) names path on its command line."""
    needle = str(path).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if needle in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def prune(cache: Path, recipe: Recipe) -> list[Path]:
    """Remove the images (~0.7 GB each) and debootstrapped trees (~0.9 GB) of other recipes,
    and their lock files, unless a running VM uses them; what was removed."""
    keep = {f"vm-{recipe.key()}", f"rootfs-{recipe.base_key()}"}
    gone = []
    for p in sorted(cache.glob("vm-*")) + sorted(cache.glob("rootfs-*")):
        stem = p.name.removesuffix(".lock")
        if stem in keep or p.name.endswith(".build") or _in_use(cache / stem):
            continue
        if p.is_dir():
            subprocess.run(["rm", "-rf", "--one-file-system", str(p)], check=False)
        else:
            p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def _debootstrap(cache: Path, recipe: Recipe, report: Report, mirror: str,
                 times: dict) -> Path:
    """The debootstrapped root file system for the recipe's suite and packages, cached."""
    root = cache / f"rootfs-{recipe.base_key()}"
    if (root / "debootstrap.done").exists():
        return root
    work, debs = cache / f"rootfs-{recipe.base_key()}.build", cache / f"debs-{recipe.suite}"
    subprocess.run(["rm", "-rf", "--one-file-system", str(work), str(root)], check=True)
    debs.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    # Stage 1 here (it needs the mirror): download and unpack, no package script runs.
    _stream(["debootstrap", "--foreign", "--variant=minbase", f"--cache-dir={debs}",
             f"--include={','.join(recipe.packages)}", recipe.suite, str(work), mirror],
            report, "debootstrap (download, unpack)", timeout=1800)
    times["debootstrap_first_s"] = round(time.monotonic() - t, 1)
    # Stage 2 with no network, and no service may start (policy-rc.d; debootstrap removes
    # it when it ends).
    _no_services(work)
    t = time.monotonic()
    _stream(isolated(["chroot", str(work), "/debootstrap/debootstrap", "--second-stage"]),
            report, "debootstrap (configure packages)", timeout=1800)
    times["debootstrap_second_s"] = round(time.monotonic() - t, 1)
    for p in (work / "var/cache/apt/archives").glob("*.deb"):
        p.unlink()
    (work / "debootstrap.done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    work.rename(root)
    return root


def _no_services(root: Path) -> Path:
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    return policy


def _build(work: Path, recipe: Recipe, cache: Path, report: Report, mirror: str) -> dict:
    out, root = work / "out", work / "rootfs"
    out.mkdir()
    times: dict = {}
    with _locked(cache / f"rootfs-{recipe.base_key()}.lock"):
        base = _debootstrap(cache, recipe, report, mirror, times)
        t = time.monotonic()
        report("copying the debootstrapped root file system")
        subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True)
    (root / "debootstrap.done").unlink()
    policy = _no_services(root)
    for script in ("vm_rootfs.sh", "vm_guest.sh"):
        shutil.copy(HERE / script, root / "tmp" / script)
    _stream(isolated(["chroot", str(root), "/bin/sh", "/tmp/vm_rootfs.sh", SUDO_USER,
                      PODMAN_USER]), report, "configure", timeout=300)
    policy.unlink(missing_ok=True)
    for p in (root / "tmp").iterdir():
        if p.is_file() or p.is_symlink():
            p.unlink()
    shutil.copy(_newest(root / "boot", "vmlinuz-*"), out / "vmlinuz")
    shutil.copy(_newest(root / "boot", "initrd.img-*"), out / "initrd.img")
    raw = work / "base.raw"
    report("making the disk: mkfs.ext4 -d")
    _stream(["mkfs.ext4", "-q", "-F", "-L", "tunnelops", "-d", str(root), str(raw),
             recipe.size], report, "mkfs.ext4", timeout=600)
    report("making the disk: qemu-img convert")
    _stream(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw),
             str(out / "base.qcow2")], report, "qemu-img convert", timeout=600)
    times["configure_and_disk_s"] = round(time.monotonic() - t, 1)
    times["versions"] = _versions(root)
    return times


def _newest(d: Path, pattern: str) -> Path:
    found = sorted(d.glob(pattern))
    if not found:
        raise ImageError(f"no {pattern} in the image's /boot: the kernel package did not install")
    return found[-1]


def _versions(root: Path) -> dict[str, str]:
    """Versions of the packages that matter, from the image's dpkg status file."""
    wanted = {"systemd", "network-manager", "firewalld", "podman", "passt", "slirp4netns",
              "ifupdown-ng", "nftables", "wireguard-tools", "openssh-server", "crun"}
    out, pkg = {}, None
    for line in (root / "var/lib/dpkg/status").read_text(errors="replace").splitlines():
        if line.startswith("Package: "):
            pkg = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and pkg in wanted:
            out[pkg] = line.split(": ", 1)[1]
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*"))
    if kernels:
        out["kernel"] = kernels[-1]
    return out
