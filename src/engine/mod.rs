//! The run loop: discover → tail → framing → convert → batch → sink, and acknowledgements back
//! to the checkpoint store. One thread runs it; each sink runs on its own thread.
//!
//! Guarantees:
//! - every matching file of a flow is tailed at once; new files and writes are noticed through
//!   inotify (`notify`), with a periodic scan as the safety net;
//! - a file is followed by identity (device, inode, fingerprint): a rename keeps reading the same
//!   file to its end; a copytruncate copy inherits the offset reached in the original while the
//!   truncated original starts over; truncation in place starts over; a deleted or rotated-away
//!   file is read to its end through its open descriptor before it is let go, and its
//!   unterminated last line is sent;
//! - a checkpoint moves to X only when every record made from bytes before X is acknowledged
//!   ([`crate::checkpoint::acks`]); checkpoints are committed together about once a second and at shutdown;
//!   a failed commit is logged and retried while shipping goes on;
//! - on resume the fingerprint and the bytes before the checkpoint are checked, so a replaced or
//!   rewritten file is read from its start instead of from a stale offset;
//! - readers stop when the bytes in flight reach the global budget, or when an AWS sink already
//!   has a batch waiting for each request it may have in flight and one more: the log files are
//!   the buffer;
//! - idle, fully acknowledged files release their descriptors, and are reopened on change.
//!
//! Not done here: sending (the sinks), metrics.

use crate::batch::{AckRef, Batch, Delivered};
use crate::checkpoint::acks::AckTracker;
use crate::checkpoint::{read_kinesis_agent_checkpoints, Store};
use crate::config::{Config, Flow, Oversized};
use crate::convert::{Chain, ChainContext, Outcome};
use crate::framing::{truncate_record_from, Piece};
use crate::ops::metrics::{FlowMetrics, Metrics};
use crate::source::discover::Discovery;
use crate::source::fs::RealFs;
use crate::source::identity::FileKey;
use crate::source::tail::{Pipeline, Room, TailSet};
use notify::Watcher;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The largest read.
const READ_CHUNK: usize = 256 << 10;
/// Checkpoints are committed this soon after an acknowledgement moves them (one transaction for
/// everything acknowledged meanwhile), so a crash re-sends little.
const COMMIT_EVERY: Duration = Duration::from_millis(100);
const RESCAN_DEBOUNCE: Duration = Duration::from_millis(50);

