#!/usr/bin/env bash
# Benchmark of idle cost with many files (not a test): N one-line files in one directory, the
# agent ships them to a file sink, then sits idle; reports CPU-seconds over the idle window,
# peak RSS and the series on /metrics. Figures go to docs/benchmarks.md by hand.
#
#   scripts/bench-idle-files.sh [WORKDIR]      (default /tmp/logferry-bench-idle)
#   BENCH_FILES=10000 ...                      files (default 10,000)
#   BENCH_IDLE_SECS=50 ...                     idle window measured (default 50)
#   BENCH_BIN=/path/to/other/logferry ...      measures that build (to alternate builds)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/logferry-bench-idle}
files=${BENCH_FILES:-10000}
idle=${BENCH_IDLE_SECS:-50}
[ -n "${BENCH_BIN:-}" ] || cargo build --release -j2 --bin logferry >/dev/null
bin=${BENCH_BIN:-target/release/logferry}
. scripts/bench-common.sh
rm -rf "$work" && mkdir -p "$work/logs"
python3 - "$files" "$work/logs" <<'PY'
import sys
n, d = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    with open("%s/job-%06d.log" % (d, i), "w") as f:
        f.write("job %d finished with status 0\n" % i)
PY
port=$(free_port)
cat > "$work/logferry.yaml" <<YAML
checkpoint_file: $work/state/checkpoints.db
http: {listen: '127.0.0.1:$port'}
max_open_files: 100000
flows:
  - id: jobs
    path: $work/logs/*.log
    sink: {type: file, path: $work/out.log}
YAML
ulimit -n 200000 2>/dev/null || true
"$bin" run --config "$work/logferry.yaml" 2>"$work/agent.log" &
agent=$!
trap 'kill $agent 2>/dev/null || true' EXIT
while [ "$(grep -c '' "$work/out.log" 2>/dev/null || echo 0)" -lt "$files" ]; do sleep 0.2; done
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
sleep "$idle"
after=$(ticks)
cpu=$(echo "scale=2; ($after - $before) / $hz" | bc)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
series=$(curl -s "http://127.0.0.1:$port/metrics" | grep -c '^logferry_file_bytes_behind{' || true)
echo "$files idle files: $cpu CPU-s over $idle s ($(echo "scale=2; $cpu * 100 / $idle" | bc) % of a core), peak RSS $((rss / 1024)) MiB, descriptors $(ls /proc/$agent/fd | wc -l), file_bytes_behind series $series"
kill -TERM "$agent"
wait "$agent" || true
