//! The AWS record services' one sink: [`RecordSink`] turns each batch it takes into the
//! service's records ([`PutApi::units`]) and queues them; it keeps up to the flow's
//! `max_in_flight_requests` requests in flight, as many as its [`Pace`] allows, each filled from
//! the front of the queue ([`request_len`], [`super::wire::request_body`]). Records that failed go back to the
//! front and travel with the next request's new records, so every request is as full as the
//! queue allows and a record that keeps failing never holds the others back. A batch is
//! delivered once each of its records was accepted or rejected for good.
//!
//! Guarantees: requests are legal by construction; a record the service accepted is never sent
//! again; the backoff grows only after answers that moved nothing, throttling narrows the window
//! of requests in flight and progress widens it ([`Pace`]); every wait has jitter and is slept on
//! the sink's runtime, which serves the other requests meanwhile; a record the service calls
//! invalid is rejected; a whole request called invalid is a configuration error (the records
//! wait, the flow is unhealthy); nothing else ever gives up. Order: with more than one request in
//! flight, or after a partial failure, records reach the stream in another order than they were
//! read (Firehose keeps no order; a Kinesis shard keeps the order it received them in); the
//! checkpoint still advances in file order, over acknowledged records only. Not done here: what
//! a rejected record becomes (the worker dead-letters it).

use super::aws::{error_kind, is_invalid_record, is_throttling, jitter, ErrorLog, Rejected, SinkTarget};
use super::pace::{Answer, Pace};
use super::wire::{request_body, Attempt};
use crate::batch::Batch;
use crate::ops::metrics::{Call, ErrorKind, FlowMetrics};
use crate::sinks::aws::settings::Compression;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// What one answer did to the records of its request, by their position in it.
#[derive(Debug, Default, PartialEq)]
pub struct Judged {
    /// Positions to send again (neither accepted nor rejected for good), in request order.
    pub again: Vec<usize>,
    /// Positions rejected for good (each record the service called invalid).
    pub rejected: Vec<Rejected>,
    /// Whether the answer moved anything: a record accepted or rejected for good.
    pub progress: bool,
    /// The share of the request's records the service throttled (1 for a whole call throttled).
    pub throttled_share: f64,
}

