#!/usr/bin/env bash
# Benchmark of a journald source (not a test): CPU-seconds per million journal entries and peak
# RSS, journal files -> sd_journal (libsystemd) -> `fields` (or `syslog`) records -> file sink.
# The journal is written first with systemd-journal-remote (Debian's systemd-journal-remote).
# Figures go to docs/benchmarks.md by hand, with this command.
#
#   scripts/bench-journald.sh [WORKDIR]      (default /tmp/logferry-bench-journald; ~2 GB free)
#   BENCH_ENTRIES=1000000 ...                entries in the journal (default one million)
#   BENCH_SHAPE=syslog ...                   the `syslog` shape instead of `fields`
#   BENCH_BIN=/path/to/other/logferry ...    measures that build (to alternate builds)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/logferry-bench-journald}
entries=${BENCH_ENTRIES:-1000000}
shape=${BENCH_SHAPE:-fields}
remote=/lib/systemd/systemd-journal-remote
[ -x "$remote" ] || { echo "$remote is missing: apt-get install systemd-journal-remote" >&2; exit 2; }
cargo build --release -j2 --bin logferry >/dev/null
bin=${BENCH_BIN:-target/release/logferry}
rm -rf "$work" && mkdir -p "$work/journal"

echo "writing $entries journal entries (sshd, kubelet and app messages of 60 to 200 bytes)"
python3 - "$entries" > "$work/entries.export" <<'PY'
import random, sys
n = int(sys.argv[1])
rnd = random.Random(7)
units = [("sshd", "sshd.service"), ("kubelet", "kubelet.service"), ("app", "app.service"), ("containerd", "containerd.service")]
out = sys.stdout.buffer
base = 1_765_094_405_000_000
for i in range(n):
    ident, unit = units[i % len(units)]
    msg = "request %d handled in %d ms for client 10.0.%d.%d: %s" % (i, rnd.randrange(1, 900), rnd.randrange(256), rnd.randrange(256), "x" * rnd.randrange(0, 140))
    ts = base + i * 1000
    out.write(("__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\n"
               "_HOSTNAME=ip-10-0-0-1\n_TRANSPORT=stdout\nPRIORITY=6\nSYSLOG_IDENTIFIER=%s\n_PID=%d\n_UID=0\n_GID=0\n"
               "_COMM=%s\n_SYSTEMD_UNIT=%s\nMESSAGE=%s\n\n" % (ts, ts - 1_765_000_000_000_000, ident, 1000 + i % 50, ident, unit, msg)).encode())
PY
# journal-remote keeps files to its default size; the journal is what it wrote
"$remote" --output="$work/journal/remote.journal" "$work/entries.export" 2>/dev/null
rm "$work/entries.export"
echo "journal: $(du -sh "$work/journal" | cut -f1) in $(ls "$work/journal" | wc -l) files"
sync

cat > "$work/flow.yaml" <<YAML
checkpoint_file: $work/checkpoints.db
flows:
  - id: bench
    sources:
      - journald: { directory: $work/journal, shape: $shape }
    sink: { type: file, path: $work/out.log }
YAML
start=$(date +%s.%N)
/usr/bin/time -f "%U %S %M" -o "$work/time.txt" "$bin" run --config "$work/flow.yaml" 2>"$work/agent.log" &
timer=$!
sleep 0.3
agent=$(pgrep -n -f "^$bin run --config $work/flow.yaml")
agent_rss=0
agent_anon=0
while :; do
  r=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status" 2>/dev/null || echo 0)
  [ "${r:-0}" -gt "$agent_rss" ] && agent_rss=$r
  r=$(awk '/RssAnon/ {print $2}' "/proc/$agent/status" 2>/dev/null || echo 0)
  [ "${r:-0}" -gt "$agent_anon" ] && agent_anon=$r
  sent=$(grep -c '' "$work/out.log" 2>/dev/null || echo 0)
  [ "$sent" -ge "$entries" ] && break
  sleep 0.1
done
end=$(date +%s.%N)
kill -TERM "$agent"
wait "$timer" || true
read -r user sys _ < "$work/time.txt"
cpu=$(echo "$user + $sys" | bc)
echo "$entries entries, shape $shape: wall $(echo "$end - $start" | bc) s"
echo "  CPU: $cpu s (user $user, sys $sys); CPU-seconds per million entries: $(echo "scale=3; $cpu * 1000000 / $entries" | bc)"
echo "  peak RSS: $((agent_rss / 1024)) MiB (journal files mapped by libsystemd included); largest anonymous (heap) RSS seen: $((agent_anon / 1024)) MiB"
