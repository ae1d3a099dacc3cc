//! The Kinesis Data Firehose sink: PutRecordBatch through the official AWS SDK.
//!
//! Guarantees:
//! - requests are legal by construction: the engine's batches hold at most 500 records and
//!   4 MiB, and records are cut to 1,024,000 bytes before they get here;
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

use crate::aws::{encode_record, failed_call, finish_batch, send_until_accepted, Attempt, ErrorLog, SinkTarget};
use crate::sink::{Batch, Delivered};
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;

/// Runs the sink until its channel closes.
pub fn run(target: SinkTarget, flow: usize, flow_id: String, batches: impl Iterator<Item = Batch>, delivered: impl Fn(Delivered)) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(flow = %flow_id, "cannot start the Firehose sink: {e}");
            return;
        }
    };
    let client = rt.block_on(async {
        let shared = target.sdk_config().await;
        let mut b = aws_sdk_firehose::config::Builder::from(&shared);
        if let Some(e) = &target.endpoint {
            b = b.endpoint_url(e);
        }
        aws_sdk_firehose::Client::from_conf(b.build())
    });
    let destination = format!("DeliveryStream:{}", target.stream);
    let mut errors = ErrorLog::default();
    for batch in batches {
        let records: Vec<_> = batch.records().map(|r| encode_record(target.compression, r)).collect();
        let rejected = send_until_accepted(&target, &flow_id, "PutRecordBatch", &mut errors, (0..records.len()).collect(), |pending| {
            let request: Vec<Record> =
                pending.iter().filter_map(|&i| Record::builder().data(Blob::new(records[i].as_ref())).build().ok()).collect();
            match rt.block_on(client.put_record_batch().delivery_stream_name(&target.stream).set_records(Some(request)).send()) {
                Ok(out) => Attempt::Answered(
                    out.request_responses()
                        .iter()
                        .map(|r| r.error_code().map(|c| (c.to_string(), r.error_message().unwrap_or_default().to_string())))
                        .collect(),
                ),
                Err(e) => {
                    use aws_sdk_firehose::error::ProvideErrorMetadata;
                    failed_call(e.code(), e.message(), || aws_sdk_firehose::error::DisplayErrorContext(&e).to_string())
                }
            }
        });
        drop(records);
        finish_batch(&target, flow, &flow_id, &destination, &mut errors, batch, &rejected, &delivered);
    }
}
