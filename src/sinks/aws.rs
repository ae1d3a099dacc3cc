//! What the AWS sinks share: where a flow sends (region, endpoint, credentials, timeouts), the SDK
//! configuration with every timeout set, backoff with jitter, and error messages that say what to
//! fix, logged at most once a minute per kind. Credentials never appear in messages.

use crate::batch::Batch;
use crate::config::{AwsSettings, AwsTarget, Compression, ConfigFormat};
use crate::ops::metrics::{Call, FlowMetrics};
pub use crate::sinks::deadletter::Rejected;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where and how one flow sends.
#[derive(Clone)]
pub struct SinkTarget {
    /// Delivery stream or data stream name.
    pub stream: String,
    pub region: String,
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
    /// the region agent.json falls back to when nothing says otherwise (us-east-1 for Firehose,
    /// as the Kinesis Agent does).
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        format: ConfigFormat,
        aws: &AwsSettings,
        target: &AwsTarget,
        global_endpoint: Option<&String>,
        global_region: Option<&String>,
        kinesis_agent_default: Option<&str>,
        stream: &str,
        backoff_ms: (u64, u64),
    ) -> SinkTarget {
        let endpoint = target.endpoint.clone().or_else(|| global_endpoint.cloned()).map(|e| endpoint_url(&e));
        let chain = || std::env::var("AWS_REGION").ok().or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
        let region = target
            .region
            .clone()
            .or_else(|| global_region.cloned())
            .or_else(|| endpoint.as_deref().and_then(region_of_endpoint))
            .or_else(|| match (format, &endpoint) {
                (ConfigFormat::KinesisAgent, None) => kinesis_agent_default.map(String::from).or_else(chain),
                _ => chain(),
            })
            .unwrap_or_else(|| "us-east-1".into());
        SinkTarget {
            stream: stream.to_string(),
            region,
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

/// How one request went: per record, in request order, `None` when accepted or the error code
/// and message; or the whole call failed.
pub enum Attempt {
    Answered(Vec<Option<(String, String)>>),
    Failed { code: String, message: String },
}

/// A service's answer to a request: per record, in request order, its error code and message
/// when it failed.
pub fn answered<'a>(records: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> Attempt {
    Attempt::Answered(records.map(|(code, message)| code.map(|c| (c.to_string(), message.unwrap_or_default().to_string()))).collect())
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

/// The JSON body of a PutRecordBatch (`name_member` `DeliveryStreamName`) or PutRecords
/// (`StreamName`) request, written in one pass from the records: each `Data` is base64 of the
/// record's bytes, followed by its `PartitionKey` when it has one. The SDK would build one
/// `Record` with a shared buffer per record, base64 each into a string of its own and copy it
/// again; this is the same body without the per-record work (see [`with_body`]).
pub fn request_body<'a>(name_member: &str, name: &str, records: impl Iterator<Item = (&'a [u8], Option<&'a str>)> + Clone) -> Vec<u8> {
    // the exact size up to escapes in names and keys: the body is never copied to grow
    // (`{"Data":""}` and a comma per record, `,"PartitionKey":""` per key)
    let (count, size) = records
        .clone()
        .fold((0, 0), |(n, size), (data, key)| (n + 1, size + 12 + data.len().div_ceil(3) * 4 + key.map_or(0, |k| k.len() + 18)));
    let mut out = Vec::with_capacity(20 + name_member.len() + name.len() + size - usize::from(count > 0));
    let json_str = |out: &mut Vec<u8>, s: &str| serde_json::to_writer(out, s).expect("writing a string to a Vec cannot fail");
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(name_member.as_bytes());
    out.extend_from_slice(b"\":");
    json_str(&mut out, name);
    out.extend_from_slice(b",\"Records\":[");
    for (i, (data, key)) in records.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Data\":\"");
        base64_simd::STANDARD.encode_append(data, &mut out);
        out.push(b'"');
        if let Some(key) = key {
            out.extend_from_slice(b",\"PartitionKey\":");
            json_str(&mut out, key);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// Makes the SDK send `body` (from [`request_body`]) in place of the one it serialised from
/// the operation's input; the SDK still signs it (after this), retries it, and parses the answer.
/// The operation is built with an empty record list, so the SDK's own body costs nothing.
pub fn with_body(body: Vec<u8>) -> impl Fn(&mut aws_sdk_firehose::config::http::HttpRequest) + Send + Sync + 'static {
    let length = body.len().to_string();
    let body = aws_smithy_types::body::SdkBody::from(body);
    move |request| {
        *request.body_mut() = body.try_clone().expect("a body in memory can be cloned");
        request.headers_mut().insert("Content-Length", length.clone());
    }
}

/// A failed SDK call as an [`Attempt`] ([`describe_failure`]).
pub fn failed_call<E>(e: &E) -> Attempt
where
    E: aws_sdk_firehose::error::ProvideErrorMetadata + std::error::Error,
{
    let (code, message) = describe_failure(e);
    Attempt::Failed { code, message }
}

/// The batch records behind rejected units (packed or aggregated records): a rejected unit
/// rejects every record it carries.
pub fn rejected_members(failed: Vec<Rejected>, members: impl Fn(usize) -> std::ops::Range<usize>) -> impl Iterator<Item = Rejected> {
    failed
        .into_iter()
        .flat_map(move |r| members(r.record).map(move |m| Rejected { record: m, code: r.code.clone(), message: r.message.clone() }))
}

/// Whether a service's error code says the record (or request) is invalid: sending it again
/// would fail again. Stream names are checked at load, so such an answer is about the data.
pub fn is_invalid_record(code: &str) -> bool {
    matches!(code, "InvalidArgumentException" | "ValidationException")
}

/// Sends the records `pending` (indexes into the caller's batch) until every one was accepted or
/// rejected for good, and returns the rejected ones. After a partial failure only the records
/// that failed go again; every failure is followed by a backoff with jitter that doubles up to
/// the target's maximum. A record the service calls invalid is rejected; a whole request called
/// invalid is halved until the invalid records are alone. Anything else never gives up: the
/// records wait, as the log files do.
/// Every attempt is recorded in `metrics`, with `sizes` (of the records, by index) for the bytes.
#[allow(clippy::too_many_arguments)]
pub fn send_until_accepted(
    target: &SinkTarget,
    flow_id: &str,
    call: &str,
    errors: &mut ErrorLog,
    metrics: &FlowMetrics,
    sizes: &[usize],
    pending: Vec<usize>,
    mut send: impl FnMut(&[usize]) -> Attempt,
) -> Vec<Rejected> {
    let mut rejected = Vec::new();
    // groups still to send, the next one last
    let mut groups = vec![pending];
    while let Some(mut pending) = groups.pop() {
        let mut backoff = target.initial_backoff;
        while !pending.is_empty() {
            match send(&pending) {
                Attempt::Answered(results) => {
                    let mut still = Vec::new();
                    let mut codes: BTreeMap<String, (usize, String)> = BTreeMap::new();
                    let mut results = results.into_iter();
                    let mut outcome = Call { attempted: pending.len() as u64, ..Call::default() };
                    for &i in &pending {
                        match results.next() {
                            Some(None) => {
                                outcome.sent += 1;
                                outcome.bytes_sent += sizes.get(i).copied().unwrap_or(0) as u64;
                            }
                            Some(Some((code, message))) if is_invalid_record(&code) => {
                                errors.error(flow_id, &target.stream, call, &code, &message);
                                metrics.record_error(&code, &message, 1);
                                rejected.push(Rejected { record: i, code, message });
                            }
                            Some(Some((code, message))) => {
                                still.push(i);
                                outcome.throttled += u64::from(crate::ops::metrics::is_throttling(&code));
                                codes.entry(code).or_insert((0, message)).0 += 1;
                            }
                            // an answer shorter than the request: the rest were not accepted
                            None => still.push(i),
                        }
                    }
                    outcome.failed = outcome.attempted - outcome.sent;
                    metrics.record_call(outcome);
                    for (code, (n, message)) in &codes {
                        metrics.record_error(code, message, *n as u64);
                    }
                    pending = still;
                    if pending.is_empty() {
                        break;
                    }
                    tracing::debug!(flow = %flow_id, stream = %target.stream, "{} records not accepted ({codes:?}); sending only those again", pending.len());
                }
                Attempt::Failed { code, message } if is_invalid_record(&code) => {
                    metrics.record_call(Call {
                        attempted: pending.len() as u64,
                        failed: pending.len() as u64,
                        service_error: true,
                        ..Call::default()
                    });
                    metrics.record_error(&code, &message, 1);
                    errors.error(flow_id, &target.stream, call, &code, &message);
                    if pending.len() == 1 {
                        rejected.push(Rejected { record: pending[0], code, message });
                    } else {
                        let second = pending.split_off(pending.len() / 2);
                        groups.push(second);
                        groups.push(pending);
                    }
                    break;
                }
                Attempt::Failed { code, message } => {
                    let throttled = if crate::ops::metrics::is_throttling(&code) { pending.len() as u64 } else { 0 };
                    metrics.record_call(Call {
                        attempted: pending.len() as u64,
                        failed: pending.len() as u64,
                        throttled,
                        service_error: true,
                        ..Call::default()
                    });
                    metrics.record_error(&code, &message, 1);
                    errors.error(flow_id, &target.stream, call, &code, &message)
                }
            }
            std::thread::sleep(jitter(backoff));
            backoff = (backoff * 2).min(target.max_backoff);
        }
    }
    rejected.sort_by_key(|r| r.record);
    rejected
}

/// Splits records (by index) into requests within the count and byte limits.
pub fn requests(sizes: &[usize], max_bytes: usize, max_records: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let cur = out.last_mut().expect("never empty");
        if !cur.is_empty() && (cur.len() >= max_records || bytes + size > max_bytes) {
            out.push(Vec::new());
            bytes = 0;
        }
        out.last_mut().expect("never empty").push(i);
        bytes += size;
    }
    out.retain(|r| !r.is_empty());
    out
}

