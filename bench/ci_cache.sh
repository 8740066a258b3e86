#!/usr/bin/env bash
# Benchmark: `hdev ci` of a containers-only environment, first run (provisioning every
# container, which fills the provisioned-state cache) against the runs after it (every
# container created from the cache). Writes the medians and the ratio to the "ci with
# the provisioned-state cache" section of docs/BENCHMARKS.md.
#
#   bench/ci_cache.sh     # REPS=3 SLEEP=10 DATA_MB=50; HDEV=path/to/hdev to skip the build
#
# Provisioning does real work that ends up in the cached image (DATA_MB of data and 1000
# small files) and then sleeps SLEEP seconds, a stand-in for downloading and installing
# packages (no package mirror is assumed reachable while benchmarking). Each repetition
# starts from an empty cache (`hdev cache prune --all`), so the cold run pays for the
# commit into the cache too.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=${REPS:-3}
sleep_s=${SLEEP:-10}
data=${DATA_MB:-50}
cd "$root"
. "$root/bench/lib.sh"
use_hdev
work=$(mktemp -d)
export HDEV_HOME=${HDEV_HOME:-$root/target/tmp/hdev-home}
unset HDEV_NO_CACHE
cleanup() { (cd "$work" && "$hdev" ci --clean >/dev/null 2>&1) || true; rm -rf "$work"; }
trap cleanup EXIT
{
  printf '[env]\nname = "bench-ci-cache"\n\n[box.busybox]\nrecipe = "%s/boxes/busybox"\n\n[network.lan]\nsubnet = "10.234.9.0/24"\n' "$root"
  for m in db queue app worker web; do
    printf '\n[machine.%s]\nbackend = "docker"\nbox = "busybox"\nnetworks = ["lan"]\n' "$m"
    printf 'provision = [{ shell = "mkdir -p /opt && dd if=/dev/zero of=/opt/data bs=1M count=%s 2>/dev/null; mkdir -p /opt/files; i=0; while [ $i -lt 1000 ]; do echo $i > /opt/files/f$i; i=$((i+1)); done; sleep %s" }]\n' "$data" "$sleep_s"
    case $m in app|worker) echo 'depends_on = ["db", "queue"]' ;; web) echo 'depends_on = ["app"]' ;; esac
  done
  printf '\n[[test]]\nname = "web holds the provisioned files"\nmachine = "web"\nrun = "test -f /opt/files/f999"\n'
} > "$work/Envfile"
run() { # args... -> prints ms
  local t0 t1
  t0=$(now_ms)
  (cd "$work" && "$hdev" "$@" >/dev/null 2>"$work/last.err") || { cat "$work/last.err" >&2; exit 1; }
  t1=$(now_ms)
  echo $((t1 - t0))
}
cold="" warm=""
for r in $(seq "$reps"); do
  "$hdev" cache prune --all >/dev/null
  cold+="$(run ci) "
  warm+="$(run ci) "
  grep -q "from the provisioned-state cache" "$work/last.err" || { echo "second ci did not use the cache" >&2; cat "$work/last.err" >&2; exit 1; }
done
# One cached run with its lines timed, to say where the time goes.
(cd "$work" && "$hdev" ci 2>&1 >/dev/null | grep -E 'throwaway|✓|passed|removed|destroy' | head -20) > "$work/trace" || true
"$hdev" cache prune --all >/dev/null
echo "ci cold: ${cold}ms cached: ${warm}ms" >&2
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
c=$(med "$cold"); w=$(med "$warm")
section=$(mktemp)
{
  echo "## ci with the provisioned-state cache"
  echo
  echo "\`bench/ci_cache.sh\`, $(date -u +%Y-%m-%d), $(nproc) CPUs, Docker $(docker version --format '{{.Server.Version}}'), $build build."
  echo "\`hdev ci\` of 5 busybox containers (db, queue -> app, worker -> web) and one check;"
  echo "provisioning writes ${data} MiB and 1000 files per container, then sleeps ${sleep_s} s in place"
  echo "of package installs. **first**: the cache empty (\`hdev cache prune --all\`): every"
  echo "container provisioned, then kept in the cache. **second**: the next \`hdev ci\`, every"
  echo "container created from the cache. Both include the copy's setup, its baselines, the"
  echo "check and the teardown. Medians of $reps runs. Goal (#17): second ≥ 10x faster."
  echo
  echo "| run | median ms | |"
  echo "|---|---:|---:|"
  echo "| first (provisions, fills the cache) | $c | 1.0x |"
  echo "| second (from the cache) | $w | $(awk -v c="$c" -v w="$w" 'BEGIN { printf "%.1fx faster", c / w }') |"
  echo
  echo "Raw runs (ms): first [${cold% }] second [${warm% }]."
  echo
} > "$section"
write_section "$(cat "$section")"
cat "$work/trace" >&2
