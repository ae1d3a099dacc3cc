//! Writes deterministic synthetic log lines (see `logferry::loggen`) for benchmarks.
//!
//! `cargo run --release --example loggen -- FORMAT LINES [SEED] [LINE_BYTES]`
//! FORMAT: common, combined, apache-error, syslog, rfc3339-syslog, rfc5424, mixed, or
//! combined-padded (combined lines of exactly LINE_BYTES bytes, default 200).

use logferry::loggen::{self, Format, Rng};
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: loggen FORMAT LINES [SEED] [LINE_BYTES]";
    let format = args.first().expect(usage).as_str();
    let lines: u64 = args.get(1).expect(usage).parse().expect(usage);
    let mut rng = Rng::new(args.get(2).map_or(1, |s| s.parse().expect(usage)));
    let line_bytes: usize = args.get(3).map_or(200, |s| s.parse().expect(usage));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut buf = Vec::with_capacity(4096);
    for i in 0..lines {
        buf.clear();
        match format {
            "combined-padded" => loggen::combined_line_of_len(&mut rng, line_bytes, &mut buf),
            "mixed" => loggen::line(&mut rng, Format::ALL[(i % 6) as usize], &mut buf),
            f => loggen::line(&mut rng, Format::from_name(f).expect("unknown format"), &mut buf),
        }
        if out.write_all(&buf).is_err() {
            return;
        }
    }
}
