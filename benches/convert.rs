//! Conversion throughput per format: lines per second through one LOGTOJSON (or native parse)
//! step, on one core. Results and the command are in docs/benchmarks.md.
//!
//! `cargo bench --bench convert`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logferry::convert::json::JsonLayout;
use logferry::convert::{Chain, ChainContext, LogFormat, MismatchPolicy, NativeFormat, ProcessorSpec};
use logferry::loggen::{self, Rng};
use std::hint::black_box;

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/data/corpora/{name}", env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read(&path).unwrap();
    data.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

fn generated(format: loggen::Format, n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(1);
    (0..n)
        .map(|_| {
            let mut l = Vec::new();
            loggen::line(&mut rng, format, &mut l);
            l
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let logtojson = |format| ProcessorSpec::LogToJson { format, pattern: None, fields: Vec::new(), layout: JsonLayout::Compact };
    let native = |format| ProcessorSpec::Parse { format, on_mismatch: MismatchPolicy::Raw };
    let cases: Vec<(&str, ProcessorSpec, Vec<Vec<u8>>)> = vec![
        ("COMBINEDAPACHELOG/real", logtojson(LogFormat::CombinedApacheLog), corpus("combined/elastic-examples-apache_logs.log")),
        ("COMBINEDAPACHELOG/generated", logtojson(LogFormat::CombinedApacheLog), generated(loggen::Format::Combined, 10_000)),
        ("COMMONAPACHELOG/generated", logtojson(LogFormat::CommonApacheLog), generated(loggen::Format::Common, 10_000)),
        ("APACHEERRORLOG/generated", logtojson(LogFormat::ApacheErrorLog), generated(loggen::Format::ApacheError, 10_000)),
        ("SYSLOG/generated", logtojson(LogFormat::Syslog), generated(loggen::Format::Syslog, 10_000)),
        ("RFC3339SYSLOG/generated", logtojson(LogFormat::Rfc3339Syslog), generated(loggen::Format::Rfc3339Syslog, 10_000)),
        ("native apache_combined/real", native(NativeFormat::ApacheCombined), corpus("combined/elastic-examples-apache_logs.log")),
        ("native rfc5424/generated", native(NativeFormat::Rfc5424), generated(loggen::Format::Rfc5424, 10_000)),
    ];
    let mut group = c.benchmark_group("convert");
    for (name, spec, lines) in cases {
        let mut chain = Chain::new(&[spec], ChainContext::default());
        let mut out = Vec::with_capacity(4096);
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                for l in &lines {
                    black_box(chain.convert(black_box(l), &mut out));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
