//! A Kubernetes node's container logs as the kubelet and containerd leave them: the real binary
//! over `/var/log/containers` links into `/var/log/pods`, lines cut into CRI partial lines,
//! stdout and stderr interleaved, files rotated the containerd way, the agent restarted and
//! killed.

mod support;

use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::Agent;

/// Writes a container's log as containerd does: each line as CRI lines of at most `max_part`
/// bytes of message (`P` for all but the last part, `F` for the last), each stamped.
struct Containerd {
    path: PathBuf,
    file: std::fs::File,
    max_part: usize,
    clock: u64,
    rotations: usize,
    written_since_rotation: usize,
    opened: std::time::Instant,
}

impl Containerd {
    fn new(path: &Path, max_part: usize) -> Containerd {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        Containerd {
            path: path.to_path_buf(),
            file,
            max_part,
            clock: 0,
            rotations: 0,
            written_since_rotation: 0,
            opened: std::time::Instant::now(),
        }
    }

    fn stamp(&mut self) -> String {
        self.clock += 1;
        format!("2024-05-01T10:{:02}:{:02}.{:09}Z", (self.clock / 60_000_000) % 60, (self.clock / 1_000_000) % 60, self.clock % 1_000_000)
    }

    /// The parts of one line, as containerd would cut it.
    fn parts(&self, message: &str) -> Vec<(bool, String)> {
        let bytes = message.as_bytes();
        if bytes.is_empty() {
            return vec![(false, String::new())];
        }
        let chunks: Vec<&[u8]> = bytes.chunks(self.max_part).collect();
        let n = chunks.len();
        chunks.into_iter().enumerate().map(|(k, c)| (k + 1 < n, String::from_utf8(c.to_vec()).unwrap())).collect()
    }

    /// Writes one part; returns its time.
    fn write_part(&mut self, stream: &str, partial: bool, text: &str) -> String {
        let time = self.stamp();
        let line = format!("{time} {stream} {} {text}\n", if partial { "P" } else { "F" });
        self.file.write_all(line.as_bytes()).unwrap();
        self.written_since_rotation += line.len();
        time
    }

    /// containerd's rotation (driven by the kubelet): the file is renamed with a time suffix and
    /// a new one is opened at the same path.
    fn rotate(&mut self) {
        self.rotations += 1;
        let rotated = self.path.with_file_name(format!("0.log.20240501-1000{:02}", self.rotations));
        std::fs::rename(&self.path, rotated).unwrap();
        self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).unwrap();
        self.written_since_rotation = 0;
        self.opened = std::time::Instant::now();
    }
}

