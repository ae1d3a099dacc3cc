//! The AWS sinks against moto's server (installed by scripts/test.sh into .venv): an unmodified
//! agent.json pointed at the emulator; what reaches S3 (Firehose) or every shard (Kinesis) is
//! compared line by line.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn venv(bin: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin").join(bin);
    assert!(p.exists(), "{} is missing: scripts/test.sh installs moto into .venv", p.display());
    p
}

fn moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(venv("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { child, endpoint: format!("http://127.0.0.1:{port}") }
}

fn aws(args: &[&str]) -> Vec<u8> {
    let helper = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/aws.py");
    let out = Command::new(venv("python")).arg(helper).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Lines read back with the helper `args` once at least `n` arrived, or after 60 s.
fn arrived(args: &[&str], n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<String> = String::from_utf8_lossy(&aws(args)).lines().map(String::from).collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

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
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = std::fs::read_to_string(&err).unwrap_or_default();
        if log.contains("ResourceNotFoundException") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
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
    let m = moto();
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
