#!/usr/bin/env bash
# Benchmark: hdev against Vagrant + vagrant-libvirt (Debian's packages, installed with
# apt-get when absent) for one VM, side by side in one run, the order alternating from one
# repetition to the next. Both boot the same guest: hdev's debian box, turned into a
# vagrant-libvirt box (same disk, same kernel and initramfs booted directly), with the
# same memory, CPUs and provisioning (an inline shell step). Writes medians, raw runs
# and the ratio hdev/Vagrant per verb to the "hdev and Vagrant (one VM)" section of
# docs/BENCHMARKS.md. Needs root (libvirt's system instance, apt-get).
#
#   bench/vagrant.sh        # UP_REPS=3 REPS=5 SLEEP=5 MEMORY_MB=512 CPUS=1 TIMEOUT=900
#
# UP_REPS: up from nothing and destroy, each tool on its own (the other one has no VM);
# then hdev's up after destroy in the same folder, resumed from its provisioned-state cache.
# REPS: the quick verbs with both VMs defined: exec round trip, snapshot save, reset
# (hdev reset vs vagrant snapshot restore of a snapshot taken after provisioning, until
# SSH answers), halt, up from halted. TIMEOUT bounds every command and every wait.
#
# The guest has no DHCP client in user space, and Debian's initramfs-tools does not act
# on `ip=dhcp` for a local root. vagrant-libvirt finds the VM by its DHCP lease, so the
# Vagrant VM's kernel command line also starts systemd's network generator (which turns
# `ip=dhcp` into a .network file under /run) and systemd-networkd, both in the box but
# not enabled; nothing on the disk changes.
set -euo pipefail
shopt -s inherit_errexit
root=$(cd "$(dirname "$0")/.." && pwd)
up_reps=${UP_REPS:-3}
reps=${REPS:-5}
sleep_s=${SLEEP:-5}
mem=${MEMORY_MB:-512}
cpus=${CPUS:-1}
tmo=${TIMEOUT:-900}
# How the Vagrant VM acts on ip=dhcp (see above); VAGRANT_NET_ARGS= to try without.
net_args=${VAGRANT_NET_ARGS-systemd.wants=systemd-network-generator.service systemd.wants=systemd-networkd.service}
virsh=(virsh -c qemu:///system)
cd "$root"
cargo build --release --quiet --bin hdev
hdev=$root/target/release/hdev
export HDEV_HOME=${HDEV_HOME:-$root/target/tmp/hdev-home}
export VAGRANT_HOME=${VAGRANT_HOME:-$root/target/tmp/vagrant-home}
export VAGRANT_DEFAULT_PROVIDER=libvirt VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_COLOR=1
die() { echo "bench/vagrant.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (libvirt's system instance, apt-get)"

# Vagrant and its libvirt provider, from Debian.
if ! command -v vagrant >/dev/null || ! dpkg -s vagrant-libvirt >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y vagrant vagrant-libvirt >/dev/null
fi
vagrant_version=$(vagrant --version | awk '{print $2}')
vlv_version=$(dpkg-query -W -f '${Version}' vagrant-libvirt)
# vagrant-libvirt's default storage pool.
if ! "${virsh[@]}" pool-info default >/dev/null 2>&1; then
  "${virsh[@]}" pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
  "${virsh[@]}" pool-build default >/dev/null
  "${virsh[@]}" pool-autostart default >/dev/null
fi
"${virsh[@]}" pool-info default | grep 'State: *running' >/dev/null || "${virsh[@]}" pool-start default >/dev/null

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d)
mkdir -p "$work/hdev" "$work/vagrant"
vdom="hdev-bench-vagrant-default"  # vagrant-libvirt's domain: default_prefix + machine
kdir=""
remove_vdom() {
  "${virsh[@]}" destroy "$vdom" >/dev/null 2>&1 || true
  "${virsh[@]}" undefine "$vdom" --snapshots-metadata --remove-all-storage >/dev/null 2>&1 ||
    echo "could not remove domain $vdom" >&2
}
cleanup() {
  local rc=$?
  (cd "$work/hdev" 2>/dev/null && timeout 300 "$hdev" destroy -y >/dev/null 2>&1) ||
    echo "cleanup: hdev destroy failed" >&2
  (cd "$work/vagrant" 2>/dev/null && timeout 300 vagrant destroy -f >/dev/null 2>&1) ||
    echo "cleanup: vagrant destroy failed" >&2
  # Whatever vagrant left behind (an interrupted up), by the domain's name.
  if "${virsh[@]}" dominfo "$vdom" >/dev/null 2>&1; then remove_vdom; fi
  [ -z "$kdir" ] || rm -rf "$kdir"
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if "${virsh[@]}" dominfo "$vdom" >/dev/null 2>&1; then
  echo "removing $vdom, left by an interrupted run" >&2
  remove_vdom
fi
. "$root/bench/lib.sh"
# Unique to this run, so no provisioned-state cache entry of an earlier run serves it.
prov="echo provisioned > /root/provisioned; sleep $sleep_s; : bench-$$"

# hdev's side: one VM from the debian recipe.
cat > "$work/hdev/Envfile" <<EOF
[env]
name = "bench-vagrant"

[box.debian]
recipe = "$root/boxes/debian-bookworm"

[network.lan]
subnet = "10.234.17.0/24"

[machine.vm]
backend = "libvirt"
box = "debian"
memory = "${mem}M"
cpus = $cpus
networks = ["lan"]
provision = [{ shell = "$prov" }]
EOF
# The debian box in hdev's store (built from the recipe when missing).
(cd "$work/hdev" && timeout "$tmo" "$hdev" box build "$root/boxes/debian-bookworm" >/dev/null)
boxdir=$(python3 - "$HDEV_HOME/boxes" <<'PY'
import json, os, sys
store = sys.argv[1]
found = []
for d in sorted(os.listdir(store)):
    try:
        m = json.load(open(os.path.join(store, d, "manifest.json")))
    except (OSError, ValueError):
        continue
    if m.get("name") == "debian-bookworm" and all(
        os.path.exists(os.path.join(store, d, f)) for f in ("disk.qcow2", "vmlinuz", "initrd.img")):
        found.append((str(m.get("created", "")), os.path.join(store, d)))
print(max(found)[1] if found else "")
PY
)
[ -n "$boxdir" ] || die "no debian-bookworm box with disk.qcow2, vmlinuz and initrd.img in $HDEV_HOME/boxes"
digest=$(basename "$boxdir")
tag=${digest:0:12}
tag=${tag,,}

# Vagrant's side: the same disk as a vagrant-libvirt box, named after the hdev box.
vbox=hdev-debian-$tag
if ! vagrant box list 2>/dev/null | grep "^$vbox " >/dev/null; then
  size=$(qemu-img info --output=json "$boxdir/disk.qcow2" | python3 -c 'import json,sys; print((json.load(sys.stdin)["virtual-size"] + 2**30 - 1) // 2**30)')
  b=$(mktemp -d -p "$root/target/tmp")
  printf '{"provider":"libvirt","format":"qcow2","virtual_size":%s}\n' "$size" > "$b/metadata.json"
  printf 'Vagrant.configure("2") do |config|\n  config.vm.provider :libvirt do |libvirt|\n    libvirt.driver = "qemu"\n  end\nend\n' > "$b/Vagrantfile"
  cp "$boxdir/disk.qcow2" "$b/box.img"
  tar -C "$b" -cf "$b.box" metadata.json Vagrantfile box.img
  timeout "$tmo" vagrant box add --name "$vbox" "$b.box" >/dev/null
  rm -rf "$b" "$b.box"
fi
# The kernel and initramfs where libvirt's qemu user can read them.
kdir=/var/lib/libvirt/boot/hdev-bench-vagrant-$$
mkdir -p "$kdir"
cp "$boxdir/vmlinuz" "$boxdir/initrd.img" "$kdir/"
chmod 0755 "$kdir" && chmod 0644 "$kdir"/*
ssh-keygen -q -t ed25519 -N '' -C hdev-bench-vagrant -f "$work/vagrant/key"
pubkey=$(base64 -w0 < "$work/vagrant/key.pub")
cmdline="root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 ip=dhcp $net_args hdev.hostname=vm hdev.key=$pubkey"
cat > "$work/vagrant/Vagrantfile" <<EOF
Vagrant.configure("2") do |config|
  config.vm.box = "$vbox"
  config.vm.boot_timeout = $tmo
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.ssh.username = "root"
  config.ssh.private_key_path = "$work/vagrant/key"
  config.ssh.insert_key = false
  config.vm.provision "shell", inline: "$prov"
  config.vm.provider :libvirt do |libvirt|
    libvirt.uri = "qemu:///system"
    libvirt.driver = "qemu"
    libvirt.default_prefix = "hdev-bench-vagrant-"
    libvirt.storage_pool_name = "default"
    libvirt.memory = $mem
    libvirt.cpus = $cpus
    libvirt.kernel = "$kdir/vmlinuz"
    libvirt.initrd = "$kdir/initrd.img"
    libvirt.cmd_line = "$cmdline"
    # The devices hdev gives its VMs: no display, a virtio RNG, no balloon, and a disk
    # cache that never flushes (throwaway development VMs).
    libvirt.graphics_type = "none"
    libvirt.video_type = "none"
    libvirt.random :model => "random"
    libvirt.memballoon_enabled = false
    libvirt.disk_driver :cache => "unsafe"
  end
end
EOF

# One command, timed, bounded; its output kept for when it fails.
run() { # dir command... -> ms
  local dir=$1 t0 t1
  shift
  t0=$(now_ms)
  (cd "$dir" && timeout "$tmo" "$@" >"$work/last.out" 2>&1) ||
    { cat "$work/last.out" >&2; die "failed (or timed out after ${tmo}s): $*"; }
  t1=$(now_ms)
  echo $((t1 - t0))
}
# A command until it succeeds (SSH answers), at most TIMEOUT seconds.
until_ok() { # dir command...
  local dir=$1 end=$(($(date +%s) + tmo))
  shift
  until (cd "$dir" && timeout 60 "$@" >/dev/null 2>&1); do
    [ "$(date +%s)" -lt "$end" ] || die "no answer within ${tmo}s: $*"
    sleep 0.5
  done
}
hd=$work/hdev
vg=$work/vagrant
h_up() { run "$hd" "$hdev" up --no-cache; }
v_up() { run "$vg" vagrant up; }
h_exec() { run "$hd" "$hdev" exec vm -- true; }
v_exec() { run "$vg" vagrant ssh -c true; }
h_destroy() { run "$hd" "$hdev" destroy -y; }
v_destroy() { run "$vg" vagrant destroy -f; }
h_halt() { run "$hd" "$hdev" halt; }
v_halt() { run "$vg" vagrant halt; }
h_snap() { run "$hd" "$hdev" snapshot save "s$1"; }
v_snap() { run "$vg" vagrant snapshot save "s$1"; }
h_reset() { local t0; t0=$(now_ms); run "$hd" "$hdev" reset >/dev/null; until_ok "$hd" "$hdev" exec vm -- true; echo $(($(now_ms) - t0)); }
v_reset() { local t0; t0=$(now_ms); run "$vg" vagrant snapshot restore --no-provision base >/dev/null; until_ok "$vg" vagrant ssh -c true; echo $(($(now_ms) - t0)); }
# Both sides provisioned: the file is there.
h_check() { (cd "$hd" && timeout 120 "$hdev" exec vm -- test -f /root/provisioned) || die "hdev: VM not provisioned"; }
v_check() { (cd "$vg" && timeout 120 vagrant ssh -c 'test -f /root/provisioned' >/dev/null 2>&1) || die "vagrant: VM not provisioned"; }
order() { if [ $(($1 % 2)) = 1 ]; then echo "h v"; else echo "v h"; fi; }
declare -A raw
# time KEY FUNCTION ARGS...: one run recorded (a failure stops the script: assigned first).
timed() { local k=$1 v; shift; v=$("$@"); [[ $v =~ ^[0-9]+$ ]] || die "$k: no time"; raw[$k]+="$v "; echo "$k $v ms" >&2; }

# vagrant-libvirt uploads a box into the storage pool the first time it is used; that is
# the box import, done once and not timed (hdev's store holds the box already).
if ! "${virsh[@]}" vol-list default | grep "${vbox}_vagrant_box_image" >/dev/null; then
  echo "importing $vbox into the storage pool (once, not timed)" >&2
  v_up >/dev/null
  v_check
  v_destroy >/dev/null
fi

# Up from nothing and destroy: one VM on the host at a time.
for r in $(seq "$up_reps"); do
  for t in $(order "$r"); do
    timed "${t}_up" "${t}_up"
    "${t}_check"
    timed "${t}_destroy" "${t}_destroy"
  done
done

# Up after destroy in the same folder: hdev resumes the VM from its provisioned-state cache
# (disk and memory kept by a first up with the cache on, not timed); Vagrant has no such
# cache, so its up after destroy is its up from nothing (the series above).
h_reup() { run "$hd" "$hdev" destroy -y >/dev/null; run "$hd" "$hdev" up; }
h_up_cached() { run "$hd" "$hdev" up; }
h_up_cached >/dev/null
h_check
for r in $(seq "$up_reps"); do
  timed h_reup h_reup
  h_check
done
h_destroy >/dev/null

# The quick verbs, both VMs defined.
h_up >/dev/null
v_up >/dev/null
run "$vg" vagrant snapshot save base >/dev/null   # what `vagrant snapshot restore` returns to
for r in $(seq "$reps"); do
  for t in $(order "$r"); do
    timed "${t}_exec" "${t}_exec"
    timed "${t}_snap" "${t}_snap" "$r"
    # Something to undo, then back to the state after provisioning.
    if [ "$t" = h ]; then
      (cd "$hd" && timeout 120 "$hdev" exec vm -- rm -f /root/provisioned) || die "hdev exec failed"
    else
      (cd "$vg" && timeout 120 vagrant ssh -c 'rm -f /root/provisioned' >/dev/null 2>&1) || die "vagrant ssh failed"
    fi
    timed "${t}_reset" "${t}_reset"
    "${t}_check"
    timed "${t}_halt" "${t}_halt"
    timed "${t}_upagain" "${t}_up"
    "${t}_check"
  done
done

check() { local x; for x in "$@"; do [[ $x =~ ^[0-9.]+$ ]] || die "a series failed"; done; }
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
secs() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1000 }'; }
rows=""
declare -A ratios
for v in up halt upagain reset snap exec destroy; do
  h=$(med "${raw[h_$v]}"); g=$(med "${raw[v_$v]}")
  check "$h" "$g"
  case $v in
    up) label="up from nothing (create, boot, provision; hdev: and baseline)" ;;
    halt) label="halt (ACPI shutdown)" ;;
    upagain) label="up from halted" ;;
    reset) label="reset until SSH answers (\`hdev reset\` / \`vagrant snapshot restore\`)" ;;
    snap) label="snapshot save" ;;
    exec) label="exec round trip (\`hdev exec vm -- true\` / \`vagrant ssh -c true\`)" ;;
    destroy) label="destroy" ;;
  esac
  rows+="| $label | $(secs "$h") | $(secs "$g") | $(ratio "$h" "$g")x |"$'\n'
  ratios[$v]=$(ratio "$h" "$g")
  if [ "$v" = up ]; then
    r=$(med "${raw[h_reup]}")
    check "$r"
    rows+="| up after destroy, same folder (hdev: resumed from the provisioned-state cache; Vagrant: up from nothing) | $(secs "$r") | $(secs "$g") | $(ratio "$r" "$g")x |"$'\n'
  fi
done
goal=$(awk -v r="${ratios[up]}" 'BEGIN { print (r <= 0.7) ? "met" : "not met" }')
trial=""
if [ "$up_reps" -lt 3 ] || [ "$reps" -lt 5 ]; then
  trial="Fewer runs than the defaults (UP_REPS=$up_reps, REPS=$reps): read the raw runs beside
the medians, and the load average below for what else the machine was doing.

"
fi
rawline=""
for v in up halt upagain reset snap exec destroy; do
  rawline+="$v hdev [${raw[h_$v]% }] Vagrant [${raw[v_$v]% }]; "
done
rawline+="up after destroy hdev [${raw[h_reup]% }]; "
section=$(cat <<EOF
## hdev and Vagrant (one VM)

${trial}\`bench/vagrant.sh\`, $(date -u +%F), $(nproc) CPUs (load average $load_start at the start), release build,
VMs under $(if grep -qE 'vmx|svm' /proc/cpuinfo; then echo KVM; else echo 'software emulation (TCG)'; fi).
hdev against Vagrant $vagrant_version with vagrant-libvirt $vlv_version (Debian's packages), side by side in one
run, which tool goes first alternating from one repetition to the next. One VM, ${mem} MiB
and $cpus CPU, booting the same guest on both sides: hdev's debian box ($tag), its disk
made into a vagrant-libvirt box and its kernel and initramfs booted directly by both
(Vagrant with \`libvirt.kernel\`, \`initrd\`, \`cmd_line\`), the same devices (virtio disk
with \`cache=unsafe\`, virtio NIC, virtio RNG, no display). The box is imported on both
sides before timing. Provisioning is one inline shell step (write a file, \`sleep $sleep_s\`).
Up from nothing and destroy: medians of $up_reps runs, one VM on the host at a time; the
other verbs: medians of $reps runs with both VMs defined. hdev's \`up\` from nothing runs
with \`--no-cache\`; up after destroy runs with the cache on, after one untimed \`up\` that
kept the VM (its baseline's disk layer and memory). hdev's \`up\` also takes its
baseline (disk layer and memory); Vagrant's reset restores \`vagrant snapshot save base\`,
taken once after provisioning and not timed. Reset is timed until
\`hdev exec vm -- true\` / \`vagrant ssh -c true\` succeeds after a file was removed.

| verb | hdev (median s) | Vagrant (median s) | hdev/Vagrant |
|---|---:|---:|---:|
${rows%$'\n'}

Goal of issue #17, VM \`up\` at most 0.7x Vagrant's time: **$goal** (${ratios[up]}x).

Networking of the Vagrant VM: vagrant-libvirt learns the VM's address from libvirt's DHCP
leases, and the guest has no DHCP client in user space. \`ip=dhcp\` alone gets no lease:
the kernel has no IP autoconfiguration (it hands \`ip=dhcp\` to user space) and Debian's
initramfs-tools configures the network only for an NFS root. So the command line also wants
\`systemd-network-generator.service\` (which writes a .network file from \`ip=dhcp\`) and
\`systemd-networkd.service\`, both in the box and otherwise off. hdev gives the address on
the command line (\`hdev.net0\`), applied by \`hdev-guest-init\`.

Raw runs (ms): ${rawline%; }.
EOF
)
write_section "$section"
