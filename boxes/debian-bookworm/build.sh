#!/bin/sh
# Builds Debian bookworm with debootstrap. Needs root, debootstrap, qemu-img and
# mkfs.ext4 on the host, and the Debian mirror (MIRROR, default deb.debian.org).
set -eu
out=${1:?usage: build.sh OUT}
mirror=${MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase \
  --include=systemd-sysv,openssh-server,sudo,python3,iproute2,ifupdown,isc-dhcp-client,linux-image-cloud-amd64,initramfs-tools,busybox,ca-certificates,wget \
  bookworm "$root" "$mirror"

echo "hdev-debian" > "$root/etc/hostname"
# The network comes up on every interface by DHCP unless cloud-init or hdev configures it.
cat > "$root/etc/network/interfaces" <<'N'
auto lo
iface lo inet loopback
allow-hotplug ens3
iface ens3 inet dhcp
N
printf '/dev/vda / ext4 defaults 0 1\n' > "$root/etc/fstab"
# A serial console for `hdev logs`, and no password for root on it.
chroot "$root" systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1 || true
chroot "$root" passwd -d root >/dev/null
rm -f "$root"/etc/ssh/ssh_host_*   # regenerated per machine at first boot
chroot "$root" apt-get clean
cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"

tar --sort=name --numeric-owner -C "$root" --exclude=./boot --exclude=./proc --exclude=./sys --exclude=./dev \
    -cf "$out/rootfs.tar" .
raw="$out/disk.raw"
truncate -s 2G "$raw"
mkfs.ext4 -q -F -d "$root" "$raw"
qemu-img convert -O qcow2 "$raw" "$out/disk.qcow2"
rm -f "$raw"
