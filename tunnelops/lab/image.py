"""The lab's game-like container image, built from this machine's Debian binaries.

No registry is reachable, so the image is a tar of busybox-static (a shell and tools) and
socat with its shared libraries (busybox nc has no UDP), imported with `podman import`.
Its default command answers on every port in ECHO_PORTS: TCP says who it sees then echoes,
UDP answers each datagram with the peer address and the data.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
from pathlib import Path

IMAGE = "localhost/tunnelops-echo:latest"
DEFAULT_PORTS = " ".join(
    f"{p}/{proto}" for p in [*range(12345, 12350), *range(27015, 27021)] for proto in ("tcp", "udp")
)

# One socat per port; each reply names the protocol, port and the peer address seen inside.
ECHO_SH = r"""#!/bin/sh
for spec in ${ECHO_PORTS}; do
  port=${spec%/*}; proto=${spec#*/}
  if [ "$proto" = tcp ]; then
    socat TCP-LISTEN:$port,fork,reuseaddr \
      SYSTEM:"echo tcp-echo port=$port peer=\$SOCAT_PEERADDR; exec cat" &
  else
    socat UDP-RECVFROM:$port,fork \
      SYSTEM:"read -r l; echo udp-echo port=$port peer=\$SOCAT_PEERADDR got=\$l" &
  fi
done
trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
wait
"""

BUSYBOX_APPLETS = [
    "sh", "cat", "echo", "ls", "ip", "sleep", "env", "ps", "id", "hostname", "timeout", "wget",
    "nc", "kill", "grep", "sed", "head", "tr",
]


def _libs(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return sorted(set(re.findall(r"(/\S+)", out)))


def _add_file(tar: tarfile.TarFile, src: str, arcname: str) -> None:
    tar.add(str(Path(src).resolve()), arcname=arcname.lstrip("/"), recursive=False)


def build_tar(dest: Path) -> Path:
    """Write the image's root filesystem as a tar, once; return its path."""
    files = ["/bin/busybox", "/usr/bin/socat", *_libs("/usr/bin/socat")]
    key = hashlib.sha256(ECHO_SH.encode())
    for f in files:
        st = Path(f).resolve().stat()
        key.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    target = dest / f"echo-{key.hexdigest()[:12]}.tar"
    if target.exists():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "usr/bin", "run"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for f in files:
            _add_file(tar, f, f)
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        for name, text, mode in (
            ("echo.sh", ECHO_SH, 0o755),
            ("etc/passwd", "root:x:0:0:root:/:/bin/sh\n", 0o644),
            ("etc/group", "root:x:0:\n", 0o644),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    tmp.chmod(0o644)
    tmp.replace(target)
    return target


def import_changes() -> list[str]:
    """`podman import --change` arguments that make the tar a runnable image."""
    return [
        "--change", f'ENV ECHO_PORTS="{DEFAULT_PORTS}"',
        "--change", 'CMD ["/bin/sh", "/echo.sh"]',
    ]
