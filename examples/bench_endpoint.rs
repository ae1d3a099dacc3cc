//! A fast local Firehose endpoint over TLS for benchmarks (not a test double: it checks only the
//! request's shape). It answers PutRecordBatch with every record accepted, and after each request
//! writes the counts of requests, records, lines and body bytes to a JSON file.
//!
//!   cargo run --release --example bench_endpoint -- CERT.pem KEY.pem PORT COUNTS.json

#[allow(dead_code)]
#[path = "../tests/support/http.rs"]
mod http;

use base64::Engine as _;
use std::sync::Mutex;

#[derive(Default, serde::Serialize)]
struct Counts {
    requests: u64,
    records: u64,
    lines: u64,
    bytes: u64,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cert, key, port, counts_file] = args.as_slice() else {
        anyhow::bail!("usage: bench_endpoint CERT.pem KEY.pem PORT COUNTS.json");
    };
    let counts = Mutex::new(Counts::default());
    let counts_file = counts_file.clone();
    let handler = move |req: &http::Request| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
        let records = body["Records"].as_array()?;
        let lines: u64 = records
            .iter()
            .filter_map(|r| base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str()?).ok())
            .map(|d| d.iter().filter(|&&b| b == b'\n').count() as u64)
            .sum();
        {
            let mut c = counts.lock().ok()?;
            c.requests += 1;
            c.records += records.len() as u64;
            c.lines += lines;
            c.bytes += req.body.len() as u64;
            std::fs::write(&counts_file, serde_json::to_vec(&*c).ok()?).ok()?;
        }
        let responses: Vec<serde_json::Value> = (0..records.len()).map(|i| serde_json::json!({"RecordId": i.to_string()})).collect();
        let out = serde_json::json!({"FailedPutCount": 0, "Encrypted": false, "RequestResponses": responses}).to_string();
        Some(http::response("200 OK", &[("Content-Type", "application/x-amz-json-1.1")], out.as_bytes()))
    };
    http::serve_tls_at(&format!("127.0.0.1:{port}"), cert.as_ref(), key.as_ref(), handler);
    loop {
        std::thread::park();
    }
}
