#!/bin/sh
# /usr/local/sbin/tunnelops-lab-identity in the VM image: run at every boot before the
# network and sshd (tunnelops-lab-identity.service). One base image serves every VM of every
# lab instance; each VM's identity is on its kernel command line (tunnelops.lab.vm):
#   tunnelops.role=vps|home tunnelops.ip=ADDR/LEN tunnelops.gw=GW tunnelops.key=BASE64
# (the lab's ed25519 client key; the hostname comes from systemd.hostname=). Idempotent:
# what tunnelops changes later (e.g. /etc/network/interfaces) is never written over.
set -eu
ROLE= IP= GW= KEY=
for a in $(cat /proc/cmdline); do
  case $a in
    tunnelops.role=*) ROLE=${a#*=} ;;
    tunnelops.ip=*) IP=${a#*=} ;;
    tunnelops.gw=*) GW=${a#*=} ;;
    tunnelops.key=*) KEY=${a#*=} ;;
  esac
done
[ -n "$ROLE" ] || { echo "tunnelops-lab-identity: no tunnelops.role= on the kernel command line" >&2; exit 0; }
H=$(hostname)
[ "$(cat /etc/hostname 2>/dev/null)" = "$H" ] || echo "$H" >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$H" \
  >/etc/hosts.tunnelops && mv -f /etc/hosts.tunnelops /etc/hosts

# This VM's own host key, made at its first boot; the lab reads it from the serial console
# (a channel only the VM writes), so its known_hosts needs no trust on first use.
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -C "root@$H" \
  -f /etc/ssh/ssh_host_ed25519_key
printf '\nTUNNELOPS-HOSTKEY %s\n' "$(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)" \
  >/dev/ttyS0 2>/dev/null || true

# The lab's client key for root and every normal user (as on the namespace lab's hosts).
if [ -n "$KEY" ]; then
  line="ssh-ed25519 $KEY tunnelops-lab"
  for home in /root /home/*; do
    [ -d "$home" ] || continue
    u=$(stat -c %U "$home")
    install -d -m 700 -o "$u" -g "$u" "$home/.ssh"
    [ "$(cat "$home/.ssh/authorized_keys" 2>/dev/null)" = "$line" ] && continue
    echo "$line" >"$home/.ssh/authorized_keys"
    chown "$u:" "$home/.ssh/authorized_keys"; chmod 600 "$home/.ssh/authorized_keys"
  done
fi

# The control link, at first boot only: the VPS by ifupdown-ng (as on the seed's Alpine
# VPS), home by NetworkManager (as on Fedora).
umask 077
if [ "$ROLE" = vps ] && [ -n "$IP" ] && ! grep -qs '^iface eth0' /etc/network/interfaces; then
  umask 022
  mkdir -p /etc/network
  {
    echo "# The VPS's uplink (tunnelops lab)"
    printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n'
    printf '\taddress %s\n' "$IP"
    [ -z "$GW" ] || printf '\tgateway %s\n' "$GW"
  } >/etc/network/interfaces
fi
f=/etc/NetworkManager/system-connections/lan.nmconnection
if [ "$ROLE" = home ] && [ -n "$IP" ] && [ ! -e "$f" ]; then
  cat >"$f" <<EOF
[connection]
id=lan
type=ethernet
interface-name=eth0
autoconnect=true

[ipv4]
method=manual
address1=$IP${GW:+,$GW}

[ipv6]
method=disabled
EOF
fi
exit 0
