//! journald sources against real journal files: entries are written with systemd's own
//! `systemd-journal-remote` (Debian's package, installed by scripts/test.sh), which turns an export
//! stream into a journal file, and read back by the agent through libsystemd's `sd_journal`.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const T: Duration = Duration::from_secs(60);
const BOOT: &str = "0123456789abcdef0123456789abcdef";

fn journal_remote() -> PathBuf {
    let p = PathBuf::from("/lib/systemd/systemd-journal-remote");
    assert!(p.exists(), "{} is missing: scripts/test.sh installs systemd-journal-remote with apt-get", p.display());
    p
}

/// One entry's fields (besides the timestamps and boot id the writer adds).
type Fields = Vec<(&'static str, Vec<u8>)>;

/// Appends entries to the journal file `dir/remote.journal` with systemd-journal-remote; entry
/// `n` (counting from `first`) is stamped `first + n` ms after a fixed time.
fn append_entries(dir: &Path, first: usize, entries: &[Fields]) {
    let stamped: Vec<(u64, Fields)> =
        entries.iter().enumerate().map(|(n, f)| (1_765_094_405_000_000u64 + (first + n) as u64 * 1000, f.clone())).collect();
    append_entries_at(dir, &stamped);
}

/// Appends entries stamped with their `__REALTIME_TIMESTAMP` (microseconds).
fn append_entries_at(dir: &Path, entries: &[(u64, Fields)]) {
    append_entries_of_boot(dir, entries, BOOT)
}

/// Appends entries of boot `boot`.
fn append_entries_of_boot(dir: &Path, entries: &[(u64, Fields)], boot: &str) {
    let mut export = Vec::new();
    for (ts, fields) in entries {
        // the monotonic clock runs with the wall clock (the journal orders a boot's entries by it)
        write!(export, "__REALTIME_TIMESTAMP={ts}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={boot}\n", ts - 1_765_000_000_000_000).unwrap();
        for (name, value) in fields {
            if value.contains(&b'\n') {
                export.extend_from_slice(format!("{name}\n").as_bytes());
                export.extend_from_slice(&(value.len() as u64).to_le_bytes());
                export.extend_from_slice(value);
                export.push(b'\n');
            } else {
                export.extend_from_slice(format!("{name}=").as_bytes());
                export.extend_from_slice(value);
                export.push(b'\n');
            }
        }
        export.push(b'\n');
    }
    let stream = dir.with_extension("export");
    std::fs::write(&stream, &export).unwrap();
    let out =
        Command::new(journal_remote()).arg(format!("--output={}", dir.join("remote.journal").display())).arg(&stream).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn message(i: usize) -> Fields {
    vec![
        ("_HOSTNAME", b"ip-10-0-0-1".to_vec()),
        ("SYSLOG_IDENTIFIER", b"app".to_vec()),
        ("_PID", (100 + i % 7).to_string().into_bytes()),
        ("PRIORITY", (i % 8).to_string().into_bytes()),
        ("_SYSTEMD_UNIT", if i.is_multiple_of(2) { b"app.service".to_vec() } else { b"other.service".to_vec() }),
        ("MESSAGE", format!("entry {i:06}").into_bytes()),
    ]
}

fn config(d: &Path, journald: &str) -> PathBuf {
    let cfg = d.join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\nflows:\n  - id: journal\n    sources:\n      - journald: {{directory: {}{journald}}}\n    sink: {{type: file, path: {}}}\n",
            d.join("cp.db").display(),
            d.join("journal").display(),
            d.join("out.log").display()
        ),
    )
    .unwrap();
    cfg
}

