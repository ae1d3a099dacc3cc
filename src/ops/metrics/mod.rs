//! The agent's counters and gauges, shared by the engine, the sink threads, the HTTP endpoint and
//! the CloudWatch publisher.
//!
//! Guarantees: counters only grow; every flow has its series from the start (zero until
//! something happens), labelled with the flow id and, for sending, the destination as the Kinesis
//! Agent names it (`DeliveryStream:<name>`, `KinesisStream:<name>`); the Prometheus text is
//! produced by `prometheus-client`. Per send call, the figures CloudWatch receives are also kept
//! as statistic sets (count, sum, minimum, maximum) for the current publishing window. Health is
//! judged from the engine's heartbeat and each sink's last success (`health`). Not kept:
//! history (Prometheus and CloudWatch keep it).

mod files;
mod health;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub flow: String,
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub flow: String,
    pub destination: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabels {
    pub flow: String,
    pub file: String,
}

/// Count, sum, minimum and maximum of the values seen in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatSet {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl StatSet {
    pub fn add(&mut self, v: f64) {
        if self.count == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
    }
}

/// One send call's figures, as the Kinesis Agent reports them to CloudWatch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallWindow {
    pub record_send_attempts: StatSet,
    pub records_sent: StatSet,
    pub record_send_errors: StatSet,
    pub bytes_sent: StatSet,
    pub service_errors: StatSet,
    pub throttled_records: StatSet,
}

/// How one send call went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Call {
    pub attempted: u64,
    pub sent: u64,
    pub failed: u64,
    pub bytes_sent: u64,
    pub throttled: u64,
    /// The whole call failed (no per-record answer).
    pub service_error: bool,
}

/// Figures of one flow. Cloning a counter shares it: the fields are handles into the registry.
pub struct FlowMetrics {
    pub id: String,
    pub destination: String,
    /// The stream's bare name (the destination itself for local sinks).
    pub stream: String,
    pub records_parsed: Counter,
    pub bytes_read: Counter,
    pub records_dropped: Counter,
    pub records_truncated: Counter,
    pub records_split: Counter,
    pub processing_errors: Counter,
    pub processor_panics: Counter,
    pub fields_unparsed: Counter,
    pub kubernetes_misses: Counter,
    pub kubernetes_errors: Counter,
    pub kubernetes_pods: Gauge,
    pub sink_restarts: Counter,
    pub consecutive_processing_errors: Gauge,
    pub discovery_errors: Counter,
    pub files_refused: Counter,
    pub record_send_attempts: Counter,
    pub records_sent: Counter,
    pub record_send_errors: Counter,
    pub bytes_sent: Counter,
    pub service_errors: Counter,
    pub throttled_records: Counter,
    pub records_dead_lettered: Counter,
    /// Lines and bytes of deleted files let go unread (past `deleted_files_max_bytes`).
    pub lines_lost: Counter,
    pub bytes_lost: Counter,
    pub bytes_behind: Gauge,
    /// Bytes not yet acknowledged in files deleted while held open, and those files.
    pub deleted_bytes_behind: Gauge,
    pub deleted_files_behind: Gauge,
    pub files_behind: Gauge,
    /// journald sources: entries read, gaps (the saved entry gone at a start), and when the
    /// last acknowledged entry was written (Unix seconds).
    pub journal_entries_read: Counter,
    pub journal_gaps: Counter,
    pub journal_cursor_timestamp: Gauge,
    journals: Mutex<Vec<JournalStatus>>,
    pub checkpoint_age_seconds: Gauge,
    pub last_success_seconds: Gauge,
    errors_by_code: Family<CodeLabels, Counter>,
    file_bytes_behind: Family<FileLabels, Gauge>,
    /// Unix ms of the first failure since the last success; 0 while succeeding.
    failing_since_ms: AtomicU64,
    /// Unix ms since which batches handed to the sink wait with none delivered; 0 when none wait.
    stalled_since_ms: AtomicU64,
    /// The code and message of the last request refused whole as invalid since the last
    /// success (other errors of requests in flight do not replace it); `None` while none.
    refusal: Mutex<Option<(String, String)>>,
    last_error: Mutex<Option<(u64, String, String)>>,
    window: Mutex<CallWindow>,
    /// Dead-lettered records by when (Unix ms), for the health check; pruned past a day.
    dead_letters: Mutex<std::collections::VecDeque<(u64, u64)>>,
    /// Every file of the flow and its bytes behind, as last set (for `/status` and `top`).
    files: Mutex<Vec<(String, u64)>>,
    /// The files that have a `file_bytes_behind` series now.
    file_series: Mutex<HashSet<String>>,
    /// At most this many files have a series: those most behind.
    file_series_max: AtomicUsize,
}

