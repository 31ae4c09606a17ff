#!/usr/bin/env bash
# One script for a fresh Debian 12 machine, as root: installs what the lab and the project
# need (Debian packages, a virtualenv with the project and its dev extra), then runs one of:
#   setup.sh demo   lab up, bootstrap, verify (the README's first command)
#   setup.sh test   the whole test suite, lab tests included (the README's second command)
#   setup.sh        install only
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (the lab needs namespaces and mounts)" >&2; exit 1; }

PKGS=(
  openssh-server openssh-client sudo iproute2 iputils-ping nftables iptables procps psmisc
  wireguard-tools wireguard-go
  dbus network-manager firewalld
  podman runc slirp4netns passt uidmap catatonit
  socat busybox-static tcpdump curl
  python3 python3-venv
  qemu-system-x86 qemu-utils debootstrap e2fsprogs
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  # Packages like network-manager, firewalld, ssh and dbus would start their daemons in this
  # machine's own namespace from their postinst: forbid every service start while installing.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Python environment: Debian's python3 (3.11 on bookworm) unless one is already first on PATH.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[dev]'

case "${1:-}" in
  demo) exec .venv/bin/inv demo ;;
  test) shift; exec .venv/bin/python -m pytest "$@" ;;
  "") ;;
  *) echo "setup.sh: unknown mode '$1' (use: demo, test, or nothing to install only)" >&2; exit 2 ;;
esac
