//! The AWS sinks against real emulators, installed by scripts/test.sh: moto's server (in .venv)
//! and kinesalite (npm, in .tools/kinesalite). An unmodified agent.json or a native config points
//! at the emulator; what reaches S3 (Firehose) or every shard (Kinesis) is compared line by line,
//! KPL aggregates are unpacked with the KPL's own de-aggregation library (PyPI aws-kinesis-agg).

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::emulators::*;
use support::*;

fn agent_json(dir: &std::path::Path, endpoint: &str, stream: &str, pattern: &str) -> PathBuf {
    let p = dir.join("agent.json");
    std::fs::write(
        &p,
        format!(
            r#"{{
  "checkpointFile": "{}",
  "cloudwatch.emitMetrics": false,
  "firehose.endpoint": "{endpoint}",
  "awsAccessKeyId": "test",
  "awsSecretAccessKey": "sEcReT-never-logged",
  "flows": [{{ "filePattern": "{}", "deliveryStream": "{stream}", "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 1000 }}]
}}"#,
            dir.join("checkpoints.db").display(),
            dir.join(pattern).display()
        ),
    )
    .unwrap();
    p
}

fn start(config: &std::path::Path, stderr: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn agent_json_ships_every_line_to_firehose_and_s3_through_rotation() {
    let m = moto();
    aws(&[&m.endpoint, "create", "logs-bucket", "logs"]);
    let d = tempfile::tempdir().unwrap();
    let cfg = agent_json(d.path(), &m.endpoint, "logs", "app.log*");
    let path = d.path().join("app.log");
    let mut w = Writer::new(&path, "fh");
    w.write(2000);
    let err = d.path().join("agent.err");
    let mut agent = start(&cfg, &err);
    for i in 0..3 {
        w.write(700);
        std::fs::rename(&path, d.path().join(format!("app.log.{i}"))).unwrap();
        w.write(300);
        std::thread::sleep(Duration::from_millis(300));
    }
    let got = arrived(&[&m.endpoint, "read", "logs-bucket"], w.written.len());
    unsafe_kill(agent.id(), "TERM");
    let status = wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&err).unwrap());
    assert_exactly_once(&w.written, &got);
}

#[test]
fn a_missing_delivery_stream_is_reported_with_the_fix_and_nothing_is_lost() {
    let m = moto();
    let d = tempfile::tempdir().unwrap();
    let cfg = agent_json(d.path(), &m.endpoint, "no-such-stream", "app.log");
    let mut w = Writer::new(&d.path().join("app.log"), "m");
    w.write(50);
    let err = d.path().join("agent.err");
    let mut agent = start(&cfg, &err);
    let log = wait_for_log(&err, "ResourceNotFoundException", Duration::from_secs(30));
    assert!(log.contains("no-such-stream") && log.contains("the stream does not exist in this account and region"), "{log}");
    assert!(!log.contains("sEcReT-never-logged"), "credentials never appear in the log");
    // the stream appears: the waiting records go out, none was dropped
    aws(&[&m.endpoint, "create", "late-bucket", "no-such-stream"]);
    let got = arrived(&[&m.endpoint, "read", "late-bucket"], w.written.len());
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_exactly_once(&w.written, &got);
}

#[test]
fn agent_json_ships_every_line_to_a_kinesis_stream_across_its_shards() {
    // kinesalite: moto's PutRecords is not safe with several requests at once (records of two
    // concurrent requests can take one sequence number, and one of them is lost)
    let m = kinesalite();
    aws(&[&m.endpoint, "kinesis-create", "events", "2"]);
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"checkpointFile": "{}", "cloudwatch.emitMetrics": false, "kinesis.endpoint": "{}", "kinesis.region": "us-east-1",
                "awsAccessKeyId": "test", "awsSecretAccessKey": "test",
                "flows": [{{"filePattern": "{}", "kinesisStream": "events", "partitionKeyOption": "DETERMINISTIC", "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 1000}}]}}"#,
            d.path().join("checkpoints.db").display(),
            m.endpoint,
            d.path().join("app.log*").display()
        ),
    )
    .unwrap();
    let path = d.path().join("app.log");
    let mut w = Writer::new(&path, "ks");
    w.write(1500);
    let err = d.path().join("agent.err");
    let mut agent = start(&cfg, &err);
    w.write(500);
    std::fs::rename(&path, d.path().join("app.log.1")).unwrap();
    w.write(500);
    let got = arrived(&[&m.endpoint, "kinesis-read", "events"], w.written.len());
    unsafe_kill(agent.id(), "TERM");
    let status = wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&err).unwrap());
    assert_exactly_once(&w.written, &got);
}

