#!/usr/bin/env bash
# Benchmarks of the tailing engine (not tests): CPU-seconds per million lines and peak RSS while
# 1 GiB of 200-byte combined lines flows tail -> LOGTOJSON COMBINEDAPACHELOG -> file sink, and the
# cost of idle tailed files. Figures go to docs/benchmarks.md by hand, with this command.
#
#   scripts/bench-tail.sh [WORKDIR]      (default /tmp/logferry-bench; needs ~4 GB free)
#   BENCH_ONLY=throughput scripts/bench-tail.sh    skips the idle measurements
#   BENCH_LINES=1000000 ...                         one throughput run of that many lines
#   BENCH_PROCESSOR=typed ...                       the native typed apache_combined parser
#                                                   instead of LOGTOJSON COMBINEDAPACHELOG
#   BENCH_BIN=/path/to/other/logferry ...           measures that build (to alternate builds)
#   BENCH_STEADY=1 ...                              timestamps that advance one second every
#                                                   1,000 lines (a busy server) instead of a
#                                                   random one on every line
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/logferry-bench}
rm -rf "$work"
mkdir -p "$work/logs"
cargo build --release -j2 --bin logferry --example loggen >/dev/null
bin=${BENCH_BIN:-target/release/logferry}
case "${BENCH_PROCESSOR:-logtojson}" in
  logtojson) processor='{ optionName: LOGTOJSON, logFormat: COMBINEDAPACHELOG }' ;;
  typed) processor='{ type: parse, format: apache_combined }' ;;
  *) echo "BENCH_PROCESSOR is logtojson or typed" >&2; exit 2 ;;
esac

throughput() {
  local lines=$1
  rm -rf "$work/run" && mkdir -p "$work/run/logs"
  echo "generating $lines combined lines of 200 bytes"
  if [ -n "${BENCH_STEADY:-}" ]; then
    target/release/examples/loggen combined-padded "$lines" 1 200 | python3 -c '
import sys, time
base = 1_725_600_000
for i, line in enumerate(sys.stdin.buffer):
    a = line.index(b"[") + 1
    ts = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(base + i // 1000)).encode()
    sys.stdout.buffer.write(line[:a] + ts + line[a + len(ts):])
' > "$work/run/logs/access.log"
  else
    target/release/examples/loggen combined-padded "$lines" 1 200 > "$work/run/logs/access.log"
  fi
  sync   # the input's own writeback must not be charged to the agent
  cat > "$work/run/flow.yaml" <<YAML
checkpoint_file: $work/run/checkpoints.db
flows:
  - id: bench
    path: $work/run/logs/access.log
    processors:
      - $processor
    sink: { type: file, path: $work/run/out.log }
YAML
  local start end sent agent
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$work/run/time.txt" "$bin" run --config "$work/run/flow.yaml" 2>"$work/run/agent.log" &
  local timer=$!
  sleep 0.2
  agent=$(pgrep -n -f "^$bin run --config $work/run/flow.yaml")
  while :; do
    sent=$(grep -c '' "$work/run/out.log" 2>/dev/null || echo 0)
    [ "$sent" -ge "$lines" ] && break
    sleep 0.1
  done
  end=$(date +%s.%N)
  kill -TERM "$agent"
  wait "$timer" || true
  local user sys maxrss cpu
  read -r user sys maxrss < "$work/run/time.txt"
  cpu=$(echo "$user + $sys" | bc)
  echo "$lines lines ($((lines * 200 / 1048576)) MiB): wall $(echo "$end - $start" | bc) s, CPU $cpu s (user $user, sys $sys), peak RSS $((maxrss / 1024)) MiB"
  echo "  CPU-seconds per million lines: $(echo "scale=3; $cpu * 1000000 / $lines" | bc)"
  rm -rf "$work/run"
}
if [ -n "${BENCH_LINES:-}" ]; then
  throughput "$BENCH_LINES"
else
  throughput 1000000
  throughput 5368709   # 5368709 x 200 bytes = 1 GiB
fi

idle() {
  local n=$1 extra=$2
  rm -rf "$work/idle" && mkdir -p "$work/idle/logs"
  for i in $(seq 1 "$n"); do echo "line of file $i" > "$work/idle/logs/f$i.log"; done
  cat > "$work/idle/flow.yaml" <<YAML
checkpoint_file: $work/idle/checkpoints.db
$extra
flows:
  - id: idle
    path: $work/idle/logs/*.log
    sink: { type: file, path: $work/idle/out.log }
YAML
  "$bin" run --config "$work/idle/flow.yaml" 2>"$work/idle/agent.log" &
  local pid=$!
  sleep 15
  local t0 t1
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sleep 50
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  local tck rss fds
  tck=$(getconf CLK_TCK)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  fds=$(ls "/proc/$pid/fd" | wc -l)
  echo "$n idle files: CPU over 50 s $(echo "scale=3; ($t1 - $t0) / $tck" | bc) s ($(echo "scale=3; ($t1 - $t0) * 100 / $tck / 50" | bc) % of a core), RSS $((rss / 1024)) MiB, open descriptors $fds"
  kill -TERM "$pid"
  wait "$pid" || true
}
[ "${BENCH_ONLY:-}" = throughput ] && exit 0
idle 1000 ""
idle 10000 "max_open_files: 128
idle_close_ms: 5000"
