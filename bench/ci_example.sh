#!/usr/bin/env bash
# Benchmark: `hdev ci` of Envfile.example (the HARNESS template: nine containers and the
# accelerator VM, provisioned by scripts and an ansible playbook, five acceptance checks),
# first run (every machine provisioned, each kept in the provisioned-state cache) against
# the next (every machine created from the cache). Writes medians and the ratio to the
# "ci of Envfile.example with the provisioned-state cache" section of docs/BENCHMARKS.md.
#
#   bench/ci_example.sh     # REPS=2; HDEV=path/to/hdev to skip the build
#
# Boxes are built (or found in the store) before the first timed run, so neither run
# pays for them. Each repetition starts from an empty cache (`hdev cache prune --all`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=${REPS:-2}
cd "$root"
. "$root/bench/lib.sh"
use_hdev
work=$(mktemp -d)
export HDEV_HOME=${HDEV_HOME:-$root/target/tmp/hdev-home}
unset HDEV_NO_CACHE
cleanup() { (cd "$work" && "$hdev" ci --clean >/dev/null 2>&1) || true; rm -rf "$work"; }
trap cleanup EXIT
(cd "$work" && "$hdev" init --template harness >/dev/null 2>&1)
# The boxes, once, outside the timing: a first `ci` that neither uses nor fills the cache.
(cd "$work" && "$hdev" ci --no-cache >/dev/null 2>&1)
run() { # args... -> prints ms; keeps the output in last.err
  local t0 t1
  t0=$(now_ms)
  (cd "$work" && "$hdev" "$@" >/dev/null 2>"$work/last.err") || { cat "$work/last.err" >&2; exit 1; }
  t1=$(now_ms)
  echo $((t1 - t0))
}
cold="" warm=""
for _ in $(seq "$reps"); do
  "$hdev" cache prune --all >/dev/null
  cold+="$(run ci) "
  cp "$work/last.err" "$work/cold.err"
  warm+="$(run ci) "
  served=$(grep -c "from the provisioned-state cache (.*not provisioned again" "$work/last.err" || true)
  [ "$served" -ge 1 ] || { echo "second ci did not use the cache" >&2; cat "$work/last.err" >&2; exit 1; }
done
"$hdev" cache prune --all >/dev/null
echo "ci cold: ${cold}ms cached: ${warm}ms" >&2
# Where a cached run spends its time: the timed lines of the VM.
vm_trace=$(grep -E '(^|\] )accel ' "$work/last.err" | head -12 || true)
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
# How long the cached VM took from its start to its baseline (its boot, mostly).
stamp_ms() { # a timed line -> ms since midnight
  sed -E 's/^\[([0-9]+):([0-9]+):([0-9]+)\.([0-9]+)\].*/\1 \2 \3 \4/' |
    awk '{ print (($1 * 60 + $2) * 60 + $3) * 1000 + $4 }'
}
vm_start=$(echo "$vm_trace" | grep -m1 ': starting' | stamp_ms || true)
vm_based=$(echo "$vm_trace" | grep -m1 ': taking its baseline' | stamp_ms || true)
vm_boot=$(awk -v a="${vm_start:-0}" -v b="${vm_based:-0}" 'BEGIN { if (a > 0 && b > a) printf "%.1f", (b - a) / 1000; else print "?" }')
c=$(med "$cold"); w=$(med "$warm")
section=$(mktemp)
{
  echo "## ci of Envfile.example with the provisioned-state cache"
  echo
  echo "\`bench/ci_example.sh\`, $(date -u +%Y-%m-%d), $(nproc) CPUs, Docker $(docker version --format '{{.Server.Version}}'), $build build, VMs under"
  echo "software emulation. \`hdev ci\` of the HARNESS template (\`hdev init --template harness\`:"
  echo "the Envfile.example topology, nine containers and one debian VM provisioned by shell"
  echo "steps and an ansible playbook, five checks). **first**: the cache empty: every machine"
  echo "provisioned and kept. **second**: the next \`hdev ci\`, $served machine(s) created from the"
  echo "cache. Both include the copy's setup, baselines, checks and teardown. Medians of $reps runs."
  echo "Goal (#17): second ≥ 10x faster."
  echo
  echo "| run | median ms | |"
  echo "|---|---:|---:|"
  echo "| first (provisions, fills the cache) | $c | 1.0x |"
  echo "| second (from the cache) | $w | $(awk -v c="$c" -v w="$w" 'BEGIN { printf "%.1fx faster", c / w }') |"
  echo
  echo "Raw runs (ms): first [${cold% }] second [${warm% }]."
  echo
  echo "A VM is kept in the cache as its provisioned disk, not its memory: a VM's memory"
  echo "holds its addresses, MAC, host name and keys, and a copy lives on networks of its own"
  echo "(moved subnets), so a cached VM still boots. In the second run above, $vm_boot s"
  echo "went from the VM's start to its baseline, which bounds how much faster a second run"
  echo "of an environment with a VM can be under software emulation. Containers alone"
  echo "(\"ci with the provisioned-state cache\" above) gain more."
  echo
  echo "The VM in the second run (timed lines):"
  echo
  echo '```'
  echo "$vm_trace"
  echo '```'
  echo
} > "$section"
write_section "$(cat "$section")"
