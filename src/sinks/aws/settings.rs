//! The settings every AWS destination shares: the process-wide ones (credentials, timeouts,
//! agent.json's global endpoints) and each sink's own overrides (region, endpoint, role,
//! compression, dead-letter file). Plain data: the configuration fills them in and checks their
//! ranges; the sinks read them.

use std::fmt;
use std::path::PathBuf;

/// The default cap of a flow's dead-letter file.
pub const DEFAULT_DEAD_LETTER_MAX_BYTES: u64 = 100 << 20;

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The host's region as the AWS SDK's chain found it, and which link of the chain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRegion {
    pub region: String,
    pub from: String,
}

/// Process-wide AWS settings (agent.json's global keys).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AwsSettings {
    /// The host's region, found at start when a flow names neither a region nor an endpoint
    /// (never read from a file).
    pub host_region: Option<HostRegion>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub assume_role_arn: Option<String>,
    pub assume_role_external_id: Option<String>,
    pub sts_endpoint: Option<String>,
    /// A plain `http://` STS endpoint off the host is refused (temporary credentials would travel
    /// in clear) unless this says it is meant.
    pub allow_plain_http_sts: bool,
    pub kinesis_endpoint: Option<String>,
    pub kinesis_region: Option<String>,
    pub firehose_endpoint: Option<String>,
    pub connection_timeout_ms: u64,
    pub socket_timeout_ms: u64,
    pub max_connections: Option<u64>,
    pub user_agent: Option<String>,
    pub user_agent_override: Option<String>,
}

/// Per-record compression before sending (native format only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The most a compressed record can outgrow its input (incompressible data): gzip adds
    /// 5 bytes per stored block and 18 of framing, zstd at most 1/256 plus a small constant.
    pub fn worst_case_growth(self, n: usize) -> usize {
        match self {
            Compression::None => 0,
            Compression::Gzip | Compression::Zstd => n / 128 + 512,
        }
    }
}

/// Requests an AWS flow keeps in flight at most, in both formats (see docs/benchmarks.md).
pub const DEFAULT_IN_FLIGHT_REQUESTS: usize = 4;

/// Per-sink AWS overrides (native format); agent.json sinks inherit the global settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsTarget {
    /// Requests in flight at once for this flow, at most ([`DEFAULT_IN_FLIGHT_REQUESTS`]).
    pub in_flight_requests: usize,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub compression: Compression,
    /// Where records the service rejects for good are written; by default
    /// `dead-letter/<flow>.jsonl` beside the checkpoint database.
    pub dead_letter_file: Option<PathBuf>,
    /// The dead-letter file is rotated (to `<file>.1`) once it would grow past this.
    pub dead_letter_max_bytes: u64,
}

impl Default for AwsTarget {
    fn default() -> Self {
        AwsTarget {
            in_flight_requests: DEFAULT_IN_FLIGHT_REQUESTS,
            region: None,
            endpoint: None,
            role_arn: None,
            external_id: None,
            compression: Compression::None,
            dead_letter_file: None,
            dead_letter_max_bytes: DEFAULT_DEAD_LETTER_MAX_BYTES,
        }
    }
}
