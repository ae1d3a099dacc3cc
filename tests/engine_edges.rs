//! Back-pressure, descriptors, the checkpoint database's failure modes, `logferry checkpoints`,
//! and the import of the Kinesis Agent's positions.

mod support;

use logferry::config::{Destination, FileSettings};
use logferry::engine::{Engine, Event};
use logferry::source::identity::FileKey;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const T: Duration = Duration::from_secs(60);

#[test]
fn a_stalled_sink_stops_the_readers_and_memory_stays_bounded_while_1_gib_is_written() {
    let mut a = Agent::new("*.log", "", "max_bytes_in_flight: 16777216");
    // the sink is a FIFO nobody reads: opening it blocks, so nothing is ever acknowledged
    std::fs::create_dir_all(a.out.parent().unwrap()).unwrap();
    let status = Command::new("mkfifo").arg(&a.out).status().unwrap();
    assert!(status.success());
    a.start();
    let path = a.logs().join("big.log");
    let mut f = std::fs::File::create(&path).unwrap();
    let line = [b"x".repeat(199).as_slice(), b"\n"].concat();
    let block: Vec<u8> = line.iter().copied().cycle().take(line.len() * 5000).collect();
    let mut written = 0u64;
    while written < 1 << 30 {
        f.write_all(&block).unwrap();
        written += block.len() as u64;
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss = a.peak_rss_kib();
    eprintln!("peak RSS with a stalled sink after 1 GiB written: {rss} KiB (budget 16 MiB)");
    assert!(rss < 48 * 1024, "peak RSS {rss} KiB");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn idle_files_release_descriptors_and_are_reopened_on_change() {
    let mut a = Agent::new("*.log", "", "max_open_files: 16\nidle_close_ms: 200");
    let mut writers: Vec<Writer> = (0..300).map(|i| Writer::new(&a.logs().join(format!("f{i:03}.log")), &format!("f{i}"))).collect();
    for w in &mut writers {
        w.write(2);
    }
    a.start();
    let all: Vec<String> = writers.iter().flat_map(|w| w.written.clone()).collect();
    a.wait_for(&all, T);
    std::thread::sleep(Duration::from_millis(1500));
    let fds = std::fs::read_dir(format!("/proc/{}/fd", a.pid())).unwrap().count();
    assert!(fds < 16 + 20, "{fds} descriptors open for 300 idle files with max_open_files 16");
    for w in writers.iter_mut().step_by(7) {
        w.write(3);
    }
    let all: Vec<String> = writers.iter().flat_map(|w| w.written.clone()).collect();
    a.finish_exactly_once(&all);
}

#[test]
fn checkpoints_command_lists_and_resets_positions() {
    let mut a = Agent::new("*.log", "", "");
    let mut w = Writer::new(&a.logs().join("a.log"), "a");
    w.write(10);
    a.start();
    a.wait_for(&w.written, T);
    assert_eq!(a.stop(), 0);
    w.write(5);
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_logferry")).args(args).output().unwrap();
    let cfg = a.config.to_str().unwrap().to_string();
    let out = run(&["checkpoints", "--config", &cfg]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let meta = std::fs::metadata(a.logs().join("a.log")).unwrap();
    let id = FileKey::of(&meta).kinesis_agent_id();
    let row = text.lines().find(|l| l.contains("a.log")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.starts_with("test ") && row.contains(&id), "{row}");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[3], (meta.len() - w.written[10..].iter().map(|l| l.len() as u64 + 1).sum::<u64>()).to_string(), "offset: {row}");
    assert!(cols[4].parse::<u64>().unwrap() > 0, "bytes behind: {row}");
    let out = run(&["checkpoints", "--config", &cfg, "--reset", "test"]);
    assert!(!out.status.success(), "asks before resetting when no terminal answers");
    let out = run(&["checkpoints", "--config", &cfg, "--reset", "test", "--yes"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("forgot 1 position"));
    // forgotten: the file is read again from its start
    a.start();
    std::thread::sleep(Duration::from_secs(2));
    a.wait_for(&w.written, T);
    assert_eq!(a.stop(), 0);
    assert_eq!(a.delivered().len(), 10 + 15);
}

#[test]
fn a_damaged_checkpoint_database_is_refused_with_a_clear_error() {
    let mut a = Agent::new("*.log", "", "");
    let db = a.dir.path().join("state/checkpoints.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    std::fs::write(&db, vec![b'z'; 4096]).unwrap();
    a.start();
    let mut c = a.child.take().unwrap();
    let status = wait_timeout(&mut c, Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(1));
    let err = a.stderr();
    assert!(err.contains("checkpoint database") && err.contains("damaged") && err.contains("move it aside"), "{err}");
}

#[test]
fn a_locked_checkpoint_database_does_not_stop_shipping() {
    let mut a = Agent::new("*.log", "", "");
    let mut w = Writer::new(&a.logs().join("a.log"), "l");
    w.write(5);
    a.start();
    a.wait_for(&w.written, T);
    // another process takes an exclusive lock on the database for a while
    let db = a.dir.path().join("state/checkpoints.db");
    let mut locker = Command::new("python3")
        .args(["-c", "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(6)", db.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(locker.stdout.as_mut().unwrap(), &mut first).unwrap();
    let started = Instant::now();
    w.write(200);
    a.wait_for(&w.written, T);
    assert!(started.elapsed() < Duration::from_secs(5), "shipping went on while the database was locked");
    locker.wait().unwrap();
    w.write(5);
    a.wait_for(&w.written, T);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a.stop(), 0);
    let err = a.stderr();
    assert!(err.contains("checkpoint database") && err.contains("another process holds it") && err.contains("shipping continues"), "{err}");
    assert!(err.contains("writable again"), "{err}");
    // positions were saved once the lock went away: a restart re-sends nothing
    a.start();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a.stop(), 0);
    a.assert_exactly_once(&w.written);
}

#[test]
fn positions_of_the_kinesis_agent_are_imported_on_first_start() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    let mut w = Writer::new(&log, "ka");
    w.write(100);
    let meta = std::fs::metadata(&log).unwrap();
    let half: u64 = w.written[..60].iter().map(|l| l.len() as u64 + 1).sum();
    let ka_db = d.path().join("ka-checkpoints");
    let flow_id = format!("fh:stream:{}", log.display());
    let sql = format!(
        "CREATE TABLE FILE_CHECKPOINTS(flow TEXT, path TEXT, fileId TEXT, lastModifiedTime INTEGER, size INTEGER, offset INTEGER, lastUpdated TEXT, PRIMARY KEY(flow, path)); INSERT INTO FILE_CHECKPOINTS VALUES ('{flow_id}', '{}', '{}', 0, {}, {half}, 'x');",
        log.display(),
        FileKey::of(&meta).kinesis_agent_id(),
        meta.len()
    );
    let ok = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()",
            ka_db.to_str().unwrap(),
            &sql,
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let agent_json = d.path().join("agent.json");
    std::fs::write(&agent_json, format!(r#"{{"checkpointFile": "{}", "flows": [{{"filePattern": "{}", "deliveryStream": "stream", "initialPosition": "START_OF_FILE"}}]}}"#, ka_db.display(), log.display())).unwrap();
    let mut cfg = logferry::config::load(&agent_json).unwrap();
    assert_eq!(cfg.flows[0].id, flow_id);
    let out = d.path().join("out.log");
    // the AWS sinks are not built yet: ship the same flow (same id) to a file
    cfg.flows[0].destination = Destination::File(FileSettings { path: out.clone(), mode: 0o640 });
    cfg.flows[0].buffer.max_age_ms = 100;
    let engine = Engine::new(cfg, Default::default()).unwrap();
    let stop = engine.stopper();
    let h = std::thread::spawn(move || engine.run().unwrap());
    let deadline = Instant::now() + T;
    while std::fs::read_to_string(&out).map(|s| s.lines().count()).unwrap_or(0) < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.send(Event::Stop("test")).unwrap();
    h.join().unwrap();
    let got: Vec<String> = std::fs::read_to_string(&out).unwrap().lines().map(String::from).collect();
    assert_eq!(got, w.written[60..].to_vec(), "resumed exactly where the Kinesis Agent stopped");
}

#[test]
fn oversized_records_split_into_pieces_that_concatenate_to_the_line_and_are_counted() {
    let mut a = Agent::new("app.log", "    oversized_records: split", "");
    let path = a.logs().join("app.log");
    let long: String = (0..2_500_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    std::fs::write(&path, format!("before\n{long}\nafter\n")).unwrap();
    a.start();
    // the file sink ends each record with a newline: the pieces arrive as lines of their own
    a.wait_for(&["before".into(), "after".into()], Duration::from_secs(30));
    assert_eq!(a.stop(), 0);
    let got = a.delivered();
    assert_eq!(got.len(), 5, "{:?}", got.iter().map(String::len).collect::<Vec<_>>());
    assert_eq!((got[0].as_str(), got[4].as_str()), ("before", "after"));
    assert!(got[1..4].iter().all(|p| p.len() <= 1_024_000), "each piece fits a Firehose record");
    assert_eq!(got[1..4].concat(), long, "the pieces concatenate to the line");
    assert!(a.stderr().contains("split 1,"), "counted: {}", a.stderr());
}

#[test]
fn a_flow_whose_sink_stalls_holds_only_its_share_and_the_other_flows_go_on() {
    let mut a = Agent::new("healthy/*.log", "", "max_bytes_in_flight: 1048576\nhttp: {listen: '127.0.0.1:0', unhealthy_after_secs: 2}");
    // a second flow whose file sink is a FIFO nobody reads: nothing it sends is ever acknowledged
    let stuck_out = a.dir.path().join("out/stuck.fifo");
    std::fs::create_dir_all(stuck_out.parent().unwrap()).unwrap();
    assert!(Command::new("mkfifo").arg(&stuck_out).status().unwrap().success());
    let stuck_dir = a.logs().join("stuck");
    std::fs::create_dir_all(&stuck_dir).unwrap();
    std::fs::create_dir_all(a.logs().join("healthy")).unwrap();
    let yaml = std::fs::read_to_string(&a.config).unwrap();
    std::fs::write(
        &a.config,
        format!(
            "{yaml}  - id: stuck\n    path: {}/*.log\n    scan_interval_ms: 300\n    sink: {{type: file, path: {}}}\n",
            stuck_dir.display(),
            stuck_out.display()
        ),
    )
    .unwrap();
    let mut stuck = Writer::new(&stuck_dir.join("s.log"), "stuck");
    stuck.write(20_000);
    let stuck_bytes = std::fs::metadata(stuck_dir.join("s.log")).unwrap().len();
    a.start();
    let base = endpoint_in(&a.stderr_log);
    let mut w = Writer::new(&a.logs().join("healthy/h.log"), "h");
    for _ in 0..20 {
        w.write(1000);
        std::thread::sleep(Duration::from_millis(100));
    }
    a.wait_for(&w.written, T);
    let (status, body) = wait_for_status(&base, "/health", 503, Duration::from_secs(20));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("flow stuck") && !body.contains("flow test"), "the stalled flow is named: {body}");
    let (_, metrics) = http::get(&base, "/metrics");
    let behind = metrics
        .lines()
        .find(|l| l.starts_with("logferry_bytes_behind{") && l.contains("flow=\"stuck\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(behind > stuck_bytes - 1048576, "bytes behind of the stalled flow: {behind} of {stuck_bytes}");
    a.kill9();
    a.assert_exactly_once(&w.written);
}

#[test]
fn a_flow_whose_sink_worker_died_is_started_again_from_its_positions_and_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    let out = d.path().join("out.log");
    let yaml = d.path().join("logferry.yaml");
    std::fs::write(
        &yaml,
        format!(
            "checkpoint_file: {}\nflows:\n  - id: w\n    path: {}\n    scan_interval_ms: 200\n    sink: {{type: file, path: {}}}\n",
            d.path().join("cp.db").display(),
            log.display(),
            out.display()
        ),
    )
    .unwrap();
    let mut w = Writer::new(&log, "w");
    w.write(300);
    let engine = Engine::new(logferry::config::load(&yaml).unwrap(), Default::default()).unwrap();
    let (events, metrics) = (engine.stopper(), engine.metrics());
    let h = std::thread::spawn(move || engine.run().unwrap());
    let delivered = || std::fs::read_to_string(&out).map(|s| s.lines().map(String::from).collect::<Vec<_>>()).unwrap_or_default();
    let wait = |n: usize| {
        let deadline = Instant::now() + T;
        while delivered().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait(300);
    // The sink wrote the lines before it acknowledged them: wait until the engine has taken the
    // acknowledgements (one published snapshot with all 300 parsed and nothing behind), or the
    // restart rightly sends the unacknowledged lines again.
    let value = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains("flow=\"w\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let deadline = Instant::now() + T;
    loop {
        let text = metrics.prometheus_text();
        if value(&text, "logferry_records_parsed_total") == Some(300) && value(&text, "logferry_bytes_behind") == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "the first 300 lines were never acknowledged: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // what a sink thread's supervisor sends when the worker panics
    let died = logferry::sinks::supervise::WorkerDied { flow: 0, reason: "the sink worker panicked: test".into() };
    events.send(Event::SinkDied(died)).unwrap();
    w.write(300);
    wait(600);
    events.send(Event::Stop("test")).unwrap();
    h.join().unwrap();
    assert_exactly_once(&w.written, &delivered());
    let text = metrics.prometheus_text();
    assert!(text.contains("logferry_sink_restarts_total{flow=\"w\""), "{text}");
    assert!(text.lines().any(|l| l.starts_with("logferry_sink_restarts_total{flow=\"w\"") && l.ends_with(" 1")), "{text}");
}

/// Regression: line buffers keep up to 64 KiB of room once a long partial line went; that room
/// counted against the in-flight budget, so ten files that had each held a 60 KiB partial line
/// filled a 512 KiB budget with nothing in flight, and no file was read again.
#[test]
fn room_kept_by_line_buffers_after_long_partial_lines_does_not_stop_reading() {
    let mut a = Agent::new("*.log", "    max_line_bytes: 100000\n    buffer: {max_age_ms: 100}", "max_bytes_in_flight: 524288");
    a.start();
    let long = |i: usize, half: usize| vec![b'a' + i as u8; 30_000 + half];
    for i in 0..10 {
        std::fs::write(a.logs().join(format!("f{i}.log")), long(i, 0)).unwrap();
    }
    // each file's partial line is read and held before it is finished
    std::thread::sleep(Duration::from_millis(1500));
    let append = |i: usize, bytes: &[u8]| {
        std::fs::OpenOptions::new().append(true).open(a.logs().join(format!("f{i}.log"))).unwrap().write_all(bytes).unwrap();
    };
    for i in 0..10 {
        append(i, &[long(i, 1).as_slice(), b"\n"].concat());
    }
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while a.delivered().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        a.delivered()
    };
    assert_eq!(wait_for(10).len(), 10, "the long lines: {}", a.stderr());
    for i in 0..10 {
        append(i, format!("short line {i}\n").as_bytes());
    }
    let got = wait_for(20);
    let short = got.iter().filter(|l| l.starts_with("short line")).count();
    assert_eq!(short, 10, "files read after their long lines went: {}", a.stderr());
    assert_eq!(a.stop(), 0);
}

/// Accepts every PutRecordBatch, whatever its stream, and keeps the lines.
fn accepting_firehose() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = accepted.clone();
    let endpoint = support::http::serve(move |req| Some(accept_every_record(&req.body, &seen, false)));
    (endpoint, accepted)
}

#[test]
fn an_agent_json_flow_whose_stream_was_edited_resumes_at_the_old_flows_positions_across_a_restart_and_a_reload() {
    let (endpoint, accepted) = accepting_firehose();
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.json");
    let config = |stream: &str| {
        std::fs::write(
            &cfg,
            format!(
                r#"{{"checkpointFile": "{}", "cloudwatch.emitMetrics": false, "firehose.endpoint": "{endpoint}",
                    "awsAccessKeyId": "test", "awsSecretAccessKey": "test",
                    "flows": [{{"filePattern": "{}", "deliveryStream": "{stream}", "maxBufferAgeMillis": 1000}}]}}"#,
                d.path().join("checkpoints.db").display(),
                d.path().join("app.log").display()
            ),
        )
        .unwrap()
    };
    let wait = |n: usize| {
        let deadline = Instant::now() + T;
        while accepted.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(accepted.lock().unwrap().len(), n);
    };
    let path = d.path().join("app.log");
    std::fs::File::create(&path).unwrap();
    let mut w = Writer::new(&path, "edit");
    config("first");
    let err = d.path().join("agent.err");
    let mut agent = run_agent(&cfg, &err);
    wait_for_log(&err, "running 1 flow", T);
    w.write(100);
    wait(100);
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    // written while stopped, then the flow's stream edited: a new flow id, which would start at
    // the end of the file (the default) and skip these
    w.write(50);
    config("second");
    let mut agent = run_agent(&cfg, &err);
    wait(150);
    let log = std::fs::read_to_string(&err).unwrap();
    assert!(log.contains("it takes over the 1 positions of"), "{log}");
    // edited again while running: the new flow waits for the old one to save its positions
    w.write(50);
    wait(200);
    config("third");
    unsafe_kill(agent.id(), "HUP");
    w.write(50);
    wait(250);
    std::thread::sleep(Duration::from_secs(2));
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    assert_exactly_once(&w.written, &accepted.lock().unwrap());
    // and a restart after it sends nothing again
    let mut agent = run_agent(&cfg, &err);
    std::thread::sleep(Duration::from_secs(3));
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    assert_exactly_once(&w.written, &accepted.lock().unwrap());
}
