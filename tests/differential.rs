//! The hand-written parsers must give exactly what the Kinesis Agent's regular expressions give.
//!
//! For every built-in LOGTOJSON format, a regex is written here from the Kinesis Agent's pattern
//! (the grammar in its `PatternConstants`: IPORHOST, USER, HTTPDATE, SYSLOGTIMESTAMP, ...), run
//! through logferry's Java-dialect translation as a `matchPattern`, and compared byte for byte with
//! the built-in parser's output on every corpus line, on generated lines and on random mutations.

use logferry::convert::json::JsonLayout;
use logferry::convert::{Chain, ChainContext, LogFormat, Outcome, ProcessorSpec};
use logferry::javaregex::JavaRegex;
use logferry::loggen::{self, Rng};
use proptest::prelude::*;
use std::path::Path;

/// The Kinesis Agent's grammar, in Java regex syntax.
fn agent_pattern(format: LogFormat) -> String {
    let int = r"(?:[+-]?(?:[0-9]+))";
    let posint = r"(?:[1-9][0-9]*)";
    let nonneg = r"(?:[0-9]+)";
    let hostname = r"(?:[\w\-]+)(?:\.(?:[\w\-]+))*(?:\.?|\b)";
    let ip = r"(?:[\d\.]+)";
    let iporhost = format!("(?:{hostname}|{ip})");
    let user = r"(?:[a-zA-Z0-9._-]+)";
    let monthday = r"(?:(?:0[1-9])|(?:[12][0-9])|(?:3[01])|[1-9])";
    let weekday = r"(?:Mon(?:day)?|Tue(?:sday)?|Wed(?:nesday)?|Thu(?:rsday)?|Fri(?:day)?|Sat(?:urday)?|Sun(?:day)?)";
    let month = r"\b(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|Sep(?:tember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b";
    let year = r"(?:[1-9]\d*)";
    let time = r"(?:(?:2[0123]|[01]?[0-9]):(?:[0-5][0-9]):(?:(?:[0-5]?[0-9]|60)(?:[:\.,][0-9]+)?))";
    let httpdate = format!(r"(?:{monthday}/{month}/{year}:{time}\s{int})");
    let noquote = r#"[^"]+"#;
    let common = format!(r#"^({iporhost}) ({user}) ({user}) \[({httpdate})\] "({noquote})" ({int}|\-) ({int}|\-)"#);
    let combined = format!(r#"{common} "({noquote})" "({noquote})""#);
    let prog_and_rest = format!(r"(?:<{nonneg}.{nonneg}> )?({user}) ([\w\._/%-]+)(?:\[({posint})\])?: (.*)");
    match format {
        LogFormat::CommonApacheLog => format!("{common}.*"),
        LogFormat::CombinedApacheLog => format!("{combined}.*"),
        LogFormat::ApacheErrorLog => format!(
            r"^\[((?:{weekday}\s+{month}\s+{monthday}\s+{time}\s+{year}))\] \[(?:(\w+):)?(\w+)\] \[pid ({nonneg})(?::tid ({nonneg}))?\] \[client ((?:{iporhost}(?::{posint})?))\] (.*)"
        ),
        LogFormat::Syslog => format!(r"^((?:{month}\s+{monthday}\s+{time})) {prog_and_rest}"),
        LogFormat::Rfc3339Syslog => {
            format!(r"^((?:\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)?)(?:Z|(?:[-+]\d{{2}}:\d{{2}}))) {prog_and_rest}")
        }
    }
}

const FORMATS: [LogFormat; 5] =
    [LogFormat::CommonApacheLog, LogFormat::CombinedApacheLog, LogFormat::ApacheErrorLog, LogFormat::Syslog, LogFormat::Rfc3339Syslog];

struct Pair {
    format: LogFormat,
    builtin: Chain,
    regex: Chain,
    out_a: Vec<u8>,
    out_b: Vec<u8>,
}

impl Pair {
    fn new(format: LogFormat) -> Self {
        let fields: Vec<String> = format.fields().iter().map(|s| s.to_string()).collect();
        let pattern = JavaRegex::new(&agent_pattern(format)).unwrap();
        assert_eq!(pattern.group_count(), fields.len(), "{format:?}");
        let builtin = ProcessorSpec::LogToJson { format, pattern: None, fields: Vec::new(), layout: JsonLayout::Compact };
        let regex = ProcessorSpec::LogToJson { format, pattern: Some(pattern), fields, layout: JsonLayout::Compact };
        Pair {
            format,
            builtin: Chain::new(&[builtin], ChainContext::default()),
            regex: Chain::new(&[regex], ChainContext::default()),
            out_a: Vec::new(),
            out_b: Vec::new(),
        }
    }

    /// Returns whether the line matched.
    fn check(&mut self, line: &[u8]) -> bool {
        let a = self.builtin.convert(line, &mut self.out_a);
        let b = self.regex.convert(line, &mut self.out_b);
        assert_eq!(
            (a, String::from_utf8_lossy(&self.out_a)),
            (b, String::from_utf8_lossy(&self.out_b)),
            "{:?} disagrees on line {:?}",
            self.format,
            String::from_utf8_lossy(line)
        );
        a == Outcome::Emitted
    }
}

fn corpus_lines() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpora");
    let mut out = Vec::new();
    let mut dirs: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir() && !p.ends_with("LICENSES")).collect();
    dirs.sort();
    for d in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            for l in data.split_inclusive(|b| *b == b'\n') {
                out.push((f.display().to_string(), l.to_vec()));
            }
        }
    }
    out
}

