"""What the host is: its distribution, who we run as, its init, its tools, its clock."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tunnelops.probes.base import Probe, cat, q

COMMANDS = ("wg", "wg-quick", "wireguard-go", "nft", "awall", "nmcli", "firewall-cmd", "podman",
            "systemctl", "rc-update", "apk", "apt-get", "dnf", "ifup", "ifparse", "flock", "ping",
            "sudo", "slirp4netns", "pasta", "loginctl", "runuser", "setpriv")
# Not a command, a capability: iproute2's `ip -j` (BusyBox ip, a fresh Alpine's, has no JSON,
# and without it the live addresses, MTU, rules and routes cannot be read).
IP_JSON = "ip-json"


def _int(text: str, default: int) -> int:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else default


@dataclass(frozen=True)
class OsRelease(Probe[dict[str, str]]):
    """/etc/os-release, its values unquoted."""

    kind = "os"

    def shell(self) -> str:
        return cat("/etc/os-release")

    def parse(self, text: str) -> dict[str, str]:
        pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
        return {k: v.strip().strip('"') for k, v in pairs}


@dataclass(frozen=True)
class Uid(Probe[int]):
    kind = "uid"

    def shell(self) -> str:
        return "id -u"

    def parse(self, text: str) -> int:
        return _int(text, -1)


@dataclass(frozen=True)
class Clock(Probe[int]):
    """The host's time (s since the epoch): handshake ages are measured against it. Read
    after the ping when both are in a batch, like the WireGuard dump."""

    kind = "now"
    after = ("ping",)

    def shell(self) -> str:
        return "date +%s"

    def parse(self, text: str) -> int:
        return _int(text, 0)


@dataclass(frozen=True)
class Pid1(Probe[str]):
    kind = "pid1"

    def shell(self) -> str:
        return cat("/proc/1/comm")

    def parse(self, text: str) -> str:
        return text.strip()


@dataclass(frozen=True)
class KernelWireguard(Probe[bool]):
    """Whether the kernel has WireGuard (loaded, or loadable)."""

    kind = "kernel_wg"

    def shell(self) -> str:
        return ("if [ -d /sys/module/wireguard ] || modprobe -n -q wireguard 2>/dev/null; "
                "then echo yes; else echo no; fi")

    def parse(self, text: str) -> bool:
        return text.strip() == "yes"


@dataclass(frozen=True)
class Commands(Probe[list[str]]):
    """Which of COMMANDS the host has, then IP_JSON if its `ip` speaks JSON."""

    kind = "commands"

    def shell(self) -> str:
        return (f"for c in {' '.join(COMMANDS)}; do command -v $c >/dev/null 2>&1 && echo $c; "
                f"done; ip -j link show lo >/dev/null 2>&1 && echo {IP_JSON}")

    def parse(self, text: str) -> list[str]:
        return text.split()


@dataclass(frozen=True)
class IpForward(Probe[str]):
    kind = "ip_forward"

    def shell(self) -> str:
        return cat("/proc/sys/net/ipv4/ip_forward")

    def parse(self, text: str) -> str:
        return text.strip()


@dataclass(frozen=True)
class Listener:
    """A socket listening on the host (ss -Hltunp): which process holds which port."""

    proto: str
    port: int
    process: str
    pid: int | None


@dataclass(frozen=True)
class Listening(Probe[list[Listener]]):
    """Who listens where: a service port held by another process fails before any change."""

    kind = "listening"

    def shell(self) -> str:
        return "ss -Hltunp"

    def parse(self, text: str) -> list[Listener]:
        """NETID STATE RECV-Q SEND-Q LOCAL PEER [users:(("name",pid=N,fd=M))]"""
        out = []
        for line in text.splitlines():
            cols = line.split()
            if len(cols) < 5 or cols[0] not in ("tcp", "udp"):
                continue
            port = cols[4].rpartition(":")[2]
            if not port.isdigit():
                continue
            proc = next((c for c in cols[6:] if c.startswith("users:")), "")
            m = re.search(r'\(\("([^"]*)",pid=(\d+)', proc)
            out.append(Listener(cols[0], int(port), m.group(1) if m else "?",
                                int(m.group(2)) if m else None))
        return out


@dataclass(frozen=True)
class DirEntries(Probe[list[str]]):
    """The names in a directory matching a pattern (a guard's markers under /run)."""

    path: str
    pattern: str = "*"
    kind = "ls"

    def shell(self) -> str:
        return (f"cd {q(self.path)} && for f in {self.pattern}; do [ -e \"$f\" ] && "
                "printf '%s\\n' \"$f\"; done")

    def parse(self, text: str) -> list[str]:
        return [x for x in text.splitlines() if x.strip()]


@dataclass(frozen=True)
class Sysctls(Probe[dict[str, str]]):
    """Kernel settings and counters by their sysctl names (net.ipv4.ip_forward); a key the
    kernel does not have is left out."""

    keys: tuple[str, ...]
    kind = "sysctl"

    @property
    def key(self) -> str:
        return " ".join([self.kind, *self.keys])

    def shell(self) -> str:
        paths = " ".join(q("/proc/sys/" + k.replace(".", "/")) for k in self.keys)
        return (f"for f in {paths}; do [ -r \"$f\" ] && printf '%s=%s\\n' \"${{f#/proc/sys/}}\" "
                "\"$(cat \"$f\")\"; done")

    def parse(self, text: str) -> dict[str, str]:
        pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
        return {k.replace("/", "."): v.strip() for k, v in pairs}