/// The default of `http.per_file_series`.
pub const DEFAULT_PER_FILE_SERIES: usize = 100;

/// One journald source as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct JournalStatus {
    pub source: String,
    pub entries_read: u64,
    /// Records read and not yet acknowledged.
    pub unacknowledged: u64,
    pub gaps: u64,
    /// When the last acknowledged entry was written (RFC 3339), if any.
    pub cursor_time: Option<String>,
}

/// The per-flow series, by family.
struct Families {
    parsed: Family<FlowLabels, Counter>,
    bytes_read: Family<FlowLabels, Counter>,
    dropped: Family<FlowLabels, Counter>,
    truncated: Family<FlowLabels, Counter>,
    split: Family<FlowLabels, Counter>,
    processing: Family<FlowLabels, Counter>,
    panics: Family<FlowLabels, Counter>,
    fields_unparsed: Family<FlowLabels, Counter>,
    kubernetes_misses: Family<FlowLabels, Counter>,
    kubernetes_errors: Family<FlowLabels, Counter>,
    kubernetes_pods: Family<FlowLabels, Gauge>,
    sink_restarts: Family<FlowLabels, Counter>,
    consecutive: Family<FlowLabels, Gauge>,
    discovery: Family<FlowLabels, Counter>,
    refused: Family<FlowLabels, Counter>,
    attempts: Family<FlowLabels, Counter>,
    sent: Family<FlowLabels, Counter>,
    send_errors: Family<FlowLabels, Counter>,
    bytes_sent: Family<FlowLabels, Counter>,
    service: Family<FlowLabels, Counter>,
    throttled: Family<FlowLabels, Counter>,
    dead: Family<FlowLabels, Counter>,
    lines_lost: Family<FlowLabels, Counter>,
    bytes_lost: Family<FlowLabels, Counter>,
    behind: Family<FlowLabels, Gauge>,
    deleted_behind: Family<FlowLabels, Gauge>,
    deleted_files: Family<FlowLabels, Gauge>,
    files_behind: Family<FlowLabels, Gauge>,
    journal_entries: Family<FlowLabels, Counter>,
    journal_gaps: Family<FlowLabels, Counter>,
    journal_cursor: Family<FlowLabels, Gauge>,
    age: Family<FlowLabels, Gauge>,
    success: Family<FlowLabels, Gauge>,
    by_code: Family<CodeLabels, Counter>,
    per_file: Family<FileLabels, Gauge>,
}

/// Every figure of the agent.
pub struct Metrics {
    registry: Registry,
    families: Families,
    flows: RwLock<Vec<Arc<FlowMetrics>>>,
    pub open_files: Gauge,
    pub open_files_limit: Gauge,
    pub files_waiting_for_descriptor: Gauge,
    pub in_flight_bytes: Gauge,
    pub in_flight_budget_bytes: Gauge,
    /// Bytes the tailed files' line and record buffers hold (counted against the budget).
    pub line_buffer_bytes: Gauge,
    pub checkpoint_commit_failures: Counter,
    /// Connections to the HTTP endpoint closed at once because it had its most.
    pub http_connections_refused: Counter,
    /// Flows configured but not started (their configuration would drop every line).
    pub flows_held: Gauge,
    held: Mutex<Vec<(String, String)>>,
    /// Unix ms of the first failed checkpoint commit since the last one that succeeded; 0 while
    /// they succeed.
    checkpoint_failing_since_ms: AtomicU64,
    checkpoint_last_error: Mutex<String>,
    /// A flow that dead-letters this many records within the failing time is unhealthy.
    unhealthy_dead_letters: AtomicU64,
    /// Unix ms of the engine's last pass.
    heartbeat_ms: AtomicU64,
    ready: AtomicBool,
    started_ms: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What a refusal means for the flow's health, as the sink that saw it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The destination slows the agent down on purpose: backing off, not failing.
    Throttled,
    /// The record is invalid: it goes to the dead-letter file, the flow moves on.
    Invalid,
    /// Anything else: the sink is failing until a call succeeds.
    Failed,
    /// The service refuses whole requests as invalid: a configuration error (for example a
    /// stream that takes no direct PUT). The records wait; the flow is unhealthy at once.
    Refused,
}

