//! Properties of framing and conversion over arbitrary input.

use logferry::convert::fields::{FieldParser, FieldPath, FieldStep, ParsedTo};
use logferry::convert::json::JsonLayout;
use logferry::convert::{Chain, ChainContext, LogFormat, MismatchPolicy, NativeFormat, Outcome, Pattern, ProcessorSpec};
use logferry::framing::multiline::{MultiLineRule, Preset};
use logferry::framing::{Assembly, LineFramer, Piece, RecordAssembler};
use logferry::javaregex::JavaRegex;
use proptest::prelude::*;

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::UNIX_EPOCH
}

fn every_processor() -> Vec<ProcessorSpec> {
    let mut v = vec![
        ProcessorSpec::SingleLine { no_trim: false, escape_new_line: true },
        ProcessorSpec::SingleLine { no_trim: true, escape_new_line: false },
        ProcessorSpec::CsvToJson {
            fields: vec!["a".into(), "b".into(), "a".into()],
            delimiter: JavaRegex::new("|").unwrap(),
            layout: JsonLayout::Pretty,
        },
        ProcessorSpec::CsvToJson { fields: vec!["a".into()], delimiter: JavaRegex::new(r"\s*,\s*").unwrap(), layout: JsonLayout::Compact },
        ProcessorSpec::LogToJson {
            format: LogFormat::Syslog,
            pattern: Some(JavaRegex::new(r"(.)(\w*)?.*").unwrap()),
            fields: vec!["x".into(), "y".into()],
            layout: JsonLayout::Compact,
        },
        ProcessorSpec::AddMetadata {
            metadata: Some(serde_json::json!({"k": [1, {"z": null}]})),
            timestamp: true,
            layout: JsonLayout::Pretty,
        },
        ProcessorSpec::AddEc2Metadata { ttl_secs: 1, tags: false, layout: JsonLayout::Compact },
        ProcessorSpec::AddBrackets,
        ProcessorSpec::Regex { pattern: Pattern(regex::Regex::new(r"(?<a>\w+)=(?<b>.*)").unwrap()), on_mismatch: MismatchPolicy::Raw },
        ProcessorSpec::Json { on_mismatch: MismatchPolicy::Raw },
        ProcessorSpec::Filter {
            include: vec![Pattern(regex::bytes::Regex::new("a").unwrap())],
            exclude: vec![Pattern(regex::bytes::Regex::new("b").unwrap())],
        },
    ];
    for format in
        [LogFormat::CommonApacheLog, LogFormat::CombinedApacheLog, LogFormat::ApacheErrorLog, LogFormat::Syslog, LogFormat::Rfc3339Syslog]
    {
        v.push(ProcessorSpec::LogToJson { format, pattern: None, fields: Vec::new(), layout: JsonLayout::Compact });
    }
    for format in NativeFormat::NAMES.iter().map(|n| NativeFormat::from_name(n).unwrap()) {
        v.push(ProcessorSpec::Parse { format, on_mismatch: MismatchPolicy::Drop });
    }
    let path = |s: &str| FieldPath::parse(s).unwrap();
    for step in [
        FieldStep::Parse {
            field: path("a"),
            parser: FieldParser::Json,
            to: ParsedTo::Merge,
            keep_original: false,
            on_mismatch: MismatchPolicy::Raw,
        },
        FieldStep::Parse {
            field: path("k"),
            parser: FieldParser::Format(NativeFormat::ApacheCombined),
            to: ParsedTo::Into(path("x.y")),
            keep_original: true,
            on_mismatch: MismatchPolicy::Drop,
        },
        FieldStep::Rename(vec![(path("a"), path("b.c")), (path("k.z"), path("k"))]),
        FieldStep::Copy(vec![(path("k"), path("a.k"))]),
        FieldStep::Remove(vec![path("b"), path("k.z")]),
        FieldStep::Lift { field: path("k"), prefix: String::new() },
    ] {
        v.push(ProcessorSpec::Field(step));
    }
    v
}

