//! Properties of framing and conversion over arbitrary input.

use logferry::convert::json::JsonLayout;
use logferry::convert::{Chain, ChainContext, LogFormat, MismatchPolicy, NativeFormat, Outcome, ProcessorSpec};
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
        ProcessorSpec::Regex { pattern: regex::Regex::new(r"(?<a>\w+)=(?<b>.*)").unwrap(), on_mismatch: MismatchPolicy::Raw },
        ProcessorSpec::Json { on_mismatch: MismatchPolicy::Raw },
        ProcessorSpec::Filter {
            include: vec![regex::bytes::Regex::new("a").unwrap()],
            exclude: vec![regex::bytes::Regex::new("b").unwrap()],
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
    ]);
    prop_oneof![prop::collection::vec(any::<u8>(), 0..300), prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat()),]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Every processor, alone and chained with all the others, on arbitrary bytes: no panic, and
    /// the outcome is consistent with the output buffer.
    #[test]
    fn converters_never_panic_on_arbitrary_bytes(input in loggy_bytes(), first in 0usize..23) {
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
                Outcome::Emitted => {}
            }
        }
        let mut rotated = all.clone();
        rotated.rotate_left(first % all.len());
        Chain::new(&rotated, ctx).convert(&input, &mut out);
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
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        points.sort();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for p in points.into_iter().chain([input.len()]) {
            chunks.push(&input[prev..p]);
            prev = p;
        }
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
        mode in 0usize..3,
        skip in 0u64..3,
        end_of_data_every in 1usize..50,
    ) {
        let assembly = match mode {
            0 => Assembly::Lines,
            1 => Assembly::MultiLine { start: JavaRegex::new(r"\d").unwrap() },
            _ => Assembly::Aggregate { max_bytes: 7 },
        };
        let mut f = LineFramer::new(0, 1 << 20);
        let mut a = RecordAssembler::new(assembly, skip);
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
