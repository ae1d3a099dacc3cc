//! What a log line, a configuration, a local client or the agent's own state can do to the
//! running agent: each test drives the release-like binary into one of the ways it used to crash,
//! stall, lose records or ship what it must not, and proves it now holds.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const T: Duration = Duration::from_secs(60);

fn append(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(bytes).unwrap();
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).lines().map(String::from).collect()).unwrap_or_default()
}

struct Run {
    code: i32,
    out: String,
}

fn logferry(args: &[&str]) -> Run {
    let o = Command::new(env!("CARGO_BIN_EXE_logferry")).args(args).env("AWS_EC2_METADATA_DISABLED", "true").output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        out: format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    }
}

fn check(dir: &Path, yaml: &str) -> Run {
    let cfg = dir.join("check.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    logferry(&["check", "--config", cfg.to_str().unwrap()])
}

fn venv_python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(p.exists(), "scripts/test.sh makes .venv");
    p
}

fn abuse(base: &str, mode: &str, seconds: u32) -> Command {
    let addr = base.trim_start_matches("http://");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut c = Command::new(venv_python());
    c.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/abuse.py")).args([host, port, mode, &seconds.to_string()]);
    c
}

// 1. A timestamp whose UTC time leaves the calendar used to panic the engine thread, and the
// restarted agent read the same line and died again.
#[test]
fn timestamps_beyond_the_calendar_are_shipped_as_written_and_the_agent_survives_restarts() {
    let d = tempfile::tempdir().unwrap();
    let syslog = d.path().join("syslog.log");
    let access = d.path().join("access.log");
    append(&syslog, b"2024-05-01T10:00:00+02:00 host app[1]: before\n9999-12-31T23:59:59-23:59 host app[1]: the end of time\n0000-01-01T00:00:00+23:59 host app[1]: before time\n2024-05-01T10:00:01Z host app[1]: after\n");
    let ua = "\"-\" \"curl/8.0\"";
    append(
        &access,
        format!("10.0.0.1 - - [31/Dec/9999:23:59:59 -2359] \"GET / HTTP/1.1\" 200 5 {ua}\n10.0.0.1 - - [01/Jan/0000:00:00:00 +2359] \"GET / HTTP/1.1\" 200 5 {ua}\n10.0.0.2 - - [01/May/2024:10:00:00 +0000] \"GET /ok HTTP/1.1\" 200 7 {ua}\n").as_bytes(),
    );
    let cfg = d.path().join("logferry.yaml");
    let flow = |id: &str, path: &Path, format: &str| {
        format!(
            "  - id: {id}\n    path: {}\n    processors: [{{type: parse, format: {format}}}]\n    sink: {{type: file, path: {}}}\n",
            path.display(),
            d.path().join(format!("out/{id}.log")).display()
        )
    };
    let yaml = format!(
        "checkpoint_file: {}\nflows:\n{}{}{}",
        d.path().join("cp.db").display(),
        flow("rfc3339", &syslog, "rfc3339_syslog"),
        flow("apache", &access, "apache_combined"),
        flow("common", &access, "apache_common")
    );
    std::fs::write(&cfg, yaml).unwrap();
    let err = d.path().join("agent.err");
    for round in 0..2 {
        let mut agent = run_agent(&cfg, &err);
        let deadline = Instant::now() + T;
        while lines_of(&d.path().join("out/rfc3339.log")).len() < 4
            || lines_of(&d.path().join("out/apache.log")).len() < 3
            || lines_of(&d.path().join("out/common.log")).len() < 3
        {
            assert!(agent.try_wait().unwrap().is_none(), "the agent died: {}", std::fs::read_to_string(&err).unwrap());
            assert!(Instant::now() < deadline, "not shipped: {}", std::fs::read_to_string(&err).unwrap());
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        unsafe_kill(agent.id(), "TERM");
        let status = wait_timeout(&mut agent, T).expect("stops");
        assert_eq!(status.code(), Some(0), "round {round}: {}", std::fs::read_to_string(&err).unwrap());
    }
    let rfc = lines_of(&d.path().join("out/rfc3339.log"));
    assert_eq!(rfc.len(), 4, "nothing shipped twice: {rfc:?}");
    let end: serde_json::Value = serde_json::from_str(&rfc[1]).unwrap();
    assert_eq!(end["timestamp"], "9999-12-31T23:59:59-23:59", "kept as written: {end}");
    let before: serde_json::Value = serde_json::from_str(&rfc[2]).unwrap();
    assert_eq!(before["timestamp"], "0000-01-01T00:00:00+23:59", "{before}");
    let after: serde_json::Value = serde_json::from_str(&rfc[3]).unwrap();
    assert_eq!(after["timestamp"], "2024-05-01T10:00:01Z");
    for id in ["apache", "common"] {
        let got = lines_of(&d.path().join(format!("out/{id}.log")));
        assert_eq!(got.len(), 3, "{got:?}");
        let end: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(end["host"], "10.0.0.1", "{end}");
        assert!(got[0].contains("9999"), "{}", got[0]);
        assert!(got[2].contains("/ok"), "{}", got[2]);
    }
}

// 2. Two flows writing one output file: a failed write of one cut the file back over the other's
// acknowledged records.
#[test]
fn two_flows_writing_one_output_file_are_refused_by_check() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.log");
    let yaml = format!(
        "checkpoint_file: {cp}\nflows:\n  - id: a\n    path: {logs}/a.log\n    sink: {{type: file, path: {out}}}\n  - id: b\n    path: {logs}/b.log\n    sink: {{type: file, path: {out}}}\n",
        cp = d.path().join("cp.db").display(),
        logs = d.path().display(),
        out = out.display()
    );
    let r = check(d.path(), &yaml);
    assert_ne!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("flows[1].sink.path") && r.out.contains("output of flow \"a\""), "names both flows: {}", r.out);
    // the same file through another spelling of its path
    let yaml2 = yaml.replacen(&format!("path: {}}}", out.display()), &format!("path: {}/./out.log}}", d.path().display()), 1);
    let r = check(d.path(), &yaml2);
    assert_ne!(r.code, 0, "{}", r.out);
}

