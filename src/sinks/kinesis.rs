//! The Kinesis Data Streams sink: PutRecords through the official AWS SDK.
//!
//! Guarantees:
//! - requests are legal by construction: at most 500 records and 5 MiB counting partition keys
//!   per request (a batch that would exceed it is sent as several requests), and records were
//!   cut so that data plus the longest key fits 1 MiB;
//! - partition keys: `RANDOM` (a random decimal, as the Kinesis Agent sends), `DETERMINISTIC`
//!   (MD5 of the record's own bytes, not of the read buffer as in the Kinesis Agent), a top-level
//!   field of the JSON record (random when the record has none), or a constant;
//! - a partial failure re-sends only the failed records, with the next request's new ones; a batch is
//!   acknowledged only when every record in it was accepted; errors that will not heal are logged
//!   with the stream, the flow and the fix, at most once a minute, and retried: nothing is dropped.
//!
//! - with KPL aggregation, records are packed into aggregates ([`crate::sinks::kpl`]) with a partition
//!   key per aggregate (random keys) or each record's own key in the aggregate's table;
//! - limits raised on the stream (10 MiB records and requests) are used when configured;
//! - a record the service rejects as invalid (with all the records of its aggregate) goes to the
//!   flow's dead-letter file with its source file and offset, and only then is acknowledged;
//! - with `compression`, each record is compressed (before aggregation: consumers de-aggregate,
//!   then decompress each record).

pub mod settings;

pub use settings::{KinesisLimits, KinesisSettings, PartitionKey};

use crate::batch::Batch;
use crate::ops::metrics::FlowMetrics;
use crate::sinks::aws::settings::Compression;
use crate::sinks::aws::SinkTarget;
use crate::sinks::kpl::{self, Keys};
use crate::sinks::record::{Put, PutApi, RecordSink, Unit};
use crate::sinks::wire::{answered, encode_record, failed_call, with_body};
use crate::sinks::Facts;
use md5::{Digest, Md5};
use std::borrow::Cow;
use std::fmt::Write;
use std::sync::Arc;

/// PutRecords' limit on the records of one request.
pub const MAX_REQUEST_RECORDS: usize = 500;
/// Kinesis Data Streams' largest record, data plus partition key.
pub const MAX_RECORD_BYTES: usize = 1_048_576;
/// The longest partition key Kinesis accepts; reserved so data plus key always fits.
pub const MAX_KEY_BYTES: usize = 256;
/// PutRecords' limit on one request, data plus partition keys.
pub const MAX_REQUEST_BYTES: usize = 5 << 20;
/// The most a stream's raised limits allow, for records and requests alike.
pub const RAISED_MAX_BYTES: usize = 10 << 20;

/// What a Kinesis destination implies for the rest of the agent.
pub fn facts(settings: &KinesisSettings) -> Facts {
    let KinesisSettings { stream, aws, kpl_aggregate_bytes, limits, .. } = settings;
    let room = limits.record_bytes - MAX_KEY_BYTES;
    let mut notes = Vec::new();
    if let Some(n) = kpl_aggregate_bytes {
        notes.push(format!("KPL aggregates of up to {n} bytes"));
    }
    if *limits != KinesisLimits::default() {
        notes.push(format!("raised limits: records {} bytes, requests {} bytes", limits.record_bytes, limits.request_bytes));
    }
    Facts {
        max_request_records: MAX_REQUEST_RECORDS as u64,
        name: format!("KinesisStream:{stream}"),
        max_record_bytes: room - aws.compression.worst_case_growth(room),
        packs_records: kpl_aggregate_bytes.is_some(),
        notes,
        output: None,
    }
}

