//! The CloudWatch Logs sink: PutLogEvents through the official AWS SDK
//! (aws-sdk-cloudwatchlogs), on the record services' one sink ([`RecordSink`]): failed events go
//! again with the next request's new ones, the pace follows the answers, nothing the service
//! answered as accepted is sent again (a request whose answer is lost, a timeout, is sent again:
//! at least once).
//!
//! Guarantees:
//! - requests are legal by construction: one log stream each, at most 10,000 events and
//!   1,048,576 bytes counting 26 bytes per event, events in chronological order, spanning less
//!   than 24 hours; an event's message is the record without its line end, as UTF-8 (invalid
//!   bytes replaced), at most `max_event_bytes` (the flow cut longer records before, truncated
//!   or split as it says); no sequence tokens;
//! - group and stream names come from templates ([`settings::NameTemplate`]): `{flow}`,
//!   `{hostname}` and `{instance_id}` once per sink; `{file}`, `{namespace}`, `{pod}`,
//!   `{container}` and `{date}` per event; a value's characters a name may not hold become `_`,
//!   and names are cut at 512 characters;
//! - a missing group or stream is created when the flow says so (retention, KMS key and tags on
//!   a group it creates); otherwise the error names both and the permissions that would create
//!   them, and the events wait in the log files;
//! - an event's time is when its line was read, or a field of the converted record; a record
//!   whose field is missing or does not parse takes the time it was read, counted
//!   (`fields_unparsed`);
//! - events the service refuses as too old, too new or expired (`rejectedLogEventsInfo`) go to
//!   the flow's dead-letter file with their file and offset, then are acknowledged. The service
//!   calls the end of the too-old and expired ranges "exclusive" and names it as "the last" of
//!   them; the event at that index is taken as refused too (a copy in the dead-letter file rather
//!   than a loss);
//! - `ThrottlingException` and `ServiceUnavailableException` slow the sink down ([`Pace`]);
//!   `DataAlreadyAcceptedException` means the events are there;
//! - an empty line makes no event (the service takes none): it is counted as dropped.
//!
//! Not done here: the order of events of the same millisecond sent in two requests at once (the
//! default is one request in flight per flow, so events arrive as read).
//!
//! [`Pace`]: crate::sinks::pace::Pace

pub mod settings;

pub use settings::{CloudWatchLogsSettings, Creation, EventTime, NameKind, NameTemplate, Part, TimeFormat};

use crate::batch::Batch;
use crate::ops::metrics::FlowMetrics;
use crate::sinks::aws::settings::Compression;
use crate::sinks::aws::{describe_failure, SinkTarget};
use crate::sinks::record::{Put, PutApi, RecordSink, Unit};
use crate::sinks::wire::{json_str, with_body, Attempt};
use crate::sinks::Facts;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;

/// PutLogEvents' limit on one request, counting [`EVENT_OVERHEAD_BYTES`] per event.
pub const MAX_REQUEST_BYTES: usize = 1_048_576;
/// PutLogEvents' limit on the events of one request.
pub const MAX_REQUEST_EVENTS: usize = 10_000;
/// What the service counts for each event beside its message.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
/// A request's events span less than this (24 hours).
pub const MAX_SPAN_MS: i64 = 24 * 3_600_000;
/// The largest message by default: 256 KiB with the event's overhead, the limit the service
/// documented until it took events of up to 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = (256 << 10) - EVENT_OVERHEAD_BYTES;
/// The largest message `max_event_bytes` may ask for: 1 MiB with the event's overhead.
pub const RAISED_MAX_EVENT_BYTES: usize = MAX_REQUEST_BYTES - EVENT_OVERHEAD_BYTES;
/// Requests in flight by default: one, so that a stream's events arrive in the order read.
pub const DEFAULT_IN_FLIGHT_REQUESTS: usize = 1;