#[test]
fn builtin_parsers_agree_with_agent_patterns_on_every_corpus_line() {
    let lines = corpus_lines();
    assert!(lines.len() > 12_000, "corpora missing: {} lines", lines.len());
    for format in FORMATS {
        let mut pair = Pair::new(format);
        let matched = lines.iter().filter(|(_, l)| pair.check(l)).count();
        // every format must match a real share of its own corpus, or the comparison proves little
        let own = match format {
            LogFormat::CommonApacheLog | LogFormat::CombinedApacheLog => "combined/",
            LogFormat::ApacheErrorLog => "apache-error/",
            LogFormat::Syslog => "syslog-rfc3164/",
            LogFormat::Rfc3339Syslog => "isots",
        };
        let own_matched = lines.iter().filter(|(f, l)| f.contains(own) && pair.check(l)).count();
        assert!(own_matched > 10, "{format:?} matched only {own_matched} lines of its own corpus ({matched} overall)");
    }
}

#[test]
fn builtin_parsers_agree_with_agent_patterns_on_generated_lines() {
    let mut rng = Rng::new(2024);
    for format in FORMATS {
        let mut pair = Pair::new(format);
        let (mut matched, mut dropped) = (0, 0);
        for gen_format in loggen::Format::ALL {
            for _ in 0..2000 {
                let mut line = Vec::new();
                loggen::line(&mut rng, gen_format, &mut line);
                if pair.check(&line) {
                    matched += 1
                } else {
                    dropped += 1
                }
            }
        }
        assert!(matched > 200 && dropped > 200, "{format:?}: {matched} matched, {dropped} dropped");
    }
}

fn seed_lines() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(99);
    let mut out: Vec<Vec<u8>> = corpus_lines().into_iter().step_by(37).map(|(_, l)| l).collect();
    for f in loggen::Format::ALL {
        for _ in 0..50 {
            let mut l = Vec::new();
            loggen::line(&mut rng, f, &mut l);
            out.push(l);
        }
    }
    out
}

const INSERTS: &[&[u8]] = &[
    b" ",
    b"  ",
    b"\"",
    b"\\\"",
    b"-",
    b"[",
    b"]",
    b":",
    b"\r",
    b"\t",
    b"\n",
    "\u{2028}".as_bytes(),
    "\u{85}".as_bytes(),
    b"\xff",
    b"\xe2\x80",
    b"0",
    b"9",
    b"<",
    b">",
    b"<1>",
    b"x",
    b".",
    b"..",
    b"+",
    b"/",
    b"[0]",
    b"::1",
    "é".as_bytes(),
    b"\x0b",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn builtin_parsers_agree_with_agent_patterns_on_mutated_lines(
        seed in 0usize..10_000,
        edits in prop::collection::vec((0usize..4, any::<prop::sample::Index>(), 0usize..INSERTS.len(), 1usize..6), 1..4),
    ) {
        thread_local!(static SEEDS: Vec<Vec<u8>> = seed_lines());
        let mut line = SEEDS.with(|s| s[seed % s.len()].clone());
        for (op, at, ins, len) in edits {
            let pos = at.index(line.len() + 1);
            match op {
                0 | 1 => { line.splice(pos..pos, INSERTS[ins].iter().copied()); }
                2 => { let end = (pos + len).min(line.len()); line.drain(pos..end); }
                _ => { if pos < line.len() { line[pos] = INSERTS[ins][0]; } }
            }
        }
        for format in FORMATS {
            Pair::new(format).check(&line);
        }
    }
}
