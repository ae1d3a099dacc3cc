//! The Kinesis Data Firehose sink: PutRecordBatch through the official AWS SDK.
//!
//! Guarantees:
//! - requests are legal by construction: at most 500 records (the flow's record limit) and 4 MiB
//!   per request (a batch that would exceed it is sent as several requests), and records were cut
//!   to 1,024,000 bytes before they got here;
//! - with `aggregate_record_bytes` (native), converted records are packed whole into Firehose
//!   records of at most that size: S3 receives the same bytes in fewer billing units;
//! - a partial failure re-sends only the records that failed, after a backoff with jitter; a
//!   batch is acknowledged only when every record in it was accepted;
//! - an error that retrying will not heal (stream not found, access denied, bad credentials) is
//!   logged with the stream, the flow and the likely fix, at most once a minute, and retried with
//!   backoff: the records wait in the log files, nothing is thrown away;
//! - every call has connect, read, attempt and operation timeouts, and the sink's own backoff loop
//!   outlives the SDK's retry token bucket;
//! - credentials never appear in messages.
//!
//! - a record the service rejects as invalid goes to the flow's dead-letter file with its source
//!   file and offset, and only then is acknowledged;
//! - with `compression`, each record is sent gzip- or zstd-compressed.

use crate::aws::{
    encode_record, failed_call, finish_batch, pack_whole, rejected_members, request_body, requests, send_until_accepted, with_body,
    Attempt, ErrorLog, SinkTarget,
};
use crate::metrics::FlowMetrics;
use crate::sink::{Batch, Delivered};
use std::sync::Arc;

/// PutRecordBatch's limit on one request.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Runs the sink until its channel closes. With `aggregate_bytes`, consecutive records are packed
/// whole into Firehose records of at most that size (fewer 5 KB billing units, fewer requests).
pub fn run(
    target: SinkTarget,
    aggregate_bytes: Option<usize>,
    flow: usize,
    metrics: Arc<FlowMetrics>,
    batches: impl Iterator<Item = Batch>,
    delivered: impl Fn(Delivered),
) {
    let flow_id = metrics.id.clone();
    let Some((rt, client)) = target.client(&format!("the Firehose sink of flow {flow_id}"), |shared, endpoint| {
        let mut b = aws_sdk_firehose::config::Builder::from(shared);
        b.set_endpoint_url(endpoint.map(str::to_string));
        aws_sdk_firehose::Client::from_conf(b.build())
    }) else {
        return;
    };
    let destination = metrics.destination.clone();
    let mut errors = ErrorLog::default();
    for batch in batches {
        let groups = match aggregate_bytes {
            Some(max) => pack_whole(&batch.records().map(<[u8]>::len).collect::<Vec<_>>(), max),
            None => (0..batch.len()).map(|i| i..i + 1).collect(),
        };
        let units: Vec<_> = groups.iter().map(|g| encode_record(target.compression, batch.span(g.clone()))).collect();
        let sizes: Vec<usize> = units.iter().map(|u| u.len()).collect();
        let mut rejected = Vec::new();
        for request in requests(&sizes, MAX_REQUEST_BYTES, target.max_request_records.min(500)) {
            let m = &*metrics;
            let failed = send_until_accepted(&target, &flow_id, "PutRecordBatch", &mut errors, m, &sizes, request, |pending| {
                let body = request_body("DeliveryStreamName", &target.stream, pending.iter().map(|&i| (units[i].as_ref(), None)));
                let call = client.put_record_batch().delivery_stream_name(&target.stream).set_records(Some(Vec::new()));
                match rt.block_on(call.customize().mutate_request(with_body(body)).send()) {
                    Ok(out) => Attempt::Answered(
                        out.request_responses()
                            .iter()
                            .map(|r| r.error_code().map(|c| (c.to_string(), r.error_message().unwrap_or_default().to_string())))
                            .collect(),
                    ),
                    Err(e) => failed_call(&e),
                }
            });
            rejected.extend(rejected_members(failed, |u| groups[u].clone()));
        }
        drop(units);
        finish_batch(&target, flow, &flow_id, &destination, &mut errors, batch, &rejected, &delivered);
    }
}
