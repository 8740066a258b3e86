#!/usr/bin/env bash
# Benchmark: hdev beside Docker Compose (Debian's docker-compose) on the same machine, in
# one run, alternating which goes first, REPS times each:
#   - up of the container part of the HARNESS example (9 containers, provisioning,
#     health checks gating dependants); Compose runs the same scripts in each service's
#     command and gates `depends_on` on the same health checks;
#   - up of 10 and 30 identical containers (no provisioning);
#   - `hdev status` beside `docker-compose ps` on the 30-container environment;
#   - `hdev reset` beside `docker-compose down && up` on the HARNESS containers (when this
#     hdev has `reset`).
# Writes medians and ratios to the "hdev and Docker Compose" section of docs/BENCHMARKS.md.
#
#   bench/compose.sh          # REPS=5
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=${REPS:-5}
cd "$root"
command -v docker-compose >/dev/null || { echo "install docker-compose (apt-get install docker-compose)" >&2; exit 1; }
cargo build --release --quiet --bin hdev
hdev=$root/target/release/hdev
work=$(mktemp -d)
export HDEV_HOME=$work/home
export COMPOSE_HTTP_TIMEOUT=300
scenarios=(harness n10 n30)
cleanup() {
  for s in "${scenarios[@]}"; do
    (cd "$work/hdev-$s" 2>/dev/null && "$hdev" destroy -y >/dev/null 2>&1) || true
    (cd "$work/compose-$s" 2>/dev/null && docker-compose down -t 1 >/dev/null 2>&1) || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

. "$root/bench/lib.sh"
timed() { local t0; t0=$(now_ms); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; echo $(( $(now_ms) - t0 )); }

load0=$(cut -d' ' -f1-3 /proc/loadavg)
# The busybox box, imported once; Compose uses the same image.
mkdir -p "$work/warm"
cat > "$work/warm/Envfile" <<EOT
[env]
name = "warm"
[box.busybox]
recipe = "$root/boxes/busybox"
[machine.m]
backend = "docker"
box = "busybox"
EOT
(cd "$work/warm" && "$hdev" up >/dev/null 2>&1 && "$hdev" destroy -y >/dev/null 2>&1)
image=$(docker images --format '{{.Repository}}:{{.Tag}}' hdev-box/busybox | head -n 1)
[ -n "$image" ] || { echo "no busybox box image" >&2; exit 1; }

# --- the HARNESS containers, both ways -------------------------------------------------
mkdir -p "$work/hdev-harness" "$work/compose-harness"
for d in hdev-harness compose-harness; do cp -r "$root/templates/harness/provision" "$root/templates/harness/services" "$work/$d/"; done
cat > "$work/hdev-harness/Envfile" <<EOT
[env]
name = "bench-harness"
[box.busybox]
recipe = "$root/boxes/busybox"
[network.mgmt]
subnet = "10.142.0.0/24"
[network.data]
subnet = "10.142.1.0/24"
EOT
svc() { # name networks(addr) deps script-args
  local name=$1 nets=$2 deps=$3 args=$4 script=${5:-service.sh}
  cat >> "$work/hdev-harness/Envfile" <<EOT
[machine.$name]
backend = "docker"
box = "busybox"
networks = [$nets]
depends_on = [$deps]
command = "httpd -f -p 80 -h /var/www"
[[machine.$name.provision]]
script = "provision/$script"
args = [$args]
[machine.$name.healthcheck]
command = "wget -q -O /dev/null http://127.0.0.1/api/health"
interval = "200ms"
EOT
}
svc storage-1 '{ name = "data", address = "10.142.1.11" }' '' '"storage"'
svc storage-2 '{ name = "data", address = "10.142.1.12" }' '' '"storage"'
svc storage-3 '{ name = "data", address = "10.142.1.13" }' '' '"storage"'
svc directory '"mgmt", "data"' '"storage-1", "storage-2", "storage-3"' '"directory", "storage-1", "storage-2", "storage-3"'
svc rm-compute '{ name = "mgmt", address = "10.142.0.21" }' '' '"rm-compute"'
svc rm-storage '{ name = "mgmt", address = "10.142.0.22" }' '"directory"' '"rm-storage", "directory"'
svc rm-network '{ name = "mgmt", address = "10.142.0.23" }' '' '"rm-network"'
svc scheduler '"mgmt"' '"rm-compute", "rm-storage", "rm-network"' '"rm-compute", "rm-storage", "rm-network"' scheduler.sh
svc paas '"mgmt"' '"scheduler"' '"scheduler"' paas.sh

compose_svc() { # name networks-yaml deps script args
  local name=$1 nets=$2 deps=$3 script=$4 args=$5
  cat >> "$work/compose-harness/docker-compose.yml" <<EOT
  $name:
    image: $image
    hostname: $name
    command: ["sh", "-c", "/provision/$script $args && exec httpd -f -p 80 -h /var/www"]
    volumes: ["./provision:/provision:ro"]
    networks:
$nets
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/api/health"]
      interval: 1s
      retries: 60
EOT
  if [ -n "$deps" ]; then
    echo "    depends_on:" >> "$work/compose-harness/docker-compose.yml"
    for d in $deps; do printf '      %s:\n        condition: service_healthy\n' "$d" >> "$work/compose-harness/docker-compose.yml"; done
  fi
}
cat > "$work/compose-harness/docker-compose.yml" <<EOT
version: "2.4"
networks:
  mgmt:
    ipam: {config: [{subnet: 10.143.0.0/24}]}
  data:
    ipam: {config: [{subnet: 10.143.1.0/24}]}
services:
EOT
compose_svc storage-1 "      data: {ipv4_address: 10.143.1.11}" "" service.sh storage
compose_svc storage-2 "      data: {ipv4_address: 10.143.1.12}" "" service.sh storage
compose_svc storage-3 "      data: {ipv4_address: 10.143.1.13}" "" service.sh storage
compose_svc directory "      mgmt: {}
      data: {}" "storage-1 storage-2 storage-3" service.sh "directory storage-1 storage-2 storage-3"
compose_svc rm-compute "      mgmt: {ipv4_address: 10.143.0.21}" "" service.sh rm-compute
compose_svc rm-storage "      mgmt: {ipv4_address: 10.143.0.22}" "directory" service.sh "rm-storage directory"
compose_svc rm-network "      mgmt: {ipv4_address: 10.143.0.23}" "" service.sh rm-network
compose_svc scheduler "      mgmt: {}" "rm-compute rm-storage rm-network" scheduler.sh "rm-compute rm-storage rm-network"
compose_svc paas "      mgmt: {}" "scheduler" paas.sh scheduler

# --- N identical containers ------------------------------------------------------------
for n in 10 30; do
  mkdir -p "$work/hdev-n$n" "$work/compose-n$n"
  cat > "$work/hdev-n$n/Envfile" <<EOT
[env]
name = "bench-n$n"
parallel = 32
[box.busybox]
recipe = "$root/boxes/busybox"
[machine.node]
backend = "docker"
box = "busybox"
count = $n
command = "httpd -f -p 80 -h /var/www"
EOT
  {
    echo 'version: "2.4"'
    echo 'services:'
    echo '  node:'
    echo "    image: $image"
    echo '    command: ["httpd", "-f", "-p", "80", "-h", "/var/www"]'
  } > "$work/compose-n$n/docker-compose.yml"
done

hdev_up() { (cd "$work/hdev-$1" && "$hdev" up); }
hdev_down() { (cd "$work/hdev-$1" && "$hdev" destroy -y); }
compose_up() {
  local s=$1
  case $s in n*) (cd "$work/compose-$s" && docker-compose up -d --scale "node=${s#n}");;
             *) (cd "$work/compose-$s" && docker-compose up -d);; esac
}
compose_down() { (cd "$work/compose-$1" && docker-compose down -t 1); }

