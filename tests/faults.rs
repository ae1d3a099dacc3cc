//! The AWS sinks against an endpoint that fails on purpose, as no emulator does: per-record
//! throttling on a share of records, 500s, slow answers, connection resets, and records rejected
//! as invalid. It speaks the services' real wire protocol (awsJson1.1 PutRecordBatch and
//! PutRecords) and records what it accepted.

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
    /// Service records accepted (each may carry several lines).
    accepted_records: usize,
    /// Requests throttled whole.
    throttled_requests: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Service {
    Firehose,
    Kinesis,
}

/// A line the services reject for good, per record in their answer (`InvalidArgumentException`).
const POISON: &str = "POISON";

/// Serves PutRecordBatch (Firehose) or PutRecords (Kinesis) on a loopback port, failing on
/// purpose: faults by request number, throttling by record, and poison records rejected.
fn faulty(service: Service) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    (http::serve(faulty_handler(service, seen.clone())), seen)
}

/// The answers of [`faulty`], recorded in `s`.
fn faulty_handler(service: Service, s: Arc<Mutex<Seen>>) -> impl Fn(&http::Request) -> Option<Vec<u8>> + Send + Sync + 'static {
    let json = [("Content-Type", "application/x-amz-json-1.1")];
    move |req| {
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
        let records: Vec<Vec<u8>> = body["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().unwrap()).unwrap())
            .collect();
        let poisoned = |data: &[u8]| String::from_utf8_lossy(data).contains(POISON);
        let mut g = s.lock().unwrap();
        let mut responses = Vec::new();
        let mut failed = 0;
        for (i, data) in records.iter().enumerate() {
            // throttle about a quarter of the records, deterministically
            if (n * 31 + i * 17) % 4 == 0 {
                failed += 1;
                g.throttled_records += 1;
                responses.push(match service {
                    Service::Firehose => serde_json::json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}),
                    Service::Kinesis => serde_json::json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard shardId-000000000001."}),
                });
            } else if poisoned(data) {
                failed += 1;
                responses.push(serde_json::json!({"ErrorCode": "InvalidArgumentException", "ErrorMessage": "Record is not valid."}));
            } else {
                g.accepted.extend(String::from_utf8_lossy(data).lines().map(String::from));
                g.accepted_records += 1;
                responses.push(match service {
                    Service::Firehose => serde_json::json!({"RecordId": format!("{n}-{i}")}),
                    Service::Kinesis => serde_json::json!({"SequenceNumber": format!("{n}{i:04}"), "ShardId": "shardId-000000000000"}),
                });
            }
        }
        let out = match service {
            Service::Firehose => serde_json::json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": responses}),
            Service::Kinesis => serde_json::json!({"FailedRecordCount": failed, "Records": responses}),
        };
        Some(http::response("200 OK", &json, out.to_string().as_bytes()))
    }
}

/// Runs the agent on a native configuration with one flow from `dir/app.log*` to `service` at
/// `endpoint`, four requests in flight and short backoffs.
fn start(service: Service, endpoint: &str, dir: &std::path::Path) -> std::process::Child {
    start_with(service, endpoint, dir, "")
}

/// As [`start`], with `flow_extra` (YAML lines) added to the flow.
fn start_with(service: Service, endpoint: &str, dir: &std::path::Path, flow_extra: &str) -> std::process::Child {
    run_agent(&write_config(service, endpoint, dir, flow_extra), &dir.join("agent.err"))
}

/// Writes the configuration [`start_with`] runs and returns its path.
fn write_config(service: Service, endpoint: &str, dir: &std::path::Path, flow_extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("logferry.yaml");
    let sink = match service {
        Service::Firehose => "firehose",
        Service::Kinesis => "kinesis",
    };
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\naws: {{access_key_id: test, secret_access_key: test, connect_timeout_ms: 1000, read_timeout_ms: 1000}}\nflows:\n  - id: faults\n    path: {}\n    buffer: {{max_records: 100, max_age_ms: 1000}}\n{flow_extra}    retry: {{initial_backoff_ms: 20, max_backoff_ms: 200}}\n    sink: {{type: {sink}, stream: s, region: us-east-1, endpoint: '{endpoint}', max_in_flight_requests: 4}}\n",
            dir.join("checkpoints.db").display(),
            dir.join("app.log*").display()
        ),
    )
    .unwrap();
    cfg
}

