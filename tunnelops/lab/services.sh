#!/bin/bash
# Start a private D-Bus system bus, NetworkManager and firewalld inside a lab host (run via
# nsenter into all of the host's namespaces). Refuses to run anywhere else: these daemons
# would take over the real machine's network if started in its own namespace.
#   services.sh ROOT_NETNS_INODE
set -euo pipefail
ROOTNET=$1
grep -q '^tunnelops-run /run tmpfs' /proc/self/mounts \
  || { echo "services.sh: /run is not a lab host's private /run; refusing" >&2; exit 1; }
[ "$(stat -L -c %i /proc/self/ns/net)" != "$ROOTNET" ] \
  || { echo "services.sh: in the machine's own network namespace; refusing" >&2; exit 1; }
[ "$(cat /proc/1/comm)" = catatonit ] \
  || { echo "services.sh: PID 1 is not the lab's init; refusing" >&2; exit 1; }

mkdir -p /etc/NetworkManager/conf.d /var/log
# eth0 is the lab's control link (SSH): NetworkManager must never touch it.
printf '[main]\nno-auto-default=*\n[keyfile]\nunmanaged-devices=interface-name:eth0\n' \
  >/etc/NetworkManager/conf.d/90-tunnelops-lab.conf
# NetworkManager would D-Bus-activate ModemManager; hide it (this host's /usr overlay only).
rm -f /usr/share/dbus-1/system-services/org.freedesktop.ModemManager1.service
dbus-daemon --system --fork --print-pid >/run/dbus/lab.pid
for _ in $(seq 200); do [ -S /run/dbus/system_bus_socket ] && break; sleep 0.02; done
setsid NetworkManager --no-daemon >/var/log/NetworkManager.log 2>&1 </dev/null &
setsid firewalld --nofork --nopid >/var/log/firewalld.log 2>&1 </dev/null &
owned() {  # dbus-send comes with dbus itself (busctl would need the systemd package)
  dbus-send --system --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner "string:$1" 2>/dev/null | grep -q 'boolean true'
}
for _ in $(seq 600); do
  owned org.freedesktop.NetworkManager && owned org.fedoraproject.FirewallD1 && break
  sleep 0.02
done
nmcli -t -f RUNNING general status
firewall-cmd --state