// 3. The file sink's output renamed by logrotate was never reopened: acknowledged records went
// into the renamed (then deleted) file.
#[test]
fn an_output_file_rotated_by_logrotate_is_reopened_and_every_record_lands_once() {
    let mut a = Agent::new("app.log", "    buffer: {max_age_ms: 50}", "");
    let mut w = Writer::new(&a.logs().join("app.log"), "r");
    w.write(3000);
    a.start();
    a.wait_for(&w.written[..3000], T);
    let conf = a.dir.path().join("logrotate.conf");
    std::fs::write(&conf, format!("{} {{\n  rotate 2\n  missingok\n  nocompress\n}}\n", a.out.display())).unwrap();
    let state = a.dir.path().join("logrotate.state");
    let st = Command::new("logrotate").args(["-f", "-s", state.to_str().unwrap(), conf.to_str().unwrap()]).status().unwrap();
    assert!(st.success());
    let rotated = PathBuf::from(format!("{}.1", a.out.display()));
    assert!(rotated.exists());
    let before = lines_of(&rotated).len();
    for _ in 0..10 {
        w.write(300);
        std::thread::sleep(Duration::from_millis(50));
    }
    // the new output file, created by the agent at the path, gets what follows
    let deadline = Instant::now() + T;
    while lines_of(&a.out).len() + lines_of(&rotated).len() < w.written.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(a.stop(), 0);
    assert_eq!(lines_of(&rotated).len(), before, "nothing more went to the renamed file");
    let mut all = lines_of(&rotated);
    all.extend(lines_of(&a.out));
    assert_exactly_once(&w.written, &all);
    assert!(lines_of(&a.out).len() >= 3000, "the reopened file has the later records");
}