/// What wakes the loop.
pub enum Event {
    Fs(notify::Result<notify::Event>),
    Delivered(Delivered),
    Stop(&'static str),
    /// Stop without waiting for acknowledgements (a second SIGTERM).
    StopNow(&'static str),
    /// Load the configuration file again (SIGHUP).
    Reload,
    /// A sink worker panicked or stopped while its flow still sends it batches.
    SinkDied(crate::sinks::supervise::WorkerDied),
}

struct FlowState {
    flow: Flow,
    discovery: Discovery,
    chain: Chain,
    tails: TailSet<RealFs>,
    out: Outbox,
    sink_threads: Vec<std::thread::JoinHandle<()>>,
    metrics: Arc<FlowMetrics>,
    /// Removed or changed by a reload: reads no more, and goes once everything read is acknowledged.
    retiring: bool,
    /// A retiring flow whose records are not all acknowledged by then is let go anyway (its
    /// sink may be stalled for good): the unacknowledged records are read again by its successor.
    retire_deadline: Option<Instant>,
    /// What the metrics were last given (counters get the difference).
    published: FlowStats,
    /// When a checkpoint of the flow last moved.
    last_advance: Instant,
    /// Directories that could not be listed at the last scan (logged once).
    unlistable: HashSet<PathBuf>,
    /// Matching paths refused at the last scan (logged once).
    refused: HashSet<PathBuf>,
    stats: FlowStats,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowStats {
    pub records: u64,
    pub dropped: u64,
    pub truncated: u64,
    /// Records longer than the destination takes, sent in pieces.
    pub split: u64,
    /// Records a service rejected for good, written to the dead-letter file.
    pub dead_lettered: u64,
    pub processing_errors: u64,
    /// Records on which a processor panicked (sent as they were read; counted in
    /// `processing_errors` too).
    pub processor_panics: u64,
    /// Records in a row that failed conversion, up to the last one.
    pub consecutive_processing_errors: u64,
    pub runaway_lines: u64,
    pub bytes_read: u64,
}

pub struct Engine {
    cfg: Config,
    flows: Vec<FlowState>,
    store: Store,
    events: Receiver<Event>,
    events_tx: Sender<Event>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    in_flight: u64,
    buf: Vec<u8>,
    last_commit: Instant,
    /// After a failed commit, the next attempt waits until then.
    commit_retry_at: Instant,
    commit_failing_since: Option<Instant>,
    commit_error_logged: Option<Instant>,
    ctx: ChainContext,
    /// Acknowledgements came since the metrics were last given the lag.
    acked_since_publish: bool,
    /// Changed flows of a reload, started once their previous version has retired.
    waiting_to_start: Vec<Flow>,
    /// Flows restarted after their sink died wait until then.
    restart_not_before: HashMap<String, Instant>,
    /// When each flow's sink died, over the last ten minutes.
    sink_deaths: HashMap<String, Vec<Instant>>,
    /// Flows (by index) retired for good: nothing left of them but their place.
    retired: HashSet<usize>,
    metrics: Arc<Metrics>,
    last_publish: Instant,
    last_status: Instant,
    /// A second stop signal came: shutdown does not wait for acknowledgements.
    stop_now: bool,
}

/// How often the metrics get the engine's figures.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// The longest the run loop sleeps: its heartbeat tells /health it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

fn now_secs() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Engine {
    /// Opens the checkpoint store and prepares every flow; nothing is read yet.
    pub fn new(cfg: Config, ctx: ChainContext) -> anyhow::Result<Engine> {
        let mut store = Store::open(&cfg.checkpoint_file)?;
        // while running, a locked database must not stall shipping: fail fast and retry later
        store.set_lock_wait(Duration::from_millis(200))?;
        match store.prune(cfg.checkpoint_ttl_days, now_secs(), |r| current_size(Path::new(&r.path), r.key).is_some()) {
            Ok(n) if n > 0 => tracing::info!("removed {n} checkpoints not updated for {} days", cfg.checkpoint_ttl_days),
            Ok(_) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        let imported_positions = match (&cfg.kinesis_agent_checkpoints, store.meta("kinesis_agent_import")?) {
            (Some(path), None) => match read_kinesis_agent_checkpoints(path) {
                Ok(p) => {
                    if !p.is_empty() {
                        tracing::info!(
                            "found {} Kinesis Agent checkpoints in {}; files found with the same device and inode resume there",
                            p.len(),
                            path.display()
                        );
                    }
                    p
                }
                Err(e) => {
                    tracing::warn!("{e}; files start as if there were no Kinesis Agent checkpoints");
                    Vec::new()
                }
            },
            _ => Vec::new(),
        };
        let (events_tx, events) = mpsc::channel();
        let tx = events_tx.clone();
        let watcher = match notify::recommended_watcher(move |e| {
            let _ = tx.send(Event::Fs(e));
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("file notifications unavailable ({e}); changes are found by the periodic scan only");
                None
            }
        };
        let metrics = Arc::new(Metrics::new(&[]));
        metrics.in_flight_budget_bytes.set(cfg.max_bytes_in_flight as i64);
        metrics.set_unhealthy_dead_letters(cfg.http.unhealthy_dead_letters);
        let mut flows = Vec::new();
        for flow in &cfg.flows {
            flows.push(start_flow(&cfg, flow, flows.len(), &mut store, &imported_positions, &events_tx, &metrics, &ctx)?);
        }
        if cfg.kinesis_agent_checkpoints.is_some() {
            store.set_meta("kinesis_agent_import", "done")?;
        }
        Ok(Engine {
            cfg,
            flows,
            store,
            events,
            events_tx,
            watcher,
            watched: HashSet::new(),
            in_flight: 0,
            buf: vec![0; READ_CHUNK],
            last_commit: Instant::now(),
            commit_retry_at: Instant::now(),
            commit_failing_since: None,
            commit_error_logged: None,
            ctx,
            acked_since_publish: false,
            waiting_to_start: Vec::new(),
            restart_not_before: HashMap::new(),
            sink_deaths: HashMap::new(),
            retired: HashSet::new(),
            metrics,
            last_publish: Instant::now(),
            last_status: Instant::now(),
            stop_now: false,
        })
    }

    /// The figures of this engine and its sinks, for the HTTP endpoint and CloudWatch.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// A sender that stops the engine (signal handlers use it).
    pub fn stopper(&self) -> Sender<Event> {
        self.events_tx.clone()
    }

    /// Runs until a stop event; then flushes, waits for acknowledgements up to the shutdown
    /// timeout and commits checkpoints.
    pub fn run(mut self) -> anyhow::Result<Vec<FlowStats>> {
        let reason;
        loop {
            let timeout = self.next_deadline().saturating_duration_since(Instant::now());
            match self.events.recv_timeout(timeout) {
                Ok(ev) => {
                    if let Some(r) = self.handle(ev) {
                        reason = r;
                        break;
                    }
                    let mut stop = None;
                    while let Ok(ev) = self.events.try_recv() {
                        if let Some(r) = self.handle(ev) {
                            stop = Some(r);
                            break;
                        }
                    }
                    if let Some(r) = stop {
                        reason = r;
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    reason = "event channel closed";
                    break;
                }
            }
            self.work();
        }
        tracing::info!(
            "stopping ({reason}): sending what was read, waiting up to {} ms for acknowledgements",
            self.cfg.shutdown_timeout_ms
        );
        self.shutdown()
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut d = now + HEARTBEAT_EVERY;
        for flow in &self.waiting_to_start {
            if let Some(t) = self.restart_not_before.get(&flow.id) {
                d = d.min(*t);
            }
        }
        if self.acked_since_publish {
            d = d.min(self.last_publish + PUBLISH_EVERY);
        }
        for (fi, f) in self.flows.iter().enumerate().filter(|(_, f)| f.retiring) {
            if let Some(at) = f.retire_deadline.filter(|_| !self.retired.contains(&fi)) {
                d = d.min(at);
            }
        }
        for f in self.flows.iter().filter(|f| !f.retiring) {
            if f.stats != f.published {
                d = d.min(self.last_publish + PUBLISH_EVERY);
            }
            d = d.min(f.tails.next_scan(now, RESCAN_DEBOUNCE));
            if let Some(s) = f.out.started {
                d = d.min(s + Duration::from_millis(f.flow.buffer.max_age_ms));
            }
        }
        for fi in 0..self.flows.len() {
            let f = &self.flows[fi];
            if f.retiring {
                continue;
            }
            if let Some(at) = f.tails.next_deadline(now, self.room(fi)) {
                if at <= now {
                    return now;
                }
                d = d.min(at);
            }
        }
        if self.store.has_staged() {
            d = d.min((self.last_commit + COMMIT_EVERY).max(self.commit_retry_at));
        }
        d.max(now)
    }

    fn handle(&mut self, ev: Event) -> Option<&'static str> {
        match ev {
            Event::Stop(why) => return Some(why),
            Event::StopNow(why) => {
                self.stop_now = true;
                return Some(why);
            }
            Event::Reload => self.reload(),
            Event::Delivered(d) => self.delivered(d),
            Event::SinkDied(d) => self.sink_died(d),
            Event::Fs(Ok(e)) => {
                use notify::EventKind;
                match e.kind {
                    EventKind::Modify(notify::event::ModifyKind::Data(_)) | EventKind::Modify(notify::event::ModifyKind::Any) => {
                        for p in &e.paths {
                            for f in &mut self.flows {
                                f.tails.changed(p);
                            }
                        }
                    }
                    // opening and reading a file, the agent's own included, and attribute changes
                    // (its reads update atime): nothing to scan for; the periodic scan sees a
                    // permission change
                    EventKind::Access(_) | EventKind::Modify(notify::event::ModifyKind::Metadata(_)) => {}
                    _ => self.flows.iter_mut().for_each(|f| f.tails.request_scan()),
                }
            }
            Event::Fs(Err(e)) => {
                tracing::warn!("file notification error ({e}); rescanning");
                self.flows.iter_mut().for_each(|f| f.tails.request_scan());
            }
        }
        None
    }

    fn delivered(&mut self, d: Delivered) {
        // a late answer for a flow let go with records unacknowledged: they are read again
        if self.retired.contains(&d.flow) {
            return;
        }
        self.acked_since_publish = true;
        self.in_flight = self.in_flight.saturating_sub(d.budget_bytes);
        let flow = &mut self.flows[d.flow];
        flow.stats.dead_lettered += d.dead_lettered;
        flow.out.waiting = flow.out.waiting.saturating_sub(1);
        flow.out.in_flight = flow.out.in_flight.saturating_sub(d.budget_bytes);
        flow.out.waiting_since = (flow.out.waiting > 0).then(Instant::now);
        let mut moved = false;
        // a batch holds long runs of one file's records: one lookup per run
        for run in d.acks.chunk_by(|a, b| a.tail == b.tail) {
            moved |= flow.tails.ack(run[0].tail, run.iter().map(|a| a.seq), &mut self.store);
        }
        if moved {
            flow.last_advance = Instant::now();
        }
    }

    /// One pass: scans that are due, reads dirty files, flushes due batches and multi-line
    /// records, lets finished files go, closes idle descriptors, commits checkpoints.
    fn work(&mut self) {
        let now = Instant::now();
        for i in 0..self.flows.len() {
            let due = self.flows[i].tails.scan_due(now);
            if due && !self.flows[i].retiring {
                self.scan(i);
            }
        }
        for i in 0..self.flows.len() {
            if self.flows[i].retiring {
                self.retire_step(i);
                continue;
            }
            self.read_flow(i);
            self.timers(i);
        }
        self.close_idle();
        if !self.waiting_to_start.is_empty() {
            self.start_waiting_flows();
        }
        if self.store.has_staged() && now >= self.last_commit + COMMIT_EVERY && now >= self.commit_retry_at {
            self.commit();
        }
        self.metrics.heartbeat();
        if self.flows.iter().all(|f| f.tails.initial_scan_done() || f.retiring) {
            self.metrics.set_ready();
        }
        if now >= self.last_publish + PUBLISH_EVERY {
            self.last_publish = now;
            self.publish_metrics();
        }
        if now >= self.last_status + Duration::from_secs(self.cfg.status_period_secs) {
            self.last_status = now;
            self.log_progress();
        }
    }

    /// SIGHUP: loads the configuration again. Unchanged flows go on untouched; removed flows send
    /// what they read and go once it is acknowledged; changed flows do the same and then start
    /// again from their positions; new flows start. A configuration that does not load is
    /// refused and the running one kept. Settings that only apply at start are reported.
    fn reload(&mut self) {
        let new = match crate::config::load(&self.cfg.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    "SIGHUP: the configuration {} is refused; the running configuration is kept.\n{e}",
                    self.cfg.path.display()
                );
                return;
            }
        };
        for w in &new.warnings {
            tracing::warn!("{w}");
        }
        let old = &self.cfg;
        let mut at_restart = Vec::new();
        if new.checkpoint_file != old.checkpoint_file {
            at_restart.push("the checkpoint file");
        }
        // compared by value: a rotated secret key (which never prints) is a change too. The
        // flows sending to AWS start again with the new settings; CloudWatch keeps its client
        let aws_changed = new.aws != old.aws;
        if aws_changed && old.cloudwatch.emit_metrics {
            at_restart.push("the AWS settings of CloudWatch");
        }
        if new.cloudwatch != old.cloudwatch {
            at_restart.push("CloudWatch");
        }
        if new.http != old.http {
            at_restart.push("the HTTP endpoint");
        }
        if !at_restart.is_empty() {
            tracing::warn!("SIGHUP: changes to {} apply at the next restart", at_restart.join(", "));
        }
        if aws_changed {
            self.cfg.aws = new.aws.clone();
            tracing::info!("SIGHUP: the AWS settings changed (credentials included): the flows sending to AWS start again with them");
        }
        let (mut kept, mut started, mut changed, mut removed) = (0, 0, 0, 0);
        for fi in 0..self.flows.len() {
            let f = &self.flows[fi];
            if f.retiring {
                continue;
            }
            match new.flows.iter().find(|n| n.id == f.flow.id) {
                Some(n) if *n == f.flow && !(aws_changed && n.destination.aws().is_some()) => kept += 1,
                Some(n) => {
                    changed += 1;
                    self.waiting_to_start.push(n.clone());
                    self.retire(fi);
                }
                None => {
                    removed += 1;
                    self.retire(fi);
                }
            }
        }
        for n in &new.flows {
            let running = self.flows.iter().any(|f| !f.retiring && f.flow.id == n.id);
            let waiting = self.waiting_to_start.iter().any(|w| w.id == n.id);
            if !running && !waiting {
                started += 1;
                self.waiting_to_start.push(n.clone());
            }
        }
        self.cfg.max_bytes_in_flight = new.max_bytes_in_flight;
        self.cfg.max_open_files = new.max_open_files;
        self.cfg.idle_close_ms = new.idle_close_ms;
        self.cfg.status_period_secs = new.status_period_secs;
        self.cfg.shutdown_timeout_ms = new.shutdown_timeout_ms;
        self.cfg.flows = new.flows;
        self.metrics.in_flight_budget_bytes.set(self.cfg.max_bytes_in_flight as i64);
        tracing::info!("SIGHUP: configuration reloaded: {kept} flows unchanged, {started} started, {changed} changed (they restart once what they read is acknowledged), {removed} removed");
        self.start_waiting_flows();
    }

    /// Stops reading a flow: its partial records and batch are sent, its sink finishes.
    fn retire(&mut self, fi: usize) {
        let Engine { flows, in_flight, .. } = self;
        let f = &mut flows[fi];
        f.retiring = true;
        f.retire_deadline = Some(Instant::now() + Duration::from_millis(self.cfg.shutdown_timeout_ms));
        let FlowState { flow, chain, out, stats, tails, .. } = f;
        let mut pipe = FlowPipe { flow, chain, stats, out, in_flight, others_held: 0, budget: 0, share: 0 };
        tails.flush_assemblers(&mut pipe);
        let FlowPipe { out, flow, .. } = pipe;
        out.send();
        out.sink = None;
        tracing::info!(flow = %flow.id, "stopping this flow (reload): sending what it read");
    }

    /// A retiring flow goes once everything it sent is acknowledged.
    fn retire_step(&mut self, fi: usize) {
        if self.retired.contains(&fi) {
            return;
        }
        let f = &self.flows[fi];
        let unacknowledged = f.out.waiting > 0 || f.tails.outstanding() > 0;
        if unacknowledged && f.retire_deadline.is_none_or(|at| Instant::now() < at) {
            return;
        }
        let f = &mut self.flows[fi];
        if unacknowledged {
            tracing::warn!(
                flow = %f.flow.id,
                "{} bytes this flow sent were not acknowledged within the shutdown timeout ({} ms): it is stopped anyway, and what was not acknowledged is read again by the flow that replaces it (or at the next start)",
                f.out.in_flight,
                self.cfg.shutdown_timeout_ms
            );
            self.in_flight = self.in_flight.saturating_sub(f.out.in_flight);
            f.out.in_flight = 0;
            // a sink stalled for good may never return: its threads are left to end on their own
            f.sink_threads.clear();
        }
        f.tails.release(&mut self.store);
        for h in f.sink_threads.drain(..) {
            let _ = h.join();
        }
        let id = f.flow.id.clone();
        if !self.cfg.flows.iter().any(|n| n.id == id) {
            self.metrics.remove_flow(&id);
        }
        self.retired.insert(fi);
        self.commit();
        tracing::info!(flow = %id, "flow stopped; its positions are saved");
        self.start_waiting_flows();
    }

    /// A flow whose sink worker died is stopped at once and started again from its saved
    /// positions (what it sent and was not acknowledged is sent again), after a delay that
    /// doubles with each death in the last ten minutes (1 s up to 64 s).
    fn sink_died(&mut self, d: crate::sinks::supervise::WorkerDied) {
        let Some(f) = self.flows.get(d.flow).filter(|f| !f.retiring) else { return };
        f.metrics.sink_restarts.inc();
        let id = f.flow.id.clone();
        let flow = f.flow.clone();
        let now = Instant::now();
        let deaths = self.sink_deaths.entry(id.clone()).or_default();
        deaths.retain(|t| now.duration_since(*t) < Duration::from_secs(600));
        deaths.push(now);
        let delay = Duration::from_secs(1 << (deaths.len() - 1).min(6));
        tracing::error!(flow = %id, "{}: the flow is started again from its saved positions in {} s (what it sent and was not acknowledged is sent again)", d.reason, delay.as_secs());
        self.retire(d.flow);
        self.flows[d.flow].retire_deadline = Some(now);
        self.restart_not_before.insert(id, now + delay);
        self.waiting_to_start.push(flow);
    }

    /// Starts the flows of a reload whose previous version (same id) has retired, and flows
    /// restarted after their sink died once their delay passed.
    fn start_waiting_flows(&mut self) {
        let waiting = std::mem::take(&mut self.waiting_to_start);
        let now = Instant::now();
        for flow in waiting {
            let busy = self.flows.iter().enumerate().any(|(i, f)| f.flow.id == flow.id && !self.retired.contains(&i));
            let delayed = self.restart_not_before.get(&flow.id).is_some_and(|t| now < *t);
            if busy || delayed {
                self.waiting_to_start.push(flow);
                continue;
            }
            let index = self.flows.len();
            match start_flow(&self.cfg, &flow, index, &mut self.store, &[], &self.events_tx, &self.metrics, &self.ctx) {
                Ok(state) => {
                    tracing::info!(flow = %flow.id, "flow started (reload)");
                    self.flows.push(state);
                }
                Err(e) => tracing::error!(flow = %flow.id, "cannot start this flow: {e:#}"),
            }
        }
    }

    /// Gives the metrics what changed in the engine's figures, and how far each flow lags.
    fn publish_metrics(&mut self) {
        self.acked_since_publish = false;
        let m = &self.metrics;
        m.open_files.set(self.flows.iter().map(|f| f.tails.open_files()).sum::<usize>() as i64);
        m.in_flight_bytes.set(self.in_flight as i64);
        m.line_buffer_bytes.set(self.held_except(usize::MAX) as i64);
        for (fi, f) in self.flows.iter_mut().enumerate() {
            if self.retired.contains(&fi) {
                continue;
            }
            let fm = f.metrics.clone();
            let (s, p) = (f.stats, f.published);
            fm.records_parsed.inc_by(s.records - p.records);
            fm.bytes_read.inc_by(s.bytes_read - p.bytes_read);
            fm.records_dropped.inc_by(s.dropped - p.dropped);
            fm.records_truncated.inc_by(s.truncated - p.truncated);
            fm.records_split.inc_by(s.split - p.split);
            fm.processing_errors.inc_by(s.processing_errors - p.processing_errors);
            fm.processor_panics.inc_by(s.processor_panics - p.processor_panics);
            fm.note_dead_letters(s.dead_lettered - p.dead_lettered);
            fm.consecutive_processing_errors.set(s.consecutive_processing_errors as i64);
            f.published = s;
            let files = f.tails.behind();
            let total: u64 = files.iter().map(|(_, b)| b).sum();
            fm.bytes_behind.set(total as i64);
            fm.files_behind.set(files.iter().filter(|(_, b)| *b > 0).count() as i64);
            fm.checkpoint_age_seconds.set(if total > 0 { f.last_advance.elapsed().as_secs() as i64 } else { 0 });
            fm.set_files_behind(&files);
            fm.set_stalled_since(f.out.waiting_since.map(|t| crate::ops::metrics::now_ms().saturating_sub(t.elapsed().as_millis() as u64)));
        }
    }

    /// One line per flow, as the Kinesis Agent's "Tailer Progress" lines.
    fn log_progress(&mut self) {
        self.publish_metrics();
        for fm in self.metrics.flows() {
            tracing::info!(
                flow = %fm.id,
                "progress: {} records parsed ({} bytes), {} sent to {}, {} send errors, {} dead-lettered; {} bytes behind in {} files",
                fm.records_parsed.get(),
                fm.bytes_read.get(),
                fm.records_sent.get(),
                fm.destination,
                fm.record_send_errors.get(),
                fm.records_dead_lettered.get(),
                fm.bytes_behind.get(),
                fm.files_behind.get()
            );
        }
    }

    fn commit(&mut self) {
        self.last_commit = Instant::now();
        match self.store.commit() {
            Ok(_) => {
                self.metrics.checkpoint_committed();
                if let Some(since) = self.commit_failing_since.take() {
                    tracing::info!("checkpoint database writable again after {:?}; positions saved", since.elapsed());
                }
            }
            Err(e) => {
                self.metrics.checkpoint_commit_failed(&e.to_string());
                self.commit_retry_at = Instant::now() + Duration::from_secs(2);
                self.commit_failing_since.get_or_insert_with(Instant::now);
                if self.commit_error_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::error!("{e}; shipping continues and positions are kept in memory until a write succeeds");
                    self.commit_error_logged = Some(Instant::now());
                }
            }
        }
    }

    fn watch(&mut self, dirs: &[PathBuf]) {
        let Some(w) = self.watcher.as_mut() else { return };
        for d in dirs {
            if self.watched.contains(d) {
                continue;
            }
            match w.watch(d, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(d.clone());
                }
                Err(e) => tracing::debug!("cannot watch {}: {e}", d.display()),
            }
        }
    }