/// Bytes that look like log lines often enough to reach deep into the parsers.
fn loggy_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"["[..],
        b"]",
        b" ",
        b"\"",
        b"-",
        b":",
        b"<13>",
        b"<134>",
        b"Mar",
        b"Wed",
        b"Oct",
        b"2024-01-01T00:00:00Z",
        b"10/Oct/2000:13:55:36 -0700",
        b"1.2.3.4",
        b"::1",
        b"pid 12",
        b":tid 3",
        b"client ",
        b"\r",
        b"\n",
        b"\xff",
        b"\xe2\x80\xa8",
        b"{",
        b"}",
        b"a=b",
        b"0",
        b"99",
        b"\\",
        b"\t",
        b"host",
        b"prog[1]: ",
        b"<165>1 ",
        // JSON objects for the field steps
        b"{\"a\":",
        b"\"k\":{\"z\":",
        b",",
        b"\"{\\\"z\\\":1}\"",
        b"1",
    ]);
    prop_oneof![prop::collection::vec(any::<u8>(), 0..300), prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat()),]
}

/// `input` cut into consecutive chunks at the points `cuts` pick (some chunks may be empty).
fn cut_at<'a>(input: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
    points.sort();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for p in points.into_iter().chain([input.len()]) {
        chunks.push(&input[prev..p]);
        prev = p;
    }
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Every processor, alone and chained with all the others, on arbitrary bytes: no panic, and
    /// the outcome is consistent with the output buffer.
    #[test]
    fn converters_never_panic_on_arbitrary_bytes(input in loggy_bytes(), first in 0usize..29) {
        let all = every_processor();
        let ec2 = logferry::convert::ec2::Ec2MetadataHandle::default();
        ec2.set(Some(logferry::convert::ec2::metadata_from_identity(&serde_json::json!({"instanceId": "i-1"}), None, time_now())));
        let ctx = ChainContext { ec2: Some(ec2), now: None };
        let mut out = Vec::new();
        for p in &all {
            let mut chain = Chain::new(std::slice::from_ref(p), ctx.clone());
            match chain.convert(&input, &mut out) {
                Outcome::Dropped => prop_assert!(out.is_empty()),
                Outcome::FellBack => prop_assert_eq!(&out, &input),
                Outcome::Emitted | Outcome::FieldKept => {}
                // the chain contains a panic to one record; a processor must not panic at all
                Outcome::Panicked => prop_assert!(false, "{} panicked on {:?}", p.describe(), String::from_utf8_lossy(&input)),
            }
        }
        let mut rotated = all.clone();
        rotated.rotate_left(first % all.len());
        prop_assert_ne!(Chain::new(&rotated, ctx).convert(&input, &mut out), Outcome::Panicked);
    }

    /// However the bytes are cut into reads, the framer yields the same lines, and the lines
    /// tile the input exactly.
    #[test]
    fn framing_is_independent_of_read_boundaries(
        input in prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'\n', b'\r', 0xff]), 0..400),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        max_line in 1usize..64,
    ) {
        let frame = |chunks: &[&[u8]]| {
            let mut f = LineFramer::new(0, max_line);
            let mut out = Vec::new();
            for c in chunks {
                f.push(c, |l| out.push((l.start, l.end, l.bytes.to_vec(), l.runaway)));
            }
            f.finish(|l| out.push((l.start, l.end, l.bytes.to_vec(), l.runaway)));
            out
        };
        let whole = frame(&[&input]);
        let chunks = cut_at(&input, &cuts);
        prop_assert_eq!(&frame(&chunks), &whole);
        let mut next = 0;
        for (start, end, bytes, runaway) in &whole {
            prop_assert_eq!(*start, next);
            next = *end;
            let full = &input[*start as usize..*end as usize];
            if *runaway {
                prop_assert_eq!(bytes.len(), max_line);
                prop_assert!(full.starts_with(bytes));
            } else {
                prop_assert_eq!(bytes.as_slice(), full);
            }
        }
        prop_assert_eq!(next, input.len() as u64);
    }

    /// Records and skipped ranges from any assembly mode tile the input, and (without runaway
    /// lines) their bytes concatenate back to it.
    #[test]
    fn assembled_records_cover_every_byte_once(
        input in prop::collection::vec(prop::sample::select(vec![b'a', b'1', b' ', b'\n']), 0..300),
        mode in 0usize..6,
        skip in 0u64..3,
        end_of_data_every in 1usize..50,
    ) {
        let assembly = match mode {
            0 => Assembly::Lines,
            1 => Assembly::MultiLine { rule: MultiLineRule::Start(JavaRegex::new(r"\d").unwrap()) },
            2 => Assembly::MultiLine { rule: MultiLineRule::Continuation(JavaRegex::new(r"\s").unwrap()) },
            3 => Assembly::MultiLine { rule: MultiLineRule::Presets(vec![Preset::Indented]) },
            4 => Assembly::MultiLine { rule: MultiLineRule::Presets(vec![Preset::Java, Preset::Python, Preset::Go]) },
            _ => Assembly::Aggregate { max_bytes: 7 },
        };
        let mut f = LineFramer::new(0, 1 << 20);
        let mut a = RecordAssembler::new(assembly, skip, std::time::Instant::now());
        let mut next = 0u64;
        let mut rebuilt = Vec::new();
        let mut ok = true;
        let mut on_piece = |p: Piece<'_>| match p {
            Piece::Record(r) => {
                ok &= r.start == next && r.end as usize - r.start as usize == r.bytes.len();
                next = r.end;
                rebuilt.extend_from_slice(r.bytes);
            }
            Piece::Skipped { start, end } => {
                ok &= start == next;
                next = end;
                rebuilt.extend_from_slice(&input[start as usize..end as usize]);
            }
        };
        for chunk in input.chunks(end_of_data_every) {
            f.push(chunk, |l| a.push_line(l, &mut on_piece));
            a.end_of_data(&mut on_piece);
        }
        f.finish(|l| a.push_line(l, &mut on_piece));
        a.flush(&mut on_piece);
        prop_assert!(ok);
        prop_assert_eq!(next, input.len() as u64);
        prop_assert_eq!(rebuilt, input);
    }
}

