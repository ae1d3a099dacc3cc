#!/usr/bin/env bash
# Benchmark (not a test): the agent against a destination that fails part of every request, and
# after an outage. Firehose and Kinesis each, over TLS, to a fast local endpoint
# (examples/bench_endpoint.rs). Figures go to docs/benchmarks.md by hand, with this command.
#
# 1. Rate: LINES lines of 200 bytes, already written, shipped as they are (no processor) with
#    every record accepted, then with 30 % of the records of every request refused
#    (ServiceUnavailableException / ProvisionedThroughputExceededException): lines accepted per
#    second, and the second as a share of the first (the ideal is 70 %: each record needs 1/0.7
#    sends).
# 2. Catch-up: 20,000 lines a second written for 60 s while the endpoint closes every connection
#    unanswered from 15 s to 35 s: the backlog at the end of the outage, how long until the lag
#    is back to what it was before it, and the fastest second of catching up.
#
#   scripts/bench-faults.sh [LINES] [WORKDIR]     (defaults 1000000, /tmp/logferry-bench-faults)
#   BENCH_BIN=PATH          another logferry binary (an older build, to compare on one machine)
#   BENCH_ONLY=rate|catchup one part only;  BENCH_SERVICES="firehose"  one service only
#   BENCH_FAILS="0"         the rate runs with these shares refused only (default "0 30")
#   BENCH_FLOW="    retry: {...}"           lines added to the flow (YAML, indented 4)
#   BENCH_SINK="max_in_flight_requests: 8"  keys added to the sink
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
work=${2:-/tmp/logferry-bench-faults}
rm -rf "$work"
mkdir -p "$work/logs"
cargo build --release -j2 --bin logferry --example loggen --example bench_endpoint >/dev/null
bin=${BENCH_BIN:-$PWD/target/release/logferry}
. scripts/bench-common.sh
make_certs "$work"

# starts the endpoint (environment: its faults) and the agent on $work/logs/app.log for service
# $1; sets $server, $agent, $t0 (when the endpoint started)
start_both() {
  local service=$1 initial=$2 port
  port=$(free_port)
  rm -f "$work/counts.json" "$work/checkpoints.db"*
  BENCH_SERVICE=$service target/release/examples/bench_endpoint "$work/cert.pem" "$work/key.pem" "$port" "$work/counts.json" &
  server=$!
  t0=$(date +%s.%N)
  sleep 0.5
  cat > "$work/flow.yaml" <<YAML
checkpoint_file: $work/checkpoints.db
aws: { access_key_id: bench, secret_access_key: bench-secret }
flows:
  - id: bench
    path: $work/logs/app.log
    initial_position: $initial
    buffer: { max_age_ms: 1000 }
${BENCH_FLOW:-}
    sink: { type: $service, stream: bench, region: us-east-1, endpoint: "https://127.0.0.1:$port"${BENCH_SINK:+, $BENCH_SINK} }
YAML
  SSL_CERT_FILE=$work/ca.pem AWS_EC2_METADATA_DISABLED=true \
    /usr/bin/time -f "%U %S %M" -o "$work/time.txt" "$bin" run --config "$work/flow.yaml" 2>"$work/agent.log" &
  timer=$!
  sleep 0.2
  agent=$(pgrep -n -f "^$bin run --config $work/flow.yaml")
}

stop_both() {
  kill -TERM "$agent"
  wait "$timer" || true
  kill "$server"
  wait "$server" 2>/dev/null || true
  local user sys maxrss
  read -r user sys maxrss < "$work/time.txt"
  echo "  agent CPU $(echo "$user + $sys" | bc) s, peak RSS $((maxrss / 1024)) MiB; endpoint: $(cat "$work/counts.json")"
}

rate() {
  local service=$1 fail=$2 start end got
  export BENCH_FAIL_PERCENT=$fail
  start_both "$service" start_of_file
  start=$(date +%s.%N)
  while :; do
    got=$(count_of "$work/counts.json" lines)
    [ "$got" -ge "$lines" ] && break
    if ! kill -0 "$agent" 2>/dev/null; then cat "$work/agent.log"; exit 1; fi
    sleep 0.1
  done
  end=$(date +%s.%N)
  unset BENCH_FAIL_PERCENT
  local rate
  rate=$(echo "$lines / ($end - $start)" | bc)
  echo "$service, $fail % of records refused: $lines lines in $(echo "$end - $start" | bc) s, $rate lines/s accepted"
  echo "$rate" > "$work/rate-$service-$fail"
  stop_both
}

