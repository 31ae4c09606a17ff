#!/bin/sh
# Configure the VM tier's Debian root file system, once per image build. Runs chrooted into
# it, inside namespaces of its own (tunnelops.lab.vm_image: a new network namespace with only
# lo, a new PID namespace), so nothing a package starts can reach this machine's network.
#   vm_rootfs.sh SUDO_USER PODMAN_USER
# What differs between VMs (hostname, addresses, host key, the lab's client key, the role)
# comes from the kernel command line at every boot: see vm_guest.sh.
set -eu
OPS=$1 PODU=$2
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

echo "/dev/vda / ext4 defaults,errors=remount-ro 0 1" >/etc/fstab
echo tunnelops-vm >/etc/hostname
: >/etc/resolv.conf                 # debootstrap copied this machine's: no DNS in the lab
rm -f /etc/ssh/ssh_host_*           # each VM makes its own at first boot (one base image)
mkdir -p /etc/ssh/sshd_config.d
cat >/etc/ssh/sshd_config.d/10-tunnelops-lab.conf <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF

# Users as on the namespace lab's hosts: a sudo user, and the rootless Podman user with
# subordinate ids and lingering (its systemd user manager runs from boot, logged in or not).
touch /etc/subuid /etc/subgid
for u in "$OPS" "$PODU"; do
  id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u"
  usermod -p '*' "$u"               # no password, but not "locked" for sshd
  install -d -m 700 -o "$u" -g "$u" "/home/$u/.ssh"
done
grep -q "^$PODU:" /etc/subuid || usermod --add-subuids 100000-165535 "$PODU"
grep -q "^$PODU:" /etc/subgid || usermod --add-subgids 100000-165535 "$PODU"
echo "$OPS ALL=(ALL) NOPASSWD:ALL" >"/etc/sudoers.d/90-$OPS"; chmod 440 "/etc/sudoers.d/90-$OPS"
mkdir -p /var/lib/systemd/linger; : >"/var/lib/systemd/linger/$PODU"

# Every boot, before the network and sshd: this VM's identity from the kernel command line.
install -m 755 /tmp/vm_guest.sh /usr/local/sbin/tunnelops-lab-identity
cat >/etc/systemd/system/tunnelops-lab-identity.service <<'EOF'
[Unit]
Description=tunnelops lab: this VM's identity from the kernel command line
DefaultDependencies=no
After=local-fs.target
Before=network-pre.target NetworkManager.service networking.service ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/tunnelops-lab-identity

[Install]
WantedBy=sysinit.target
EOF
systemctl enable tunnelops-lab-identity.service >/dev/null 2>&1

# A new root SSH session would start root's systemd user manager again each time (logind
# stops it 10 s after the last session): 10-15 s of emulated CPU per connection. Keep it.
mkdir -p /etc/systemd/logind.conf.d
printf '[Login]\nUserStopDelaySec=infinity\n' >/etc/systemd/logind.conf.d/10-tunnelops-lab.conf

# A small initramfs: direct kernel boot of a virtio disk needs only these (MODULES=most made
# a 37 MB one, seconds of emulated decompression at every boot).
printf 'MODULES=list\n' >/etc/initramfs-tools/conf.d/90-tunnelops-lab.conf
printf 'virtio_pci\nvirtio_blk\next4\n' >/etc/initramfs-tools/modules
update-initramfs -u -k all >/dev/null

# Nothing that fetches from the network or burns emulated CPU at boot, and no consoles.
for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
         fstrim.timer man-db.timer podman-auto-update.timer podman-auto-update.service \
         podman.service podman.socket podman-restart.service e2scrub_reap.service \
         podman-clean-transient.service; do
  systemctl disable "$u" >/dev/null 2>&1 || true
done
# (sshd-keygen would add RSA and ECDSA keys at first boot: seconds of emulated CPU for keys
# sshd is not told to use; tunnelops-lab-identity makes the one ed25519 key.)
for u in sshd-keygen.service netavark-dhcp-proxy.socket netavark-dhcp-proxy.service; do
  systemctl disable "$u" >/dev/null 2>&1 || true
done
systemctl mask systemd-firstboot.service getty.target >/dev/null 2>&1 || true
# ifupdown-ng brings the VPS's interfaces up at boot (masked on home); the chroot's
# package scripts did not enable it.
systemctl enable networking.service >/dev/null 2>&1
# First boot must not look like an update of /usr (ConditionNeedsUpdate=): no ldconfig, no
# hwdb rebuild, no systemd-update-done at every VM's first boot.
/usr/lib/systemd/systemd-update-done 2>/dev/null || {
  for d in /etc /var; do
    printf 'TIMESTAMP_NSEC=%s\n' "$(stat -c %Y /usr)000000000" >"$d/.updated"
  done
}
# NetworkManager as on Fedora: keyfiles only (no ifupdown plugin), and no automatic
# "Wired connection" profiles: home's eth0 has the lab's profile (vm_guest.sh). NM manages
# home's network, ifupdown-ng the VPS's; each VM masks the other's at boot (tunnelops.lab.vm).
mkdir -p /etc/NetworkManager/conf.d
printf '[main]\nplugins=keyfile\nno-auto-default=*\n' >/etc/NetworkManager/conf.d/10-tunnelops-lab.conf
exit 0