/// A field value at the edges: empty, ordinary, quotes and backslashes, invalid UTF-8, a line
/// separator, 40 digits, and (rarely) 4 MiB.
fn extreme_text() -> impl Strategy<Value = Vec<u8>> {
    let small = prop::sample::select(vec![
        &b""[..] as &'static [u8],
        b"x",
        b"GET / HTTP/1.1",
        b"a \\\" b",
        b"\\",
        b"\xff\xfe\xc3",
        b"caf\xc3\xa9 \xe2\x80\xa8",
        b"9999999999999999999999999999999999999999",
        b"-",
        b"\"\"",
        b"[x]",
    ])
    .prop_map(|b: &'static [u8]| b.to_vec());
    prop_oneof![60 => small, 1 => Just(vec![b'a'; 4 << 20])]
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(options.to_vec())
}

/// A timestamp's parts at the edges of their ranges and a little past them.
#[derive(Debug, Clone)]
struct Instant {
    year: &'static str,
    month: &'static str,
    month_name: &'static str,
    day: &'static str,
    hms: (&'static str, &'static str, &'static str),
    frac: &'static str,
    offset: (&'static str, &'static str),
}

fn extreme_instant() -> impl Strategy<Value = Instant> {
    (
        // whole dates at the calendar's ends and past its rules: (year, month, its name, day)
        prop::sample::select(vec![
            ("9999", "12", "Dec", "31"),
            ("0000", "01", "Jan", "01"),
            ("0001", "01", "Jan", "01"),
            ("2024", "02", "Feb", "29"),
            ("2023", "02", "Feb", "29"),
            ("2024", "13", "Foo", "01"),
            ("2024", "00", "Jan", "00"),
            ("2024", "04", "Apr", "31"),
            ("1970", "01", "Jan", " 1"),
        ]),
        prop::sample::select(vec![("23", "59", "59"), ("00", "00", "00"), ("23", "59", "60"), ("24", "00", "00"), ("12", "60", "61")]),
        pick(&["", ".0", ".999", ".123456789", ".1234567890123456789"]),
        // RFC 3339 offsets and their Apache spelling
        prop::sample::select(vec![
            ("-23:59", "-2359"),
            ("+23:59", "+2359"),
            ("Z", "+0000"),
            ("-23:59", "-2359"),
            ("+23:59", "+2359"),
            ("+99:99", "+9999"),
            ("-00:01", "-0001"),
        ]),
    )
        .prop_map(|((year, month, month_name, day), hms, frac, offset)| Instant { year, month, month_name, day, hms, frac, offset })
}

/// A log line of one of the built-in shapes, its fields at their extremes (where a field's
/// language allows them: a hostname has no space, so the extremes go into messages, quoted
/// fields and structured data).
fn structured_line() -> impl Strategy<Value = Vec<u8>> {
    const NUMBERS: &[&str] = &["0", "1", "7", "65535", "9999999999999999999999999999999999999999", "-", "-1", "+5"];
    let host = pick(&["h", "host.example.com", "::1", "10.0.0.1", "h\u{e9}"]);
    (
        0usize..6,
        extreme_instant(),
        pick(NUMBERS),
        pick(NUMBERS),
        host,
        extreme_text(),
        extreme_text(),
        pick(&["0", "13", "191", "192", "999", "00"]),
    )
        .prop_map(|(shape, t, n1, n2, host, a, b, pri)| {
            let (h, m, s) = t.hms;
            let rfc3339 = format!("{}-{}-{}T{h}:{m}:{s}{}{}", t.year, t.month, t.day, t.frac, t.offset.0);
            let mut line = Vec::new();
            let mut put = |x: &[u8]| line.extend_from_slice(x);
            match shape {
                0 => {
                    put(format!("{} {} {h}:{m}:{s} {host} prog[{n1}]: ", t.month_name, t.day).as_bytes());
                    put(&a);
                }
                1 => {
                    put(format!("{rfc3339} {host} prog[{n1}]: ").as_bytes());
                    put(&a);
                }
                2 => {
                    put(format!("<{pri}>1 {rfc3339} {host} app {n1} ID47 [ex@1 k=\"").as_bytes());
                    put(&a);
                    put(b"\"] ");
                    put(&b);
                }
                3 | 4 => {
                    put(format!("{host} - - [{}/{}/{}:{h}:{m}:{s}{} {}] \"", t.day, t.month_name, t.year, t.frac, t.offset.1).as_bytes());
                    put(&a);
                    put(format!("\" {n1} {n2}").as_bytes());
                    if shape == 4 {
                        put(b" \"");
                        put(&b);
                        put(b"\" \"agent\"");
                    }
                }
                _ => {
                    put(format!(
                        "[Wed {} {} {h}:{m}:{s}{} {}] [core:error] [pid {n1}:tid {n2}] [client {host}] ",
                        t.month_name, t.day, t.frac, t.year
                    )
                    .as_bytes());
                    put(&a);
                }
            }
            line.extend_from_slice(if shape % 2 == 0 { b"\n" } else { b"\r\n" });
            line
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// Every processor, alone, on lines of the built-in shapes with extreme values (years 0000
    /// and 9999, offsets of ±23:59, second 60, 40-digit numbers, empty, 4 MiB and invalid UTF-8
    /// fields): no panic. The arbitrary-bytes property above rarely builds such a line, which is
    /// how a timestamp past the calendar's end once killed the agent.
    #[test]
    fn converters_never_panic_on_structured_lines_with_extreme_values(line in structured_line()) {
        let ctx = ChainContext { ec2: None, now: Some(time_now) };
        let mut out = Vec::new();
        for p in &every_processor() {
            out.clear();
            let outcome = Chain::new(std::slice::from_ref(p), ctx.clone()).convert(&line, &mut out);
            prop_assert_ne!(outcome, Outcome::Panicked, "{} panicked on {:?}", p.describe(), String::from_utf8_lossy(&line[..line.len().min(300)]));
            // what a typed parser writes is JSON, whatever the bytes of the fields (control
            // characters, `\`, invalid UTF-8)
            if matches!(p, ProcessorSpec::Parse { .. }) && outcome == Outcome::Emitted {
                let parsed = serde_json::from_slice::<serde_json::Value>(&out);
                prop_assert!(parsed.is_ok(), "{} wrote no JSON for {:?}: {:?}", p.describe(), String::from_utf8_lossy(&line[..line.len().min(300)]), String::from_utf8_lossy(&out[..out.len().min(300)]));
            }
        }
    }
}

#[test]
fn a_processor_that_panics_costs_only_its_record() {
    // the clock of ADDMETADATA's timestamp is the one part of a step a test can make panic
    fn broken_clock() -> time::OffsetDateTime {
        panic!("a broken clock")
    }
    let spec = ProcessorSpec::AddMetadata { metadata: None, timestamp: true, layout: JsonLayout::Compact };
    let mut chain = Chain::new(&[spec], ChainContext { ec2: None, now: Some(broken_clock) });
    let mut out = b"before|".to_vec();
    assert_eq!(chain.convert_append(b"the record\n", &mut out), Outcome::Panicked);
    assert_eq!(out, b"before|the record\n", "the record goes as it was read, after what the buffer held");
    // the chain goes on working
    let mut chain = Chain::new(&[ProcessorSpec::AddBrackets], ChainContext::default());
    assert_eq!(chain.convert(b"x", &mut out), Outcome::Emitted);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Stream mode (`oversized_records: split`): however the bytes are cut into reads, lines
    /// come out the same, in pieces of at most `max_line` bytes (the `\n` may join a full
    /// piece), which tile the input and concatenate back to it.
    #[test]
    fn streamed_pieces_tile_the_input_whatever_the_reads(
        input in prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'\n']), 0..400),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        max_line in 1usize..20,
    ) {
        let frame = |chunks: &[&[u8]]| {
            let mut f = LineFramer::new(0, max_line).streaming(true);
            let mut out = Vec::new();
            for c in chunks {
                f.push(c, |l| out.push((l.start, l.end, l.bytes.to_vec())));
            }
            f.finish(|l| out.push((l.start, l.end, l.bytes.to_vec())));
            out
        };
        let whole = frame(&[&input]);
        let chunks = cut_at(&input, &cuts);
        prop_assert_eq!(&frame(&chunks), &whole);
        let mut next = 0;
        for (start, end, bytes) in &whole {
            prop_assert_eq!(*start, next);
            next = *end;
            prop_assert_eq!(bytes.as_slice(), &input[*start as usize..*end as usize]);
            let content = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            prop_assert!(content.len() <= max_line && !content.contains(&b'\n'));
        }
        prop_assert_eq!(next, input.len() as u64);
        // a piece's end is a place to resume from: what follows comes out the same
        if let Some(&(_, resume, _)) = whole.get(whole.len() / 2) {
            let mut f = LineFramer::new(resume, max_line).streaming(true);
            let mut rest = Vec::new();
            f.push(&input[resume as usize..], |l| rest.push((l.start, l.end, l.bytes.to_vec())));
            f.finish(|l| rest.push((l.start, l.end, l.bytes.to_vec())));
            prop_assert_eq!(&rest[..], &whole[whole.len() / 2 + 1..]);
        }
    }

    /// A held line released at any point and read again from where it starts gives the same
    /// lines as reading straight through, in both modes.
    #[test]
    fn a_released_line_read_again_comes_out_the_same(
        input in prop::collection::vec(prop::sample::select(vec![b'a', b'\n']), 0..300),
        at in any::<prop::sample::Index>(),
        max_line in 1usize..40,
        stream in any::<bool>(),
    ) {
        let mut straight = Vec::new();
        let mut f = LineFramer::new(0, max_line).streaming(stream);
        f.push(&input, |l| straight.push((l.start, l.end, l.bytes.to_vec(), l.runaway)));
        f.finish(|l| straight.push((l.start, l.end, l.bytes.to_vec(), l.runaway)));
        let cut = at.index(input.len() + 1);
        let mut again = Vec::new();
        let mut f = LineFramer::new(0, max_line).streaming(stream);
        f.push(&input[..cut], |l| again.push((l.start, l.end, l.bytes.to_vec(), l.runaway)));
        let resume = f.line_start();
        let cut_line = f.cut_line();
        f.release(resume);
        prop_assert_eq!(f.held_bytes(), 0);
        match cut_line {
            // a line already cut is taken up from its first max_line bytes and where its end
            // was last searched for, as the engine does for a parked file
            Some((start, searched_to)) => {
                prop_assert!(!stream);
                prop_assert_eq!(start, resume);
                f.resume_cut_line(start, &input[start as usize..start as usize + max_line], searched_to);
                f.push(&input[searched_to as usize..], |l| again.push((l.start, l.end, l.bytes.to_vec(), l.runaway)));
            }
            None => f.push(&input[resume as usize..], |l| again.push((l.start, l.end, l.bytes.to_vec(), l.runaway))),
        }
        f.finish(|l| again.push((l.start, l.end, l.bytes.to_vec(), l.runaway)));
        prop_assert_eq!(again, straight);
    }
}

#[test]
fn a_buffer_that_held_a_long_line_is_given_back() {
    let mut f = LineFramer::new(0, 8 << 20);
    let long = vec![b'x'; 3 << 20];
    let mut n = 0;
    for chunk in long.chunks(256 << 10) {
        f.push(chunk, |_| n += 1);
    }
    assert!(f.held_bytes() >= 3 << 20);
    f.push(b"\n", |_| n += 1);
    assert_eq!(n, 1);
    assert!(f.held_bytes() <= logferry::framing::KEEP_CAPACITY, "{} bytes kept after the line went", f.held_bytes());
}