catchup() {
  local service=$1 total=1200000
  : > "$work/logs/app.log"
  rm -f "$work/written.txt"
  export BENCH_OUTAGE=15,20
  start_both "$service" end_of_file
  unset BENCH_OUTAGE
  # the writer: 2,000 lines every 100 ms from the pre-generated lines, its count in written.txt
  python3 - "$work/source.log" "$work/logs/app.log" "$work/written.txt" "$total" <<'PY' &
import sys, time
src, dst, counter, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lines = open(src, "rb").readlines()
out = open(dst, "ab", buffering=0)
start, written = time.monotonic(), 0
while written < total:
    out.write(b"".join(lines[written % len(lines):written % len(lines) + 2000]))
    written += 2000
    open(counter, "w").write(str(written))
    time.sleep(max(0.0, start + written / 20000 - time.monotonic()))
PY
  local writer=$! now written=0 accepted=0 now_written now_accepted
  : > "$work/trace.txt"
  while :; do
    now=$(echo "$(date +%s.%N) - $t0" | bc)
    # a file read while it is rewritten reads short: the counts only grow, so keep the last
    now_written=$(cat "$work/written.txt" 2>/dev/null || true)
    now_accepted=$(count_of "$work/counts.json" lines)
    [ "${now_written:-0}" -gt "$written" ] && written=$now_written
    [ "${now_accepted:-0}" -gt "$accepted" ] && accepted=$now_accepted
    echo "$now $written $accepted" >> "$work/trace.txt"
    if [ "$written" -ge "$total" ] && [ "$accepted" -ge "$total" ]; then break; fi
    if ! kill -0 "$agent" 2>/dev/null; then cat "$work/agent.log"; exit 1; fi
    sleep 0.25
  done
  wait "$writer"
  python3 - "$work/trace.txt" "$service" <<'PY'
import sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 3]
steady = max((w - a for t, w, a in rows if 5 <= t < 15), default=0)
end = 35.0
backlog = next((w - a for t, w, a in rows if t >= end), 0)
caught = next((t for t, w, a in rows if t >= end and w - a <= max(steady, 20000)), None)
best, j = 0.0, 0
for i, (t, w, a) in enumerate(rows):
    while rows[j][0] < t - 1.0:
        j += 1
    if t >= end and t - rows[j][0] > 0.5:
        best = max(best, (a - rows[j][2]) / (t - rows[j][0]))
print(f"{sys.argv[2]}, 20,000 lines/s, outage 15-35 s: lag before it {steady:.0f} lines, backlog at its end {backlog:.0f} lines, "
      f"caught up {caught - end:.1f} s after it" if caught else "never caught up", f"; fastest second after it {best:.0f} lines/s")
PY
  stop_both
}

services=${BENCH_SERVICES:-firehose kinesis}
if [ "${BENCH_ONLY:-rate}" = rate ]; then
  echo "generating $lines lines of 200 bytes"
  target/release/examples/loggen combined-padded "$lines" 1 200 > "$work/source.log"
  for service in $services; do
    cp "$work/source.log" "$work/logs/app.log"
    for fail in ${BENCH_FAILS:-0 30}; do
      rate "$service" "$fail"
    done
    if [ -f "$work/rate-$service-0" ] && [ -f "$work/rate-$service-30" ]; then
      echo "  $service: with 30 % refused, $(echo "scale=1; 100 * $(cat "$work/rate-$service-30") / $(cat "$work/rate-$service-0")" | bc) % of the fault-free rate"
    fi
  done
fi
if [ "${BENCH_ONLY:-catchup}" = catchup ]; then
  [ -f "$work/source.log" ] || target/release/examples/loggen combined-padded 200000 1 200 > "$work/source.log"
  for service in $services; do
    catchup "$service"
  done
fi