/// Waits until `n` lines were accepted, or 120 s.
fn wait_accepted(seen: &Mutex<Seen>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().unwrap().accepted.len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn throttling_500s_slow_answers_and_resets_with_four_requests_in_flight_lose_nothing_and_resend_only_what_failed() {
    for service in [Service::Firehose, Service::Kinesis] {
        let (endpoint, seen) = faulty(service);
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("app.log");
        let mut w = Writer::new(&path, "f");
        w.write(1500);
        let mut agent = start(service, &endpoint, d.path());
        w.write(500);
        std::fs::rename(&path, d.path().join("app.log.1")).unwrap();
        w.write(500);
        wait_accepted(&seen, w.written.len());
        let rss = std::fs::read_to_string(format!("/proc/{}/status", agent.id())).unwrap();
        let rss: u64 =
            rss.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap();
        unsafe_kill(agent.id(), "TERM");
        let status = wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops");
        assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(d.path().join("agent.err")).unwrap());
        let g = seen.lock().unwrap();
        eprintln!(
            "{service:?}: {} requests, {} records throttled, {} 500s, {} slow answers, {} resets; {} lines accepted for {} written; peak RSS {rss} KiB",
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
        assert!(counts.values().all(|&c| c == 1), "{service:?}: a record that succeeded was sent again");
        assert_exactly_once(&w.written, &g.accepted);
        assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
    }
}

#[test]
fn records_the_service_rejects_go_to_the_dead_letter_file_with_their_origin_and_the_flow_moves_on() {
    for service in [Service::Firehose, Service::Kinesis] {
        let (endpoint, seen) = faulty(service);
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("app.log");
        let mut w = Writer::new(&path, "d");
        let mut poison_offsets = Vec::new();
        for k in 0..3 {
            w.write(200);
            let offset = std::fs::metadata(&path).unwrap().len();
            let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
            std::io::Write::write_all(&mut f, format!("{POISON} number {k}\n").as_bytes()).unwrap();
            poison_offsets.push(offset);
        }
        w.write(200);
        let mut agent = start(service, &endpoint, d.path());
        wait_accepted(&seen, w.written.len());
        // the dead-letter file is written before the records are acknowledged
        let dead_letter = d.path().join("dead-letter/faults.jsonl");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&dead_letter).map_or(0, |t| t.lines().count()) < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        unsafe_kill(agent.id(), "TERM");
        wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops");
        let log = std::fs::read_to_string(d.path().join("agent.err")).unwrap();
        assert_exactly_once(&w.written, &seen.lock().unwrap().accepted);
        let entries: Vec<serde_json::Value> = std::fs::read_to_string(&dead_letter)
            .unwrap_or_else(|e| panic!("{service:?}: no dead-letter file: {e}\n{log}"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(entries.len(), 3, "{service:?}: {entries:?}");
        let mut by_offset: Vec<&serde_json::Value> = entries.iter().collect();
        by_offset.sort_by_key(|e| e["offset"].as_u64());
        for (k, e) in by_offset.iter().enumerate() {
            assert_eq!(e["record"], format!("{POISON} number {k}\n"));
            assert_eq!(e["offset"], poison_offsets[k], "the offset where the line starts in its file");
            assert_eq!(e["file"], path.display().to_string());
            assert_eq!(e["flow"], "faults");
            assert_eq!(e["error_code"], "InvalidArgumentException");
        }
        assert!(log.contains("dead-letter file") && log.contains("rejects the record as invalid"), "{log}");
        // acknowledged: a restart sends nothing again
        let before = seen.lock().unwrap().requests;
        let mut agent = start(service, &endpoint, d.path());
        std::thread::sleep(Duration::from_secs(3));
        unsafe_kill(agent.id(), "TERM");
        let status = wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops");
        let log = std::fs::read_to_string(d.path().join("agent.err")).unwrap();
        assert!(status.success() && log.matches("running 1 flow").count() == 2, "the second agent ran: {log}");
        assert_eq!(seen.lock().unwrap().requests, before, "{service:?}: records were sent again after a restart");
        assert_eq!(std::fs::read_to_string(&dead_letter).unwrap().lines().count(), 3);
    }
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
    let mut agent = run_agent(&cfg, &err);
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

#[test]
fn without_any_credentials_the_agent_starts_at_once_says_what_to_set_and_keeps_the_records() {
    // an instance metadata endpoint that accepts connections and never answers: the worst case
    // of a host outside EC2 whose network swallows 169.254.169.254
    let imds = http::silent();
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\nshutdown_timeout_ms: 500\nflows:\n  - id: nocred\n    path: {}\n    buffer: {{max_age_ms: 100}}\n    sink: {{type: firehose, stream: s, region: us-east-1, endpoint: 'http://127.0.0.1:9'}}\n",
            d.path().join("checkpoints.db").display(),
            d.path().join("app.log").display()
        ),
    )
    .unwrap();
    let mut w = Writer::new(&d.path().join("app.log"), "n");
    w.write(5);
    let err = d.path().join("agent.err");
    // nothing from the test's own environment: no keys, no profile, no web identity
    let mut agent = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", d.path())
        .env("RUST_LOG", "info")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let log = wait_for_log(&err, "NoCredentials", Duration::from_secs(30));
    assert!(log.contains("no credentials found") && log.contains("AWS_ACCESS_KEY_ID"), "says what to set: {log}");
    assert_eq!(log.lines().filter(|l| l.contains("ERROR")).count(), 1, "one error, one line: {log}");
    unsafe_kill(agent.id(), "TERM");
    let status = wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops");
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(&err).unwrap();
    assert!(log.contains("read again at the next start"), "nothing acknowledged, nothing lost: {log}");
}

#[test]
fn firehose_aggregation_packs_converted_records_whole_into_fewer_records() {
    let (endpoint, seen) = faulty(Service::Firehose);
    let d = tempfile::tempdir().unwrap();
    let mut w = Writer::new(&d.path().join("app.log"), "a");
    w.write(3000);
    // the parser sees one line at a time: packing happens after it
    let extra = "    aggregate_record_bytes: 4096\n    processors: [{type: regex, pattern: '^(?<line>.*)$'}]\n";
    let mut agent = start_with(Service::Firehose, &endpoint, d.path(), extra);
    wait_accepted(&seen, w.written.len());
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops");
    let g = seen.lock().unwrap();
    let lines: Vec<String> = g
        .accepted
        .iter()
        .map(|j| serde_json::from_str::<serde_json::Value>(j).unwrap_or_else(|e| panic!("{e}: {j}"))["line"].as_str().unwrap().to_string())
        .collect();
    assert_exactly_once(&w.written, &lines);
    let bytes: usize = g.accepted.iter().map(|j| j.len() + 1).sum();
    assert!(
        g.accepted_records <= bytes / 4096 * 2 + 10 && g.accepted_records * 20 < w.written.len(),
        "{} Firehose records for {} lines ({bytes} bytes)",
        g.accepted_records,
        w.written.len()
    );
}

#[test]
fn a_stream_with_raised_limits_takes_a_3_mb_record_whole() {
    let (endpoint, seen) = faulty(Service::Kinesis);
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("app.log");
    let big: String = (0..3_000_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    std::fs::write(&path, format!("small one\n{big}\nsmall two\n")).unwrap();
    let cfg = d.path().join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\naws: {{access_key_id: test, secret_access_key: test}}\nflows:\n  - id: big\n    path: {}\n    max_line_bytes: 8388608\n    buffer: {{max_age_ms: 200, max_bytes: 10485760}}\n    retry: {{initial_backoff_ms: 20, max_backoff_ms: 200}}\n    sink: {{type: kinesis, stream: s, region: us-east-1, endpoint: '{endpoint}', max_record_bytes: 10485760, max_request_bytes: 10485760}}\n",
            d.path().join("checkpoints.db").display(),
            path.display()
        ),
    )
    .unwrap();
    let mut agent = run_agent(&cfg, &d.path().join("agent.err"));
    wait_accepted(&seen, 3);
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops");
    let g = seen.lock().unwrap();
    assert_eq!(g.accepted.len(), 3);
    assert!(g.accepted.contains(&big), "the 3 MB line arrived whole, not truncated at 1 MiB");
}