impl Metrics {
    /// Series for the flows `(id, destination)`, all zero.
    pub fn new(flows: &[(String, String)]) -> Metrics {
        let mut registry = Registry::with_prefix("logferry");
        macro_rules! family {
            ($name:expr, $help:expr) => {{
                let f = Family::default();
                registry.register($name, $help, f.clone());
                f
            }};
        }
        let families = Families {
            parsed: family!("records_parsed", "Records made from the files and handed to the sink"),
            bytes_read: family!("bytes_read", "Bytes read from the files"),
            dropped: family!("records_dropped", "Records a processor dropped (filters, parse failures with on_mismatch: drop)"),
            truncated: family!("records_truncated", "Records cut to the largest size the destination takes"),
            split: family!("records_split", "Records sent in pieces (oversized_records: split)"),
            processing: family!("processing_errors", "Records a processor could not convert (sent as they were or dropped)"),
            panics: family!("processor_panics", "Records on which a processor failed by a bug (sent as they were read)"),
            fields_unparsed: family!(
                "field_parse_failures",
                "Records whose field a field parse step could not parse (sent with the field as it was)"
            ),
            kubernetes_misses: family!(
                "kubernetes_metadata_misses",
                "Container records sent without their pod's metadata from the Kubernetes API (not fetched yet, or the fetch failed)"
            ),
            kubernetes_errors: family!("kubernetes_metadata_errors", "Requests to the Kubernetes API server or kubelet that failed"),
            kubernetes_pods: family!("kubernetes_metadata_pods", "Pods whose metadata the flow keeps"),
            sink_restarts: family!("sink_restarts", "Times the flow was restarted because its sink worker panicked or stopped"),
            consecutive: family!("consecutive_processing_errors", "Records in a row that failed conversion"),
            discovery: family!(
                "discovery_errors",
                "Directories of the flow's patterns that could not be listed (permissions, descriptors)"
            ),
            refused: family!("files_refused", "Matching paths not tailed: symlinks the flow does not follow, the agent's own files"),
            attempts: family!("record_send_attempts", "Records put in a request, retries included"),
            sent: family!("records_sent", "Records the destination accepted"),
            send_errors: family!("record_send_errors", "Records the destination did not accept in an attempt"),
            bytes_sent: family!("bytes_sent", "Bytes of the records the destination accepted"),
            service: family!("service_errors", "Requests that failed as a whole (service, network, credentials)"),
            throttled: family!("throttled_records", "Records refused because of throttling"),
            dead: family!("records_dead_lettered", "Records the destination rejected as invalid, written to the dead-letter file"),
            lines_lost: family!(
                "lines_lost",
                "Lines of deleted files let go unread because the flow's deleted files held more than deleted_files_max_bytes"
            ),
            bytes_lost: family!("bytes_lost", "Bytes of deleted files let go unread (see lines_lost)"),
            behind: family!("bytes_behind", "Bytes of the flow's files not yet acknowledged"),
            deleted_behind: family!(
                "deleted_bytes_behind",
                "Bytes not yet acknowledged in files deleted while held open (counted in bytes_behind; a stop loses them)"
            ),
            deleted_files: family!("deleted_files_behind", "Files deleted while held open with bytes not yet acknowledged"),
            files_behind: family!("files_behind", "Files of the flow with bytes not yet acknowledged"),
            journal_entries: family!("journal_entries_read", "Entries the flow's journald sources read (filtered ones included)"),
            journal_gaps: family!(
                "journal_gaps",
                "Starts of a journald source whose saved entry was gone: the entries after it were vacuumed or rotated away unread"
            ),
            journal_cursor: family!(
                "journal_cursor_timestamp_seconds",
                "When the last acknowledged entry of the flow's journald sources was written (Unix time)"
            ),
            age: family!("checkpoint_age_seconds", "Seconds since a checkpoint of the flow last moved while bytes are behind"),
            success: family!("last_success_timestamp_seconds", "When the sink last had a request accepted (Unix time)"),
            by_code: family!("send_errors_by_code", "Records or requests refused, by error code"),
            per_file: family!("file_bytes_behind", "Bytes of a file not yet acknowledged"),
        };
        let open_files = Gauge::default();
        registry.register("open_files", "Tailed files held open", open_files.clone());
        let open_files_limit = Gauge::default();
        registry.register(
            "open_files_limit",
            "The most tailed files held open: max_open_files within the process's open-file limit",
            open_files_limit.clone(),
        );
        let files_waiting = Gauge::default();
        registry.register(
            "files_waiting_for_descriptor",
            "Files with data to read waiting for a descriptor (more files written to than open_files_limit)",
            files_waiting.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("in_flight_bytes", "Bytes read and not yet acknowledged, against the budget", in_flight.clone());
        let budget = Gauge::default();
        registry.register("in_flight_budget_bytes", "The in-flight budget (max_bytes_in_flight)", budget.clone());
        let line_buffers = Gauge::default();
        registry.register("line_buffer_bytes", "Bytes held by the tailed files' line and record buffers", line_buffers.clone());
        let commit_failures = Counter::default();
        registry.register(
            "checkpoint_commit_failures",
            "Checkpoint commits that failed (positions kept in memory and retried)",
            commit_failures.clone(),
        );
        let refused = Counter::default();
        registry.register("http_connections_refused", "Connections to the endpoint closed at once: it had its most", refused.clone());
        let flows_held = Gauge::default();
        registry.register(
            "flows_held",
            "Flows configured but not started because their configuration would drop every line (their files wait unread)",
            flows_held.clone(),
        );
        let m = Metrics {
            registry,
            families,
            flows: RwLock::new(Vec::new()),
            open_files,
            open_files_limit,
            files_waiting_for_descriptor: files_waiting,
            in_flight_bytes: in_flight,
            in_flight_budget_bytes: budget,
            line_buffer_bytes: line_buffers,
            checkpoint_commit_failures: commit_failures,
            http_connections_refused: refused,
            flows_held,
            held: Mutex::new(Vec::new()),
            checkpoint_failing_since_ms: AtomicU64::new(0),
            checkpoint_last_error: Mutex::new(String::new()),
            unhealthy_dead_letters: AtomicU64::new(u64::MAX),
            heartbeat_ms: AtomicU64::new(now_ms()),
            ready: AtomicBool::new(false),
            started_ms: now_ms(),
        };
        for (id, destination) in flows {
            m.add_flow(id, destination);
        }
        m
    }

    /// The flows' figures, in the order they were added.
    pub fn flows(&self) -> Vec<Arc<FlowMetrics>> {
        self.flows.read().map(|f| f.clone()).unwrap_or_default()
    }

    /// Adds a flow's series (zero), or takes over those of a flow with the same id and
    /// destination (its counters go on: a reloaded flow does not reset them).
    pub fn add_flow(&self, id: &str, destination: &str) -> Arc<FlowMetrics> {
        let l = FlowLabels { flow: id.to_string(), destination: destination.to_string() };
        let f = &self.families;
        let c = |f: &Family<FlowLabels, Counter>| f.get_or_create(&l).clone();
        let g = |f: &Family<FlowLabels, Gauge>| f.get_or_create(&l).clone();
        let stream = match destination.split_once(':') {
            Some(("DeliveryStream" | "KinesisStream", name)) => name,
            _ => destination,
        };
        let flow = Arc::new(FlowMetrics {
            id: id.to_string(),
            destination: destination.to_string(),
            stream: stream.to_string(),
            records_parsed: c(&f.parsed),
            bytes_read: c(&f.bytes_read),
            records_dropped: c(&f.dropped),
            records_truncated: c(&f.truncated),
            records_split: c(&f.split),
            processing_errors: c(&f.processing),
            processor_panics: c(&f.panics),
            fields_unparsed: c(&f.fields_unparsed),
            kubernetes_misses: c(&f.kubernetes_misses),
            kubernetes_errors: c(&f.kubernetes_errors),
            kubernetes_pods: g(&f.kubernetes_pods),
            sink_restarts: c(&f.sink_restarts),
            consecutive_processing_errors: g(&f.consecutive),
            discovery_errors: c(&f.discovery),
            files_refused: c(&f.refused),
            record_send_attempts: c(&f.attempts),
            records_sent: c(&f.sent),
            record_send_errors: c(&f.send_errors),
            bytes_sent: c(&f.bytes_sent),
            service_errors: c(&f.service),
            throttled_records: c(&f.throttled),
            records_dead_lettered: c(&f.dead),
            lines_lost: c(&f.lines_lost),
            bytes_lost: c(&f.bytes_lost),
            bytes_behind: g(&f.behind),
            deleted_bytes_behind: g(&f.deleted_behind),
            deleted_files_behind: g(&f.deleted_files),
            files_behind: g(&f.files_behind),
            journal_entries_read: c(&f.journal_entries),
            journal_gaps: c(&f.journal_gaps),
            journal_cursor_timestamp: g(&f.journal_cursor),
            journals: Mutex::new(Vec::new()),
            checkpoint_age_seconds: g(&f.age),
            last_success_seconds: g(&f.success),
            errors_by_code: f.by_code.clone(),
            file_bytes_behind: f.per_file.clone(),
            failing_since_ms: AtomicU64::new(0),
            stalled_since_ms: AtomicU64::new(0),
            refusal: Mutex::new(None),
            last_error: Mutex::new(None),
            window: Mutex::new(CallWindow::default()),
            dead_letters: Mutex::new(Default::default()),
            files: Mutex::new(Vec::new()),
            file_series: Mutex::new(HashSet::new()),
            file_series_max: AtomicUsize::new(DEFAULT_PER_FILE_SERIES),
        });
        if let Ok(mut flows) = self.flows.write() {
            flows.retain(|x| x.id != id);
            flows.push(flow.clone());
        }
        flow
    }

    /// Removes a flow and its series.
    pub fn remove_flow(&self, id: &str) {
        let Ok(mut flows) = self.flows.write() else { return };
        let Some(i) = flows.iter().position(|x| x.id == id) else { return };
        let flow = flows.remove(i);
        flow.set_files_behind(&[]);
        let l = FlowLabels { flow: flow.id.clone(), destination: flow.destination.clone() };
        let f = &self.families;
        for c in [
            &f.parsed,
            &f.bytes_read,
            &f.dropped,
            &f.truncated,
            &f.split,
            &f.processing,
            &f.panics,
            &f.discovery,
            &f.refused,
            &f.attempts,
            &f.sent,
            &f.send_errors,
            &f.bytes_sent,
            &f.service,
            &f.throttled,
            &f.dead,
            &f.lines_lost,
            &f.bytes_lost,
            &f.journal_entries,
            &f.journal_gaps,
        ] {
            c.remove(&l);
        }
        for g in [&f.consecutive, &f.behind, &f.files_behind, &f.age, &f.success, &f.deleted_behind, &f.deleted_files, &f.journal_cursor] {
            g.remove(&l);
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn prometheus_text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl FlowMetrics {
    /// Since when (Unix ms) batches handed to the sink have waited with none delivered, or
    /// `None` when none wait.
    pub fn set_stalled_since(&self, since_ms: Option<u64>) {
        self.stalled_since_ms.store(since_ms.unwrap_or(0), Ordering::Relaxed);
    }

    /// Records one send call: counters, the CloudWatch window and the health state.
    pub fn record_call(&self, call: Call) {
        self.record_send_attempts.inc_by(call.attempted);
        self.records_sent.inc_by(call.sent);
        self.record_send_errors.inc_by(call.failed);
        self.bytes_sent.inc_by(call.bytes_sent);
        self.throttled_records.inc_by(call.throttled);
        if call.service_error {
            self.service_errors.inc();
        }
        if let Ok(mut w) = self.window.lock() {
            w.record_send_attempts.add(call.attempted as f64);
            w.service_errors.add(if call.service_error { 1.0 } else { 0.0 });
            if !call.service_error {
                w.records_sent.add(call.sent as f64);
                w.record_send_errors.add(call.failed as f64);
                w.bytes_sent.add(call.bytes_sent as f64);
                w.throttled_records.add(call.throttled as f64);
            }
        }
        if call.sent > 0 {
            self.failing_since_ms.store(0, Ordering::Relaxed);
            if let Ok(mut r) = self.refusal.lock() {
                *r = None;
            }
            self.last_success_seconds.set((now_ms() / 1000) as i64);
        }
    }

    /// Records a refusal: `n` records (or one request) with this code, of this kind.
    pub fn record_error(&self, code: &str, message: &str, n: u64, kind: ErrorKind) {
        let l = CodeLabels { flow: self.id.clone(), destination: self.destination.clone(), code: code.to_string() };
        self.errors_by_code.get_or_create(&l).inc_by(n);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((now_ms(), code.to_string(), message.chars().take(300).collect()));
        }
        match kind {
            ErrorKind::Failed => {
                let _ = self.failing_since_ms.compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
            }
            ErrorKind::Refused => {
                if let Ok(mut r) = self.refusal.lock() {
                    *r = Some((code.to_string(), message.chars().take(300).collect()));
                }
            }
            ErrorKind::Throttled | ErrorKind::Invalid => {}
        }
    }

    /// `n` records were dead-lettered now.
    pub fn note_dead_letters(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.records_dead_lettered.inc_by(n);
        let now = now_ms();
        if let Ok(mut d) = self.dead_letters.lock() {
            while d.front().is_some_and(|(t, _)| now.saturating_sub(*t) > 86_400_000) {
                d.pop_front();
            }
            match d.back_mut() {
                // one entry per second is enough to judge a window
                Some((t, m)) if now.saturating_sub(*t) < 1000 => *m += n,
                _ => d.push_back((now, n)),
            }
        }
    }

    /// Records dead-lettered since `since_ms` (Unix ms).
    pub fn dead_letters_since(&self, since_ms: u64) -> u64 {
        self.dead_letters.lock().map(|d| d.iter().filter(|(t, _)| *t >= since_ms).map(|(_, n)| n).sum()).unwrap_or(0)
    }

    /// The last error: when (Unix ms), its code and message.
    pub fn last_error(&self) -> Option<(u64, String, String)> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Takes the statistic sets gathered since the last call.
    pub fn take_window(&self) -> CallWindow {
        self.window.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default()
    }

    /// The flow's journald sources, as the engine last published them.
    pub fn set_journals(&self, journals: Vec<JournalStatus>) {
        if let Ok(mut j) = self.journals.lock() {
            *j = journals;
        }
    }

    pub fn journals(&self) -> Vec<JournalStatus> {
        self.journals.lock().map(|j| j.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_feed_counters_windows_and_health() {
        let m = Metrics::new(&[("web".into(), "DeliveryStream:logs".into())]);
        let f = &m.flows()[0];
        f.record_call(Call { attempted: 10, sent: 8, failed: 2, bytes_sent: 800, throttled: 2, service_error: false });
        f.record_error("ProvisionedThroughputExceededException", "slow down", 2, ErrorKind::Throttled);
        f.record_call(Call { attempted: 2, service_error: true, ..Call::default() });
        f.record_error("AccessDeniedException", "no", 1, ErrorKind::Failed);
        let text = m.prometheus_text();
        assert!(text.contains(r#"logferry_records_sent_total{flow="web",destination="DeliveryStream:logs"} 8"#), "{text}");
        assert!(text.contains(r#"logferry_record_send_attempts_total{flow="web",destination="DeliveryStream:logs"} 12"#), "{text}");
        assert!(text.contains(r#"code="AccessDeniedException"} 1"#), "{text}");
        let w = f.take_window();
        assert_eq!(w.record_send_attempts, StatSet { count: 2, sum: 12.0, min: 2.0, max: 10.0 });
        assert_eq!(w.service_errors.sum, 1.0);
        assert_eq!(w.records_sent.count, 1, "only calls that returned report what was sent");
        assert_eq!(f.take_window(), CallWindow::default());
        // failing since the access error (throttling does not count); healthy again after a success
        assert!(m.health_problems(60_000, 60_000).is_empty());
        assert_eq!(m.health_problems(60_000, 0).len(), 1);
        f.record_call(Call { attempted: 1, sent: 1, ..Call::default() });
        assert!(m.health_problems(60_000, 0).is_empty());
        // a record rejected as invalid goes to the dead-letter file: the sink is not failing
        let m2 = Metrics::new(&[("d".into(), "KinesisStream:s".into())]);
        m2.flows()[0].record_error("InvalidArgumentException", "bad record", 1, ErrorKind::Invalid);
        assert!(m2.health_problems(60_000, 0).is_empty());
        // an engine that stops making passes is wedged
        m.heartbeat();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let problems = m.health_problems(1, u64::MAX);
        assert!(problems.len() == 1 && problems[0].contains("tailing engine has not made progress"), "{problems:?}");
        m.heartbeat();
        assert!(m.health_problems(60_000, u64::MAX).is_empty());
    }

    #[test]
    fn a_stream_that_refuses_whole_requests_is_unhealthy_at_once_until_a_call_succeeds() {
        let m = Metrics::new(&[("k".into(), "KinesisStream:s".into())]);
        let f = &m.flows()[0];
        f.record_error("ValidationException", "stream does not take direct PUT", 1, ErrorKind::Refused);
        // a throttled request in flight meanwhile does not change what the health check names
        f.record_error("ThrottlingException", "slow down", 1, ErrorKind::Throttled);
        // unhealthy before any failing time has passed
        let problems = m.health_problems(60_000, u64::MAX);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("KinesisStream:s refuses every request") && problems[0].contains("ValidationException"),
            "{problems:?}"
        );
        f.record_call(Call { attempted: 1, sent: 1, ..Call::default() });
        assert!(m.health_problems(60_000, u64::MAX).is_empty());
    }

    #[test]
    fn files_that_went_or_caught_up_lose_their_series() {
        let m = Metrics::new(&[("f".into(), "Stdout".into())]);
        m.flows()[0].set_files_behind(&[("/a".into(), 5), ("/b".into(), 7)]);
        assert!(m.prometheus_text().contains(r#"file="/b"} 7"#));
        m.flows()[0].set_files_behind(&[("/a".into(), 0), ("/c".into(), 3)]);
        let text = m.prometheus_text();
        assert!(!text.contains(r#"file="/b""#) && !text.contains(r#"file="/a""#) && text.contains(r#"file="/c"} 3"#), "{text}");
        assert_eq!(m.flows()[0].files_behind_list().len(), 2, "/status still lists every file");
    }

    #[test]
    fn only_the_files_most_behind_have_a_series() {
        let m = Metrics::new(&[("f".into(), "Stdout".into())]);
        let f = &m.flows()[0];
        let files: Vec<(String, u64)> = (0..10_000u64).map(|n| (format!("/logs/{n}.log"), n % 1_000)).collect();
        f.set_files_behind(&files);
        let series = |m: &Metrics| m.prometheus_text().lines().filter(|l| l.starts_with("logferry_file_bytes_behind{")).count();
        assert_eq!(series(&m), DEFAULT_PER_FILE_SERIES);
        assert!(m.prometheus_text().contains(r#"file="/logs/999.log"} 999"#), "the most behind are kept");
        f.set_file_series_max(5);
        f.set_files_behind(&files);
        assert_eq!(series(&m), 5);
        f.set_file_series_max(0);
        f.set_files_behind(&files);
        assert_eq!(series(&m), 0);
        assert_eq!(f.files_behind_list().len(), 10_000);
    }
}