/// Deterministic pseudo-random numbers.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The Java records of the real stack-trace samples (tests/data/stacktraces): stack traces and
/// the ordinary log lines between them.
fn java_records() -> Vec<String> {
    let expected: Value = serde_json::from_str(&std::fs::read_to_string("tests/data/stacktraces/expected.json").unwrap()).unwrap();
    expected["java"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect()
}

/// A copy of `record` made unique by `n`: a trace gets a frame naming it after its first line,
/// a log line a suffix.
fn numbered(record: &str, n: usize) -> String {
    match record.split_once('\n') {
        Some((head, rest)) => format!("{head}\n\tat logferry.Copy.n{n}(Copy.java:{n})\n{rest}"),
        None => format!("{record} #{n}"),
    }
}

/// What was written: stderr's records (each its lines joined by `\n`, with the time of its
/// first part), the file each went to (how many rotations came before), and stdout's lines.
#[derive(Default)]
struct Written {
    stderr: Vec<(String, String)>,
    stderr_file: Vec<usize>,
    stdout: Vec<String>,
}

/// Writes `copies` rounds of the Java samples to stderr, request lines to stdout in between,
/// the two streams' parts interleaved at random as containerd interleaves its two pipes;
/// rotates at about `rotate_bytes` where no line and no trace is half written (a trace cut by
/// a rotation arrives in two records: see the container framing's notes), and not before the
/// file is a second old (the kubelet looks every 10 s; a file renamed away before any scan
/// saw it is one no agent can know of).
fn write_rounds(w: &mut Containerd, rng: &mut Rng, first: usize, copies: usize, rotate_bytes: usize, out: &mut Written) {
    let samples = java_records();
    for round in first..first + copies {
        for (k, record) in samples.iter().enumerate() {
            let n = round * samples.len() + k;
            let record = numbered(record, n);
            // every part of the record's lines, in order
            let mut err_parts: Vec<(bool, String)> = Vec::new();
            for line in record.split('\n') {
                err_parts.extend(w.parts(line));
            }
            let mut out_parts: Vec<(bool, String)> = Vec::new();
            for j in 0..1 + rng.below(4) {
                let line = format!("GET /items/{n}/{j} HTTP/1.1 200 {}", "x".repeat(rng.below(90) as usize));
                out_parts.extend(w.parts(&line));
                out.stdout.push(line);
            }
            let (mut e, mut o) = (0, 0);
            let mut first_time = None;
            while e < err_parts.len() || o < out_parts.len() {
                let take_err = o == out_parts.len() || (e < err_parts.len() && rng.below(2) == 0);
                if take_err {
                    let (partial, text) = err_parts[e].clone();
                    let t = w.write_part("stderr", partial, &text);
                    first_time.get_or_insert(t);
                    e += 1;
                } else {
                    let (partial, text) = out_parts[o].clone();
                    w.write_part("stdout", partial, &text);
                    o += 1;
                }
            }
            out.stderr.push((record, first_time.unwrap()));
            out.stderr_file.push(w.rotations);
            if w.written_since_rotation > rotate_bytes && w.opened.elapsed() > Duration::from_secs(1) {
                w.rotate();
            }
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn records(a: &Agent) -> Vec<Value> {
    a.delivered().iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn logs_of<'a>(records: &'a [Value], stream: &str) -> Vec<&'a str> {
    records.iter().filter(|r| r["stream"] == stream).map(|r| r["log"].as_str().unwrap()).collect()
}

/// Waits until every stderr record and stdout line written has arrived at least once.
fn wait_for_all(a: &Agent, written: &Written) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let got = records(a);
        let err: std::collections::HashSet<&str> = logs_of(&got, "stderr").into_iter().collect();
        let out: std::collections::HashSet<&str> = logs_of(&got, "stdout").into_iter().collect();
        let missing_err = written.stderr.iter().filter(|(r, _)| !err.contains(r.as_str())).count();
        let missing_out = written.stdout.iter().filter(|l| !out.contains(l.as_str())).count();
        if missing_err + missing_out == 0 {
            return got;
        }
        if std::time::Instant::now() > deadline {
            std::fs::write("/tmp/k8s-agent.log", a.stderr()).ok();
            let example = written.stderr.iter().find(|(r, _)| !err.contains(r.as_str())).map(|(r, _)| r.clone());
            let pieces: Vec<&str> =
                logs_of(&got, "stderr").into_iter().filter(|l| !written.stderr.iter().any(|(r, _)| r == l)).take(3).collect();
            panic!(
                "{missing_err} stderr records and {missing_out} stdout lines never arrived whole; e.g. {example:?}\nrecords that are no written record: {pieces:?}\nagent stderr:\n{}",
                a.stderr().chars().rev().take(3000).collect::<String>().chars().rev().collect::<String>()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every delivered stderr record is a written record, whole (no trace arrives in pieces).
fn assert_no_pieces(got: &[Value], written: &Written) {
    let whole: HashMap<&str, &str> = written.stderr.iter().map(|(r, t)| (r.as_str(), t.as_str())).collect();
    for r in got.iter().filter(|r| r["stream"] == "stderr") {
        let log = r["log"].as_str().unwrap();
        let time = whole.get(log).unwrap_or_else(|| panic!("a record that is not a whole written record: {log:?}"));
        assert_eq!(r["time"].as_str(), Some(*time), "a record carries the time of its first part");
    }
}

fn node_layout(a: &Agent) -> PathBuf {
    let logs = a.logs();
    let pod_dir = logs.join("pods/shop_api-7f9c_0b6a2c1e-aaaa-bbbb-cccc-444455556666/app");
    std::fs::create_dir_all(&pod_dir).unwrap();
    std::fs::create_dir_all(logs.join("containers")).unwrap();
    let log = pod_dir.join("0.log");
    std::fs::write(&log, "").unwrap();
    let id = "e".repeat(64);
    std::os::unix::fs::symlink(&log, logs.join(format!("containers/api-7f9c_shop_app-{id}.log"))).unwrap();
    log
}

#[test]
fn java_stack_traces_cut_into_cri_partial_lines_arrive_one_record_each_through_rotations_restarts_and_kills() {
    let mut a =
        Agent::new("containers/*.log", "    container_logs: {format: cri}\n    multiline: {preset: java, flush_timeout_ms: 500}", "");
    let log = node_layout(&a);
    let mut w = Containerd::new(&log, 40);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut written = Written::default();
    a.start();
    // a file renamed away before the agent ever saw it is not one it can know of
    support::wait_for_log(&a.stderr_log, "running 1 flow", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    // clean restarts: every record exactly once
    for step in 0..6 {
        write_rounds(&mut w, &mut rng, step * 20, 20, 150_000, &mut written);
        std::thread::sleep(Duration::from_millis(300 + rng.below(500)));
        if step % 2 == 1 {
            assert_eq!(a.stop(), 0);
            a.start();
        }
    }
    // while stopped: the file gets lines, then is rotated to a name outside the glob; they are
    // read from there at the next start
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.stop(), 0);
    let rotations = w.rotations;
    std::thread::sleep(Duration::from_millis(1100));
    write_rounds(&mut w, &mut rng, 1000, 3, 0, &mut written);
    assert_eq!(w.rotations, rotations + 1);
    a.start();
    let got = wait_for_all(&a, &written);
    assert!(a.stderr().contains("while logferry was stopped; reading the"), "the rotated file was followed by identity");
    assert_no_pieces(&got, &written);
    let mut count: HashMap<&str, usize> = HashMap::new();
    for l in logs_of(&got, "stderr").into_iter().chain(logs_of(&got, "stdout")) {
        *count.entry(l).or_default() += 1;
    }
    let repeated: Vec<_> = count.iter().filter(|(_, n)| **n > 1).take(3).collect();
    assert!(repeated.is_empty(), "sent more than once across clean restarts: {repeated:?}");
    // a stream's order is kept within each file (a rotated file's rest and the new file are
    // read side by side)
    let file_of: HashMap<&str, usize> = written.stderr.iter().zip(&written.stderr_file).map(|((r, _), f)| (r.as_str(), *f)).collect();
    for file in 0..=w.rotations {
        let got_here: Vec<&str> = logs_of(&got, "stderr").into_iter().filter(|r| file_of[r] == file).collect();
        let want: Vec<&str> = written.stderr.iter().filter(|(r, _)| file_of[r.as_str()] == file).map(|(r, _)| r.as_str()).collect();
        assert!(got_here == want, "stderr's records of file {file} in the order written");
    }
    let traces = written.stderr.iter().filter(|(r, _)| r.contains('\n')).count();
    eprintln!(
        "phase 1: {traces} traces and {} log lines on stderr, {} stdout lines, {} rotations, {} bytes of CRI lines",
        written.stderr.len() - traces,
        written.stdout.len(),
        w.rotations,
        got.iter().map(|r| r["log"].as_str().unwrap().len()).sum::<usize>()
    );
    assert!(w.rotations >= 5 && traces >= 500, "the test writes at scale: {} rotations, {traces} traces", w.rotations);

    // SIGKILLs while writing: nothing lost, no trace in pieces (a record may come twice)
    for step in 6..12 {
        write_rounds(&mut w, &mut rng, step * 20, 20, 150_000, &mut written);
        std::thread::sleep(Duration::from_millis(100 + rng.below(600)));
        a.kill9();
        a.start();
    }
    let got = wait_for_all(&a, &written);
    assert_eq!(a.stop(), 0);
    assert_no_pieces(&records(&a), &written);
    let duplicates = logs_of(&got, "stderr").len() - written.stderr.len();
    eprintln!("phase 2: 6 SIGKILLs; {} stderr records written in all, {duplicates} delivered twice", written.stderr.len());
}

/// A pod's CRI log with the given `log` messages on stdout, linked from `containers/`.
fn pod_log(a: &Agent, namespace: &str, pod: &str, container: &str, messages: &[&str]) -> PathBuf {
    let logs = a.logs();
    let dir = logs.join(format!("pods/{namespace}_{pod}_uid-{pod}/{container}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(logs.join("containers")).unwrap();
    let log = dir.join("0.log");
    let mut w = Containerd::new(&log, 16 << 10);
    for m in messages {
        for (partial, part) in w.parts(m) {
            w.write_part("stdout", partial, &part);
        }
    }
    let link = logs.join(format!("containers/{pod}_{namespace}_{container}-{}.log", "f".repeat(64)));
    std::os::unix::fs::symlink(&log, &link).unwrap();
    link
}

#[test]
fn a_json_logging_pod_is_merged_and_an_apache_logging_pod_parsed_the_same_in_run_and_preview() {
    let mut a = Agent::new("unused", "", "");
    let api = pod_log(
        &a,
        "shop",
        "api-1",
        "api",
        &[
            r#"{"level":"info","msg":"order placed","order":{"id":17,"items":3},"stream":"app"}"#,
            "plain text from a library",
            r#"{"level":"error","msg":"payment declined","code":402}"#,
        ],
    );
    let web = pod_log(
        &a,
        "shop",
        "web-1",
        "nginx",
        &[
            r#"10.0.0.7 - - [01/May/2024:10:00:00 +0000] "GET /cart HTTP/1.1" 200 512 "-" "Mozilla/5.0""#,
            r#"10.0.0.8 - bob [01/May/2024:10:00:01 +0000] "POST /pay HTTP/1.1" 402 - "https://shop/cart" "curl/8.0""#,
        ],
    );
    let state = a.dir.path().join("state");
    let out = a.out.clone();
    let web_out = a.dir.path().join("out/web.log");
    let yaml = format!(
        "checkpoint_file: {}/cp.db\nhttp: {{listen: '127.0.0.1:0'}}\nflows:\n\
         - id: api\n    path: {}\n    container_logs: {{format: cri}}\n    processors:\n\
         \x20     - {{type: json, field: log, merge: true}}\n\
         \x20     - {{type: lift, field: kubernetes, prefix: k8s_}}\n\
         \x20     - {{type: remove, fields: [k8s_pod_uid, k8s_container_id]}}\n\
         \x20   sink: {{type: file, path: {}}}\n\
         - id: web\n    path: {}\n    container_logs: {{format: cri}}\n    processors:\n\
         \x20     - {{type: parse, field: log, format: apache_combined, into: http}}\n\
         \x20     - {{type: rename, fields: {{http.response: http.status, kubernetes.pod: pod}}}}\n\
         \x20     - {{type: copy, fields: {{kubernetes.namespace: index}}}}\n\
         \x20   sink: {{type: file, path: {}}}\n",
        state.display(),
        api.display(),
        out.display(),
        web.display(),
        web_out.display()
    )
    .replace("\n- id:", "\n  - id:");
    std::fs::write(&a.config, yaml).unwrap();
    a.start();
    let base = support::endpoint_in(&a.stderr_log);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let web_delivered = || -> Vec<Value> {
        std::fs::read_to_string(&web_out).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    while a.delivered().len() + web_delivered().len() < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(support::metric_sum(&base, "logferry_field_parse_failures_total"), 1.0, "the plain line is counted");
    assert_eq!(a.stop(), 0);
    let mut got = records(&a);
    got.extend(web_delivered());
    let api_records: Vec<&Value> = got.iter().filter(|r| r["k8s_pod"] == "api-1").collect();
    assert_eq!(api_records.len(), 3, "{got:#?}");
    assert_eq!(
        api_records[0],
        &serde_json::json!({"time": api_records[0]["time"], "stream": "app", "k8s_namespace": "shop", "k8s_pod": "api-1", "k8s_container": "api", "level": "info", "msg": "order placed", "order": {"id": 17, "items": 3}}),
        "log merged (its own `stream` taking the place of the record's), kubernetes lifted, ids removed"
    );
    assert_eq!(api_records[1]["log"], "plain text from a library", "a line that is not JSON keeps its field");
    assert_eq!(api_records[2]["code"], 402);
    let web_records: Vec<&Value> = got.iter().filter(|r| r["pod"] == "web-1").collect();
    assert_eq!(web_records.len(), 2, "{got:#?}");
    assert_eq!(web_records[1]["http"]["status"], 402);
    assert_eq!(web_records[1]["http"]["authuser"], "bob");
    assert_eq!(web_records[1]["http"]["datetime"], "2024-05-01T10:00:01Z");
    assert_eq!(web_records[1]["index"], "shop");
    assert!(web_records[1].get("log").is_none(), "the parsed field is removed");

    // preview shows the same records, from the same files
    for (flow, file, mine) in [("api", &api, &api_records), ("web", &web, &web_records)] {
        let p = std::process::Command::new(env!("CARGO_BIN_EXE_logferry"))
            .args(["preview", "--config", a.config.to_str().unwrap(), "--flow", flow, file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
        let previewed: Vec<Value> = String::from_utf8_lossy(&p.stdout)
            .lines()
            .map(|l| serde_json::from_str(&serde_json::from_str::<String>(l).unwrap()).unwrap())
            .collect();
        assert_eq!(previewed.iter().collect::<Vec<_>>(), **mine, "{flow}: preview and run agree");
        let summary = String::from_utf8_lossy(&p.stderr);
        let expected = if flow == "api" { "1 with a field that did not parse" } else { "0 with a field that did not parse" };
        assert!(summary.contains(expected), "{summary}");
    }
}

/// A Pod object as the API server returns it (`GET /api/v1/namespaces/{ns}/pods/{name}`).
fn pod_object(namespace: &str, name: &str, node: &str, labels: Value) -> Value {
    serde_json::json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("uid-{name}"),
            "resourceVersion": "4711",
            "creationTimestamp": "2024-05-01T09:00:00Z",
            "labels": labels,
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T08:59:00Z", "team.example.com/owner": "checkout"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-rs"), "uid": "rs-1", "controller": true}]
        },
        "spec": {
            "nodeName": node,
            "serviceAccountName": "default",
            "containers": [{"name": "app", "image": format!("registry.example.com/{name}:1.4.2"), "resources": {}}]
        },
        "status": {"phase": "Running", "podIP": "10.0.1.17", "hostIP": "10.0.0.5"}
    })
}

/// What a pod holds in the cluster, made in the agent's directory: a throw-away CA named
/// `authority`, the endpoint's certificate and key it signed, and a service account token file
/// holding `token`.
fn in_cluster_credentials(a: &Agent, authority: &str, token: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let certs = a.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = support::http::test_certificates(&certs, authority);
    let token_file = a.dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    (ca, cert, key, token_file)
}

/// A Status object, as the API server answers errors.
fn status_object(code: u16, reason: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})).unwrap()
}

#[test]
fn pod_labels_come_from_an_api_server_over_tls_with_the_token_and_failures_ship_what_the_path_gives() {
    let mut a = Agent::new("unused", "", "");
    let (ca, cert, key, token_file) = in_cluster_credentials(&a, "kubernetes-test-ca", "projected-token-1\n");
    let requests: std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>> = Default::default();
    let valid_token = std::sync::Arc::new(std::sync::Mutex::new("projected-token-1".to_string()));
    let seen = requests.clone();
    let valid = valid_token.clone();
    let api = support::http::serve_tls(&cert, &key, move |r| {
        let authorised = r.header("authorization") == Some(format!("Bearer {}", valid.lock().unwrap()).as_str());
        seen.lock().unwrap().push((r.path.clone(), authorised));
        let json = |status: &str, body: Vec<u8>| Some(support::http::response(status, &[("Content-Type", "application/json")], &body));
        if !authorised {
            return json("401 Unauthorized", status_object(401, "Unauthorized", "Unauthorized"));
        }
        let labels = |app: &str| serde_json::json!({"app.kubernetes.io/name": app, "pod-template-hash": "5f7c9", "tier": "backend"});
        match r.path.as_str() {
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1" => json(
                "200 OK",
                serde_json::to_vec(&serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "4711"}, "items": [pod_object("shop", "api-1", "node-1", labels("api"))]})).unwrap(),
            ),
            // recreated under the same name: the first answer is the old pod (another uid)
            "/api/v1/namespaces/shop/pods/re-1" => {
                let asked = seen.lock().unwrap().iter().filter(|(p, _)| p == &r.path).count();
                let mut pod = pod_object("shop", "re-1", "node-1", labels(if asked == 1 { "old" } else { "new" }));
                if asked == 1 {
                    pod["metadata"]["uid"] = "uid-of-the-old-pod".into();
                }
                json("200 OK", serde_json::to_vec(&pod).unwrap())
            }
            "/api/v1/namespaces/shop/pods/next-1" => json("200 OK", serde_json::to_vec(&pod_object("shop", "next-1", "node-1", labels("next"))).unwrap()),
            "/api/v1/namespaces/shop/pods/late-1" => json("200 OK", serde_json::to_vec(&pod_object("shop", "late-1", "node-1", labels("late"))).unwrap()),
            "/api/v1/namespaces/shop/pods/gone-1" => json("404 Not Found", status_object(404, "NotFound", "pods \"gone-1\" not found")),
            "/api/v1/namespaces/shop/pods/old-1" => json("410 Gone", status_object(410, "Gone", "pods \"old-1\" is gone")),
            "/api/v1/namespaces/secret/pods/vault-1" => json(
                "403 Forbidden",
                status_object(403, "Forbidden", "pods \"vault-1\" is forbidden: User \"system:serviceaccount:logging:logferry\" cannot get resource \"pods\" in the namespace \"secret\""),
            ),
            "/api/v1/namespaces/slow/pods/slow-1" => {
                std::thread::sleep(Duration::from_secs(3));
                json("200 OK", serde_json::to_vec(&pod_object("slow", "slow-1", "node-1", labels("slow"))).unwrap())
            }
            "/api/v1/namespaces/shop" | "/api/v1/namespaces/secret" | "/api/v1/namespaces/slow" => json(
                "200 OK",
                serde_json::to_vec(&serde_json::json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "shop", "labels": {"team": "checkout", "kubernetes.io/metadata.name": "shop"}}})).unwrap(),
            ),
            _ => json("404 Not Found", status_object(404, "NotFound", "the server could not find the requested resource")),
        }
    });
    pod_log(&a, "shop", "api-1", "app", &["GET /orders 200", "GET /cart 200"]);
    let out = a.out.clone();
    let yaml = format!(
        "checkpoint_file: {}\nhttp: {{listen: '127.0.0.1:0'}}\nflows:\n  - id: pods\n    path: {}/containers/*.log\n    scan_interval_ms: 200\n    container_logs:\n      format: cri\n      metadata:\n        url: {api}\n        token_file: {}\n        ca_file: {}\n        node_name: node-1\n        cluster_name: prod-eu\n        exclude_labels: [pod-template-hash]\n        annotations: true\n        include_annotations: ['team.example.com/*']\n        namespace_labels: true\n        ttl_secs: 2\n        timeout_ms: 1000\n    buffer: {{max_age_ms: 100}}\n    sink: {{type: file, path: {}}}\n",
        a.dir.path().join("state/cp.db").display(),
        a.logs().display(),
        token_file.display(),
        ca.display(),
        out.display()
    );
    std::fs::write(&a.config, yaml).unwrap();
    a.start();
    let base = support::endpoint_in(&a.stderr_log);
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = records(&a);
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let got = wait_for(2);
    // a running pod: listed at start, so its first record carries its metadata
    let k = &got[0]["kubernetes"];
    assert_eq!(
        k,
        &serde_json::json!({
            "namespace": "shop", "pod": "api-1", "pod_uid": "uid-api-1", "container": "app", "container_id": "f".repeat(64),
            "node": "node-1", "container_image": "registry.example.com/api-1:1.4.2",
            "labels": {"app.kubernetes.io/name": "api", "tier": "backend"},
            "annotations": {"team.example.com/owner": "checkout"},
            "namespace_labels": {"team": "checkout", "kubernetes.io/metadata.name": "shop"},
            "cluster": "prod-eu"
        }),
        "{got:#?}"
    );
    // pods started later: fetched when their files appear (a file waits for that, up to
    // timeout_ms); those the API cannot give, or not in time, ship with what their paths say
    for (ns, pod) in
        [("shop", "late-1"), ("shop", "gone-1"), ("shop", "old-1"), ("secret", "vault-1"), ("slow", "slow-1"), ("shop", "re-1")]
    {
        pod_log(&a, ns, pod, "app", &[&format!("{pod} first"), &format!("{pod} second")]);
    }
    let got = wait_for(14);
    assert_eq!(got.len(), 14, "every record ships, whatever the API says: {got:#?}");
    let of = |pod: &str| got.iter().filter(|r| r["kubernetes"]["pod"] == pod).map(|r| &r["kubernetes"]).collect::<Vec<_>>();
    for k in of("late-1") {
        assert_eq!(k["labels"]["app.kubernetes.io/name"], "late", "a new pod's file waits for its first fetch: {k}");
    }
    for k in of("re-1") {
        assert_eq!(k["labels"]["app.kubernetes.io/name"], "new", "the old pod of that name is not taken for this one: {k}");
    }
    for pod in ["gone-1", "old-1", "vault-1", "slow-1"] {
        for k in of(pod) {
            assert!(k.get("labels").is_none() && k["pod_uid"] == format!("uid-{pod}") && k["cluster"] == "prod-eu", "{pod}: {k}");
        }
    }
    // later records of the pod carry its labels too
    let appended = a.logs().join("pods/shop_late-1_uid-late-1/app/0.log");
    let mut w = std::fs::OpenOptions::new().append(true).open(&appended).unwrap();
    w.write_all(b"2024-05-01T10:00:05.000000001Z stdout F late-1 third\n").unwrap();
    let got = wait_for(15);
    let third = got.iter().find(|r| r["log"] == "late-1 third").expect("the third line");
    assert_eq!(third["kubernetes"]["labels"]["app.kubernetes.io/name"], "late", "{third}");
    // the error said what to do
    let log = a.stderr();
    assert!(log.contains("may not get pod secret/vault-1; apply packaging/kubernetes/rbac.yaml"), "{log}");
    assert!(log.contains("no answer within 1000 ms"), "{log}");
    // the metrics are published every second or so
    let metric_reaches = |name: &str, least: f64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let v = support::metric_sum(&base, name);
            if v >= least || std::time::Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let misses = metric_reaches("logferry_kubernetes_metadata_misses_total", 6.0);
    assert!(misses >= 6.0, "records without metadata are counted: {misses}");
    let errors = metric_reaches("logferry_kubernetes_metadata_errors_total", 2.0);
    assert!(errors >= 2.0, "the 403 and the timeout are counted: {errors}");
    // the TTL: a pod looked up after it passed is asked for again (and only then)
    let asked = |path: &str| requests.lock().unwrap().iter().filter(|(p, _)| p == path).count();
    let before = asked("/api/v1/namespaces/shop/pods/late-1");
    std::thread::sleep(Duration::from_millis(2500));
    w.write_all(b"2024-05-01T10:00:06.000000001Z stdout F late-1 fourth\n").unwrap();
    wait_for(16);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(asked("/api/v1/namespaces/shop/pods/late-1"), before + 1, "asked again once after the TTL");
    assert!(requests.lock().unwrap().iter().all(|(_, authorised)| *authorised), "every request carries the token");
    // the kubelet rotates the projected token: the next request carries the new one
    *valid_token.lock().unwrap() = "projected-token-2".into();
    std::fs::write(&token_file, "projected-token-2\n").unwrap();
    pod_log(&a, "shop", "next-1", "app", &["next-1 first"]);
    let got = wait_for(17);
    let next = got.iter().find(|r| r["log"] == "next-1 first").expect("the new pod's line");
    assert_eq!(next["kubernetes"]["labels"]["app.kubernetes.io/name"], "next", "fetched with the rotated token: {next}");
    assert_eq!(a.stop(), 0);
}

