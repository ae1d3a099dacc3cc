#!/usr/bin/env bash
# Benchmark (not a test): how long a line takes from being written to being acknowledged, at a
# steady rate. A writer appends BENCH_RATE lines per second (default 1,000, in 10 ms steps) for
# BENCH_SECONDS (default 60), each carrying the time it was written; logferry tails the file
# with a batch age of BENCH_AGE_MS (default 1,000) into a `file` sink, which acknowledges a batch
# right after its fsync; a reader follows the output and takes, for every line, the time it
# appeared minus the time it was written. The first 5 s are left out (start-up). Prints p50,
# p90, p99 and the maximum.
#
#   scripts/bench-latency.sh [WORKDIR]     (default /tmp/logferry-latency)
#   BENCH_BIN=/path/to/other/logferry ...  measures that build
#   BENCH_RATE=300 ...                     fewer lines a second than a batch holds: batches
#                                          close by age
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/logferry-latency}
rate=${BENCH_RATE:-1000}
seconds=${BENCH_SECONDS:-60}
age=${BENCH_AGE_MS:-1000}
# most records in a batch (at most 500): at 1,000 lines/s batches close by count
records=${BENCH_RECORDS:-500}
if [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release -j2 --bin logferry >/dev/null
fi
bin=${BENCH_BIN:-target/release/logferry}
rm -rf "$work" && mkdir -p "$work/logs"
touch "$work/logs/app.log" "$work/out.log"
cat > "$work/flow.yaml" <<YAML
checkpoint_file: $work/checkpoints.db
flows:
  - id: latency
    path: $work/logs/app.log
    buffer: { max_age_ms: $age, max_records: $records }
    sink: { type: file, path: $work/out.log }
YAML
"$bin" run --config "$work/flow.yaml" 2>"$work/agent.log" &
agent=$!
trap 'kill -TERM $agent 2>/dev/null || true' EXIT
sleep 1
kill -0 $agent 2>/dev/null || { cat "$work/agent.log" >&2; exit 1; }
python3 - "$work" "$rate" "$seconds" <<'PY'
import os, sys, threading, time
work, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
latencies = []
done = threading.Event()

def read():
    with open(os.path.join(work, "out.log"), "rb") as out:
        buf = b""
        while True:
            chunk = out.read(1 << 16)
            if not chunk:
                if done.is_set():
                    return
                time.sleep(0.002)
                continue
            now = time.time_ns()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                seq, written = line.split(b" ")[:2]
                latencies.append((int(seq), now - int(written)))

reader = threading.Thread(target=read)
reader.start()
step = 0.01
per_step = max(1, round(rate * step))
total = rate * seconds
start = time.monotonic()
with open(os.path.join(work, "logs", "app.log"), "ab", buffering=0) as log:
    seq = 0
    while seq < total:
        block = b"".join(b"%d %d %s\n" % (seq + k, time.time_ns(), b"x" * 150) for k in range(per_step))
        log.write(block)
        seq += per_step
        start += step
        time.sleep(max(0.0, start - time.monotonic()))
deadline = time.monotonic() + 30
while len(latencies) < total and time.monotonic() < deadline:
    time.sleep(0.05)
done.set()
reader.join()
warm = rate * 5
kept = sorted(l for s, l in latencies if s >= warm)
if len(latencies) < total:
    print(f"only {len(latencies)} of {total} lines arrived", file=sys.stderr)
    sys.exit(1)
pick = lambda q: kept[min(len(kept) - 1, int(q * len(kept)))] / 1e6
print(f"{rate} lines/s for {seconds} s, batch age {os.environ.get('BENCH_AGE_MS', '1000')} ms, "
      f"at most {os.environ.get('BENCH_RECORDS', '500')} records: "
      f"written -> acknowledged p50 {pick(0.50):.0f} ms, p90 {pick(0.90):.0f} ms, p99 {pick(0.99):.0f} ms, max {kept[-1] / 1e6:.0f} ms "
      f"({len(kept)} lines after the first 5 s)")
PY
