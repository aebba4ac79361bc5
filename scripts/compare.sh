#!/usr/bin/env bash
# The trading job side by side on one file, runs alternated so the machine's drift (2-3x between
# hours here) hits every contender alike: the plain Python loop (scripts/python_loop.py), then
# `inflight run trading` at -w 1 and -w 2 with default flags, ROUNDS times. Prints each run's
# events/s (whole process, start-up included) and the medians with their ratios.
#
#   scripts/compare.sh                       # 1M ticks, 1,000 assets, one hour of event time
#   ROUNDS=5 scripts/compare.sh ticks.jsonl  # your own file
#
# Needs python3 and a release build (cargo build --release).
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
for round in $(seq "$ROUNDS"); do
  py=$(seconds python3 scripts/python_loop.py "$file")
  w1=$(seconds "$BIN" run trading --input "$file" -o /dev/null --dead-letter /dev/null -w 1)
  w2=$(seconds "$BIN" run trading --input "$file" -o /dev/null --dead-letter /dev/null -w 2)
  echo "$py $w1 $w2" >>"$work/times"
  awk -v n="$events" -v r="$round" '{ printf "round %d: python %9.0f  inflight -w 1 %10.0f  -w 2 %10.0f events/s\n",
    r, n / $1, n / $2, n / $3 }' <(echo "$py $w1 $w2")
done
python3 - "$work/times" "$events" <<'EOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
n = int(sys.argv[2])
py, w1, w2 = (statistics.median(c) for c in zip(*rows))
print(f"median events/s: python {n / py:,.0f}   inflight -w 1 {n / w1:,.0f}   -w 2 {n / w2:,.0f}")
print(f"ratios: -w 1 / python {py / w1:.1f}x   -w 2 / python {py / w2:.1f}x   -w 2 / -w 1 {w1 / w2:.2f}x")
EOF