/// Judges the answer to a request whose records had `sizes` (in request order): records every
/// figure in `metrics` and logs errors through `errors`. A record the service calls invalid is
/// rejected for good; a whole request called invalid is a refusal of the configuration (the
/// stream takes no such request), not of its records: they are sent again, and the flow is
/// unhealthy until a call succeeds.
pub fn judge(
    answer: Attempt,
    sizes: &[usize],
    (target, call): (&SinkTarget, &str),
    errors: &mut ErrorLog,
    metrics: &FlowMetrics,
) -> Judged {
    let mut judged = Judged::default();
    let n = sizes.len();
    match answer {
        Attempt::Answered(results) => {
            let mut codes: BTreeMap<String, (usize, String)> = BTreeMap::new();
            let mut results = results.into_iter();
            let mut outcome = Call { attempted: n as u64, ..Call::default() };
            for (i, size) in sizes.iter().enumerate() {
                match results.next() {
                    Some(None) => {
                        outcome.sent += 1;
                        outcome.bytes_sent += *size as u64;
                    }
                    Some(Some((code, message))) if is_invalid_record(&code) => {
                        errors.error(&metrics.id, &target.stream, call, &code, &message);
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
            for (code, (count, message)) in &codes {
                metrics.record_error(code, message, *count as u64, error_kind(code));
            }
            judged.progress = judged.again.len() < n;
            judged.throttled_share = if n == 0 { 0.0 } else { outcome.throttled as f64 / n as f64 };
            if !judged.again.is_empty() {
                tracing::debug!(flow = %metrics.id, stream = %target.stream, "{} records not accepted ({codes:?}); they go again with the next request", judged.again.len());
            }
        }
        Attempt::Failed { code, message } => {
            let throttled = is_throttling(&code);
            metrics.record_call(Call {
                attempted: n as u64,
                failed: n as u64,
                throttled: if throttled { n as u64 } else { 0 },
                service_error: true,
                ..Call::default()
            });
            if is_invalid_record(&code) {
                metrics.record_error(&code, &message, 1, ErrorKind::Refused);
                errors.refused(&metrics.id, &target.stream, call, &code, &message);
            } else {
                metrics.record_error(&code, &message, 1, error_kind(&code));
                errors.error(&metrics.id, &target.stream, call, &code, &message);
            }
            judged.again = (0..n).collect();
            judged.throttled_share = if throttled { 1.0 } else { 0.0 };
        }
    }
    judged
}

/// How many records from the front of a queue (their `sizes`, in queue order) one request
/// takes: at most `max_records` and `max_bytes`, and at least one (a record as large as a
/// request goes alone).
pub fn request_len(sizes: impl Iterator<Item = usize>, max_bytes: usize, max_records: usize) -> usize {
    let (mut n, mut bytes) = (0, 0);
    for size in sizes {
        if n > 0 && (n >= max_records || bytes + size > max_bytes) {
            break;
        }
        n += 1;
        bytes += size;
    }
    n
}

/// One request on its way: the service's answer when it comes.
pub type Put = Pin<Box<dyn Future<Output = Attempt> + Send + 'static>>;

/// What sets one AWS record service apart: how a batch becomes the service's records, which of
/// them one request takes, and how one request is sent. [`RecordSink`] does the rest (the queue,
/// the requests in flight, the pace, metrics, messages).
pub trait PutApi {
    /// The API call, as messages and metrics name it ("PutRecordBatch").
    const CALL: &'static str;
    /// The request member that names the stream ("DeliveryStreamName").
    const STREAM_MEMBER: &'static str;
    /// What the service counts for each record beyond its bytes and key (CloudWatch Logs: 26).
    const UNIT_OVERHEAD: usize = 0;
    /// The most bytes and records one request takes.
    fn request_limits(&self) -> (usize, usize);
    /// The batch as the service's records (compressed with `compression`).
    fn units(&mut self, batch: &Batch, compression: Compression) -> Vec<Unit>;
    /// How many units from the front of the queue (each with its size as the service counts
    /// it) one request takes: at least one, within `max_bytes` and `max_records`.
    fn request_len<'u>(&self, front: impl Iterator<Item = (&'u Unit, usize)>, max_bytes: usize, max_records: usize) -> usize {
        request_len(front.map(|(_, size)| size), max_bytes, max_records)
    }
    /// The body of one request carrying `units` (each with its bytes), in order.
    fn body<'u>(&self, stream: &str, units: impl Iterator<Item = (&'u [u8], &'u Unit)> + Clone) -> Vec<u8> {
        request_body(Self::STREAM_MEMBER, stream, units.map(|(bytes, u)| (bytes, u.key.as_deref())))
    }
    /// Called when the sink holds no batch: what was kept for the units in flight may go.
    fn forget(&mut self) {}
    /// One request with `body`, carrying `count` units of lane `lane` (see [`Unit::lane`]), sent
    /// when the future is polled on the sink's runtime.
    fn put(&self, stream: &str, lane: u32, count: usize, body: Vec<u8>) -> Put;
}

/// One record as the service sees it: its bytes, its partition key (Kinesis), and the batch
/// records it carries (one, or several packed or aggregated).
pub struct Unit {
    /// Its bytes when they are not the members' bytes as they lie in the batch (compressed,
    /// aggregated); `None` when they are.
    pub data: Option<Vec<u8>>,
    pub key: Option<String>,
    pub members: std::ops::Range<usize>,
    /// Where within the destination it goes, for a service whose requests each go to one place
    /// (a CloudWatch Logs stream, by the sink's own numbering); 0 otherwise.
    pub lane: u32,
    /// Its time (ms since the epoch) for a service that orders by it (CloudWatch Logs); 0
    /// otherwise.
    pub time_ms: i64,
}

impl Unit {
    /// A unit of the members `members` of `batch`, `encoded` from their bytes.
    pub fn of(encoded: Cow<'_, [u8]>, key: Option<String>, members: std::ops::Range<usize>) -> Unit {
        Unit { data: if let Cow::Owned(d) = encoded { Some(d) } else { None }, key, members, lane: 0, time_ms: 0 }
    }

    /// Its bytes, in `batch`.
    pub fn bytes<'a>(&'a self, batch: &'a Batch) -> &'a [u8] {
        self.data.as_deref().unwrap_or_else(|| batch.span(self.members.clone()))
    }
}

