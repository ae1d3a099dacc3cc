//! Operating the agent: `/metrics` read with the Prometheus client library's own parser and
//! checked against what was shipped, `/health` and `/ready`, progress lines.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// The agent's endpoint address, from its start-up line.
fn endpoint_of(a: &Agent) -> String {
    endpoint_in(&a.stderr_log)
}

/// `/metrics` parsed by `prometheus_client`'s OpenMetrics parser: sample → value.
fn scrape(base: &str) -> HashMap<String, f64> {
    let (status, text) = http::get(base, "/metrics");
    assert_eq!(status, 200);
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(venv.exists(), "scripts/test.sh installs prometheus-client into .venv");
    let mut child = Command::new(venv)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/prom.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser rejects the exposition: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_read_by_a_prometheus_parser_add_up_to_what_was_shipped() {
    let mut a = Agent::new(
        "app.log",
        "    processors: [{type: filter, exclude: ['DROPME']}]",
        "http: {listen: '127.0.0.1:0'}\nstatus_period_secs: 1",
    );
    let path = a.logs().join("app.log");
    let mut w = Writer::new(&path, "m");
    w.write(700);
    std::fs::write(a.logs().join("extra"), "").unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    for i in 0..30 {
        std::io::Write::write_all(&mut f, format!("DROPME {i}\n").as_bytes()).unwrap();
    }
    w.write(300);
    let bytes: u64 = std::fs::metadata(&path).unwrap().len();
    a.start();
    let base = endpoint_of(&a);
    a.wait_for(&w.written, Duration::from_secs(30));
    // the figures settle within a publishing period
    let deadline = Instant::now() + Duration::from_secs(10);
    let labels = "destination=File:".to_string() + a.out.to_str().unwrap() + ",flow=test";
    let m = loop {
        let m = scrape(&base);
        let settled = ["logferry_records_sent_total", "logferry_records_parsed_total"]
            .iter()
            .all(|n| m.get(&format!("{n}{{{labels}}}")) == Some(&1000.0));
        if settled || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let get = |name: &str| m.get(&format!("{name}{{{labels}}}")).copied().unwrap_or_else(|| panic!("no {name}: {m:?}"));
    assert_eq!(get("logferry_records_parsed_total"), 1000.0);
    assert_eq!(get("logferry_records_sent_total"), 1000.0);
    assert_eq!(get("logferry_record_send_attempts_total"), 1000.0);
    assert_eq!(get("logferry_records_dropped_total"), 30.0);
    assert_eq!(get("logferry_bytes_read_total"), bytes as f64);
    let shipped: usize = w.written.iter().map(|l| l.len() + 1).sum();
    assert_eq!(get("logferry_bytes_sent_total"), shipped as f64);
    assert_eq!(get("logferry_bytes_behind"), 0.0);
    assert_eq!(get("logferry_files_behind"), 0.0);
    // a file with nothing behind has no series of its own (the flow's total says it)
    assert!(!m.contains_key(&format!("logferry_file_bytes_behind{{file={},flow=test}}", path.display())), "{m:?}");
    assert!(m.contains_key("logferry_in_flight_budget_bytes{}"), "{m:?}");
    let (status, body) = http::get(&base, "/health");
    assert_eq!((status, body.contains("\"ok\"")), (200, true), "{body}");
    assert_eq!(http::get(&base, "/ready").0, 200);
    let (_, status_json) = http::get(&base, "/status");
    let v: serde_json::Value = serde_json::from_str(&status_json).unwrap();
    assert_eq!(v["flows"][0]["records_sent"], 1000);
    // the progress line, as the Kinesis Agent's
    let log = wait_for_log(&a.stderr_log, "1000 sent", Duration::from_secs(5));
    assert!(log.contains("progress: 1000 records parsed") && log.contains("0 bytes behind in 0 files"), "{log}");
    assert_eq!(a.stop(), 0);
}

#[test]
fn health_turns_unhealthy_when_a_sink_fails_longer_than_the_threshold_and_recovers() {
    // an endpoint that refuses everything until told otherwise
    let refusing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r = refusing.clone();
    let endpoint = http::serve(move |req| {
        let json = [("Content-Type", "application/x-amz-json-1.1")];
        if r.load(std::sync::atomic::Ordering::Relaxed) {
            return Some(http::response("400 Bad Request", &json, br#"{"__type":"AccessDeniedException","message":"not allowed"}"#));
        }
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let n = body["Records"].as_array().unwrap().len();
        let responses: Vec<_> = (0..n).map(|i| serde_json::json!({"RecordId": i.to_string()})).collect();
        let out = serde_json::json!({"FailedPutCount": 0, "RequestResponses": responses}).to_string();
        Some(http::response("200 OK", &json, out.as_bytes()))
    });
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\nhttp: {{listen: '127.0.0.1:0', unhealthy_after_secs: 2}}\naws: {{access_key_id: t, secret_access_key: t}}\nflows:\n  - id: h\n    path: {}\n    buffer: {{max_age_ms: 100}}\n    retry: {{initial_backoff_ms: 50, max_backoff_ms: 200}}\n    sink: {{type: firehose, stream: s, region: us-east-1, endpoint: '{endpoint}'}}\n",
            d.path().join("checkpoints.db").display(),
            d.path().join("app.log").display()
        ),
    )
    .unwrap();
    let mut w = Writer::new(&d.path().join("app.log"), "h");
    w.write(10);
    let err = d.path().join("agent.err");
    let mut agent = run_agent(&cfg, &err);
    let base = endpoint_in(&err);
    assert_eq!(http::get(&base, "/health").0, 200, "healthy before the threshold");
    let (status, body) = wait_for_status(&base, "/health", 503, Duration::from_secs(20));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("flow h") && body.contains("AccessDeniedException"), "{body}");
    assert_eq!(http::get(&base, "/ready").0, 200, "ready all along: the agent runs, the sink fails");
    // a liveness probe on /live does not restart the agent for an AWS outage (a restart would
    // lose the unread bytes of deleted rotated files it holds open)
    assert_eq!(http::get(&base, "/live").0, 200, "alive all along: the engine is not wedged");
    // the permission is granted: the records go and the agent is healthy again
    refusing.store(false, std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http::get(&base, "/health").0 != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http::get(&base, "/health").0, 200);
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
}

/// One datum as the CloudWatch endpoint decoded it from CBOR.
#[derive(Debug, Clone)]
struct Datum {
    namespace: String,
    name: String,
    dimensions: Vec<(String, String)>,
    timestamp: f64,
    count: f64,
    sum: f64,
}

fn cbor_get<'a>(m: &'a ciborium::Value, key: &str) -> Option<&'a ciborium::Value> {
    m.as_map()?.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v)
}