/// What a CloudWatch Logs destination implies for the rest of the agent.
pub fn facts(s: &CloudWatchLogsSettings) -> Facts {
    let mut notes = vec![format!("log group {:?}, log stream {:?}", s.group.text, s.stream.text)];
    notes.push(match &s.time {
        EventTime::ReadTime => "event time: when the line was read".to_string(),
        EventTime::Field { name, format } => format!("event time: field {name:?} ({format:?}), else when the line was read"),
    });
    notes.push(match &s.create {
        None => "a missing group or stream is not created".to_string(),
        Some(c) => format!(
            "a missing group or stream is created (retention: {}{}{})",
            c.retention_days.map_or("forever".into(), |d| format!("{d} days")),
            c.kms_key_id.as_ref().map(|k| format!(", KMS key {k}")).unwrap_or_default(),
            if c.tags.is_empty() { String::new() } else { format!(", {} tags", c.tags.len()) }
        ),
    });
    Facts {
        name: format!("LogGroup:{}", s.group.text),
        max_record_bytes: s.max_event_bytes,
        max_request_records: MAX_REQUEST_EVENTS as u64,
        packs_records: false,
        notes,
        output: None,
    }
}

/// What a name's placeholders resolve to once per sink.
#[derive(Debug, Clone, Default)]
pub struct Fixed {
    pub flow: String,
    pub hostname: String,
    pub instance_id: String,
}

/// What a name's placeholders resolve to per event.
#[derive(Debug, Default)]
pub struct PerEvent<'a> {
    pub file: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub container: Option<&'a str>,
    pub time_ms: i64,
}

/// The name `template` makes for an event: a value's characters a `kind` name may not hold
/// become `_`, a missing value is `unknown`, and the name is cut at 512 characters.
pub fn render(template: &NameTemplate, kind: NameKind, fixed: &Fixed, event: &PerEvent) -> String {
    let mut out = String::new();
    for part in &template.parts {
        let value: std::borrow::Cow<'_, str> = match part {
            Part::Literal(s) => {
                out.push_str(s);
                continue;
            }
            Part::Flow => fixed.flow.as_str().into(),
            Part::Hostname => fixed.hostname.as_str().into(),
            Part::InstanceId => fixed.instance_id.as_str().into(),
            Part::File => event.file.unwrap_or_default().into(),
            Part::Namespace => event.namespace.unwrap_or_default().into(),
            Part::Pod => event.pod.unwrap_or_default().into(),
            Part::Container => event.container.unwrap_or_default().into(),
            Part::Date => date(event.time_ms).into(),
        };
        if value.is_empty() {
            out.push_str("unknown");
        }
        out.extend(value.chars().map(|c| if kind.allows(c) { c } else { '_' }));
    }
    match out.char_indices().nth(settings::MAX_NAME_CHARS) {
        Some((cut, _)) => out[..cut].to_string(),
        None => out,
    }
}

/// `YYYY-MM-DD` of an instant (UTC).
fn date(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", at.year(), u8::from(at.month()), at.day())
}

/// A time field's format, ready to parse with.
pub enum Parser {
    EpochSeconds,
    EpochMillis,
    Rfc3339,
    Strftime(time::format_description::OwnedFormatItem),
}

impl Parser {
    /// The parser of `format`; an error when a strftime pattern does not compile.
    pub fn new(format: &TimeFormat) -> Result<Parser, String> {
        Ok(match format {
            TimeFormat::EpochSeconds => Parser::EpochSeconds,
            TimeFormat::EpochMillis => Parser::EpochMillis,
            TimeFormat::Rfc3339 => Parser::Rfc3339,
            TimeFormat::Strftime(p) => {
                Parser::Strftime(time::format_description::parse_strftime_owned(p).map_err(|e| format!("{p:?}: {e}"))?)
            }
        })
    }

    /// The instant (ms since the epoch) a field's value says; `None` before the epoch, which the
    /// service refuses in a whole request (its events' times are at least 0).
    pub fn parse(&self, value: &serde_json::Value) -> Option<i64> {
        let text = match value {
            serde_json::Value::String(s) => s.trim().to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let ms = match self {
            Parser::EpochSeconds => (text.parse::<f64>().ok()? * 1000.0).round(),
            Parser::EpochMillis => text.parse::<f64>().ok()?.round(),
            Parser::Rfc3339 => {
                let at = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).ok()?;
                (at.unix_timestamp_nanos() / 1_000_000) as f64
            }
            Parser::Strftime(f) => {
                let at = time::OffsetDateTime::parse(&text, f)
                    .or_else(|_| time::PrimitiveDateTime::parse(&text, f).map(time::PrimitiveDateTime::assume_utc))
                    .ok()?;
                (at.unix_timestamp_nanos() / 1_000_000) as f64
            }
        };
        (ms.is_finite() && (0.0..1e15).contains(&ms)).then_some(ms as i64)
    }
}