/// How often a sink with room for another request and nothing queued lets its worker look for a
/// new batch while requests are in flight.
const TAKE_MORE_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// A batch the sink holds until each of its records was accepted or rejected for good.
struct Held {
    batch: Batch,
    units: Vec<Unit>,
    /// Each unit's size as the service counts it (data and key).
    sizes: Vec<usize>,
    /// Units neither accepted nor rejected yet.
    left: usize,
    rejected: Vec<Rejected>,
}

/// A request in flight: the epoch it was sent in and the units it carries (batch, unit).
struct Flying {
    epoch: u64,
    units: Vec<(u64, usize)>,
}

/// A sink for an AWS record service: [`PutApi`] says which.
pub struct RecordSink<P> {
    target: SinkTarget,
    rt: tokio::runtime::Runtime,
    api: P,
    metrics: Arc<FlowMetrics>,
    errors: ErrorLog,
    /// The batches taken and not delivered yet, by the number they were given.
    held: BTreeMap<u64, Held>,
    next_batch: u64,
    /// Units waiting to be sent (batch, unit); the ones that failed go back to the front.
    queue: VecDeque<(u64, usize)>,
    requests: tokio::task::JoinSet<Attempt>,
    flying: HashMap<tokio::task::Id, Flying>,
    pace: Pace,
}

impl<P: PutApi> RecordSink<P> {
    /// Starts the runtime and builds the client with `build` (from the shared SDK configuration
    /// and the target's endpoint); `None`, logged, when the runtime cannot start. The SDK does
    /// not retry: every answer reaches the sink, whose pace and backoff follow them.
    pub fn start(
        target: SinkTarget,
        metrics: Arc<FlowMetrics>,
        what: &str,
        build: impl FnOnce(&aws_config::SdkConfig, Option<&str>) -> P,
    ) -> Option<Self> {
        let (rt, api) = target.client(what, |shared, endpoint| {
            let shared = shared.clone().into_builder().retry_config(aws_config::retry::RetryConfig::disabled()).build();
            build(&shared, endpoint)
        })?;
        Some(Self::with_api(target, rt, api, metrics))
    }

    /// The sink over `api`, sending on `rt`.
    pub fn with_api(target: SinkTarget, rt: tokio::runtime::Runtime, api: P, metrics: Arc<FlowMetrics>) -> Self {
        let pace = Pace::new(target.in_flight_requests, target.initial_backoff, target.max_backoff);
        RecordSink {
            target,
            rt,
            api,
            metrics,
            errors: ErrorLog::default(),
            held: BTreeMap::new(),
            next_batch: 0,
            queue: VecDeque::new(),
            requests: tokio::task::JoinSet::new(),
            flying: HashMap::new(),
            pace,
        }
    }

    /// The most records one request carries.
    fn max_request_records(&self) -> usize {
        self.api.request_limits().1.min(self.target.max_request_records).max(1)
    }

    /// Sends one request with the units at the front of the queue.
    fn send_next(&mut self) {
        let (max_bytes, _) = self.api.request_limits();
        let held = &self.held;
        let unit = |&(b, u): &(u64, usize)| held.get(&b).map(|h| (&h.units[u], h.sizes[u]));
        let n = self.api.request_len(self.queue.iter().map_while(unit), max_bytes, self.max_request_records()).max(1);
        let units: Vec<(u64, usize)> = self.queue.drain(..n.min(self.queue.len())).collect();
        let records = units.iter().filter_map(|(b, u)| {
            let h = held.get(b)?;
            let unit = &h.units[*u];
            Some((unit.bytes(&h.batch), unit))
        });
        let lane = records.clone().next().map_or(0, |(_, u)| u.lane);
        let body = self.api.body(&self.target.stream, records);
        let put = self.api.put(&self.target.stream, lane, units.len(), body);
        let id = self.requests.spawn_on(put, self.rt.handle()).id();
        self.flying.insert(id, Flying { epoch: self.pace.epoch(), units });
    }

