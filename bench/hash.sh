#!/usr/bin/env bash
# Box hashing benchmark: hdev's box hashing against `sha256sum` on the same 1 GiB file,
# side by side in one run, and the cached re-hash. Writes the section "Box hashing" of
# docs/BENCHMARKS.md (other sections are kept).
#
#   bench/hash.sh            uses target/release/hdev (built with `cargo build --release`)
#   SIZE_MIB=256 bench/hash.sh   a smaller file, for a quick look
#
# What is timed (best of RUNS runs, the file in the page cache for every run):
#   sha256sum     `sha256sum big.box`
#   hdev cold     `hdev hash` of an Envfile whose box is `file = "big.box"`, with the
#                 digest cache emptied: the archive is read, every artifact hashed and
#                 checked against the manifest, the box digest computed
#   hdev cached   the same `hdev hash` again: the digest cache answers from the file's
#                 identity (device, inode, size, mtime) without reading it
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
. "$repo/bench/lib.sh"
hdev=${HDEV:-$repo/target/release/hdev}
size_mib=${SIZE_MIB:-1024}
runs=${RUNS:-3}
[ -x "$hdev" ] || { echo "bench/hash.sh: build first: cargo build --release" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HDEV_HOME="$work/home"

# A box with one artifact of SIZE_MIB random MiB, built from a throwaway recipe.
mkdir -p "$work/recipe" "$work/env"
cat > "$work/recipe/box.toml" <<T
name = "bench"
version = "1"
script = "build.sh"
[artifacts]
libvirt-disk = "blob.bin"
T
cat > "$work/recipe/build.sh" <<T
head -c ${size_mib}M /dev/urandom > "\$1/blob.bin"
T
"$hdev" box build "$work/recipe" -o "$work/env/big.box" >/dev/null
printf '[env]\nname = "bench"\n\n[box.big]\nfile = "big.box"\n' > "$work/env/Envfile"
bytes=$(stat -c %s "$work/env/big.box")
cat "$work/env/big.box" > /dev/null   # into the page cache

now() { date +%s.%N; }
best() { # best time of $runs runs of "$@"
  local b="" t0 t1 d
  for _ in $(seq "$runs"); do
    t0=$(now); "$@" > /dev/null; t1=$(now)
    d=$(echo "$t1 - $t0" | bc -l)
    if [ -z "$b" ] || [ "$(echo "$d < $b" | bc -l)" = 1 ]; then b=$d; fi
  done
  echo "$b"
}
cold() { rm -f "$HDEV_HOME/cache/digests.json"; (cd "$work/env" && "$hdev" hash); }
warm() { (cd "$work/env" && "$hdev" hash); }

t_sum=$(best sha256sum "$work/env/big.box")
t_cold=$(best cold)
warm > /dev/null
t_warm=$(best warm)
# Check that both read the same bytes: the cache must hold the box digest now.
grep -q '"box_digest"' "$HDEV_HOME/cache/digests.json"

mibs() { echo "scale=0; $bytes / 1048576 / $1" | bc -l; }
ratio=$(echo "scale=2; $t_sum / $t_cold" | bc -l)
speedup=$(echo "scale=0; $t_sum / $t_warm" | bc -l)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
shani=$(grep -q sha_ni /proc/cpuinfo && echo yes || echo no)
ms() { echo "scale=1; $1 * 1000 / 1" | bc -l; }

section=$(cat <<S
## Box hashing

\`bench/hash.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores ($cpu; SHA extensions: $shani),
a box archive of $bytes bytes ($size_mib MiB of random data), in the page cache, best of
$runs runs. Target: hdev hashes at least 0.9x as fast as \`sha256sum\`.

| what | time | throughput | vs sha256sum |
|---|---:|---:|---:|
| \`sha256sum big.box\` | $(ms "$t_sum") ms | $(mibs "$t_sum") MiB/s | 1.00x |
| \`hdev hash\`, cold (reads, hashes and checks the whole box) | $(ms "$t_cold") ms | $(mibs "$t_cold") MiB/s | ${ratio}x |
| \`hdev hash\`, cached (file unchanged) | $(ms "$t_warm") ms | – | ${speedup}x faster |

The cold figure includes hdev's start, reading the Envfile and the tar framing; the
cached one is the whole \`hdev hash\` command when the digest cache knows the file.
S
)

write_section "$section"