declare -A H C
for s in "${scenarios[@]}"; do
  H[$s]=""; C[$s]=""
  for r in $(seq "$reps"); do
    if (( r % 2 )); then
      H[$s]+="$(timed hdev_up "$s") "; hdev_down "$s" >/dev/null 2>&1
      C[$s]+="$(timed compose_up "$s") "; compose_down "$s" >/dev/null 2>&1
    else
      C[$s]+="$(timed compose_up "$s") "; compose_down "$s" >/dev/null 2>&1
      H[$s]+="$(timed hdev_up "$s") "; hdev_down "$s" >/dev/null 2>&1
    fi
  done
done

# status vs ps, on the 30-container environment, both up.
hdev_up n30 >/dev/null 2>&1; compose_up n30 >/dev/null 2>&1
HS=""; CS=""
for r in $(seq "$reps"); do
  HS+="$(timed bash -c "cd '$work/hdev-n30' && '$hdev' status") "
  CS+="$(timed bash -c "cd '$work/compose-n30' && docker-compose ps") "
done
hdev_down n30 >/dev/null 2>&1; compose_down n30 >/dev/null 2>&1

# reset vs down + up, on the HARNESS containers.
HR=""; CR=""
if "$hdev" reset --help >/dev/null 2>&1; then
  hdev_up harness >/dev/null 2>&1
  for r in $(seq "$reps"); do
    HR+="$(timed bash -c "cd '$work/hdev-harness' && '$hdev' reset") "
    CR+="$(timed bash -c "cd '$work/compose-harness' && docker-compose down -t 1 && docker-compose up -d") "
  done
  hdev_down harness >/dev/null 2>&1; compose_down harness >/dev/null 2>&1