    fn scan(&mut self, fi: usize) {
        let now = Instant::now();
        let mut scan = crate::source::discover::Scan::default();
        let f = &mut self.flows[fi];
        f.discovery.scan(&mut scan);
        report_scan_problems(f, &scan);
        let mut dirs = std::mem::take(&mut scan.dirs);
        dirs.extend(scan.found.iter().filter_map(|f| f.target_dir.clone()));
        let mark_started = !f.tails.initial_scan_done() && f.tails.first_start();
        f.tails.on_scan(now, &scan, &mut self.store);
        if mark_started {
            if let Err(e) = self.store.set_meta(&started_key(&f.flow.id), "1") {
                tracing::warn!("{e}");
            }
        }
        self.watch(&dirs);
    }

    /// The budget as flow `fi` sees it.
    fn room(&self, fi: usize) -> Room {
        let f = &self.flows[fi];
        Room {
            in_flight: self.in_flight,
            others_held: self.held_except(fi),
            budget: self.cfg.max_bytes_in_flight,
            share: self.flow_share(),
            flow_in_flight: f.out.in_flight,
            backed_up: f.out.is_backed_up(),
        }
    }

    /// Bytes the tails' buffers hold, of every flow but `fi`.
    fn held_except(&self, fi: usize) -> u64 {
        self.flows.iter().enumerate().filter(|(i, _)| *i != fi).map(|(_, f)| f.tails.held()).sum()
    }

