//! What the AWS sinks share: where a flow sends (region, endpoint, credentials, timeouts), the SDK
//! configuration with every timeout set, backoff with jitter, and error messages that say what to
//! fix, logged at most once a minute per kind. Credentials never appear in messages.

pub mod settings;

use crate::ops::metrics::ErrorKind;
pub use crate::sinks::deadletter::Rejected;
pub use settings::{AwsSettings, AwsTarget, Compression, HostRegion, Secret};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where and how one flow sends.
#[derive(Clone)]
pub struct SinkTarget {
    /// Delivery stream or data stream name.
    pub stream: String,
    /// Empty when nothing gave one: the flow cannot start.
    pub region: String,
    /// Which setting, or link of the SDK's chain, decided the region.
    pub region_from: String,
    pub endpoint: Option<String>,
    pub access_key: Option<(String, String)>,
    /// A role to assume (ARN and external id), through `sts_endpoint` when set.
    pub role: Option<(String, Option<String>)>,
    pub sts_endpoint: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Per-record compression before sending.
    pub compression: Compression,
    /// Where records rejected for good are written (set by the engine for each flow).
    pub dead_letter: PathBuf,
    /// The dead-letter file's cap (it is rotated once past it).
    pub dead_letter_max_bytes: u64,
    /// Most records in one request (the flow's `maxBufferSizeRecords`, at most 500).
    pub max_request_records: usize,
    /// Most requests in flight at once (the flow's `max_in_flight_requests`).
    pub in_flight_requests: usize,
}

impl std::fmt::Debug for SinkTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkTarget")
            .field("stream", &self.stream)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The host's region as the AWS SDK finds it: `AWS_REGION` / `AWS_DEFAULT_REGION`, the profile
/// (`AWS_PROFILE`, `~/.aws/config`), then instance metadata; `None` when no link has one. On a
/// runtime of its own, at start, and only when a flow needs it (instance metadata can take
/// seconds to answer that it is not there).
pub fn host_region() -> Option<HostRegion> {
    use aws_config::meta::region::ProvideRegion;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    rt.block_on(async {
        let found = |r: aws_config::Region, from: &str| Some(HostRegion { region: r.to_string(), from: from.into() });
        if let Some(r) = aws_config::environment::region::EnvironmentVariableRegionProvider::new().region().await {
            return found(r, "AWS_REGION or AWS_DEFAULT_REGION");
        }
        if let Some(r) = aws_config::profile::ProfileFileRegionProvider::new().region().await {
            return found(r, "the AWS profile");
        }
        if let Some(r) = aws_config::imds::region::ImdsRegionProvider::builder().build().region().await {
            return found(r, "instance metadata");
        }
        None
    })
}

/// What to do about a flow that has no region.
pub const NO_REGION_ADVICE: &str = "set the sink's region (native), \"kinesis.region\" or \"kinesis.endpoint\" (agent.json), AWS_REGION or AWS_DEFAULT_REGION (logferry-kinesis-agent.service reads /etc/sysconfig/aws-kinesis-agent), or a region in the AWS profile; on EC2 the instance's region is found through instance metadata";

/// A Kinesis Agent endpoint setting: a full URL, or a host name.
pub fn endpoint_url(s: &str) -> String {
    if s.contains("://") {
        s.to_string()
    } else {
        format!("https://{s}")
    }
}

/// The region named by an AWS host name such as `firehose.eu-west-1.amazonaws.com`.
pub fn region_of_endpoint(s: &str) -> Option<String> {
    let host = s.split("://").last()?.split(['/', ':']).next()?;
    let mut parts = host.split('.');
    let (_service, region, rest) = (parts.next()?, parts.next()?, parts.next()?);
    (rest == "amazonaws" && region.contains('-')).then(|| region.to_string())
}