fn cbor_f64(v: &ciborium::Value) -> f64 {
    match v {
        ciborium::Value::Float(f) => *f,
        ciborium::Value::Integer(i) => i128::from(*i) as f64,
        ciborium::Value::Tag(_, inner) => cbor_f64(inner),
        other => panic!("not a number: {other:?}"),
    }
}

/// A CloudWatch endpoint speaking the real protocol of the current SDK (Smithy RPC v2 CBOR,
/// gzip-compressed bodies when large): decodes every PutMetricData and keeps its datums.
fn cloudwatch_endpoint() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Datum>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let endpoint = http::serve(move |req| {
        assert!(req.path.ends_with("/operation/PutMetricData"), "{}", req.path);
        assert_eq!(req.header("smithy-protocol"), Some("rpc-v2-cbor"));
        let body = if req.header("content-encoding") == Some("gzip") {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&req.body[..]), &mut out).unwrap();
            out
        } else {
            req.body.clone()
        };
        let v: ciborium::Value = ciborium::from_reader(&body[..]).expect("a CBOR request");
        let namespace = cbor_get(&v, "Namespace").and_then(|n| n.as_text()).unwrap().to_string();
        for d in cbor_get(&v, "MetricData").and_then(|m| m.as_array()).unwrap() {
            let stats = cbor_get(d, "StatisticValues").expect("statistic sets");
            let dimensions = cbor_get(d, "Dimensions")
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            let t = |k| cbor_get(x, k).and_then(|v| v.as_text()).unwrap().to_string();
                            (t("Name"), t("Value"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            s.lock().unwrap().push(Datum {
                namespace: namespace.clone(),
                name: cbor_get(d, "MetricName").and_then(|n| n.as_text()).unwrap().to_string(),
                dimensions,
                timestamp: cbor_f64(cbor_get(d, "Timestamp").expect("explicit timestamps")),
                count: cbor_f64(cbor_get(stats, "SampleCount").unwrap()),
                sum: cbor_f64(cbor_get(stats, "Sum").unwrap()),
            });
        }
        let headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")];
        Some(http::response("200 OK", &headers, &[0xa0]))
    });
    (endpoint, seen)
}