fi

med() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
row() { local what=$1 h=$2 c=$3; local mh mc; mh=$(med "$h"); mc=$(med "$c"); echo "| $what | $mh | $mc | $(ratio "$mh" "$mc") |"; }

section=$(cat <<EOT
## hdev and Docker Compose

\`bench/compose.sh\`, $(date -u +%Y-%m-%d), $(nproc) CPUs, Docker engine $(docker version --format '{{.Server.Version}}'), $(docker-compose version --short 2>/dev/null || echo docker-compose), release build, $reps runs each, alternating which goes first; medians in ms. Both use the same busybox box image. HARNESS containers: the 9 containers of the HARNESS example with their provisioning scripts and health checks (Compose runs the same scripts in each service's command and gates \`depends_on\` on the same health checks). The ratio is hdev's time over Compose's (below 1 means hdev is faster). hdev's \`up\` also takes each container's baseline (what makes \`reset\` and \`drift\` possible), which Compose does not do: a provisioned container (HARNESS) is committed; one without provisioning (the identical containers) has the image it was created from as its baseline, which commits nothing (docs/SNAPSHOTS.md). Load average when the run started: $load0 (the machine is shared with other work; under load both take longer).

| what | hdev (ms) | Compose (ms) | ratio |
|---|---:|---:|---:|
$(row "up: HARNESS containers" "${H[harness]}" "${C[harness]}")
$(row "up: 10 identical containers" "${H[n10]}" "${C[n10]}")
$(row "up: 30 identical containers" "${H[n30]}" "${C[n30]}")
$(row "status / ps (30 containers)" "$HS" "$CS")
$( [ -n "$HR" ] && row "reset / down + up (HARNESS containers)" "$HR" "$CR" || echo "| reset / down + up | (this hdev has no reset) | | |")

Raw runs (ms): harness hdev [${H[harness]}] compose [${C[harness]}]; n10 hdev [${H[n10]}] compose [${C[n10]}]; n30 hdev [${H[n30]}] compose [${C[n30]}]; status [$HS] ps [$CS]; reset [$HR] down+up [$CR]
EOT
)
write_section "$section"
