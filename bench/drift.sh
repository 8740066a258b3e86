#!/usr/bin/env bash
# Benchmark: what a drift check costs, by what it compares. One debian VM (software
# emulation): `hdev drift` (each file's type, mode, size and time, listed in the guest and
# compared with the baseline's list) against `hdev drift --deep` (the baseline's disk
# layer attached read-only, every regular file of both trees hashed in the guest); and a
# container: `hdev drift` (Docker's diff, which lists every file written). Side by side in
# one run; writes the medians to the "Drift" section of docs/BENCHMARKS.md.
#
#   bench/drift.sh        # REPS=4 (the first of each series is dropped)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=${REPS:-4}
cd "$root"
cargo build --release --quiet --bin hdev
hdev=$root/target/release/hdev
work=$(mktemp -d)
export HDEV_HOME=${HDEV_HOME:-$root/target/tmp/hdev-home}
cleanup() {
  (cd "$work" && "$hdev" destroy -y >/dev/null 2>&1) || true
  rm -rf "$work"
}
trap cleanup EXIT
. "$root/bench/lib.sh"
{
  printf '[env]\nname = "bench-drift"\n\n[box.busybox]\nrecipe = "%s/boxes/busybox"\n\n' "$root"
  printf '[box.debian]\nrecipe = "%s/boxes/debian-bookworm"\n\n[network.lan]\nsubnet = "10.234.19.0/24"\n\n' "$root"
  printf '[machine.vm]\nbackend = "libvirt"\nbox = "debian"\nmemory = "384M"\nnetworks = ["lan"]\n\n'
  printf '[machine.c]\nbackend = "docker"\nbox = "busybox"\nnetworks = ["lan"]\n'
} > "$work/Envfile"
cd "$work"
"$hdev" up >/dev/null
# Drift exits 1 when it finds some: only 2 (cannot tell) is a failure here.
time_ms() { # command... -> ms
  local t0 t1 rc=0
  t0=$(now_ms)
  "$@" >/dev/null 2>&1 || rc=$?
  t1=$(now_ms)
  [ "$rc" -le 1 ] || { echo "failed ($rc): $*" >&2; exit 1; }
  echo $((t1 - t0))
}
series() { # label command... : median of $reps (the first dropped), raw runs kept
  local label=$1 runs=()
  shift
  for _ in $(seq "$reps"); do runs+=("$(time_ms "$@")") || exit 1; done
  echo "$label [${runs[*]:1}]" >> "$work/raw.txt"
  printf '%s\n' "${runs[@]:1}" | median
}
# A change that keeps size and time, which only the content comparison finds.
"$hdev" exec vm -- sh -c 'f=/etc/debian_version; cp -p $f /tmp/ref; tr 0-9 9876543210 < /tmp/ref > $f; touch -r /tmp/ref $f'
# (drift exits 1 when it finds some)
found_meta=$({ "$hdev" drift vm --json || true; } | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["machines"][0]["changed"]))')
found_deep=$({ "$hdev" drift vm --deep --json || true; } | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["machines"][0]["changed"]))')
m_meta=$(series vm_metadata "$hdev" drift vm)
m_deep=$(series vm_contents "$hdev" drift vm --deep)
m_c=$(series container_writes "$hdev" drift c)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
section=$(cat <<EOF
## Drift

\`bench/drift.sh\`, $(date +%F), 2 CPUs, release build, one VM (debian box, software
emulation) and one busybox container. Medians of $((reps - 1)) runs (the first of each
series is dropped). One file of the VM was changed keeping its size and time: the metadata
check found $found_meta changed file(s), the content check $found_deep.

| check | median ms | vs. metadata |
|---|---:|---:|
| VM, \`hdev drift\` (type, mode, size, time) | $m_meta | 1.0x |
| VM, \`hdev drift --deep\` (contents) | $m_deep | $(ratio "$m_deep" "$m_meta")x |
| container, \`hdev drift\` (Docker's diff: every write) | $m_c | $(ratio "$m_c" "$m_meta")x |

The metadata check stays the default for VMs; \`--deep\` reads both trees (about 370 MB
each for the debian box) in the guest. Raw runs (ms): $(paste -sd ' ' "$work/raw.txt").
EOF
)
write_section "$section" >/dev/null
echo "drift: metadata $m_meta ms, contents $m_deep ms, container $m_c ms"
