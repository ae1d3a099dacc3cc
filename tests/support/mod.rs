//! Test harness: the real `logferry` binary with a `file` sink, log writers that number their
//! lines, and comparison of what was written with what was delivered.
#![allow(dead_code)]

pub mod emulators;
pub mod http;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Agent {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub out: PathBuf,
    pub child: Option<Child>,
    pub stderr_log: PathBuf,
    starts: usize,
    /// Run the agent as the unprivileged user `nobody` (the test must be root to switch).
    pub as_nobody: bool,
    /// Run the agent with this open-file limit, soft and hard (`prlimit`).
    pub nofile: Option<u64>,
}

impl Agent {
    /// A native configuration with one flow reading `pattern` (relative to the temp dir) into a
    /// `file` sink; `extra_flow` and `extra_top` are YAML lines added to the flow and the top.
    pub fn new(pattern: &str, extra_flow: &str, extra_top: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let out = dir.path().join("out/delivered.log");
        let config = dir.path().join("logferry.yaml");
        let yaml = format!(
            "checkpoint_file: {}\nshutdown_timeout_ms: 5000\n{extra_top}\nflows:\n  - id: test\n    path: {}\n    scan_interval_ms: 300\n{extra_flow}\n    sink:\n      type: file\n      path: {}\n",
            dir.path().join("state/checkpoints.db").display(),
            logs.join(pattern).display(),
            out.display()
        );
        std::fs::write(&config, yaml).unwrap();
        let stderr_log = dir.path().join("agent.stderr");
        Agent { dir, config, out, child: None, stderr_log, starts: 0, as_nobody: false, nofile: None }
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let err = std::fs::OpenOptions::new().create(true).append(true).open(&self.stderr_log).unwrap();
        let mut cmd = if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_logferry")]);
            c
        } else if let Some(n) = self.nofile {
            let mut c = Command::new("prlimit");
            c.args([format!("--nofile={n}:{n}").as_str(), "--", env!("CARGO_BIN_EXE_logferry")]);
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_logferry"))
        };
        let child = cmd
            .args(["run", "--config", self.config.to_str().unwrap()])
            .env("RUST_LOG", std::env::var("TEST_AGENT_LOG").unwrap_or_else(|_| "info".into()))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        let mut c = self.child.take().expect("running");
        unsafe_kill(c.id(), "TERM");
        let status = wait_timeout(&mut c, Duration::from_secs(20)).expect("agent did not stop within 20 s of SIGTERM");
        status.code().unwrap_or(-1)
    }

    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Delivered lines, in order.
    pub fn delivered(&self) -> Vec<String> {
        match std::fs::read(&self.out) {
            // whole lines only: the sink may be writing the last one as it is read
            Ok(b) => {
                let whole = b.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
                String::from_utf8_lossy(&b[..whole]).lines().map(String::from).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Waits until every line in `expected` was delivered at least once.
    pub fn wait_for(&self, expected: &[String], timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.delivered();
            let counts = counts(&got);
            let missing = expected.iter().filter(|l| !counts.contains_key(l.as_str())).count();
            if missing == 0 {
                return got;
            }
            if Instant::now() > deadline {
                let first: Vec<&String> = expected.iter().filter(|l| !counts.contains_key(l.as_str())).take(5).collect();
                panic!(
                    "{missing} of {} lines never arrived, e.g. {first:?}\nagent stderr:\n{}",
                    expected.len(),
                    tail(&self.stderr(), 3000)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for every expected line, stops the agent with SIGTERM (exit status 0) and checks
    /// that each line arrived exactly once.
    pub fn finish_exactly_once(&mut self, expected: &[String]) {
        self.wait_for(expected, Duration::from_secs(60));
        assert_eq!(self.stop(), 0, "SIGTERM exits 0");
        self.assert_exactly_once(expected);
    }

    /// Asserts every expected line was delivered exactly once (the agent's log on failure).
    pub fn assert_exactly_once(&self, expected: &[String]) {
        let got = self.delivered();
        if let Err(e) = std::panic::catch_unwind(|| assert_exactly_once(expected, &got)) {
            eprintln!("agent stderr:\n{}", tail(&self.stderr(), 6000));
            std::panic::resume_unwind(e);
        }
    }

    /// Peak resident memory of the running agent, from /proc.
    pub fn peak_rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    &s[s.len().saturating_sub(n)..]
}

/// True when the tests run as root.
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Opens a directory tree to every user (for an agent running as `nobody`).
pub fn open_to_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            open_to_all(&e.path());
        } else {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
        }
    }
}

pub fn unsafe_kill(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill -{sig} {pid} failed");
}

pub fn wait_timeout(c: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + t;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn counts(lines: &[String]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for l in lines {
        *m.entry(l.as_str()).or_insert(0) += 1;
    }
    m
}

/// Asserts every expected line arrived exactly once and nothing else arrived.
pub fn assert_exactly_once(expected: &[String], got: &[String]) {
    let c = counts(got);
    let dups: Vec<(&&str, &usize)> = c.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicates: {dups:?} ({} lines delivered for {} written)", got.len(), expected.len());
    let exp = counts(expected);
    let extra: Vec<&&str> = c.keys().filter(|k| !exp.contains_key(*k)).take(5).collect();
    assert!(extra.is_empty(), "lines that were never written: {extra:?}");
    assert_eq!(got.len(), expected.len());
}

/// Starts `logferry run --config cfg` with no instance metadata, logging at info to `stderr`
/// (appended).
pub fn run_agent(cfg: &Path, stderr: &Path) -> Child {
    agent_command(cfg, stderr).spawn().unwrap()
}

/// The command [`run_agent`] spawns, for a test to add to (its environment, say) first.
pub fn agent_command(cfg: &Path, stderr: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logferry"));
    c.args(["run", "--config", cfg.to_str().unwrap()])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(stderr).unwrap());
    c
}

/// The text of a log file once it contains `needle`, or after `timeout`.
pub fn wait_for_log(path: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Appends numbered lines to a file.
pub struct Writer {
    pub path: PathBuf,
    pub tag: String,
    pub next: usize,
    pub written: Vec<String>,
}

impl Writer {
    pub fn new(path: &Path, tag: &str) -> Writer {
        Writer { path: path.to_path_buf(), tag: tag.into(), next: 0, written: Vec::new() }
    }

    pub fn line(&mut self) -> String {
        let l = format!("{} line {:07} {}", self.tag, self.next, "x".repeat(self.next % 97));
        self.next += 1;
        l
    }

    /// Appends `n` lines with one write each (as a logger does).
    pub fn write(&mut self, n: usize) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).unwrap();
        for _ in 0..n {
            let l = self.line();
            f.write_all(format!("{l}\n").as_bytes()).unwrap();
            self.written.push(l);
        }
    }
}

/// The agent's endpoint address (`http://ip:port`), from the start-up line in the log file `log`.
pub fn endpoint_in(log: &Path) -> String {
    let log = wait_for_log(log, "serving /metrics", Duration::from_secs(20));
    let url = log.split("on http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("{log}"));
    format!("http://{url}")
}

/// The sum of a metric's samples (every label set) in the agent's `/metrics` text.
pub fn metric_sum(base: &str, name: &str) -> f64 {
    let (status, text) = http::get(base, "/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Polls `path` on the agent's endpoint until it answers `status`, or `timeout`; the last answer.
pub fn wait_for_status(base: &str, path: &str, status: u16, timeout: Duration) -> (u16, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let (got, body) = http::get(base, path);
        if got == status || Instant::now() > deadline {
            return (got, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The most descriptors a process held, sampled every 20 ms from /proc until dropped: of
/// every kind, and of files under one directory (not counting the directory itself).
pub struct FdWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, usize)>>,
}

impl FdWatch {
    pub fn start(pid: u32, under: &Path) -> FdWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, under) = (stop.clone(), under.to_path_buf());
        let thread = std::thread::spawn(move || {
            let (mut all, mut files) = (0, 0);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                    let links: Vec<PathBuf> = entries.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).collect();
                    all = all.max(links.len());
                    files = files.max(links.iter().filter(|l| l.starts_with(&under) && **l != under).count());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (all, files)
        });
        FdWatch { stop, thread: Some(thread) }
    }

    /// The most descriptors held, and the most of them on files under the directory.
    pub fn peak(mut self) -> (usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().expect("running").join().unwrap()
    }
}

/// CPU seconds the process has used (user and system), from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Accepts every record of a PutRecordBatch (or, with `kinesis`, PutRecords) request body: their
/// lines go to `seen`; returns the service's answer, every record accepted.
#[allow(dead_code)]
pub fn accept_every_record(body: &[u8], seen: &std::sync::Mutex<Vec<String>>, kinesis: bool) -> Vec<u8> {
    use base64::Engine as _;
    let body: serde_json::Value = serde_json::from_slice(body).unwrap();
    let records = body["Records"].as_array().unwrap();
    for r in records {
        let data = base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().unwrap()).unwrap();
        seen.lock().unwrap().extend(String::from_utf8_lossy(&data).lines().map(String::from));
    }
    let out = if kinesis {
        let answers: Vec<_> =
            (0..records.len()).map(|i| serde_json::json!({"SequenceNumber": i.to_string(), "ShardId": "shardId-000000000000"})).collect();
        serde_json::json!({"FailedRecordCount": 0, "Records": answers})
    } else {
        let answers: Vec<_> = (0..records.len()).map(|i| serde_json::json!({"RecordId": i.to_string()})).collect();
        serde_json::json!({"FailedPutCount": 0, "RequestResponses": answers})
    };
    http::response("200 OK", &[("Content-Type", "application/x-amz-json-1.1")], out.to_string().as_bytes())
}