    /// Takes the answer to the request `id`: what was accepted or rejected is done, what failed
    /// goes back to the front of the queue, in its order.
    fn answered(&mut self, id: tokio::task::Id, answer: Attempt) {
        let Some(Flying { epoch, units }) = self.flying.remove(&id) else { return };
        let sizes: Vec<usize> = units.iter().map(|(b, u)| self.held.get(b).map_or(0, |h| h.sizes[*u])).collect();
        let judged = judge(answer, &sizes, (&self.target, P::CALL), &mut self.errors, &self.metrics);
        let again: HashSet<usize> = judged.again.iter().copied().collect();
        for r in judged.rejected {
            let (b, u) = units[r.record];
            if let Some(h) = self.held.get_mut(&b) {
                let members = h.units[u].members.clone();
                h.rejected.extend(members.map(|m| Rejected { record: m, code: r.code.clone(), message: r.message.clone() }));
            }
        }
        for (i, (b, _)) in units.iter().enumerate() {
            if !again.contains(&i) {
                if let Some(h) = self.held.get_mut(b) {
                    h.left -= 1;
                }
            }
        }
        for &i in judged.again.iter().rev() {
            self.queue.push_front(units[i]);
        }
        let answer = Answer { epoch, progress: judged.progress, throttled_share: judged.throttled_share };
        self.pace.answered(Instant::now(), answer, jitter);
    }

    /// The batches every record of which was accepted or rejected for good, taken out.
    fn take_delivered(&mut self) -> Vec<(Batch, Vec<Rejected>)> {
        let done: Vec<u64> = self.held.iter().filter(|(_, h)| h.left == 0).map(|(b, _)| *b).collect();
        done.into_iter()
            .filter_map(|b| self.held.remove(&b))
            .map(|mut h| {
                h.rejected.sort_by_key(|r| r.record);
                (h.batch, h.rejected)
            })
            .collect()
    }
}

impl<P: PutApi> crate::sinks::Sink for RecordSink<P> {
    fn take(&mut self, batch: Batch) {
        if self.held.is_empty() {
            self.api.forget();
        }
        let units = self.api.units(&batch, self.target.compression);
        let sizes: Vec<usize> =
            units.iter().map(|u| u.bytes(&batch).len() + u.key.as_ref().map_or(0, String::len) + P::UNIT_OVERHEAD).collect();
        let b = self.next_batch;
        self.next_batch += 1;
        self.queue.extend((0..units.len()).map(|u| (b, u)));
        self.held.insert(b, Held { left: units.len(), batch, units, sizes, rejected: Vec::new() });
    }

    fn wants_more(&self) -> bool {
        // enough to fill every request the window allows, twice over
        self.queue.len() < 2 * self.target.in_flight_requests.max(1) * self.max_request_records()
    }

    fn is_idle(&self) -> bool {
        self.held.is_empty()
    }

    fn pause(&mut self, d: std::time::Duration) {
        // the requests in flight are tasks of this runtime: they go on while it waits
        // (the timer is made inside the runtime: outside it has no reactor)
        self.rt.block_on(async { tokio::time::sleep(d).await });
    }

