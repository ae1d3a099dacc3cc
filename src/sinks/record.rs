//! The AWS record services' one sink: [`RecordSink`] turns a batch into the service's records
//! ([`PutApi::units`]), cuts them into requests within the service's limits ([`requests`]),
//! writes each request body in one pass ([`request_body`]) and sends it until every record is
//! accepted or rejected for good ([`send_until_accepted`]).
//!
//! Guarantees: requests are legal by construction; after a partial failure only the failed
//! records go again; the backoff grows only after attempts that moved nothing, with jitter on
//! every wait, slept on the sink's runtime; a record the service calls invalid is rejected; a
//! whole request called invalid is a configuration error (the records wait, the flow is
//! unhealthy); nothing else ever gives up. Not done here: what a rejected record becomes (the
//! worker dead-letters it).

use super::aws::{describe_failure, error_kind, is_invalid_record, is_throttling, jitter, ErrorLog, Rejected, SinkTarget};
use crate::batch::Batch;
use crate::config::Compression;
use crate::ops::metrics::{Call, ErrorKind, FlowMetrics};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;

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

/// What one answer did to the records it carried.
#[derive(Debug, Default, PartialEq)]
pub struct Judged {
    /// Records to send again (not accepted, not rejected for good), in request order.
    pub again: Vec<usize>,
    /// Records rejected for good (each record the service called invalid).
    pub rejected: Vec<Rejected>,
    /// Whether the attempt moved anything: a record accepted or rejected for good.
    pub progress: bool,
    /// Whether the service said it was throttling (records or the whole call).
    pub throttled: bool,
}

/// Judges the answer to a request that carried `pending` (indexes; `sizes` by index for the
/// bytes): records every figure in `metrics` and logs errors through `errors`. A record the
/// service calls invalid is rejected for good; a whole request called invalid is a refusal of
/// the configuration (the stream takes no such request), not of its records: they are sent
/// again, and the flow is unhealthy until a call succeeds.
pub fn judge(
    answer: Attempt,
    pending: &[usize],
    sizes: &[usize],
    (target, flow_id, call): (&SinkTarget, &str, &str),
    errors: &mut ErrorLog,
    metrics: &FlowMetrics,
) -> Judged {
    let mut judged = Judged::default();
    match answer {
        Attempt::Answered(results) => {
            let mut codes: BTreeMap<String, (usize, String)> = BTreeMap::new();
            let mut results = results.into_iter();
            let mut outcome = Call { attempted: pending.len() as u64, ..Call::default() };
            for &i in pending {
                match results.next() {
                    Some(None) => {
                        outcome.sent += 1;
                        outcome.bytes_sent += sizes.get(i).copied().unwrap_or(0) as u64;
                    }
                    Some(Some((code, message))) if is_invalid_record(&code) => {
                        errors.error(flow_id, &target.stream, call, &code, &message);
                        metrics.record_error(&code, &message, 1, error_kind(&code));
                        judged.rejected.push(Rejected { record: i, code, message });
                    }
                    Some(Some((code, message))) => {
                        judged.again.push(i);
                        outcome.throttled += u64::from(is_throttling(&code));
                        codes.entry(code).or_insert((0, message)).0 += 1;
                    }
                    // an answer shorter than the request: the rest were not accepted
                    None => judged.again.push(i),
                }
            }
            outcome.failed = outcome.attempted - outcome.sent;
            metrics.record_call(outcome);
            for (code, (n, message)) in &codes {
                metrics.record_error(code, message, *n as u64, error_kind(code));
            }
            judged.progress = judged.again.len() < pending.len();
            judged.throttled = outcome.throttled > 0;
            if !judged.again.is_empty() {
                tracing::debug!(flow = %flow_id, stream = %target.stream, "{} records not accepted ({codes:?}); sending them again", judged.again.len());
            }
        }
        Attempt::Failed { code, message } => {
            let throttled = is_throttling(&code);
            metrics.record_call(Call {
                attempted: pending.len() as u64,
                failed: pending.len() as u64,
                throttled: if throttled { pending.len() as u64 } else { 0 },
                service_error: true,
                ..Call::default()
            });
            if is_invalid_record(&code) {
                metrics.record_error(&code, &message, 1, ErrorKind::Refused);
                errors.refused(flow_id, &target.stream, call, &code, &message);
            } else {
                metrics.record_error(&code, &message, 1, error_kind(&code));
                errors.error(flow_id, &target.stream, call, &code, &message);
            }
            judged.again = pending.to_vec();
            judged.throttled = throttled;
        }
    }
    judged
}

