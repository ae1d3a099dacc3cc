//! The Firehose sink against an endpoint that fails on purpose, as no emulator does: per-record
//! throttling on a share of records, 500s, slow answers and connection resets. It speaks
//! Firehose's real wire protocol (awsJson1.1 PutRecordBatch) and records what it accepted.

mod support;

use base64::Engine as _;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::http;
use support::*;

#[derive(Default)]
struct Seen {
    accepted: Vec<String>,
    requests: usize,
    throttled_records: usize,
    errors_500: usize,
    slow: usize,
    resets: usize,
}

/// Serves PutRecordBatch on a loopback port, failing on purpose.
fn faulty_firehose() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let json = [("Content-Type", "application/x-amz-json-1.1")];
    let endpoint = http::serve(move |req| {
        let n = {
            let mut g = s.lock().unwrap();
            g.requests += 1;
            g.requests
        };
        // the faults, by request number
        if n % 11 == 0 {
            s.lock().unwrap().resets += 1;
            return None; // connection closed without an answer
        }
        if n % 13 == 0 {
            s.lock().unwrap().slow += 1;
            std::thread::sleep(Duration::from_millis(2500)); // beyond the read timeout
            return Some(http::response("500 Internal Server Error", &[], b""));
        }
        if n % 7 == 0 {
            s.lock().unwrap().errors_500 += 1;
            return Some(http::response(
                "500 Internal Server Error",
                &json,
                br#"{"__type":"ServiceUnavailableException","message":"try again"}"#,
            ));
        }
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let mut responses = Vec::new();
        let mut failed = 0;
        let mut g = s.lock().unwrap();
        for (i, r) in body["Records"].as_array().unwrap().iter().enumerate() {
            // throttle about a quarter of the records, deterministically
            if (n * 31 + i * 17) % 4 == 0 {
                failed += 1;
                g.throttled_records += 1;
                responses.push(serde_json::json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}));
            } else {
                let data = base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().unwrap()).unwrap();
                g.accepted.extend(String::from_utf8_lossy(&data).lines().map(String::from));
                responses.push(serde_json::json!({"RecordId": format!("{n}-{i}")}));
            }
        }
        let out = serde_json::json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": responses}).to_string();
        Some(http::response("200 OK", &json, out.as_bytes()))
    });
    (endpoint, seen)
}

#[test]
fn throttling_500s_slow_answers_and_resets_with_four_requests_in_flight_lose_nothing_and_resend_only_what_failed() {
    let (endpoint, seen) = faulty_firehose();
    let d = tempfile::tempdir().unwrap();
    // native format: four requests in flight at once, acknowledgements still in order
    let cfg = d.path().join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\naws: {{access_key_id: test, secret_access_key: test, connect_timeout_ms: 1000, read_timeout_ms: 1000}}\nflows:\n  - id: faults\n    path: {}\n    buffer: {{max_records: 100, max_age_ms: 1000}}\n    retry: {{initial_backoff_ms: 20, max_backoff_ms: 200}}\n    sink: {{type: firehose, stream: s, region: us-east-1, endpoint: '{endpoint}', max_in_flight_requests: 4}}\n",
            d.path().join("checkpoints.db").display(),
            d.path().join("app.log*").display()
        ),
    )
    .unwrap();
    let path = d.path().join("app.log");
    let mut w = Writer::new(&path, "f");
    w.write(1500);
    let err = d.path().join("agent.err");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    w.write(500);
    std::fs::rename(&path, d.path().join("app.log.1")).unwrap();
    w.write(500);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = seen.lock().unwrap().accepted.len();
        if n >= w.written.len() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let rss = std::fs::read_to_string(format!("/proc/{}/status", agent.id())).unwrap();
    let rss: u64 =
        rss.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap();
    unsafe_kill(agent.id(), "TERM");
    let status = wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&err).unwrap());
    let g = seen.lock().unwrap();
    eprintln!(
        "{} requests, {} records throttled, {} 500s, {} slow answers, {} resets; {} lines accepted for {} written; peak RSS {rss} KiB",
        g.requests,
        g.throttled_records,
        g.errors_500,
        g.slow,
        g.resets,
        g.accepted.len(),
        w.written.len()
    );
    assert!(g.throttled_records > 50 && g.errors_500 > 0 && g.slow > 0 && g.resets > 0, "every fault happened");
    // accepted exactly once: a record the endpoint took was never sent again
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in &g.accepted {
        *counts.entry(l).or_default() += 1;
    }
    assert!(counts.values().all(|&c| c == 1), "a record that succeeded was sent again");
    assert_exactly_once(&w.written, &g.accepted);
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
}

/// Answers every call as AWS does for credentials it does not know.
fn rejecting_firehose() -> String {
    http::serve(|_| {
        let body = br#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#;
        Some(http::response("400 Bad Request", &[("Content-Type", "application/x-amz-json-1.1")], body))
    })
}

#[test]
fn bad_credentials_are_reported_once_with_the_fix_and_the_records_wait() {
    let endpoint = rejecting_firehose();
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"checkpointFile": "{}", "cloudwatch.emitMetrics": false, "firehose.endpoint": "{endpoint}",
                "awsAccessKeyId": "AKIAEXAMPLE", "awsSecretAccessKey": "wJalrXUtnFEMI-never-logged", "shutdownTimeoutMillis": 1000,
                "flows": [{{"filePattern": "{}", "deliveryStream": "s", "initialPosition": "START_OF_FILE",
                            "maxBufferAgeMillis": 1000, "retryInitialBackoffMillis": 20, "retryMaxBackoffMillis": 100}}]}}"#,
            d.path().join("checkpoints.db").display(),
            d.path().join("app.log").display()
        ),
    )
    .unwrap();
    let mut w = Writer::new(&d.path().join("app.log"), "c");
    w.write(10);
    let err = d.path().join("agent.err");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    unsafe_kill(agent.id(), "TERM");
    let status = wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops");
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(&err).unwrap();
    assert_eq!(log.matches("UnrecognizedClientException").count(), 1, "logged once, not per attempt: {log}");
    assert!(log.contains("the credentials are not valid") && log.contains("stream=s"), "{log}");
    assert!(!log.contains("wJalrXUtnFEMI-never-logged"), "the secret never appears: {log}");
    assert!(log.contains("were not acknowledged within the shutdown timeout") || log.contains("read again at the next start"), "{log}");
}