#[test]
fn cloudwatch_gets_the_kinesis_agent_metrics_with_the_right_sums() {
    let (endpoint, seen) = cloudwatch_endpoint();
    let mut a = Agent::new(
        "app.log",
        "",
        &format!("aws: {{access_key_id: t, secret_access_key: t}}\ncloudwatch: {{emit_metrics: true, endpoint: '{endpoint}', region: us-east-1, namespace: TestNS, buffer_time_ms: 1000, tag_instance: true}}"),
    );
    let mut w = Writer::new(&a.logs().join("app.log"), "cw");
    w.write(600);
    a.start();
    a.wait_for(&w.written, Duration::from_secs(30));
    let destination = format!("File:{}", a.out.display());
    let sum = |name: &str| -> f64 {
        let g = seen.lock().unwrap();
        g.iter()
            .filter(|d| d.name == name && d.dimensions.iter().any(|(k, v)| k == "Destination" && *v == destination))
            .map(|d| d.sum)
            .sum()
    };
    let windows = || {
        let mut s: Vec<i64> = seen.lock().unwrap().iter().filter(|d| d.name == "RecordsSent").map(|d| d.timestamp as i64).collect();
        s.sort();
        s.dedup();
        s.len()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while (sum("RecordsSent") < 600.0 || windows() < 3) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(a.stop(), 0);
    assert_eq!(sum("RecordsSent"), 600.0);
    assert_eq!(sum("RecordSendAttempts"), 600.0);
    assert_eq!(sum("RecordSendErrors"), 0.0);
    assert_eq!(sum("ServiceErrors"), 0.0);
    let bytes: usize = w.written.iter().map(|l| l.len() + 1).sum();
    assert_eq!(sum("BytesSent"), bytes as f64);
    let g = seen.lock().unwrap();
    assert!(g.iter().all(|d| d.namespace == "TestNS"));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    assert!(g.iter().all(|d| d.dimensions.iter().any(|(k, v)| k == "Instance" && *v == host)), "tagInstance: the host name without EC2");
    for name in ["BytesBehind", "FilesBehind", "CheckpointAgeSeconds", "RecordsDropped", "ThrottledRecords", "ConsecutiveProcessingErrors"]
    {
        assert!(g.iter().any(|d| d.name == name), "{name} is published");
    }
    // windows aligned on whole seconds, each with its data point: quiet windows send zeros
    assert!(g.iter().all(|d| d.timestamp.fract() == 0.0 && d.count >= 1.0));
    let mut stamps: Vec<i64> = g.iter().filter(|d| d.name == "RecordsSent").map(|d| d.timestamp as i64).collect();
    stamps.sort();
    stamps.dedup();
    assert!(stamps.len() >= 3 && stamps.windows(2).all(|p| p[1] - p[0] == 1), "no gaps between windows: {stamps:?}");
}

#[test]
fn a_cloudwatch_that_never_answers_does_not_hold_up_shipping_or_stopping() {
    let endpoint = http::silent();
    let mut a = Agent::new(
        "app.log",
        "",
        &format!("aws: {{access_key_id: t, secret_access_key: t}}\ncloudwatch: {{emit_metrics: true, endpoint: '{endpoint}', region: us-east-1, buffer_time_ms: 1000}}"),
    );
    let mut w = Writer::new(&a.logs().join("app.log"), "out");
    w.write(500);
    a.start();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(500));
        w.write(300);
    }
    a.finish_exactly_once(&w.written);
}

/// Lines read back from a file sink's output.
fn delivered(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|t| t.lines().map(String::from).collect()).unwrap_or_default()
}