#[test]
fn over_tls_an_unknown_authority_is_refused_with_the_reason_and_a_trusted_one_gets_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = http::test_certificates(dir.path(), "logferry test authority");
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (other_ca, _, _) = http::test_certificates(&other, "another authority");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let endpoint = http::serve_tls(&cert, &key, faulty_handler(Service::Firehose, seen.clone()));
    let mut w = Writer::new(&dir.path().join("app.log"), "tls");
    w.write(400);
    let expected = w.written.clone();
    let cfg = write_config(Service::Firehose, &endpoint, dir.path(), "");
    let log = dir.path().join("agent.err");
    // the agent trusts exactly the authorities in `trusted`
    let start_trusting =
        |trusted: &std::path::Path| agent_command(&cfg, &log).env("SSL_CERT_FILE", trusted).env_remove("SSL_CERT_DIR").spawn().unwrap();

    // another authority only: the endpoint's certificate is not trusted
    let mut agent = start_trusting(&other_ca);
    let text = wait_for_log(&log, "SSL_CERT_FILE", Duration::from_secs(30));
    let line = text.lines().find(|l| l.contains("SSL_CERT_FILE")).unwrap_or_else(|| panic!("no TLS error in the log:\n{text}"));
    assert!(line.contains("PutRecordBatch") && line.contains("TLS: handshake failed: invalid peer certificate: UnknownIssuer"), "{line}");
    assert!(!line.contains("DispatchFailure("), "no debug dump: {line}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(seen.lock().unwrap().accepted.is_empty(), "nothing is sent over an untrusted connection");
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(30)).expect("the agent stops");

    // the endpoint's authority trusted: everything arrives once, throttled records re-sent
    let mut agent = start_trusting(&ca);
    wait_accepted(&seen, expected.len());
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(30)).expect("the agent stops");
    let g = seen.lock().unwrap();
    assert!(g.throttled_records > 0, "the endpoint throttled records");
    assert_exactly_once(&expected, &g.accepted);
}

#[test]
fn the_dead_letter_file_is_rotated_at_its_cap_and_a_flow_dead_lettering_many_records_is_unhealthy() {
    let (endpoint, seen) = faulty(Service::Firehose);
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("app.log");
    let mut w = Writer::new(&path, "d");
    let padding = "p".repeat(600);
    let mut poisoned = 0;
    for k in 0..400 {
        w.write(5);
        append_line(&path, &format!("{POISON} number {k} {padding}"));
        poisoned += 1;
    }
    let cfg = d.path().join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\nhttp: {{listen: '127.0.0.1:0', unhealthy_after_secs: 60, unhealthy_dead_letters: 50}}\naws: {{access_key_id: test, secret_access_key: test, connect_timeout_ms: 1000, read_timeout_ms: 1000}}\nflows:\n  - id: faults\n    path: {}\n    buffer: {{max_records: 20, max_age_ms: 200}}\n    retry: {{initial_backoff_ms: 20, max_backoff_ms: 200}}\n    sink: {{type: firehose, stream: s, region: us-east-1, endpoint: '{endpoint}', max_in_flight_requests: 4, dead_letter_max_bytes: 65536}}\n",
            d.path().join("checkpoints.db").display(),
            path.display()
        ),
    )
    .unwrap();
    let err = d.path().join("agent.err");
    let mut agent = run_agent(&cfg, &err);
    let base = endpoint_in(&err);
    wait_accepted(&seen, w.written.len());
    let (status, body) = http::get(&base, "/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("flow faults") && body.contains("dead-lettered"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric_sum(&base, "logferry_records_dead_lettered_total") < poisoned as f64 {
        assert!(Instant::now() < deadline, "{} of {poisoned} dead-lettered", metric_sum(&base, "logferry_records_dead_lettered_total"));
        std::thread::sleep(Duration::from_millis(200));
    }
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops");
    assert_exactly_once(&w.written, &seen.lock().unwrap().accepted);
    let dead_letter = d.path().join("dead-letter/faults.jsonl");
    let rotated = d.path().join("dead-letter/faults.jsonl.1");
    let log = std::fs::read_to_string(&err).unwrap();
    assert!(log.contains("reached its cap of 65536 bytes"), "{log}");
    // one write holds at most one batch's letters (20 records of about 900 bytes)
    for f in [&dead_letter, &rotated] {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 65536 + 20 * 1024, "{} is {len} bytes", f.display());
    }
    // the newest letters are kept, whole lines each
    let last: Vec<serde_json::Value> =
        std::fs::read_to_string(&dead_letter).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        last.iter().any(|e| e["record"].as_str().unwrap().starts_with(&format!("{POISON} number 399 "))),
        "the last letter is in the current file"
    );
}

fn append_line(path: &std::path::Path, line: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()).unwrap();
}

