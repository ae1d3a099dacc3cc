#!/usr/bin/env bash
# Benchmark of a Kubernetes node's container logs (not a test): CPU-seconds per million CRI lines
# and peak RSS with partial lines merged, Java stack traces joined (multi-line), a JSON log
# field merged into the record, and pod labels from an API server (a local HTTPS endpoint that
# answers as the API server does, token and CA checked), to a file. With BENCH_FLUENT_BIT, the
# same input through Fluent Bit's tail (multiline.parser cri) + multiline filter (java) +
# kubernetes filter (Merge_Log, labels, against the same endpoint) to a file, alternated.
# Figures go to docs/benchmarks.md by hand, with this command.
#
#   scripts/bench-kubernetes.sh [WORKDIR]          (default /tmp/logferry-bench-k8s; ~400 MB free)
#   BENCH_LINES=1000000 ...                        CRI lines written (default one million)
#   BENCH_RUNS=2 ...                               runs of each agent, alternated (default 2)
#   BENCH_BIN=/path/to/other/logferry ...          measures that build (to alternate builds)
#   BENCH_FLUENT_BIT=/path/to/fluent-bit ...       also runs Fluent Bit (built with in_tail,
#                                                  filter_multiline, filter_kubernetes, out_file)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/logferry-bench-k8s}
lines=${BENCH_LINES:-1000000}
runs=${BENCH_RUNS:-2}
cargo build --release -j2 --bin logferry >/dev/null
bin=${BENCH_BIN:-target/release/logferry}
. scripts/bench-common.sh
rm -rf "$work" && mkdir -p "$work/logs/containers" "$work/certs"
make_certs "$work/certs"
echo -n "bench-token" > "$work/token"

echo "writing $lines CRI lines for 20 pods (request lines, JSON lines, Java stack traces on stderr, long lines in partial parts)"
python3 - "$lines" "$work" > "$work/expected" <<'PY'
import os, random, sys
n, work = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(11)
pods = []
for i in range(20):
    ns, pod = ("shop", "payments", "search", "web")[i % 4], "app-%d-7f9c5" % i
    d = os.path.join(work, "logs/pods/%s_%s_uid-%d/app" % (ns, pod, i))
    os.makedirs(d)
    path = os.path.join(d, "0.log")
    link = os.path.join(work, "logs/containers/%s_%s_app-%064x.log" % (pod, ns, i + 1))
    os.symlink(path, link)
    pods.append(open(path, "w", buffering=1 << 20))
trace = ["java.lang.IllegalStateException: order %d could not be priced"] + \
    ["\tat com.example.shop.pricing.Service.price(Service.java:%d)" % (100 + k) for k in range(12)] + \
    ["Caused by: java.io.IOException: connection reset", "\tat com.example.shop.db.Pool.get(Pool.java:88)", "\t... 12 more"]