impl SinkTarget {
    /// Resolves a flow's target. `global_endpoint` and `global_region` are agent.json's
    /// `firehose.endpoint` or `kinesis.endpoint` / `kinesis.region`; `kinesis_agent_default` is
    /// the region an agent.json flow falls back to when nothing says otherwise (us-east-1 for
    /// Firehose, as the Kinesis Agent does); `None` in the native format.
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        aws: &AwsSettings,
        target: &AwsTarget,
        global_endpoint: Option<&String>,
        global_region: Option<&String>,
        kinesis_agent_default: Option<&str>,
        stream: &str,
        backoff_ms: (u64, u64),
    ) -> SinkTarget {
        let endpoint = target.endpoint.clone().or_else(|| global_endpoint.cloned()).map(|e| endpoint_url(&e));
        let from = |r: String, why: &str| (r, why.to_string());
        let (region, region_from) = target
            .region
            .clone()
            .map(|r| from(r, "the sink's region"))
            .or_else(|| global_region.cloned().map(|r| from(r, "kinesis.region")))
            .or_else(|| endpoint.as_deref().and_then(region_of_endpoint).map(|r| from(r, "the endpoint's host name")))
            .or_else(|| match &endpoint {
                None => kinesis_agent_default.map(|r| from(r.into(), "the Kinesis Agent's default")),
                Some(_) => None,
            })
            .or_else(|| aws.host_region.as_ref().map(|h| (h.region.clone(), h.from.clone())))
            // an endpoint that names no region (an emulator, a proxy): requests are signed for it
            .or_else(|| endpoint.is_some().then(|| from("us-east-1".into(), "the default for an endpoint that names no region")))
            .unwrap_or_default();
        SinkTarget {
            stream: stream.to_string(),
            region,
            region_from,
            endpoint,
            access_key: aws.access_key_id.clone().zip(aws.secret_access_key.as_ref().map(|s| s.0.clone())),
            role: target
                .role_arn
                .clone()
                .map(|r| (r, target.external_id.clone()))
                .or_else(|| aws.assume_role_arn.clone().map(|r| (r, aws.assume_role_external_id.clone()))),
            sts_endpoint: aws.sts_endpoint.as_deref().map(endpoint_url),
            connect_timeout: Duration::from_millis(aws.connection_timeout_ms),
            read_timeout: Duration::from_millis(aws.socket_timeout_ms),
            initial_backoff: Duration::from_millis(backoff_ms.0),
            max_backoff: Duration::from_millis(backoff_ms.1),
            compression: target.compression,
            dead_letter: target.dead_letter_file.clone().unwrap_or_default(),
            dead_letter_max_bytes: target.dead_letter_max_bytes,
            max_request_records: 500,
            in_flight_requests: target.in_flight_requests,
        }
    }

    /// The shared SDK configuration: region, static keys when given (else the default chain),
    /// and connect, read, attempt and operation timeouts (the SDK's defaults wait forever on a
    /// server that accepts and never answers).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        use aws_config::timeout::TimeoutConfig;
        let attempt = self.read_timeout + self.connect_timeout;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * 3)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()))
            .timeout_config(timeouts);
        if let Some((id, secret)) = &self.access_key {
            loader = loader.credentials_provider(aws_sdk_firehose::config::Credentials::new(id, secret, None, None, "agent.json"));
        }
        let base = loader.load().await;
        let Some((role, external_id)) = &self.role else { return base };
        // the base credentials (chain or static keys) assume the role; STS may have its own endpoint
        let sts = match &self.sts_endpoint {
            Some(e) => base.clone().into_builder().endpoint_url(e).build(),
            None => base.clone(),
        };
        let mut b = aws_config::sts::AssumeRoleProvider::builder(role).session_name("logferry").configure(&sts);
        if let Some(id) = external_id {
            b = b.external_id(id);
        }
        let provider = b.build().await;
        base.into_builder().credentials_provider(aws_sdk_firehose::config::SharedCredentialsProvider::new(provider)).build()
    }
}

impl SinkTarget {
    /// A runtime for this thread and a client built from the shared SDK configuration with the
    /// target's endpoint; `None` (logged, naming `what`) when the runtime cannot start.
    pub fn client<C>(
        &self,
        what: &str,
        build: impl FnOnce(&aws_config::SdkConfig, Option<&str>) -> C,
    ) -> Option<(tokio::runtime::Runtime, C)> {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("cannot start {what}: {e}");
                return None;
            }
        };
        let shared = rt.block_on(self.sdk_config());
        let client = build(&shared, self.endpoint.as_deref());
        Some((rt, client))
    }
}

