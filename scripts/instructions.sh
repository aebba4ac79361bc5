#!/usr/bin/env bash
# Instructions per event of whole `inflight run` processes, counted by valgrind's callgrind: the
# same figure for the same binary and input whatever else the machine is doing (wall-clock speed
# here varies 2-3x between hours). Generates its inputs (fixed seeds), runs each pipeline at -w 1
# with outputs to /dev/null, and prints total instructions, the process's start-up and end (an
# empty input's run) and instructions per event without them. The trading input has the density
# of 1M ticks an hour on 1,000 assets (278 ticks/s), so nearly every tick closes a bar.
#
#   scripts/instructions.sh                 # trading 100k ticks, flight 20k events, code 1k events
#   TRADING_EVENTS=1000000 scripts/instructions.sh trading
#
# Needs valgrind (Debian: apt-get install valgrind) and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${INFLIGHT_BIN:-target/release/inflight}
TRADING_EVENTS=${TRADING_EVENTS:-100000}
FLIGHT_EVENTS=${FLIGHT_EVENTS:-20000}
CODE_EVENTS=${CODE_EVENTS:-1000}
WORKERS=${WORKERS:-1}
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed" >&2; exit 1; }
[ -x "$BIN" ] || { echo "instructions.sh: $BIN missing: run cargo build --release first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Instructions of one run: callgrind's total over all threads.
count() {
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$BIN" "$@" -o /dev/null \
    --dead-letter /dev/null -w "$WORKERS" >/dev/null 2>"$work/cg.err" \
    || { cat "$work/cg.err" >&2; exit 1; }
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/cg.err" | tail -1
}

report() { # name events total empty
  awk -v name="$1" -v n="$2" -v total="$3" -v empty="$4" 'BEGIN {
    printf "%-8s %9d events  %15.0f instructions  start-up+end %12.0f  per event %8.0f\n",
      name, n, total, empty, (total - empty) / n }'
}

pipelines=${*:-trading flight code}
printf 'inflight instructions per event (%s, -w %s, %s)\n' "$($BIN --version)" "$WORKERS" "$(uname -m)"
for p in $pipelines; do
  case $p in
    trading)
      "$BIN" gen market --events "$TRADING_EVENTS" --assets 1000 --rate 278 --seed 42 -o "$work/t.jsonl"
      : >"$work/empty.jsonl"
      report trading "$TRADING_EVENTS" "$(count run trading --input "$work/t.jsonl")" \
        "$(count run trading --input "$work/empty.jsonl")"
      ;;
    flight)
      "$BIN" gen flight --events "$FLIGHT_EVENTS" --bookings 20000 --seed 42 -o "$work/f.jsonl" \
        --schedule-out "$work/s.jsonl" --bookings-out "$work/b.jsonl"
      : >"$work/empty.jsonl"
      ref=(--schedule "$work/s.jsonl" --bookings "$work/b.jsonl")
      report flight "$FLIGHT_EVENTS" "$(count run flight --input "$work/f.jsonl" "${ref[@]}")" \
        "$(count run flight --input "$work/empty.jsonl" "${ref[@]}")"
      ;;
    code)
      "$BIN" gen code --events "$CODE_EVENTS" --seed 42 -o "$work/c.jsonl"
      : >"$work/empty.jsonl"
      report code "$CODE_EVENTS" "$(count run code --input "$work/c.jsonl")" \
        "$(count run code --input "$work/empty.jsonl")"
      ;;
    *) echo "instructions.sh: unknown pipeline $p (trading, flight, code)" >&2; exit 2 ;;
  esac
done