#[test]
fn pod_labels_come_from_the_kubelets_pod_list_without_asking_the_api_server() {
    let mut a = Agent::new("unused", "", "");
    let (ca, cert, key, token_file) = in_cluster_credentials(&a, "kubelet-test-ca", "kubelet-token");
    let paths: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let seen = paths.clone();
    let kubelet = support::http::serve_tls(&cert, &key, move |r| {
        let n = {
            let mut seen = seen.lock().unwrap();
            seen.push(r.path.clone());
            seen.len()
        };
        if r.header("authorization") != Some("Bearer kubelet-token") {
            return Some(support::http::response("401 Unauthorized", &[], b"Unauthorized"));
        }
        // the second pod is scheduled after the agent's first list
        let pods: &[&str] = if n == 1 { &["api-1"] } else { &["api-1", "late-1"] };
        let items: Vec<Value> =
            pods.iter().map(|p| pod_object("shop", p, "node-1", serde_json::json!({"app.kubernetes.io/name": p}))).collect();
        let body = serde_json::to_vec(&serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})).unwrap();
        Some(support::http::response("200 OK", &[("Content-Type", "application/json")], &body))
    });
    pod_log(&a, "shop", "api-1", "app", &["running"]);
    let yaml = format!(
        "checkpoint_file: {}\nflows:\n  - id: pods\n    path: {}/containers/*.log\n    scan_interval_ms: 200\n    container_logs:\n      format: cri\n      metadata: {{from: kubelet, url: '{kubelet}', token_file: {}, ca_file: {}}}\n    buffer: {{max_age_ms: 100}}\n    sink: {{type: file, path: {}}}\n",
        a.dir.path().join("state/cp.db").display(),
        a.logs().display(),
        token_file.display(),
        ca.display(),
        a.out.display()
    );
    std::fs::write(&a.config, yaml).unwrap();
    a.start();
    std::thread::sleep(Duration::from_millis(800));
    pod_log(&a, "shop", "late-1", "app", &["started later"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while records(&a).len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // a reload that changes the flow starts a new fetcher; the old one ends with its flow
    let threads = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "k8s-meta-pods"))
            .count()
    };
    assert_eq!(threads(a.pid()), 1);
    let changed = std::fs::read_to_string(&a.config).unwrap().replace("ca_file:", "ttl_secs: 60, ca_file:");
    std::fs::write(&a.config, changed).unwrap();
    support::unsafe_kill(a.pid(), "HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !a.stderr().contains("configuration reloaded") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(threads(a.pid()), 1, "one fetcher after the reload: {}", a.stderr());
    assert_eq!(a.stop(), 0);
    let got = records(&a);
    assert_eq!(got.len(), 2, "{got:#?}");
    for r in &got {
        let k = &r["kubernetes"];
        assert_eq!(k["labels"]["app.kubernetes.io/name"], k["pod"], "{r}");
        assert_eq!(k["node"], "node-1");
    }
    let paths = paths.lock().unwrap();
    assert!(paths.iter().all(|p| p == "/pods"), "only the kubelet's pod list is asked for: {paths:?}");
    assert!(paths.len() >= 2, "listed at start, and again for the new pod: {paths:?}");
}

