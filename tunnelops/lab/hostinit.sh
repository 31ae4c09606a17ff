#!/bin/bash
# PID 1 of a lab host. Started by tunnelops.lab inside the host's own network namespace and
# fresh mount/UTS/IPC/PID namespaces (unshare --fork --mount-proc). Builds a machine that
# looks installed: copy-on-write /etc /var /usr /opt /srv, private /run /tmp /root /home,
# its own hostname and host keys, a real sshd; then turns into a zombie-reaping PID 1.
#   hostinit.sh NAME STATE_DIR CLIENT_PUBKEY SUDO_USER ROOT_NETNS_INODE [PODMAN_USER]
set -euo pipefail
H=$1 S=$2 PUB=$3 OPS=$4 ROOTNET=$5 PODU=${6:-}

# Refuse to run anywhere but a fresh lab host: never start daemons on the machine itself.
[ "$$" = 1 ] || { echo "hostinit: not PID 1 of a new PID namespace; refusing" >&2; exit 1; }
[ "$(stat -L -c %i /proc/self/ns/net)" != "$ROOTNET" ] \
  || { echo "hostinit: in the machine's own network namespace; refusing" >&2; exit 1; }

PUBKEY=$(cat "$PUB")
mount --make-rprivate /
for d in etc var usr opt srv; do
  [ -d "/$d" ] || continue
  mkdir -p "$S/upper/$d" "$S/work/$d"
  mount -t overlay "tunnelops-$d" \
    -o "lowerdir=/$d,upperdir=$S/upper/$d,workdir=$S/work/$d,volatile" "/$d"
done
# /root and /home start empty: an overlay would show the machine's own ~/.ssh and dotfiles.
mkdir -p "$S/roothome" "$S/home"; chmod 700 "$S/roothome"; chmod 755 "$S/home"
mount --bind "$S/roothome" /root
mount --bind "$S/home" /home
cp /usr/share/base-files/dot.bashrc /root/.bashrc
cp /usr/share/base-files/dot.profile /root/.profile
umount -R -l /run/netns 2>/dev/null || true         # the machine's netns handles: not ours
# Keep the machine's cgroup tree (rootless podman needs it) across the fresh /sys below.
mount -t tmpfs -o mode=0755,nosuid,nodev,size=64m tunnelops-run /run
mkdir -p /run/.cgroup
mount --rbind /sys/fs/cgroup /run/.cgroup
mount -t sysfs -o ro,nosuid,nodev,noexec tunnelops-sys /sys   # /sys/class/net = this netns
mount --move /run/.cgroup /sys/fs/cgroup
rmdir /run/.cgroup
mkdir -p /run/lock /run/sshd /run/dbus /run/user /run/wireguard; chmod 1777 /run/lock
ln -s /dev/shm /run/shm
mount -t tmpfs -o mode=1777,nosuid,nodev,size=256m tunnelops-tmp /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev,size=64m tunnelops-shm /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 tunnelops-pts /dev/pts
mount --bind /dev/pts/ptmx /dev/ptmx
# Like a container: /proc/sys read-only but for this netns' /proc/sys/net, so a host's
# `sysctl` can never change the real machine's kernel.* or vm.* settings.
# The kernel lets a container mount a new proc only if some proc mount in this namespace is
# fully visible (no overmounts): keep one, out of the way, for rootless podman.
mkdir -p /run/.tunnelops-proc && mount -t proc tunnelops-proc /run/.tunnelops-proc
mount --bind /proc/sys /proc/sys
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,ro /proc/sys

hostname "$H"
echo "$H" >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$H" >/etc/hosts
rm -f /etc/machine-id; dbus-uuidgen --ensure=/etc/machine-id
mkdir -p /var/lib/dbus; ln -sf /etc/machine-id /var/lib/dbus/machine-id

# Own host keys: one ed25519 key is enough and fast to make.
rm -f /etc/ssh/ssh_host_*key*
ssh-keygen -q -t ed25519 -N '' -C "root@$H" -f /etc/ssh/ssh_host_ed25519_key
mkdir -p /etc/ssh/sshd_config.d
printf 'HostKey /etc/ssh/ssh_host_ed25519_key\nUseDNS no\nMaxStartups 50:30:100\n' \
  >/etc/ssh/sshd_config.d/10-tunnelops-lab.conf
install -d -m 700 /root/.ssh; echo "$PUBKEY" >/root/.ssh/authorized_keys

adduser_() {  # a normal user: no password (but not "locked" for sshd), the client key
  local u=$1
  getent passwd "$u" >/dev/null || useradd -m -s /bin/bash "$u"
  usermod -p '*' "$u"
  install -d -m 700 -o "$u" -g "$u" "/home/$u/.ssh"
  echo "$PUBKEY" >"/home/$u/.ssh/authorized_keys"
  chown "$u:$u" "/home/$u/.ssh/authorized_keys"
}
adduser_ "$OPS"
echo "$OPS ALL=(ALL) NOPASSWD:ALL" >"/etc/sudoers.d/90-$OPS"; chmod 440 "/etc/sudoers.d/90-$OPS"
if [ -n "$PODU" ]; then
  adduser_ "$PODU"
  grep -q "^$PODU:" /etc/subuid || usermod --add-subuids 100000-165535 "$PODU"
  grep -q "^$PODU:" /etc/subgid || usermod --add-subgids 100000-165535 "$PODU"
  uid=$(id -u "$PODU")
  # What logind does for a lingering user: a runtime dir that outlives sessions.
  install -d -m 700 -o "$PODU" -g "$PODU" "/run/user/$uid"
  # No systemd, hybrid cgroups, no journald here: see the lab-probes notes.
  mkdir -p /etc/containers
  cat >/etc/containers/containers.conf <<'CONF'
# tunnelops lab: no systemd, a hybrid cgroup layout (crun refuses it), no journald.
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat >/etc/containers/storage.conf <<'CONF'
# tunnelops lab: native rootless overlay works on this kernel (the default would be vfs).
[storage]
driver = "overlay"
CONF
fi

/usr/sbin/sshd -E /var/log/sshd.log                 # daemonizes; reparented to PID 1
echo TUNNELOPS-READY
exec /usr/bin/catatonit -P
