#!/bin/sh
# Builds a busybox root file system from the host's busybox-static (Debian package
# busybox-static). The tar is written deterministically (sorted names, fixed times and
# owners) so that the same busybox binary always gives the same box digest.
set -eu
out=${1:?usage: build.sh OUT}
bb=/bin/busybox
[ -x "$bb" ] || { echo "build.sh: $bb is missing; install busybox-static" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
for d in bin sbin usr/bin usr/sbin etc root tmp var/www var/log var/run proc sys dev srv; do
  mkdir -p "$root/$d"
done
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list-full); do
  [ "$applet" = "bin/busybox" ] && continue
  ln -sf /bin/busybox "$root/$applet"
done
cat > "$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$root/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
G
echo "hdev-busybox" > "$root/etc/hostname"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
printf 'NAME="hdev busybox"\nID=busybox\n' > "$root/etc/os-release"

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -C "$root" -cf "$out/rootfs.tar" .
