#!/usr/bin/env bash
# Runs the trading job on Apache Flink 2.3 (scripts/flink/TradingJob.java, local MiniCluster), for
# scripts/compare.sh. Flink's jars come from PyPI's apache-flink-libraries wheel (the same jars as
# the Flink distribution; no Maven repository is needed), unpacked once into a cache and reused.
# Needs java and javac (17 or later) and pip; not used by the build or the tests.
#
#   scripts/flink.sh ticks.jsonl [parallelism] > decisions.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=2.3.0
CACHE=${FLINK_CACHE:-$HOME/.cache/inflight/flink-$VERSION}
[ $# -ge 1 ] || { echo "usage: scripts/flink.sh ticks.jsonl [parallelism]" >&2; exit 2; }
command -v javac >/dev/null || { echo "flink.sh: javac is not installed (Debian: openjdk-17-jdk-headless)" >&2; exit 1; }

if [ ! -f "$CACHE/lib/flink-dist-$VERSION.jar" ]; then
  echo "flink.sh: fetching apache-flink-libraries==$VERSION from PyPI into $CACHE" >&2
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps -d "$tmp" "apache-flink-libraries==$VERSION" >&2
  mkdir -p "$CACHE/lib"
  (cd "$tmp" && python3 -m zipfile -e apache_flink_libraries-*.whl unpacked)
  cp "$tmp"/unpacked/pyflink/lib/*.jar "$CACHE/lib/"
  rm -rf "$tmp"
fi

classes=$CACHE/classes
if [ ! -f "$classes/TradingJob.class" ] || [ scripts/flink/TradingJob.java -nt "$classes/TradingJob.class" ]; then
  mkdir -p "$classes"
  javac -nowarn -d "$classes" -cp "$CACHE/lib/*" scripts/flink/TradingJob.java
fi
# Flink's log (warnings and errors) to stderr: stdout carries only the decisions (print sink,
# lines prefixed "n> " by the subtask that printed them).
cat >"$CACHE/log4j2.properties" <<'END'
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %d %p %c{1} - %m%n
END
exec java -Xmx4g -Dlog4j.configurationFile="$CACHE/log4j2.properties" -cp "$CACHE/lib/*:$classes" TradingJob "$@"
