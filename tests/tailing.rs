//! The tailing engine end to end: the real binary, real files, real renames, truncations and
//! signals, compared line by line with what the `file` sink delivered.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};
use support::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn every_file_of_a_glob_is_tailed_at_once_and_each_line_arrives_once() {
    let mut a = Agent::new("*.log", "", "");
    let mut writers: Vec<Writer> = (0..3).map(|i| Writer::new(&a.logs().join(format!("app{i}.log")), &format!("w{i}"))).collect();
    for w in &mut writers {
        w.write(100);
    }
    a.start();
    for round in 0..20 {
        for w in &mut writers {
            w.write(50 + round);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let expected: Vec<String> = writers.iter().flat_map(|w| w.written.clone()).collect();
    a.finish_exactly_once(&expected);
}

#[test]
fn rename_and_create_rotation_while_writing_loses_nothing_and_repeats_nothing() {
    let mut a = Agent::new("app.log*", "", "");
    let path = a.logs().join("app.log");
    let mut w = Writer::new(&path, "r");
    a.start();
    for i in 0..15 {
        w.write(200);
        std::fs::rename(&path, a.logs().join(format!("app.log.{i}"))).unwrap();
        // the writer keeps its old descriptor for a moment, as loggers do before they reopen
        let mut old = std::fs::OpenOptions::new().append(true).open(a.logs().join(format!("app.log.{i}"))).unwrap();
        let l = w.line();
        old.write_all(format!("{l}\n").as_bytes()).unwrap();
        w.written.push(l);
        std::thread::sleep(Duration::from_millis(30));
    }
    w.write(10);
    a.finish_exactly_once(&w.written);
}

#[test]
fn rotated_file_outside_the_glob_is_read_to_its_end_and_its_unterminated_last_line_sent() {
    // once it has not grown for the grace period (60 s by default)
    let mut a = Agent::new("app.log", "    rotated_file_grace_ms: 2000", "");
    let path = a.logs().join("app.log");
    let mut w = Writer::new(&path, "o");
    w.write(100);
    a.start();
    a.wait_for(&w.written, T);
    // lines written just before the rename, the last one without its newline
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    for _ in 0..50 {
        let l = w.line();
        f.write_all(format!("{l}\n").as_bytes()).unwrap();
        w.written.push(l);
    }
    let last = w.line();
    f.write_all(last.as_bytes()).unwrap();
    w.written.push(last);
    std::fs::rename(&path, a.logs().join("app.log.1")).unwrap();
    w.write(20);
    a.finish_exactly_once(&w.written);
}

#[test]
fn deleted_while_open_is_read_to_its_end() {
    let mut a = Agent::new("*.log", "", "");
    let path = a.logs().join("gone.log");
    let mut w = Writer::new(&path, "d");
    w.write(10);
    a.start();
    a.wait_for(&w.written, T);
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    for _ in 0..500 {
        let l = w.line();
        f.write_all(format!("{l}\n").as_bytes()).unwrap();
        w.written.push(l);
    }
    drop(f);
    a.finish_exactly_once(&w.written);
}

#[test]
fn truncation_in_place_starts_over() {
    let mut a = Agent::new("*.log", "", "");
    let path = a.logs().join("t.log");
    let mut w = Writer::new(&path, "t");
    w.write(300);
    a.start();
    a.wait_for(&w.written, T);
    std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    w.write(5);
    a.finish_exactly_once(&w.written);
}

#[test]
fn copytruncate_copy_keeps_its_offset_and_the_original_starts_over() {
    let mut a = Agent::new("app.log*", "", "");
    let path = a.logs().join("app.log");
    let mut w = Writer::new(&path, "c");
    w.write(1);
    a.start();
    a.wait_for(&w.written, T);
    for i in 0..8 {
        w.write(300);
        std::thread::sleep(Duration::from_millis(50));
        std::fs::copy(&path, a.logs().join(format!("app.log.{i}"))).unwrap();
        std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
    }
    w.write(10);
    a.finish_exactly_once(&w.written);
}

#[test]
fn restart_resumes_at_the_checkpoint_and_rotation_while_stopped_is_followed() {
    let mut a = Agent::new("app.log*", "", "");
    let path = a.logs().join("app.log");
    let mut w = Writer::new(&path, "s");
    w.write(1000);
    a.start();
    a.wait_for(&w.written, T);
    assert_eq!(a.stop(), 0);
    // while stopped: more lines, a rotation, and a new file
    w.write(100);
    std::fs::rename(&path, a.logs().join("app.log.1")).unwrap();
    w.write(100);
    a.start();
    a.finish_exactly_once(&w.written);
}

#[test]
fn a_file_replaced_while_stopped_is_read_from_the_start() {
    let mut a = Agent::new("*.log", "", "");
    let path = a.logs().join("r.log");
    let mut w = Writer::new(&path, "i");
    w.write(200);
    a.start();
    a.wait_for(&w.written, T);
    assert_eq!(a.stop(), 0);
    // deleted and created again under the same name (the inode may well be reused)
    std::fs::remove_file(&path).unwrap();
    let mut w2 = Writer::new(&path, "j");
    w2.write(400);
    a.start();
    let mut all = w.written.clone();
    all.extend(w2.written.clone());
    a.finish_exactly_once(&all);
}

#[test]
fn a_file_rewritten_in_place_while_stopped_is_detected_and_read_from_the_start() {
    let mut a = Agent::new("*.log", "", "");
    let path = a.logs().join("r.log");
    let mut w = Writer::new(&path, "i");
    w.write(200);
    a.start();
    a.wait_for(&w.written, T);
    assert_eq!(a.stop(), 0);
    // same inode, new content longer than the saved offset: a stale offset would skip lines
    let mut w2 = Writer::new(&path, "rewritten");
    std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
    w2.write(400);
    a.start();
    let mut all = w.written.clone();
    all.extend(w2.written.clone());
    a.finish_exactly_once(&all);
    assert!(a.stderr().contains("is not the file its checkpoint describes"), "{}", a.stderr());
}

#[test]
fn odd_bytes_nul_invalid_utf8_and_no_trailing_newline_pass_through() {
    let mut a = Agent::new("*.log", "", "");
    let path = a.logs().join("odd.log");
    let content: &[u8] = b"nul \0 inside\ninvalid \xff\xfe utf8\ncr\r\n\nlast without newline";
    std::fs::write(&path, content).unwrap();
    a.start();
    std::thread::sleep(Duration::from_millis(1500));
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b" now ends\n").unwrap();
    let expected: Vec<String> = String::from_utf8_lossy(b"nul \0 inside\ninvalid \xff\xfe utf8\ncr\r\n\nlast without newline now ends\n")
        .lines()
        .map(String::from)
        .collect();
    a.wait_for(&expected, T);
    assert_eq!(a.stop(), 0);
    let raw = std::fs::read(&a.out).unwrap();
    assert_eq!(raw, b"nul \0 inside\ninvalid \xff\xfe utf8\ncr\r\n\nlast without newline now ends\n", "records are the exact bytes");
}

/// An agent over `*.log` with a readable `good.log` (50 lines written) and the files `names`
/// that its user may not read (it runs as `nobody` when the test is root, who reads anything).
fn agent_with_unreadable_files(names: &[String]) -> (Agent, Writer) {
    use std::os::unix::fs::PermissionsExt;
    let mut a = Agent::new("*.log", "", "");
    let mut w = Writer::new(&a.logs().join("good.log"), "g");
    w.write(50);
    for name in names {
        std::fs::write(a.logs().join(name), "secret\n").unwrap();
    }
    std::fs::create_dir_all(a.dir.path().join("state")).unwrap();
    std::fs::create_dir_all(a.dir.path().join("out")).unwrap();
    if is_root() {
        open_to_all(a.dir.path());
        a.as_nobody = true;
    }
    for name in names {
        std::fs::set_permissions(a.logs().join(name), std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    (a, w)
}

#[test]
fn an_unreadable_file_is_reported_once_and_the_others_keep_flowing() {
    let (mut a, mut w) = agent_with_unreadable_files(&["bad.log".to_string()]);
    a.start();
    for _ in 0..5 {
        w.write(20);
        std::thread::sleep(Duration::from_millis(300));
    }
    a.wait_for(&w.written, T);
    assert_eq!(a.stop(), 0);
    let err = a.stderr();
    assert_eq!(err.matches("cannot read").count(), 1, "reported once: {err}");
    assert!(err.contains("bad.log") && err.contains("ermission denied"), "{err}");
}

#[test]
fn end_of_file_start_skips_existing_lines_but_not_a_partial_one_nor_later_files() {
    let mut a = Agent::new("*.log", "    initial_position: end_of_file", "");
    let path = a.logs().join("e.log");
    let mut w = Writer::new(&path, "old");
    w.write(50);
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"partial ").unwrap();
    a.start();
    std::thread::sleep(Duration::from_millis(800));
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"completed\n").unwrap();
    let mut w2 = Writer::new(&path, "new");
    w2.write(20);
    let mut later = Writer::new(&a.logs().join("later.log"), "later");
    later.write(30);
    let mut expected = vec!["partial completed".to_string()];
    expected.extend(w2.written.clone());
    expected.extend(later.written.clone());
    a.finish_exactly_once(&expected);
}

#[test]
fn a_slowly_written_stack_trace_is_one_record_and_waits_only_for_its_timeout() {
    let extra = "    multiline:\n      start_pattern: '\\d{4}-'\n      flush_timeout_ms: 1500";
    let mut a = Agent::new("*.log", extra, "");
    let path = a.logs().join("app.log");
    std::fs::write(&path, "").unwrap();
    a.start();
    std::thread::sleep(Duration::from_millis(500));
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    for l in ["2024-01-01 ERROR boom\n", "\tat a.b(C.java:1)\n", "\tat d.e(F.java:2)\n"] {
        f.write_all(l.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let raw = std::fs::read_to_string(&a.out).unwrap_or_default();
    assert_eq!(
        raw, "2024-01-01 ERROR boom\n\tat a.b(C.java:1)\n\tat d.e(F.java:2)\n",
        "sent whole after its timeout, without waiting for the next record"
    );
    assert_eq!(a.stop(), 0);
    assert!(a.stderr().contains("records handed to the sink 1,"), "{}", a.stderr());
}

/// CPU-seconds the process has used, from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

#[test]
fn lines_written_to_a_rotated_file_after_it_was_renamed_are_read_before_it_is_let_go() {
    let mut a = Agent::new("app.log", "", "");
    let path = a.logs().join("app.log");
    let mut w = Writer::new(&path, "late");
    w.write(10);
    a.start();
    a.wait_for(&w.written, T);
    let rotated = a.logs().join("app.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    // the application keeps writing to its old descriptor for a while before it reopens
    let mut old = Writer::new(&rotated, "old-fd");
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(700));
        old.write(5);
    }
    let mut expected = w.written.clone();
    expected.extend(old.written.clone());
    a.finish_exactly_once(&expected);
}

#[test]
fn an_idle_agent_does_not_spin_after_copies_are_deleted() {
    let mut a = Agent::new("app.log*", "", "");
    let path = a.logs().join("app.log");
    let mut w = Writer::new(&path, "c");
    w.write(1);
    a.start();
    a.wait_for(&w.written, T);
    for i in 0..3 {
        w.write(200);
        std::thread::sleep(Duration::from_millis(200));
        std::fs::copy(&path, a.logs().join(format!("app.log.{i}"))).unwrap();
        std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
    }
    a.wait_for(&w.written, T);
    for i in 0..3 {
        std::fs::remove_file(a.logs().join(format!("app.log.{i}"))).unwrap();
    }
    std::thread::sleep(Duration::from_secs(6));
    let before = cpu_secs(a.pid());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_secs(a.pid()) - before;
    assert!(used < 0.3, "the agent used {used} CPU-seconds in 3 idle seconds");
    assert_eq!(a.stop(), 0);
    a.assert_exactly_once(&w.written);
}

#[test]
fn a_flow_whose_files_all_went_away_is_not_a_first_start() {
    let mut a = Agent::new("*.log", "    initial_position: end_of_file", "");
    let first = a.logs().join("a.log");
    std::fs::write(&first, "").unwrap();
    a.start();
    std::thread::sleep(Duration::from_millis(800));
    let mut w = Writer::new(&first, "a");
    w.write(5);
    a.wait_for(&w.written, T);
    std::fs::remove_file(&first).unwrap();
    std::thread::sleep(Duration::from_secs(5)); // read to its end, let go, its row removed
    assert_eq!(a.stop(), 0);
    // written while stopped: a new file, which must be read from its start
    let mut w2 = Writer::new(&a.logs().join("b.log"), "b");
    w2.write(20);
    a.start();
    let mut all = w.written.clone();
    all.extend(w2.written.clone());
    a.finish_exactly_once(&all);
}

/// Appends CRI lines (`time stream P|F message`) to a container log.
fn cri(path: &std::path::Path, lines: &[(&str, &str, &str)]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for (stream, tag, msg) in lines {
        std::io::Write::write_all(&mut f, format!("2024-05-01T10:00:00.000000001Z {stream} {tag} {msg}\n").as_bytes()).unwrap();
    }
}

#[test]
fn container_logs_merge_partial_lines_carry_the_pod_and_survive_containerd_rotation() {
    let mut a = Agent::new("containers/*.log", "    container_logs: {format: cri, exclude_namespaces: [kube-system]}", "");
    let logs = a.logs();
    let id = "c".repeat(64);
    let pod_dir = logs.join("pods/shop_web-1_0b6a2c1e-uid/nginx");
    let sys_dir = logs.join("pods/kube-system_dns-1_u2/coredns");
    std::fs::create_dir_all(&pod_dir).unwrap();
    std::fs::create_dir_all(&sys_dir).unwrap();
    std::fs::create_dir_all(logs.join("containers")).unwrap();
    let log = pod_dir.join("0.log");
    cri(&log, &[("stdout", "F", "first"), ("stdout", "P", "hel"), ("stderr", "F", "warn 1"), ("stdout", "F", "lo")]);
    cri(&sys_dir.join("0.log"), &[("stdout", "F", "dns noise")]);
    std::os::unix::fs::symlink(&log, logs.join(format!("containers/web-1_shop_nginx-{id}.log"))).unwrap();
    std::os::unix::fs::symlink(sys_dir.join("0.log"), logs.join(format!("containers/dns-1_kube-system_coredns-{id}.log"))).unwrap();
    a.start();
    // containerd rotates: 0.log → 0.log.<time>, a new 0.log; a partial line is cut by it
    std::thread::sleep(Duration::from_millis(700));
    cri(&log, &[("stdout", "F", "before rotation"), ("stdout", "P", "split ")]);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::rename(&log, pod_dir.join("0.log.20240501-100000")).unwrap();
    cri(&log, &[("stdout", "F", "across"), ("stdout", "F", "after rotation")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let records: Vec<serde_json::Value> =
            a.delivered().iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        let got = |m: &str| records.iter().any(|r| r["log"] == m);
        if (got("after rotation") && got("split ")) || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(a.stop(), 0);
    // what arrived up to the end, duplicates included
    let records: Vec<serde_json::Value> = a.delivered().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let logs_of = |stream: &str| -> Vec<String> {
        records.iter().filter(|r| r["stream"] == stream).map(|r| r["log"].as_str().unwrap().to_string()).collect()
    };
    let stdout = logs_of("stdout");
    // merged within a file; a line cut by the rotation arrives as its two parts (the first when
    // the rotated file is let go), nothing lost or repeated
    let mut sorted = stdout.clone();
    sorted.sort();
    assert_eq!(sorted, ["across", "after rotation", "before rotation", "first", "hello", "split "], "{stdout:?}");
    assert_eq!(logs_of("stderr"), ["warn 1"]);
    for r in &records {
        let k = &r["kubernetes"];
        assert_eq!(
            (k["namespace"].as_str(), k["pod"].as_str(), k["container"].as_str()),
            (Some("shop"), Some("web-1"), Some("nginx")),
            "{r}"
        );
        assert_eq!(k["pod_uid"], "0b6a2c1e-uid");
        assert_eq!(k["container_id"], id.as_str());
        assert_eq!(r["time"], "2024-05-01T10:00:00.000000001Z");
    }
    assert!(!records.iter().any(|r| r["log"] == "dns noise"), "kube-system is excluded");
}

#[test]
fn docker_json_file_logs_merge_partial_lines_and_carry_the_pod() {
    let mut a = Agent::new("containers/*.log", "    container_logs: {format: docker}", "");
    let logs = a.logs();
    let id = "d".repeat(64);
    let docker_dir = logs.join(format!("docker/{id}"));
    std::fs::create_dir_all(&docker_dir).unwrap();
    std::fs::create_dir_all(logs.join("containers")).unwrap();
    let file = docker_dir.join(format!("{id}-json.log"));
    let lines = [
        r#"{"log":"GET / 200\n","stream":"stdout","time":"2024-05-01T10:00:00.1Z"}"#,
        r#"{"log":"a long line, ","stream":"stdout","time":"2024-05-01T10:00:00.2Z"}"#,
        r#"{"log":"Traceback\n","stream":"stderr","time":"2024-05-01T10:00:00.3Z"}"#,
        r#"{"log":"continued \"quoted\"\n","stream":"stdout","time":"2024-05-01T10:00:00.4Z"}"#,
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    std::os::unix::fs::symlink(&file, logs.join(format!("containers/api-5_prod_app-{id}.log"))).unwrap();
    a.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let records = loop {
        let records: Vec<serde_json::Value> = a.delivered().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        if records.len() >= 3 || std::time::Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(a.stop(), 0);
    assert_eq!(records.len(), a.delivered().len(), "nothing more arrived at the end");
    let got: Vec<(&str, &str)> = records.iter().map(|r| (r["stream"].as_str().unwrap(), r["log"].as_str().unwrap())).collect();
    assert_eq!(got, [("stdout", "GET / 200"), ("stderr", "Traceback"), ("stdout", "a long line, continued \"quoted\"")]);
    assert_eq!(records[2]["time"], "2024-05-01T10:00:00.2Z", "the time of the first part");
    for r in &records {
        let k = &r["kubernetes"];
        assert_eq!((k["namespace"].as_str(), k["pod"].as_str(), k["container"].as_str()), (Some("prod"), Some("api-5"), Some("app")));
        assert_eq!(k["container_id"], id.as_str());
    }
}

#[test]
fn two_flows_tailing_one_file_both_see_its_appends_without_waiting_for_a_scan() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("app.log");
    let mut w = Writer::new(&path, "both");
    w.write(10);
    let cfg = d.path().join("logferry.yaml");
    // scans an hour apart: only file notifications can bring the appends
    let flow = |id: &str| {
        format!(
            "  - id: {id}\n    path: {}\n    scan_interval_ms: 3600000\n    sink: {{type: file, path: {}}}\n",
            path.display(),
            d.path().join(format!("{id}.out")).display()
        )
    };
    std::fs::write(&cfg, format!("checkpoint_file: {}\nflows:\n{}{}", d.path().join("cp.db").display(), flow("one"), flow("two"))).unwrap();
    let err = d.path().join("agent.err");
    let mut agent = run_agent(&cfg, &err);
    let delivered = |id: &str| -> Vec<String> {
        std::fs::read_to_string(d.path().join(format!("{id}.out"))).map(|t| t.lines().map(String::from).collect()).unwrap_or_default()
    };
    let wait = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while (delivered("one").len() < n || delivered("two").len() < n) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait(10);
    for _ in 0..5 {
        w.write(20);
        std::thread::sleep(Duration::from_millis(100));
    }
    wait(w.written.len());
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops").success());
    for id in ["one", "two"] {
        assert_exactly_once(&w.written, &delivered(id));
    }
}

#[test]
fn a_growing_file_that_only_shares_a_banner_with_a_tailed_file_ships_as_it_grows_without_spinning() {
    let mut a = Agent::new("*.log", "", "");
    // the same banner at the top of both files (their first 256 bytes, the fingerprint, are
    // the same), as an application writes at start
    let banner = |name: &str| format!("# {} {name} #\n", "=".repeat(290));
    let first = a.logs().join("first.log");
    std::fs::write(&first, banner("first")).unwrap();
    let mut w1 = Writer::new(&first, "first");
    w1.write(200);
    a.start();
    let mut expected = vec![banner("first").trim_end().to_string()];
    expected.extend(w1.written.clone());
    a.wait_for(&expected, T);
    let cpu_before = cpu_seconds(a.pid());
    let second = a.logs().join("second.log");
    std::fs::write(&second, banner("second")).unwrap();
    let mut w2 = Writer::new(&second, "second");
    let started = Instant::now();
    // it keeps growing: its lines arrive meanwhile, not only once it stops
    let mut arrived_while_growing = false;
    while started.elapsed() < Duration::from_secs(4) {
        w2.write(10);
        std::thread::sleep(Duration::from_millis(100));
        arrived_while_growing |= a.delivered().iter().any(|l| l.starts_with("second line"));
    }
    let cpu = cpu_seconds(a.pid()) - cpu_before;
    assert!(arrived_while_growing, "the second file's lines arrive while it grows\n{}", a.stderr());
    assert!(cpu < 2.0, "the agent spins while the second file grows: {cpu:.2} CPU seconds in 4 s");
    expected.push(banner("second").trim_end().to_string());
    expected.extend(w2.written.clone());
    a.finish_exactly_once(&expected);
}

#[test]
fn records_carry_their_files_path_and_the_host_when_the_flow_asks() {
    let mut a = Agent::new("*.log", "    provenance: {path_key: file, host_key: host}", "");
    let (one, two) = (a.logs().join("one.log"), a.logs().join("two.log"));
    std::fs::write(&one, "plain line\n{\"level\":\"info\",\"n\":1}\n").unwrap();
    std::fs::write(&two, "second file\n").unwrap();
    a.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.delivered().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(a.stop(), 0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let mut got: Vec<serde_json::Value> = a.delivered().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    got.sort_by_key(|r| r.to_string());
    let mut expected = vec![
        serde_json::json!({"message": "plain line", "file": one.to_str().unwrap(), "host": host}),
        serde_json::json!({"level": "info", "n": 1, "file": one.to_str().unwrap(), "host": host}),
        serde_json::json!({"message": "second file", "file": two.to_str().unwrap(), "host": host}),
    ];
    expected.sort_by_key(|r| r.to_string());
    assert_eq!(got, expected);
}

#[test]
fn thousands_of_unreadable_files_are_reported_in_one_line_with_a_count_and_an_example() {
    let names: Vec<String> = (0..3000).map(|n| format!("secret-{n:04}.log")).collect();
    let (mut a, w) = agent_with_unreadable_files(&names);
    a.start();
    a.wait_for(&w.written, T);
    std::thread::sleep(Duration::from_millis(1000)); // more scans: still said once
    assert_eq!(a.stop(), 0);
    let err = a.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("cannot read")).collect();
    assert_eq!(lines.len(), 1, "one line for one cause: {lines:?}");
    assert!(
        lines[0].contains("cannot read 3000 files, such as ") && lines[0].contains("secret-") && lines[0].contains("ermission denied"),
        "{}",
        lines[0]
    );
}
