//! Hosts with more log files than the agent may hold open: the real binary under a lowered
//! open-file limit (`prlimit`), thousands of files written to and rotated while it runs, every
//! line shipped exactly once through the file sink and through Firehose (moto), the descriptors
//! on tailed files never above the limit less what the agent keeps for itself; and the bounded
//! per-file series on `/metrics`.

mod support;

use std::path::Path;
use std::time::Duration;
use support::emulators::*;
use support::*;

/// The open-file limit the agent runs under, and what it leaves for tailed files (the limit
/// less the 128 the agent keeps for its own use).
const NOFILE: u64 = 400;
const TAILED_MAX: usize = 400 - 128;

fn writers(logs: &Path, n: usize, tag: &str) -> Vec<Writer> {
    (0..n).map(|i| Writer::new(&logs.join(format!("{tag}{i:05}.log")), &format!("{tag}{i}"))).collect()
}

/// Writes to a third of the files, and renames every `every`-th out of the glob (`*.log`),
/// its writer going on in a new file at the old name.
fn round(ws: &mut [Writer], round: usize, every: usize) {
    for (i, w) in ws.iter_mut().enumerate() {
        if (i + round).is_multiple_of(3) {
            w.write(2);
        }
        if (i + round * 7).is_multiple_of(every) {
            std::fs::rename(&w.path, w.path.with_extension(format!("log.{round}"))).unwrap();
            w.write(1);
        }
    }
}

fn all_written(ws: &[Writer]) -> Vec<String> {
    ws.iter().flat_map(|w| w.written.iter().cloned()).collect()
}

#[test]
fn more_files_than_descriptors_ship_every_line_once_through_rotation_and_a_restart() {
    let mut a = Agent::new("*.log", "", "max_open_files: 100000\nhttp: {listen: '127.0.0.1:0'}");
    a.nofile = Some(NOFILE);
    let mut ws = writers(&a.logs(), 3_000, "f");
    ws.iter_mut().for_each(|w| w.write(3));
    a.start();
    let mut peaks = Vec::new();
    let mut watch = FdWatch::start(a.pid(), &a.logs());
    let base = endpoint_in(&a.stderr_log);
    assert_eq!(metric_sum(&base, "logferry_open_files_limit"), TAILED_MAX as f64);
    // a file renamed out of the glob before the agent first saw it is not its to read
    wait_for_log(&a.stderr_log, "this flow may hold open", Duration::from_secs(20));
    for r in 0..6 {
        round(&mut ws, r, 40);
        std::thread::sleep(Duration::from_millis(400));
        if r == 3 {
            peaks.push(watch.peak());
            assert_eq!(a.stop(), 0, "SIGTERM exits 0");
            a.start();
            watch = FdWatch::start(a.pid(), &a.logs());
        }
    }
    let expected = all_written(&ws);
    a.wait_for(&expected, Duration::from_secs(120));
    peaks.push(watch.peak());
    assert_eq!(a.stop(), 0, "SIGTERM exits 0");
    a.assert_exactly_once(&expected);
    let err = a.stderr();
    assert!(!err.contains("Too many open files"), "{}", &err[..err.len().min(3000)]);
    assert!(err.contains(&format!("more than the {TAILED_MAX} this flow may hold open")), "{}", &err[..err.len().min(3000)]);
    for (all, tailed) in peaks {
        assert!(tailed <= TAILED_MAX, "{tailed} descriptors on tailed files, more than {TAILED_MAX}");
        assert!(tailed >= TAILED_MAX / 2, "only {tailed} descriptors on tailed files: the limit was not reached");
        assert!(all < NOFILE as usize, "{all} descriptors");
    }
}

#[test]
fn more_files_than_descriptors_ship_every_line_once_to_firehose() {
    let m = moto();
    aws(&[&m.endpoint, "create", "logs-bucket", "logs"]);
    let sink = format!("      type: firehose\n      stream: logs\n      region: us-east-1\n      endpoint: '{}'", m.endpoint);
    let mut a =
        Agent::new("*.log", "    buffer: {max_age_ms: 300}", "max_open_files: 100000\naws: {access_key_id: t, secret_access_key: t}");
    // the file sink of the harness becomes Firehose
    let yaml = std::fs::read_to_string(&a.config).unwrap();
    let file_sink = yaml.split("    sink:\n").nth(1).unwrap().to_string();
    std::fs::write(&a.config, yaml.replace(&file_sink, &format!("{sink}\n"))).unwrap();
    a.nofile = Some(NOFILE);
    let mut ws = writers(&a.logs(), 2_000, "k");
    ws.iter_mut().for_each(|w| w.write(2));
    a.start();
    let watch = FdWatch::start(a.pid(), &a.logs());
    wait_for_log(&a.stderr_log, "this flow may hold open", Duration::from_secs(20));
    for r in 0..4 {
        round(&mut ws, r, 50);
        std::thread::sleep(Duration::from_millis(500));
    }
    let expected = all_written(&ws);
    let got = arrived(&[&m.endpoint, "read", "logs-bucket"], expected.len());
    let (all, tailed) = watch.peak();
    assert_eq!(a.stop(), 0, "SIGTERM exits 0\n{}", a.stderr());
    assert_exactly_once(&expected, &got);
    assert!(tailed <= TAILED_MAX, "{tailed} descriptors on tailed files, more than {TAILED_MAX}");
    assert!(all < NOFILE as usize, "{all} descriptors");
    assert!(!a.stderr().contains("Too many open files"));
}

#[test]
fn metrics_keep_to_the_per_file_series_bound_with_thousands_of_files_behind() {
    // a destination that never answers: every file stays behind
    let endpoint = support::http::silent();
    let mut a =
        Agent::new("*.log", "", "http: {listen: '127.0.0.1:0', per_file_series: 25}\naws: {access_key_id: t, secret_access_key: t}");
    let yaml = std::fs::read_to_string(&a.config).unwrap();
    let file_sink = yaml.split("    sink:\n").nth(1).unwrap().to_string();
    let sink = format!("      type: firehose\n      stream: s\n      region: us-east-1\n      endpoint: '{endpoint}'\n");
    std::fs::write(&a.config, yaml.replace(&file_sink, &sink)).unwrap();
    let mut ws = writers(&a.logs(), 4_000, "m");
    ws.iter_mut().for_each(|w| w.write(1));
    a.start();
    let base = endpoint_in(&a.stderr_log);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (_, text) = http::get(&base, "/metrics");
        let read =
            text.lines().find(|l| l.starts_with("logferry_bytes_read_total")).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if read.unwrap_or(0.0) > 0.0 || std::time::Instant::now() > deadline {
            std::thread::sleep(Duration::from_millis(600));
            break http::get(&base, "/metrics").1;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let series = text.lines().filter(|l| l.starts_with("logferry_file_bytes_behind{")).count();
    assert_eq!(series, 25, "{}", &text[..text.len().min(3000)]);
    assert!(text.lines().count() < 400, "{} lines on /metrics", text.lines().count());
    let behind = metric_sum(&base, "logferry_bytes_behind");
    assert!(behind > 0.0, "{text}");
    a.kill9();
}
