//! ADDEC2METADATA against a local endpoint that speaks the instance metadata service's IMDSv2
//! protocol: a session token from `PUT /latest/api/token`, then GETs that must carry it.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::http;

/// Serves IMDSv2 on a loopback port; counts requests that came without a valid token.
fn start_imds() -> (String, Arc<AtomicUsize>) {
    let tokenless = Arc::new(AtomicUsize::new(0));
    let t = tokenless.clone();
    let endpoint = http::serve(move |req| {
        let (status, body) = match (req.method.as_str(), req.path.as_str()) {
            ("PUT", "/latest/api/token") if req.header("x-aws-ec2-metadata-token-ttl-seconds").is_some() => ("200 OK", "TOKEN-123"),
            ("GET", _) if req.header("x-aws-ec2-metadata-token") != Some("TOKEN-123") => {
                t.fetch_add(1, Ordering::SeqCst);
                ("401 Unauthorized", "")
            }
            ("GET", "/latest/dynamic/instance-identity/document") => (
                "200 OK",
                r#"{"accountId":"123456789012","architecture":"x86_64","availabilityZone":"eu-west-1b","imageId":"ami-0abc","instanceId":"i-0123456789abcdef0","instanceType":"m5.large","privateIp":"10.1.2.3","region":"eu-west-1"}"#,
            ),
            ("GET", "/latest/meta-data/placement/region") => ("200 OK", "eu-west-2"),
            ("GET", "/latest/meta-data/tags/instance") => ("200 OK", "Name\nTeam"),
            ("GET", "/latest/meta-data/tags/instance/Name") => ("200 OK", "web-1"),
            ("GET", "/latest/meta-data/tags/instance/Team") => ("200 OK", "Payments"),
            _ => ("404 Not Found", ""),
        };
        Some(http::response(status, &[("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")], body.as_bytes()))
    });
    (endpoint, tokenless)
}

#[test]
fn add_ec2_metadata_reads_imdsv2_and_appends_in_agent_order() {
    let (endpoint, tokenless) = start_imds();
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.json");
    std::fs::write(
        &cfg,
        r#"{"flows": [{"filePattern": "/var/log/a.log", "deliveryStream": "s", "dataProcessingOptions": [
            {"optionName": "LOGTOJSON", "logFormat": "SYSLOG"},
            {"optionName": "ADDEC2METADATA", "logFormat": "SYSLOG"}]}]}"#,
    )
    .unwrap();
    let log = d.path().join("a.log");
    std::fs::write(&log, "Mar  7 04:22:00 h cron[1]: one\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["preview", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let record: String = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let prefix = r#"{"timestamp":"Mar  7 04:22:00","hostname":"h","program":"cron","processid":"1","message":"one","privateIp":"10.1.2.3","availabilityZone":"eu-west-1b","instanceId":"i-0123456789abcdef0","instanceType":"m5.large","accountId":"123456789012","amiId":"ami-0abc","region":"eu-west-1","metadataTimestamp":""#;
    assert!(record.starts_with(prefix), "{record}");
    assert!(record.ends_with("+0000\",\"tags\":{\"name\":\"web-1\",\"team\":\"Payments\"}}\n"), "{record}");
    assert_eq!(tokenless.load(Ordering::SeqCst), 0, "every GET carried the IMDSv2 token");
}

#[test]
fn add_ec2_metadata_passes_records_through_off_ec2() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.json");
    std::fs::write(&cfg, r#"{"flows": [{"filePattern": "/var/log/a.log", "deliveryStream": "s", "dataProcessingOptions": [{"optionName": "ADDEC2METADATA", "logFormat": "SYSLOG"}]}]}"#).unwrap();
    let log = d.path().join("a.log");
    std::fs::write(&log, "not json\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["preview", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "\"not json\\n\"\n");
}

#[test]
fn instance_tags_are_fetched_again_when_their_ttl_passes() {
    // the Team tag changes after the first fetch of the identity document
    let fetches = Arc::new(AtomicUsize::new(0));
    let f = fetches.clone();
    let endpoint = http::serve(move |req| {
        let team = if f.load(Ordering::SeqCst) <= 1 { "Payments" } else { "Billing" };
        let (status, body) = match (req.method.as_str(), req.path.as_str()) {
            ("PUT", "/latest/api/token") => ("200 OK", "T".to_string()),
            ("GET", "/latest/dynamic/instance-identity/document") => {
                f.fetch_add(1, Ordering::SeqCst);
                ("200 OK", r#"{"instanceId":"i-1","region":"eu-west-1"}"#.to_string())
            }
            ("GET", "/latest/meta-data/tags/instance") => ("200 OK", "Team".to_string()),
            ("GET", "/latest/meta-data/tags/instance/Team") => ("200 OK", team.to_string()),
            _ => ("404 Not Found", String::new()),
        };
        Some(http::response(status, &[("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")], body.as_bytes()))
    });
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    let out = d.path().join("out.log");
    std::fs::write(&log, "{\"n\":1}\n").unwrap();
    let cfg = d.path().join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\nflows:\n  - id: t\n    path: {}\n    processors: [{{type: add_ec2_metadata, tags: true, ttl_secs: 1}}]\n    sink: {{type: file, path: {}}}\n",
            d.path().join("cp.db").display(),
            log.display(),
            out.display()
        ),
    )
    .unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !read().contains("Payments") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // after the TTL the tags are read again
    while fetches.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::OpenOptions::new().append(true).open(&log).and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"n\":2}\n")).unwrap();
    while !read().contains("Billing") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    support::unsafe_kill(agent.id(), "TERM");
    let _ = agent.wait();
    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("\"n\":1") && lines[0].contains("\"team\":\"Payments\""), "{text}");
    assert!(lines[1].contains("\"n\":2") && lines[1].contains("\"team\":\"Billing\""), "refreshed on its TTL: {text}");
}