/// An event's message: the record without its line end, as UTF-8 (invalid bytes replaced), cut
/// at a character boundary within `max` bytes; whether it was cut.
pub fn message(record: &[u8], max: usize) -> (std::borrow::Cow<'_, str>, bool) {
    let record = record.strip_suffix(b"\n").map_or(record, |r| r.strip_suffix(b"\r").unwrap_or(r));
    let text = String::from_utf8_lossy(record);
    if text.len() <= max {
        return (text, false);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (text[..cut].to_string().into(), true)
}

/// PutLogEvents, each request to one log stream.
pub struct CloudWatchLogs {
    client: aws_sdk_cloudwatchlogs::Client,
    settings: CloudWatchLogsSettings,
    fixed: Fixed,
    parser: Option<Parser>,
    /// Each (group, stream) a unit may go to, by its lane number.
    /// Each place a unit may go to, by its lane number: the group's name, a line end (no name
    /// holds one) and the stream's.
    lanes: Vec<Arc<str>>,
    lane_of: HashMap<Arc<str>, u32>,
    metrics: Arc<FlowMetrics>,
}

/// How many lanes are kept at most while the sink is idle; past it they are forgotten (a
/// template with `{file}` or `{date}` keeps making new ones).
const LANES_KEPT: usize = 4096;

/// The CloudWatch Logs sink of a flow; `None` (logged) when its runtime cannot start.
pub fn sink(target: SinkTarget, settings: CloudWatchLogsSettings, metrics: Arc<FlowMetrics>) -> Option<RecordSink<CloudWatchLogs>> {
    let what = format!("the CloudWatch Logs sink of flow {}", metrics.id);
    let parser = match &settings.time {
        EventTime::ReadTime => None,
        EventTime::Field { format, .. } => match Parser::new(format) {
            Ok(p) => Some(p),
            Err(e) => {
                // checked at load: only a configuration made in code gets here
                tracing::error!(flow = %metrics.id, "the event time format {e}: events take the time they were read");
                None
            }
        },
    };
    let needs_instance = settings.group.uses(&Part::InstanceId) || settings.stream.uses(&Part::InstanceId);
    let mut fixed =
        Fixed { flow: metrics.id.clone(), hostname: crate::batch::pipeline::host_name().to_string(), instance_id: String::new() };
    let m = metrics.clone();
    RecordSink::start(target, metrics, &what, |shared, endpoint| {
        if needs_instance {
            fixed.instance_id = instance_id(&m.id, &fixed.hostname);
        }
        let mut b = aws_sdk_cloudwatchlogs::config::Builder::from(shared);
        b.set_endpoint_url(endpoint.map(str::to_string));
        CloudWatchLogs {
            client: aws_sdk_cloudwatchlogs::Client::from_conf(b.build()),
            settings,
            fixed,
            parser,
            lanes: Vec::new(),
            lane_of: HashMap::new(),
            metrics: m,
        }
    })
}

/// The instance's id from instance metadata; the host's name, said once, when there is none
/// (not on EC2, or metadata turned off).
fn instance_id(flow: &str, hostname: &str) -> String {
    // on a thread of its own: the sink is being built inside its runtime, which cannot block
    let found = std::thread::scope(|s| {
        s.spawn(|| {
            let client = crate::convert::ec2::imds_client().ok()?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async { client.get("/latest/meta-data/instance-id").await.ok().map(|v| v.as_ref().trim().to_string()) })
        })
        .join()
        .ok()
        .flatten()
    });
    match found.filter(|id| !id.is_empty()) {
        Some(id) => id,
        None => {
            tracing::warn!(flow = %flow, "{{instance_id}} in a log group or stream name: instance metadata has no instance id here (not on EC2, or AWS_EC2_METADATA_DISABLED); the host's name {hostname:?} stands for it");
            hostname.to_string()
        }
    }
}

