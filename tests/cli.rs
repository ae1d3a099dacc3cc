//! The `logferry` binary's configuration and preview commands, run as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn logferry(args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn check(cfg: &Path) -> Run {
    logferry(&["check", "--config", cfg.to_str().unwrap()])
}

#[test]
fn check_accepts_the_agent_json_aws_ships() {
    let r = check(&root().join("config-examples/kinesis-agent/agent.json"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("flow kinesis:yourkinesisstream:/tmp/app.log*"), "{}", r.stdout);
    assert!(r.stdout.contains("flow fh:yourdeliverystream:/tmp/app.log*"), "{}", r.stdout);
    assert!(r.stdout.contains("checkpoints: /var/lib/logferry/checkpoints.db"), "{}", r.stdout);
    assert!(r.stdout.contains("namespace AWSKinesisAgent"), "{}", r.stdout);
    assert!(r.stdout.contains("Firehose requests go to us-east-1") && r.stdout.contains("set \"firehose.endpoint\""), "{}", r.stdout);
    assert!(r.stdout.contains("CloudWatch metrics go to us-east-1"), "{}", r.stdout);
    assert!(r.stdout.contains("OK: 2 flows"));
    assert!(!r.stderr.contains("WARN"), "no warnings expected: {}", r.stderr);
}

#[test]
fn every_config_example_passes_check() {
    let mut n = 0;
    let mut stack = vec![root().join("config-examples")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if !p.ends_with("agent.d") {
                    stack.push(p)
                }
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml")) {
                let r = check(&p);
                assert_eq!(r.code, 0, "{}: {}", p.display(), r.stderr);
                n += 1;
            }
        }
    }
    assert!(n >= 3);
}

#[test]
fn comments_lenient_scalars_and_legacy_keys_are_accepted() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "agent.json",
        r#"// a comment
        {
          /* block comment */
          "log.level": "DEBUG", "log.file": "/tmp/x", "log.maxBackupIndex": 5, "log.maxFileSize": "10MB",
          "cloudwatch.emitMetrics": "no",
          "checkpointTimeToLiveDays": "010",
          "flows": [{ "filePattern": "/var/log/a.log", "deliveryStream": "s",
                      "maxBufferAgeMillis": "0x3E8", "maxBufferSizeRecords": "500", "initialPosition": "START_OF_FILE" }]
        }"#,
    );
    let r = check(&cfg);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("metrics off"), "{}", r.stdout);
    assert!(r.stdout.contains("rows not updated for 8 days are removed"), "octal 010 is 8: {}", r.stdout);
    assert!(r.stdout.contains("1000 ms"), "0x3E8 is 1000: {}", r.stdout);
    assert!(r.stdout.contains("START_OF_FILE"));
    assert!(!r.stderr.contains("unknown key"), "legacy log.* keys are accepted silently: {}", r.stderr);
}

#[test]
fn bad_values_are_refused_with_file_key_and_range() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "agent.json",
        r#"{"flows": [{ "filePattern": "/var/log/a.log", "deliveryStream": "s",
             "maxBufferAgeMillis": 10, "maxBufferSizeRecords": 501, "initialPosition": "start_of_file",
             "maxBufferSizeBytes": 1000.5, "partitionKeyOption": "RANDOM" }]}"#,
    );
    let r = check(&cfg);
    assert_eq!(r.code, 1);
    let file = cfg.display().to_string();
    assert!(
        r.stderr.contains(&format!("{file}: `flows[0].maxBufferAgeMillis`: value 10 is outside of valid range [1000..900000]")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("`flows[0].maxBufferSizeRecords`: value 501 is outside of valid range [1..500]"), "{}", r.stderr);
    assert!(r.stderr.contains("`flows[0].initialPosition`: \"start_of_file\" is not one of START_OF_FILE, END_OF_FILE"), "{}", r.stderr);
    assert!(r.stderr.contains("`flows[0].maxBufferSizeBytes`: 1000.5 is not a whole number"), "{}", r.stderr);
    assert!(r.stderr.contains("refused (4 errors)"), "{}", r.stderr);
}

#[test]
fn data_processing_options_as_an_object_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "agent.json",
        r#"{"flows": [{ "filePattern": "/var/log/a.log", "deliveryStream": "s",
             "dataProcessingOptions": { "optionName": "LOGTOJSON", "logFormat": "SYSLOG" } }]}"#,
    );
    let r = check(&cfg);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("`flows[0].dataProcessingOptions`: must be a list of processors"), "{}", r.stderr);
}