written = records = 0
t = 0
while written < n:
    f = pods[written % 20]
    t += 1
    stamp = "2024-05-01T10:%02d:%02d.%09dZ" % ((t // 60_000_000) % 60, (t // 1_000_000) % 60, t % 1_000_000_000)
    r = rnd.random()
    if r < 0.01 and written + len(trace) <= n:
        for k, line in enumerate(trace):
            f.write("%s stderr F %s\n" % (stamp, line % t if k == 0 else line))
        written += len(trace)
    elif r < 0.25:
        f.write('%s stdout F {"level":"info","msg":"order placed","order":%d,"items":%d,"took_ms":%d}\n' % (stamp, t, rnd.randrange(1, 9), rnd.randrange(1, 500)))
        written += 1
    elif r < 0.27 and written + 3 <= n:
        msg = "GET /search?q=" + "x" * rnd.randrange(300, 900) + " 200"
        parts = [msg[i:i + 256] for i in range(0, len(msg), 256)][:3]
        for k, p in enumerate(parts):
            f.write("%s stdout %s %s\n" % (stamp, "F" if k == len(parts) - 1 else "P", p))
        written += len(parts)
    else:
        f.write("%s stdout F 10.0.%d.%d - - GET /items/%d HTTP/1.1 200 %d %s\n" % (stamp, rnd.randrange(256), rnd.randrange(256), t, rnd.randrange(100, 9000), "a" * rnd.randrange(0, 60)))
        written += 1
    records += 1
for f in pods:
    f.close()
print(records)
PY
expected=$(cat "$work/expected")
echo "input: $(du -sh "$work/logs" | cut -f1), $expected records expected"

# the API server: Pod objects with ten labels, the node's pod list; the token checked
port=$(free_port)
python3 - "$port" "$work" > "$work/api.log" 2>&1 <<'PY' &
import json, ssl, sys, http.server, re
port, work = int(sys.argv[1]), sys.argv[2]
def pod(ns, name):
    labels = {"app.kubernetes.io/name": name.rsplit("-", 1)[0], "app.kubernetes.io/part-of": "shop", "team": "checkout", "tier": "backend",
              "version": "4.2.1", "pod-template-hash": "7f9c5", "env": "prod", "region": "eu-west-1", "cost-center": "cc-17", "owner": "payments"}
    uid = "uid-" + name.split("-")[1]  # as the log directory names it
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns, "uid": uid, "labels": labels,
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T08:59:00Z"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "registry.example.com/%s:4.2.1" % name}]},
            "status": {"phase": "Running"}}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer bench-token":
            body, code = b'{"kind":"Status","code":401}', 401
        else:
            m = re.match(r"^/api/v1/namespaces/([^/]+)/pods/([^/?]+)$", self.path)
            if m:
                body, code = json.dumps(pod(m.group(1), m.group(2))).encode(), 200
            elif self.path.startswith("/api/v1/pods"):
                items = [pod(("shop", "payments", "search", "web")[i % 4], "app-%d-7f9c5" % i) for i in range(20)]
                body, code = json.dumps({"kind": "PodList", "apiVersion": "v1", "items": items}).encode(), 200
            else:
                body, code = b'{"kind":"Status","code":404}', 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(self.path, flush=True)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(work + "/certs/cert.pem", work + "/certs/key.pem")
s = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
PY
api=$!
trap 'kill $api 2>/dev/null || true' EXIT
sleep 0.5

cat > "$work/logferry.yaml" <<YAML
checkpoint_file: $work/logferry-state/checkpoints.db
flows:
  - id: pods
    path: $work/logs/containers/*.log
    container_logs:
      format: cri
      metadata: {url: 'https://127.0.0.1:$port', token_file: $work/token, ca_file: $work/certs/ca.pem, node_name: node-1}
    multiline: {preset: java}
    processors:
      - {type: json, field: log, merge: true}
    sink: { type: file, path: $work/logferry-out.log }
YAML
prefix="kube.$(echo "${work#/}" | tr / .).logs.containers."
cat > "$work/fluent-bit.conf" <<CONF
[SERVICE]
    Flush        1
    Log_Level    warn
[INPUT]
    Name              tail
    Path              $work/logs/containers/*.log
    Tag               kube.*
    multiline.parser  cri
    Read_from_Head    On
    DB                $work/fb-state/tail.db
    Refresh_Interval  1
[FILTER]
    Name                  multiline
    Match                 kube.*
    multiline.key_content log
    multiline.parser      java
    # its default (10 MB) pauses the emitter under this load and the run stalls at half
    emitter_mem_buf_limit 512M
[FILTER]
    Name             kubernetes
    Match            kube.*
    Kube_URL         https://127.0.0.1:$port
    Kube_CA_File     $work/certs/ca.pem
    Kube_Token_File  $work/token
    Kube_Tag_Prefix  $prefix
    Merge_Log        On
    Labels           On
    Annotations      Off
    tls.verify       On
[OUTPUT]
    Name    file
    Match   *
    Path    $work
    File    fb-out.log
    Format  plain
CONF

# runs $1 (a name) with the command in the rest, until its output file holds the expected
# records (or stops growing for 10 s); prints CPU-seconds, per million lines, peak RSS
measure() {
  local name=$1 out=$2; shift 2
  rm -rf "$out" "$work/logferry-state" "$work/fb-state" && mkdir -p "$work/fb-state"
  local start end pid hwm=0 last=0 still=0 n r
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$work/time.txt" "$@" > "$work/$name.log" 2>&1 &
  local timer=$!
  sleep 0.3
  pid=$(pgrep -n -P "$timer")
  while :; do
    r=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${r:-0}" -gt "$hwm" ] && hwm=$r
    n=$(grep -c '' "$out" 2>/dev/null || echo 0)
    [ "$n" -ge "$expected" ] && break
    if [ "$n" -eq "$last" ]; then still=$((still + 1)); else still=0; last=$n; fi
    [ "$still" -ge 100 ] && break
    sleep 0.1
  done
  end=$(date +%s.%N)
  kill -TERM "$pid"
  wait "$timer" || true
  read -r user sys < "$work/time.txt"
  local cpu
  cpu=$(echo "$user + $sys" | bc)
  echo "$name: $n records of $expected in $(echo "$end - $start" | bc | cut -c1-5) s; CPU $cpu s (user $user, sys $sys) = $(echo "scale=2; $cpu * 1000000 / $lines" | bc) CPU-s per million lines; peak RSS $((hwm / 1024)) MiB"
}

for run in $(seq "$runs"); do
  measure logferry "$work/logferry-out.log" "$bin" run --config "$work/logferry.yaml"
  if [ -n "${BENCH_FLUENT_BIT:-}" ]; then
    measure fluent-bit "$work/fb-out.log" "$BENCH_FLUENT_BIT" -c "$work/fluent-bit.conf"
  fi
done
echo "API requests: $(grep -c '' "$work/api.log"); logferry records with their pod's labels: $(grep -c '"labels"' "$work/logferry-out.log") of $expected"
head -c 600 "$work/logferry-out.log" | head -2
[ -n "${BENCH_FLUENT_BIT:-}" ] && head -c 600 "$work/fb-out.log" | head -2 || true