impl CloudWatchLogs {
    /// The lane of (group, stream), numbered on first sight.
    fn lane(&mut self, mut group: String, stream: &str) -> u32 {
        group.push('\n');
        group.push_str(stream);
        if let Some(&l) = self.lane_of.get(group.as_str()) {
            return l;
        }
        let key: Arc<str> = group.into();
        let l = self.lanes.len() as u32;
        self.lanes.push(key.clone());
        self.lane_of.insert(key, l);
        l
    }

    /// The group and stream of `lane`.
    fn names(&self, lane: u32) -> (String, String) {
        let key = self.lanes.get(lane as usize).map_or("", |k| k);
        let (group, stream) = key.split_once('\n').unwrap_or((key, ""));
        (group.to_string(), stream.to_string())
    }
}

impl PutApi for CloudWatchLogs {
    const CALL: &'static str = "PutLogEvents";
    const STREAM_MEMBER: &'static str = "logStreamName";
    const UNIT_OVERHEAD: usize = EVENT_OVERHEAD_BYTES;

    fn request_limits(&self) -> (usize, usize) {
        (MAX_REQUEST_BYTES, MAX_REQUEST_EVENTS)
    }

    fn units(&mut self, batch: &Batch, _compression: Compression) -> Vec<Unit> {
        let s = &self.settings;
        let per_record_fields = matches!(s.time, EventTime::Field { .. })
            || [Part::Namespace, Part::Pod, Part::Container].iter().any(|p| s.group.uses(p) || s.stream.uses(p));
        let needs_file = s.group.uses(&Part::File) || s.stream.uses(&Part::File);
        let per_event = [Part::File, Part::Namespace, Part::Pod, Part::Container, Part::Date];
        // names without a per-event placeholder are the same for every event: made once
        let mut same_lane = None;
        if !per_event.iter().any(|p| s.group.uses(p) || s.stream.uses(p)) {
            let event = PerEvent::default();
            let (group, stream) =
                (render(&s.group, NameKind::Group, &self.fixed, &event), render(&s.stream, NameKind::Stream, &self.fixed, &event));
            same_lane = Some(self.lane(group, &stream));
        }
        let taken_ms = crate::ops::metrics::now_ms() as i64;
        let mut units = Vec::with_capacity(batch.len());
        for (i, record) in batch.records().enumerate() {
            let (text, cut) = message(record, self.settings.max_event_bytes);
            if cut {
                self.metrics.records_truncated.inc();
            }
            if text.is_empty() {
                self.metrics.records_dropped.inc();
                continue;
            }
            let read_ms = batch.read_ms(i).unwrap_or(taken_ms);
            let json = if per_record_fields { serde_json::from_slice::<serde_json::Value>(record).ok() } else { None };
            let time_ms = match (&self.settings.time, &self.parser) {
                (EventTime::Field { name, .. }, Some(p)) => match json.as_ref().and_then(|j| j.get(name)).and_then(|v| p.parse(v)) {
                    Some(t) => t,
                    None => {
                        self.metrics.fields_unparsed.inc();
                        read_ms
                    }
                },
                _ => read_ms,
            };
            let lane = match same_lane {
                Some(l) => l,
                None => {
                    let k8s = |key: &str| json.as_ref().and_then(|j| j.get("kubernetes")?.get(key)?.as_str());
                    let file = needs_file.then(|| batch.origin(i).0.and_then(|p| p.file_name()).and_then(|n| n.to_str())).flatten();
                    let event = PerEvent { file, namespace: k8s("namespace"), pod: k8s("pod"), container: k8s("container"), time_ms };
                    let group = render(&self.settings.group, NameKind::Group, &self.fixed, &event);
                    let stream = render(&self.settings.stream, NameKind::Stream, &self.fixed, &event);
                    self.lane(group, &stream)
                }
            };
            // the record as it lies in the batch when it is the message with its line end (the
            // body takes the line end off); otherwise the message made, with a line end
            let data = match text {
                std::borrow::Cow::Borrowed(_) => None,
                std::borrow::Cow::Owned(t) => {
                    let mut bytes = t.into_bytes();
                    bytes.push(b'\n');
                    Some(bytes)
                }
            };
            units.push(Unit { data, key: None, members: i..i + 1, lane, time_ms });
        }
        // each request is one stream's events in time order: sorted so within the batch
        units.sort_by_key(|u| (u.lane, u.time_ms));
        units
    }

