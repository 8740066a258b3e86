#!/usr/bin/env bash
# Benchmark: `hdev up` and `hdev reset` of one topology on one host and on three hosts
# (the rig of .ci/rig: three Docker engines in network namespaces of this machine),
# side by side in one run, alternating. Same Envfile, same hash: only `--hosts` differs.
# Writes the medians and ratios to the "Several hosts" section of docs/BENCHMARKS.md.
#
#   sudo bench/multihost.sh      # REPS=5; needs root (the rig) and `bash .ci/rig up`
#
# The topology is the HARNESS platform's shape in containers: a scheduler, two resource
# managers, storage, a PaaS manager and an accelerator front end, on one network (an
# overlay across the three hosts), each provisioned with a small shell step.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=${REPS:-5}
cd "$root"
bash .ci/rig status /run/hdev-rig >/dev/null || { echo "the rig is not up: sudo bash .ci/rig up" >&2; exit 1; }
cargo build --release --quiet --bin hdev
hdev=$root/target/release/hdev
work=$(mktemp -d)
export HDEV_HOME=${HDEV_HOME:-$root/target/tmp/hdev-home}
cleanup() {
  for e in one three; do
    (cd "$work/$e" 2>/dev/null && "$hdev" destroy -y >/dev/null 2>&1) || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
. "$root/bench/lib.sh"

envfile() { # name subnet
  printf '[env]\nname = "%s"\nswarm = "create"\n\n[host.n1]\n[host.n2]\n[host.n3]\n\n' "$1"
  printf '[box.busybox]\nrecipe = "%s/boxes/busybox"\n\n[network.lan]\nsubnet = "%s"\n' "$root" "$2"
  local i=0
  for m in scheduler rm-1 rm-2 storage paas accel-front; do
    i=$((i % 3 + 1))
    printf '\n[machine.%s]\nbackend = "docker"\nbox = "busybox"\nhost = "n%s"\nnetworks = ["lan"]\n' "$m" "$i"
    printf 'provision = [{ shell = "mkdir -p /srv && echo %s > /srv/role && i=0; while [ $i -lt 200 ]; do echo $i > /srv/f$i; i=$((i+1)); done" }]\n' "$m"
    case $m in rm-*|storage) echo 'depends_on = ["scheduler"]' ;; paas|accel-front) echo 'depends_on = ["storage"]' ;; esac
  done
}
hosts() {
  printf '[host.n1]\ndocker = "unix:///run/hdev-rig/node1.sock"\n[host.n2]\ndocker = "unix:///run/hdev-rig/node2.sock"\n[host.n3]\ndocker = "unix:///run/hdev-rig/node3.sock"\n'
}
mkdir -p "$work/one" "$work/three"
envfile bench-mh-one 10.236.1.0/24 > "$work/one/Envfile"
envfile bench-mh-three 10.236.2.0/24 > "$work/three/Envfile"
hosts > "$work/three/hosts.toml"
(cd "$work/one" && "$hdev" --hosts none validate >/dev/null)
(cd "$work/three" && "$hdev" --hosts hosts.toml validate >/dev/null)
# The same Envfile's hash placed here and placed on the rig (the hosts file is given last,
# so it stays the remembered one).
h1=$(cd "$work/three" && "$hdev" --hosts none hash)
h3=$(cd "$work/three" && "$hdev" --hosts hosts.toml hash)

run() { # dir args... -> prints ms
  local t0 t1
  t0=$(now_ms)
  (cd "$1" && shift && "$hdev" "$@" >/dev/null 2>"$work/last.err") || { cat "$work/last.err" >&2; exit 1; }
  t1=$(now_ms)
  echo $((t1 - t0))
}
dirty() { (cd "$1" && for m in scheduler storage paas; do "$hdev" exec "$m" -- sh -c 'rm -rf /srv; echo x > /etc/dirty' >/dev/null; done); }

declare -A up reset
for r in $(seq 1 "$reps"); do
  for e in one three; do
    (cd "$work/$e" && "$hdev" destroy -y >/dev/null 2>&1) || true
    up[$e]+="$(run "$work/$e" up) "
    dirty "$work/$e"
    reset[$e]+="$(run "$work/$e" reset) "
  done
done
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
u1=$(med "${up[one]}"); u3=$(med "${up[three]}"); r1=$(med "${reset[one]}"); r3=$(med "${reset[three]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a/b}'; }
section=$(cat <<MD
## Several hosts

\`bench/multihost.sh\`, $(date -u +%Y-%m-%d), $(nproc) CPUs, release build, $reps runs each (alternating),
Docker engine $(docker version --format '{{.Server.Version}}'). One Envfile of six busybox containers (a scheduler,
two resource managers, storage, a PaaS manager, an accelerator front end; dependencies; a small
provisioning step each), brought up from nothing (\`up\`: networks, containers, provisioning,
baselines) and returned to its baseline after three machines were changed (\`reset\`).
**one host**: every machine on this machine's engine (\`--hosts none\`). **three hosts**: two
machines on each of the rig's three engines (\`.ci/rig\`: network namespaces of this machine, so
the wire costs nothing; what is measured is hdev's work and the swarm overlay's), the network an
attachable Swarm overlay. The three-host Envfile's hash placed on one host and on three: \`${h1:7:12}\` and \`${h3:7:12}\`.

| what | one host (median ms) | three hosts (median ms) | three / one |
|---|---:|---:|---:|
| \`hdev up\` | $u1 | $u3 | $(ratio "$u3" "$u1") |
| \`hdev reset\` | $r1 | $r3 | $(ratio "$r3" "$r1") |

Boxes and the anchor image are already in every engine after the first run, so the
three-host figures are steady state. What three hosts add to \`up\` is the swarm check,
the overlay network, a keeper container on each of the two workers (see
docs/MULTIHOST.md) and each worker's first attachment to the overlay; to \`reset\`, starting
containers on the overlay. Not yet broken down further.

Raw runs (ms): up one [${up[one]% }] three [${up[three]% }]; reset one [${reset[one]% }] three [${reset[three]% }].
MD
)
write_section "$section"
