//! A fast local Firehose, Kinesis or CloudWatch Logs endpoint over TLS for benchmarks (not a test double: it
//! checks only the request's shape). It answers PutRecordBatch (or PutRecords) and after each
//! request writes the counts of requests and their body bytes, of the records and lines accepted,
//! and of the records refused, to a JSON file.
//!
//!   cargo run --release --example bench_endpoint -- CERT.pem KEY.pem PORT COUNTS.json
//!
//! Faults, for the destination-fault benchmark (scripts/bench-faults.sh):
//! - `BENCH_SERVICE=kinesis` answers as PutRecords (refused records:
//!   `ProvisionedThroughputExceededException`); `BENCH_SERVICE=logs` as PutLogEvents (each event
//!   a record and a line; no faults); otherwise as PutRecordBatch
//!   (`ServiceUnavailableException`);
//! - `BENCH_FAIL_PERCENT=N` refuses N % of the records of every request (spread by a hash of the
//!   request and record numbers);
//! - `BENCH_OUTAGE=START,SECONDS` closes every connection unanswered from START seconds after the
//!   endpoint started, for SECONDS.

#[allow(dead_code)]
#[path = "../tests/support/http.rs"]
mod http;

use base64::Engine as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default, serde::Serialize)]
struct Counts {
    requests: u64,
    records: u64,
    lines: u64,
    bytes: u64,
    refused: u64,
    /// Connections closed unanswered in the outage.
    dropped: u64,
    /// Seconds since the endpoint started, when the counts were written.
    seconds: f64,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cert, key, port, counts_file] = args.as_slice() else {
        anyhow::bail!("usage: bench_endpoint CERT.pem KEY.pem PORT COUNTS.json");
    };
    let kinesis = std::env::var("BENCH_SERVICE").is_ok_and(|s| s == "kinesis");
    let logs = std::env::var("BENCH_SERVICE").is_ok_and(|s| s == "logs");
    // as the service answers (Fluent Bit refuses an answer without a request id)
    let logs_headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", "00000000-0000-4000-8000-000000000000")];
    let fail_percent: u64 = std::env::var("BENCH_FAIL_PERCENT").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let outage: Option<(Duration, Duration)> = std::env::var("BENCH_OUTAGE").ok().and_then(|s| {
        let (start, len) = s.split_once(',')?;
        Some((Duration::from_secs(start.parse().ok()?), Duration::from_secs(len.parse().ok()?)))
    });
    let counts = Mutex::new(Counts::default());
    let started = Instant::now();
    let counts_file = counts_file.clone();
    let handler = move |req: &http::Request| {
        let since = started.elapsed();
        if outage.is_some_and(|(start, len)| since >= start && since < start + len) {
            counts.lock().ok()?.dropped += 1;
            return None;
        }
        let body: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
        if logs {
            // CreateLogGroup, CreateLogStream and the like: taken
            let Some(events) = body["logEvents"].as_array().map(|e| e.len() as u64) else {
                return Some(http::response("200 OK", &logs_headers, b"{}"));
            };
            let mut c = counts.lock().ok()?;
            c.requests += 1;
            c.records += events;
            c.lines += events;
            c.bytes += req.body.len() as u64;
            c.seconds = since.as_secs_f64();
            std::fs::write(&counts_file, serde_json::to_vec(&*c).ok()?).ok()?;
            return Some(http::response("200 OK", &logs_headers, b"{}"));
        }
        let records = body["Records"].as_array()?;
        let mut c = counts.lock().ok()?;
        c.requests += 1;
        let n = c.requests;
        let mut responses = Vec::with_capacity(records.len());
        let mut failed = 0u64;
        for (i, r) in records.iter().enumerate() {
            let roll = (n.wrapping_mul(7919).wrapping_add(i as u64)).wrapping_mul(2_654_435_761) >> 7;
            if roll % 100 < fail_percent {
                failed += 1;
                responses.push(if kinesis {
                    serde_json::json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard shardId-000000000000."})
                } else {
                    serde_json::json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."})
                });
                continue;
            }
            let data = base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str()?).ok()?;
            c.lines += data.iter().filter(|&&b| b == b'\n').count() as u64;
            c.records += 1;
            responses.push(if kinesis {
                serde_json::json!({"SequenceNumber": format!("{n}{i:04}"), "ShardId": "shardId-000000000000"})
            } else {
                serde_json::json!({"RecordId": format!("{n}-{i}")})
            });
        }
        c.bytes += req.body.len() as u64;
        c.refused += failed;
        c.seconds = since.as_secs_f64();
        std::fs::write(&counts_file, serde_json::to_vec(&*c).ok()?).ok()?;
        drop(c);
        let out = if kinesis {
            serde_json::json!({"FailedRecordCount": failed, "Records": responses})
        } else {
            serde_json::json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": responses})
        };
        Some(http::response("200 OK", &[("Content-Type", "application/x-amz-json-1.1")], out.to_string().as_bytes()))
    };
    http::serve_tls_at(&format!("127.0.0.1:{port}"), cert.as_ref(), key.as_ref(), handler);
    loop {
        std::thread::park();
    }
}