/// Groups consecutive records (by their sizes) so that each group's total stays within
/// `max_bytes`; a record larger than that is a group of its own.
pub fn pack_whole(sizes: &[usize], max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        match out.last_mut() {
            Some(g) if bytes + size <= max_bytes => {
                g.end = i + 1;
                bytes += size;
            }
            _ => {
                out.push(i..i + 1);
                bytes = size;
            }
        }
    }
    out
}

/// A record as it is sent: compressed when the flow asks for it.
pub fn encode_record(compression: Compression, record: &[u8]) -> Cow<'_, [u8]> {
    match compression {
        Compression::None => Cow::Borrowed(record),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(record.len() / 4 + 64), flate2::Compression::default());
            e.write_all(record).expect("writing to a Vec cannot fail");
            Cow::Owned(e.finish().expect("writing to a Vec cannot fail"))
        }
        Compression::Zstd => Cow::Owned(zstd::bulk::compress(record, 3).expect("compressing a buffer in memory cannot fail")),
    }
}

/// What sets one AWS record service apart: how a batch becomes the service's records and how one
/// request is sent. [`RecordSink`] does the rest (requests within the limits, sending until
/// every record is accepted or rejected for good, metrics, messages).
pub trait PutApi {
    /// The API call, as messages and metrics name it ("PutRecordBatch").
    const CALL: &'static str;
    /// The request member that names the stream ("DeliveryStreamName").
    const STREAM_MEMBER: &'static str;
    /// The most bytes and records one request takes.
    fn request_limits(&self) -> (usize, usize);
    /// The batch as the service's records (compressed with `compression`).
    fn units<'a>(&mut self, batch: &'a Batch, compression: Compression) -> Vec<Unit<'a>>;
    /// Sends one request body (made by [`request_body`]) on `rt`.
    fn put(&self, rt: &tokio::runtime::Runtime, stream: &str, body: Vec<u8>) -> Attempt;
}