/// A failed SDK call (any AWS service) as a code and a message: the service's when it answered;
/// when it did not (no credentials, network, timeout), a code naming the kind and the first line
/// of the SDK's explanation.
pub fn describe_failure<E>(e: &E) -> (String, String)
where
    E: aws_sdk_firehose::error::ProvideErrorMetadata + std::error::Error,
{
    let context = || aws_sdk_firehose::error::DisplayErrorContext(e).to_string();
    if let Some(code) = e.code() {
        return (code.to_string(), e.message().map_or_else(context, str::to_string));
    }
    let context = context();
    if context.contains("no credentials found in chain") || context.contains("CredentialsNotLoaded") {
        let message = "no credentials found (tried environment, profile, web identity, container and instance metadata)";
        return ("NoCredentials".into(), message.into());
    }
    // the SDK's explanation, without its debug dump of the error chain after it
    let first_line = context.lines().next().unwrap_or_default();
    let first_line: String = first_line.split(" (DispatchFailure(").next().unwrap_or_default().chars().take(300).collect();
    match first_line.split_once("TLS handshake failed: ") {
        Some((_, reason)) => ("TLS".into(), format!("handshake failed: {reason}")),
        None => ("network or timeout".into(), first_line),
    }
}

/// Error codes that mean the service is slowing the agent down on purpose.
pub fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "ServiceUnavailableException"
            | "SlowDown"
            | "LimitExceededException"
    )
}

/// What an AWS error code means for the flow's health.
pub fn error_kind(code: &str) -> ErrorKind {
    if is_throttling(code) {
        ErrorKind::Throttled
    } else if is_invalid_record(code) {
        ErrorKind::Invalid
    } else {
        ErrorKind::Failed
    }
}

/// Whether a service's error code says the record (or request) is invalid: sending it again
/// would fail again. Stream names are checked at load, so such an answer is about the data.
/// CloudWatch Logs' refused events carry the sink's own codes for them (too old, too new,
/// expired: `cloudwatch_logs::rejected_events`).
pub fn is_invalid_record(code: &str) -> bool {
    matches!(code, "InvalidArgumentException" | "ValidationException" | "TooOldLogEvent" | "TooNewLogEvent" | "ExpiredLogEvent")
}

/// What to tell an operator when a service refuses a whole request as invalid.
pub const REFUSED_ADVICE: &str = "a configuration error, not a bad record (requests are within the service's limits by construction): for example a stream that takes no direct PUT (a Firehose stream fed by Kinesis), record limits set above the stream's, or a KMS key the stream cannot use; nothing is dead-lettered, the records wait in the log files and go once the stream or the flow is fixed";

/// What to tell an operator about an error code.
pub fn advice(code: &str) -> &'static str {
    if is_invalid_record(code) {
        return "the service rejects the record as invalid; it goes to the dead-letter file and the flow moves on";
    }
    if is_throttling(code) {
        return "the service is throttling: backing off";
    }
    match code {
        "ResourceNotFoundException" => "the stream does not exist in this account and region: check its name and the endpoint or region",
        "AccessDeniedException" | "AccessDenied" => "the credentials may not write to this stream: grant it in the IAM policy",
        "NoCredentials" => {
            "give the agent credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE), IRSA or EKS Pod Identity, or an instance profile"
        }
        "TLS" => {
            "the TLS handshake with the endpoint failed: if its certificate is not trusted, add its certificate authority to the system's store (or point SSL_CERT_FILE at it); check that the endpoint speaks HTTPS under that host name"
        }
        "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" | "InvalidClientTokenId" => {
            "the credentials are not valid: check the credential chain (environment, profile, role)"
        }
        _ => "retrying with backoff",
    }
}

/// `d` ± 30 %, as the Kinesis Agent does; the clock's low bits are random enough to spread a fleet.
pub fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.7 + (nanos % 600) as f64 / 1000.0)
}

/// Logs each kind of failure at most once a minute; the next message says how many were not
/// logged in between.
#[derive(Default)]
pub struct ErrorLog {
    /// Per kind: when it was last logged, and how many happened since.
    last: BTreeMap<String, (Instant, u64)>,
}

