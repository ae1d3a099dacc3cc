//! What a Kinesis Data Streams destination is configured with. Plain data: the configuration
//! fills it in and checks its ranges ([`super::MAX_KEY_BYTES`], [`super::RAISED_MAX_BYTES`]).

use crate::sinks::aws::settings::AwsTarget;

/// A Kinesis Data Streams destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisSettings {
    pub stream: String,
    pub aws: AwsTarget,
    pub partition_key: PartitionKey,
    /// KPL aggregation: user records packed into aggregates of at most this many bytes.
    pub kpl_aggregate_bytes: Option<usize>,
    pub limits: KinesisLimits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionKey {
    /// A random key per record (the Kinesis Agent's default).
    Random,
    /// A hash of the record's own bytes.
    Deterministic,
    /// The value of a top-level field of the converted JSON record.
    Field(String),
    Constant(String),
}

/// PutRecords limits of a stream: 1 MiB records and 5 MiB requests unless the stream's limits
/// were raised (up to 10 MiB each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KinesisLimits {
    /// Data plus partition key.
    pub record_bytes: usize,
    /// Data plus partition keys of every record in one request.
    pub request_bytes: usize,
}

impl Default for KinesisLimits {
    fn default() -> Self {
        KinesisLimits { record_bytes: super::MAX_RECORD_BYTES, request_bytes: super::MAX_REQUEST_BYTES }
    }
}
