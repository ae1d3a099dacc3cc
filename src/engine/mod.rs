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
//!   ([`crate::acks`]); checkpoints are committed together about once a second and at shutdown;
//!   a failed commit is logged and retried while shipping goes on;
//! - on resume the fingerprint and the bytes before the checkpoint are checked, so a replaced or
//!   rewritten file is read from its start instead of from a stale offset;
//! - readers stop when the bytes in flight reach the global budget, or when an AWS sink already
//!   has a batch waiting for each request it may have in flight and one more: the log files are
//!   the buffer;
//! - idle, fully acknowledged files release their descriptors, and are reopened on change.
//!
//! Not done here: sending (the sinks), metrics.

mod path_index;
pub mod supervise;

use crate::acks::AckTracker;
use crate::checkpoint::{read_kinesis_agent_checkpoints, Row, Store};
use crate::config::{Config, Destination, Flow, InitialPosition, Oversized};
use crate::convert::{Chain, ChainContext, Outcome};
use crate::discover::{Discovery, Found};
use crate::framing::{truncate_record_from, LineFramer, Piece, RecordAssembler};
use crate::identity::{self, FileKey, Fingerprint, FINGERPRINT_MAX};
use crate::metrics::{FlowMetrics, Metrics};
use crate::sink::{self, AckRef, Batch, Delivered};
use notify::Watcher;
use path_index::PathIndex;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const READ_CHUNK: usize = 256 << 10;
/// Bytes read from one file before the loop turns to the others.
/// The smallest read when the share or the budget limits a read.
const MIN_READ: usize = 64 << 10;
const READ_SLICE: u64 = 4 << 20;
/// How long a rotated-away or deleted file must stay unchanged at its end before it is let go.
/// How long a truncated file's old state waits for its copytruncate copy to appear.
const COPY_WAIT: Duration = Duration::from_secs(5);
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
    SinkDied(supervise::WorkerDied),
}

impl Tail {
    /// A file about to be read from `start`; header lines are skipped when that is offset 0.
    #[allow(clippy::too_many_arguments)]
    fn new(id: u64, key: FileKey, path: PathBuf, target: Option<PathBuf>, file: File, size: u64, start: u64, flow: &Flow) -> Tail {
        let now = Instant::now();
        let skip = if start == 0 { flow.skip_header_lines } else { 0 };
        let pod = crate::container::PodInfo::from_paths(&[path.as_path()].into_iter().chain(target.as_deref()).collect::<Vec<_>>());
        Tail {
            id,
            key,
            path,
            target,
            fingerprint: identity::fingerprint(&file, size).unwrap_or_default(),
            head: head_of(&file, size),
            file: Some(file),
            framer: LineFramer::new(start, flow.max_line_bytes).streaming(flow.oversized == Oversized::Split),
            assembler: RecordAssembler::new(flow.assembly.clone(), skip).with_limit(flow.max_line_bytes).with_pod(&pod),
            acks: AckTracker::new(start),
            size,
            last_change: now,
            last_line: now,
            orphan: false,
            missed_scans: 0,
            awaiting_copy: None,
            finished: false,
            sealed: false,
            dirty: true,
            read_error_logged: false,
            held: 0,
            parked: false,
            parked_cut_line: None,
            finishing_line: None,
        }
    }

    /// Whether reading it now keeps the bytes held within `budget`, given `used` (in flight
    /// and held): a tail whose long unterminated line was released waits until that line fits.
    /// A tail in the middle of a line may always read on to its end (it holds that line
    /// already, and finishing it turns held bytes into bytes in flight); over the budget it is
    /// parked afterwards if the line is still unfinished.
    /// A parked tail is taken up when its line fits in what is left of the budget, or when
    /// nothing is in flight (what others hold then is their own unfinished lines, themselves
    /// bounded by parking): a line as long as the whole budget is not starved for ever.
    fn fits(&self, in_flight: u64, held: u64, budget: u64, max_line: usize) -> bool {
        let used = in_flight + held;
        if !self.parked {
            return used < budget || self.may_finish_line();
        }
        let line = self.size.saturating_sub(self.framer.offset()).min(max_line as u64);
        in_flight == 0 || used + line <= budget
    }

    /// Over the budget, a tail holding an unfinished line may read on to its end: the line it
    /// held when the budget filled, not the ones after it.
    fn may_finish_line(&self) -> bool {
        self.framer.pending_len() > 0 && self.finishing_line.is_none_or(|s| s == self.framer.line_start())
    }

    /// Brings `total` (the bytes every tail's buffers hold) up to date with this tail's.
    fn update_held(&mut self, total: &mut u64) {
        let now = (self.framer.held_bytes() + self.assembler.held_bytes()) as u64;
        *total = (*total + now).saturating_sub(self.held);
        self.held = now;
    }

    /// Has unread bytes that reading can get now.
    fn wants_read(&self) -> bool {
        self.dirty && !self.finished && !self.sealed && self.awaiting_copy.is_none()
    }

    /// Rotated away or deleted, confirmed, fully read: only time stands between it and its end.
    fn may_finish(&self) -> bool {
        self.orphan && self.missed_scans >= 2 && !self.finished && !self.dirty && self.awaiting_copy.is_none()
    }
}