#[test]
fn ten_reloads_under_load_lose_and_repeat_nothing_and_a_bad_configuration_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let logs = d.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let cfg = d.path().join("logferry.yaml");
    let out = |name: &str| d.path().join(format!("out/{name}.out"));
    // `steady` never changes; `changing` changes on every reload; `extra` comes and goes
    let config = |round: usize| {
        let mut y = format!(
            "checkpoint_file: {}\nshutdown_timeout_ms: 5000\nflows:\n  - id: steady\n    path: {}\n    sink: {{type: file, path: {}}}\n  - id: changing\n    path: {}\n    buffer: {{max_age_ms: {}}}\n    sink: {{type: file, path: {}}}\n",
            d.path().join("checkpoints.db").display(),
            logs.join("a.log").display(),
            out("a").display(),
            logs.join("b.log").display(),
            100 + round,
            out("b").display()
        );
        if round.is_multiple_of(2) {
            y += &format!(
                "  - id: extra\n    path: {}\n    sink: {{type: file, path: {}}}\n",
                logs.join("c.log").display(),
                out("c").display()
            );
        }
        y
    };
    std::fs::write(&cfg, config(0)).unwrap();
    let writers = std::sync::Arc::new(std::sync::Mutex::new(["a", "b", "c"].map(|n| Writer::new(&logs.join(format!("{n}.log")), n))));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (w2, s2) = (writers.clone(), stop.clone());
    let load = std::thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            for w in w2.lock().unwrap().iter_mut() {
                w.write(5);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let err = d.path().join("agent.err");
    let mut agent = run_agent(&cfg, &err);
    for round in 1..=10 {
        std::thread::sleep(Duration::from_millis(400));
        std::fs::write(&cfg, config(round)).unwrap();
        unsafe_kill(agent.id(), "HUP");
    }
    // a configuration that does not load is refused; the running one goes on
    std::thread::sleep(Duration::from_millis(400));
    std::fs::write(&cfg, "flows:\n  - id: steady\n    path: [not, a, path]\n").unwrap();
    unsafe_kill(agent.id(), "HUP");
    let log = wait_for_log(&err, "is refused; the running configuration is kept", Duration::from_secs(10));
    assert!(log.contains("`flows[0].path`"), "the refusal says why: {log}");
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    // the last good configuration (round 10) has `extra`
    let w = writers.lock().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ["a", "b", "c"].iter().zip(w.iter()).any(|(n, w)| delivered(&out(n)).len() < w.written.len()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    unsafe_kill(agent.id(), "TERM");
    let status = wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(&err).unwrap();
    assert_eq!(log.matches("SIGHUP: configuration reloaded").count(), 10, "{log}");
    assert_eq!(
        log.matches("1 flows unchanged, 0 started, 1 changed (they restart once what they read is acknowledged), 1 removed").count(),
        5
    );
    assert_eq!(log.matches("1 flows unchanged, 1 started, 1 changed").count(), 5);
    for (n, w) in ["a", "b", "c"].iter().zip(w.iter()) {
        assert_exactly_once(&w.written, &delivered(&out(n)));
    }
}

#[test]
fn top_shows_each_flow_live_under_tmux_and_once_for_scripts() {
    let mut a = Agent::new("*.log", "", "http: {listen: '127.0.0.1:0'}");
    let mut w = Writer::new(&a.logs().join("top.log"), "t");
    w.write(200);
    a.start();
    let base = endpoint_of(&a);
    a.wait_for(&w.written, Duration::from_secs(30));
    // one table for scripts
    let once = Command::new(env!("CARGO_BIN_EXE_logferry")).args(["top", "--once", "--interval", "0.3", "--url", &base]).output().unwrap();
    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
    let table = String::from_utf8(once.stdout).unwrap();
    assert!(table.contains("FLOW") && table.contains("LINES/S") && table.contains("BEHIND"), "{table}");
    let row = table.lines().find(|l| l.starts_with("test ")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("File:"), "{row}");
    // per-file lines are for files behind: a caught-up file costs nothing to publish (many
    // idle files would make every publish as long as the list)
    assert!(!table.contains(&a.logs().join("top.log").display().to_string()), "no line for a caught-up file: {table}");
    // the live view in a terminal
    let session = format!("logferry-top-{}", std::process::id());
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("tmux is installed by scripts/test.sh");
    let top = format!("{} top --interval 0.3 --url {base}", env!("CARGO_BIN_EXE_logferry"));
    assert!(tmux(&["new-session", "-d", "-s", &session, "-x", "200", "-y", "40", &top]).status.success());
    w.write(300);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut screen = String::new();
    while Instant::now() < deadline {
        screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned();
        if screen.contains("LINES/S") && screen.contains("Ctrl-C to quit") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux(&["send-keys", "-t", &session, "C-c"]);
    std::thread::sleep(Duration::from_millis(300));
    let still_running = tmux(&["has-session", "-t", &session]).status.success();
    tmux(&["kill-session", "-t", &session]);
    assert!(screen.contains("LINES/S") && screen.lines().any(|l| l.starts_with("test ")), "{screen}");
    assert!(!still_running, "Ctrl-C ends the live view");
    assert_eq!(a.stop(), 0);
    // without an agent: a clear error
    let none = Command::new(env!("CARGO_BIN_EXE_logferry")).args(["top", "--once", "--url", "http://127.0.0.1:9"]).output().unwrap();
    assert_eq!(none.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("cannot connect to http://127.0.0.1:9"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
}

#[test]
fn the_configuration_sets_the_log_level_and_json_lines_and_rust_log_wins() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("app.log"), "x\n").unwrap();
    let cfg = d.path().join("logferry.yaml");
    let yaml = |level: &str| {
        format!(
            "checkpoint_file: {}\nlog_format: json\nlog_level: {level}\nflows:\n  - id: j\n    path: {}\n    sink: {{type: file, path: {}}}\n",
            d.path().join("cp.db").display(),
            d.path().join("app.log").display(),
            d.path().join("out.log").display()
        )
    };
    let run = |rust_log: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_logferry"));
        c.args(["run", "--config", cfg.to_str().unwrap()]).env_remove("RUST_LOG").stdout(Stdio::null()).stderr(Stdio::piped());
        if let Some(l) = rust_log {
            c.env("RUST_LOG", l);
        }
        let child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(800));
        unsafe_kill(child.id(), "TERM");
        String::from_utf8(child.wait_with_output().unwrap().stderr).unwrap()
    };
    std::fs::write(&cfg, yaml("info")).unwrap();
    let log = run(None);
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(
        lines.iter().any(|l| l["level"] == "INFO" && l["fields"]["message"].as_str().is_some_and(|m| m.contains("running 1 flow"))),
        "{log}"
    );
    std::fs::write(&cfg, yaml("warn")).unwrap();
    assert!(!run(None).contains("\"INFO\""), "warn hides info");
    assert!(run(Some("info")).contains("\"INFO\""), "RUST_LOG wins over the configuration");
}

