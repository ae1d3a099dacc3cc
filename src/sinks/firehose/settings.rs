//! What a Firehose destination is configured with. Plain data: the configuration fills it in
//! and checks its ranges.

use crate::sinks::aws::settings::AwsTarget;

/// A Kinesis Data Firehose destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirehoseSettings {
    pub stream: String,
    pub aws: AwsTarget,
    /// Converted records packed, whole, into Firehose records of at most this many bytes
    /// (native `aggregate_record_bytes`).
    pub aggregate_bytes: Option<usize>,
}
