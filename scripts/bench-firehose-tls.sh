#!/usr/bin/env bash
# Benchmark (not a test): CPU-seconds per million combined lines read from a file, converted with
# LOGTOJSON and sent with Firehose PutRecordBatch over TLS (SigV4 signing, base64, TLS included)
# to a fast local endpoint (examples/bench_endpoint.rs); peak RSS; and the requests that
# aggregation saves. Figures go to docs/benchmarks.md by hand, with this command.
#
#   scripts/bench-firehose-tls.sh [LINES] [WORKDIR]     (defaults 1000000, /tmp/logferry-bench-tls)
#   BENCH_PLAIN_ONLY=1 scripts/bench-firehose-tls.sh     only the run without aggregation
#   BENCH_RUNS=5       each configuration five times, then the lowest and the median CPU
#   BENCH_BIN=PATH     another logferry binary (an older build, to compare on the same machine)
#   BENCH_BUFFER="max_age_ms: 1000, max_records: 10000"   the flow's buffer (this is the default without it)
#   BENCH_SINK=cloudwatch_logs   the same lines to CloudWatch Logs (PutLogEvents, one event per
#                      line) instead of Firehose; only the run without aggregation
#   BENCH_FLUENT_BIT=PATH   with BENCH_SINK=cloudwatch_logs, also Fluent Bit (built with
#                      -DFLB_OUT_CLOUDWATCH_LOGS=On; not part of the project) on the same file:
#                      tail with a regex parser of the combined format's fields (stamped when
#                      read, as logferry stamps them) to its cloudwatch_logs output over TLS,
#                      through the same endpoint; the throw-away authority is linked into
#                      /etc/ssl/certs for its run (root)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
work=${2:-/tmp/logferry-bench-tls}
rm -rf "$work"
mkdir -p "$work"
cargo build --release -j2 --bin logferry --example loggen --example bench_endpoint >/dev/null
bin=${BENCH_BIN:-$PWD/target/release/logferry}
runs=${BENCH_RUNS:-1}

# a throw-away certificate authority and the endpoint's certificate signed by it
. scripts/bench-common.sh
make_certs "$work"

echo "generating $lines combined lines of 200 bytes"
mkdir -p "$work/logs"   # only the log in the tailed directory: no unrelated file events
target/release/examples/loggen combined-padded "$lines" 1 200 > "$work/logs/access.log"
sync

# runs one configuration BENCH_RUNS times; the machine's speed drifts from run to run, so with
# several runs the lowest and the median CPU are printed
run() {
  local label=$1 extra=$2 buffer=${3:-${BENCH_BUFFER:-"max_age_ms: 1000"}} i
  : > "$work/cpus.txt"
  for i in $(seq "$runs"); do
    run_once "$label" "$extra" "$buffer"
  done
  if [ "$runs" -gt 1 ]; then
    sort -n "$work/cpus.txt" | awk -v label="$label" '{v[NR]=$1} END {printf "%s: %d runs, CPU-seconds per million lines lowest %.3f, median %.3f, highest %.3f\n", label, NR, v[1], v[int((NR+1)/2)], v[NR]}'
  fi
}

run_once() {
  local label=$1 extra=$2 buffer=$3
  local port
  port=$(free_port)
  rm -f "$work/counts.json" "$work/checkpoints.db"*
  local sink="{ type: firehose, stream: bench, region: us-east-1, endpoint: \"https://127.0.0.1:$port\" }"
  if [ "${BENCH_SINK:-}" = cloudwatch_logs ]; then
    sink="{ type: cloudwatch_logs, log_group: /bench/logs, log_stream: bench, region: us-east-1, endpoint: \"https://127.0.0.1:$port\" }"
  fi
  BENCH_SERVICE=$([ "${BENCH_SINK:-}" = cloudwatch_logs ] && echo logs || echo firehose) \
    target/release/examples/bench_endpoint "$work/cert.pem" "$work/key.pem" "$port" "$work/counts.json" &
  local server=$!
  sleep 1
  cat > "$work/flow.yaml" <<YAML
checkpoint_file: $work/checkpoints.db
aws: { access_key_id: bench, secret_access_key: bench-secret }
${BENCH_TOP:-}
flows:
  - id: bench
    path: $work/logs/access.log
$extra
    processors:
      - { optionName: LOGTOJSON, logFormat: COMBINEDAPACHELOG }
    buffer: { $buffer }
    sink: $sink
YAML
  SSL_CERT_FILE=$work/ca.pem AWS_EC2_METADATA_DISABLED=true \
    measure "$label" "$work/agent.log" "^$bin run --config $work/flow.yaml" "$server" "$bin" run --config "$work/flow.yaml"
}

