#!/usr/bin/env bash
# Benchmark: `hdev up` of 1, 10 and 30 containers from one image, beside the floor: plain
# Docker creating and starting the same containers all at once through bollard
# (examples/docker_floor.rs). Runs both side by side, alternating, REPS times per size,
# and writes the medians and ratios to the "Docker up" section of docs/BENCHMARKS.md.
#
#   bench/docker_up.sh            # REPS=5 SIZES="1 10 30" PARALLEL=32
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=${REPS:-5}
sizes=${SIZES:-1 10 30}
parallel=${PARALLEL:-32}
cd "$root"
cargo build --release --quiet --bin hdev --example docker_floor
hdev=$root/target/release/hdev
floor=$root/target/release/examples/docker_floor
work=$(mktemp -d)
export HDEV_HOME=$work/home
cleanup() {
  for n in $sizes; do
    (cd "$work/env-$n" 2>/dev/null && "$hdev" destroy -y >/dev/null 2>&1) || true
    (cd "$work/env8-$n" 2>/dev/null && "$hdev" destroy -y >/dev/null 2>&1) || true
    "$floor" down "hdev-floor-$$-$n" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

. "$root/bench/lib.sh"

for n in $sizes; do
  for kind in "env:$parallel" "env8:8"; do
  dir=$work/${kind%%:*}-$n
  mkdir -p "$dir"
  cat > "$dir/Envfile" <<EOT
[env]
name = "bench-$n"
parallel = ${kind##*:}

[box.busybox]
recipe = "$root/boxes/busybox"

[machine.node]
backend = "docker"
box = "busybox"
count = $n
EOT
  done
done

# Warm up: build and import the box once, and let the engine settle.
(cd "$work/env-1" && "$hdev" up >/dev/null 2>&1 && "$hdev" destroy -y >/dev/null)

declare -A hd h8 fl
for n in $sizes; do
  hd[$n]=""; h8[$n]=""; fl[$n]=""
  for r in $(seq "$reps"); do
    prefix="hdev-floor-$$-$n"
    # hdev up (alternating which goes first)
    run_hdev() {
      local t0 t1
      t0=$(now_ms)
      (cd "$work/env-$n" && "$hdev" up >/dev/null 2>"$work/last.err") || { cat "$work/last.err" >&2; exit 1; }
      t1=$(now_ms)
      hd[$n]+="$((t1 - t0)) "
      (cd "$work/env-$n" && "$hdev" destroy -y >/dev/null)
      t0=$(now_ms)
      (cd "$work/env8-$n" && "$hdev" up >/dev/null 2>"$work/last.err") || { cat "$work/last.err" >&2; exit 1; }
      t1=$(now_ms)
      h8[$n]+="$((t1 - t0)) "
      (cd "$work/env8-$n" && "$hdev" destroy -y >/dev/null)
    }
    run_floor() {
      local t0 t1
      t0=$(now_ms)
      "$floor" up "$n" "$prefix"
      t1=$(now_ms)
      fl[$n]+="$((t1 - t0)) "
      "$floor" down "$prefix"
    }
    if (( r % 2 )); then run_hdev; run_floor; else run_floor; run_hdev; fi
  done
  echo "n=$n hdev: ${hd[$n]}ms hdev(parallel 8): ${h8[$n]}ms floor: ${fl[$n]}ms" >&2
done

cpus=$(nproc)
engine=$("$floor" version 2>/dev/null || echo unknown)
section=$(mktemp)
{
  echo "## Docker up"
  echo
  echo "\`bench/docker_up.sh\`, $(date -u +%Y-%m-%d), $cpus CPUs, Docker engine $engine, $reps runs per size"
  echo "(alternating), release build, \`parallel = $parallel\` (and the default 8). **hdev up**: wall time of \`hdev up\` of"
  echo "N busybox-box containers (no provisioning) from an empty engine state, box already imported, each container's baseline taken (its image: no provisioning, so nothing is committed),"
  echo "including the per-environment network, the state file and process start."
  echo "**floor**: wall time of \`examples/docker_floor.rs\` creating one bridge network and"
  echo "creating and starting the same N containers all at once through bollard."
  echo
  echo "| containers | hdev up, parallel $parallel (median ms) | hdev up, parallel 8 = default (median ms) | floor (median ms) | ratio | ratio at default |"
  echo "|---:|---:|---:|---:|---:|---:|"
  for n in $sizes; do
    h=$(echo "${hd[$n]}" | tr ' ' '\n' | grep . | median)
    e=$(echo "${h8[$n]}" | tr ' ' '\n' | grep . | median)
    f=$(echo "${fl[$n]}" | tr ' ' '\n' | grep . | median)
    ratio=$(awk -v h="$h" -v f="$f" 'BEGIN { printf "%.2f", h / f }')
    ratio8=$(awk -v h="$e" -v f="$f" 'BEGIN { printf "%.2f", h / f }')
    echo "| $n | $h | $e | $f | ${ratio}x | ${ratio8}x |"
  done
  echo
  echo "Raw runs (ms): $(for n in $sizes; do printf 'N=%s hdev [%s] hdev-parallel-8 [%s] floor [%s]; ' "$n" "${hd[$n]% }" "${h8[$n]% }" "${fl[$n]% }"; done)"
  echo
} > "$section"

write_section "$(cat "$section")"