    fn forget(&mut self) {
        // no unit refers to a lane now: past the cap they are numbered anew
        if self.lanes.len() > LANES_KEPT {
            self.lanes = Vec::new();
            self.lane_of = HashMap::new();
        }
    }

    fn request_len<'u>(&self, front: impl Iterator<Item = (&'u Unit, usize)>, max_bytes: usize, max_records: usize) -> usize {
        let (mut n, mut bytes, mut first, mut last) = (0, 0, None::<&Unit>, 0);
        for (u, size) in front {
            if let Some(f) = first {
                let over = n >= max_records || bytes + size > max_bytes;
                if over || u.lane != f.lane || u.time_ms < last || u.time_ms - f.time_ms >= MAX_SPAN_MS {
                    break;
                }
            } else {
                first = Some(u);
            }
            n += 1;
            bytes += size;
            last = u.time_ms;
        }
        n
    }

    fn body<'u>(&self, _stream: &str, units: impl Iterator<Item = (&'u [u8], &'u Unit)> + Clone) -> Vec<u8> {
        let lane = units.clone().next().map(|(_, u)| u.lane);
        let (group, stream) = self.names(lane.unwrap_or(u32::MAX));
        events_body(&group, &stream, units.map(|(bytes, u)| (u.time_ms, bytes)))
    }

    fn put(&self, _stream: &str, lane: u32, count: usize, body: Vec<u8>) -> Put {
        let (group, stream) = self.names(lane);
        let (client, create) = (self.client.clone(), self.settings.create.clone());
        Box::pin(async move {
            let (group, stream) = (&group, &stream);
            match send(&client, group, stream, &body).await {
                Err((code, _)) if code == "ResourceNotFoundException" => match create {
                    None => Attempt::Failed {
                        code,
                        message: format!("log group {group:?} or its log stream {stream:?} does not exist: create them, or set the sink's `create_missing: true` (it needs logs:CreateLogGroup and logs:CreateLogStream)"),
                    },
                    Some(c) => match make(&client, group, stream, &c).await {
                        Ok(()) => answer(send(&client, group, stream, &body).await, count),
                        Err(failed) => failed,
                    },
                },
                sent => answer(sent, count),
            }
        })
    }
}

/// One PutLogEvents with `body`: the rejected-events answer, or the error's code and message.
async fn send(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    body: &[u8],
) -> Result<Option<aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo>, (String, String)> {
    let call = client.put_log_events().log_group_name(group).log_stream_name(stream).set_log_events(Some(Vec::new()));
    match call.customize().mutate_request(with_body(body.to_vec())).send().await {
        Ok(out) => Ok(out.rejected_log_events_info().cloned()),
        Err(e) => Err(describe_failure(&e)),
    }
}

/// What a PutLogEvents answer means for each of the `count` events of its request.
fn answer(sent: Result<Option<aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo>, (String, String)>, count: usize) -> Attempt {
    match sent {
        Ok(rejected) => Attempt::Answered(rejected_events(rejected.as_ref(), count)),
        // sequence tokens are gone: this says the events are there
        Err((code, _)) if code == "DataAlreadyAcceptedException" => Attempt::Answered(vec![None; count]),
        Err((code, message)) => Attempt::Failed { code, message },
    }
}

/// Each event's outcome from `rejectedLogEventsInfo`: the too-old and expired ones up to and
/// including their end index (see the module's comment), the too-new ones from theirs.
pub fn rejected_events(info: Option<&aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo>, count: usize) -> Vec<Option<(String, String)>> {
    let mut out = vec![None; count];
    let Some(info) = info else { return out };
    let index = |i: Option<i32>| i.and_then(|i| usize::try_from(i).ok());
    let mut mark = |range: std::ops::Range<usize>, code: &str, message: &str| {
        for o in &mut out[range.start.min(count)..range.end.min(count)] {
            if o.is_none() {
                *o = Some((code.to_string(), message.to_string()));
            }
        }
    };
    if let Some(end) = index(info.expired_log_event_end_index()) {
        mark(0..end + 1, "ExpiredLogEvent", "older than the log group's retention");
    }
    if let Some(end) = index(info.too_old_log_event_end_index()) {
        mark(0..end + 1, "TooOldLogEvent", "older than 14 days or the log group's retention");
    }
    if let Some(start) = index(info.too_new_log_event_start_index()) {
        mark(start..count, "TooNewLogEvent", "more than 2 hours in the future");
    }
    out
}