#[test]
fn credentials_rotated_at_sighup_are_applied_and_the_waiting_records_go() {
    // accepts requests signed with the new key only, as AWS does once the old one is revoked
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = accepted.clone();
    let endpoint = http::serve(move |req| {
        let json = [("Content-Type", "application/x-amz-json-1.1")];
        if !req.header("authorization").is_some_and(|a| a.contains("Credential=AKIANEWKEY/")) {
            let body = br#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#;
            return Some(http::response("400 Bad Request", &json, body));
        }
        Some(accept_every_record(&req.body, &seen, false))
    });
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("logferry.yaml");
    let config = |key: &str, secret: &str| {
        format!(
            "checkpoint_file: {}\nshutdown_timeout_ms: 1000\naws: {{access_key_id: {key}, secret_access_key: {secret}}}\nflows:\n  - id: r\n    path: {}\n    buffer: {{max_age_ms: 100}}\n    retry: {{initial_backoff_ms: 50, max_backoff_ms: 200}}\n    sink: {{type: firehose, stream: s, region: us-east-1, endpoint: '{endpoint}'}}\n",
            d.path().join("checkpoints.db").display(),
            d.path().join("app.log").display()
        )
    };
    std::fs::write(&cfg, config("AKIAOLDKEY", "old-secret-never-logged")).unwrap();
    let mut w = Writer::new(&d.path().join("app.log"), "k");
    w.write(50);
    let err = d.path().join("agent.err");
    let mut agent = run_agent(&cfg, &err);
    wait_for_log(&err, "credentials are not valid", Duration::from_secs(20));
    assert!(accepted.lock().unwrap().is_empty());
    std::fs::write(&cfg, config("AKIANEWKEY", "new-secret-never-logged")).unwrap();
    unsafe_kill(agent.id(), "HUP");
    w.write(50);
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.lock().unwrap().len() < w.written.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops").success());
    let log = std::fs::read_to_string(&err).unwrap();
    assert!(log.contains("the AWS settings changed (credentials included)"), "{log}");
    assert!(!log.contains("secret-never-logged"), "{log}");
    assert_exactly_once(&w.written, &accepted.lock().unwrap());
}

#[test]
fn a_secret_key_changed_at_sighup_is_noticed_though_it_never_prints() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("logferry.yaml");
    let endpoint = rejecting_firehose();
    let config = |secret: &str| {
        format!(
            "checkpoint_file: {}\naws: {{access_key_id: AKIAEXAMPLE, secret_access_key: {secret}}}\nflows:\n  - id: r\n    path: {}\n    sink: {{type: firehose, stream: s, region: us-east-1, endpoint: '{endpoint}'}}\n",
            d.path().join("checkpoints.db").display(),
            d.path().join("app.log").display()
        )
    };
    std::fs::write(&cfg, config("old-secret-never-logged")).unwrap();
    let err = d.path().join("agent.err");
    let mut agent = run_agent(&cfg, &err);
    wait_for_log(&err, "running 1 flow", Duration::from_secs(20));
    // the same configuration again: nothing to report
    unsafe_kill(agent.id(), "HUP");
    wait_for_log(&err, "configuration reloaded", Duration::from_secs(20));
    std::fs::write(&cfg, config("new-secret-never-logged")).unwrap();
    unsafe_kill(agent.id(), "HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&err).unwrap().matches("configuration reloaded").count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops").success());
    let log = std::fs::read_to_string(&err).unwrap();
    assert_eq!(log.matches("the AWS settings changed (credentials included)").count(), 1, "only the real change: {log}");
    assert!(!log.contains("secret-never-logged"), "{log}");
}

/// Refuses every request whole as invalid while `refusing` is set (as a stream that takes no
/// direct PUT answers), and accepts every record once it is not; returns the accepted lines.
fn refusing(service: Service, refusing: Arc<std::sync::atomic::AtomicBool>) -> (String, Arc<Mutex<Vec<String>>>) {
    let refusal = match service {
        Service::Firehose => {
            &br#"{"__type":"InvalidArgumentException","message":"This operation is not permitted on KinesisStreamAsSource delivery stream type."}"#[..]
        }
        Service::Kinesis => &br#"{"__type":"ValidationException","message":"1 validation error detected: Value at 'streamName' failed to satisfy constraint"}"#[..],
    };
    switchable(service, refusing, "400 Bad Request", refusal)
}

/// Answers every request with `status` and `refusal` while `off` is set, and accepts every
/// record once it is not; returns the accepted lines.
fn switchable(
    service: Service,
    off: Arc<std::sync::atomic::AtomicBool>,
    status: &'static str,
    refusal: &'static [u8],
) -> (String, Arc<Mutex<Vec<String>>>) {
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = accepted.clone();
    let endpoint = http::serve(move |req| {
        let json = [("Content-Type", "application/x-amz-json-1.1")];
        if off.load(std::sync::atomic::Ordering::SeqCst) {
            return Some(http::response(status, &json, refusal));
        }
        Some(accept_every_record(&req.body, &seen, service == Service::Kinesis))
    });
    (endpoint, accepted)
}

/// A Firehose endpoint that answers 503 to every request while the returned flag is set.
fn firehose_down() -> (String, Arc<Mutex<Vec<String>>>, Arc<std::sync::atomic::AtomicBool>) {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let body = &br#"{"__type":"ServiceUnavailableException","message":"Service unavailable."}"#[..];
    let (endpoint, accepted) = switchable(Service::Firehose, down.clone(), "503 Service Unavailable", body);
    (endpoint, accepted, down)
}

/// A Firehose flow over `dir/app.log` only (a rotated file leaves the glob) with `extra` flow
/// lines, short backoffs, and the endpoint on.
fn single_file_config(dir: &std::path::Path, endpoint: &str, top: &str, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}
{top}http: {{listen: '127.0.0.1:0'}}
aws: {{access_key_id: test, secret_access_key: test, connect_timeout_ms: 1000, read_timeout_ms: 1000}}
flows:
  - id: held
    path: {}
    initial_position: start_of_file
    buffer: {{max_records: 500, max_age_ms: 200}}
{extra}    retry: {{initial_backoff_ms: 20, max_backoff_ms: 200}}
    sink: {{type: firehose, stream: s, region: us-east-1, endpoint: '{endpoint}'}}
",
            dir.join("checkpoints.db").display(),
            dir.join("app.log").display()
        ),
    )
    .unwrap();
    cfg
}