/// Sends the records `pending` (indexes into the caller's batch) until every one was accepted or
/// rejected for good, and returns the rejected ones. After a partial failure only the records
/// that failed go again. The backoff follows progress: an attempt that accepted or rejected
/// anything resets it (the failed records go again after the initial backoff), and only an
/// attempt that moved nothing doubles it, up to the target's maximum; every wait has jitter.
/// Nothing but a record the service calls invalid ever gives up: the records wait, as the log
/// files do ([`judge`]).
/// `wait` sleeps the backoff: on the sink's runtime, which keeps serving its connections.
#[allow(clippy::too_many_arguments)]
pub fn send_until_accepted(
    target: &SinkTarget,
    flow_id: &str,
    call: &str,
    errors: &mut ErrorLog,
    metrics: &FlowMetrics,
    sizes: &[usize],
    mut pending: Vec<usize>,
    mut send: impl FnMut(&[usize]) -> Attempt,
    mut wait: impl FnMut(std::time::Duration),
) -> Vec<Rejected> {
    let mut rejected = Vec::new();
    let mut backoff = target.initial_backoff;
    while !pending.is_empty() {
        let answer = send(&pending);
        let judged = judge(answer, &pending, sizes, (target, flow_id, call), errors, metrics);
        rejected.extend(judged.rejected);
        pending = judged.again;
        if pending.is_empty() {
            break;
        }
        if judged.progress {
            backoff = target.initial_backoff;
            wait(jitter(backoff));
        } else {
            wait(jitter(backoff));
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
            let send = |pending: &[usize]| {
                let records = pending.iter().map(|&i| (units[i].data.as_ref(), units[i].key.as_deref()));
                api.put(rt, &target.stream, request_body(P::STREAM_MEMBER, &target.stream, records))
            };
            // the timer is made inside the runtime: `sleep` outside it has no reactor
            let wait = |backoff| rt.block_on(async { tokio::time::sleep(backoff).await });
            let failed = send_until_accepted(target, &metrics.id, P::CALL, errors, metrics, &sizes, request, send, wait);
            rejected.extend(rejected_members(failed, |u| units[u].members.clone()));
        }
        rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AwsSettings, AwsTarget, ConfigFormat};

    fn target() -> SinkTarget {
        SinkTarget::resolve(ConfigFormat::Native, &AwsSettings::default(), &AwsTarget::default(), None, None, None, "s", (1, 2))
    }

    fn metrics() -> crate::ops::metrics::Metrics {
        crate::ops::metrics::Metrics::new(&[("f".into(), "DeliveryStream:s".into())])
    }

    fn code(c: &str) -> Option<(String, String)> {
        Some((c.into(), "m".into()))
    }

    /// `send_until_accepted` for flow "f" over eight one-byte records.
    fn send_eight(pending: Vec<usize>, send: impl FnMut(&[usize]) -> Attempt, wait: impl FnMut(std::time::Duration)) -> Vec<Rejected> {
        send_until_accepted(&target(), "f", "Put", &mut ErrorLog::default(), &metrics().flows()[0], &[1; 8], pending, send, wait)
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
        let mut waits = 0;
        let send = |p: &[usize]| {
            sent.push(p.to_vec());
            answers.next().expect("no more attempts than answers")
        };
        let rejected = send_eight(vec![0, 1, 2, 3], send, |_| waits += 1);
        assert_eq!(sent, vec![vec![0, 1, 2, 3], vec![1, 3], vec![1, 3], vec![1, 3]]);
        assert_eq!(waits, 3, "a backoff after each attempt that left records, none after the last");
        assert!(rejected.is_empty());
    }

    #[test]
    fn the_backoff_grows_only_after_attempts_that_moved_nothing() {
        let target =
            SinkTarget::resolve(ConfigFormat::Native, &AwsSettings::default(), &AwsTarget::default(), None, None, None, "s", (100, 1000));
        let failed = || Attempt::Failed { code: "InternalFailure".into(), message: "x".into() };
        let mut answers = vec![
            failed(),
            failed(),
            failed(),
            // progress: half accepted
            Attempt::Answered(vec![None, code("ServiceUnavailableException"), None, code("ServiceUnavailableException")]),
            failed(),
            Attempt::Answered(vec![None, None]),
        ]
        .into_iter();
        let mut waits = Vec::new();
        let m = metrics();
        let rejected = send_until_accepted(
            &target,
            "f",
            "Put",
            &mut ErrorLog::default(),
            &m.flows()[0],
            &[1; 8],
            vec![0, 1, 2, 3],
            |_| answers.next().expect("no more attempts than answers"),
            |d| waits.push(d.as_millis() as u64),
        );
        assert!(rejected.is_empty());
        // doubling after each attempt that moved nothing, back to the start after progress
        let nominal = [100, 200, 400, 100, 100];
        assert_eq!(waits.len(), nominal.len(), "{waits:?}");
        for (w, n) in waits.iter().zip(nominal) {
            assert!(*w >= n * 7 / 10 && *w <= n * 13 / 10, "{waits:?} against {nominal:?}");
        }
        // jitter on every wait: five waits from the clock's nanoseconds are not all nominal
        assert!(waits.iter().zip(nominal).any(|(w, n)| *w != n), "{waits:?}");
    }

    #[test]
    fn invalid_records_are_rejected_and_an_invalid_request_waits_for_a_fix_without_rejecting_anything() {
        // the whole request refused as invalid three times (a misconfigured stream), then fixed
        let mut refusals = 3;
        let mut sent: Vec<Vec<usize>> = Vec::new();
        let m = metrics();
        let rejected = send_until_accepted(
            &target(),
            "f",
            "Put",
            &mut ErrorLog::default(),
            &m.flows()[0],
            &[1; 8],
            (0..8).collect(),
            |p| {
                sent.push(p.to_vec());
                if refusals > 0 {
                    refusals -= 1;
                    Attempt::Failed { code: "ValidationException".into(), message: "stream does not take direct PUT".into() }
                } else {
                    Attempt::Answered(vec![None; p.len()])
                }
            },
            |_| {},
        );
        assert!(rejected.is_empty(), "nothing dead-lettered for a refused request: {rejected:?}");
        assert_eq!(sent, vec![(0..8).collect::<Vec<_>>(); 4], "the whole request again, never halved");
        assert!(m.health_problems(60_000, u64::MAX).is_empty(), "healthy again once a call succeeded");
        // a per-record rejection is for good
        let rejected = send_eight(
            vec![0, 1],
            |p| Attempt::Answered(p.iter().map(|&i| if i == 1 { code("InvalidArgumentException") } else { None }).collect()),
            |_| {},
        );
        assert_eq!(rejected, vec![Rejected { record: 1, code: "InvalidArgumentException".into(), message: "m".into() }]);
    }

    #[test]
    fn a_refused_request_makes_the_flow_unhealthy_at_once() {
        let m = metrics();
        let judged = judge(
            Attempt::Failed { code: "InvalidArgumentException".into(), message: "no direct PUT".into() },
            &[0, 1],
            &[1, 1],
            (&target(), "f", "Put"),
            &mut ErrorLog::default(),
            &m.flows()[0],
        );
        assert_eq!((judged.again, judged.rejected.len(), judged.progress), (vec![0, 1], 0, false));
        let problems = m.health_problems(60_000, u64::MAX);
        assert!(problems.len() == 1 && problems[0].contains("InvalidArgumentException: no direct PUT"), "{problems:?}");
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
}