/// One record as the service sees it: its bytes, its partition key (Kinesis), and the batch
/// records it carries (one, or several packed or aggregated).
pub struct Unit<'a> {
    pub data: Cow<'a, [u8]>,
    pub key: Option<String>,
    pub members: std::ops::Range<usize>,
}

/// A sink for an AWS record service: [`PutApi`] says which.
pub struct RecordSink<P> {
    target: SinkTarget,
    rt: tokio::runtime::Runtime,
    api: P,
    metrics: std::sync::Arc<FlowMetrics>,
    errors: ErrorLog,
}

impl<P: PutApi> RecordSink<P> {
    /// Starts the runtime and builds the client with `build` (from the shared SDK configuration
    /// and the target's endpoint); `None`, logged, when the runtime cannot start.
    pub fn start(
        target: SinkTarget,
        metrics: std::sync::Arc<FlowMetrics>,
        what: &str,
        build: impl FnOnce(&aws_config::SdkConfig, Option<&str>) -> P,
    ) -> Option<Self> {
        let (rt, api) = target.client(what, build)?;
        Some(RecordSink { target, rt, api, metrics, errors: ErrorLog::default() })
    }
}

impl<P: PutApi> crate::sinks::Sink for RecordSink<P> {
    fn deliver(&mut self, group: &[Batch]) -> Vec<Vec<Rejected>> {
        group.iter().map(|batch| self.deliver_one(batch)).collect()
    }
}

