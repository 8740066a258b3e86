#!/usr/bin/env bash
# Benchmark: `hdev status` of one VM and 30 containers against `docker ps` + `virsh list`,
# with and without a drift check, and one command in the VM (`hdev exec vm -- true`)
# against a raw `ssh`, each with a cold connection and with the shared one (OpenSSH's
# ControlMaster, which hdev keeps 60 s). Side by side in one run; writes the medians to
# the "Status and SSH" section of docs/BENCHMARKS.md.
#
#   bench/status_ssh.sh        # REPS=7 CONTAINERS=30
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=${REPS:-7}
n=${CONTAINERS:-30}
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
  printf '[env]\nname = "bench-status"\n\n[box.busybox]\nrecipe = "%s/boxes/busybox"\n\n' "$root"
  printf '[box.debian]\nrecipe = "%s/boxes/debian-bookworm"\n\n[network.lan]\nsubnet = "10.234.9.0/24"\n\n' "$root"
  printf '[machine.vm]\nbackend = "libvirt"\nbox = "debian"\nmemory = "384M"\nnetworks = ["lan"]\n\n'
  printf '[machine.c]\nbackend = "docker"\nbox = "busybox"\ncount = %s\nnetworks = ["lan"]\n' "$n"
} > "$work/Envfile"
cd "$work"
"$hdev" up >/dev/null
time_ms() { # command... -> ms
  local t0 t1
  t0=$(now_ms)
  "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
  t1=$(now_ms)
  echo $((t1 - t0))
}
series() { # label command... : median of $reps (the first dropped), raw runs kept
  local label=$1 runs=()
  shift
  for _ in $(seq "$reps"); do runs+=("$(time_ms "$@")") || exit 1; done
  [ -n "${runs[0]}" ] || { echo "failed: $label" >&2; exit 1; }
  echo "$label [${runs[*]:1}]" >> "$work/raw.txt"
  printf '%s\n' "${runs[@]:1}" | median
}
engines() { docker ps -a --filter "label=hdev.env" >/dev/null && virsh -c qemu:///system list --all >/dev/null; }
ip=$("$hdev" status --json | python3 -c 'import json,sys; print([m for m in json.load(sys.stdin)["machines"] if m["name"]=="vm"][0]["addresses"]["lan"])')
key=$work/.hdev/ssh/id_ed25519
raw_ssh() { ssh -i "$key" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes "$@" "root@$ip" true; }
raw_master=$work/raw-master
close_hdev_master() { for s in "$work"/.hdev/ssh/c/*; do [ -S "$s" ] && ssh -o ControlPath="$s" -O exit x >/dev/null 2>&1; done; true; }
cold_exec() { close_hdev_master; "$hdev" exec vm -- true; }
"$hdev" drift >/dev/null || true   # a recorded check for status to show
# No SSH in `status`: an `ssh` first on PATH counts the calls and hands them on.
shim=$work/shim
mkdir -p "$shim"
printf '#!/bin/sh\necho "$*" >> "%s"\nexec /usr/bin/ssh "$@"\n' "$work/ssh-calls" > "$shim/ssh"
chmod 755 "$shim/ssh"
ssh_calls() { # command... -> how many times it ran ssh
  : > "$work/ssh-calls"
  PATH="$shim:$PATH" "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
  wc -l < "$work/ssh-calls" | tr -d ' '
}
n_status_ssh=$(ssh_calls "$hdev" status)
n_drift_ssh=$(ssh_calls "$hdev" status --drift)
m_engines=$(series engines engines)
m_status=$(series status "$hdev" status)
m_drift=$(series status_drift "$hdev" status --drift)
m_raw_cold=$(series raw_ssh raw_ssh)
raw_ssh -o ControlMaster=auto -o ControlPath="$raw_master" -o ControlPersist=60
m_raw_warm=$(series raw_ssh_master raw_ssh -o ControlMaster=auto -o ControlPath="$raw_master" -o ControlPersist=60)
m_exec_cold=$(series exec_cold cold_exec)
"$hdev" exec vm -- true
m_exec_warm=$(series exec_shared "$hdev" exec vm -- true)
ssh -o ControlPath="$raw_master" -O exit x >/dev/null 2>&1 || true
check() { for v in "$@"; do [[ $v =~ ^[0-9.]+$ ]] || { echo "a series failed" >&2; exit 1; }; done; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

check "$n_status_ssh" "$n_drift_ssh" "$m_engines" "$m_status" "$m_drift" "$m_raw_cold" "$m_raw_warm" "$m_exec_cold" "$m_exec_warm"
section=$(cat <<EOF
## Status and SSH

\`bench/status_ssh.sh\`, $(date +%F), 2 CPUs, release build, one VM (debian box, software
emulation) and $n busybox containers on one network. Medians of $((reps - 1)) runs (the
first of each series is dropped). \`hdev status\` reads Docker and libvirt only and shows
drift as last recorded; \`--drift\` checks every machine now (a \`docker diff\` per
container, one SSH round trip to the VM).

| what | median ms | vs. reference |
|---|---:|---:|
| \`docker ps\` + \`virsh list\` (reference) | $m_engines | 1.00x |
| \`hdev status\` | $m_status | $(ratio "$m_status" "$m_engines")x |
| \`hdev status --drift\` | $m_drift | $(ratio "$m_drift" "$m_engines")x |
| raw \`ssh vm true\`, new connection (reference) | $m_raw_cold | 1.00x |
| raw \`ssh vm true\` over a ControlMaster | $m_raw_warm | $(ratio "$m_raw_warm" "$m_raw_cold")x |
| \`hdev exec vm -- true\`, shared connection closed first | $m_exec_cold | $(ratio "$m_exec_cold" "$m_raw_cold")x |
| \`hdev exec vm -- true\`, shared connection open | $m_exec_warm | $(ratio "$m_exec_warm" "$m_raw_cold")x |

SSH processes started, counted by an \`ssh\` first on PATH that hands each call on:
\`hdev status\` $n_status_ssh, \`hdev status --drift\` $n_drift_ssh. The shared connection
(OpenSSH's ControlMaster under \`.hdev/ssh/c\`, kept 60 s) cuts a command in the VM from
one SSH handshake (the new-connection row) to a round trip over the
open connection plus hdev's own start (opening the project, hashing it, connecting to
the engines).

Raw runs (ms): $(paste -sd ' ' "$work/raw.txt").
EOF
)
write_section "$section"
