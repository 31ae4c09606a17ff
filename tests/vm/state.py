"""Everything about a VM that tunnelops may touch, as one dict, to compare a VM before
bootstrap with the same VM after teardown: files (type, mode, owner, hash) under the paths
tunnelops writes, the firewall, routing, links, NetworkManager profiles, firewalld's zones,
enabled system units, the service user's units and containers, lingering."""

from __future__ import annotations

from tunnelops.lab.topology import PODMAN_USER
from tunnelops.lab.vm import VmLab

PATHS = ("/etc/wireguard /etc/tunnelops /var/lib/tunnelops /run/tunnelops /etc/network "
         "/etc/nftables.conf /etc/sysctl.d /etc/firewalld /etc/NetworkManager/system-connections "
         "/etc/systemd/system /var/lib/systemd/linger /etc/subuid /etc/subgid /etc/passwd "
         f"/home/{PODMAN_USER}/.config")

SCRIPT = f"""export LC_ALL=C SYSTEMD_PAGER=cat
for p in {PATHS}; do
  [ -e "$p" ] || continue
  find "$p" -xdev -printf 'stat %p\\t%y %m %u:%g\\n'
  find "$p" -xdev -type f -exec sha256sum {{}} + | sed -E 's/^([0-9a-f]+)  (.*)$/hash \\2\\t\\1/'
done
echo '## nft'; nft -s list ruleset
echo '## rules'; ip rule
echo '## routes'; ip route show table all | grep -Ev '^(local|broadcast|multicast) |fe80'
echo '## links'; ip -br link | awk '{{print $1}}'
echo '## forward'; cat /proc/sys/net/ipv4/ip_forward
echo '## nm'; nmcli -t -f NAME,TYPE connection show 2>/dev/null
echo '## firewalld'; firewall-cmd --list-all-zones 2>/dev/null
echo '## firewalld permanent'; firewall-cmd --permanent --list-all-zones 2>/dev/null
echo '## enabled'; systemctl list-unit-files --no-legend --no-pager |
  awk '$2 !~ /^(static|generated|alias|indirect|transient)$/ {{print $1, $2}}'
echo '## linger'; ls /var/lib/systemd/linger
:
"""

USER_SCRIPT = """export LC_ALL=C SYSTEMD_PAGER=cat
echo '## user units'; systemctl --user list-units --all --no-legend --plain 'tunnelops*' \
  'container-*' | awk '{print $1, $3, $4}'
# transient units aside: podman's pause process (started by the `podman ps` below, as by
# any rootless podman command) gets a transient scope of a new name each time it starts
echo '## user unit files'; systemctl --user list-unit-files --no-legend | \
  awk '$2 != "transient" {print $1, $2}'
echo '## containers'; podman ps -a --format '{{.Names}} {{.Image}}'
echo '## images'; podman images --format '{{.Repository}}:{{.Tag}}'
:
"""


def _parse(text: str, out: dict[str, str]) -> None:
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:]
            out[section] = ""
        elif section is not None:
            out[section] += line + "\n"
        else:
            kind, _, rest = line.partition(" ")
            path, _, value = rest.partition("\t")
            out[f"{kind} {path}"] = value


def snapshot(lab: VmLab, role: str) -> dict[str, str]:
    out: dict[str, str] = {}
    _parse(lab.sh(role, SCRIPT, timeout=120), out)
    if role == "home":
        _parse(lab.sh(role, USER_SCRIPT, user=PODMAN_USER, timeout=120), out)
    return out


def diff(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple]:
    return {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)}