/// Creates the group (with its retention, KMS key and tags) and the stream, each unless it
/// exists; the failure as the request's when one cannot be made.
async fn make(client: &aws_sdk_cloudwatchlogs::Client, group: &str, stream: &str, c: &Creation) -> Result<(), Attempt> {
    let exists = |e: &(String, String)| e.0 == "ResourceAlreadyExistsException";
    let failed = |what: &str, permission: &str, (code, message): (String, String)| Attempt::Failed {
        message: format!("creating {what}: {message} (it needs {permission})"),
        code,
    };
    let mut call = client.create_log_group().log_group_name(group).set_kms_key_id(c.kms_key_id.clone());
    for (k, v) in &c.tags {
        call = call.tags(k, v);
    }
    match call.send().await.map_err(|e| describe_failure(&e)) {
        Ok(_) => {
            tracing::info!("created log group {group:?}");
            if let Some(days) = c.retention_days {
                let put = client.put_retention_policy().log_group_name(group).retention_in_days(days as i32).send().await;
                put.map_err(|e| failed(&format!("the retention of log group {group:?}"), "logs:PutRetentionPolicy", describe_failure(&e)))?;
            }
        }
        Err(e) if exists(&e) => {}
        Err(e) => return Err(failed(&format!("log group {group:?}"), "logs:CreateLogGroup", e)),
    }
    match client.create_log_stream().log_group_name(group).log_stream_name(stream).send().await.map_err(|e| describe_failure(&e)) {
        Ok(_) => Ok(()),
        Err(e) if exists(&e) => Ok(()),
        Err(e) => Err(failed(&format!("log stream {stream:?} of {group:?}"), "logs:CreateLogStream", e)),
    }
}