#[test]
fn the_dashboards_use_only_metrics_the_agent_publishes() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/dashboards");
    let cw: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("cloudwatch-dashboard.json")).unwrap()).unwrap();
    let text = cw.to_string();
    let names: Vec<&str> = text.split("MetricName=\\\"").skip(1).map(|s| s.split('\\').next().unwrap()).collect();
    assert!(names.len() >= 10, "{names:?}");
    for n in &names {
        assert!(logferry::ops::cloudwatch::METRIC_NAMES.contains(n), "the CloudWatch dashboard uses {n}, which is not published");
    }
    let grafana: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap()).unwrap();
    let m = logferry::ops::metrics::Metrics::new(&[("f".into(), "DeliveryStream:s".into())]);
    m.flows()[0].record_error("ThrottlingException", "x", 1, logferry::ops::metrics::ErrorKind::Throttled);
    let exposition = m.prometheus_text();
    let mut used = 0;
    for panel in grafana["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("logferry_")) {
                used += 1;
                let series = exposition.lines().any(|l| l.split(['{', ' ']).next() == Some(word));
                assert!(series, "the Grafana dashboard uses {word}, which /metrics does not have");
            }
        }
    }
    assert!(used >= 10);
}

#[test]
fn a_reload_that_replaces_a_stalled_sink_does_not_wait_for_ever() {
    let mut a = Agent::new("*.log", "", "");
    // the sink is a FIFO nobody reads: nothing it is sent is ever acknowledged
    std::fs::create_dir_all(a.out.parent().unwrap()).unwrap();
    assert!(Command::new("mkfifo").arg(&a.out).status().unwrap().success());
    let yaml = std::fs::read_to_string(&a.config).unwrap().replace("shutdown_timeout_ms: 5000", "shutdown_timeout_ms: 2000");
    std::fs::write(&a.config, &yaml).unwrap();
    let mut w = Writer::new(&a.logs().join("a.log"), "r");
    w.write(500);
    a.start();
    wait_for_log(&a.stderr_log, "running 1 flow", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    // the operator points the flow at a file that works
    let fixed = a.dir.path().join("out/fixed.log");
    std::fs::write(&a.config, yaml.replace(&a.out.display().to_string(), &fixed.display().to_string())).unwrap();
    unsafe_kill(a.pid(), "HUP");
    w.write(500);
    a.out = fixed;
    a.wait_for(&w.written, Duration::from_secs(30));
    let log = a.stderr();
    assert!(log.contains("were not acknowledged within the shutdown timeout") && log.contains("flow started (reload)"), "{log}");
    assert_eq!(a.stop(), 0);
    a.assert_exactly_once(&w.written);
}
