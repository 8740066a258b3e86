#!/bin/sh
# Debian 12 with the Docker engine inside: the debian-bookworm recipe (included, see
# box.toml) with docker.io, iptables and apparmor (Debian's kernel enables AppArmor and
# dockerd loads its profile), dockerd started at boot. Run from the recipe folder as
# `build.sh OUT`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
PACKAGES=docker.io,iptables,apparmor SERVICES="containerd.service docker.service" \
  ROOTFS=0 DISK_SIZE=${DISK_SIZE:-3G} exec sh "$here/../debian-bookworm/build.sh" "$@"
