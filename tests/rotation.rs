//! Rotation as it happens on real hosts: the real `logrotate` in `create` and `copytruncate`
//! modes rotating every second under a steady writer, SIGKILLs at random instants while rotation
//! goes on, Kubernetes-style symlinked pod directories, and random sequences of file operations
//! checked against a model of what must arrive.

mod support;

use logferry::loggen::Rng;
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const T: Duration = Duration::from_secs(60);

fn logrotate(conf: &Path, state: &Path) {
    let out =
        Command::new("logrotate").args(["-f", "-s"]).arg(state).arg(conf).output().expect("logrotate is installed by scripts/test.sh");
    assert!(out.status.success(), "logrotate failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Writes numbered lines to `path` from a thread at a steady rate until stopped; reopens the path
/// for every burst, as a logger with `create` rotation does after its HUP.
fn steady_writer(path: &Path, tag: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    let path = path.to_path_buf();
    let tag = tag.to_string();
    std::thread::spawn(move || {
        let mut w = Writer::new(&path, &tag);
        while !stop.load(Ordering::Relaxed) {
            w.write(40);
            std::thread::sleep(Duration::from_millis(10));
        }
        w.written
    })
}

fn lines_on_disk(dir: &Path, prefix: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with(prefix) {
            for l in String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).lines() {
                out.insert(l.to_string());
            }
        }
    }
    out
}

fn run_logrotate_test(mode: &str) -> (usize, usize) {
    let mut a = Agent::new("app.log*", "", "");
    let logs = a.logs();
    let path = logs.join("app.log");
    std::fs::write(&path, "").unwrap();
    let conf = a.dir.path().join("logrotate.conf");
    std::fs::write(&conf, format!("{} {{\n  rotate 1000\n  {mode}\n  missingok\n  nocompress\n}}\n", path.display())).unwrap();
    let state = a.dir.path().join("logrotate.state");
    a.start();
    std::thread::sleep(Duration::from_millis(300));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(&path, mode, stop.clone());
    for _ in 0..8 {
        std::thread::sleep(Duration::from_secs(1));
        logrotate(&conf, &state);
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let on_disk = lines_on_disk(&logs, "app.log");
    // copytruncate loses, in logrotate itself, lines written between its copy and its truncate:
    // they are on no file any more; logferry may still have read them in time.
    let must_arrive: Vec<String> = written.iter().filter(|l| on_disk.contains(*l)).cloned().collect();
    let got = a.wait_for(&must_arrive, T);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.stop(), 0);
    let got = if got.len() < a.delivered().len() { a.delivered() } else { got };
    let written_set: HashSet<&String> = written.iter().collect();
    let c = counts(&got);
    let dups: Vec<_> = c.iter().filter(|(_, n)| **n > 1).take(5).collect();
    if !dups.is_empty() {
        eprintln!("agent stderr:\n{}", a.stderr());
    }
    assert!(dups.is_empty(), "{mode}: duplicates {dups:?}");
    assert!(got.iter().all(|l| written_set.contains(l)), "{mode}: a delivered line was never written");
    (written.len(), written.len() - must_arrive.len())
}

#[test]
fn logrotate_create_every_second_while_writing_loses_nothing() {
    let (written, lost_by_logrotate) = run_logrotate_test("create");
    assert!(written > 5000, "{written}");
    assert_eq!(lost_by_logrotate, 0, "create mode loses nothing on disk");
}

#[test]
fn logrotate_copytruncate_every_second_while_writing_loses_nothing_on_disk() {
    let (written, lost_by_logrotate) = run_logrotate_test("copytruncate");
    assert!(written > 5000, "{written}");
    eprintln!("copytruncate: {written} lines written, {lost_by_logrotate} lost by logrotate's copy-then-truncate race");
}