fn records(d: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(d.join("out.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn wait_records(d: &Path, n: usize, agent_log: &Path) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + T;
    loop {
        let r = records(d);
        if r.len() >= n || Instant::now() > deadline {
            assert_eq!(r.len(), n, "{}", std::fs::read_to_string(agent_log).unwrap_or_default());
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(cfg: &Path, log: &Path) -> Child {
    agent_command(cfg, log)
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn messages(records: &[serde_json::Value]) -> Vec<String> {
    records.iter().map(|r| r["MESSAGE"].as_str().unwrap_or_default().to_string()).collect()
}

#[test]
fn every_entry_arrives_once_in_order_with_its_fields_across_appends_and_a_restart() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("journal");
    std::fs::create_dir(&dir).unwrap();
    let mut first: Vec<Fields> = (0..2000).map(message).collect();
    first[7].push(("STACK", b"Exception\n\tat Main.main".to_vec()));
    first[8].push(("BLOB", vec![0xff, 0xfe, 0x00, 0x41]));
    append_entries(&dir, 0, &first);
    let cfg = config(d.path(), "");
    let log = d.path().join("agent.log");
    let mut agent = start(&cfg, &log);
    let got = wait_records(d.path(), 2000, &log);
    let expected: Vec<String> = (0..2000).map(|i| format!("entry {i:06}")).collect();
    assert_eq!(messages(&got), expected, "every entry once, in order");
    assert_eq!(got[0]["timestamp"], "2025-12-07T08:00:05.000000Z");
    assert_eq!(got[1]["_SYSTEMD_UNIT"], "other.service");
    assert_eq!(got[1]["_PID"], "101");
    assert_eq!(got[7]["STACK"], "Exception\n\tat Main.main");
    assert_eq!(got[8]["BLOB"], "//4AQQ==", "binary values are base64");
    assert!(got[0].get("__CURSOR").is_none() && got[0].get("__MONOTONIC_TIMESTAMP").is_none(), "{}", got[0]);
    // appended while running: followed
    append_entries(&dir, 2000, &(2000..2500).map(message).collect::<Vec<_>>());
    wait_records(d.path(), 2500, &log);
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    // written while stopped: the restart resumes after the saved cursor
    append_entries(&dir, 2500, &(2500..2600).map(message).collect::<Vec<_>>());
    let mut agent = start(&cfg, &log);
    let got = wait_records(d.path(), 2600, &log);
    std::thread::sleep(Duration::from_secs(1));
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    let expected: Vec<String> = (0..2600).map(|i| format!("entry {i:06}")).collect();
    assert_eq!(messages(&records(d.path())), expected, "nothing lost, nothing twice: {}", got.len());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("resumes after cursor"), "{text}");
}

#[test]
fn unit_priority_kernel_and_field_filters_keep_only_the_entries_they_name() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("journal");
    std::fs::create_dir(&dir).unwrap();
    let mut entries: Vec<Fields> = (0..400).map(message).collect();
    for (i, e) in entries.iter_mut().enumerate() {
        if i.is_multiple_of(10) {
            e.push(("_TRANSPORT", b"kernel".to_vec()));
        }
        e.push(("TEAM", if i.is_multiple_of(3) { b"web".to_vec() } else { b"db".to_vec() }));
    }
    append_entries(&dir, 0, &entries);
    let cfg = config(d.path(), ", units: [app], priority: warning, kernel: false, matches: {TEAM: [web, api]}");
    let log = d.path().join("agent.log");
    let want: Vec<String> =
        (0..400).filter(|i| i % 2 == 0 && i % 8 <= 4 && i % 10 != 0 && i % 3 == 0).map(|i| format!("entry {i:06}")).collect();
    assert!(want.len() > 10);
    let mut agent = start(&cfg, &log);
    let got = wait_records(d.path(), want.len(), &log);
    std::thread::sleep(Duration::from_secs(1));
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    assert_eq!(messages(&got), want);
    assert_eq!(records(d.path()).len(), want.len());
}

/// The line rsyslog's default template (`RSYSLOG_TraditionalFileFormat`) writes for an entry, in a
/// host at UTC-5: `Mmm dd hh:mm:ss HOST TAG[PID]: MESSAGE`, control characters as `#ooo`.
fn rsyslog_traditional(ts_us: u64, f: &Fields) -> Vec<u8> {
    let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let t = time::OffsetDateTime::from_unix_timestamp((ts_us / 1_000_000) as i64).unwrap().to_offset(time::macros::offset!(-5));
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let mut line =
        format!("{} {:>2} {:02}:{:02}:{:02} ", MONTHS[t.month() as usize - 1], t.day(), t.hour(), t.minute(), t.second()).into_bytes();
    line.extend(get("_HOSTNAME").unwrap());
    line.push(b' ');
    line.extend(get("SYSLOG_IDENTIFIER").or_else(|| get("_COMM")).unwrap());
    if let Some(pid) = get("SYSLOG_PID").or_else(|| get("_PID")) {
        line.extend(format!("[{}]", String::from_utf8(pid).unwrap()).as_bytes());
    }
    line.push(b':');
    let mut msg = get("MESSAGE").unwrap();
    if msg.last() == Some(&b'\n') {
        msg.pop();
    }
    if msg.first() != Some(&b' ') {
        line.push(b' ');
    }
    for b in msg {
        if b < 0x20 || b == 0x7f {
            line.extend(format!("#{b:03o}").as_bytes());
        } else {
            line.push(b);
        }
    }
    line.push(b'\n');
    line
}

#[test]
fn the_syslog_shape_is_what_logtojson_syslog_makes_of_the_line_rsyslog_writes_for_each_entry() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("journal");
    std::fs::create_dir(&dir).unwrap();
    let f = |pairs: &[(&'static str, &[u8])]| -> Fields { pairs.iter().map(|(n, v)| (*n, v.to_vec())).collect() };
    let h: (&'static str, &[u8]) = ("_HOSTNAME", b"ip-10-0-0-1");
    let entries: Vec<(u64, Fields)> = vec![
        (1_765_094_405_000_000, f(&[h, ("SYSLOG_IDENTIFIER", b"sshd"), ("_PID", b"812"), ("MESSAGE", b"Accepted publickey for ec2-user")])),
        (
            1_765_094_406_000_000,
            f(&[h, ("SYSLOG_IDENTIFIER", b"app"), ("SYSLOG_PID", b"7"), ("_PID", b"8"), ("MESSAGE", b"Exception\n\tat Main.main\n")]),
        ),
        (1_765_094_407_000_000, f(&[h, ("SYSLOG_IDENTIFIER", b"kernel"), ("_TRANSPORT", b"kernel"), ("MESSAGE", b"eth0: link up")])),
        (1_765_094_408_000_000, f(&[h, ("_COMM", b"cron"), ("_PID", b"99"), ("MESSAGE", b" leading space")])),
        (1_765_094_409_000_000, f(&[h, ("SYSLOG_IDENTIFIER", b"(sd-pam)"), ("_PID", b"5"), ("MESSAGE", b"dropped by both")])),
        (1_765_094_410_000_000, f(&[h, ("SYSLOG_IDENTIFIER", b"bin"), ("_PID", b"6"), ("MESSAGE", b"not utf-8 \xff\xfe here")])),
        (1_765_958_410_000_000, f(&[h, ("SYSLOG_IDENTIFIER", b"systemd"), ("_PID", b"1"), ("MESSAGE", b"Started Daily apt upgrade.")])),
        (1_765_958_411_000_000, f(&[h, ("SYSLOG_IDENTIFIER", b"quotes"), ("_PID", b"2"), ("MESSAGE", b"say \"hi\" \\ and a\ttab")])),
    ];
    append_entries_at(&dir, &entries);
    // the Kinesis Agent's LOGTOJSON SYSLOG over the lines rsyslog would have written
    let lines = d.path().join("messages");
    std::fs::write(&lines, entries.iter().flat_map(|(ts, f)| rsyslog_traditional(*ts, f)).collect::<Vec<u8>>()).unwrap();
    let agent_json = d.path().join("agent.json");
    std::fs::write(
        &agent_json,
        r#"{"flows": [{"filePattern": "/var/log/messages", "deliveryStream": "s", "dataProcessingOptions": [{"optionName": "LOGTOJSON", "logFormat": "SYSLOG"}]}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["preview", "--config", agent_json.to_str().unwrap(), lines.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str::<String>(l).unwrap().trim_end().to_string()).collect();
    assert_eq!(expected.len(), 7, "the (sd-pam) line is dropped: {expected:?}");
    // the same entries through a journald source with shape syslog, on a host at UTC-5
    let cfg = config(d.path(), ", shape: syslog");
    let log = d.path().join("agent.log");
    let mut agent = agent_command(&cfg, &log).env("TZ", "<-05>5").spawn().unwrap();
    wait_records(d.path(), 7, &log);
    std::thread::sleep(Duration::from_secs(1));
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    let got: Vec<String> = std::fs::read_to_string(d.path().join("out.log")).unwrap().lines().map(String::from).collect();
    assert_eq!(got, expected);
}

#[test]
fn twenty_sigkills_while_entries_are_appended_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("journal");
    std::fs::create_dir(&dir).unwrap();
    let cfg = config(d.path(), "");
    let log = d.path().join("agent.log");
    let mut written = 0;
    for _ in 0..20 {
        let mut agent = start(&cfg, &log);
        append_entries(&dir, written, &(written..written + 500).map(message).collect::<Vec<_>>());
        written += 500;
        std::thread::sleep(Duration::from_millis(300));
        agent.kill().unwrap();
        agent.wait().unwrap();
    }
    let mut agent = start(&cfg, &log);
    let deadline = Instant::now() + T;
    let distinct = || {
        let mut m = messages(&records(d.path()));
        m.sort();
        m.dedup();
        m
    };
    while distinct().len() < written && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    let expected: Vec<String> = (0..written).map(|i| format!("entry {i:06}")).collect();
    assert_eq!(distinct(), expected, "every entry arrived");
    let all = messages(&records(d.path()));
    eprintln!("{} records for {written} entries after 20 SIGKILLs", all.len());
    // sent again after a kill: only what was not yet saved (about a second's worth at most)
    assert!(all.len() < written * 2, "{} records", all.len());
}

#[test]
fn a_damaged_journal_file_is_skipped_with_a_warning_and_a_rotated_one_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("journal");
    std::fs::create_dir(&dir).unwrap();
    append_entries(&dir, 0, &(0..300).map(message).collect::<Vec<_>>());
    // a file that is not a journal, and one cut short
    std::fs::write(dir.join("damaged.journal"), vec![0x5au8; 100_000]).unwrap();
    let whole = std::fs::read(dir.join("remote.journal")).unwrap();
    std::fs::write(dir.join("cut.journal"), &whole[..whole.len() / 3]).unwrap();
    let cfg = config(d.path(), "");
    let log = d.path().join("agent.log");
    let mut agent = start(&cfg, &log);
    wait_records(d.path(), 300, &log);
    let said = wait_for_log(&log, "cut.journal", T);
    for file in ["damaged.journal", "cut.journal"] {
        let line = said.lines().find(|l| l.contains(file)).unwrap_or_default();
        assert!(line.contains("WARN") && line.contains("skipped, the others are read"), "{said}");
    }
    std::fs::remove_file(dir.join("cut.journal")).unwrap();
    // rotated as journald does: the active file renamed to an archived name, a new one begun
    std::fs::rename(dir.join("remote.journal"), dir.join("remote@0000000000000001-0000000000000001.journal")).unwrap();
    append_entries(&dir, 300, &(300..600).map(message).collect::<Vec<_>>());
    wait_records(d.path(), 600, &log);
    std::thread::sleep(Duration::from_secs(1));
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    let expected: Vec<String> = (0..600).map(|i| format!("entry {i:06}")).collect();
    assert_eq!(messages(&records(d.path())), expected);
}

#[test]
fn a_saved_cursor_whose_entries_were_vacuumed_resumes_at_the_oldest_entry_with_an_error_and_a_counted_gap() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("journal");
    std::fs::create_dir(&dir).unwrap();
    append_entries(&dir, 0, &(0..100).map(message).collect::<Vec<_>>());
    let cfg = config(d.path(), "");
    let log = d.path().join("agent.log");
    let mut agent = start(&cfg, &log);
    wait_records(d.path(), 100, &log);
    std::thread::sleep(Duration::from_millis(1500));
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    // while stopped: 100 more written, then every file holding them vacuumed; 50 more after
    append_entries(&dir, 100, &(100..200).map(message).collect::<Vec<_>>());
    std::fs::remove_file(dir.join("remote.journal")).unwrap();
    append_entries(&dir, 200, &(200..250).map(message).collect::<Vec<_>>());
    let mut agent = agent_command(&cfg, &log).args(["--listen", "127.0.0.1:0"]).spawn().unwrap();
    let got = wait_records(d.path(), 150, &log);
    let expected: Vec<String> = (0..100).chain(200..250).map(|i| format!("entry {i:06}")).collect();
    assert_eq!(messages(&got), expected);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("ERROR") && text.contains("is no longer in the journal") && text.contains("2025-12-07T08:00:05.200000Z"),
        "{text}"
    );
    let base = endpoint_in(&log);
    assert_eq!(metric_sum(&base, "logferry_journal_gaps_total"), 1.0);
    assert_eq!(metric_sum(&base, "logferry_journal_entries_read_total"), 50.0);
    // the last acknowledged entry, 249, was written 08:00:05.249 on 2025-12-07
    let deadline = Instant::now() + T;
    while metric_sum(&base, "logferry_journal_cursor_timestamp_seconds") != 1_765_094_405.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric_sum(&base, "logferry_journal_cursor_timestamp_seconds"), 1_765_094_405.0);
    let (_, status) = http::get(&base, "/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let journal = &status["flows"][0]["journals"][0];
    assert_eq!(journal["source"], format!("journal:{}#0", dir.display()));
    assert_eq!(journal["gaps"], 1);
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
}

#[test]
fn a_first_start_begins_at_the_tail_or_at_a_time_only_this_boot_is_read_when_asked_and_processors_apply() {
    let run = |journald: &str, flow_extra: &str, write: &dyn Fn(&Path), expected: Vec<String>, after_start: &dyn Fn(&Path)| {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("journal");
        std::fs::create_dir(&dir).unwrap();
        write(&dir);
        let cfg = d.path().join("logferry.yaml");
        std::fs::write(
            &cfg,
            format!(
                "checkpoint_file: {}\nflows:\n  - id: journal\n    sources:\n      - journald: {{directory: {}{journald}}}\n{flow_extra}    sink: {{type: file, path: {}}}\n",
                d.path().join("cp.db").display(),
                dir.display(),
                d.path().join("out.log").display()
            ),
        )
        .unwrap();
        let log = d.path().join("agent.log");
        let mut agent = start(&cfg, &log);
        wait_for_log(&log, "reading the journal", T);
        std::thread::sleep(Duration::from_millis(500));
        after_start(&dir);
        let got = wait_records(d.path(), expected.len(), &log);
        std::thread::sleep(Duration::from_secs(1));
        unsafe_kill(agent.id(), "TERM");
        assert!(wait_timeout(&mut agent, T).expect("stops").success());
        assert_eq!(messages(&got), expected);
        assert_eq!(records(d.path()).len(), expected.len());
    };
    let entries = |r: std::ops::Range<usize>| -> Vec<String> { r.map(|i| format!("entry {i:06}")).collect() };
    // tail: what was there before the first start is not read, what comes after is
    run(", start_at: tail", "", &|dir| append_entries(dir, 0, &(0..100).map(message).collect::<Vec<_>>()), entries(100..150), &|dir| {
        append_entries(dir, 100, &(100..150).map(message).collect::<Vec<_>>())
    });
    // a time: entries one second apart, from the sixth on
    let by_second = |dir: &Path| {
        let e: Vec<(u64, Fields)> = (0..10).map(|i| (1_765_094_400_000_000 + i as u64 * 1_000_000, message(i))).collect();
        append_entries_at(dir, &e);
    };
    run(", start_at: '2025-12-07T08:00:05Z'", "", &by_second, entries(5..10), &|_| {});
    // this boot only: entries of another boot are left out
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap().trim().replace('-', "");
    let two_boots = move |dir: &Path| {
        let old: Vec<(u64, Fields)> = (0..10).map(|i| (1_765_094_400_000_000 + i as u64 * 1000, message(i))).collect();
        append_entries_at(dir, &old);
        let now: Vec<(u64, Fields)> = (10..20).map(|i| (1_765_094_500_000_000 + i as u64 * 1000, message(i))).collect();
        append_entries_of_boot(dir, &now, &boot);
    };
    run(", current_boot_only: true", "", &two_boots, entries(10..20), &|_| {});
    // processors run on the entries' records as on lines
    run(
        "",
        "    processors: [{type: filter, exclude: ['entry 00000[0-4]']}]\n",
        &|dir| append_entries(dir, 0, &(0..20).map(message).collect::<Vec<_>>()),
        entries(5..20),
        &|_| {},
    );
}

#[test]
fn two_journald_sources_of_one_flow_keep_cursors_of_their_own() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let tagged = |tag: &'static str, i: usize| -> Fields {
        let mut f = message(i);
        f.retain(|(n, _)| *n != "MESSAGE");
        f.push(("MESSAGE", format!("{tag} {i:06}").into_bytes()));
        f
    };
    append_entries(&a, 0, &(0..100).map(|i| tagged("a", i)).collect::<Vec<_>>());
    append_entries(&b, 0, &(0..60).map(|i| tagged("b", i)).collect::<Vec<_>>());
    let cfg = d.path().join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\nflows:\n  - id: journal\n    sources:\n      - journald: {{directory: {}}}\n      - journald: {{directory: {}, shape: syslog}}\n    sink: {{type: file, path: {}}}\n",
            d.path().join("cp.db").display(),
            a.display(),
            b.display(),
            d.path().join("out.log").display()
        ),
    )
    .unwrap();
    let log = d.path().join("agent.log");
    let mut agent = start(&cfg, &log);
    wait_records(d.path(), 160, &log);
    std::thread::sleep(Duration::from_millis(1500));
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    // each resumes after its own cursor
    append_entries(&a, 100, &(100..110).map(|i| tagged("a", i)).collect::<Vec<_>>());
    append_entries(&b, 60, &(60..65).map(|i| tagged("b", i)).collect::<Vec<_>>());
    let mut agent = start(&cfg, &log);
    let got = wait_records(d.path(), 175, &log);
    std::thread::sleep(Duration::from_secs(1));
    unsafe_kill(agent.id(), "TERM");
    assert!(wait_timeout(&mut agent, T).expect("stops").success());
    let from_a: Vec<String> = got.iter().filter_map(|r| r["MESSAGE"].as_str().map(String::from)).collect();
    let from_b: Vec<String> = got.iter().filter_map(|r| r["message"].as_str().map(String::from)).collect();
    assert_eq!(from_a, (0..110).map(|i| format!("a {i:06}")).collect::<Vec<_>>());
    assert_eq!(from_b, (0..65).map(|i| format!("b {i:06}")).collect::<Vec<_>>());
    assert_eq!(records(d.path()).len(), 175);
}