/// The partition key of one record.
pub fn partition_key(rule: &PartitionKey, record: &[u8], random: &mut impl FnMut() -> u64) -> String {
    let random_key = |random: &mut dyn FnMut() -> u64| {
        // a decimal in [0, 1,000,000) with ten fraction digits, like the Kinesis Agent's keys
        let n = random() % 10_000_000_000_000_000;
        format!("{}.{:010}", n / 10_000_000_000, n % 10_000_000_000)
    };
    match rule {
        PartitionKey::Random => random_key(random),
        PartitionKey::Deterministic => {
            let mut s = String::with_capacity(32);
            for b in Md5::digest(record) {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
        PartitionKey::Constant(c) => c.clone(),
        PartitionKey::Field(name) => {
            let value = serde_json::from_slice::<serde_json::Value>(record).ok().and_then(|v| match v.get(name)? {
                serde_json::Value::String(s) if !s.is_empty() => Some(s.chars().take(256).collect()),
                serde_json::Value::Null => None,
                other => Some(other.to_string().chars().take(256).collect()),
            });
            value.unwrap_or_else(|| random_key(random))
        }
    }
}

/// PutRecords, with each record's partition key and, when asked, KPL aggregation.
pub struct Kinesis {
    client: aws_sdk_kinesis::Client,
    options: KinesisSettings,
    seed: u64,
}

/// The Kinesis sink of a flow; `None` (logged) when its runtime cannot start.
pub fn sink(target: SinkTarget, options: KinesisSettings, metrics: Arc<FlowMetrics>) -> Option<RecordSink<Kinesis>> {
    let what = format!("the Kinesis sink of flow {}", metrics.id);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
    RecordSink::start(target, metrics, &what, |shared, endpoint| {
        let mut b = aws_sdk_kinesis::config::Builder::from(shared);
        b.set_endpoint_url(endpoint.map(str::to_string));
        Kinesis { client: aws_sdk_kinesis::Client::from_conf(b.build()), options, seed }
    })
}

impl Kinesis {
    /// xorshift64*: spreading keys over shards needs no cryptographic randomness.
    fn random(seed: &mut u64) -> u64 {
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl PutApi for Kinesis {
    const CALL: &'static str = "PutRecords";
    const STREAM_MEMBER: &'static str = "StreamName";

    fn request_limits(&self) -> (usize, usize) {
        (self.options.limits.request_bytes, MAX_REQUEST_RECORDS)
    }

    fn units(&mut self, batch: &Batch, compression: Compression) -> Vec<Unit> {
        let Kinesis { options, seed, .. } = self;
        let mut random = || Kinesis::random(seed);
        let records: Vec<&[u8]> = batch.records().collect();
        let Some(max) = options.kpl_aggregate_bytes else {
            return records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    Unit::of(encode_record(compression, r), Some(partition_key(&options.partition_key, r, &mut random)), i..i + 1)
                })
                .collect();
        };
        let encoded: Vec<Cow<[u8]>> = records.iter().map(|r| encode_record(compression, r)).collect();
        let refs: Vec<&[u8]> = encoded.iter().map(|e| e.as_ref()).collect();
        let packed = if options.partition_key == PartitionKey::Random {
            let mut next = || partition_key(&PartitionKey::Random, b"", &mut random);
            kpl::aggregate(&refs, Keys::PerAggregate(&mut next), max)
        } else {
            let keys: Vec<String> = records.iter().map(|r| partition_key(&options.partition_key, r, &mut random)).collect();
            // a field key promises one shard and order per value; a content hash does not
            let keys = match options.partition_key {
                PartitionKey::Field(_) => Keys::Grouped(&keys),
                _ => Keys::PerRecord(&keys),
            };
            kpl::aggregate(&refs, keys, max)
        };
        packed
            .into_iter()
            .map(|p| Unit { key: Some(p.partition_key), data: Some(p.data), members: p.members, lane: 0, time_ms: 0 })
            .collect()
    }

    fn put(&self, stream: &str, _lane: u32, _count: usize, body: Vec<u8>) -> Put {
        let call = self.client.put_records().stream_name(stream).set_records(Some(Vec::new()));
        Box::pin(async move {
            match call.customize().mutate_request(with_body(body)).send().await {
                Ok(out) => answered(out.records().iter().map(|r| (r.error_code(), r.error_message()))),
                Err(e) => failed_call(&e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys() {
        let mut r = || 1_234_567_890_123_456u64;
        assert_eq!(partition_key(&PartitionKey::Random, b"x", &mut r), "123456.7890123456");
        assert_eq!(partition_key(&PartitionKey::Deterministic, b"hello", &mut r), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(partition_key(&PartitionKey::Constant("k".into()), b"x", &mut r), "k");
        let f = PartitionKey::Field("host".into());
        assert_eq!(partition_key(&f, br#"{"host":"web-1","n":2}"#, &mut r), "web-1");
        assert_eq!(partition_key(&PartitionKey::Field("n".into()), br#"{"n":2}"#, &mut r), "2");
        assert_eq!(partition_key(&f, b"not json", &mut r), "123456.7890123456");
    }
}