/// A flow's entry in the agent's `/status`.
fn flow_status(base: &str) -> serde_json::Value {
    let (status, body) = http::get(base, "/status");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["flows"][0].clone()
}

/// Polls the flow's `/status` until `key` satisfies `ok`, or `timeout`; the last value.
fn wait_status(base: &str, key: &str, ok: impl Fn(i64) -> bool, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let v = flow_status(base)[key].as_i64().unwrap_or(-1);
        if ok(v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_file_rotated_away_and_deleted_while_the_destination_is_down_is_shipped_when_it_comes_back() {
    let (endpoint, accepted, down) = firehose_down();
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("app.log");
    let mut w = Writer::new(&path, "held");
    w.write(2000);
    // a small budget: most of the file is still unread when it is deleted
    let cfg = single_file_config(
        d.path(),
        &endpoint,
        "max_bytes_in_flight: 65536
",
        "",
    );
    let err = d.path().join("agent.err");
    let mut agent = run_agent(&cfg, &err);
    let base = endpoint_in(&err);
    wait_status(&base, "bytes_behind", |b| b > 0, Duration::from_secs(20));
    let rotated = d.path().join("app.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    w.write(300);
    std::fs::remove_file(&rotated).unwrap();
    // the deleted file's backlog is told while it waits
    let held = wait_status(&base, "deleted_bytes_behind", |b| b > 100_000, Duration::from_secs(30));
    assert!(held > 100_000, "{}", flow_status(&base));
    assert_eq!(flow_status(&base)["deleted_files_behind"], 1);
    assert!(metric_sum(&base, "logferry_deleted_bytes_behind") > 100_000.0);
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted.lock().unwrap().len() < w.written.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(wait_status(&base, "deleted_bytes_behind", |b| b == 0, Duration::from_secs(30)), 0);
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops").success());
    let log = std::fs::read_to_string(&err).unwrap();
    assert!(!log.contains("abandons") && !log.contains("lines from offset"), "{log}");
    assert_exactly_once(&w.written, &accepted.lock().unwrap());
}

#[test]
fn past_the_cap_the_oldest_deleted_file_is_let_go_naming_the_lines_lost_and_a_stop_says_what_it_abandons() {
    let (endpoint, accepted, down) = firehose_down();
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("app.log");
    let cfg = single_file_config(
        d.path(),
        &endpoint,
        "max_bytes_in_flight: 65536
",
        "    deleted_files_max_bytes: 1048576
",
    );
    let err = d.path().join("agent.err");
    let mut agent = run_agent(&cfg, &err);
    let base = endpoint_in(&err);
    // three generations, each about 0.7 MB, rotated away and deleted while nothing is accepted
    let mut w = Writer::new(&path, "cap");
    let rotated = d.path().join("app.log.1");
    for _ in 0..3 {
        w.write(10_000);
        wait_status(&base, "bytes_behind", |b| b > 0, Duration::from_secs(20));
        std::fs::rename(&path, &rotated).unwrap();
        std::fs::remove_file(&rotated).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    }
    w.write(100);
    let log = wait_for_log(&err, "lines from offset", Duration::from_secs(30));
    let first = log.lines().find(|l| l.contains("lines from offset")).unwrap_or_else(|| panic!("{log}"));
    assert!(first.contains("ERROR") && first.contains("deleted_files_max_bytes (1048576)") && first.contains("are lost"), "{first}");
    let lost = metric_sum(&base, "logferry_lines_lost_total");
    assert!(lost > 1000.0, "{lost} lines counted lost");
    assert!(wait_status(&base, "deleted_bytes_behind", |b| b > 0, Duration::from_secs(10)) <= 1_048_576);
    // a stop while the destination is still down abandons the rest of the deleted file it holds
    std::thread::sleep(Duration::from_millis(500));
    let lost = metric_sum(&base, "logferry_lines_lost_total") as usize;
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops").success());
    let log = std::fs::read_to_string(&err).unwrap();
    let stop = log.lines().find(|l| l.contains("stopping abandons")).unwrap_or_else(|| panic!("{log}"));
    assert!(stop.contains("ERROR") && stop.contains("deleted files, which no restart can read again"), "{stop}");
    let abandoned: usize = stop.split(" lines)").next().and_then(|s| s.rsplit('(').next()).and_then(|n| n.parse().ok()).unwrap();
    // the next agent ships the current file; every line is accepted once, or counted lost
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut agent = run_agent(&cfg, &d.path().join("agent2.err"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted.lock().unwrap().len() + lost + abandoned < w.written.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops").success());
    let got = accepted.lock().unwrap().clone();
    assert!(counts(&got).values().all(|&c| c == 1), "no line twice");
    assert_eq!(got.len() + lost + abandoned, w.written.len(), "accepted {} + lost {lost} + abandoned {abandoned}", got.len());
    let last = w.written.last().unwrap();
    assert!(got.contains(last), "the current file shipped");
}

#[test]
fn a_request_refused_whole_as_invalid_is_a_configuration_error_nothing_is_dead_lettered_and_the_records_wait_for_the_fix() {
    for (service, code) in [(Service::Firehose, "InvalidArgumentException"), (Service::Kinesis, "ValidationException")] {
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (endpoint, accepted) = refusing(service, refuse.clone());
        let d = tempfile::tempdir().unwrap();
        let mut w = Writer::new(&d.path().join("app.log"), "v");
        w.write(300);
        let cfg = write_config(service, &endpoint, d.path(), "");
        // the endpoint, and unhealthy at once: no failing time to wait through
        let config = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, config.replacen("flows:", "http: {listen: '127.0.0.1:0', unhealthy_after_secs: 3600}\nflows:", 1)).unwrap();
        let err = d.path().join("agent.err");
        let mut agent = run_agent(&cfg, &err);
        let base = endpoint_in(&err);
        let (status, body) = wait_for_status(&base, "/health", 503, Duration::from_secs(20));
        assert_eq!(status, 503, "{service:?}: {body}");
        assert!(body.contains("flow faults") && body.contains(":s refuses every request") && body.contains(code), "{service:?}: {body}");
        let log = wait_for_log(&err, "refused the whole request", Duration::from_secs(20));
        assert!(log.contains("a configuration error") && log.contains("stream=s"), "{log}");
        w.write(100);
        std::thread::sleep(Duration::from_secs(2));
        assert!(accepted.lock().unwrap().is_empty());
        // a clean stop: had the checkpoint moved, the next agent would not send the lines again
        unsafe_kill(agent.id(), "TERM");
        assert!(wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops").success());
        let log = std::fs::read_to_string(&err).unwrap();
        assert!(!d.path().join("dead-letter/faults.jsonl").exists(), "{service:?}: nothing dead-lettered: {log}");
        assert_eq!(log.matches("refused the whole request").count(), 1, "logged once a minute, not per attempt: {log}");

        let mut agent = run_agent(&cfg, &d.path().join("agent2.err"));
        let base = endpoint_in(&d.path().join("agent2.err"));
        assert_eq!(wait_for_status(&base, "/health", 503, Duration::from_secs(20)).0, 503);
        refuse.store(false, std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        while accepted.lock().unwrap().len() < w.written.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, body) = wait_for_status(&base, "/health", 200, Duration::from_secs(20));
        assert_eq!(status, 200, "{service:?}: healthy once the stream takes the records: {body}");
        unsafe_kill(agent.id(), "TERM");
        assert!(wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops").success());
        assert_exactly_once(&w.written, &accepted.lock().unwrap());
        assert!(!d.path().join("dead-letter/faults.jsonl").exists());
    }
}

/// Serves PutRecordBatch as an under-provisioned stream with a bad day does: 30 % of the records
/// of every request refused (`ServiceUnavailableException`), 5 % of the requests throttled whole,
/// 2 % answered with a 500, and every connection closed unanswered while `outage` is set.
/// Records the accepted lines and how many times each request's records were accepted.
fn bad_day(outage: Arc<std::sync::atomic::AtomicBool>) -> (String, Arc<Mutex<Seen>>) {
    let s = Arc::new(Mutex::new(Seen::default()));
    let seen = s.clone();
    let endpoint = http::serve(move |req| {
        let json = [("Content-Type", "application/x-amz-json-1.1")];
        if outage.load(std::sync::atomic::Ordering::SeqCst) {
            seen.lock().unwrap().resets += 1;
            return None;
        }
        let n = {
            let mut g = seen.lock().unwrap();
            g.requests += 1;
            g.requests
        };
        // a deterministic spread over requests and records
        let roll = |k: usize| (k.wrapping_mul(2_654_435_761) >> 7) % 100;
        if roll(n) < 5 {
            seen.lock().unwrap().throttled_requests += 1;
            let body = br#"{"__type":"ThrottlingException","message":"Rate exceeded."}"#;
            return Some(http::response("400 Bad Request", &json, body));
        }
        if roll(n + 1_000_003) < 2 {
            seen.lock().unwrap().errors_500 += 1;
            return Some(http::response("500 Internal Server Error", &json, br#"{"__type":"InternalFailure","message":"x"}"#));
        }
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let mut g = seen.lock().unwrap();
        let mut responses = Vec::new();
        let mut failed = 0;
        for (i, r) in body["Records"].as_array().unwrap().iter().enumerate() {
            if roll(n * 7919 + i) < 30 {
                failed += 1;
                g.throttled_records += 1;
                responses.push(serde_json::json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}));
            } else {
                let data = base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().unwrap()).unwrap();
                g.accepted.extend(String::from_utf8_lossy(&data).lines().map(String::from));
                g.accepted_records += 1;
                responses.push(serde_json::json!({"RecordId": format!("{n}-{i}")}));
            }
        }
        let out = serde_json::json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": responses});
        Some(http::response("200 OK", &json, out.to_string().as_bytes()))
    });
    (endpoint, s)
}

#[test]
fn with_30_percent_of_records_failing_throttling_500s_and_an_outage_while_files_rotate_and_are_deleted_every_line_is_accepted_once() {
    let outage = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (endpoint, seen) = bad_day(outage.clone());
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("app.log");
    // a small budget: reads stop in the outage, and the rotated files deleted meanwhile hold
    // what was not read yet
    let cfg = single_file_config(d.path(), &endpoint, "max_bytes_in_flight: 262144\n", "");
    let err = d.path().join("agent.err");
    let mut agent = run_agent(&cfg, &err);
    let base = endpoint_in(&err);
    // 2,000 lines a second for 12 s, rotated by rename every second, one rotated file kept: a file
    // is deleted about a second after it was rotated; the endpoint is unreachable from 4 s to 8 s
    let mut w = Writer::new(&path, "bad");
    let started = Instant::now();
    let mut rotations = 0;
    let mut deleted_seen = 0i64;
    for tick in 0..120 {
        w.write(200);
        if tick == 40 {
            outage.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if tick == 80 {
            outage.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        if tick % 10 == 9 {
            // the previous app.log.1 is deleted: a file lives about 2 s once rotated
            std::fs::rename(&path, d.path().join("app.log.1")).unwrap();
            rotations += 1;
        }
        if tick % 5 == 0 {
            deleted_seen = deleted_seen.max(flow_status(&base)["deleted_bytes_behind"].as_i64().unwrap_or(0));
        }
        let next = started + Duration::from_millis(100 * (tick + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().unwrap().accepted.len() < w.written.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let rss = std::fs::read_to_string(format!("/proc/{}/status", agent.id())).unwrap();
    let rss: u64 =
        rss.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap();
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops").success());
    let log = std::fs::read_to_string(&err).unwrap();
    let g = seen.lock().unwrap();
    eprintln!(
        "{} lines in {rotations} rotations: {} requests, {} records refused, {} requests throttled, {} 500s, {} connections closed in the outage; {} accepted; peak {} bytes held in deleted files; peak RSS {rss} KiB",
        w.written.len(),
        g.requests,
        g.throttled_records,
        g.throttled_requests,
        g.errors_500,
        g.resets,
        g.accepted.len(),
        deleted_seen
    );
    assert!(g.throttled_records > 5000 && g.throttled_requests > 0 && g.errors_500 > 0 && g.resets > 0, "every fault happened");
    assert!(deleted_seen > 100_000, "deleted files held what the outage kept from being read: {deleted_seen} bytes");
    // accepted exactly once: no record the endpoint took was sent again, none lost in the files deleted
    assert_exactly_once(&w.written, &g.accepted);
    assert!(!log.contains("abandons") && !log.contains("are lost"), "{log}");
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
}

/// tinyproxy (Debian's), an HTTP CONNECT proxy on a loopback port, logging each CONNECT to the
/// returned log file; stopped when the returned child is dropped by the caller's kill.
fn tinyproxy(dir: &std::path::Path) -> (std::process::Child, u16, std::path::PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.join("tinyproxy.log");
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 50\n",
            log.display()
        ),
    )
    .unwrap();
    let child = Command::new("tinyproxy")
        .args(["-d", "-c", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tinyproxy: scripts/test.sh installs it with apt-get");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tinyproxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port, log)
}

#[test]
fn a_proxy_given_to_java_in_jvm_args_carries_every_request_as_on_a_kinesis_agent_host() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = http::test_certificates(dir.path(), "logferry test authority");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let endpoint = http::serve_tls(&cert, &key, faulty_handler(Service::Firehose, seen.clone()));
    let (mut proxy, port, proxy_log) = tinyproxy(dir.path());
    let mut w = Writer::new(&dir.path().join("app.log"), "px");
    w.write(300);
    let cfg = write_config(Service::Firehose, &endpoint, dir.path(), "");
    let log = dir.path().join("agent.err");
    // as the service gets it from /etc/sysconfig/aws-kinesis-agent
    let jvm_args = format!("-Xmx256m -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort={port} -Dhttp.nonProxyHosts=\"*.internal|metadata\"");
    let mut agent = agent_command(&cfg, &log)
        .env("SSL_CERT_FILE", &ca)
        .env_remove("SSL_CERT_DIR")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("JVM_ARGS", jvm_args)
        .spawn()
        .unwrap();
    wait_accepted(&seen, w.written.len());
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops").success());
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert_exactly_once(&w.written, &seen.lock().unwrap().accepted);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("through the proxy http://127.0.0.1:{port} that JVM_ARGS names"))
            && text.contains("except for .internal,metadata"),
        "{text}"
    );
    let endpoint_port = endpoint.rsplit(':').next().unwrap();
    let connects = std::fs::read_to_string(&proxy_log).unwrap();
    let n = connects.matches(&format!("CONNECT 127.0.0.1:{endpoint_port}")).count();
    assert!(n >= 1, "the requests went through the proxy: {connects}");
}

/// What the CloudWatch Logs endpoint of [`faulty_logs`] saw.
#[derive(Default)]
struct LogsSeen {
    /// Messages stored, with their timestamps.
    stored: Vec<(i64, String)>,
    requests: usize,
    throttled: usize,
    errors_500: usize,
    slow: usize,
    resets: usize,
    already_accepted: usize,
    /// Events refused as too old or too new (`rejectedLogEventsInfo`).
    refused: usize,
    /// Requests outside PutLogEvents' rules (order, span, size, count, one stream).
    illegal: Vec<String>,
}

/// Serves PutLogEvents (awsJson1.1) as CloudWatch Logs does, failing on purpose by request
/// number: resets, answers past the read timeout, 500s, whole calls throttled, and events stored
/// with a `DataAlreadyAcceptedException` answer; events older than 14 days or more than 2 hours
/// ahead are refused in `rejectedLogEventsInfo`, as the service refuses them. Every request is
/// checked against the service's rules.
fn faulty_logs() -> (String, Arc<Mutex<LogsSeen>>) {
    let seen = Arc::new(Mutex::new(LogsSeen::default()));
    let s = seen.clone();
    let json = [("Content-Type", "application/x-amz-json-1.1")];
    let endpoint = http::serve(move |req| {
        let n = {
            let mut g = s.lock().unwrap();
            g.requests += 1;
            g.requests
        };
        assert_eq!(req.header("x-amz-target"), Some("Logs_20140328.PutLogEvents"));
        if n % 11 == 0 {
            s.lock().unwrap().resets += 1;
            return None;
        }
        if n % 13 == 0 {
            s.lock().unwrap().slow += 1;
            std::thread::sleep(Duration::from_millis(2500));
            return Some(http::response("500 Internal Server Error", &[], b""));
        }
        if n % 7 == 0 {
            s.lock().unwrap().errors_500 += 1;
            let body = br#"{"__type":"ServiceUnavailableException","message":"The server failed to fulfill the request."}"#;
            return Some(http::response("500 Internal Server Error", &json, body));
        }
        if n % 5 == 0 {
            s.lock().unwrap().throttled += 1;
            let body = br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
            return Some(http::response("400 Bad Request", &json, body));
        }
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let events = body["logEvents"].as_array().unwrap();
        let times: Vec<i64> = events.iter().map(|e| e["timestamp"].as_i64().unwrap()).collect();
        let bytes: usize = events.iter().map(|e| e["message"].as_str().unwrap().len() + 26).sum();
        let mut g = s.lock().unwrap();
        let mut problems = Vec::new();
        if body["logGroupName"] != "/app/faults" || body["logStreamName"] != "s1" {
            problems.push(format!("names {} {}", body["logGroupName"], body["logStreamName"]));
        }
        if events.is_empty() || events.len() > 10_000 || bytes > 1_048_576 {
            problems.push(format!("{} events, {bytes} bytes", events.len()));
        }
        if times.iter().any(|&t| t < 0) {
            problems.push("an event time before the epoch".into());
        }
        if times.windows(2).any(|t| t[0] > t[1]) {
            problems.push("events not in chronological order".into());
        }
        if times.last().unwrap_or(&0) - times.first().unwrap_or(&0) >= 24 * 3_600_000 {
            problems.push("a request spanning 24 hours".into());
        }
        if !problems.is_empty() {
            g.illegal.extend(problems);
            return Some(http::response("400 Bad Request", &json, br#"{"__type":"InvalidParameterException","message":"illegal"}"#));
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let old = times.iter().take_while(|&&t| t < now - 14 * 86_400_000).count();
        let new = times.iter().rev().take_while(|&&t| t > now + 2 * 3_600_000).count();
        let mut info = serde_json::Map::new();
        if old > 0 {
            info.insert("tooOldLogEventEndIndex".into(), (old - 1).into());
        }
        if new > 0 {
            info.insert("tooNewLogEventStartIndex".into(), (events.len() - new).into());
        }
        g.refused += old + new;
        for e in &events[old..events.len() - new] {
            g.stored.push((e["timestamp"].as_i64().unwrap(), e["message"].as_str().unwrap().to_string()));
        }
        if old + new == 0 && g.already_accepted < 3 {
            // stored, and answered as a retry of a request taken whole before
            g.already_accepted += 1;
            let body = br#"{"__type":"DataAlreadyAcceptedException","message":"The given batch of log events has already been accepted."}"#;
            return Some(http::response("400 Bad Request", &json, body));
        }
        let out = if info.is_empty() { serde_json::json!({}) } else { serde_json::json!({"rejectedLogEventsInfo": info}) };
        Some(http::response("200 OK", &json, out.to_string().as_bytes()))
    });
    (endpoint, seen)
}

#[test]
fn cloudwatch_logs_through_throttling_500s_resets_and_refused_events_stores_every_line_once_and_dead_letters_the_refused_with_their_origin()
{
    let (endpoint, seen) = faulty_logs();
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\naws: {{access_key_id: test, secret_access_key: test, connect_timeout_ms: 1000, read_timeout_ms: 1000}}\nflows:\n  - id: faults\n    path: {}\n    buffer: {{max_records: 100, max_age_ms: 500}}\n    retry: {{initial_backoff_ms: 20, max_backoff_ms: 200}}\n    sink: {{type: cloudwatch_logs, region: us-east-1, endpoint: '{endpoint}', log_group: /app/faults, log_stream: s1, timestamp: {{field: ts, format: epoch_millis}}}}\n",
            d.path().join("checkpoints.db").display(),
            d.path().join("app.log*").display()
        ),
    )
    .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // JSON lines with their time; every 97th 20 days old and every 89th a day ahead: refused.
    // The first 2,500 go to the file that is rotated, the rest to the new one.
    let path = d.path().join("app.log");
    let (mut good, mut refused) = (Vec::new(), Vec::new());
    let (mut first, mut second) = (String::new(), String::new());
    for i in 0..3000 {
        let (text, file) = if i < 2500 { (&mut first, d.path().join("app.log.1")) } else { (&mut second, path.clone()) };
        let ts = match i {
            _ if i % 97 == 5 => now - 20 * 86_400_000,
            _ if i % 89 == 7 => now + 86_400_000,
            _ => now + i as i64,
        };
        let line = format!("{{\"ts\":{ts},\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 50));
        if i % 97 == 5 || i % 89 == 7 {
            let code = if ts > now { "TooNewLogEvent" } else { "TooOldLogEvent" };
            refused.push((line.clone(), file, text.len() as u64, code));
        } else {
            good.push((ts, line.clone()));
        }
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&path, &first).unwrap();
    let mut agent = run_agent(&cfg, &d.path().join("agent.err"));
    std::thread::sleep(Duration::from_millis(300));
    std::fs::rename(&path, d.path().join("app.log.1")).unwrap();
    std::fs::write(&path, &second).unwrap();
    let dead_letter = d.path().join("dead-letter/faults.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    while (seen.lock().unwrap().stored.len() < good.len()
        || std::fs::read_to_string(&dead_letter).map_or(0, |t| t.lines().count()) < refused.len())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    unsafe_kill(agent.id(), "TERM");
    let status = wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops");
    let log = std::fs::read_to_string(d.path().join("agent.err")).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    let g = seen.lock().unwrap();
    eprintln!(
        "CloudWatch Logs: {} requests, {} throttled, {} 500s, {} slow, {} resets, {} answered as already accepted, {} events refused; {} stored for {} good lines",
        g.requests,
        g.throttled,
        g.errors_500,
        g.slow,
        g.resets,
        g.already_accepted,
        g.refused,
        g.stored.len(),
        good.len()
    );
    assert!(g.illegal.is_empty(), "requests outside PutLogEvents' rules: {:?}", g.illegal);
    assert!(g.throttled > 0 && g.errors_500 > 0 && g.slow > 0 && g.resets > 0 && g.already_accepted > 0, "every fault happened");
    // stored exactly once, with the time of its field: nothing stored was sent again
    let mut stored = g.stored.clone();
    stored.sort_by(|a, b| a.1.cmp(&b.1));
    let mut expected = good.clone();
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(stored.len(), expected.len(), "every good line once");
    assert!(stored == expected, "each line stored once with its field's time");
    // refused events: in the dead-letter file with the file and offset of their line
    let entries: Vec<serde_json::Value> =
        std::fs::read_to_string(&dead_letter).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(entries.len(), refused.len(), "{log}");
    for (line, file, offset, code) in &refused {
        let e = entries.iter().find(|e| e["record"] == format!("{line}\n")).unwrap_or_else(|| panic!("{line} not dead-lettered"));
        assert_eq!(e["error_code"], *code, "{e}");
        assert_eq!(e["offset"], *offset, "{e}");
        // a line of the rotated file read before the rename is named by the path it had then
        let named = e["file"].as_str().unwrap();
        assert!(named == file.display().to_string() || named == path.display().to_string(), "{e}");
    }
}
