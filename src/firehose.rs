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
//! Not built yet: the dead-letter file for records rejected for good, assume-role, aggregation
//! statistics.

use crate::config::{AwsSettings, AwsTarget, ConfigFormat};
use crate::sink::{Batch, Delivered};
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Where and how one Firehose flow sends.
#[derive(Debug, Clone)]
pub struct FirehoseTarget {
    pub stream: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub access_key: Option<(String, String)>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// A Kinesis Agent endpoint setting (`firehose.endpoint`): a full URL, or a host name.
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

impl FirehoseTarget {
    /// Resolves a flow's target from the configuration: agent.json keeps the Kinesis Agent's
    /// us-east-1 default when no endpoint is set; native uses the sink's region, the endpoint's
    /// region, or the SDK's region chain.
    pub fn resolve(
        format: ConfigFormat,
        aws: &AwsSettings,
        target: &AwsTarget,
        stream: &str,
        initial_backoff_ms: u64,
        max_backoff_ms: u64,
    ) -> FirehoseTarget {
        let endpoint = target.endpoint.clone().or_else(|| aws.firehose_endpoint.clone()).map(|e| endpoint_url(&e));
        let region = target
            .region
            .clone()
            .or_else(|| endpoint.as_deref().and_then(region_of_endpoint))
            .or_else(|| match format {
                ConfigFormat::KinesisAgent if endpoint.is_none() => Some("us-east-1".into()),
                _ => std::env::var("AWS_REGION").ok().or_else(|| std::env::var("AWS_DEFAULT_REGION").ok()),
            })
            .unwrap_or_else(|| "us-east-1".into());
        FirehoseTarget {
            stream: stream.to_string(),
            region,
            endpoint,
            access_key: aws.access_key_id.clone().zip(aws.secret_access_key.as_ref().map(|s| s.0.clone())),
            connect_timeout: Duration::from_millis(aws.connection_timeout_ms),
            read_timeout: Duration::from_millis(aws.socket_timeout_ms),
            initial_backoff: Duration::from_millis(initial_backoff_ms),
            max_backoff: Duration::from_millis(max_backoff_ms),
        }
    }
}

async fn client(t: &FirehoseTarget) -> aws_sdk_firehose::Client {
    use aws_config::timeout::TimeoutConfig;
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(t.connect_timeout)
        .read_timeout(t.read_timeout)
        .operation_attempt_timeout(t.read_timeout + t.connect_timeout)
        .operation_timeout((t.read_timeout + t.connect_timeout) * 3)
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(t.region.clone()))
        .timeout_config(timeouts);
    if let Some((id, secret)) = &t.access_key {
        loader = loader.credentials_provider(aws_sdk_firehose::config::Credentials::new(id, secret, None, None, "agent.json"));
    }
    let shared = loader.load().await;
    let mut b = aws_sdk_firehose::config::Builder::from(&shared);
    if let Some(e) = &t.endpoint {
        b = b.endpoint_url(e);
    }
    aws_sdk_firehose::Client::from_conf(b.build())
}

/// What to tell an operator about an error code, and whether retrying can help by itself.
fn advice(code: &str) -> &'static str {
    match code {
        "ResourceNotFoundException" => {
            "the delivery stream does not exist in this account and region: check `deliveryStream` and the endpoint or region"
        }
        "AccessDeniedException" | "AccessDenied" => {
            "the credentials may not call firehose:PutRecordBatch on this stream: grant it in the IAM policy"
        }
        "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" | "InvalidClientTokenId" => {
            "the credentials are not valid: check the credential chain (environment, profile, role)"
        }
        "ServiceUnavailableException" | "ThrottlingException" | "LimitExceededException" => "the service is throttling: backing off",
        _ => "retrying with backoff",
    }
}

fn jitter(d: Duration) -> Duration {
    // ±30 %, as the Kinesis Agent does, from the clock's low bits (no crate for one number)
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    let f = 0.7 + (nanos % 600) as f64 / 1000.0;
    d.mul_f64(f)
}

/// Runs the sink until its channel closes.
pub fn run(target: FirehoseTarget, flow: usize, flow_id: String, batches: Receiver<Batch>, delivered: impl Fn(Delivered)) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(flow = %flow_id, "cannot start the Firehose sink: {e}");
            return;
        }
    };
    let client = rt.block_on(client(&target));
    let mut last_logged: BTreeMap<String, Instant> = BTreeMap::new();
    for batch in batches {
        let records: Vec<&[u8]> = batch.records().collect();
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut backoff = target.initial_backoff;
        loop {
            let request: Vec<Record> = pending.iter().filter_map(|&i| Record::builder().data(Blob::new(records[i])).build().ok()).collect();
            let result = rt.block_on(client.put_record_batch().delivery_stream_name(&target.stream).set_records(Some(request)).send());
            let failure: Option<String> = match result {
                Ok(out) => {
                    let mut still = Vec::new();
                    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
                    for (&i, r) in pending.iter().zip(out.request_responses()) {
                        if let Some(code) = r.error_code() {
                            still.push(i);
                            *codes.entry(code.to_string()).or_default() += 1;
                        }
                    }
                    // responses shorter than the request: treat the rest as not accepted
                    still.extend(pending.iter().skip(out.request_responses().len()).copied());
                    pending = still;
                    if pending.is_empty() {
                        break;
                    }
                    tracing::debug!(flow = %flow_id, stream = %target.stream, "{} records not accepted ({codes:?}); sending only those again", pending.len());
                    None
                }
                Err(e) => {
                    use aws_sdk_firehose::error::ProvideErrorMetadata;
                    let code = e.code().unwrap_or("network or timeout").to_string();
                    let msg =
                        e.message().map(str::to_string).unwrap_or_else(|| aws_sdk_firehose::error::DisplayErrorContext(&e).to_string());
                    Some(format!("{code}: {msg} — {}", advice(&code)))
                }
            };
            if let Some(f) = failure {
                let key = f.split(':').next().unwrap_or_default().to_string();
                if last_logged.get(&key).is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::error!(flow = %flow_id, stream = %target.stream, "PutRecordBatch failed: {f}; the records wait in the log files");
                    last_logged.insert(key, Instant::now());
                }
            }
            std::thread::sleep(jitter(backoff));
            backoff = (backoff * 2).min(target.max_backoff);
        }
        delivered(Delivered { flow, acks: batch.acks, budget_bytes: batch.budget_bytes });
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
        assert_eq!(region_of_endpoint("firehose.ap-south-2.amazonaws.com:443"), Some("ap-south-2".into()));
        assert_eq!(region_of_endpoint("http://127.0.0.1:5000"), None);
    }
}