    /// Runs `body` with flow `fi`'s tails and its record pipeline.
    fn with_pipe<R>(&mut self, fi: usize, body: impl FnOnce(&mut TailSet<RealFs>, &mut FlowPipe<'_>, &mut Store, &mut [u8]) -> R) -> R {
        let (others_held, share, budget) = (self.held_except(fi), self.flow_share(), self.cfg.max_bytes_in_flight);
        let Engine { flows, store, buf, in_flight, .. } = self;
        let FlowState { flow, chain, out, stats, tails, .. } = &mut flows[fi];
        let mut pipe = FlowPipe { flow, chain, stats, out, in_flight, others_held, budget, share };
        body(tails, &mut pipe, store, buf)
    }

    fn read_flow(&mut self, fi: usize) {
        let now = Instant::now();
        self.with_pipe(fi, |tails, pipe, store, buf| tails.read(now, buf, pipe, store));
        // held back by its share or the budget with nothing at the sink: what the batch holds
        // goes now, instead of at its age (a share can be smaller than a full batch)
        let (share, budget, held) = (self.flow_share(), self.cfg.max_bytes_in_flight, self.held_except(usize::MAX));
        let f = &mut self.flows[fi];
        if (f.out.in_flight >= share || self.in_flight + held >= budget) && f.out.waiting == 0 {
            f.out.send();
        }
    }

    /// Each running flow's share of the in-flight budget: a flow whose sink stalls holds at most
    /// its share, and the others go on with theirs.
    fn flow_share(&self) -> u64 {
        let running = self.flows.iter().filter(|f| !f.retiring).count().max(1) as u64;
        (self.cfg.max_bytes_in_flight / running).max(1)
    }

    fn timers(&mut self, fi: usize) {
        let now = Instant::now();
        self.with_pipe(fi, |tails, pipe, store, _| tails.tick(now, pipe, store));
        let f = &mut self.flows[fi];
        if f.out.started.is_some_and(|s| now >= s + Duration::from_millis(f.flow.buffer.max_age_ms)) {
            f.out.send();
        }
    }

    /// Closes the descriptors of idle files, the oldest first, and more while over the cap.
    fn close_idle(&mut self) {
        let idle = Duration::from_millis(self.cfg.idle_close_ms);
        let open: usize = self.flows.iter().map(|f| f.tails.open_files()).sum();
        let over = open.saturating_sub(self.cfg.max_open_files);
        let mut candidates: Vec<(Instant, usize, u64)> = Vec::new();
        for (fi, f) in self.flows.iter().enumerate() {
            candidates.extend(f.tails.idle().map(|(last, id)| (last, fi, id)));
        }
        candidates.sort();
        let now = Instant::now();
        for (i, (last, fi, id)) in candidates.into_iter().enumerate() {
            if i >= over && now < last + idle {
                break;
            }
            self.flows[fi].tails.close(id);
        }
    }

    fn shutdown(mut self) -> anyhow::Result<Vec<FlowStats>> {
        let Engine { flows, in_flight, .. } = &mut self;
        for f in flows.iter_mut() {
            // files rotated away get no more lines: what waits in them (a multi-line record, a
            // partial container line) goes now; the glob may not find them after a restart
            if f.retiring {
                continue; // already flushed when it retired, its sink closed
            }
            let FlowState { flow, chain, out, stats, tails, .. } = f;
            tails.flush_orphans(&mut FlowPipe { flow, chain, stats, out, in_flight, others_held: 0, budget: 0, share: 0 });
            f.out.send();
        }
        let deadline = Instant::now() + Duration::from_millis(self.cfg.shutdown_timeout_ms);
        while self.in_flight > 0 && !self.stop_now {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.events.recv_timeout(left) {
                Ok(Event::Delivered(d)) => self.delivered(d),
                Ok(Event::StopNow(why)) => {
                    tracing::warn!("{why} again: stopping without waiting for the rest of the acknowledgements");
                    self.stop_now = true;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if self.in_flight > 0 {
            let waiting: Vec<String> = self
                .flows
                .iter()
                .filter_map(|f| {
                    let records = f.tails.outstanding();
                    (records > 0).then(|| format!("{} ({records} pieces)", f.flow.id))
                })
                .collect();
            let when = if self.stop_now { "when the agent was stopped at once" } else { "within the shutdown timeout" };
            tracing::warn!(
                "{} bytes were not acknowledged {when}, of flows {}; they are read again at the next start",
                self.in_flight,
                waiting.join(", ")
            );
        }
        for f in &mut self.flows {
            f.out.sink = None;
        }
        if let Err(e) = self.store.commit() {
            tracing::error!("{e}; the last positions could not be saved, so some records will be sent again at the next start");
        }
        let stats = self.flows.iter().map(|f| f.stats).collect();
        for f in &mut self.flows {
            if self.in_flight == 0 {
                for h in f.sink_threads.drain(..) {
                    let _ = h.join();
                }
            }
            tracing::info!(flow = %f.flow.id, "records handed to the sink {}, dropped {}, truncated {}, split {}, dead-lettered {}, processing errors {}, lines cut at max_line_bytes {}, bytes read {}", f.stats.records, f.stats.dropped, f.stats.truncated, f.stats.split, f.stats.dead_lettered, f.stats.processing_errors, f.stats.runaway_lines, f.stats.bytes_read);
        }
        Ok(stats)
    }
}

/// Handles one framed piece: registers it for acknowledgement, converts records and batches them.
/// `source` is the tail and its current path, kept with each record for the dead-letter file.
#[allow(clippy::too_many_arguments)]
fn emit(
    flow: &Flow,
    chain: &mut Chain,
    stats: &mut FlowStats,
    acks: &mut AckTracker,
    out: &mut Outbox,
    in_flight: &mut u64,
    source: (u64, &Path),
    piece: Piece<'_>,
) {
    let r = match piece {
        Piece::Skipped { end, .. } => {
            acks.push(end, true);
            return;
        }
        Piece::Record(r) => r,
    };
    if r.runaway {
        stats.runaway_lines += 1;
    }
    // converted straight into the batch buffer
    let start = out.batch.data.len();
    match chain.convert_append(r.bytes, &mut out.batch.data) {
        Outcome::Dropped => {
            stats.dropped += 1;
            acks.push(r.end, true);
            return;
        }
        Outcome::FellBack => {
            stats.processing_errors += 1;
            stats.consecutive_processing_errors += 1;
        }
        Outcome::Panicked => {
            stats.processing_errors += 1;
            stats.consecutive_processing_errors += 1;
            stats.processor_panics += 1;
            if stats.processor_panics == 1 {
                tracing::error!(flow = %flow.id, "a processor failed on the record of {} at offset {} (a bug in logferry; please report it with that line): the record is sent as it was read, and later such records are only counted (processor_panics)", source.1.display(), r.start);
            }
        }
        Outcome::Emitted => stats.consecutive_processing_errors = 0,
    }
    stats.records += 1;
    let len = out.batch.data.len() - start;
    // a container record may report an end before its start (held back for a partial line)
    let cost = r.end.saturating_sub(r.start).max(len as u64);
    let add = |out: &mut Outbox, acks: &mut AckTracker, in_flight: &mut u64, start: usize, end: u64, cost: u64| {
        let seq = acks.push(end, false);
        out.add(flow, start, AckRef { tail: source.0, seq }, source.1, r.start, cost);
        *in_flight += cost;
    };
    if len > flow.max_record_bytes && flow.oversized == Oversized::Split {
        // pieces of at most the largest size that concatenate to the record; the file advances
        // past it only when every piece was acknowledged
        stats.split += 1;
        let record = out.batch.data.split_off(start);
        let pieces = record.len().div_ceil(flow.max_record_bytes);
        for (k, piece) in record.chunks(flow.max_record_bytes).enumerate() {
            let start = out.batch.data.len();
            out.batch.data.extend_from_slice(piece);
            let last = k + 1 == pieces;
            let share = if last { cost - (cost / pieces as u64) * (pieces as u64 - 1) } else { cost / pieces as u64 };
            // only the last piece moves the checkpoint past the record
            add(out, acks, in_flight, start, if last { r.end } else { r.start.min(r.end) }, share);
        }
        return;
    }
    if truncate_record_from(&mut out.batch.data, start, flow.max_record_bytes, &flow.truncated_record_terminator) {
        stats.truncated += 1;
    }
    add(out, acks, in_flight, start, r.end, cost);
}

/// One flow's record pipeline as its tails see it: pieces go through [`emit`] into the batch.
struct FlowPipe<'a> {
    flow: &'a Flow,
    chain: &'a mut Chain,
    stats: &'a mut FlowStats,
    out: &'a mut Outbox,
    in_flight: &'a mut u64,
    others_held: u64,
    budget: u64,
    share: u64,
}

impl Pipeline for FlowPipe<'_> {
    fn piece(&mut self, acks: &mut AckTracker, tail: u64, path: &Path, piece: Piece<'_>) {
        emit(self.flow, self.chain, self.stats, acks, self.out, self.in_flight, (tail, path), piece);
    }

    fn room(&self) -> Room {
        Room {
            in_flight: *self.in_flight,
            others_held: self.others_held,
            budget: self.budget,
            share: self.share,
            flow_in_flight: self.out.in_flight,
            backed_up: self.out.is_backed_up(),
        }
    }

    fn bytes_read(&mut self, n: u64) {
        self.stats.bytes_read += n;
    }

    fn lines_split(&mut self, n: u64) {
        self.stats.split += n;
    }
}

/// The batch a flow is filling and the channel to its sink.
struct Outbox {
    batch: Batch,
    /// When the batch got its first record.
    started: Option<Instant>,
    sink: Option<Sender<Batch>>,
    /// Batches handed to the sink and not delivered yet.
    waiting: usize,
    /// Beyond this many waiting batches, the flow's files are not read (they stay dirty).
    max_waiting: usize,
    /// Bytes of this flow read and not yet acknowledged (its share of the budget in use).
    in_flight: u64,
    /// Since when batches have waited at the sink with none delivered.
    waiting_since: Option<Instant>,
}

impl Outbox {
    fn is_backed_up(&self) -> bool {
        self.waiting >= self.max_waiting
    }

    /// Ends the record whose bytes start at `start` in the batch buffer: sends the batch first
    /// when the record does not fit, and sends it after when it is full.
    fn add(&mut self, flow: &Flow, start: usize, ack: AckRef, path: &Path, offset: u64, cost: u64) {
        // when the sink packs records, the count that matters is of packed records: the sink
        // cuts requests by it, and the batch closes by size and age
        let max_records = if flow.destination.packs_records() { u64::MAX } else { flow.buffer.max_records };
        let full = |b: &Batch, over: bool| {
            b.len() as u64 >= max_records
                || if over { b.data.len() as u64 > flow.buffer.max_bytes } else { b.data.len() as u64 >= flow.buffer.max_bytes }
        };
        if !self.batch.is_empty() && full(&self.batch, true) {
            // the batch is full without this record: send it, and start the next one with it
            let record = self.batch.data.split_off(start);
            self.send();
            self.batch.data.extend_from_slice(&record);
        }
        self.batch.commit_record(ack, cost, path, offset);
        self.in_flight += cost;
        self.started.get_or_insert_with(Instant::now);
        if full(&self.batch, false) {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.started = None;
        // the next batch is likely the size of this one: room for it up front, instead of
        // growing by doubling (copies, and up to twice the memory)
        let next = Batch::with_capacity(self.batch.data.len() + self.batch.data.len() / 8, self.batch.len());
        let b = std::mem::replace(&mut self.batch, next);
        if let Some(s) = &self.sink {
            if s.send(b).is_ok() {
                self.waiting += 1;
                self.waiting_since.get_or_insert_with(Instant::now);
            }
        }
    }
}

/// Starts one flow: its discovery, its saved positions, its sink threads. `index` is its place
/// in the engine's flows, which sinks report deliveries with.
#[allow(clippy::too_many_arguments)]
fn start_flow(
    cfg: &Config,
    flow: &Flow,
    index: usize,
    store: &mut Store,
    imported_positions: &[crate::checkpoint::KinesisAgentPosition],
    events_tx: &Sender<Event>,
    metrics: &Metrics,
    ctx: &ChainContext,
) -> anyhow::Result<FlowState> {
    let flow_metrics = metrics.add_flow(&flow.id, &flow.destination.describe());
    let discovery = Discovery::new(&flow.sources, flow.path_rules)
        .map_err(|e| anyhow::anyhow!("flow {}: {e}", flow.id))?
        .with_symlinks(flow.symlinks.clone())
        .with_own_files(crate::source::discover::own_files(cfg));
    let saved = store.rows(Some(&flow.id))?;
    let imported: HashMap<FileKey, u64> = imported_positions.iter().filter(|p| p.flow == flow.id).map(|p| (p.key, p.offset)).collect();
    // an emptied table (deleted files, pruning) is not a first start: a flag says it
    let started = store.meta(&started_key(&flow.id))?.is_some();
    let first_start = !started && saved.is_empty() && imported.is_empty();
    let (sink_tx, sink_rx) = mpsc::channel::<Batch>();
    let (delivered, died) = (events_tx.clone(), events_tx.clone());
    let sink_threads = crate::sinks::start(
        cfg,
        flow,
        index,
        &flow_metrics,
        sink_rx,
        move |d| {
            let _ = delivered.send(Event::Delivered(d));
        },
        move |d| {
            let _ = died.send(Event::SinkDied(d));
        },
    )?;
    Ok(FlowState {
        flow: flow.clone(),
        discovery,
        chain: Chain::new(&flow.processors, ctx.clone()),
        tails: TailSet::new(RealFs, flow.clone(), saved, imported, first_start, Instant::now()),
        out: Outbox {
            batch: Batch::default(),
            started: None,
            sink: Some(sink_tx),
            waiting: 0,
            // AWS sinks: one batch per request in flight and one ready; reading further
            // ahead only holds memory. Local sinks write what waits under one fsync.
            max_waiting: flow.destination.aws().map_or(usize::MAX, |a| a.in_flight_requests.max(1) + 1),
            in_flight: 0,
            waiting_since: None,
        },
        sink_threads,
        unlistable: HashSet::new(),
        refused: HashSet::new(),
        stats: FlowStats::default(),
        published: FlowStats::default(),
        last_advance: Instant::now(),
        metrics: flow_metrics,
        retiring: false,
        retire_deadline: None,
    })
}

fn started_key(flow: &str) -> String {
    format!("flow_started:{flow}")
}

/// Logs, once per path and failure, the directories a scan could not list and the paths it
/// refused, and counts them.
fn report_scan_problems(f: &mut FlowState, scan: &crate::source::discover::Scan) {
    for (dir, e) in &scan.errors {
        if f.unlistable.insert(dir.clone()) {
            f.metrics.discovery_errors.inc();
            tracing::error!(flow = %f.flow.id, "cannot list {}: {e}; files there are not found until it can be listed (retried at each scan)", dir.display());
        }
    }
    f.unlistable.retain(|d| scan.errors.iter().any(|(e, _)| e == d));
    for (path, why) in &scan.refused {
        if f.refused.insert(path.clone()) {
            f.metrics.files_refused.inc();
            tracing::warn!(flow = %f.flow.id, "not tailing {}: {why}", path.display());
        }
    }
    f.refused.retain(|p| scan.refused.iter().any(|(r, _)| r == p));
}

/// Helper for `logferry checkpoints`: current size of a file if it still has this identity.
pub fn current_size(path: &Path, key: FileKey) -> Option<u64> {
    let m = std::fs::metadata(path).ok()?;
    (FileKey::of(&m) == key).then(|| m.size())
}
