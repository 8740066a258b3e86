# Shared by the scripts in bench/ (sourced, not run): timing, medians, and writing a
# section of docs/BENCHMARKS.md.

# use_hdev: the hdev to measure, in `hdev`: $HDEV, or a release build of this checkout
# (made now); `build` names which (the folder it is in: release, debug).
use_hdev() {
  if [ -z "${HDEV:-}" ]; then
    (cd "$(dirname "${BASH_SOURCE[0]}")/.." && cargo build --release --quiet --bin hdev)
    HDEV="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/hdev"
  fi
  hdev=$HDEV
  build="$(basename "$(dirname "$HDEV")")"
}

now_ms() { date +%s%3N; }

# Median of the numbers on standard input, one per line.
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# write_section TEXT: TEXT, which starts with its "## " heading, replaces the section of
# docs/BENCHMARKS.md under that heading (up to the next "## " heading) or is appended;
# the file is made when absent and replaced whole (a half-written file is never left).
# Prints TEXT.
write_section() {
  local doc
  doc="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/docs/BENCHMARKS.md"
  python3 - "$doc" "$1" <<'PY'
import os, re, sys
path, section = sys.argv[1], sys.argv[2].strip("\n") + "\n"
heading = section.splitlines()[0]
if not heading.startswith("## "):
    sys.exit(f"write_section: the text must start with a '## ' heading, not {heading!r}")
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\nFigures written by the scripts in bench/.\n"
pat = re.compile("^" + re.escape(heading) + r"\n.*?(?=^## |\Z)", re.S | re.M)
if pat.search(text):
    text = pat.sub(lambda m: section + "\n", text, count=1)
else:
    text = text.rstrip("\n") + "\n\n" + section
with open(path + ".new", "w") as f:
    f.write(text.rstrip("\n") + "\n")
os.replace(path + ".new", path)
PY
  printf '%s\n' "$1"
}
