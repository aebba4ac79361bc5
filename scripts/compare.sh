#!/usr/bin/env bash
# The trading job side by side on one file, runs alternated so the machine's drift (2-3x between
# hours here) hits every contender alike: the plain Python loop (scripts/python_loop.py), then
# Apache Flink 2.3 at parallelism 2 (scripts/flink.sh, when javac is installed; FLINK=0 leaves it
# out), then `inflight run trading` at -w 1 and -w 2 with default flags, ROUNDS times. Prints each
# run's events/s (whole process, start-up included: Flink's JVM and MiniCluster start is part of
# what a user waits for) and the medians with their ratios.
#
#   scripts/compare.sh                       # 1M ticks, 1,000 assets, one hour of event time
#   ROUNDS=5 scripts/compare.sh ticks.jsonl  # your own file
#
# Needs python3 and a release build (cargo build --release); Flink needs java/javac 17+.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${INFLIGHT_BIN:-target/release/inflight}
ROUNDS=${ROUNDS:-3}
[ -x "$BIN" ] || { echo "compare.sh: $BIN missing: run cargo build --release first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file=${1:-}
if [ -z "$file" ]; then
  file=$work/ticks.jsonl
  "$BIN" gen market --events 1000000 --assets 1000 --rate 277.78 --seed 7 -o "$file"
fi
events=$(grep -c . "$file")

# Wall seconds of one command (output discarded).
seconds() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  t1=$(date +%s%N)
  awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.6f", ns / 1e9 }'
}

: >"$work/times"
flink=${FLINK:-1}
if [ "$flink" = 1 ] && ! command -v javac >/dev/null; then
  echo "compare.sh: javac not installed: Flink left out" >&2
  flink=0
fi
if [ "$flink" = 1 ]; then
  # Compiles the job and fills Flink's cache outside the timed runs; its decisions must be the
  # Python loop's (same rules, same bars), or the comparison is not of the same job.
  scripts/flink.sh "$file" 2 2>"$work/err" | sed 's/^[0-9]*> //' | sort >"$work/flink.out" \
    || { cat "$work/err" >&2; exit 1; }
  python3 scripts/python_loop.py "$file" 2>/dev/null | sort >"$work/python.out"
  python3 - "$work/python.out" "$work/flink.out" <<'EOF'
import json, sys
def keys(path):
    return sorted((d["key"], d["event_time"], d["action"]) for d in map(json.loads, open(path)))
py, fl = keys(sys.argv[1]), keys(sys.argv[2])
if py != fl:
    sys.exit(f"compare.sh: Flink made {len(fl)} decisions, the Python loop {len(py)}: not the same job")
print(f"Flink and the Python loop agree on all {len(py)} decisions")
EOF
fi
for round in $(seq "$ROUNDS"); do
  py=$(seconds python3 scripts/python_loop.py "$file")
  fl=0
  if [ "$flink" = 1 ]; then fl=$(seconds scripts/flink.sh "$file" 2); fi
  w1=$(seconds "$BIN" run trading --input "$file" -o /dev/null --dead-letter /dev/null -w 1)
  w2=$(seconds "$BIN" run trading --input "$file" -o /dev/null --dead-letter /dev/null -w 2)
  echo "$py $fl $w1 $w2" >>"$work/times"
  awk -v n="$events" -v r="$round" '{ printf "round %d: python %9.0f  flink -p 2 %9.0f  inflight -w 1 %10.0f  -w 2 %10.0f events/s\n",
    r, n / $1, ($2 > 0 ? n / $2 : 0), n / $3, n / $4 }' <(echo "$py $fl $w1 $w2")
done
python3 - "$work/times" "$events" <<'EOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
n = int(sys.argv[2])
py, fl, w1, w2 = (statistics.median(c) for c in zip(*rows))
flink = f"   flink -p 2 {n / fl:,.0f}" if fl > 0 else ""
print(f"median events/s: python {n / py:,.0f}{flink}   inflight -w 1 {n / w1:,.0f}   -w 2 {n / w2:,.0f}")
print(f"ratios: -w 1 / python {py / w1:.1f}x   -w 2 / python {py / w2:.1f}x   -w 2 / -w 1 {w1 / w2:.2f}x")
if fl > 0:
    print(f"ratios: -w 2 / flink {fl / w2:.1f}x   flink / python {py / fl:.2f}x")
EOF