#[test]
fn a_new_container_log_written_and_rotated_between_two_scans_is_read_through_its_links_target() {
    // scans an hour apart: only notifications of the pods' directories bring the new files
    let mut a = Agent::new("containers/*.log", "    container_logs: {format: cri}\n    scan_interval_ms: 3600000", "");
    let config = std::fs::read_to_string(&a.config).unwrap().replace("    scan_interval_ms: 300\n", "");
    std::fs::write(&a.config, config).unwrap();
    let log = node_layout(&a);
    a.start();
    support::wait_for_log(&a.stderr_log, "running 1 flow", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    // the container's log was empty when the agent found it; now it is written, then rotated
    let mut w = Containerd::new(&log, 1 << 14);
    let mut written = Vec::new();
    for n in 0..200 {
        let line = format!("first file line {n}");
        w.write_part("stdout", false, &line);
        written.push(line);
    }
    std::thread::sleep(Duration::from_millis(700));
    w.rotate();
    for n in 0..100 {
        let line = format!("second file line {n}");
        w.write_part("stdout", false, &line);
        written.push(line);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = records(&a);
        if got.len() >= written.len() || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(a.stop(), 0);
    let mut got: Vec<String> = records(&a).iter().map(|r| r["log"].as_str().unwrap().to_string()).collect();
    got.sort();
    written.sort();
    assert_eq!(got, written, "every line once, neither file waiting for a scan");
}