impl<P: PutApi> RecordSink<P> {
    fn deliver_one(&mut self, batch: &Batch) -> Vec<Rejected> {
        let RecordSink { target, rt, api, metrics, errors } = self;
        let units = api.units(batch, target.compression);
        let sizes: Vec<usize> = units.iter().map(|u| u.data.len() + u.key.as_ref().map_or(0, String::len)).collect();
        let (max_bytes, max_records) = api.request_limits();
        let mut rejected = Vec::new();
        for request in requests(&sizes, max_bytes, target.max_request_records.min(max_records)) {
            let failed = send_until_accepted(target, &metrics.id, P::CALL, errors, metrics, &sizes, request, |pending| {
                let records = pending.iter().map(|&i| (units[i].data.as_ref(), units[i].key.as_deref()));
                api.put(rt, &target.stream, request_body(P::STREAM_MEMBER, &target.stream, records))
            });
            rejected.extend(rejected_members(failed, |u| units[u].members.clone()));
        }
        rejected
    }
}

/// What to tell an operator about an error code.
pub fn advice(code: &str) -> &'static str {
    if is_invalid_record(code) {
        return "the service rejects the record as invalid; it goes to the dead-letter file and the flow moves on";
    }
    if crate::ops::metrics::is_throttling(code) {
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

    fn target() -> SinkTarget {
        SinkTarget::resolve(ConfigFormat::Native, &AwsSettings::default(), &AwsTarget::default(), None, None, None, "s", (1, 2))
    }

    fn metrics() -> crate::ops::metrics::Metrics {
        crate::ops::metrics::Metrics::new(&[("f".into(), "DeliveryStream:s".into())])
    }

    fn code(c: &str) -> Option<(String, String)> {
        Some((c.into(), "m".into()))
    }

    #[test]
    fn only_failed_records_are_sent_again() {
        let mut sent: Vec<Vec<usize>> = Vec::new();
        let mut answers = vec![
            Attempt::Answered(vec![None, code("ProvisionedThroughputExceededException"), None, code("InternalFailure")]),
            Attempt::Failed { code: "ServiceUnavailable".into(), message: "x".into() },
            Attempt::Answered(vec![code("ThrottlingException")]), // shorter than the request
            Attempt::Answered(vec![None, None]),
        ]
        .into_iter();
        let rejected =
            send_until_accepted(&target(), "f", "Put", &mut ErrorLog::default(), &metrics().flows()[0], &[1; 8], vec![0, 1, 2, 3], |p| {
                sent.push(p.to_vec());
                answers.next().expect("no more attempts than answers")
            });
        assert_eq!(sent, vec![vec![0, 1, 2, 3], vec![1, 3], vec![1, 3], vec![1, 3]]);
        assert!(rejected.is_empty());
    }

    #[test]
    fn invalid_records_are_rejected_and_an_invalid_request_is_halved_until_they_are_alone() {
        // records 2 and 5 are invalid; the service rejects a whole request that holds one
        let invalid = [2usize, 5];
        let mut sent: Vec<Vec<usize>> = Vec::new();
        let rejected =
            send_until_accepted(&target(), "f", "Put", &mut ErrorLog::default(), &metrics().flows()[0], &[1; 8], (0..8).collect(), |p| {
                sent.push(p.to_vec());
                if p.iter().any(|i| invalid.contains(i)) {
                    Attempt::Failed { code: "ValidationException".into(), message: "record too large".into() }
                } else {
                    Attempt::Answered(vec![None; p.len()])
                }
            });
        assert_eq!(rejected.iter().map(|r| r.record).collect::<Vec<_>>(), vec![2, 5]);
        assert_eq!(rejected[0].message, "record too large");
        let accepted: Vec<usize> = sent.iter().filter(|p| !p.iter().any(|i| invalid.contains(i))).flatten().copied().collect::<Vec<_>>();
        assert_eq!(accepted, vec![0, 1, 3, 4, 6, 7], "every valid record accepted once, in order");
        // a per-record rejection needs no halving
        let rejected =
            send_until_accepted(&target(), "f", "Put", &mut ErrorLog::default(), &metrics().flows()[0], &[1; 8], vec![0, 1], |p| {
                Attempt::Answered(p.iter().map(|&i| if i == 1 { code("InvalidArgumentException") } else { None }).collect())
            });
        assert_eq!(rejected, vec![Rejected { record: 1, code: "InvalidArgumentException".into(), message: "m".into() }]);
    }

    #[test]
    fn requests_respect_count_and_bytes() {
        assert_eq!(requests(&[3, 3, 3, 3], 7, 10), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(requests(&[1; 5], 100, 2), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(requests(&[10, 1], 5, 10), vec![vec![0], vec![1]], "an oversized record goes alone");
        assert!(requests(&[], 5, 5).is_empty());
    }

    #[test]
    fn request_body_is_the_json_the_services_read() {
        use base64::Engine as _;
        let records: [(&[u8], Option<&str>); 3] = [(b"{\"a\":1}\n", Some("k\"1\\")), (&[0, 255, 10], Some("\u{e9}")), (b"", Some(""))];
        let body = request_body("StreamName", "logs\"x", records.iter().copied());
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(v["StreamName"], "logs\"x");
        let sent = v["Records"].as_array().unwrap();
        assert_eq!(sent.len(), 3);
        for (entry, (data, key)) in sent.iter().zip(records) {
            let decoded = base64::engine::general_purpose::STANDARD.decode(entry["Data"].as_str().unwrap()).unwrap();
            assert_eq!(decoded, data);
            assert_eq!(entry["PartitionKey"].as_str(), key);
            assert_eq!(entry.as_object().unwrap().len(), 2);
        }
        let firehose = request_body("DeliveryStreamName", "s", [(&b"x"[..], None)].into_iter());
        assert_eq!(firehose, br#"{"DeliveryStreamName":"s","Records":[{"Data":"eA=="}]}"#);
        assert_eq!(firehose.capacity(), firehose.len(), "sized exactly, never grown");
        let kinesis = request_body("StreamName", "s", [(&b"abcd"[..], Some("k"))].into_iter());
        assert_eq!(kinesis, br#"{"StreamName":"s","Records":[{"Data":"YWJjZA==","PartitionKey":"k"}]}"#);
        assert_eq!(kinesis.capacity(), kinesis.len(), "sized exactly, never grown");
        assert_eq!(request_body("DeliveryStreamName", "s", std::iter::empty()), br#"{"DeliveryStreamName":"s","Records":[]}"#);
    }

    #[test]
    fn whole_records_are_packed_in_order_within_the_size() {
        assert_eq!(pack_whole(&[3, 3, 3, 10, 1, 1], 7), vec![0..2, 2..3, 3..4, 4..6]);
        assert_eq!(pack_whole(&[], 7), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn compressed_records_decompress_to_the_original() {
        use std::io::Read;
        let record = b"{\"message\":\"hello hello hello hello hello\"}\n".repeat(20);
        assert_eq!(encode_record(Compression::None, &record), &record[..]);
        let gz = encode_record(Compression::Gzip, &record);
        assert!(gz.len() < record.len() / 4);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, record);
        let zs = encode_record(Compression::Zstd, &record);
        assert!(zs.len() < record.len() / 4);
        assert_eq!(zstd::stream::decode_all(&zs[..]).unwrap(), record);
        // incompressible data grows by no more than the room the flow keeps for it
        let noise: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for c in [Compression::Gzip, Compression::Zstd] {
            assert!(encode_record(c, &noise).len() <= noise.len() + c.worst_case_growth(noise.len()));
        }
    }

    #[test]
    fn endpoints_as_the_kinesis_agent_reads_them() {
        assert_eq!(endpoint_url("http://127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(endpoint_url("firehose.eu-west-1.amazonaws.com"), "https://firehose.eu-west-1.amazonaws.com");
        assert_eq!(region_of_endpoint("https://firehose.eu-west-1.amazonaws.com"), Some("eu-west-1".into()));
        assert_eq!(region_of_endpoint("kinesis.ap-south-2.amazonaws.com:443"), Some("ap-south-2".into()));
        assert_eq!(region_of_endpoint("http://127.0.0.1:5000"), None);
    }

    #[test]
    fn firehose_in_agent_json_defaults_to_us_east_1_and_endpoints_name_their_region() {
        let aws = AwsSettings::default();
        let t =
            SinkTarget::resolve(ConfigFormat::KinesisAgent, &aws, &AwsTarget::default(), None, None, Some("us-east-1"), "s", (100, 1000));
        assert_eq!(t.region, "us-east-1");
        let e = "firehose.eu-west-1.amazonaws.com".to_string();
        let t = SinkTarget::resolve(
            ConfigFormat::KinesisAgent,
            &aws,
            &AwsTarget::default(),
            Some(&e),
            None,
            Some("us-east-1"),
            "s",
            (100, 1000),
        );
        assert_eq!((t.region.as_str(), t.endpoint.as_deref()), ("eu-west-1", Some("https://firehose.eu-west-1.amazonaws.com")));
        let own = AwsTarget { region: Some("ca-central-1".into()), ..Default::default() };
        assert_eq!(SinkTarget::resolve(ConfigFormat::Native, &aws, &own, None, None, None, "s", (1, 1)).region, "ca-central-1");
    }
}