#[test]
fn sigkill_at_random_instants_during_rotation_loses_no_line() {
    let mut a = Agent::new("app.log*", "", "");
    let logs = a.logs();
    let path = logs.join("app.log");
    let written = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop, logs, path) = (written.clone(), stop.clone(), logs.clone(), path.clone());
        std::thread::spawn(move || {
            let mut w = Writer::new(&path, "k");
            let mut n = 0;
            let mut last_rotation = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                w.write(25);
                written.lock().unwrap().extend(w.written.drain(..));
                if last_rotation.elapsed() > Duration::from_millis(700) {
                    std::fs::rename(&path, logs.join(format!("app.log.{n}"))).unwrap();
                    n += 1;
                    last_rotation = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut rng = Rng::new(7);
    let kills = 30;
    a.start();
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(150 + rng.below(450)));
        a.kill9();
        a.start();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let written = written.lock().unwrap().clone();
    let got = a.wait_for(&written, T);
    assert_eq!(a.stop(), 0);
    let got = if got.len() < a.delivered().len() { a.delivered() } else { got };
    let c = counts(&got);
    let duplicates: usize = c.values().map(|n| n - 1).sum();
    eprintln!("{kills} SIGKILLs: {} lines written, {} delivered, {duplicates} duplicates", written.len(), got.len());
    assert!(written.len() > 10_000);
    // a kill re-sends at most what was delivered but not yet checkpointed: a few batches
    assert!(duplicates < kills * 2000, "{duplicates} duplicates for {kills} kills");
}

#[test]
fn kubernetes_symlinked_pod_logs_with_containerd_rotation() {
    let mut a = Agent::new("../containers/*.log", "", "");
    let root = a.dir.path().to_path_buf();
    let pod_dir = root.join("pods/default_web-1_uid1/nginx");
    std::fs::create_dir_all(&pod_dir).unwrap();
    std::fs::create_dir_all(root.join("containers")).unwrap();
    let log0 = pod_dir.join("0.log");
    let mut w = Writer::new(&log0, "pod");
    w.write(100);
    std::os::unix::fs::symlink(&log0, root.join("containers/web-1_default_nginx-abc.log")).unwrap();
    a.start();
    a.wait_for(&w.written, T);
    for i in 0..5 {
        w.write(200);
        // containerd: 0.log -> 0.log.<timestamp>, a new 0.log; the symlink keeps its target path
        std::fs::rename(&log0, pod_dir.join(format!("0.log.2024010{i}-000000"))).unwrap();
        w.write(50);
        std::thread::sleep(Duration::from_millis(100));
    }
    // a new pod appears later
    let pod2 = root.join("pods/default_web-2_uid2/nginx");
    std::fs::create_dir_all(&pod2).unwrap();
    let mut w2 = Writer::new(&pod2.join("0.log"), "pod2");
    w2.write(30);
    std::os::unix::fs::symlink(pod2.join("0.log"), root.join("containers/web-2_default_nginx-def.log")).unwrap();
    let mut all = w.written.clone();
    all.extend(w2.written.clone());
    a.finish_exactly_once(&all);
}

#[test]
fn a_100_mb_line_without_newline_is_cut_and_memory_stays_bounded() {
    let mut a = Agent::new("*.log", "", "max_bytes_in_flight: 4194304");
    let mut w = Writer::new(&a.logs().join("small.log"), "s");
    w.write(10);
    let big = a.logs().join("big.log");
    {
        let mut f = std::fs::File::create(&big).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
    }
    a.start();
    a.wait_for(&w.written, T);
    std::thread::sleep(Duration::from_secs(2));
    w.write(10);
    std::fs::OpenOptions::new().append(true).open(&big).unwrap().write_all(b"\nafter the big line\n").unwrap();
    let mut expected = w.written.clone();
    expected.push("after the big line".into());
    a.wait_for(&expected, T);
    let rss = a.peak_rss_kib();
    assert_eq!(a.stop(), 0);
    let raw = std::fs::read(&a.out).unwrap();
    let longest = raw.split(|b| *b == b'\n').map(<[u8]>::len).max().unwrap();
    assert_eq!(longest, 1_024_000 - 1, "the 100 MB line arrives cut to the largest record, ending in the terminator");
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
    assert!(a.stderr().contains("records handed to the sink 22,"), "{}", a.stderr());
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Write,
    Rename,
    CopyTruncate,
    Delete,
    Restart,
    Kill,
}

/// Random sequences of writes, renames, copytruncates, deletions of rotated files, restarts and
/// kills, checked against the model: every line written arrives, and exactly once unless the
/// agent was killed.
#[test]
fn random_rotation_sequences_match_the_model() {
    for seed in [1u64, 2, 3] {
        let mut rng = Rng::new(seed);
        let mut a = Agent::new("app.log*", "", "");
        let logs = a.logs();
        let path = logs.join("app.log");
        let mut w = Writer::new(&path, &format!("m{seed}"));
        w.write(5);
        a.start();
        a.wait_for(&w.written, T);
        let mut rotated = 0;
        let mut killed = false;
        let mut ops = Vec::new();
        for _ in 0..25 {
            let op = *rng.pick(&[Op::Write, Op::Write, Op::Write, Op::Rename, Op::CopyTruncate, Op::Delete, Op::Restart, Op::Kill]);
            ops.push(op);
            match op {
                Op::Write => w.write(1 + rng.below(300) as usize),
                Op::Rename => {
                    if path.exists() {
                        std::fs::rename(&path, logs.join(format!("app.log.{rotated}"))).unwrap();
                        rotated += 1;
                    }
                }
                Op::CopyTruncate => {
                    if path.exists() {
                        std::fs::copy(&path, logs.join(format!("app.log.{rotated}"))).unwrap();
                        std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
                        rotated += 1;
                    }
                }
                Op::Delete => {
                    // logrotate removes the oldest rotation only once it is old: model that by
                    // removing a rotated file after its content arrived
                    if rotated > 0 {
                        a.wait_for(&w.written, T);
                        let _ = std::fs::remove_file(logs.join(format!("app.log.{}", rng.below(rotated))));
                    }
                }
                Op::Restart => {
                    assert_eq!(a.stop(), 0);
                    a.start();
                }
                Op::Kill => {
                    a.kill9();
                    killed = true;
                    a.start();
                }
            }
            std::thread::sleep(Duration::from_millis(rng.below(120)));
        }
        a.wait_for(&w.written, T);
        assert_eq!(a.stop(), 0);
        let got = a.delivered();
        if !killed {
            let c = counts(&got);
            let dups: Vec<_> = c.iter().filter(|(_, n)| **n > 1).take(3).collect();
            if !dups.is_empty() {
                eprintln!("agent stderr:\n{}", a.stderr());
            }
            assert!(dups.is_empty(), "seed {seed}, ops {ops:?}: duplicates {dups:?}");
        }
    }
}

#[test]
fn a_slow_writer_still_appending_to_a_rotated_file_loses_nothing_and_its_last_line_arrives_whole() {
    // the grace period is set above the writer's pauses (4 s), which the 3 s it used to be was not
    let mut a = Agent::new("app.log", "    rotated_file_grace_ms: 7000", "");
    let path = a.logs().join("app.log");
    let mut w = Writer::new(&path, "slow");
    w.write(10);
    a.start();
    a.wait_for(&w.written, T);
    // rotated to a name the pattern does not match; the writer keeps its descriptor
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::fs::rename(&path, a.logs().join("app.old")).unwrap();
    let mut expected = w.written.clone();
    for k in 0..2 {
        std::thread::sleep(Duration::from_secs(4));
        let line = format!("slow after rotation {k}");
        f.write_all(format!("{line}\n").as_bytes()).unwrap();
        expected.push(line);
    }
    std::thread::sleep(Duration::from_secs(4));
    f.write_all(b"the last line, written in two ").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    f.write_all(b"parts").unwrap();
    expected.push("the last line, written in two parts".into());
    drop(f);
    a.wait_for(&expected, T);
    assert_eq!(a.stop(), 0);
    a.assert_exactly_once(&expected);
}