/// One file being tailed.
struct Tail {
    id: u64,
    key: FileKey,
    path: PathBuf,
    /// The symlink target, when `path` is a link.
    target: Option<PathBuf>,
    file: Option<File>,
    fingerprint: Fingerprint,
    /// The first bytes the fingerprint was made from, to recognise a copy still being written.
    head: Vec<u8>,
    framer: LineFramer,
    assembler: RecordAssembler,
    acks: AckTracker,
    size: u64,
    last_change: Instant,
    last_line: Instant,
    /// Not found at any matching path in the last scan (rotated away or deleted).
    orphan: bool,
    /// Consecutive scans that did not find it: a listing taken during a burst of renames can
    /// miss a file once, so it is let go only when two scans agree or it is deleted.
    missed_scans: u32,
    /// Truncated: waiting for its copytruncate copy until this instant.
    awaiting_copy: Option<Instant>,
    /// Everything was read and its last line flushed; goes when fully acknowledged.
    finished: bool,
    /// A copytruncate copy holding no more than was already read from its original: never read,
    /// never taken for truncated.
    sealed: bool,
    dirty: bool,
    read_error_logged: bool,
    /// Bytes its line and record buffers hold (counted in the engine's `held`).
    held: u64,
    /// Its long unterminated line was given back to the file to stay within the budget: it is
    /// read again, from where that line starts, once the line fits.
    parked: bool,
    /// A parked tail's line cut at max_line: where it starts and how far it was searched, so
    /// taking it up again reads its first max_line bytes, not the whole line.
    parked_cut_line: Option<(u64, u64)>,
    /// Where the line starts that this tail was holding unfinished when the budget (or its
    /// flow's share) filled: over the budget it may read on only to finish that line.
    finishing_line: Option<u64>,
}