impl ErrorLog {
    /// Whether a message of this kind may be logged now (then not again for a minute), with the
    /// number of occurrences that were not logged since the last message.
    pub fn due(&mut self, kind: &str) -> Option<u64> {
        match self.last.get_mut(kind) {
            Some((t, n)) if t.elapsed() <= Duration::from_secs(60) => {
                *n += 1;
                None
            }
            Some((t, n)) => {
                let missed = *n;
                (*t, *n) = (Instant::now(), 0);
                Some(missed)
            }
            None => {
                self.last.insert(kind.to_string(), (Instant::now(), 0));
                Some(0)
            }
        }
    }

    /// Logs a whole request refused as invalid: the stream or the flow is misconfigured.
    pub fn refused(&mut self, flow: &str, stream: &str, call: &str, code: &str, message: &str) {
        if let Some(missed) = self.due(&format!("refused {code}")) {
            let again = if missed > 0 { format!(" ({missed} more since the last report)") } else { String::new() };
            tracing::error!(flow = %flow, stream = %stream, "{call} refused the whole request: {code}: {message} — {REFUSED_ADVICE}{again}");
        }
    }

    pub fn error(&mut self, flow: &str, stream: &str, call: &str, code: &str, message: &str) {
        if let Some(missed) = self.due(code) {
            let fate = if is_invalid_record(code) { "" } else { "; the records wait in the log files" };
            let again = if missed > 0 { format!(" ({missed} more since the last report)") } else { String::new() };
            tracing::error!(flow = %flow, stream = %stream, "{call} failed: {code}: {message} — {}{fate}{again}", advice(code));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_as_the_kinesis_agent_reads_them() {
        assert_eq!(endpoint_url("http://127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(endpoint_url("firehose.eu-west-1.amazonaws.com"), "https://firehose.eu-west-1.amazonaws.com");
        assert_eq!(region_of_endpoint("https://firehose.eu-west-1.amazonaws.com"), Some("eu-west-1".into()));
        assert_eq!(region_of_endpoint("kinesis.ap-south-2.amazonaws.com:443"), Some("ap-south-2".into()));
        assert_eq!(region_of_endpoint("http://127.0.0.1:5000"), None);
    }

    #[test]
    fn without_a_region_a_flow_takes_the_hosts_and_an_endpoint_that_names_none_signs_for_us_east_1() {
        let mut aws = AwsSettings::default();
        let kinesis = |aws: &AwsSettings, endpoint: Option<&String>| {
            let t = SinkTarget::resolve(aws, &AwsTarget::default(), endpoint, None, None, "s", (1, 1));
            (t.region, t.region_from)
        };
        assert_eq!(kinesis(&aws, None), (String::new(), String::new()), "nothing: the flow cannot start");
        let emulator = "http://127.0.0.1:4567".to_string();
        assert_eq!(kinesis(&aws, Some(&emulator)).0, "us-east-1");
        aws.host_region = Some(HostRegion { region: "eu-west-2".into(), from: "instance metadata".into() });
        assert_eq!(kinesis(&aws, None), ("eu-west-2".into(), "instance metadata".into()));
        assert_eq!(kinesis(&aws, Some(&emulator)).0, "eu-west-2", "the host's region before the default");
        let own = AwsTarget { region: Some("ca-central-1".into()), ..Default::default() };
        let t = SinkTarget::resolve(&aws, &own, None, None, None, "s", (1, 1));
        assert_eq!((t.region.as_str(), t.region_from.as_str()), ("ca-central-1", "the sink's region"));
    }

    #[test]
    fn firehose_in_agent_json_defaults_to_us_east_1_and_endpoints_name_their_region() {
        let aws = AwsSettings::default();
        let t = SinkTarget::resolve(&aws, &AwsTarget::default(), None, None, Some("us-east-1"), "s", (100, 1000));
        assert_eq!(t.region, "us-east-1");
        let e = "firehose.eu-west-1.amazonaws.com".to_string();
        let t = SinkTarget::resolve(&aws, &AwsTarget::default(), Some(&e), None, Some("us-east-1"), "s", (100, 1000));
        assert_eq!((t.region.as_str(), t.endpoint.as_deref()), ("eu-west-1", Some("https://firehose.eu-west-1.amazonaws.com")));
        let own = AwsTarget { region: Some("ca-central-1".into()), ..Default::default() };
        assert_eq!(SinkTarget::resolve(&aws, &own, None, None, None, "s", (1, 1)).region, "ca-central-1");
    }
}
