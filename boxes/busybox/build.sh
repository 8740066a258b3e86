#!/bin/sh
# Builds a busybox root file system. The busybox binary is Debian's dynamically linked
# one (package `busybox`, fetched with `apt-get download`) with the host's glibc beside
# it: a static glibc busybox must load glibc's name-service modules at run time to
# resolve a machine's name, and crashes doing so. Without the mirror, the host's
# busybox-static is used, and names resolve only through `nslookup`.
# The tar is written deterministically (sorted names, fixed modes, times and owners) so
# that the same inputs always give the same box digest. hdev runs this script with
# SOURCE_DATE_EPOCH (box.toml's `source_date_epoch`) and HDEV_PACKAGES, a file that
# receives the packages the box is made of (NAME VERSION per line).
set -eu
out=${1:?usage: build.sh OUT}
epoch=${SOURCE_DATE_EPOCH:-0}
packages=${HDEV_PACKAGES:-/dev/null}
umask 022
work=$(mktemp -d)
root=$(mktemp -d)
trap 'rm -rf "$root" "$work"' EXIT

bb=""
if (cd "$work" && apt-get download busybox >/dev/null 2>&1); then
  dpkg-deb -x "$work"/busybox_*.deb "$work/pkg"
  bb="$work/pkg/bin/busybox"
  echo "build.sh: using Debian's dynamic busybox ($(basename "$work"/busybox_*.deb))"
  dpkg-deb -f "$work"/busybox_*.deb Package Version | sed 's/^[^:]*: //' | paste -sd' ' > "$packages"
elif [ -x /bin/busybox ]; then
  bb=/bin/busybox
  echo "build.sh: warning: the Debian mirror is unreachable; using the host's busybox-static" >&2
  dpkg-query -W -f '${Package} ${Version}\n' busybox-static >> "$packages" 2>/dev/null || true
else
  echo "build.sh: no busybox: install busybox-static or make the Debian mirror reachable" >&2
  exit 1
fi

for d in bin sbin usr/bin usr/sbin etc root tmp var/www var/log var/run proc sys dev srv; do
  mkdir -p "$root/$d"
done
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
# The applet list comes from the host's busybox-static when the chosen binary cannot
# run here; both are the same busybox version.
list=$("$bb" --list-full 2>/dev/null || /bin/busybox --list-full)
for applet in $list; do
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
# The C library the busybox binary links against, with its name-service modules (the
# host's glibc: box.toml lists these files as inputs).
libdir=/lib/x86_64-linux-gnu
mkdir -p "$root$libdir" "$root/lib64"
for lib in libc.so.6 libnss_files.so.2 libnss_dns.so.2 libresolv.so.2 ld-linux-x86-64.so.2; do
  cp -L "$libdir/$lib" "$root$libdir/$lib"
done
ln -sf "$libdir/ld-linux-x86-64.so.2" "$root/lib64/ld-linux-x86-64.so.2"
# The host's C library package, where dpkg knows it.
dpkg-query -W -f '${Package} ${Version}\n' libc6 >> "$packages" 2>/dev/null || true
printf 'NAME="hdev busybox"\nID=busybox\n' > "$root/etc/os-release"

tar --format=gnu --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    -C "$root" -cf "$out/rootfs.tar" .