struct FlowState {
    flow: Flow,
    discovery: Discovery,
    chain: Chain,
    tails: HashMap<u64, Tail>,
    by_key: HashMap<FileKey, u64>,
    /// Checkpoints loaded at start, consumed as files are found.
    saved: HashMap<FileKey, Row>,
    /// Positions imported from the Kinesis Agent, by file.
    imported: HashMap<FileKey, u64>,
    first_start: bool,
    initial_scan_done: bool,
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
    next_scan: Instant,
    rescan_requested: bool,
    /// New files that start like a tailed file, waiting to see whether they are its copy.
    maybe_copies: HashMap<FileKey, (Instant, PathBuf, u64)>,
    /// Files that could not be opened (logged once, retried at each scan).
    unreadable: HashSet<FileKey>,
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
    path_index: PathIndex,
    in_flight: u64,
    /// Bytes the tails' line and record buffers hold; with `in_flight`, against the budget.
    held: u64,
    next_tail_id: u64,
    open_files: usize,
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
            path_index: PathIndex::default(),
            in_flight: 0,
            held: 0,
            next_tail_id: 1,
            open_files: 0,
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
            d = d.min(if f.rescan_requested { now + RESCAN_DEBOUNCE } else { f.next_scan });
            if let Some(s) = f.out.started {
                d = d.min(s + Duration::from_millis(f.flow.buffer.max_age_ms));
            }
            let budget = self.cfg.max_bytes_in_flight;
            let share = self.flow_share();
            for t in f.tails.values() {
                if t.wants_read()
                    && !f.out.is_backed_up()
                    && t.fits(self.in_flight, self.held, budget, f.flow.max_line_bytes)
                    && f.out.admits(t, share)
                {
                    return now;
                }
                if t.assembler.has_pending() {
                    d = d.min(t.last_line + Duration::from_millis(f.flow.multiline_flush_ms));
                }
                if let Some(w) = t.awaiting_copy {
                    d = d.min(w);
                }
                if t.may_finish() {
                    d = d.min(t.last_change + Duration::from_millis(f.flow.rotated_grace_ms));
                }
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
                            let tails = self.path_index.get(p);
                            for &(f, id) in tails {
                                if let Some(t) = self.flows[f].tails.get_mut(&id) {
                                    t.dirty = true;
                                }
                            }
                            // a write to a file no flow tails yet: only deferred new files matter
                            if tails.is_empty() {
                                for f in &mut self.flows {
                                    if f.maybe_copies.values().any(|(_, path, _)| path == p) {
                                        f.rescan_requested = true;
                                    }
                                }
                            }
                        }
                    }
                    // opening and reading a file, the agent's own included, and attribute changes
                    // (its reads update atime): nothing to scan for; the periodic scan sees a
                    // permission change
                    EventKind::Access(_) | EventKind::Modify(notify::event::ModifyKind::Metadata(_)) => {}
                    _ => self.flows.iter_mut().for_each(|f| f.rescan_requested = true),
                }
            }
            Event::Fs(Err(e)) => {
                tracing::warn!("file notification error ({e}); rescanning");
                self.flows.iter_mut().for_each(|f| f.rescan_requested = true);
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
        let mut moved: Vec<u64> = Vec::new();
        // a batch holds long runs of one file's records: one lookup per run
        for run in d.acks.chunk_by(|a, b| a.tail == b.tail) {
            if let Some(t) = flow.tails.get_mut(&run[0].tail) {
                let mut advanced = false;
                for a in run {
                    advanced |= t.acks.ack(a.seq).is_some();
                }
                if advanced && !moved.contains(&run[0].tail) {
                    moved.push(run[0].tail);
                }
            }
        }
        if !moved.is_empty() {
            flow.last_advance = Instant::now();
        }
        for id in moved {
            stage_row(&mut self.store, &flow.flow.id, &flow.tails[&id]);
        }
    }

    /// One pass: scans that are due, reads dirty files, flushes due batches and multi-line
    /// records, lets finished files go, closes idle descriptors, commits checkpoints.
    fn work(&mut self) {
        let now = Instant::now();
        for i in 0..self.flows.len() {
            let due = self.flows[i].rescan_requested || now >= self.flows[i].next_scan;
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
        if self.flows.iter().all(|f| f.initial_scan_done || f.retiring) {
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
        for t in tails.values_mut() {
            let id = t.id;
            let Tail { assembler, acks, path, .. } = &mut *t;
            assembler.flush(|p| emit(flow, chain, stats, acks, out, in_flight, (id, path.as_path()), p));
        }
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
        let unacknowledged = f.out.waiting > 0 || f.tails.values().any(|t| t.acks.outstanding() > 0);
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
        for t in f.tails.values() {
            stage_row(&mut self.store, &f.flow.id, t);
            if t.file.is_some() {
                self.open_files -= 1;
            }
        }
        self.held = self.held.saturating_sub(f.tails.values().map(|t| t.held).sum());
        f.tails.clear();
        f.by_key.clear();
        for h in f.sink_threads.drain(..) {
            let _ = h.join();
        }
        self.path_index.remove_flow(fi);
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
    fn sink_died(&mut self, d: supervise::WorkerDied) {
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
        m.open_files.set(self.open_files as i64);
        m.in_flight_bytes.set(self.in_flight as i64);
        m.line_buffer_bytes.set(self.held as i64);
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
            let mut files = Vec::new();
            let mut total = 0;
            for t in f.tails.values().filter(|t| !t.sealed) {
                let behind = t.size.saturating_sub(t.acks.committed());
                total += behind;
                files.push((t.path.display().to_string(), behind));
            }
            fm.bytes_behind.set(total as i64);
            fm.files_behind.set(files.iter().filter(|(_, b)| *b > 0).count() as i64);
            fm.checkpoint_age_seconds.set(if total > 0 { f.last_advance.elapsed().as_secs() as i64 } else { 0 });
            fm.set_files_behind(&files);
            fm.set_stalled_since(f.out.waiting_since.map(|t| crate::metrics::now_ms().saturating_sub(t.elapsed().as_millis() as u64)));
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
        let mut scan = crate::discover::Scan::default();
        {
            let f = &mut self.flows[fi];
            f.rescan_requested = false;
            f.next_scan = Instant::now() + Duration::from_millis(f.flow.max_time_between_file_tracker_refresh_ms);
            f.discovery.scan(&mut scan);
            report_scan_problems(f, &scan);
        }
        let crate::discover::Scan { found, mut dirs, errors, .. } = scan;
        dirs.extend(found.iter().filter_map(|f| f.target_dir.clone()));
        self.watch(&dirs);
        let mut seen = HashSet::new();
        let mut new_files = Vec::new();
        for item in found {
            seen.insert(item.key);
            let f = &mut self.flows[fi];
            match f.by_key.get(&item.key).copied() {
                Some(id) => {
                    let t = f.tails.get_mut(&id).expect("indexed tail");
                    if t.path != item.path {
                        tracing::debug!(flow = %f.flow.id, "{} is now {}", t.path.display(), item.path.display());
                        self.path_index.remove(&t.path, (fi, id));
                        t.path = item.path.clone();
                    }
                    t.target = item.target_dir.as_ref().and_then(|_| std::fs::canonicalize(&item.path).ok());
                    self.path_index.insert(t.path.clone(), (fi, id));
                    if let Some(target) = &t.target {
                        self.path_index.insert(target.clone(), (fi, id));
                    }
                    t.orphan = false;
                    t.missed_scans = 0;
                    // a parked tail waits for its file to change, not for the bytes it gave back
                    if !t.sealed && (item.size != t.size || (item.size > t.framer.offset() && !t.parked)) {
                        t.dirty = true;
                    }
                    // bytes behind stay true while the tail is not read (a stalled sink)
                    if !t.sealed && item.size > t.size {
                        t.size = item.size;
                    }
                }
                None => new_files.push(item),
            }
        }
        // a file rotated away under a name no pattern matches is still written to by a slow
        // writer for a while: its growth is looked for at each scan, through its descriptor
        for t in self.flows[fi].tails.values_mut().filter(|t| t.orphan && !t.finished && !t.sealed && !t.dirty) {
            if t.file.as_ref().and_then(|f| f.metadata().ok()).is_some_and(|m| m.len() > t.framer.offset()) {
                t.dirty = true;
            }
        }
        // files no longer found at a matching path keep being read through their descriptor; a
        // directory that could not be listed says nothing about the files in it
        for t in self.flows[fi].tails.values_mut() {
            let unlisted = errors.iter().any(|(dir, _)| t.path.starts_with(dir));
            if !seen.contains(&t.key) && t.awaiting_copy.is_none() && !unlisted {
                t.missed_scans += 1;
                if !t.orphan {
                    t.orphan = true;
                    // one last look at what was written before it went
                    t.dirty = !t.sealed && !t.finished;
                    // its old path may already hold a new file: events there are not its own
                    for p in [Some(&t.path), t.target.as_ref()].into_iter().flatten() {
                        self.path_index.remove(p, (fi, t.id));
                    }
                }
            }
        }
        for item in new_files {
            self.add_file(fi, item);
        }
        let f = &mut self.flows[fi];
        if !f.initial_scan_done && f.first_start {
            if let Err(e) = self.store.set_meta(&started_key(&f.flow.id), "1") {
                tracing::warn!("{e}");
            }
        }
        f.maybe_copies.retain(|k, _| seen.contains(k));
        f.unreadable.retain(|k| seen.contains(k) && !f.by_key.contains_key(k));
        f.initial_scan_done = true;
    }

    fn add_file(&mut self, fi: usize, item: Found) {
        let file = match File::open(&item.path) {
            Ok(f) => f,
            Err(e) => {
                let f = &mut self.flows[fi];
                if f.unreadable.insert(item.key) {
                    tracing::error!(flow = %f.flow.id, "cannot read {}: {e}; other files keep flowing, this one is retried at each scan", item.path.display());
                }
                return;
            }
        };
        let Ok(meta) = file.metadata() else { return };
        let key = FileKey::of(&meta);
        let size = meta.len();
        let f = &mut self.flows[fi];
        if key != item.key || f.by_key.contains_key(&key) {
            f.rescan_requested = true;
            return;
        }
        let new_head = head_of(&file, size);
        // Is it the copytruncate copy of a file whose old state waits for it? The copy may be
        // shorter than what was read: lines written between logrotate's copy and its truncate
        // were read from the original and are not in the copy.
        let waiting: Vec<u64> = f.tails.values().filter(|t| t.awaiting_copy.is_some() && !t.head.is_empty()).map(|t| t.id).collect();
        let mut copy_in_progress = false;
        for id in waiting {
            let t = &f.tails[&id];
            if new_head.len() >= t.head.len() && new_head.starts_with(&t.head) {
                let t = f.tails.get_mut(&id).expect("present");
                tracing::info!(flow = %f.flow.id, "{} is the copy of a truncated file; reading it from offset {}", item.path.display(), t.framer.offset());
                t.key = key;
                t.path = item.path.clone();
                t.file = Some(file);
                self.open_files += 1;
                t.size = size;
                t.awaiting_copy = None;
                t.orphan = false;
                t.missed_scans = 0;
                t.sealed = size <= t.framer.offset();
                t.dirty = !t.sealed;
                f.by_key.insert(key, id);
                f.maybe_copies.remove(&key);
                self.path_index.insert(item.path, (fi, id));
                stage_row(&mut self.store, &f.flow.id, &f.tails[&id]);
                return;
            }
            copy_in_progress |= t.head.starts_with(&new_head);
        }
        // An empty file, or one that so far starts like a tailed file, may be a copy being written
        // (about to be followed by a truncation): decide when it says more.
        // (a copy holds the original's bytes: sharing a banner is not enough)
        let looks_like_copy = copy_in_progress
            || f.tails.values().any(|t| {
                !t.orphan && t.awaiting_copy.is_none() && t.framer.offset() > 0 && !t.head.is_empty() && {
                    let n = new_head.len().min(t.head.len());
                    new_head[..n] == t.head[..n] && may_be_copy_of(&file, size, t)
                }
            });
        if size == 0 {
            f.maybe_copies.entry(key).or_insert((Instant::now(), item.path.clone(), 0));
            return;
        }
        if looks_like_copy {
            // one fixed deadline per candidate: looked at again then (or when a tailed file is
            // truncated), not at every event
            let entry = f.maybe_copies.entry(key).or_insert((Instant::now(), item.path.clone(), size));
            entry.2 = size;
            let deadline = entry.0 + COPY_WAIT;
            if Instant::now() < deadline {
                f.next_scan = f.next_scan.min(deadline);
                return;
            }
            tracing::warn!(flow = %f.flow.id, "{} starts like another tailed file but no truncation followed; tailing it as a file of its own", item.path.display());
        }
        f.maybe_copies.remove(&key);
        let start = match f.saved.remove(&key) {
            Some(row) => {
                let same = row.fingerprint.len <= size
                    && identity::starts_with(&file, row.fingerprint).unwrap_or(false)
                    && row.offset <= size
                    && identity::tail_hash(&file, row.offset).ok().flatten() == Some(row.tail);
                if same {
                    row.offset
                } else {
                    tracing::warn!(flow = %f.flow.id, "{} is not the file its checkpoint describes (replaced, rewritten or truncated while logferry was stopped); reading it from the start", item.path.display());
                    0
                }
            }
            None => match f.imported.remove(&key) {
                Some(offset) if offset <= size => {
                    tracing::info!(flow = %f.flow.id, "{} resumes at offset {offset} from the Kinesis Agent's checkpoint", item.path.display());
                    offset
                }
                _ if f.first_start && !f.initial_scan_done && f.flow.initial_position == InitialPosition::EndOfFile => {
                    end_of_last_line(&file, size)
                }
                _ => 0,
            },
        };
        tracing::debug!(flow = %f.flow.id, "tailing {} ({}) from offset {start} of {size}", item.path.display(), key.kinesis_agent_id());
        let id = self.next_tail_id;
        self.next_tail_id += 1;
        let target = item.target_dir.as_ref().and_then(|_| std::fs::canonicalize(&item.path).ok());
        let tail = Tail::new(id, key, item.path.clone(), target.clone(), file, size, start, &f.flow);
        self.open_files += 1;
        stage_row(&mut self.store, &f.flow.id, &tail);
        f.tails.insert(id, tail);
        f.by_key.insert(key, id);
        self.path_index.insert(item.path, (fi, id));
        if let Some(t) = target {
            self.path_index.insert(t, (fi, id));
        }
    }

    fn read_flow(&mut self, fi: usize) {
        let ids: Vec<u64> = self.flows[fi].tails.values().filter(|t| t.wants_read()).map(|t| t.id).collect();
        let budget = self.cfg.max_bytes_in_flight;
        let share = self.flow_share();
        for id in ids {
            if self.flows[fi].out.is_backed_up() {
                break;
            }
            let f = &self.flows[fi];
            if !f.tails.get(&id).is_some_and(|t| t.fits(self.in_flight, self.held, budget, f.flow.max_line_bytes) && f.out.admits(t, share))
            {
                continue;
            }
            self.read_tail(fi, id);
            self.park_if_over_budget(fi, id);
        }
        // held back by its share or the budget with nothing at the sink: what the batch holds
        // goes now, instead of at its age (a share can be smaller than a full batch)
        let f = &mut self.flows[fi];
        if (f.out.in_flight >= share || self.in_flight + self.held >= budget) && f.out.waiting == 0 {
            f.out.send();
        }
    }

    /// Each running flow's share of the in-flight budget: a flow whose sink stalls holds at most
    /// its share, and the others go on with theirs.
    fn flow_share(&self) -> u64 {
        let running = self.flows.iter().filter(|f| !f.retiring).count().max(1) as u64;
        (self.cfg.max_bytes_in_flight / running).max(1)
    }

    /// Over the budget, a tail left holding a long unterminated line (waiting for its writer,
    /// or stopped by the budget) gives it back to the file: the bytes are read again once the
    /// line fits. So what the buffers hold stays within the budget (plus the one line being
    /// completed), however many files have long lines in progress.
    fn park_if_over_budget(&mut self, fi: usize, id: u64) {
        if self.in_flight + self.held < self.cfg.max_bytes_in_flight {
            return;
        }
        let Some(t) = self.flows[fi].tails.get_mut(&id) else { return };
        // only a tail at the end of its data waits for its writer; one stopped in the middle
        // of a line reads on to its end at the next pass
        if t.held <= crate::framing::KEEP_CAPACITY as u64 || t.dirty {
            return;
        }
        let Some(to) = t.assembler.release_point(t.framer.line_start()) else { return };
        t.parked_cut_line = t.framer.cut_line().filter(|(start, _)| *start == to);
        t.framer.release(to);
        t.assembler.release();
        // it waits for the file to change (and for the line to fit)
        t.parked = true;
        t.update_held(&mut self.held);
    }

    fn read_tail(&mut self, fi: usize, id: u64) {
        self.read_tail_bytes(fi, id);
        let Engine { flows, held, .. } = self;
        let f = &mut flows[fi];
        if let Some(t) = f.tails.get_mut(&id) {
            t.update_held(held);
            f.stats.split += t.framer.take_streamed_lines();
        }
    }

    fn read_tail_bytes(&mut self, fi: usize, id: u64) {
        let budget = self.cfg.max_bytes_in_flight;
        let share = self.flow_share();
        let Engine { flows, store, buf, in_flight, held, open_files, next_tail_id, path_index, .. } = self;
        let f = &mut flows[fi];
        let FlowState { flow, chain, out, stats, tails, rescan_requested, .. } = &mut *f;
        let t = tails.get_mut(&id).expect("tail");
        t.parked = false;
        let resume_cut_line = t.parked_cut_line.take();
        if t.file.is_none() {
            // the path may hold another file now; a rotated-away file is looked for by identity
            // in its directory before giving up on it
            let by_path = if t.orphan { None } else { File::open(&t.path).ok() };
            let reopened = by_path
                .filter(|file| file.metadata().map(|m| FileKey::of(&m) == t.key).unwrap_or(false))
                .or_else(|| find_by_key(&t.path, t.key).and_then(|p| File::open(p).ok()));
            match reopened {
                Some(file) => {
                    t.file = Some(file);
                    *open_files += 1;
                }
                None => {
                    t.dirty = false;
                    *rescan_requested = true;
                    return;
                }
            }
        }
        let t_held = t.held;
        let truncated_now = {
            let Tail {
                file,
                framer,
                assembler,
                acks,
                dirty,
                last_change,
                last_line,
                read_error_logged,
                path,
                size,
                fingerprint,
                head,
                finishing_line,
                ..
            } = &mut *t;
            let file = file.as_ref().expect("opened");
            // a file truncated and written again faster than a scan still starts differently
            let replaced = file.metadata().map(|m| m.len() < framer.offset()).unwrap_or(false)
                || (fingerprint.len > 0 && !identity::starts_with(file, *fingerprint).unwrap_or(true));
            if replaced {
                *dirty = false;
                truncated(f, store, id, next_tail_id, path_index, fi);
                return;
            }
            if let Some((start, searched_to)) = resume_cut_line {
                let mut prefix = vec![0u8; flow.max_line_bytes];
                match read_full_at(file, &mut prefix, start) {
                    Ok(n) if n == prefix.len() => framer.resume_cut_line(start, &prefix, searched_to),
                    // shorter than when it was cut: read as it is now
                    _ => {}
                }
            }
            let mut read_now = 0u64;
            loop {
                // what this read adds to the buffers counts as it is read
                let holding = (*held + framer.held_bytes() as u64 + assembler.held_bytes() as u64).saturating_sub(t_held);
                let over = *in_flight + holding >= budget || out.in_flight >= share;
                if over {
                    // only to finish the line held when the budget filled
                    let same_line = finishing_line.is_none_or(|s| s == framer.line_start());
                    if framer.pending_len() == 0 || !same_line {
                        return; // stays dirty
                    }
                    finishing_line.get_or_insert(framer.line_start());
                } else {
                    *finishing_line = None;
                }
                if read_now >= READ_SLICE || out.is_backed_up() {
                    return; // stays dirty
                }
                // a read takes no more than what is left of the flow's share and of the budget
                // (at least 64 KiB, so reads stay large)
                let room = share.saturating_sub(out.in_flight).min(budget.saturating_sub(*in_flight + holding));
                let want = (room as usize).clamp(MIN_READ, buf.len());
                let n = match file.read_at(&mut buf[..want], framer.offset()) {
                    Ok(n) => n,
                    Err(e) => {
                        if !*read_error_logged {
                            tracing::error!(flow = %flow.id, "cannot read {}: {e}", path.display());
                            *read_error_logged = true;
                        }
                        *dirty = false;
                        return;
                    }
                };
                if n == 0 {
                    break;
                }
                read_now += n as u64;
                stats.bytes_read += n as u64;
                *last_change = Instant::now();
                *last_line = *last_change;
                let mut on_piece = |p: Piece<'_>| emit(flow, chain, stats, acks, out, in_flight, (id, path.as_path()), p);
                framer.push(&buf[..n], |line| assembler.push_line(line, &mut on_piece));
                if n < want {
                    break;
                }
            }
            // at the end of the data for now
            assembler.end_of_data(|p| emit(flow, chain, stats, acks, out, in_flight, (id, path.as_path()), p));
            *dirty = false;
            let Ok(meta) = file.metadata() else { return };
            *size = meta.len();
            if fingerprint.len < FINGERPRINT_MAX && *size > fingerprint.len {
                if let Ok(fp) = identity::fingerprint(file, *size) {
                    *fingerprint = fp;
                    *head = head_of(file, *size);
                }
            }
            *size < framer.offset()
        };
        if truncated_now {
            truncated(f, store, id, next_tail_id, path_index, fi);
        }
    }

    fn timers(&mut self, fi: usize) {
        let now = Instant::now();
        let Engine { flows, store, in_flight, held, open_files, path_index, .. } = self;
        let f = &mut flows[fi];
        let FlowState { flow, chain, out, stats, tails, by_key, saved, .. } = f;
        let mut gone = Vec::new();
        for t in tails.values_mut() {
            let id = t.id;
            let flush_due = t.last_line + Duration::from_millis(flow.multiline_flush_ms);
            let Tail { assembler, acks, path, .. } = &mut *t;
            if assembler.has_pending() && now >= flush_due {
                assembler.flush(|p| emit(flow, chain, stats, acks, out, in_flight, (id, path.as_path()), p));
            }
            if t.awaiting_copy.is_some_and(|w| now >= w) {
                // no copy appeared: the truncated content is gone; send what was read and end
                t.awaiting_copy = None;
                t.orphan = true;
                t.missed_scans = 2;
                t.dirty = false;
                let Tail { assembler, acks, framer, path, .. } = &mut *t;
                framer
                    .finish(|line| assembler.push_line(line, |p| emit(flow, chain, stats, acks, out, in_flight, (id, path.as_path()), p)));
                assembler.flush(|p| emit(flow, chain, stats, acks, out, in_flight, (id, path.as_path()), p));
                t.finished = true;
            }
            if t.orphan
                && !t.finished
                && t.missed_scans < 2
                && t.file.as_ref().and_then(|f| f.metadata().ok()).is_some_and(|m| m.nlink() == 0)
            {
                t.missed_scans = 2; // deleted: no scan will find it again
            }
            if t.may_finish() && now >= t.last_change + Duration::from_millis(flow.rotated_grace_ms) {
                // written to since the last read? read that first, and wait again
                if let Some(len) = t.file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()) {
                    if len > t.framer.offset() && !t.sealed {
                        t.dirty = true;
                        t.last_change = now;
                        continue;
                    }
                }
                let Tail { assembler, acks, framer, path, .. } = &mut *t;
                framer
                    .finish(|line| assembler.push_line(line, |p| emit(flow, chain, stats, acks, out, in_flight, (id, path.as_path()), p)));
                assembler.flush(|p| emit(flow, chain, stats, acks, out, in_flight, (id, path.as_path()), p));
                t.finished = true;
            }
            if t.finished && t.acks.outstanding() == 0 {
                gone.push(id);
            }
        }
        for t in tails.values_mut() {
            t.update_held(held);
        }
        for id in gone {
            let t = tails.remove(&id).expect("present");
            *held = held.saturating_sub(t.held);
            if by_key.get(&t.key) == Some(&id) {
                by_key.remove(&t.key);
                let still_exists = t.file.as_ref().and_then(|f| f.metadata().ok()).is_some_and(|m| m.nlink() > 0);
                match still_exists.then(|| row_of(&flow.id, &t)).flatten() {
                    // renamed out of the pattern: if it comes back, it resumes where it ended
                    Some(row) => {
                        saved.insert(t.key, row);
                    }
                    None => store.stage_delete(&flow.id, t.key),
                }
            }
            if t.file.is_some() {
                *open_files -= 1;
            }
            path_index.remove_tail((fi, id));
            tracing::debug!(flow = %flow.id, "finished {}", t.path.display());
        }
        if out.started.is_some_and(|s| now >= s + Duration::from_millis(flow.buffer.max_age_ms)) {
            out.send();
        }
    }

    fn close_idle(&mut self) {
        let idle = Duration::from_millis(self.cfg.idle_close_ms);
        let over = self.open_files.saturating_sub(self.cfg.max_open_files);
        let mut candidates: Vec<(Instant, usize, u64)> = Vec::new();
        for (fi, f) in self.flows.iter().enumerate() {
            for t in f.tails.values() {
                if t.file.is_some()
                    && !t.orphan
                    && !t.dirty
                    && t.awaiting_copy.is_none()
                    && t.acks.outstanding() == 0
                    && !t.assembler.has_pending()
                    && ((t.framer.pending_len() == 0 && t.size == t.framer.offset()) || t.sealed)
                {
                    candidates.push((t.last_change, fi, t.id));
                }
            }
        }
        candidates.sort();
        let now = Instant::now();
        for (i, (last, fi, id)) in candidates.into_iter().enumerate() {
            if i >= over && now < last + idle {
                break;
            }
            let t = self.flows[fi].tails.get_mut(&id).expect("present");
            t.file = None;
            self.open_files -= 1;
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
            for t in tails.values_mut().filter(|t| t.orphan && !t.finished) {
                let id = t.id;
                let Tail { assembler, acks, framer, path, .. } = &mut *t;
                framer
                    .finish(|line| assembler.push_line(line, |p| emit(flow, chain, stats, acks, out, in_flight, (id, path.as_path()), p)));
                assembler.flush(|p| emit(flow, chain, stats, acks, out, in_flight, (id, path.as_path()), p));
            }
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
                    let records: usize = f.tails.values().map(|t| t.acks.outstanding()).sum();
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

    /// Whether the flow's share leaves `t` room to read: below its share, or in the middle of a
    /// line (which it may always finish).
    fn admits(&self, t: &Tail, share: u64) -> bool {
        self.in_flight < share || t.may_finish_line()
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

/// A file shrank below what was read: its old state waits for a copytruncate copy, and the file
/// itself starts over at offset 0.
fn truncated(f: &mut FlowState, store: &mut Store, id: u64, next_tail_id: &mut u64, path_index: &mut PathIndex, fi: usize) {
    let Some(old) = f.tails.get_mut(&id) else { return };
    tracing::info!(flow = %f.flow.id, "{} was truncated at offset {}; reading it again from the start", old.path.display(), old.framer.offset());
    let key = old.key;
    let path = old.path.clone();
    let target = old.target.clone();
    let file = old.file.take();
    old.awaiting_copy = Some(Instant::now() + COPY_WAIT);
    old.dirty = false;
    f.by_key.remove(&key);
    f.rescan_requested = true;
    let Some(file) = file else { return };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let new_id = *next_tail_id;
    *next_tail_id += 1;
    let tail = Tail::new(new_id, key, path.clone(), target.clone(), file, size, 0, &f.flow);
    stage_row(store, &f.flow.id, &tail);
    f.tails.insert(new_id, tail);
    f.by_key.insert(key, new_id);
    path_index.insert(path, (fi, new_id));
    if let Some(t) = target {
        path_index.insert(t, (fi, new_id));
    }
}

fn stage_row(store: &mut Store, flow: &str, t: &Tail) {
    if let Some(row) = row_of(flow, t) {
        store.stage(row);
    }
}

/// The checkpoint row of a tail, when its file is open to hash the bytes before the offset.
fn row_of(flow: &str, t: &Tail) -> Option<Row> {
    // a sealed copy is shorter than what was read from its original: all of it is done
    let offset = if t.sealed {
        let size = t.file.as_ref().and_then(|f| f.metadata().ok()).map_or(u64::MAX, |m| m.len());
        t.acks.committed().min(size)
    } else {
        t.acks.committed()
    };
    let tail = t.file.as_ref().and_then(|f| identity::tail_hash(f, offset).ok().flatten())?;
    Some(Row {
        flow: flow.to_string(),
        key: t.key,
        path: t.path.display().to_string(),
        offset,
        fingerprint: t.fingerprint,
        tail,
        updated_at: now_secs(),
    })
}

/// The resolved AWS target of a flow's sink: its region and endpoint (`globals` are agent.json's
/// endpoint, region and default region for this service), its dead-letter file and the most
/// records a request takes; logged once as where the flow sends.
fn aws_sink_target(
    cfg: &Config,
    flow: &Flow,
    aws: &crate::config::AwsTarget,
    stream: &str,
    globals: (Option<&String>, Option<&String>, Option<&str>),
    service: &str,
) -> crate::aws::SinkTarget {
    let backoff = (flow.retry_initial_backoff_ms, flow.retry_max_backoff_ms);
    let (endpoint, region, default_region) = globals;
    let mut target = crate::aws::SinkTarget::resolve(cfg.format, &cfg.aws, aws, endpoint, region, default_region, stream, backoff);
    target.dead_letter = crate::deadletter::for_flow(&cfg.checkpoint_file, &flow.id, aws);
    target.max_request_records = flow.buffer.max_records as usize;
    let through = target.endpoint.as_deref().map(|e| format!(" through {e}")).unwrap_or_default();
    tracing::info!(flow = %flow.id, "sending to {service} {} in {}{through}", target.stream, target.region);
    target
}

/// Starts `n` sink workers that share one flow's batches; `make` builds each worker's body. A
/// worker that panics or stops early is reported to the engine (`Event::SinkDied`).
fn spawn_workers<W: FnOnce() + Send + 'static>(
    index: usize,
    n: usize,
    batches: Receiver<Batch>,
    events: &Sender<Event>,
    make: impl Fn(crate::aws::SharedBatches) -> W,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let shared = crate::aws::SharedBatches(std::sync::Arc::new(std::sync::Mutex::new(batches)));
    (0..n.max(1))
        .map(|w| {
            let body = make(shared.clone());
            let (shared, events) = (shared.clone(), events.clone());
            let still_open = move || shared.0.lock().is_ok_and(|r| !matches!(r.try_recv(), Err(mpsc::TryRecvError::Disconnected)));
            std::thread::Builder::new().name(format!("sink-{index}-{w}")).spawn(move || {
                supervise::run_watched(index, body, still_open, |d| {
                    let _ = events.send(Event::SinkDied(d));
                })
            })
        })
        .collect()
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
        .with_own_files(crate::discover::own_files(cfg));
    let saved: HashMap<FileKey, Row> = store.rows(Some(&flow.id))?.into_iter().map(|r| (r.key, r)).collect();
    let imported: HashMap<FileKey, u64> = imported_positions.iter().filter(|p| p.flow == flow.id).map(|p| (p.key, p.offset)).collect();
    // an emptied table (deleted files, pruning) is not a first start: a flag says it
    let started = store.meta(&started_key(&flow.id))?.is_some();
    let first_start = !started && saved.is_empty() && imported.is_empty();
    let (sink_tx, sink_rx) = mpsc::channel::<Batch>();
    let ev = events_tx.clone();
    let on_delivered = move |d| {
        let _ = ev.send(Event::Delivered(d));
    };
    let sink_threads = match &flow.destination {
        Destination::Firehose { stream, aws, aggregate_bytes } => {
            let globals = (cfg.aws.firehose_endpoint.as_ref(), None, Some("us-east-1"));
            let target = aws_sink_target(cfg, flow, aws, stream, globals, "Firehose delivery stream");
            let aggregate_bytes = *aggregate_bytes;
            let m = flow_metrics.clone();
            spawn_workers(index, aws.in_flight_requests, sink_rx, events_tx, move |batches| {
                let (t, m, d) = (target.clone(), m.clone(), on_delivered.clone());
                move || crate::firehose::run(t, aggregate_bytes, index, m, batches, d)
            })?
        }
        Destination::Kinesis { stream, aws, partition_key, kpl_aggregate_bytes, limits } => {
            let globals = (cfg.aws.kinesis_endpoint.as_ref(), cfg.aws.kinesis_region.as_ref(), None);
            let target = aws_sink_target(cfg, flow, aws, stream, globals, "Kinesis data stream");
            let options = crate::kinesis::KinesisOptions {
                partition_key: partition_key.clone(),
                kpl_aggregate_bytes: *kpl_aggregate_bytes,
                limits: *limits,
            };
            let m = flow_metrics.clone();
            spawn_workers(index, aws.in_flight_requests, sink_rx, events_tx, move |batches| {
                let (t, o, m, d) = (target.clone(), options.clone(), m.clone(), on_delivered.clone());
                move || crate::kinesis::run(t, o, index, m, batches, d)
            })?
        }
        other => {
            let local = match other {
                Destination::File { path, mode } => sink::LocalSink::File(path.clone(), *mode),
                _ => sink::LocalSink::Stdout,
            };
            vec![std::thread::Builder::new().name(format!("sink-{index}")).spawn({
                let (m, events) = (flow_metrics.clone(), events_tx.clone());
                // it returns only once its channel is closed
                move || {
                    supervise::run_watched(
                        index,
                        || sink::run_local(local, index, m, sink_rx, on_delivered),
                        || false,
                        |d| {
                            let _ = events.send(Event::SinkDied(d));
                        },
                    )
                }
            })?]
        }
    };
    Ok(FlowState {
        flow: flow.clone(),
        discovery,
        chain: Chain::new(&flow.processors, ctx.clone()),
        tails: HashMap::new(),
        by_key: HashMap::new(),
        saved,
        imported,
        first_start,
        initial_scan_done: false,
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
        next_scan: Instant::now(),
        rescan_requested: true,
        maybe_copies: HashMap::new(),
        unreadable: HashSet::new(),
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
fn report_scan_problems(f: &mut FlowState, scan: &crate::discover::Scan) {
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

/// A file with this identity in the directory of `path` (a sibling it was rotated to).
fn find_by_key(path: &Path, key: FileKey) -> Option<PathBuf> {
    let dir = path.parent()?;
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| std::fs::metadata(p).map(|m| FileKey::of(&m) == key).unwrap_or(false))
}

/// The first bytes of a file (at most the fingerprint's length).
fn head_of(file: &File, size: u64) -> Vec<u8> {
    let mut head = vec![0u8; size.min(FINGERPRINT_MAX) as usize];
    match file.read_exact_at(&mut head, 0) {
        Ok(()) => head,
        Err(_) => Vec::new(),
    }
}

/// Offset just after the last `\n` of a file (`END_OF_FILE`: an unterminated last line is read
/// once it is complete).
fn end_of_last_line(file: &File, size: u64) -> u64 {
    let mut buf = vec![0u8; 64 << 10];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        if file.read_exact_at(chunk, start).is_err() {
            return size;
        }
        if let Some(p) = memchr::memrchr(b'\n', chunk) {
            return start + p as u64 + 1;
        }
        end = start;
    }
    0
}

/// Helper for `logferry checkpoints`: current size of a file if it still has this identity.
pub fn current_size(path: &Path, key: FileKey) -> Option<u64> {
    let m = std::fs::metadata(path).ok()?;
    (FileKey::of(&m) == key).then(|| m.size())
}

/// Whether the file `copy` (`len` bytes) may be a copy of the tailed file `original`. It is not
/// when the original is still the file that was read (not shorter than what was read, same
/// first bytes) and holds other bytes than the copy just before `len` (up to 4 KiB): a file
/// that only shares a banner. A truncated or rewritten original may have been copied.
fn may_be_copy_of(copy: &File, len: u64, original: &Tail) -> bool {
    let Some(file) = original.file.as_ref() else { return true };
    let unchanged = file.metadata().is_ok_and(|m| m.len() >= original.framer.offset().max(len))
        && identity::starts_with(file, original.fingerprint).unwrap_or(false);
    if !unchanged {
        return true;
    }
    let n = len.min(4096) as usize;
    let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
    let at = len - n as u64;
    match (read_full_at(copy, &mut a, at), read_full_at(file, &mut b, at)) {
        (Ok(x), Ok(y)) if x == n && y == n => a == b,
        _ => true,
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends; the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
