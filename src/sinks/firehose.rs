//! The Kinesis Data Firehose sink: PutRecordBatch through the official AWS SDK.
//!
//! Guarantees:
//! - requests are legal by construction: at most 500 records (the flow's record limit) and 4 MiB
//!   per request (a batch that would exceed it is sent as several requests), and records were cut
//!   to 1,024,000 bytes before they got here;
//! - with `aggregate_record_bytes` (native), converted records are packed whole into Firehose
//!   records of at most that size: S3 receives the same bytes in fewer billing units;
//! - a partial failure re-sends only the records that failed, with the next request's new
//!   records ([`RecordSink`]); a batch is acknowledged only when every record in it was accepted;
//! - an error that retrying will not heal (stream not found, access denied, bad credentials) is
//!   logged with the stream, the flow and the likely fix, at most once a minute, and retried with
//!   backoff: the records wait in the log files, nothing is thrown away;
//! - every call has connect, read, attempt and operation timeouts; the SDK does not retry: the
//!   sink's pace and backoff see every answer;
//! - credentials never appear in messages.
//!
//! - a record the service rejects as invalid goes to the flow's dead-letter file with its source
//!   file and offset, and only then is acknowledged;
//! - with `compression`, each record is sent gzip- or zstd-compressed.

pub mod settings;

pub use settings::FirehoseSettings;

use crate::batch::Batch;
use crate::ops::metrics::FlowMetrics;
use crate::sinks::aws::settings::Compression;
use crate::sinks::aws::SinkTarget;
use crate::sinks::record::{Put, PutApi, RecordSink, Unit};
use crate::sinks::wire::{answered, encode_record, failed_call, pack_whole, with_body};
use crate::sinks::Facts;
use std::sync::Arc;

/// PutRecordBatch's limit on one request.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// PutRecordBatch's limit on the records of one request.
pub const MAX_REQUEST_RECORDS: usize = 500;
/// Firehose's largest record.
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// What a Firehose destination implies for the rest of the agent.
pub fn facts(settings: &FirehoseSettings) -> Facts {
    let FirehoseSettings { stream, aws, aggregate_bytes } = settings;
    Facts {
        max_request_records: MAX_REQUEST_RECORDS as u64,
        name: format!("DeliveryStream:{stream}"),
        max_record_bytes: MAX_RECORD_BYTES - aws.compression.worst_case_growth(MAX_RECORD_BYTES),
        packs_records: aggregate_bytes.is_some(),
        notes: aggregate_bytes
            .map(|n| format!("converted records packed whole into Firehose records of up to {n} bytes"))
            .into_iter()
            .collect(),
        output: None,
    }
}

/// PutRecordBatch. With `aggregate_bytes`, consecutive records are packed whole into Firehose
/// records of at most that size (fewer 5 KB billing units, fewer requests).
pub struct Firehose {
    client: aws_sdk_firehose::Client,
    aggregate_bytes: Option<usize>,
}

/// The Firehose sink of a flow; `None` (logged) when its runtime cannot start.
pub fn sink(target: SinkTarget, aggregate_bytes: Option<usize>, metrics: Arc<FlowMetrics>) -> Option<RecordSink<Firehose>> {
    let what = format!("the Firehose sink of flow {}", metrics.id);
    RecordSink::start(target, metrics, &what, |shared, endpoint| {
        let mut b = aws_sdk_firehose::config::Builder::from(shared);
        b.set_endpoint_url(endpoint.map(str::to_string));
        Firehose { client: aws_sdk_firehose::Client::from_conf(b.build()), aggregate_bytes }
    })
}

impl PutApi for Firehose {
    const CALL: &'static str = "PutRecordBatch";
    const STREAM_MEMBER: &'static str = "DeliveryStreamName";

    fn request_limits(&self) -> (usize, usize) {
        (MAX_REQUEST_BYTES, MAX_REQUEST_RECORDS)
    }

    fn units(&mut self, batch: &Batch, compression: Compression) -> Vec<Unit> {
        let groups = match self.aggregate_bytes {
            Some(max) => pack_whole(&batch.records().map(<[u8]>::len).collect::<Vec<_>>(), max),
            None => (0..batch.len()).map(|i| i..i + 1).collect(),
        };
        groups.into_iter().map(|g| Unit::of(encode_record(compression, batch.span(g.clone())), None, g)).collect()
    }

    fn put(&self, stream: &str, _lane: u32, _count: usize, body: Vec<u8>) -> Put {
        let call = self.client.put_record_batch().delivery_stream_name(stream).set_records(Some(Vec::new()));
        Box::pin(async move {
            match call.customize().mutate_request(with_body(body)).send().await {
                Ok(out) => answered(out.request_responses().iter().map(|r| (r.error_code(), r.error_message()))),
                Err(e) => failed_call(&e),
            }
        })
    }
}