// 4. The endpoint had no connection cap and no timeouts: 300 unfinished requests took RSS to
// 127 MiB, and half-sent requests stayed open for ever.
#[test]
fn a_thousand_unfinished_requests_and_a_10_mb_body_leave_the_agent_small_and_shipping() {
    let mut a = Agent::new("*.log", "    buffer: {max_age_ms: 100}", "http: {listen: '127.0.0.1:0'}");
    let mut w = Writer::new(&a.logs().join("app.log"), "e");
    w.write(5000);
    a.start();
    let base = endpoint_in(&a.stderr_log);
    a.wait_for(&w.written, T);
    let client = abuse(&base, "hold", 20).stdout(Stdio::piped()).spawn().unwrap();
    // the agent keeps shipping while it is abused
    for _ in 0..20 {
        w.write(1000);
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = client.wait_with_output().unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("abuse report: {report}");
    assert_eq!(report["opened"], 1000, "{report}");
    assert_eq!(report["still_open"], 0, "every unfinished request is closed by the header timeout: {report}");
    assert!(report["last_closed_after_s"].as_f64().unwrap() < 15.0, "{report}");
    let rss = a.peak_rss_kib();
    eprintln!("peak RSS under endpoint abuse: {rss} KiB");
    assert!(rss < 48 * 1024, "peak RSS {rss} KiB");
    let (status, _) = http::get(&base, "/health");
    assert_eq!(status, 200, "the endpoint answers after the abuse");
    assert!(metric_sum(&base, "logferry_http_connections_refused_total") > 0.0);
    a.finish_exactly_once(&w.written);
}

// 4. When descriptors ran out the accept loop spun a whole core and new files were silently not
// tailed (read_dir errors ignored).
#[test]
fn out_of_descriptors_the_agent_does_not_spin_says_what_it_cannot_list_and_recovers() {
    let mut a = Agent::new("*.log", "    buffer: {max_age_ms: 100}", "http: {listen: '127.0.0.1:0'}");
    let mut w = Writer::new(&a.logs().join("first.log"), "f");
    w.write(100);
    let agent = Command::new("prlimit")
        .args(["--nofile=40:40", env!("CARGO_BIN_EXE_logferry"), "run", "--config", a.config.to_str().unwrap()])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&a.stderr_log).unwrap())
        .spawn()
        .unwrap();
    a.child = Some(agent);
    let base = endpoint_in(&a.stderr_log);
    a.wait_for(&w.written, T);
    let client = abuse(&base, "flood", 8).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let pid = a.pid();
    let cpu_before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(4));
    let cpu = cpu_seconds(pid) - cpu_before;
    let log = wait_for_log(&a.stderr_log, "cannot list", Duration::from_secs(5));
    let out = client.wait_with_output().unwrap();
    eprintln!("flood: {}; agent CPU over 4 s out of descriptors: {cpu:.2} s", String::from_utf8_lossy(&out.stdout).trim());
    assert!(cpu < 2.0, "the agent spins while out of descriptors: {cpu:.2} CPU seconds in 4 s");
    assert!(log.contains("cannot list"), "a directory that cannot be listed is reported: {log}");
    assert!(log.contains("accept"), "accept failures are reported: {log}");
    // the descriptors come back: a new file is found and shipped
    let mut w2 = Writer::new(&a.logs().join("second.log"), "s");
    w2.write(100);
    w.write(100);
    let mut all = w.written.clone();
    all.extend(w2.written.clone());
    a.finish_exactly_once(&all);
}

// 5. A glob that matched the agent's own files fed them back without end.
#[test]
fn the_agents_own_files_are_never_tailed_whatever_the_globs_say() {
    let mut a = Agent::new("x", "", "");
    let dir = a.dir.path().to_path_buf();
    let dead_letter = dir.join("state/dead.jsonl");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(&dead_letter, "{\"old\":1}\n").unwrap();
    let yaml = format!(
        "checkpoint_file: {cp}\nflows:\n  - id: all\n    path: {dir}/*/*\n    scan_interval_ms: 200\n    buffer: {{max_age_ms: 50}}\n    sink: {{type: file, path: {out}}}\n  - id: aws\n    path: {dir}/none.log\n    sink: {{type: firehose, stream: s, region: us-east-1, endpoint: 'http://127.0.0.1:9', dead_letter_file: {dl}}}\naws: {{access_key_id: t, secret_access_key: t}}\n",
        cp = dir.join("state/checkpoints.db").display(),
        dir = dir.display(),
        out = a.out.display(),
        dl = dead_letter.display()
    );
    std::fs::write(&a.config, yaml).unwrap();
    let r = logferry(&["check", "--config", a.config.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.out);
    for own in ["checkpoint database", "dead-letter file of flow aws", "output of flow all"] {
        assert!(r.out.contains("warning") && r.out.contains(own), "check names the overlap with the {own}: {}", r.out);
    }
    let mut w = Writer::new(&a.logs().join("app.log"), "o");
    w.write(500);
    a.start();
    a.wait_for(&w.written, T);
    w.write(500);
    a.wait_for(&w.written, T);
    // rotated copies of the agent's own files are its own too
    std::fs::copy(&a.out, format!("{}.1", a.out.display())).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a.stop(), 0);
    a.assert_exactly_once(&w.written);
    let log = a.stderr();
    assert!(log.contains("own"), "the refusal is logged: {log}");
}