# Runs "$@" under /usr/bin/time (its standard error to $2) until the endpoint has every line;
# then stops it (the newest process matching $3) and the endpoint (pid $4), and prints its CPU and
# memory. The environment of the call is the command's.
measure() {
  local label=$1 log=$2 pattern=$3 server=$4
  shift 4
  local start end pid got timer user sys maxrss faults cs ws cpu
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M %R %c %w" -o "$work/time.txt" "$@" 2>"$log" &
  timer=$!
  sleep 0.2
  pid=$(pgrep -n -f "$pattern")
  while :; do
    got=$(count_of "$work/counts.json" lines)
    [ "$got" -ge "$lines" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then cat "$log"; exit 1; fi
    sleep 0.2
  done
  end=$(date +%s.%N)
  kill -TERM "$pid"
  wait "$timer" || true
  kill "$server"
  read -r user sys maxrss faults cs ws < "$work/time.txt"
  cpu=$(echo "$user + $sys" | bc)
  echo "$label: $lines lines, wall $(echo "$end - $start" | bc) s, CPU $cpu s (user $user, sys $sys), peak RSS $((maxrss / 1024)) MiB, minor faults $faults, context switches $cs involuntary, $ws voluntary"
  echo "  CPU-seconds per million lines: $(echo "scale=3; $cpu * 1000000 / $lines" | bc)"
  echo "scale=3; $cpu * 1000000 / $lines" | bc >> "$work/cpus.txt"
  echo "  $(cat "$work/counts.json")"
}
run "one record per line" ""
# Fluent Bit on the same lines, to the same endpoint, timed the same way
fluent_bit() {
  local port
  port=$(free_port)
  rm -f "$work/counts.json" "$work/fb-tail.db"*
  BENCH_SERVICE=logs target/release/examples/bench_endpoint "$work/cert.pem" "$work/key.pem" "$port" "$work/counts.json" &
  local server=$!
  sleep 1
  # the combined format's fields, as LOGTOJSON COMBINEDAPACHELOG gives them; no Time_Key, so
  # each event is stamped when it was read, as logferry stamps it
  cat > "$work/fb-parsers.conf" <<'CONF'
[PARSER]
    Name   combined_fields
    Format regex
    Regex  ^(?<host>\S+) (?<ident>\S+) (?<authuser>\S+) \[(?<datetime>[^\]]+)\] "(?<request>[^"]*)" (?<response>\d{3}) (?<bytes>\S+) "(?<referrer>[^"]*)" "(?<agent>[^"]*)"
CONF
  cat > "$work/fluent-bit.conf" <<CONF
[SERVICE]
    Flush        1
    Log_Level    warn
    Parsers_File $work/fb-parsers.conf
[INPUT]
    Name             tail
    Path             $work/logs/access.log
    Read_from_Head   On
    Parser           combined_fields
    DB               $work/fb-tail.db
[OUTPUT]
    Name             cloudwatch_logs
    Match            *
    region           us-east-1
    log_group_name   /bench/logs
    log_stream_name  bench
    endpoint         127.0.0.1
    port             $port
CONF
  # its AWS outputs always use TLS, take no tls.* keys and trust only the system's directory
  # of authorities: the throw-away one is linked there for the run, and removed after
  local trusted
  trusted=/etc/ssl/certs/$(openssl x509 -hash -noout -in "$work/ca.pem").0
  ln -sf "$work/ca.pem" "$trusted"
  trap 'rm -f "$trusted"' RETURN
  AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_EC2_METADATA_DISABLED=true \
    measure "Fluent Bit" "$work/fb.log" "^$BENCH_FLUENT_BIT -c $work/fluent-bit.conf" "$server" "$BENCH_FLUENT_BIT" -c "$work/fluent-bit.conf"
}
if [ "${BENCH_SINK:-}" = cloudwatch_logs ]; then
  [ -n "${BENCH_FLUENT_BIT:-}" ] && for i in $(seq "$runs"); do fluent_bit; done
  exit 0
fi
[ -n "${BENCH_PLAIN_ONLY:-}" ] && exit 0
run "aggregated, 4,096-byte records" "    aggregate_record_bytes: 4096"
run "aggregated, 1,000 KiB records" "    aggregate_record_bytes: 1024000"
run "aggregated, 4,096-byte records, 1 MiB batches" "    aggregate_record_bytes: 4096" "max_age_ms: 1000, max_bytes: 1048576"
