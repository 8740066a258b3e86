#!/usr/bin/env bash
# Benchmark: `hdev reset` against rebuilding (`hdev destroy` + `hdev up`, provisioning
# included) for a 5-container environment and for one VM, side by side in one run; and
# VM reset at two disk sizes, to show it does not grow with the disk. Writes the medians
# and ratios to the "Reset" section of docs/BENCHMARKS.md.
#
#   bench/reset.sh        # REPS=3 VM_REPS=2 SLEEP=10 VM_SLEEP=20 DATA_MB=200
#
# Provisioning does real work that ends up in the baseline (it writes DATA_MB of data
# and 1000 small files) and then sleeps SLEEP seconds, a stand-in for downloading and
# installing packages (no package mirror is assumed reachable while benchmarking).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=${REPS:-3}
vm_reps=${VM_REPS:-2}
sleep_s=${SLEEP:-10}
vm_sleep=${VM_SLEEP:-20}
data=${DATA_MB:-200}
cd "$root"
cargo build --release --quiet --bin hdev
hdev=$root/target/release/hdev
work=$(mktemp -d)
# The VM box is shared with the tests' store (built once from the recipe).
export HDEV_HOME=${HDEV_HOME:-$root/target/tmp/hdev-home}
envs="docker vm vmbig"
cleanup() {
  for e in $envs; do
    (cd "$work/$e" 2>/dev/null && "$hdev" destroy -y >/dev/null 2>&1) || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
. "$root/bench/lib.sh"
prov() {
  echo "provision = [{ shell = \"mkdir -p /opt && dd if=/dev/zero of=/opt/data bs=1M count=$data 2>/dev/null; mkdir -p /opt/files; i=0; while [ \$i -lt 1000 ]; do echo \$i > /opt/files/f\$i; i=\$((i+1)); done; sleep $1\" }]"
}
mkdir -p "$work/docker" "$work/vm" "$work/vmbig"
{
  printf '[env]\nname = "bench-reset"\n\n[box.busybox]\nrecipe = "%s/boxes/busybox"\n\n[network.lan]\nsubnet = "10.234.1.0/24"\n' "$root"
  for m in db queue app worker web; do
    printf '\n[machine.%s]\nbackend = "docker"\nbox = "busybox"\nnetworks = ["lan"]\n%s\n' "$m" "$(prov "$sleep_s")"
    case $m in app|worker) echo 'depends_on = ["db", "queue"]' ;; web) echo 'depends_on = ["app"]' ;; esac
  done
} > "$work/docker/Envfile"
vm_envfile() { # name subnet disk
  printf '[env]\nname = "%s"\n\n[box.debian]\nrecipe = "%s/boxes/debian-bookworm"\n\n[network.lan]\nsubnet = "%s"\n\n[machine.vm]\nbackend = "libvirt"\nbox = "debian"\nmemory = "384M"\ndisk = "%s"\nnetworks = ["lan"]\n%s\n' \
    "$1" "$root" "$2" "$3" "$(prov "$vm_sleep")"
}
vm_envfile bench-vm 10.234.2.0/24 2G > "$work/vm/Envfile"
vm_envfile bench-vmbig 10.234.3.0/24 32G > "$work/vmbig/Envfile"

run() { # dir args... -> prints ms
  local t0 t1
  t0=$(now_ms)
  (cd "$1" && shift && "$hdev" "$@" >/dev/null 2>"$work/last.err") || { cat "$work/last.err" >&2; exit 1; }
  t1=$(now_ms)
  echo $((t1 - t0))
}
dirty() { (cd "$1" && "$hdev" exec "$2" -- sh -c 'rm -rf /opt/files; echo x > /etc/dirty' >/dev/null); }