// 6. Every tailed file kept up to max_line_bytes of line buffer, and kept it after the long line
// was sent: 40 files held 172 MiB.
#[test]
fn forty_files_with_long_unfinished_lines_stay_within_the_budget_and_ship_once_finished() {
    let mut a = Agent::new(
        "*.log",
        "    oversized_records: split\n    buffer: {max_age_ms: 100}",
        "max_bytes_in_flight: 16777216\nhttp: {listen: '127.0.0.1:0'}",
    );
    // file i holds one 3 MiB line of one character; the sink takes records up to 1,024,000
    // bytes, so the line arrives in pieces, told apart by their character
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn";
    const LINE: usize = 3 << 20;
    for (i, c) in CHARS.iter().enumerate() {
        append(&a.logs().join(format!("f{i:02}.log")), &vec![*c; LINE]);
    }
    a.start();
    let base = endpoint_in(&a.stderr_log);
    std::thread::sleep(Duration::from_secs(4));
    let held = metric_sum(&base, "logferry_line_buffer_bytes");
    let rss = a.peak_rss_kib();
    eprintln!("40 unfinished 3 MiB lines: line buffers {held} bytes, peak RSS {rss} KiB");
    assert!(held <= 16777216.0, "line buffers {held} bytes over the 16 MiB budget");
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
    for i in 0..CHARS.len() {
        append(&a.logs().join(format!("f{i:02}.log")), b"\n");
    }
    let per_char = |got: &[String]| {
        let mut n = std::collections::HashMap::new();
        for l in got {
            let c = l.as_bytes()[0];
            assert!(l.bytes().all(|b| b == c), "a piece mixes two files' lines");
            *n.entry(c).or_insert(0usize) += l.len();
        }
        n
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while per_char(&a.delivered()).values().sum::<usize>() < CHARS.len() * LINE {
        assert!(Instant::now() < deadline, "not shipped: {:?}\n{}", per_char(&a.delivered()), a.stderr());
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(1));
    let held = metric_sum(&base, "logferry_line_buffer_bytes");
    assert!(held < 40.0 * 65536.0, "the buffers are given back once the lines went: {held} bytes");
    let rss = a.peak_rss_kib();
    eprintln!("after shipping them: line buffers {held} bytes, peak RSS {rss} KiB");
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
    assert_eq!(a.stop(), 0);
    let got = per_char(&a.delivered());
    for c in CHARS {
        assert_eq!(got.get(c).copied(), Some(LINE), "file of {:?} shipped once, whole", *c as char);
    }
}

// 7. A read-only checkpoint database was accepted and no position was ever saved.
#[test]
fn a_checkpoint_database_that_cannot_be_written_is_refused_at_start() {
    if !is_root() {
        eprintln!("skipped: needs root to run the agent as another user");
        return;
    }
    let mut a = Agent::new("*.log", "", "");
    Writer::new(&a.logs().join("a.log"), "ro").write(10);
    a.start();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(a.stop(), 0);
    open_to_all(a.dir.path());
    use std::os::unix::fs::PermissionsExt;
    let state = a.dir.path().join("state");
    for e in std::fs::read_dir(&state).unwrap().flatten() {
        let mode = if e.file_name().to_string_lossy().ends_with(".lock") { 0o666 } else { 0o644 };
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    a.as_nobody = true;
    a.start();
    let status = wait_timeout(a.child.as_mut().unwrap(), T).expect("refuses at once");
    a.child = None;
    assert!(!status.success());
    let log = a.stderr();
    assert!(log.contains("can only be read, not written"), "{log}");
}

// 7. Commit failures were invisible in /health and /metrics.
#[test]
fn checkpoint_commits_that_fail_are_counted_and_make_health_fail_until_they_succeed() {
    let mut a = Agent::new("*.log", "    buffer: {max_age_ms: 50}", "http: {listen: '127.0.0.1:0', unhealthy_after_secs: 2}");
    let mut w = Writer::new(&a.logs().join("a.log"), "c");
    w.write(100);
    a.start();
    let base = endpoint_in(&a.stderr_log);
    a.wait_for(&w.written, T);
    let db = a.dir.path().join("state/checkpoints.db");
    let mut locker = Command::new("python3")
        .args(["-c", "import sqlite3,sys,time\nc=sqlite3.connect(sys.argv[1],isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked',flush=True)\ntime.sleep(float(sys.argv[2]))", db.to_str().unwrap(), "8"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(locker.stdout.as_mut().unwrap()), &mut first).unwrap();
    assert_eq!(first.trim(), "locked");
    let deadline = Instant::now() + Duration::from_secs(7);
    let mut unhealthy = None;
    while Instant::now() < deadline {
        w.write(10);
        let (status, body) = http::get(&base, "/health");
        if status == 503 {
            unhealthy = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let body = unhealthy.expect("/health fails while checkpoints cannot be saved");
    assert!(body.contains("checkpoints have not been saved"), "{body}");
    assert!(metric_sum(&base, "logferry_checkpoint_commit_failures_total") > 0.0);
    assert_eq!(http::get(&base, "/live").0, 200, "liveness is not about checkpoints");
    locker.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http::get(&base, "/health").0 != 200 {
        assert!(Instant::now() < deadline, "healthy again once the database can be written");
        std::thread::sleep(Duration::from_millis(200));
    }
    a.wait_for(&w.written, T);
    assert_eq!(a.stop(), 0);
    // the positions were saved: a restart sends nothing again
    a.start();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a.stop(), 0);
    a.assert_exactly_once(&w.written);
}

// 8. Two agents on one checkpoint database both ran and shipped every line twice.
#[test]
fn a_second_agent_on_the_same_checkpoint_database_is_refused_with_the_holders_pid() {
    let mut a = Agent::new("*.log", "", "");
    let mut w = Writer::new(&a.logs().join("a.log"), "two");
    w.write(200);
    a.start();
    a.wait_for(&w.written, T);
    let err2 = a.dir.path().join("second.err");
    let mut second = run_agent(&a.config, &err2);
    let status = wait_timeout(&mut second, T).expect("the second agent exits");
    assert!(!status.success());
    let log = std::fs::read_to_string(&err2).unwrap();
    assert!(log.contains(&format!("pid {}", a.pid())), "names the holder: {log}");
    let reset = logferry(&["checkpoints", "--config", a.config.to_str().unwrap(), "--reset", "test", "--yes"]);
    assert_ne!(reset.code, 0, "{}", reset.out);
    assert!(reset.out.contains(&format!("pid {}", a.pid())), "{}", reset.out);
    w.write(100);
    a.finish_exactly_once(&w.written);
    let reset = logferry(&["checkpoints", "--config", a.config.to_str().unwrap(), "--reset", "test", "--yes"]);
    assert_eq!(reset.code, 0, "{}", reset.out);
}

// 9. With `split`, a 6 MiB line arrived cut at max_line_bytes, and a 50 MB line with no newline
// was never shipped and was read again whole at every start.
#[test]
fn split_streams_lines_longer_than_max_line_bytes_and_a_restart_does_not_read_them_again() {
    let mut a = Agent::new("*.log", "    oversized_records: split\n    buffer: {max_age_ms: 100}", "");
    let long: String = (0..6 << 20).map(|i| (b'0' + (i % 10) as u8) as char).collect();
    append(&a.logs().join("six.log"), format!("{long}\nafter\n").as_bytes());
    let huge = a.logs().join("huge.log");
    let piece = vec![b'y'; 1 << 20];
    for _ in 0..50 {
        append(&huge, &piece);
    }
    a.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    let joined = |lines: &[String], c: char| lines.iter().filter(|l| l.starts_with(c)).map(String::as_str).collect::<String>();
    loop {
        let got = a.delivered();
        if got.iter().any(|l| l == "after") && joined(&got, 'y').len() >= 48 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "{} bytes of the 50 MB line shipped\n{}", joined(&got, 'y').len(), a.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = a.delivered();
    let digits: String = got.iter().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).map(String::as_str).collect();
    assert_eq!(digits.len(), long.len(), "the 6 MiB line arrives whole, in pieces");
    assert!(digits == long, "the pieces concatenate to the line");
    assert_eq!(a.stop(), 0);
    // a restart reads only what was not shipped of the unfinished line
    let before = a.stderr().len();
    a.start();
    std::thread::sleep(Duration::from_secs(3));
    append(&huge, b"\n");
    let deadline = Instant::now() + T;
    while joined(&a.delivered(), 'y').len() < 50 << 20 {
        assert!(Instant::now() < deadline, "the end of the 50 MB line never came");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(a.stop(), 0);
    let second_run = a.stderr()[before..].to_string();
    let read: u64 = second_run
        .lines()
        .filter_map(|l| l.split("bytes read ").nth(1))
        .map(|v| v.trim_matches(|c: char| !c.is_ascii_digit()).parse::<u64>().unwrap())
        .sum();
    assert!(read < 8 << 20, "the second run read {read} bytes: the shipped part of the line was read again\n{second_run}");
    assert_eq!(joined(&a.delivered(), 'y').len(), 50 << 20, "nothing shipped twice");
}

// 10. Symlinks were followed to any file the agent could read: a link made by anyone shipped a
// 0600 root file.
#[test]
fn a_link_made_by_another_user_to_a_file_they_cannot_read_is_not_followed() {
    if !is_root() {
        eprintln!("skipped: needs root to make a link as another user");
        return;
    }
    let mut a = Agent::new("*.log", "", "");
    let secret = a.dir.path().join("secret");
    std::fs::write(&secret, "root's secret\n").unwrap();
    let mut w = Writer::new(&a.logs().join("app.log"), "s");
    w.write(50);
    open_to_all(a.dir.path());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let st = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ln", "-s"])
        .arg(&secret)
        .arg(a.logs().join("evil.log"))
        .status()
        .unwrap();
    assert!(st.success());
    // a link root made (as the container runtime's /var/log/containers links) is followed
    let real = a.dir.path().join("real.txt");
    std::fs::write(&real, "through a root link\n").unwrap();
    std::os::unix::fs::symlink(&real, a.logs().join("linked.log")).unwrap();
    a.start();
    let mut expected = w.written.clone();
    expected.push("through a root link".into());
    a.wait_for(&expected, T);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(a.stop(), 0);
    a.assert_exactly_once(&expected);
    assert!(a.stderr().contains("evil.log"), "the refused link is logged: {}", a.stderr());
}

// 11. Values the code cannot hold passed `check` and panicked or wrapped at `run`.
#[test]
fn configuration_values_beyond_what_the_agent_can_hold_are_refused_by_check() {
    let d = tempfile::tempdir().unwrap();
    let flow = format!(
        "flows:\n  - id: f\n    path: {}/a.log\n    sink: {{type: file, path: {}/out.log}}\n",
        d.path().display(),
        d.path().display()
    );
    let base = format!("checkpoint_file: {}/cp.db\n", d.path().display());
    assert_eq!(check(d.path(), &format!("{base}{flow}")).code, 0);
    for (yaml, says) in [
        (format!("{base}status_period_secs: 9223372036854775000\n{flow}"), "status_period_secs"),
        (format!("{base}http: {{unhealthy_after_secs: 18446744073709551}}\n{flow}"), "unhealthy_after_secs"),
        (format!("{base}shutdown_timeout_ms: .nan\n{flow}"), "shutdown_timeout_ms"),
        (format!("{base}max_bytes_in_flight: .inf\n{flow}"), "max_bytes_in_flight"),
        (format!("checkpoint_file: ''\n{flow}"), "checkpoint_file"),
        (format!("{base}{}", flow.replace(&format!("path: {}/a.log", d.path().display()), "path: ''")), "path"),
        (
            format!("{base}flows:\n  - id: f\n    path: {}/a.log\n    sink: {{type: firehose, stream: s, region: us-east-1, dead_letter_file: ''}}\n", d.path().display()),
            "dead_letter_file",
        ),
    ] {
        let r = check(d.path(), &yaml);
        assert_eq!(r.code, 1, "refused: {yaml}\n{}", r.out);
        assert!(r.out.contains(says), "names {says}: {}", r.out);
        assert!(!r.out.contains("panicked"), "{}", r.out);
    }
    let r = logferry(&["top", "--interval", "inf"]);
    assert_eq!(r.code, 2, "{}", r.out);
    assert!(r.out.contains("interval"), "{}", r.out);
}

// 11. Plain http:// endpoints were accepted without a word, STS (temporary credentials) included.
#[test]
fn plain_http_endpoints_are_warned_about_and_refused_for_sts_unless_allowed() {
    let d = tempfile::tempdir().unwrap();
    let cfg = |aws: &str, endpoint: &str| {
        format!(
            "checkpoint_file: {}/cp.db\naws: {{access_key_id: t, secret_access_key: t{aws}}}\nflows:\n  - id: f\n    path: {}/a.log\n    sink: {{type: firehose, stream: s, region: us-east-1, endpoint: '{endpoint}'}}\n",
            d.path().display(),
            d.path().display()
        )
    };
    let r = check(d.path(), &cfg("", "http://10.1.2.3:4566"));
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("http://10.1.2.3:4566 is plain HTTP"), "{}", r.out);
    let r = check(d.path(), &cfg("", "http://127.0.0.1:4566"));
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(!r.out.contains("plain HTTP"), "an emulator on loopback is not warned about: {}", r.out);
    let sts = ", role_arn: 'arn:aws:iam::123456789012:role/r', sts_endpoint: 'http://sts.example.com'";
    let r = check(d.path(), &cfg(sts, "https://firehose.us-east-1.amazonaws.com"));
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("allow_plain_http_sts"), "says how to allow it: {}", r.out);
    let r = check(d.path(), &cfg(&format!("{sts}, allow_plain_http_sts: true"), "https://firehose.us-east-1.amazonaws.com"));
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("plain HTTP"), "allowed, still warned about: {}", r.out);
}

// 12. After the first SIGTERM further signals were ignored.
#[test]
fn a_second_sigterm_stops_at_once_and_says_what_was_not_acknowledged() {
    let mut a = Agent::new("*.log", "", "");
    std::fs::write(
        &a.config,
        std::fs::read_to_string(&a.config).unwrap().replace("shutdown_timeout_ms: 5000", "shutdown_timeout_ms: 600000"),
    )
    .unwrap();
    std::fs::create_dir_all(a.out.parent().unwrap()).unwrap();
    assert!(Command::new("mkfifo").arg(&a.out).status().unwrap().success());
    Writer::new(&a.logs().join("a.log"), "sig").write(1000);
    a.start();
    wait_for_log(&a.stderr_log, "running 1 flow", T);
    std::thread::sleep(Duration::from_secs(1));
    let mut c = a.child.take().unwrap();
    unsafe_kill(c.id(), "TERM");
    std::thread::sleep(Duration::from_secs(1));
    assert!(c.try_wait().unwrap().is_none(), "the first SIGTERM waits for the sink (up to the shutdown timeout)");
    let second = Instant::now();
    unsafe_kill(c.id(), "TERM");
    let status = wait_timeout(&mut c, Duration::from_secs(10)).expect("a second SIGTERM stops the agent within seconds");
    eprintln!("stopped {:?} after the second SIGTERM, status {status:?}", second.elapsed());
    let log = a.stderr();
    assert!(log.contains("not acknowledged"), "{log}");
}

// 13. File-sink output was created 0644 whatever the source's mode.
#[test]
fn file_sink_output_is_created_0640_or_with_the_mode_the_sink_sets() {
    use std::os::unix::fs::PermissionsExt;
    for (extra, mode) in [("", 0o640), ("      mode: '0600'\n", 0o600)] {
        let mut a = Agent::new("*.log", "", "");
        std::fs::write(&a.config, format!("{}{extra}", std::fs::read_to_string(&a.config).unwrap())).unwrap();
        let mut w = Writer::new(&a.logs().join("a.log"), "m");
        w.write(5);
        a.start();
        a.finish_exactly_once(&w.written);
        assert_eq!(std::fs::metadata(&a.out).unwrap().permissions().mode() & 0o777, mode);
    }
}

// 13. The newer-schema error ended in "Query is not read-only".
#[test]
fn a_checkpoint_database_from_a_newer_agent_is_refused_with_a_plain_reason() {
    let mut a = Agent::new("*.log", "", "");
    std::fs::create_dir_all(a.dir.path().join("state")).unwrap();
    let db = a.dir.path().join("state/checkpoints.db");
    let st = Command::new("python3")
        .args(["-c", "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA user_version = 99')", db.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    a.start();
    let status = wait_timeout(a.child.as_mut().unwrap(), T).expect("refused at start");
    a.child = None;
    assert!(!status.success());
    let log = a.stderr();
    assert!(log.contains("schema version 99 is newer"), "{log}");
    assert!(!log.contains("Query is not read-only"), "{log}");
}
