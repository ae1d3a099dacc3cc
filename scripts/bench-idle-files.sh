#!/usr/bin/env bash
# Benchmark of many files (not a test): N one-line files in one directory; the agent ships them
# to a file sink, then sits idle. Reports the time to ship one line from each file, CPU-seconds
# over the idle window after that, peak RSS and RSS at its end (and the anonymous part of both:
# the rest is mostly the binary's pages, which vary with how the page cache holds the binary),
# descriptors held and the series on /metrics; with BENCH_FLUENT_BIT, Fluent Bit's tail input
# on the same files (to its file output) the same way.
# Figures go to docs/benchmarks.md by hand.
#
#   scripts/bench-idle-files.sh [WORKDIR]      (default /tmp/logferry-bench-idle)
#   BENCH_FILES=10000 ...                      files (default 10,000)
#   BENCH_IDLE_SECS=50 ...                     idle window measured (default 50)
#   BENCH_LINE_BYTES=300 ...                   each file's line padded to this length (default:
#                                              about 30 bytes; at 256 or more a file's first
#                                              bytes kept for copy detection are the most there are)
#   BENCH_MAX_OPEN=100000 ...                  max_open_files (default: the agent's default)
#   BENCH_BIN=/path/to/other/logferry ...      measures that build (to alternate builds)
#   BENCH_FLUENT_BIT=/path/to/fluent-bit ...   also runs Fluent Bit (in_tail, out_file)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/logferry-bench-idle}
files=${BENCH_FILES:-10000}
idle=${BENCH_IDLE_SECS:-50}
[ -n "${BENCH_BIN:-}" ] || cargo build --release -j2 --bin logferry >/dev/null
bin=$(realpath "${BENCH_BIN:-target/release/logferry}")
. scripts/bench-common.sh
rm -rf "$work" && mkdir -p "$work/logs" "$work/state"
python3 - "$files" "$work/logs" "${BENCH_LINE_BYTES:-0}" <<'PY'
import sys
n, d, width = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    with open("%s/job-%06d.log" % (d, i), "w") as f:
        f.write(("job %d finished with status 0" % i).ljust(width - 1, ".") + "\n")
PY
ulimit -n 1048576 2>/dev/null || ulimit -n 200000 2>/dev/null || true
hz=$(getconf CLK_TCK)

# measure NAME OUTPUT COMMAND...: starts COMMAND, waits for one line per file in OUTPUT, then
# measures the idle window
measure() {
  local name=$1 out=$2
  shift 2
  rm -f "$out"
  local start
  start=$(date +%s.%N)
  "$@" 2>"$work/$name.log" >/dev/null &
  local pid=$!
  local anon_peak=0 anon
  while [ "$(grep -c '' "$out" 2>/dev/null || echo 0)" -lt "$files" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "$name died"; tail -5 "$work/$name.log"; return 1; }
    anon=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${anon:-0}" -gt "$anon_peak" ] && anon_peak=$anon
    sleep 0.1
  done
  local shipped
  shipped=$(echo "$(date +%s.%N) - $start" | bc)
  sleep 5
  local before after
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sleep "$idle"
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  local cpu rss now_rss fds
  cpu=$(echo "scale=2; ($after - $before) / $hz" | bc)
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  now_rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  local now_anon
  now_anon=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status")
  fds=$(ls "/proc/$pid/fd" | wc -l)
  local series=""
  [ "$name" = logferry ] && series=", file_bytes_behind series $(curl -s "http://127.0.0.1:$port/metrics" | grep -c '^logferry_file_bytes_behind{' || true)"
  printf '%s, %d files: shipped in %.1f s; idle %s CPU-s over %s s (%s %% of a core), peak RSS %.1f MiB, RSS at the end %.1f MiB (anonymous: %.1f MiB at most while shipping, sampled every 0.1 s; %.1f MiB at the end), %d descriptors%s\n' \
    "$name" "$files" "$shipped" "$cpu" "$idle" "$(echo "scale=2; $cpu * 100 / $idle" | bc)" "$(echo "scale=2; $rss / 1024" | bc)" "$(echo "scale=2; $now_rss / 1024" | bc)" \
    "$(echo "scale=2; $anon_peak / 1024" | bc)" "$(echo "scale=2; $now_anon / 1024" | bc)" "$fds" "$series"
  kill -TERM "$pid"
  wait "$pid" || true
}

port=$(free_port)
cat > "$work/logferry.yaml" <<YAML
checkpoint_file: $work/state/checkpoints.db
http: {listen: '127.0.0.1:$port'}
${BENCH_MAX_OPEN:+max_open_files: $BENCH_MAX_OPEN}
flows:
  - id: jobs
    path: $work/logs/*.log
    sink: {type: file, path: $work/out.log}
YAML
measure logferry "$work/out.log" "$bin" run --config "$work/logferry.yaml"

if [ -n "${BENCH_FLUENT_BIT:-}" ]; then
  cat > "$work/fluent-bit.conf" <<CONF
[SERVICE]
    Flush        1
    Log_Level    warn
[INPUT]
    Name             tail
    Path             $work/logs/*.log
    DB               $work/state/fb.db
    Read_from_Head   true
[OUTPUT]
    Name   file
    Match  *
    Path   $work
    File   fb-out.log
    Format plain
CONF
  measure fluent-bit "$work/fb-out.log" "$BENCH_FLUENT_BIT" -c "$work/fluent-bit.conf"
fi