/// The JSON body of a PutLogEvents request: the group, the stream and each event's time and
/// message (the bytes without their line end, as [`message`] makes it), written in one pass.
pub fn events_body<'a>(group: &str, stream: &str, events: impl Iterator<Item = (i64, &'a [u8])> + Clone) -> Vec<u8> {
    // the size but for escapes: `{"timestamp":N,"message":""}` and a comma, 50 bytes at most
    let size: usize = events.clone().map(|(_, m)| m.len() + 50).sum();
    let mut out = Vec::with_capacity(64 + group.len() + stream.len() + size);
    out.extend_from_slice(b"{\"logGroupName\":");
    json_str(&mut out, group);
    out.extend_from_slice(b",\"logStreamName\":");
    json_str(&mut out, stream);
    out.extend_from_slice(b",\"logEvents\":[");
    for (i, (time_ms, bytes)) in events.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"timestamp\":");
        let _ = write!(out, "{time_ms}");
        out.extend_from_slice(b",\"message\":");
        json_str(&mut out, &message(bytes, usize::MAX).0);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(lane: u32, time_ms: i64) -> Unit {
        Unit { data: None, key: None, members: 0..1, lane, time_ms }
    }

    fn api() -> CloudWatchLogs {
        let conf =
            aws_sdk_cloudwatchlogs::Config::builder().behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest()).build();
        let settings = CloudWatchLogsSettings {
            aws: Default::default(),
            group: NameTemplate::parse("/app/{flow}", NameKind::Group).unwrap(),
            stream: NameTemplate::parse("{file}", NameKind::Stream).unwrap(),
            create: None,
            time: EventTime::ReadTime,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        };
        CloudWatchLogs {
            client: aws_sdk_cloudwatchlogs::Client::from_conf(conf),
            settings,
            fixed: Fixed { flow: "f".into(), hostname: "h".into(), instance_id: "i-1".into() },
            parser: None,
            lanes: Vec::new(),
            lane_of: HashMap::new(),
            metrics: crate::ops::metrics::Metrics::new(&[("f".into(), "LogGroup:x".into())]).flows().remove(0),
        }
    }

    #[test]
    fn a_request_is_one_streams_events_in_time_order_within_a_day_and_the_limits() {
        let a = api();
        let len = |units: &[Unit], sizes: &[usize], max_bytes, max_records| {
            a.request_len(units.iter().zip(sizes.iter().copied()), max_bytes, max_records)
        };
        let day = MAX_SPAN_MS;
        let units = [unit(0, 10), unit(0, 10), unit(0, 11), unit(1, 12), unit(0, 13)];
        assert_eq!(len(&units, &[30; 5], 1 << 20, 10_000), 3, "cut where the stream changes");
        let back = [unit(0, 10), unit(0, 9)];
        assert_eq!(len(&back, &[30; 2], 1 << 20, 10_000), 1, "cut where time goes back");
        let span = [unit(0, 0), unit(0, day - 1), unit(0, day)];
        assert_eq!(len(&span, &[30; 3], 1 << 20, 10_000), 2, "less than 24 hours");
        assert_eq!(len(&units[..3], &[30; 3], 60, 10_000), 2, "bytes");
        assert_eq!(len(&units[..3], &[30; 3], 1 << 20, 2), 2, "events");
        assert_eq!(len(&units[..1], &[2 << 20], 1 << 20, 2), 1, "one at least");
    }

    #[test]
    fn events_take_their_names_from_their_file_and_pod_and_their_time_from_a_field_sorted_by_stream_and_time() {
        use crate::batch::AckRef;
        let mut a = api();
        a.settings.group = NameTemplate::parse("/k8s/{namespace}", NameKind::Group).unwrap();
        a.settings.stream = NameTemplate::parse("{pod}.{container}.{file}", NameKind::Stream).unwrap();
        a.settings.time = EventTime::Field { name: "t".into(), format: TimeFormat::EpochMillis };
        a.parser = Parser::new(&TimeFormat::EpochMillis).ok();
        let mut b = Batch::default();
        let pod =
            |p: &str, t: &str| format!("{{\"t\":{t},\"kubernetes\":{{\"namespace\":\"shop\",\"pod\":\"{p}\",\"container\":\"app\"}}}}\n");
        let records =
            [(1, pod("web", "30")), (2, pod("api", "20")), (1, pod("web", "10")), (1, "\n".to_string()), (1, pod("web", "\"x\""))];
        b.mark_read_at(5);
        for (i, (tail, r)) in records.iter().enumerate() {
            b.data.extend_from_slice(r.as_bytes());
            let path = if *tail == 1 { "/var/log/pods/a.log" } else { "/var/log/pods/b.log" };
            b.commit_record(AckRef { tail: *tail, seq: i as u64 }, 1, std::path::Path::new(path), 0);
        }
        let units = a.units(&b, Compression::None);
        let got: Vec<((String, String), i64, usize)> = units.iter().map(|u| (a.names(u.lane), u.time_ms, u.members.start)).collect();
        let web = ("/k8s/shop".to_string(), "web.app.a.log".to_string());
        let api = ("/k8s/shop".to_string(), "api.app.b.log".to_string());
        // the empty line makes no event; a time that does not parse is the read time
        assert_eq!(got, vec![(web.clone(), 5, 4), (web.clone(), 10, 2), (web, 30, 0), (api, 20, 1)]);
        assert_eq!(a.metrics.records_dropped.get(), 1);
        assert_eq!(a.metrics.fields_unparsed.get(), 1);
    }

    #[test]
    fn each_group_and_stream_is_one_lane_and_names_come_back_from_it() {
        let mut a = api();
        let x = a.lane("/g".into(), "s 1");
        assert_eq!(a.lane("/g".into(), "s 2"), x + 1);
        assert_eq!(a.lane("/g".into(), "s 1"), x, "the same place, the same lane");
        assert_eq!(a.lane("/g/s".into(), ""), x + 2, "names are not run together");
        assert_eq!(a.names(x + 1), ("/g".to_string(), "s 2".to_string()));
        assert_eq!(a.names(99), (String::new(), String::new()));
    }

    #[test]
    fn rejected_events_are_the_too_old_and_expired_through_their_end_and_the_too_new_from_their_start() {
        use aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo;
        let codes =
            |info: RejectedLogEventsInfo, n| rejected_events(Some(&info), n).into_iter().map(|o| o.map(|(c, _)| c)).collect::<Vec<_>>();
        let none = rejected_events(None, 3);
        assert!(none.iter().all(Option::is_none));
        let old = RejectedLogEventsInfo::builder().too_old_log_event_end_index(1).too_new_log_event_start_index(3).build();
        let got = codes(old, 4);
        assert_eq!(got, vec![Some("TooOldLogEvent".into()), Some("TooOldLogEvent".into()), None, Some("TooNewLogEvent".into())]);
        let expired = RejectedLogEventsInfo::builder().expired_log_event_end_index(0).too_old_log_event_end_index(9).build();
        let got = codes(expired, 2);
        assert_eq!(got, vec![Some("ExpiredLogEvent".into()), Some("TooOldLogEvent".into())], "indices past the request are bounded");
    }

    #[test]
    fn names_take_each_placeholders_value_with_characters_a_name_may_not_hold_replaced() {
        let fixed = Fixed { flow: "web".into(), hostname: "ip-10-0-0-1".into(), instance_id: "i-0abc".into() };
        let group = NameTemplate::parse("/aws/rds/{hostname}/{file}", NameKind::Group).unwrap();
        let event = PerEvent { file: Some("audit log:1"), time_ms: 1_714_557_600_000, ..PerEvent::default() };
        assert_eq!(render(&group, NameKind::Group, &fixed, &event), "/aws/rds/ip-10-0-0-1/audit_log_1");
        let stream = NameTemplate::parse("{instance_id}/{pod}:{date}".replace(':', "_").as_str(), NameKind::Stream).unwrap();
        assert_eq!(render(&stream, NameKind::Stream, &fixed, &event), "i-0abc/unknown_2024-05-01");
        let long = NameTemplate::parse("{file}", NameKind::Stream).unwrap();
        let file = "x".repeat(600);
        assert_eq!(render(&long, NameKind::Stream, &fixed, &PerEvent { file: Some(&file), ..PerEvent::default() }).len(), 512);
    }

    #[test]
    fn a_message_is_the_record_without_its_line_end_as_utf8_within_the_most_bytes() {
        assert_eq!(message(b"a line\n", 100), ("a line".into(), false));
        assert_eq!(message(b"crlf\r\n", 100), ("crlf".into(), false));
        assert_eq!(message(b"no end", 100), ("no end".into(), false));
        assert_eq!(message(b"\xff\n", 100), ("\u{fffd}".into(), false));
        assert_eq!(message("é".repeat(3).as_bytes(), 5), ("éé".into(), true), "cut at a character boundary");
    }

    #[test]
    fn event_times_parse_in_each_format() {
        let v = |s: &str| serde_json::Value::String(s.into());
        let p = |f: TimeFormat| Parser::new(&f).unwrap();
        assert_eq!(p(TimeFormat::EpochSeconds).parse(&serde_json::json!(1714557600.5)), Some(1_714_557_600_500));
        assert_eq!(p(TimeFormat::EpochMillis).parse(&v("1714557600123")), Some(1_714_557_600_123));
        assert_eq!(p(TimeFormat::Rfc3339).parse(&v("2024-05-01T10:00:00.250+02:00")), Some(1_714_550_400_250));
        let s = p(TimeFormat::Strftime("%Y-%m-%d %H:%M:%S".into()));
        assert_eq!(s.parse(&v("2024-05-01 10:00:00")), Some(1_714_557_600_000), "UTC without %z");
        assert_eq!(s.parse(&v("yesterday")), None);
        // before the epoch: not an event time (the service refuses the whole request)
        assert_eq!(p(TimeFormat::EpochMillis).parse(&serde_json::json!(-1)), None);
        assert_eq!(p(TimeFormat::Rfc3339).parse(&v("0001-01-01T00:00:00Z")), None);
        assert!(Parser::new(&TimeFormat::Strftime("%Q%".into())).is_err());
    }

    #[test]
    fn the_body_is_the_json_put_log_events_reads() {
        let body = events_body("/g", "s\"1", [(5, &b"a \"quoted\" line"[..]), (6, &b"\xe2\x9c\x93"[..])].into_iter());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"logGroupName": "/g", "logStreamName": "s\"1", "logEvents": [
            {"timestamp": 5, "message": "a \"quoted\" line"}, {"timestamp": 6, "message": "\u{2713}"}]})
        );
    }
}