declare -A rebuild reset
measure() { # key dir machine reps
  local key=$1 dir=$2 m=$3 n=$4
  rebuild[$key]=""; reset[$key]=""
  run "$dir" up >/dev/null
  for r in $(seq "$n"); do
    dirty "$dir" "$m"
    reset[$key]+="$(run "$dir" reset) "
    (cd "$dir" && "$hdev" drift >/dev/null) || { echo "drift after reset" >&2; exit 1; }
    rebuild[$key]+="$(( $(run "$dir" destroy -y) + $(run "$dir" up) )) "
  done
  echo "$key rebuild: ${rebuild[$key]}ms reset: ${reset[$key]}ms" >&2
}
measure docker "$work/docker" web "$reps"
(cd "$work/docker" && "$hdev" destroy -y >/dev/null)
measure vm "$work/vm" vm "$vm_reps"
(cd "$work/vm" && "$hdev" destroy -y >/dev/null)
# Same VM with a 16x larger disk (and the same data): reset only.
reset[vmbig]=""
run "$work/vmbig" up >/dev/null
for r in $(seq "$vm_reps"); do
  dirty "$work/vmbig" vm
  reset[vmbig]+="$(run "$work/vmbig" reset) "
done
(cd "$work/vmbig" && "$hdev" destroy -y >/dev/null)
echo "vmbig reset: ${reset[vmbig]}ms" >&2

med() { echo "$1" | tr ' ' '\n' | grep . | median; }
section=$(mktemp)
{
  echo "## Reset"
  echo
  echo "\`bench/reset.sh\`, $(date -u +%Y-%m-%d), $(nproc) CPUs, release build, VMs under $(if grep -qE 'vmx|svm' /proc/cpuinfo; then echo KVM; else echo 'software emulation (TCG)'; fi)."
  echo "**rebuild**: \`hdev destroy -y\` + \`hdev up\` (create, boot, provision, baseline)."
  echo "**reset**: \`hdev reset\` after changing files (containers recreated from their"
  echo "baseline images; the VM powered off and resumed from its baseline's saved memory on a"
  echo "fresh overlay over its baseline layer)."
  echo "Provisioning writes ${data} MiB and 1000 files, then sleeps ${sleep_s} s (containers) or"
  echo "${vm_sleep} s (VM) in place of package installs. Medians of $reps (containers) and $vm_reps (VM) runs."
  echo
  echo "| environment | rebuild (median ms) | reset (median ms) | reset is faster by |"
  echo "|---|---:|---:|---:|"
  for k in docker vm; do
    b=$(med "${rebuild[$k]}"); s=$(med "${reset[$k]}")
    label=$([ "$k" = docker ] && echo "5 containers (db, queue -> app, worker -> web)" || echo "1 VM, 2 GiB disk")
    echo "| $label | $b | $s | $(awk -v b="$b" -v s="$s" 'BEGIN { printf "%.1fx", b / s }') |"
  done
  s2=$(med "${reset[vm]}"); s32=$(med "${reset[vmbig]}")
  echo
  echo "| VM reset by disk size | reset (median ms) |"
  echo "|---|---:|"
  echo "| 2 GiB disk | $s2 |"
  echo "| 32 GiB disk | $s32 ($(awk -v a="$s32" -v b="$s2" 'BEGIN { printf "%.2f", a / b }')x the 2 GiB time) |"
  echo
  cat <<'EON'
A container reset is the removal and creation of five containers from images that
already hold the provisioned state (200 MiB each), so it does not depend on what
provisioning did or on how much data the baseline holds. A VM reset is a power-off, one
empty qcow2 file over the baseline layer, and resuming the guest from the memory saved
with the baseline (no boot), then one SSH round trip that also sets the guest's clock.
None of it reads the disk, so it is the same at 2 and 32 GiB; it grows with the memory
the guest uses (the memory file, about 190 MB for this 384 MiB guest), not with its
disk. Before memory was saved with the baseline, a VM reset booted the guest (about 16 s
under software emulation) and was only about 3x faster than a rebuild.
EON
  echo
  echo "Raw runs (ms): containers rebuild [${rebuild[docker]% }] reset [${reset[docker]% }]; VM rebuild [${rebuild[vm]% }] reset [${reset[vm]% }]; VM 32 GiB reset [${reset[vmbig]% }]."
  echo
} > "$section"
write_section "$(cat "$section")"