    fn progress(&mut self) -> Vec<(Batch, Vec<Rejected>)> {
        let delivered = self.take_delivered();
        if !delivered.is_empty() {
            return delivered;
        }
        let now = Instant::now();
        let wait_until = self.pace.not_before(now);
        if wait_until.is_none() {
            while self.requests.len() < self.pace.window() && !self.queue.is_empty() {
                self.send_next();
            }
        }
        // what the sink waits for: an answer, or the end of the backoff when a request could
        // start; with room for a request and nothing queued, a new batch may be waiting for the
        // worker to take it: back soon, a straggler does not hold it
        let room = self.requests.len() < self.pace.window();
        let wake = match wait_until {
            Some(t) if room && !self.queue.is_empty() => Some(t),
            _ if room && self.queue.is_empty() && !self.requests.is_empty() => Some(now + TAKE_MORE_EVERY),
            _ => None,
        }
        .map(tokio::time::Instant::from_std);
        let requests = &mut self.requests;
        let flying = !requests.is_empty();
        let answer = self.rt.block_on(async {
            tokio::select! {
                done = requests.join_next_with_id(), if flying => done,
                () = async { if let Some(t) = wake { tokio::time::sleep_until(t).await } }, if wake.is_some() => None,
                else => None,
            }
        });
        match answer {
            Some(Ok((id, attempt))) => self.answered(id, attempt),
            Some(Err(e)) => {
                let failed = Attempt::Failed { code: "InternalError".into(), message: format!("the request's task ended: {e}") };
                self.answered(e.id(), failed);
            }
            None => {}
        }
        self.take_delivered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::aws::settings::{AwsSettings, AwsTarget};

    fn target() -> SinkTarget {
        SinkTarget::resolve(&AwsSettings::default(), &AwsTarget::default(), None, None, None, "s", (1, 2))
    }

    fn metrics() -> crate::ops::metrics::Metrics {
        crate::ops::metrics::Metrics::new(&[("f".into(), "DeliveryStream:s".into())])
    }

    fn code(c: &str) -> Option<(String, String)> {
        Some((c.into(), "m".into()))
    }

    /// How a [`Scripted`] service answers request `n` carrying these records.
    type Script = dyn Fn(usize, &[String]) -> Attempt + Send + Sync;

    /// A service that answers request `n` (counted from 0) carrying `records` with
    /// `answer(n, records)` after `delay(n)`, and keeps what each request carried and the most
    /// requests it had in flight at once.
    #[derive(Clone)]
    struct Scripted {
        seen: Arc<std::sync::Mutex<Vec<Vec<String>>>>,
        answer: Arc<Script>,
        delay: fn(usize) -> u64,
        flying: Arc<std::sync::atomic::AtomicUsize>,
        most_flying: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Scripted {
        fn new(answer: impl Fn(usize, &[String]) -> Attempt + Send + Sync + 'static, delay: fn(usize) -> u64) -> Scripted {
            Scripted { seen: Arc::default(), answer: Arc::new(answer), delay, flying: Arc::default(), most_flying: Arc::default() }
        }

        fn requests(&self) -> Vec<Vec<String>> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl PutApi for Scripted {
        const CALL: &'static str = "Put";
        const STREAM_MEMBER: &'static str = "StreamName";

        fn request_limits(&self) -> (usize, usize) {
            (1 << 20, 10)
        }

        fn units(&mut self, batch: &Batch, compression: Compression) -> Vec<Unit> {
            (0..batch.len())
                .map(|i| Unit::of(crate::sinks::wire::encode_record(compression, batch.span(i..i + 1)), None, i..i + 1))
                .collect()
        }

        fn put(&self, _stream: &str, _lane: u32, _count: usize, body: Vec<u8>) -> Put {
            use base64::Engine as _;
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let records: Vec<String> = v["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().unwrap()).unwrap()).unwrap())
                .collect();
            let n = {
                let mut seen = self.seen.lock().unwrap();
                seen.push(records.clone());
                seen.len() - 1
            };
            let answer = (self.answer)(n, &records);
            let (flying, most, delay) = (self.flying.clone(), self.most_flying.clone(), (self.delay)(n));
            Box::pin(async move {
                use std::sync::atomic::Ordering::SeqCst;
                most.fetch_max(flying.fetch_add(1, SeqCst) + 1, SeqCst);
                // in ten steps, as a real request's reads are: each step needs the runtime
                for _ in 0..10 {
                    tokio::time::sleep(std::time::Duration::from_micros(delay * 100)).await;
                }
                flying.fetch_sub(1, SeqCst);
                answer
            })
        }
    }

    fn sink(api: Scripted, in_flight: usize) -> (RecordSink<Scripted>, crate::ops::metrics::Metrics) {
        let mut t = target();
        t.in_flight_requests = in_flight;
        let m = metrics();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        (RecordSink::with_api(t, rt, api, m.flows()[0].clone()), m)
    }

    /// Batch `k` of `n` records "b{k}-r{i}".
    fn batch(k: u64, n: usize) -> Batch {
        let mut b = Batch::default();
        for i in 0..n {
            let r = format!("b{k}-r{i}");
            b.data.extend_from_slice(r.as_bytes());
            b.commit_record(crate::batch::AckRef { tail: k, seq: i as u64 }, r.len() as u64, std::path::Path::new("/var/log/a"), 0);
        }
        b
    }

    /// Hands `batches` to `sink` and lets it work until it delivered them all: the batches in
    /// the order they were delivered (by their first record's tail), with their rejections.
    fn deliver_all(sink: &mut RecordSink<Scripted>, batches: Vec<Batch>) -> Vec<(u64, Vec<Rejected>)> {
        use crate::sinks::Sink;
        for b in batches {
            sink.take(b);
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let mut out = Vec::new();
        while !sink.is_idle() {
            assert!(Instant::now() < deadline, "not delivered in 20 s");
            out.extend(sink.progress().into_iter().map(|(b, r)| (b.acks[0].tail, r)));
        }
        out
    }

    fn accepted(api: &Scripted, rejected_per_request: impl Fn(usize, &str) -> bool) -> Vec<String> {
        let mut out: Vec<String> = api
            .requests()
            .iter()
            .enumerate()
            .flat_map(|(n, rs)| rs.iter().filter(|r| !rejected_per_request(n, r)).cloned().collect::<Vec<_>>())
            .collect();
        out.sort();
        out
    }

    fn all_records(batches: u64, n: usize) -> Vec<String> {
        let mut all: Vec<String> = (0..batches).flat_map(|k| (0..n).map(move |i| format!("b{k}-r{i}"))).collect();
        all.sort();
        all
    }

    #[test]
    fn failed_records_go_again_at_the_front_of_the_next_full_request_and_every_record_is_accepted_once() {
        // the first request's records 3 and 7 throttled; every other record accepted
        let api = Scripted::new(
            |n, rs| {
                Attempt::Answered(
                    (0..rs.len()).map(|i| if n == 0 && (i == 3 || i == 7) { code("ThrottlingException") } else { None }).collect(),
                )
            },
            |_| 0,
        );
        let (mut s, _m) = sink(api.clone(), 1);
        let delivered = deliver_all(&mut s, (0..3).map(|k| batch(k, 10)).collect());
        let requests = api.requests();
        assert_eq!(requests[0], (0..10).map(|i| format!("b0-r{i}")).collect::<Vec<_>>());
        let mut second = vec!["b0-r3".to_string(), "b0-r7".to_string()];
        second.extend((0..8).map(|i| format!("b1-r{i}")));
        assert_eq!(requests[1], second, "the failed records first, then new ones: a full request");
        assert_eq!(requests.len(), 4, "32 records in requests of 10: {requests:?}");
        let throttled = |n: usize, r: &str| n == 0 && (r == "b0-r3" || r == "b0-r7");
        assert_eq!(accepted(&api, throttled), all_records(3, 10), "every record accepted exactly once");
        assert_eq!(delivered.len(), 3);
        assert!(delivered.iter().all(|(_, r)| r.is_empty()));
    }

    #[test]
    fn several_requests_are_in_flight_and_a_slow_one_holds_no_other() {
        // the first request answers after 400 ms, the others at once
        let api = Scripted::new(|_, rs| Attempt::Answered(vec![None; rs.len()]), |n| if n == 0 { 400 } else { 5 });
        let (mut s, _m) = sink(api.clone(), 4);
        let delivered = deliver_all(&mut s, (0..12).map(|k| batch(k, 10)).collect());
        assert_eq!(api.most_flying.load(std::sync::atomic::Ordering::SeqCst), 4);
        let order: Vec<u64> = delivered.iter().map(|(k, _)| *k).collect();
        assert_eq!(order.last(), Some(&0), "the slow request's batch came last, the others did not wait for it: {order:?}");
        assert_eq!(accepted(&api, |_, _| false), all_records(12, 10));
    }

    #[test]
    fn a_batch_that_comes_while_a_slow_request_is_in_flight_goes_at_once() {
        use crate::sinks::Sink;
        // the first request answers after 2 s, the others at once
        let api = Scripted::new(|_, rs| Attempt::Answered(vec![None; rs.len()]), |n| if n == 0 { 2000 } else { 5 });
        let (mut s, _m) = sink(api.clone(), 4);
        s.take(batch(0, 10));
        let started = Instant::now();
        assert!(s.progress().is_empty(), "back without an answer: the worker may have a batch to hand over");
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        s.take(batch(1, 10));
        let mut first = Vec::new();
        while first.is_empty() {
            first = s.progress();
        }
        assert_eq!(first[0].0.acks[0].tail, 1, "the new batch went while the slow request was out");
        assert!(started.elapsed() < std::time::Duration::from_millis(1500));
    }

    #[test]
    fn while_the_worker_pauses_the_requests_in_flight_go_on() {
        use crate::sinks::Sink;
        let api = Scripted::new(|_, rs| Attempt::Answered(vec![None; rs.len()]), |_| 200);
        let (mut s, _m) = sink(api.clone(), 4);
        s.take(batch(0, 10));
        assert!(s.progress().is_empty(), "sent; back before the answer");
        s.pause(std::time::Duration::from_millis(400));
        let started = Instant::now();
        let delivered = s.progress();
        assert_eq!(delivered.len(), 1, "answered during the pause");
        assert!(started.elapsed() < std::time::Duration::from_millis(100), "{:?}", started.elapsed());
    }

    #[test]
    fn a_request_refused_whole_waits_for_the_fix_and_rejects_nothing() {
        let api = Scripted::new(
            |n, rs| {
                if n < 3 {
                    Attempt::Failed { code: "ValidationException".into(), message: "stream does not take direct PUT".into() }
                } else {
                    Attempt::Answered(vec![None; rs.len()])
                }
            },
            |_| 0,
        );
        let (mut s, m) = sink(api.clone(), 1);
        let delivered = deliver_all(&mut s, vec![batch(0, 10)]);
        assert_eq!(delivered, vec![(0, Vec::new())], "nothing rejected");
        let requests = api.requests();
        assert_eq!(requests.len(), 4);
        assert!(requests.iter().all(|r| r.len() == 10), "the whole request again, never halved: {requests:?}");
        assert!(m.health_problems(60_000, u64::MAX).is_empty(), "healthy again once a call succeeded");
    }

    #[test]
    fn a_record_the_service_calls_invalid_is_rejected_with_its_batch_index_and_the_rest_go_on() {
        let api = Scripted::new(
            |_, rs| Attempt::Answered(rs.iter().map(|r| if r == "b1-r4" { code("InvalidArgumentException") } else { None }).collect()),
            |_| 0,
        );
        let (mut s, _m) = sink(api.clone(), 2);
        let mut delivered = deliver_all(&mut s, (0..3).map(|k| batch(k, 10)).collect());
        delivered.sort_by_key(|(k, _)| *k);
        assert_eq!(delivered[1].1, vec![Rejected { record: 4, code: "InvalidArgumentException".into(), message: "m".into() }]);
        assert!(delivered[0].1.is_empty() && delivered[2].1.is_empty());
        assert_eq!(api.requests().concat().len(), 30, "nothing sent twice");
    }

    #[test]
    fn an_outage_backs_off_and_progress_resumes_at_full_speed() {
        // every request fails (connection refused) until the sixth
        let api = Scripted::new(
            |n, rs| {
                if n < 5 {
                    Attempt::Failed { code: "network or timeout".into(), message: "connection refused".into() }
                } else {
                    Attempt::Answered(vec![None; rs.len()])
                }
            },
            |_| 0,
        );
        let (mut s, _m) = sink(api.clone(), 4);
        let started = Instant::now();
        deliver_all(&mut s, (0..8).map(|k| batch(k, 10)).collect());
        // backoffs of 1 and 2 ms (the target's), never the seconds of a stalled loop
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(accepted(&api, |n, _| n < 5), all_records(8, 10));
    }

    #[test]
    fn a_refused_request_makes_the_flow_unhealthy_at_once() {
        let m = metrics();
        let judged = judge(
            Attempt::Failed { code: "InvalidArgumentException".into(), message: "no direct PUT".into() },
            &[1, 1],
            (&target(), "Put"),
            &mut ErrorLog::default(),
            &m.flows()[0],
        );
        assert_eq!((judged.again, judged.rejected.len(), judged.progress), (vec![0, 1], 0, false));
        let problems = m.health_problems(60_000, u64::MAX);
        assert!(problems.len() == 1 && problems[0].contains("InvalidArgumentException: no direct PUT"), "{problems:?}");
    }

    #[test]
    fn a_request_takes_what_fits_from_the_front_of_the_queue() {
        assert_eq!(request_len([3, 3, 3, 3].into_iter(), 7, 10), 2);
        assert_eq!(request_len([1; 5].into_iter(), 100, 2), 2);
        assert_eq!(request_len([10, 1].into_iter(), 5, 10), 1, "an oversized record goes alone");
        assert_eq!(request_len(std::iter::empty(), 5, 5), 0);
    }
}