#[test]
fn unknown_keys_are_reported_with_the_closest_known_key() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "agent.json",
        r#"{"cloudwatch.emitMetric": false, "maxBufferAgeMillis": 5000,
            "flows": [{ "filePattern": "/var/log/a.log", "deliveryStream": "s", "multiLineStartPatern": "^x",
                        "dataProcessingOptions": [{"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "customFieldName": ["a"]}] }]}"#,
    );
    let r = check(&cfg);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("`cloudwatch.emitMetric`: unknown key, ignored; did you mean `cloudwatch.emitMetrics`?"), "{}", r.stderr);
    assert!(
        r.stderr.contains("`flows[0].multiLineStartPatern`: unknown key, ignored; did you mean `multiLineStartPattern`?"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("`flows[0].dataProcessingOptions[0].customFieldName`: unknown key, ignored; did you mean `customFieldNames`?"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("`maxBufferAgeMillis`: unknown key"), "a per-flow key at top level is reported: {}", r.stderr);
}

#[test]
fn agent_d_flows_are_merged_and_unparsable_files_skipped_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "agent.json", r#"{"flows": [{ "filePattern": "/var/log/a.log", "deliveryStream": "one" }]}"#);
    write(d.path(), "agent.d/b.json", r#"{"flows": [{ "filePattern": "/var/log/b.log", "kinesisStream": "two" }]}"#);
    write(d.path(), "agent.d/README", "not json at all");
    let r = check(&cfg);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("flow fh:one:/var/log/a.log") && r.stdout.contains("flow kinesis:two:/var/log/b.log"), "{}", r.stdout);
    assert!(r.stderr.contains("agent.d/README: skipped: not valid JSON"), "{}", r.stderr);
    write(d.path(), "agent.d/c.json", r#"{"flows": [{ "filePattern": "/var/log/a.log", "deliveryStream": "one" }]}"#);
    let r = check(&cfg);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("duplicate flow \"fh:one:/var/log/a.log\""), "{}", r.stderr);
}

#[test]
fn flow_type_precedence_and_missing_pieces() {
    let d = tempfile::tempdir().unwrap();
    let cfg =
        write(d.path(), "agent.json", r#"{"flows": [{ "filePattern": "/var/log/a.log", "deliveryStream": "fh", "kinesisStream": "ks" }]}"#);
    let r = check(&cfg);
    assert!(r.stdout.contains("flow fh:fh:/var/log/a.log") && r.stdout.contains("DeliveryStream:fh"), "{}", r.stdout);
    let cfg = write(d.path(), "agent.json", r#"{"flows": [{ "filePattern": "/var/log/a.log" }]}"#);
    let r = check(&cfg);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("could not recognize flow type"), "{}", r.stderr);
    let cfg = write(d.path(), "agent.json", r#"{"flows": []}"#);
    let r = check(&cfg);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("there are no flows configured"), "{}", r.stderr);
    let cfg = write(d.path(), "agent.json", r#"{"flows": [ "#);
    let r = check(&cfg);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not valid JSON"), "{}", r.stderr);
}

#[test]
fn patterns_the_engine_cannot_run_are_refused_naming_the_construct() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "agent.json",
        r#"{"flows": [{ "filePattern": "/var/log/a.log", "deliveryStream": "s",
             "dataProcessingOptions": [{"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "matchPattern": "(\\w+)(?=x)", "customFieldNames": ["a"]},
                                       {"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "matchPattern": "(\\w+) (\\w+)", "customFieldNames": ["a"]}] }]}"#,
    );
    let r = check(&cfg);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("`flows[0].dataProcessingOptions[0].matchPattern`") && r.stderr.contains("look-ahead"), "{}", r.stderr);
    assert!(r.stderr.contains("names 1 fields but matchPattern has 2 capturing groups"), "{}", r.stderr);
}

fn agent_json_with(dir: &Path, processors: &str) -> PathBuf {
    write(
        dir,
        "agent.json",
        &format!(r#"{{"flows": [{{ "filePattern": "/var/log/a.log", "deliveryStream": "s", "dataProcessingOptions": {processors} }}]}}"#),
    )
}

#[test]
fn preview_matches_java_oracle_for_every_log_format() {
    let d = tempfile::tempdir().unwrap();
    let input = root().join("tests/data/golden/mixed.log");
    for format in ["COMMONAPACHELOG", "COMBINEDAPACHELOG", "APACHEERRORLOG", "SYSLOG", "RFC3339SYSLOG"] {
        let cfg = agent_json_with(d.path(), &format!(r#"[{{"optionName": "LOGTOJSON", "logFormat": "{format}"}}]"#));
        let r = logferry(&["preview", "--config", cfg.to_str().unwrap(), input.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let expected = std::fs::read_to_string(root().join(format!("tests/data/golden/{format}.expected"))).unwrap();
        assert!(expected.lines().count() > 30);
        for (i, (got, want)) in r.stdout.lines().zip(expected.lines()).enumerate() {
            assert_eq!(got, want, "{format}: record {i} differs");
        }
        assert_eq!(r.stdout.lines().count(), expected.lines().count(), "{format}");
        let dropped = 801 - expected.lines().count();
        assert!(r.stderr.contains(&format!("{} records, {dropped} dropped", expected.lines().count())), "{}", r.stderr);
    }
}

#[test]
fn preview_contract_last_line_drops_and_summary() {
    let d = tempfile::tempdir().unwrap();
    let log = write(
        d.path(),
        "a.log",
        "Mar  7 04:22:00 h cron[1]: one\nnot syslog\nMar  7 04:22:01 h cron[0]: pid zero\nMar  7 04:22:02 h cron: last",
    );
    let cfg = agent_json_with(d.path(), r#"[{"optionName": "LOGTOJSON", "logFormat": "SYSLOG"}]"#);
    let r = logferry(&["preview", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        concat!(
            r#""{\"timestamp\":\"Mar  7 04:22:00\",\"hostname\":\"h\",\"program\":\"cron\",\"processid\":\"1\",\"message\":\"one\"}\n""#,
            "\n",
            r#""{\"timestamp\":\"Mar  7 04:22:02\",\"hostname\":\"h\",\"program\":\"cron\",\"processid\":null,\"message\":\"last\"}\n""#,
            "\n"
        )
    );
    assert!(r.stderr.contains("preview: 2 records, 2 dropped, 0 truncated"), "{}", r.stderr);

    let raw = agent_json_with(d.path(), "[]");
    let r = logferry(&["preview", "--config", raw.to_str().unwrap(), log.to_str().unwrap()]);
    assert_eq!(r.stdout.lines().count(), 4);
    assert_eq!(r.stdout.lines().last().unwrap(), r#""Mar  7 04:22:02 h cron: last""#, "an unterminated last line is a record as it is");
}

#[test]
fn preview_needs_a_flow_choice_with_several_flows() {
    let d = tempfile::tempdir().unwrap();
    let log = write(d.path(), "a.log", "x\n");
    let cfg = root().join("config-examples/kinesis-agent/agent.json");
    let r = logferry(&["preview", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("has 2 flows; choose one with --flow: kinesis:yourkinesisstream:/tmp/app.log*, fh:yourdeliverystream:/tmp/app.log*"),
        "{}",
        r.stderr
    );
    let r =
        logferry(&["preview", "--config", cfg.to_str().unwrap(), "--flow", "fh:yourdeliverystream:/tmp/app.log*", log.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "\"x\\n\"\n");
    let r = logferry(&["preview", "--config", cfg.to_str().unwrap(), "--flow", "nope", log.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no flow \"nope\""), "{}", r.stderr);
}

#[test]
fn preview_applies_header_skip_multiline_singleline_and_truncation() {
    let d = tempfile::tempdir().unwrap();
    let log = write(d.path(), "a.log", "header one\nheader two\n2024-01-01 first\n  at a.b(C.java:1)\n  at c.d\n2024-01-02 second\n");
    let cfg = write(
        d.path(),
        "agent.json",
        r#"{"flows": [{ "filePattern": "/var/log/a.log", "deliveryStream": "s", "skipHeaderLines": 2,
              "multiLineStartPattern": "\\d{4}-", "truncatedRecordTerminator": "...\n",
              "dataProcessingOptions": [{"optionName": "SINGLELINE"}] }]}"#,
    );
    let r = logferry(&["preview", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "\"2024-01-01 firstat a.b(C.java:1)at c.d\\n\"\n\"2024-01-02 second\\n\"\n");

    let big = "x".repeat(1_100_000);
    let log = write(d.path(), "big.log", &format!("{big}\nshort\n"));
    let cfg = agent_json_with(d.path(), "[]");
    let r = logferry(&["preview", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()]);
    let first: String = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first.len(), 1_024_000, "Firehose records are cut to 1,024,000 bytes");
    assert!(first.ends_with("x\n"), "the terminator replaces the last byte");
    assert!(r.stderr.contains("2 records, 0 dropped, 1 truncated"), "{}", r.stderr);
}

#[test]
fn migrated_native_yaml_sends_the_same_records() {
    let d = tempfile::tempdir().unwrap();
    let input = root().join("tests/data/golden/mixed.log");
    let cases = [
        r#"[{"optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG", "jsonFormat": "PRETTYPRINT"}]"#,
        r#"[{"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "matchPattern": "(\\w+) (.*)", "customFieldNames": ["a", "b"]}]"#,
        r#"[{"optionName": "SINGLELINE"}, {"optionName": "CSVTOJSON", "customFieldNames": ["a", "b", "c"], "delimiter": "\\s+"}]"#,
        r#"[{"optionName": "ADDMETADATA", "metadata": {"env": "prod", "n": [1, 2]}}]"#,
    ];
    for (i, procs) in cases.iter().enumerate() {
        let cfg = write(
            d.path(),
            &format!("c{i}/agent.json"),
            &format!(
                r#"{{"flows": [{{ "filePattern": "/var/log/a.log", "deliveryStream": "s", "skipHeaderLines": 3, "dataProcessingOptions": {procs} }}]}}"#
            ),
        );
        let m = logferry(&["migrate", cfg.to_str().unwrap()]);
        assert_eq!(m.code, 0, "{}", m.stderr);
        assert!(m.stdout.contains("id: fh:s:/var/log/a.log"), "flow ids are kept: {}", m.stdout);
        assert!(m.stdout.contains("region: us-east-1"), "the us-east-1 default is made explicit: {}", m.stdout);
        assert!(
            m.stdout.contains("shutdown_timeout_ms: 10000") && !m.stdout.contains("serde_json"),
            "numbers are YAML numbers: {}",
            m.stdout
        );
        let yaml = write(d.path(), &format!("c{i}/native.yaml"), &m.stdout);
        let a = logferry(&["preview", "--config", cfg.to_str().unwrap(), input.to_str().unwrap()]);
        let b = logferry(&["preview", "--config", yaml.to_str().unwrap(), input.to_str().unwrap()]);
        assert_eq!(b.code, 0, "{}", b.stderr);
        assert!(a.stdout.lines().count() > 50, "case {i}");
        assert_eq!(a.stdout, b.stdout, "case {i}: migrated config changes records");
    }
}

#[test]
fn native_yaml_typed_output_and_errors() {
    let d = tempfile::tempdir().unwrap();
    let log = write(
        d.path(),
        "a.log",
        "::1 - - [10/Oct/2000:13:55:36 -0700] \"GET /healthz HTTP/1.1\" 200 2 \"-\" \"kube-probe\"\r\n::1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 404 - \"-\" \"curl\"\r\ngarbage\n",
    );
    let cfg = write(
        d.path(),
        "native.yaml",
        "flows:\n  - id: web\n    path: /var/log/*/access.log\n    processors:\n      - type: filter\n        exclude: ['healthz']\n      - type: parse\n        format: apache_combined\n    sink: {type: stdout}\n",
    );
    let r = logferry(&["preview", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "\"{\\\"host\\\":\\\"::1\\\",\\\"ident\\\":null,\\\"authuser\\\":null,\\\"datetime\\\":\\\"2000-10-10T20:55:36Z\\\",\\\"request\\\":\\\"GET / HTTP/1.1\\\",\\\"response\\\":404,\\\"bytes\\\":null,\\\"referer\\\":null,\\\"agent\\\":\\\"curl\\\"}\\n\"\n\"garbage\\n\"\n"
    );
    assert!(r.stderr.contains("2 records, 1 dropped"), "{}", r.stderr);

    let bad = write(
        d.path(),
        "bad.yaml",
        "flows:\n  - id: web\n    path: /x\n    procesors: []\n    processors:\n      - type: parse\n        format: nginx\n    sink: {type: kinesis}\n",
    );
    let r = check(&bad);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("`flows[0].processors[0].format`: \"nginx\" is not one of apache_common"), "{}", r.stderr);
    assert!(r.stderr.contains("`flows[0].sink.stream`: is required"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `processors`?"), "{}", r.stderr);

    let null_stream = write(d.path(), "null.yaml", "flows:\n  - id: web\n    path: /x\n    sink:\n      type: firehose\n      stream:\n");
    let r = check(&null_stream);
    assert_eq!(r.code, 1, "a sink with an empty stream must not become another sink: {}", r.stdout);
    assert!(r.stderr.contains("`flows[0].sink.stream`: is required"), "{}", r.stderr);
}

#[test]
fn aws_sink_options_are_shown_by_check_and_mistakes_refused() {
    let d = tempfile::tempdir().unwrap();
    let good = write(
        d.path(),
        "good.yaml",
        "checkpoint_file: /var/lib/logferry/checkpoints.db\nflows:\n  - id: sys\n    path: /var/log/syslog\n    oversized_records: split\n    buffer: {max_bytes: 10485760}\n    sink:\n      type: kinesis\n      stream: logs.v2_raw-1\n      aggregation: kpl\n      compression: zstd\n      max_record_bytes: 10485760\n      max_request_bytes: 10485760\n",
    );
    let r = check(&good);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // 10 MiB minus the longest key, minus what zstd may add to incompressible data
    let room = 10_485_760 - 256;
    let max = room - (room / 128 + 512);
    assert!(r.stdout.contains(&format!("longer than {max} bytes split into pieces")), "{}", r.stdout);
    assert!(r.stdout.contains("KPL aggregates of up to 51200 bytes"), "{}", r.stdout);
    assert!(r.stdout.contains("raised limits: records 10485760 bytes, requests 10485760 bytes"), "{}", r.stdout);
    assert!(r.stdout.contains("each record zstd-compressed"), "{}", r.stdout);
    assert!(r.stdout.contains("records rejected as invalid go to /var/lib/logferry/dead-letter/sys.jsonl"), "{}", r.stdout);

    let bad = write(
        d.path(),
        "bad.yaml",
        "flows:\n  - id: a\n    path: /x\n    sink: {type: kinesis, stream: 'my stream', aggregate_max_bytes: 4096, compression: lz4, max_record_bytes: 20000000}\n  - id: b\n    path: /y\n    sink: {type: kinesis, stream: s, max_record_bytes: 8388608, max_request_bytes: 2097152}\n",
    );
    let r = check(&bad);
    assert_eq!(r.code, 1);
    for expected in [
        "`flows[0].sink.stream`: \"my stream\" contains ' '",
        "`flows[0].sink.aggregate_max_bytes`: applies only with `aggregation: kpl`",
        "`flows[0].sink.compression`: \"lz4\" is not one of none, gzip, zstd",
        "`flows[0].sink.max_record_bytes`",
        "`flows[1].sink.max_request_bytes`: must be at least max_record_bytes",
    ] {
        assert!(r.stderr.contains(expected), "{expected}\n{}", r.stderr);
    }
    let agent_json = write(
        d.path(),
        "agent.json",
        r#"{"flows": [{"filePattern": "/x", "deliveryStream": "arn:aws:firehose:us-east-1:1:deliverystream/x"}]}"#,
    );
    let r = check(&agent_json);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("`flows[0].deliveryStream`") && r.stderr.contains("contains ':'"), "{}", r.stderr);
    let packed_before_parsing = write(
        d.path(),
        "agg.json",
        r#"{"flows": [{"filePattern": "/x", "deliveryStream": "s", "aggregatedRecordSizeBytes": 4096,
                       "dataProcessingOptions": [{"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG"}]}]}"#,
    );
    let r = check(&packed_before_parsing);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("packs lines before the processors run"), "{}", r.stderr);
}

#[test]
fn the_built_in_example_runs_without_aws_and_prints_what_it_ships() {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("config-examples/demo/access.log"), d.path().join("access.log")).unwrap();
    let yaml = std::fs::read_to_string(root().join("config-examples/demo/logferry.yaml")).unwrap();
    let yaml = yaml.replace("/tmp/logferry-demo/checkpoints.db", "state/checkpoints.db");
    let cfg = write(d.path(), "logferry.yaml", &yaml);
    let child = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 30);
    assert!(stdout.lines().all(|l| l.starts_with("{\"host\":") && l.contains("\"response\":")), "{stdout}");
}

#[test]
fn preview_splits_an_oversized_record_where_run_splits_it() {
    let d = tempfile::tempdir().unwrap();
    // 2.5 MB: over the file sink's largest record (1,024,000 bytes); 6 MiB: over max_line_bytes
    let long: String = (0..2_500_000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let longer: String = (0..6 << 20).map(|i| (b'0' + (i % 10) as u8) as char).collect();
    let log = write(d.path(), "big.log", &format!("{long}\nshort\n{longer}\n"));
    for (policy, pieces) in [("split", vec![long.clone(), "short".to_string(), longer.clone()]), ("truncate", vec![])] {
        let cfg = write(
            d.path(),
            &format!("{policy}.yaml"),
            &format!(
                "checkpoint_file: {}/cp.db\nflows:\n  - id: f\n    path: {}\n    oversized_records: {policy}\n    sink: {{type: file, path: {}/out.log}}\n",
                d.path().display(),
                log.display(),
                d.path().display()
            ),
        );
        let r = logferry(&["preview", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let records: Vec<String> = r.stdout.lines().map(|l| serde_json::from_str::<String>(l).unwrap()).collect();
        assert!(records.iter().all(|p| p.len() <= 1_024_000), "{policy}: every record within the sink's limit");
        if policy == "split" {
            // the pieces concatenate back to the lines, as `run` ships them
            let joined: String = records.concat();
            let lines: String = pieces.iter().map(|l| format!("{l}\n")).collect();
            assert!(joined == lines, "split: the pieces are the lines, in order ({} bytes for {})", joined.len(), lines.len());
            assert!(records.len() > 3 + 6, "{} pieces", records.len());
            assert!(r.stderr.contains("0 truncated") && !r.stderr.contains(" 0 split"), "{}", r.stderr);
        } else {
            assert_eq!(records.len(), 3);
            assert!(r.stderr.contains("2 truncated"), "{}", r.stderr);
        }
    }
}

#[test]
fn environment_values_fill_native_strings_and_an_unset_one_without_default_is_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "logferry.yaml",
        "checkpoint_file: ${STATE_DIR}/cp.db\nflows:\n  - id: app\n    path: ${LOG_DIR}/app.log\n    multiline: {start_pattern: '^\\d+$'}\n    sink: {type: file, path: '${OUT_FILE:-/tmp/logferry-env-test.out}'}\n",
    );
    let run = |vars: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_logferry"));
        c.args(["check", "--config", cfg.to_str().unwrap()]).env("AWS_EC2_METADATA_DISABLED", "true");
        for v in ["STATE_DIR", "LOG_DIR", "OUT_FILE"] {
            c.env_remove(v);
        }
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = run(&[("STATE_DIR", "/var/lib/x"), ("LOG_DIR", "/srv/app/logs")]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("checkpoints: /var/lib/x/cp.db"), "{said}");
    assert!(said.contains("files: /srv/app/logs/app.log"), "{said}");
    assert!(said.contains("File:/tmp/logferry-env-test.out"), "the default: {said}");
    assert!(said.contains("^\\\\d+$"), "a regex's `$` stays: {said}");
    // LOG_DIR unset: refused, naming the variable and the key
    let out = run(&[("STATE_DIR", "/var/lib/x")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`flows[0].path`") && err.contains("the environment variable LOG_DIR is not set"), "{err}");
}

#[test]
fn a_held_flow_still_previews_and_migrates_with_a_note() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "agent.json",
        r#"{"flows": [{"filePattern": "/var/log/app.log", "deliveryStream": "s", "dataProcessingOptions": [
            {"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "matchPattern": "(\\w+) (.*)", "customFieldNames": ["word"]}]}]}"#,
    );
    let log = write(d.path(), "app.log", "hello world\n");
    let r = logferry(&["preview", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("is held back, not started by run") && r.stderr.contains("capturing groups"), "{}", r.stderr);
    assert!(r.stderr.contains("1 dropped"), "what it would do is why it is held: {}", r.stderr);
    let r = logferry(&["migrate", cfg.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("# Flow fh:s:/var/log/app.log is held back, not started, until it is fixed"), "{}", r.stdout);
    assert!(r.stdout.contains("id: fh:s:/var/log/app.log"), "{}", r.stdout);
}

#[test]
fn multiline_presets_group_plain_files_and_container_streams_in_preview_and_mistakes_are_refused() {
    let d = tempfile::tempdir().unwrap();
    // a plain file: Python tracebacks from real projects' logs
    let cfg = write(
        d.path(),
        "py.yaml",
        "flows:\n  - id: app\n    path: /var/log/app.log\n    multiline: {preset: python}\n    sink: {type: stdout}\n",
    );
    let input = root().join("tests/data/stacktraces/python.log");
    let r = logferry(&["preview", "--config", cfg.to_str().unwrap(), input.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/data/stacktraces/expected.json")).unwrap()).unwrap();
    let got: Vec<String> =
        r.stdout.lines().map(|l| serde_json::from_str::<String>(l).unwrap().trim_end_matches('\n').to_string()).collect();
    let want: Vec<&str> = expected["python"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(got, want);

    // a container log: a Java trace on stderr in CRI partial lines, stdout lines in between
    let cfg = write(
        d.path(),
        "k8s.yaml",
        "flows:\n  - id: pods\n    path: /var/log/containers/*.log\n    container_logs: {format: cri}\n    multiline: {preset: java, flush_timeout_ms: 2000}\n    sink: {type: stdout}\n",
    );
    let log = write(
        d.path(),
        "containers/web-1_shop_app-0000.log",
        "2024-05-01T10:00:00.1Z stderr F java.lang.IllegalStateException: boom\n\
         2024-05-01T10:00:00.2Z stdout F GET / 200\n\
         2024-05-01T10:00:00.3Z stderr P \tat com.example.App.ru\n\
         2024-05-01T10:00:00.4Z stderr F n(App.java:10)\n\
         2024-05-01T10:00:00.5Z stdout F GET /a 200\n\
         2024-05-01T10:00:00.6Z stderr F Caused by: java.io.IOException: disk\n\
         2024-05-01T10:00:00.7Z stderr F \t... 3 more\n\
         2024-05-01T10:00:00.8Z stderr F INFO recovered\n",
    );
    let r = logferry(&["preview", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let records: Vec<serde_json::Value> =
        r.stdout.lines().map(|l| serde_json::from_str(&serde_json::from_str::<String>(l).unwrap()).unwrap()).collect();
    let logs: Vec<&str> = records.iter().map(|r| r["log"].as_str().unwrap()).collect();
    assert_eq!(
        logs,
        [
            "GET / 200",
            "GET /a 200",
            "java.lang.IllegalStateException: boom\n\tat com.example.App.run(App.java:10)\nCaused by: java.io.IOException: disk\n\t... 3 more",
            "INFO recovered"
        ]
    );
    assert_eq!(records[2]["kubernetes"]["pod"], "web-1");
    let r = check(&cfg);
    assert!(r.stdout.contains("then multi-line per stream: the java preset"), "{}", r.stdout);

    for (yaml, error) in [
        (
            "{preset: java, start_pattern: 'x'}",
            "give exactly one of start_pattern, continuation_pattern and preset (found start_pattern and preset)",
        ),
        ("{flush_timeout_ms: 5}", "give exactly one of start_pattern, continuation_pattern and preset (found none)"),
        ("{preset: ruby}", "unknown preset \"ruby\": expected one of java, python, go, indented"),
        ("{continuation_pattern: '(?<=a)b'}", "`flows[0].multiline.continuation_pattern`: pattern"),
    ] {
        let cfg = write(
            d.path(),
            "bad.yaml",
            &format!("flows:\n  - id: app\n    path: /var/log/app.log\n    multiline: {yaml}\n    sink: {{type: stdout}}\n"),
        );
        let r = check(&cfg);
        assert_eq!(r.code, 1, "{yaml}");
        assert!(r.stderr.contains(error), "{yaml}: {}", r.stderr);
    }
}

#[test]
fn field_processors_are_described_by_check_and_mistakes_refused_by_key() {
    let d = tempfile::tempdir().unwrap();
    let flow = |processors: &str| {
        format!("flows:\n  - id: pods\n    path: /var/log/containers/*.log\n    container_logs: {{format: cri}}\n    processors:\n{processors}    sink: {{type: stdout}}\n")
    };
    let good = write(
        d.path(),
        "good.yaml",
        &flow("      - {type: json, field: log, merge: true, keep_original: true}\n      - {type: regex, field: msg, pattern: '^(?<level>[A-Z]+) ', into: parsed, on_mismatch: drop}\n      - {type: rename, fields: {kubernetes.pod: pod}}\n      - {type: remove, fields: [stream]}\n      - {type: lift, field: kubernetes}\n"),
    );
    let r = check(&good);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for shown in [
        "parse field log as json, merged into the record, original kept",
        "parse field msg as regex",
        "rename kubernetes.pod → pod",
        "remove stream",
        "lift kubernetes",
    ] {
        assert!(r.stdout.contains(shown), "{shown}: {}", r.stdout);
    }
    for (processors, error) in [
        (
            "      - {type: json, field: log}\n",
            "`flows[0].processors[0].field`: say where the parsed fields go: `merge: true` (into the record) or `into: FIELD`",
        ),
        ("      - {type: json, field: log, merge: true, into: x}\n", "`flows[0].processors[0].into`: give `merge: true`"),
        ("      - {type: parse, field: 'a..b', format: syslog, merge: true}\n", "\"a..b\" is not a field path"),
        ("      - {type: parse, field: log, format: nginx, merge: true}\n", "\"nginx\" is not one of apache_common"),
        ("      - {type: rename, fields: [a, b]}\n", "`flows[0].processors[0].fields`: expected a mapping of field names (from: to)"),
        ("      - {type: remove}\n", "`flows[0].processors[0].fields`: is required: the fields to remove"),
        ("      - {type: lift}\n", "`flows[0].processors[0].field`: is required"),
        ("      - {type: merge}\n", "is not one of parse, regex, json, filter, rename, copy, remove, lift"),
    ] {
        let r = check(&write(d.path(), "bad.yaml", &flow(processors)));
        assert_eq!(r.code, 1, "{processors}");
        assert!(r.stderr.contains(error), "{processors}: {}", r.stderr);
    }
}

#[test]
fn check_prints_a_cloudwatch_logs_destinations_names_and_refuses_what_the_service_would_not_take() {
    let d = tempfile::tempdir().unwrap();
    let good = write(
        d.path(),
        "cwl.yaml",
        "flows:\n  - id: audit\n    path: /var/log/audit.log\n    sink: {type: cloudwatch_logs, region: eu-west-1, log_group: '/aws/rds/cluster/db/audit', log_stream: '{instance_id}', create_missing: true, retention_days: 30, timestamp: {field: ts, format: '%Y-%m-%d %H:%M:%S'}}\n",
    );
    let r = check(&good);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for expected in [
        "destination: LogGroup:/aws/rds/cluster/db/audit (eu-west-1, from the sink's region)",
        "log group \"/aws/rds/cluster/db/audit\", log stream \"{instance_id}\"",
        "event time: field \"ts\"",
        "a missing group or stream is created (retention: 30 days)",
        "longer than 262118 bytes truncated",
        "batches: up to 10000 records",
    ] {
        assert!(r.stdout.contains(expected), "{expected}\n{}", r.stdout);
    }
    let bad = write(
        d.path(),
        "bad.yaml",
        "flows:\n  - id: a\n    path: /x\n    sink: {type: cloudwatch_logs, log_group: '/app/{host}', log_stream: 'a:b', compression: gzip, retention_days: 8, timestamp: {field: t, format: sometimes}}\n  - id: b\n    path: /y\n    sink: {type: cloudwatch_logs, log_group: 'my group', kms_key_id: k, max_event_bytes: 2000000}\n",
    );
    let r = check(&bad);
    assert_eq!(r.code, 1);
    for expected in [
        "`flows[0].sink.log_group`: \"/app/{host}\": \"{host}\" is not a placeholder",
        "`flows[0].sink.log_stream`: \"a:b\": ':' cannot be in a log stream name",
        "`flows[0].sink.compression`: does not apply to cloudwatch_logs",
        "`flows[0].sink.retention_days`: 8 is not a retention CloudWatch Logs takes",
        "`flows[0].sink.timestamp.format`: \"sometimes\" is not rfc3339",
        "`flows[1].sink.log_group`: \"my group\": ' ' cannot be in a log group name",
        "`flows[1].sink.create_missing`: retention_days, kms_key_id and tags apply to a group the sink creates",
        "`flows[1].sink.max_event_bytes`",
    ] {
        assert!(r.stderr.contains(expected), "{expected}\n{}", r.stderr);
    }
}