/// `logferry ARGS` with no region in the environment and no profile; instance metadata at
/// `imds` or, without it, off.
fn without_a_region(args: &[&str], imds: Option<&str>, home: &std::path::Path) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logferry"));
    c.args(args)
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"));
    match imds {
        Some(e) => c.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", e).env_remove("AWS_EC2_METADATA_DISABLED"),
        None => c.env("AWS_EC2_METADATA_DISABLED", "true"),
    };
    c.output().unwrap()
}

#[test]
fn a_kinesis_flow_without_a_region_sends_to_the_instances_region_and_without_any_is_refused_at_start_with_the_fix() {
    let (endpoint, _) = start_imds();
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"checkpointFile": "{}", "cloudwatch.emitMetrics": false, "flows": [{{"filePattern": "{}", "kinesisStream": "events"}}, {{"filePattern": "{}", "deliveryStream": "fh"}}]}}"#,
            d.path().join("cp.db").display(),
            d.path().join("a.log").display(),
            d.path().join("b.log").display()
        ),
    )
    .unwrap();
    let config = cfg.to_str().unwrap();
    let r = without_a_region(&["check", "--config", config], Some(&endpoint), d.path());
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{out}{}", String::from_utf8_lossy(&r.stderr));
    // Kinesis: the SDK's chain, instance metadata included; Firehose: us-east-1, as the Kinesis Agent
    assert!(out.contains("KinesisStream:events (eu-west-2, from instance metadata)"), "{out}");
    assert!(out.contains("DeliveryStream:fh (us-east-1, from the Kinesis Agent's default)"), "{out}");
    // the environment's region comes first
    let mut c = Command::new(env!("CARGO_BIN_EXE_logferry"));
    let r =
        c.args(["check", "--config", config]).env("AWS_REGION", "ap-south-1").env("AWS_EC2_METADATA_DISABLED", "true").output().unwrap();
    assert!(String::from_utf8_lossy(&r.stdout).contains("KinesisStream:events (ap-south-1, from AWS_REGION or AWS_DEFAULT_REGION)"));
    // no region anywhere: the agent does not start, and says what to set
    let r = without_a_region(&["run", "--config", config], None, d.path());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("no region for flow kinesis:events") && err.contains("AWS_REGION") && err.contains("instance metadata"), "{err}");
    assert!(!err.contains("flow fh:"), "Firehose keeps the Kinesis Agent's us-east-1: {err}");
    let r = without_a_region(&["check", "--config", config], None, d.path());
    assert!(String::from_utf8_lossy(&r.stdout).contains("no region here: run refuses this flow"), "{}", String::from_utf8_lossy(&r.stdout));
}