#[test]
fn aggregated_records_pack_whole_lines_into_fewer_firehose_records() {
    let m = moto();
    aws(&[&m.endpoint, "create", "agg-bucket", "agg"]);
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"checkpointFile": "{}", "cloudwatch.emitMetrics": false, "firehose.endpoint": "{}", "awsAccessKeyId": "test", "awsSecretAccessKey": "test",
                "flows": [{{"filePattern": "{}", "deliveryStream": "agg", "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 1000, "aggregatedRecordSizeBytes": 4096}}]}}"#,
            d.path().join("checkpoints.db").display(),
            m.endpoint,
            d.path().join("app.log").display()
        ),
    )
    .unwrap();
    let mut w = Writer::new(&d.path().join("app.log"), "agg");
    w.write(1000);
    let err = d.path().join("agent.err");
    let mut agent = start(&cfg, &err);
    let got = arrived(&[&m.endpoint, "read", "agg-bucket"], w.written.len());
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_exactly_once(&w.written, &got);
    assert_eq!(got, w.written, "in file order");
    let log = std::fs::read_to_string(&err).unwrap();
    let handed: usize = log
        .split("records handed to the sink ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    let bytes: usize = w.written.iter().map(|l| l.len() + 1).sum();
    assert!(
        handed <= bytes / 4096 + 2 && handed < w.written.len() / 20,
        "{handed} Firehose records for {} lines ({bytes} bytes)",
        w.written.len()
    );
}

#[test]
fn assume_role_through_a_custom_sts_endpoint_then_ship() {
    let m = moto();
    aws(&[&m.endpoint, "create", "role-bucket", "role-stream"]);
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"checkpointFile": "{}", "cloudwatch.emitMetrics": false, "firehose.endpoint": "{e}", "sts.endpoint": "{e}",
                "awsAccessKeyId": "base", "awsSecretAccessKey": "base-secret",
                "assumeRoleARN": "arn:aws:iam::123456789012:role/shipper", "assumeRoleExternalId": "ext-1",
                "flows": [{{"filePattern": "{}", "deliveryStream": "role-stream", "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 1000}}]}}"#,
            d.path().join("checkpoints.db").display(),
            d.path().join("app.log").display(),
            e = m.endpoint
        ),
    )
    .unwrap();
    let mut w = Writer::new(&d.path().join("app.log"), "role");
    w.write(100);
    let err = d.path().join("agent.err");
    let mut agent = start(&cfg, &err);
    let got = arrived(&[&m.endpoint, "read", "role-bucket"], w.written.len());
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_exactly_once(&w.written, &got);
    let log = std::fs::read_to_string(&err).unwrap();
    assert!(!log.contains("ERROR"), "{log}");

    // the role is really used: with STS unreachable nothing can be signed, so nothing is shipped
    aws(&[&m.endpoint, "create", "no-sts-bucket", "no-sts-stream"]);
    let d2 = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!(r#""sts.endpoint": "{}""#, m.endpoint), r#""sts.endpoint": "http://127.0.0.1:1""#)
        .replace("role-stream", "no-sts-stream")
        .replace(&d.path().display().to_string(), &d2.path().display().to_string());
    let cfg2 = d2.path().join("agent.json");
    std::fs::write(&cfg2, text).unwrap();
    let mut w2 = Writer::new(&d2.path().join("app.log"), "nosts");
    w2.write(10);
    let err2 = d2.path().join("agent.err");
    let mut agent = start(&cfg2, &err2);
    std::thread::sleep(Duration::from_secs(5));
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(30)).expect("stops");
    assert!(aws(&[&m.endpoint, "read", "no-sts-bucket"]).is_empty(), "shipped without the role's credentials");
    let log = std::fs::read_to_string(&err2).unwrap();
    assert!(log.contains("PutRecordBatch failed"), "{log}");
    assert!(!log.contains("base-secret"), "{log}");
}

/// A native configuration with one flow from `dir/app.log*` to `sink` (YAML lines, indented).
fn native(dir: &std::path::Path, sink: &str) -> PathBuf {
    let p = dir.join("logferry.yaml");
    std::fs::write(
        &p,
        format!(
            "checkpoint_file: {}\nflows:\n  - id: test\n    path: {}\n    buffer: {{max_age_ms: 500}}\n    sink:\n{sink}\n",
            dir.join("checkpoints.db").display(),
            dir.join("app.log*").display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn agent_json_ships_every_line_to_kinesalite_spread_over_the_shards() {
    let k = kinesalite();
    aws(&[&k.endpoint, "kinesis-create", "ka-events", "3"]);
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"checkpointFile": "{}", "cloudwatch.emitMetrics": false, "kinesis.endpoint": "{}",
                "flows": [{{"filePattern": "{}", "kinesisStream": "ka-events", "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 1000}}]}}"#,
            d.path().join("checkpoints.db").display(),
            k.endpoint,
            d.path().join("app.log*").display()
        ),
    )
    .unwrap();
    let (w, doc) = ship_with_rotation(&cfg, "kl", (1200, 300), &[&k.endpoint, "kinesis-deaggregate", "ka-events"]);
    let mut by_shard: std::collections::BTreeMap<String, usize> = Default::default();
    let mut got = Vec::new();
    for u in doc["user"].as_array().unwrap() {
        let data = String::from_utf8(b64(u[2].as_str().unwrap())).unwrap();
        let line = data.strip_suffix('\n').expect("one line per record").to_string();
        *by_shard.entry(u[0].as_str().unwrap().to_string()).or_default() += 1;
        got.push(line);
    }
    assert_exactly_once(&w.written, &got);
    assert!(by_shard.len() >= 2, "random keys spread over the shards: {:?}", doc["per_shard"]);
}

#[test]
fn with_one_request_in_flight_each_shard_holds_each_files_records_in_file_order() {
    let k = kinesalite();
    aws(&[&k.endpoint, "kinesis-create", "ordered", "3"]);
    let d = tempfile::tempdir().unwrap();
    let sink = format!(
        "      type: kinesis\n      stream: ordered\n      region: us-east-1\n      endpoint: '{}'\n      max_in_flight_requests: 1",
        k.endpoint
    );
    let cfg = native(d.path(), &sink);
    let config = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, config.replacen("flows:", "aws: {access_key_id: test, secret_access_key: test}\nflows:", 1)).unwrap();
    let (w, doc) = ship_with_rotation(&cfg, "ord", (1200, 300), &[&k.endpoint, "kinesis-deaggregate", "ordered"]);
    let mut by_shard: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut got = Vec::new();
    for u in doc["user"].as_array().unwrap() {
        let line = String::from_utf8(b64(u[2].as_str().unwrap())).unwrap().strip_suffix('\n').expect("one line per record").to_string();
        by_shard.entry(u[0].as_str().unwrap().to_string()).or_default().push(line.clone());
        got.push(line);
    }
    assert_exactly_once(&w.written, &got);
    assert!(by_shard.len() >= 2, "random keys spread over the shards: {:?}", doc["per_shard"]);
    // lines before the rotation are in app.log.1, the last 300 in the new app.log
    let first_of_new = w.written[w.written.len() - 300].clone();
    for lines in by_shard.values() {
        for file in
            [lines.iter().filter(|l| **l < first_of_new).collect::<Vec<_>>(), lines.iter().filter(|l| **l >= first_of_new).collect()]
        {
            assert!(file.windows(2).all(|p| p[0] < p[1]), "each shard holds each file's records in file order");
        }
    }
}

#[test]
fn kpl_aggregates_with_zstd_records_deaggregate_with_the_kpl_library_across_shards() {
    let k = kinesalite();
    aws(&[&k.endpoint, "kinesis-create", "kpl", "4"]);
    let d = tempfile::tempdir().unwrap();
    let cfg = native(
        d.path(),
        &format!(
            "      type: kinesis\n      stream: kpl\n      endpoint: {}\n      partition_key: deterministic\n      aggregation: kpl\n      aggregate_max_bytes: 8192\n      compression: zstd",
            k.endpoint
        ),
    );
    let (w, doc) = ship_with_rotation(&cfg, "kpl", (2000, 500), &[&k.endpoint, "kinesis-deaggregate", "kpl"]);
    let mut got = Vec::new();
    for u in doc["user"].as_array().unwrap() {
        assert_eq!(u[3], true, "every record travelled in an aggregate");
        let record = zstd::stream::decode_all(&b64(u[2].as_str().unwrap())[..]).expect("each user record is zstd-compressed");
        // a deterministic key is the MD5 of the record itself (before compression)
        let key: String = md5_hex(&record);
        assert_eq!(u[1].as_str().unwrap(), key);
        got.push(String::from_utf8(record).unwrap().strip_suffix('\n').expect("one line per record").to_string());
    }
    assert_exactly_once(&w.written, &got);
    let per_shard: Vec<u64> = doc["per_shard"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).collect();
    let kinesis_records: u64 = per_shard.iter().sum();
    assert!(per_shard.iter().filter(|&&n| n > 0).count() >= 3, "aggregates spread over the shards: {per_shard:?}");
    assert!(kinesis_records * 20 < w.written.len() as u64, "{kinesis_records} Kinesis records for {} lines", w.written.len());
}

#[test]
fn gzip_records_reach_s3_and_decompress_to_every_line() {
    use std::io::Read;
    let m = moto();
    aws(&[&m.endpoint, "create", "gz-bucket", "gz"]);
    let d = tempfile::tempdir().unwrap();
    let cfg = native(d.path(), &format!("      type: firehose\n      stream: gz\n      endpoint: {}\n      compression: gzip", m.endpoint));
    let mut w = Writer::new(&d.path().join("app.log"), "gz");
    w.write(800);
    let err = d.path().join("agent.err");
    let mut agent = start(&cfg, &err);
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        // moto writes each request's records back to back: a multi-member gzip stream
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&aws(&[&m.endpoint, "read", "gz-bucket"])[..]).read_to_string(&mut text).unwrap();
        let got: Vec<String> = text.lines().map(String::from).collect();
        if got.len() >= w.written.len() || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    // S3's LastModified has a resolution of one second: objects of one second have no order
    assert_exactly_once(&w.written, &got);
}

/// Runs the agent on `cfg` while lines are written to `app.log` beside it, which is rotated once;
/// returns the writer and the stream read back with the helper `read` once every line is there.
fn ship_with_rotation(cfg: &std::path::Path, tag: &str, (before, each): (usize, usize), read: &[&str]) -> (Writer, serde_json::Value) {
    let dir = cfg.parent().unwrap();
    let path = dir.join("app.log");
    let mut w = Writer::new(&path, tag);
    w.write(before);
    let err = dir.join("agent.err");
    let mut agent = start(cfg, &err);
    w.write(each);
    std::fs::rename(&path, dir.join("app.log.1")).unwrap();
    w.write(each);
    let deadline = Instant::now() + Duration::from_secs(60);
    let doc = loop {
        let doc: serde_json::Value = serde_json::from_slice(&aws(read)).unwrap();
        if doc["user"].as_array().unwrap().len() >= w.written.len() || Instant::now() > deadline {
            break doc;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    unsafe_kill(agent.id(), "TERM");
    let status = wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&err).unwrap());
    (w, doc)
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    md5::Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_missing_kinesis_stream_is_reported_with_the_fix_and_the_records_arrive_once_it_exists() {
    let k = kinesalite();
    let d = tempfile::tempdir().unwrap();
    let cfg = native(d.path(), &format!("      type: kinesis\n      stream: late-stream\n      endpoint: {}", k.endpoint));
    let mut w = Writer::new(&d.path().join("app.log"), "late");
    w.write(40);
    let err = d.path().join("agent.err");
    let mut agent = start(&cfg, &err);
    let log = wait_for_log(&err, "ResourceNotFoundException", Duration::from_secs(30));
    assert!(log.contains("stream=late-stream") && log.contains("the stream does not exist in this account and region"), "{log}");
    aws(&[&k.endpoint, "kinesis-create", "late-stream", "1"]);
    let got = arrived(&[&k.endpoint, "kinesis-read", "late-stream"], w.written.len());
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_eq!(got, w.written, "every line, once, in order");
}

#[test]
fn a_flow_that_would_drop_every_line_is_held_unread_while_the_others_ship_and_a_reload_that_fixes_it_ships_what_waited() {
    let k = kinesalite();
    aws(&[&k.endpoint, "kinesis-create", "good", "1"]);
    aws(&[&k.endpoint, "kinesis-create", "parsed", "1"]);
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.json");
    // the second flow's pattern has one group and names two fields: the Kinesis Agent drops
    // every line of it
    let config = |names: &str| {
        std::fs::write(
            &cfg,
            format!(
                r#"{{"checkpointFile": "{}", "cloudwatch.emitMetrics": false, "kinesis.endpoint": "{}", "kinesis.region": "us-east-1",
                    "awsAccessKeyId": "test", "awsSecretAccessKey": "test",
                    "flows": [{{"filePattern": "{}", "kinesisStream": "good", "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 1000}},
                              {{"filePattern": "{}", "kinesisStream": "parsed", "maxBufferAgeMillis": 1000,
                                "dataProcessingOptions": [{{"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "matchPattern": "(.*)", "customFieldNames": {names}}}]}}]}}"#,
                d.path().join("checkpoints.db").display(),
                k.endpoint,
                d.path().join("app.log").display(),
                d.path().join("web.log").display()
            ),
        )
        .unwrap()
    };
    config(r#"["line", "extra"]"#);
    // before the first start: skipped (END_OF_FILE, the default) as if the flow had started
    let mut web = Writer::new(&d.path().join("web.log"), "before");
    web.write(20);
    let mut app = Writer::new(&d.path().join("app.log"), "good");
    app.write(300);

    let check = Command::new(env!("CARGO_BIN_EXE_logferry")).args(["check", "--config", cfg.to_str().unwrap()]).output().unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(said.contains("NOT STARTED") && said.contains("names 2 fields but matchPattern has 1 capturing groups"), "{said}");
    assert!(said.contains("FAILED: 1 flow would start, 1 flow would not"), "{said}");

    let err = d.path().join("agent.err");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let base = endpoint_in(&err);
    let mut web = Writer { tag: "held".into(), ..web };
    web.write(150);
    // the other flow ships; the held one reads nothing and says why, in the log and /health
    let got = arrived(&[&k.endpoint, "kinesis-read", "good"], app.written.len());
    assert_exactly_once(&app.written, &got);
    let log = std::fs::read_to_string(&err).unwrap();
    assert!(log.contains("ERROR") && log.contains("this flow is not started: ") && log.contains("capturing groups"), "{log}");
    assert!(log.contains("running 1 flow (1 more held back"), "{log}");
    let (status, body) = http::get(&base, "/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("kinesis:parsed:") && body.contains("is not started") && body.contains("capturing groups"), "{body}");
    assert_eq!(metric_sum(&base, "logferry_flows_held"), 1.0);
    let (_, status) = http::get(&base, "/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["held_flows"][0]["flow"].as_str().is_some_and(|f| f.starts_with("kinesis:parsed:")), "{status}");
    assert!(status["held_flows"][0]["reason"].as_str().is_some_and(|r| r.contains("capturing groups")), "{status}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(aws(&[&k.endpoint, "kinesis-read", "parsed"]).is_empty(), "the held flow sent nothing");

    // fixed while running: it starts where it was held, and what was written meanwhile ships
    config(r#"["line"]"#);
    unsafe_kill(agent.id(), "HUP");
    wait_for_log(&err, "flow started (reload)", Duration::from_secs(30));
    web.write(50);
    let records = arrived(&[&k.endpoint, "kinesis-read", "parsed"], 200);
    let lines: Vec<String> =
        records.iter().map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap()["line"].as_str().unwrap().to_string()).collect();
    let after_start: Vec<String> = web.written[20..].to_vec();
    assert_exactly_once(&after_start, &lines);
    let (status, body) = wait_for_status(&base, "/health", 200, Duration::from_secs(10));
    assert_eq!(status, 200, "{body}");
    assert_eq!(metric_sum(&base, "logferry_flows_held"), 0.0);
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops").success());
}

/// Every event of a CloudWatch Logs group read back from moto: (stream, timestamp, message) in
/// the order GetLogEvents gives each stream's events; and the group's retention.
fn log_events(endpoint: &str, group: &str) -> (Vec<(String, i64, String)>, Option<i64>) {
    let mut events = Vec::new();
    let mut retention = None;
    for line in String::from_utf8_lossy(&aws(&[endpoint, "logs-read", group])).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v.get("group").is_some() {
            retention = v["retention"][0].as_i64();
            continue;
        }
        events.push((
            v["stream"].as_str().unwrap().to_string(),
            v["timestamp"].as_i64().unwrap(),
            v["message"].as_str().unwrap().to_string(),
        ));
    }
    (events, retention)
}

/// The events of `group` once at least `n` arrived (or after 60 s).
fn log_events_arrived(endpoint: &str, group: &str, n: usize) -> Vec<(String, i64, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (events, _) = log_events(endpoint, group);
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn cloudwatch_logs_gets_every_line_in_order_with_its_read_time_through_rotation_a_clean_restart_and_sigkills() {
    let m = moto();
    let d = tempfile::tempdir().unwrap();
    let sink = format!(
        "      type: cloudwatch_logs\n      endpoint: {}\n      log_group: /logferry/{{flow}}\n      log_stream: \"{{hostname}} {{instance_id}}\"\n      create_missing: true\n      retention_days: 7",
        m.endpoint
    );
    let cfg = native(d.path(), &sink);
    let path = d.path().join("app.log");
    let err = d.path().join("agent.err");
    let mut w = Writer::new(&path, "cw");
    // each chunk of lines with when it was written: its events are stamped when read, after
    let mut chunks: Vec<(std::ops::Range<usize>, i64)> = Vec::new();
    let mut write = |w: &mut Writer, n: usize| {
        let (from, at) = (w.written.len(), now_ms());
        w.write(n);
        chunks.push((from..w.written.len(), at));
    };
    write(&mut w, 3000);
    let mut agent = start(&cfg, &err);
    write(&mut w, 700);
    std::fs::rename(&path, d.path().join("app.log.1")).unwrap();
    write(&mut w, 300);
    let got = log_events_arrived(&m.endpoint, "/logferry/test", w.written.len());
    assert_eq!(got.len(), w.written.len(), "{}", std::fs::read_to_string(&err).unwrap());
    // a clean stop, lines written meanwhile, a restart
    unsafe_kill(agent.id(), "TERM");
    let status = wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&err).unwrap());
    write(&mut w, 500);
    let mut agent = start(&cfg, &err);
    // SIGKILLs while lines are written and shipped
    for pause in [30, 150, 400] {
        write(&mut w, 1500);
        std::thread::sleep(Duration::from_millis(pause));
        unsafe_kill(agent.id(), "KILL");
        wait_timeout(&mut agent, Duration::from_secs(10)).expect("killed");
        agent = start(&cfg, &err);
    }
    write(&mut w, 200);
    let got = log_events_arrived(&m.endpoint, "/logferry/test", w.written.len());
    std::thread::sleep(Duration::from_secs(2));
    let (got, retention) = if got.len() >= w.written.len() { log_events(&m.endpoint, "/logferry/test") } else { (got, None) };
    unsafe_kill(agent.id(), "TERM");
    let status = wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&err).unwrap());
    let end = now_ms();

    assert_eq!(retention, Some(7), "the group was created with its retention");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    // off EC2 (instance metadata disabled) the host's name stands for the instance's id, said once
    assert!(got.iter().all(|(s, _, _)| *s == format!("{host} {host}")), "one stream, named from the template");
    let log = std::fs::read_to_string(&err).unwrap();
    assert_eq!(log.matches("the host's name").count(), 1, "once at the last start: {log}");
    // every line, as its message without the line end; a kill re-sends at most what was not
    // checkpointed yet
    let messages: Vec<String> = got.iter().map(|(_, _, m)| m.clone()).collect();
    let c = counts(&messages);
    let missing: Vec<&String> = w.written.iter().filter(|l| !c.contains_key(l.as_str())).collect();
    assert!(missing.is_empty(), "{} lines missing, first {:?}", missing.len(), missing.first());
    assert_eq!(c.len(), w.written.len(), "nothing but the lines written");
    let duplicates = messages.len() - c.len();
    eprintln!("{} lines, {} events, {duplicates} sent again after 3 SIGKILLs", w.written.len(), messages.len());
    assert!(duplicates < 3 * 2000, "{duplicates}");
    // in order: each line's first event comes after the line before it in its file (the rotated
    // file's first 3,700, then the new file's)
    let first: HashMap<&str, usize> = messages.iter().enumerate().rev().map(|(i, m)| (m.as_str(), i)).collect();
    for file in [&w.written[..3700], &w.written[3700..]] {
        let positions: Vec<usize> = file.iter().map(|l| first[l.as_str()]).collect();
        assert!(positions.windows(2).all(|p| p[0] < p[1]), "the stream holds each file's lines in the order written");
    }
    // stamped when read: not before the line was written, not after the run
    let time: HashMap<&str, i64> = got.iter().rev().map(|(_, t, m)| (m.as_str(), *t)).collect();
    for (range, at) in &chunks {
        for l in &w.written[range.clone()] {
            let t = time[l.as_str()];
            assert!(*at - 5 <= t && t <= end, "{l}: stamped {t}, written at {at}");
        }
    }
}

#[test]
fn cloudwatch_logs_takes_event_times_from_a_field_and_dead_letters_the_events_it_refuses_with_file_and_offset() {
    let m = moto();
    aws(&[&m.endpoint, "logs-create", "/app/audit", "server-1"]);
    let d = tempfile::tempdir().unwrap();
    let sink = format!(
        "      type: cloudwatch_logs\n      endpoint: {}\n      log_group: /app/audit\n      log_stream: server-1\n      timestamp: {{field: ts, format: \"%Y-%m-%d %H:%M:%S\"}}",
        m.endpoint
    );
    let cfg = native(d.path(), &sink);
    let now = now_ms() / 1000;
    let stamp = |secs: i64| {
        let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
        format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
    };
    // 20 lines of an hour ago, one of 30 days ago (older than the service keeps), 20 more
    let mut lines = Vec::new();
    for i in 0..41 {
        let secs = if i == 20 { now - 30 * 86_400 } else { now - 3600 + i };
        lines.push(format!("{{\"ts\":\"{}\",\"n\":{i}}}", stamp(secs)));
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(d.path().join("app.log"), &text).unwrap();
    let err = d.path().join("agent.err");
    let mut agent = start(&cfg, &err);
    let dead = d.path().join("dead-letter/test.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dead.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = log_events_arrived(&m.endpoint, "/app/audit", 40);
    unsafe_kill(agent.id(), "TERM");
    let status = wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&err).unwrap());

    let expected: Vec<(i64, String)> =
        lines.iter().enumerate().filter(|(i, _)| *i != 20).map(|(i, l)| ((now - 3600 + i as i64) * 1000, l.clone())).collect();
    let got: Vec<(i64, String)> = got.into_iter().map(|(_, t, m)| (t, m)).collect();
    assert_eq!(got, expected, "every event with its field's time, the refused one not among them");
    let dead_lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&dead).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(dead_lines.len(), 1, "{dead_lines:?}");
    assert_eq!(dead_lines[0]["error_code"], "TooOldLogEvent");
    assert_eq!(dead_lines[0]["record"], format!("{}\n", lines[20]));
    assert_eq!(dead_lines[0]["file"], d.path().join("app.log").display().to_string());
    assert_eq!(dead_lines[0]["offset"], text.find(&lines[20]).unwrap() as u64);
}

#[test]
fn a_missing_log_group_is_reported_with_the_permission_that_would_create_it_and_the_events_arrive_once_it_exists() {
    let m = moto();
    let d = tempfile::tempdir().unwrap();
    let sink = format!("      type: cloudwatch_logs\n      endpoint: {}\n      log_group: /late/group\n      log_stream: s1", m.endpoint);
    let cfg = native(d.path(), &sink);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("http: {{listen: '127.0.0.1:0'}}\n{text}")).unwrap();
    let mut w = Writer::new(&d.path().join("app.log"), "late");
    w.write(50);
    let err = d.path().join("agent.err");
    let mut agent = start(&cfg, &err);
    let base = endpoint_in(&err);
    let log = wait_for_log(&err, "ResourceNotFoundException", Duration::from_secs(30));
    assert!(log.contains("/late/group") && log.contains("create_missing") && log.contains("logs:CreateLogGroup"), "{log}");
    aws(&[&m.endpoint, "logs-create", "/late/group", "s1"]);
    let got: Vec<String> = log_events_arrived(&m.endpoint, "/late/group", w.written.len()).into_iter().map(|(_, _, m)| m).collect();
    // the metrics name the destination by its group
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(&base, "logferry_records_sent") < 50.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, metrics) = http::get(&base, "/metrics");
    let sent = metrics.lines().find(|l| l.starts_with("logferry_records_sent")).unwrap_or_default().to_string();
    assert!(sent.contains("destination=\"LogGroup:/late/group\"") && sent.ends_with(" 50"), "{sent}");
    unsafe_kill(agent.id(), "TERM");
    wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops");
    assert_exactly_once(&w.written, &got);
}
