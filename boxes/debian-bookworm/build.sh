#!/bin/sh
# Builds Debian bookworm with debootstrap. Needs root, debootstrap, qemu-img and
# mkfs.ext4 (e2fsprogs) on the host, and the Debian mirror (MIRROR, default
# deb.debian.org). Run from the recipe folder as `build.sh OUT`.
#
# Recipes that build on this one (`include = ["../debian-bookworm"]`) run it with:
#   PACKAGES=a,b        more packages to install
#   SERVICES="x y"      more systemd units to enable
#   ROOTFS=0            no root file system for Docker (a box for libvirt only)
#   DISK_SIZE=3G        a larger disk
#
# Reproducibility: hdev runs this with SOURCE_DATE_EPOCH (box.toml's source_date_epoch).
# Every file made during the build gets that time, archives are written sorted with
# fixed owners and times, the ext4 file system gets a fixed UUID, hash seed and time, and
# logs, caches and machine ids are left out. What still moves is the mirror: a later build
# may install newer package versions. For the very same versions, build from a snapshot:
#   MIRROR=https://snapshot.debian.org/archive/debian/$(date -u -d @EPOCH +%Y%m%dT%H%M%SZ)
# The packages installed (dpkg-query -W) go to HDEV_PACKAGES, which hdev records.
set -eu
out=${1:?usage: build.sh OUT}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
export SOURCE_DATE_EPOCH
epoch=$SOURCE_DATE_EPOCH
packages=${HDEV_PACKAGES:-/dev/null}
# A fixed file system UUID (VMs find their root by /dev/vda, never by UUID) and directory
# hash seed: mkfs.ext4 draws both at random otherwise.
fs_uuid=9c6b2b5e-0d1f-4e2a-9b1c-68646576626f
umask 022
here=$(cd "$(dirname "$0")" && pwd)
mirror=${MIRROR:-http://deb.debian.org/debian}
size=${DISK_SIZE:-2G}
extra=${PACKAGES:+,$PACKAGES}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase \
  --include=systemd-sysv,udev,dbus,openssh-server,sudo,python3,iproute2,iputils-ping,procps,linux-image-cloud-amd64,initramfs-tools,e2fsprogs,ca-certificates,wget,less$extra \
  bookworm "$root" "$mirror"

echo "hdev-debian" > "$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\n' > "$root/etc/fstab"
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" \
  > "$root/etc/apt/sources.list"

# Machine settings (hostname, SSH key, addresses) come from the kernel command line.
install -m 0755 "$here/hdev-guest-init" "$root/usr/local/sbin/hdev-guest-init"
install -m 0644 "$here/hdev-guest-init.service" "$root/etc/systemd/system/hdev-guest-init.service"
install -m 0644 "$here/hdev-growfs.service" "$root/etc/systemd/system/hdev-growfs.service"
# shellcheck disable=SC2086 # a list of units
chroot "$root" systemctl enable hdev-guest-init.service hdev-growfs.service serial-getty@ttyS0.service ${SERVICES:-}
# Nothing may wait for a network that hdev configures itself.
chroot "$root" systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1 || true

# Boot time under software emulation, where every CPU cycle counts: a VM boots its kernel
# with an initramfs holding only what finds /dev/vda (and the NIC driver, for `ip=`), not
# every storage driver ("most": 3x the size, seconds to unpack and probe); no KVM modules
# (nothing nests); and no units a throwaway machine does not need at boot: periodic
# scrubs and cleanups, preloads of modules that load on demand anyway, and mounts of
# debugging file systems.
printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\n' >> "$root/etc/initramfs-tools/modules"
printf 'MODULES=list\n' > "$root/etc/initramfs-tools/conf.d/hdev-modules"
printf 'blacklist kvm\nblacklist kvm_amd\nblacklist kvm_intel\n' > "$root/etc/modprobe.d/hdev-no-kvm.conf"
chroot "$root" update-initramfs -u -k all
chroot "$root" systemctl mask e2scrub_reap.service e2scrub_all.timer fstrim.timer \
  apt-daily.timer apt-daily-upgrade.timer man-db.timer dpkg-db-backup.timer \
  modprobe@drm.service modprobe@efi_pstore.service modprobe@dm_mod.service \
  modprobe@loop.service sys-kernel-debug.mount sys-kernel-tracing.mount \
  systemd-udev-settle.service >/dev/null 2>&1 || true

# SSH: root by key only; host keys are made per machine at first boot (hdev-guest-init).
mkdir -p "$root/etc/ssh/sshd_config.d"
printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n' \
  > "$root/etc/ssh/sshd_config.d/hdev.conf"
rm -f "$root"/etc/ssh/ssh_host_*
# No password login at all, console included: root by the environment's key only.
chroot "$root" passwd -l root >/dev/null
: > "$root/etc/machine-id"                 # a fresh machine id per machine
# Name servers are the host's, given at boot (VMs) or by Docker (containers); the build
# machine's resolver does not belong in the box.
rm -f "$root/etc/resolv.conf" && : > "$root/etc/resolv.conf"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
# What records when and where the build ran: logs, caches keyed by time, ids.
find "$root/var/log" -type f -delete
rm -f "$root/var/cache/ldconfig/aux-cache" "$root/var/lib/dbus/machine-id" \
  "$root/var/lib/systemd/catalog/database" "$root"/etc/*- "$root/etc/.pwd.lock"
# Python byte code is made again on first use; compiled at install time it can carry
# the build's time.
find "$root/usr" -xdev -type d -name __pycache__ -prune -exec rm -rf {} +

# The packages the box is made of, for the manifest.
chroot "$root" dpkg-query -W -f '${binary:Package} ${Version}\n' > "$packages"

cp -L "$root/vmlinuz" "$out/vmlinuz" 2>/dev/null || cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp -L "$root/initrd.img" "$out/initrd.img" 2>/dev/null || cp "$root"/boot/initrd.img-* "$out/initrd.img"

# Every file the build made or touched gets the fixed time (files from packages keep
# their own, older times).
find "$root" -xdev -newermt "@$epoch" -print0 | xargs -0r touch -h -d "@$epoch"

# Docker does without the kernel, its modules and the device nodes.
[ "${ROOTFS:-1}" = 0 ] || tar --format=gnu --sort=name --numeric-owner \
    --mtime="@$epoch" --clamp-mtime -C "$root" \
    --exclude=./boot --exclude=./vmlinuz --exclude=./vmlinuz.old --exclude=./initrd.img \
    --exclude=./initrd.img.old --exclude=./usr/lib/modules --exclude=./lib/modules \
    --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
    -cf "$out/rootfs.tar" .

raw="$out/disk.raw"
truncate -s "$size" "$raw"
E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -L hdev-root -U "$fs_uuid" \
  -E "hash_seed=$fs_uuid,root_owner=0:0" -d "$root" "$raw"
# mkfs.ext4 -d copies each file's access and change times from the build tree, and those
# are moments of this build (a change time cannot be set from user space): set both to
# the fixed time in the image itself, in one debugfs pass (which stamps the superblock
# with the fixed time too). Without this, two builds of one package set differ there.
cmds=$(mktemp)
(cd "$root" && find . -xdev -print) | sed 's|^\.||; s|^$|/|' | while IFS= read -r p; do
  printf 'sif "%s" atime @%s\nsif "%s" ctime @%s\n' "$p" "$epoch" "$p" "$epoch"
done > "$cmds"
E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$cmds" "$raw" >/dev/null 2>&1
rm -f "$cmds"
qemu-img convert -O qcow2 "$raw" "$out/disk.qcow2"
rm -f "$raw"