#[test]
fn cloudwatch_metrics_without_a_region_go_to_the_instances_region_and_without_any_the_agent_is_refused_at_start() {
    let (endpoint, _) = start_imds();
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\ncloudwatch: {{emit_metrics: true}}\nflows:\n  - id: local\n    path: {}\n    sink: {{type: file, path: {}}}\n",
            d.path().join("cp.db").display(),
            d.path().join("a.log").display(),
            d.path().join("out.log").display()
        ),
    )
    .unwrap();
    let config = cfg.to_str().unwrap();
    let r = without_a_region(&["check", "--config", config], Some(&endpoint), d.path());
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{out}{}", String::from_utf8_lossy(&r.stderr));
    assert!(out.contains("cloudwatch: metrics on, namespace logferry, to eu-west-2, from instance metadata"), "{out}");
    let r = without_a_region(&["run", "--config", config], None, d.path());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("no region for CloudWatch metrics (or set cloudwatch.region)") && err.contains("AWS_REGION"), "{err}");
}

/// IMDSv2 for instance `id` in `region` with instance metadata tags off (the EC2 default).
fn imds_without_tags(id: &str, region: &str) -> String {
    let doc = format!(r#"{{"accountId":"123456789012","instanceId":"{id}","instanceType":"m5.large","region":"{region}"}}"#);
    http::serve(move |req| {
        let (status, body) = match (req.method.as_str(), req.path.as_str()) {
            ("PUT", "/latest/api/token") => ("200 OK", "T".to_string()),
            ("GET", "/latest/dynamic/instance-identity/document") => ("200 OK", doc.clone()),
            _ => ("404 Not Found", String::new()),
        };
        Some(http::response(status, &[("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")], body.as_bytes()))
    })
}

/// `logferry preview` of one JSON line through ADDEC2METADATA, with instance metadata at `imds`
/// and EC2 at `ec2`: the record and the agent's log.
fn preview_with_ec2(imds: &str, ec2: &str) -> (serde_json::Value, String) {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.json");
    std::fs::write(
        &cfg,
        r#"{"flows": [{"filePattern": "/var/log/a.log", "deliveryStream": "s", "dataProcessingOptions": [{"optionName": "ADDEC2METADATA", "logFormat": "SYSLOG"}]}]}"#,
    )
    .unwrap();
    let log = d.path().join("a.log");
    std::fs::write(&log, "{\"n\":1}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["preview", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_ENDPOINT_URL_EC2", ec2)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("HOME", d.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let record: String = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    (serde_json::from_str(&record).unwrap(), stderr)
}

#[test]
fn without_instance_metadata_tags_the_tags_come_from_ec2_describe_tags() {
    let moto = support::emulators::moto();
    let id = String::from_utf8(support::emulators::aws(&[&moto.endpoint, "ec2-instance", "Name=web-7", "CostCenter=4711"])).unwrap();
    let imds = imds_without_tags(id.trim(), "us-east-1");
    let (record, log) = preview_with_ec2(&imds, &moto.endpoint);
    assert_eq!(record["instanceId"], id.trim(), "{record}");
    assert_eq!(record["tags"], serde_json::json!({"name": "web-7", "costcenter": "4711"}), "{record} {log}");
}

#[test]
fn when_describe_tags_is_not_allowed_records_go_without_tags_and_the_log_says_how_to_fix_it() {
    let refusing = http::serve(|_| {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>1</RequestID></Response>"#;
        Some(http::response("403 Forbidden", &[("Content-Type", "text/xml")], body.as_bytes()))
    });
    let imds = imds_without_tags("i-0123456789abcdef0", "eu-west-1");
    let (record, log) = preview_with_ec2(&imds, &refusing);
    assert_eq!(record["instanceId"], "i-0123456789abcdef0", "{record}");
    assert!(record.get("tags").is_none(), "{record}");
    assert!(log.contains("UnauthorizedOperation") && log.contains("allow ec2:DescribeTags"), "{log}");
}
