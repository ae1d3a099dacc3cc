//! The run loop: discover → tail → framing → convert → batch → sink, and acknowledgements back
//! to the checkpoint store. One thread runs it; each sink runs on its own thread.
//!
//! Guarantees:
//! - every matching file of a flow is tailed at once; new files and writes are noticed through
//!   inotify (`source::watch`), with a periodic scan as the safety net;
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
//! - idle, fully acknowledged files release their descriptors, and are reopened on change; the
//!   tailed files hold at most `max_open_files` descriptors, within the open-file limit less what
//!   the agent keeps for itself ([`descriptors`]), each flow its share.
//!
//! Not done here: sending (the sinks), metrics.

mod backlog;
pub mod descriptors;
mod flow;
mod lifecycle;
mod memory;
mod reload;
mod report;

use crate::batch::pipeline::{FlowPipe, FlowStats};
use crate::batch::Delivered;
use crate::checkpoint::committer::Committer;
use crate::checkpoint::{read_kinesis_agent_checkpoints, Store};
use crate::config::{Config, Flow};
use crate::convert::ChainContext;
use crate::ops::metrics::Metrics;
use crate::source::fs::RealFs;
use crate::source::identity::FileKey;
use crate::source::tail::{Room, TailSet};
use crate::source::watch::DirNotice;
use flow::{hold_flow, report_scan_problems, start_flow, started_key, FlowState};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest read.
const READ_CHUNK: usize = 256 << 10;
const RESCAN_DEBOUNCE: Duration = Duration::from_millis(50);
/// How often a scan lists every directory and looks at every file afresh; between those, a
/// watched directory that did not change is taken as its last listing found it
/// ([`crate::source::discover::Reuse`]): a file's growth is notified. On a host where a full
/// scan takes longer than [`FULL_SCAN_EVERY`] / [`FULL_SCAN_SHARE`], it runs every
/// `FULL_SCAN_SHARE` times its duration instead: the safety net takes at most 0.5 % of a core.
pub(crate) const FULL_SCAN_EVERY: Duration = Duration::from_secs(60);
pub(crate) const FULL_SCAN_SHARE: u32 = 200;

/// Why the engine could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("flow {flow}: {reason}")]
    Sources { flow: String, reason: String },
    #[error("flow {flow}: cannot start its sink workers: {source}")]
    SinkWorkers {
        flow: String,
        #[source]
        source: std::io::Error,
    },
}

/// What wakes the loop.
pub enum Event {
    Fs(crate::source::watch::DirNotice),
    Delivered(Delivered),
    Stop(&'static str),
    /// Stop without waiting for acknowledgements (a second SIGTERM).
    StopNow(&'static str),
    /// Load the configuration file again (SIGHUP).
    Reload,
    /// A sink worker panicked or stopped while its flow still sends it batches.
    SinkDied(crate::sinks::supervise::WorkerDied),
    /// A journald source has output waiting.
    Journal,
}

/// What handling an event calls for.
#[derive(Debug, Clone, Copy)]
enum Handled {
    /// The engine stops, for this reason.
    Stop(&'static str),
    /// A pass over the flows.
    Pass,
}

pub struct Engine {
    cfg: Config,
    flows: Vec<FlowState>,
    store: Store,
    events: Receiver<Event>,
    events_tx: Sender<Event>,
    watcher: Option<crate::source::watch::DirWatcher>,
    watched: HashSet<PathBuf>,
    /// The watched directories whose files' writes the kernel tells (not a network or FUSE
    /// file system, whose other writers it does not see): only these are taken from their last
    /// listing between full scans.
    notified: HashSet<PathBuf>,
    in_flight: u64,
    buf: Vec<u8>,
    committer: Committer,
    ctx: ChainContext,
    /// Acknowledgements came since the metrics were last given the lag.
    acked_since_publish: bool,
    /// Changed flows of a reload, started once their previous version has retired.
    waiting_to_start: Vec<Flow>,
    /// Flows a reload holds back, held once no flow no longer configured is retiring (it may
    /// have positions for their files).
    waiting_to_hold: Vec<crate::config::HeldFlow>,
    /// Flows restarted after their sink died wait until then.
    restart_not_before: HashMap<String, Instant>,
    /// When each flow's sink died, over the last ten minutes.
    sink_deaths: HashMap<String, Vec<Instant>>,
    /// Flows (by index) retired for good: nothing left of them but their place.
    retired: HashSet<usize>,
    metrics: Arc<Metrics>,
    last_publish: Instant,
    last_status: Instant,
    /// When free memory was last given back ([`memory`]).
    last_trim: Instant,
    /// A second stop signal came: shutdown does not wait for acknowledgements.
    stop_now: bool,
    /// The open-file limit and the descriptors the tailed files may hold.
    file_cap: descriptors::FileCap,
}

/// How often the metrics get the engine's figures.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// The longest the run loop sleeps: its heartbeat tells /health it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

impl Engine {
    /// Opens the checkpoint store and prepares every flow; nothing is read yet.
    pub fn new(cfg: Config, ctx: ChainContext) -> Result<Engine, EngineError> {
        let mut store = Store::open(&cfg.checkpoint_file)?;
        // while running, a locked database must not stall shipping: fail fast and retry later
        store.set_lock_wait(Duration::from_millis(200))?;
        match store.prune(cfg.checkpoint_ttl_days, crate::checkpoint::now_secs(), |r| current_size(Path::new(&r.path), r.key).is_some()) {
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
        let watcher = match crate::source::watch::DirWatcher::start(move |n| {
            let _ = tx.send(Event::Fs(n));
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("file notifications unavailable ({e}); changes are found by the periodic scan only");
                None
            }
        };
        let limit = match descriptors::raise_open_file_limit() {
            Ok((limit, Some(before))) => {
                tracing::info!("raised the open-file limit from {before} to {limit}");
                limit
            }
            Ok((limit, None)) => limit,
            Err(e) => {
                tracing::warn!("cannot read the open-file limit ({e}); taking it to be 1024");
                1024
            }
        };
        let file_cap = descriptors::FileCap::new(cfg.max_open_files, limit);
        if let Some(w) = file_cap.warning(cfg.max_open_files) {
            tracing::warn!("{w}");
        }
        let metrics = Arc::new(Metrics::new(&[]));
        metrics.open_files_limit.set(file_cap.cap as i64);
        metrics.in_flight_budget_bytes.set(cfg.max_bytes_in_flight as i64);
        metrics.set_unhealthy_dead_letters(cfg.http.unhealthy_dead_letters);
        let mut flows = Vec::new();
        for flow in &cfg.flows {
            flows.push(start_flow(&cfg, flow, flows.len(), &mut store, &imported_positions, &events_tx, &metrics, &ctx)?);
        }
        for held in &cfg.held {
            hold_flow(&cfg, held, &mut store, &imported_positions)?;
        }
        metrics.set_held(cfg.held.iter().map(|h| (h.flow.id.clone(), h.reason())).collect());
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
            notified: HashSet::new(),
            in_flight: 0,
            buf: vec![0; READ_CHUNK],
            committer: Committer::new(Instant::now()),
            ctx,
            acked_since_publish: false,
            waiting_to_start: Vec::new(),
            waiting_to_hold: Vec::new(),
            restart_not_before: HashMap::new(),
            sink_deaths: HashMap::new(),
            retired: HashSet::new(),
            metrics,
            last_publish: Instant::now(),
            last_status: Instant::now(),
            last_trim: Instant::now(),
            stop_now: false,
            file_cap,
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
    pub fn run(mut self) -> Result<Vec<FlowStats>, EngineError> {
        let reason;
        loop {
            let (at, heartbeat_only) = self.next_deadline();
            let timeout = at.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(timeout) {
                Ok(ev) => {
                    let mut handled = self.handle(ev);
                    while !matches!(handled, Handled::Stop(_)) {
                        let Ok(ev) = self.events.try_recv() else { break };
                        handled = self.handle(ev);
                    }
                    if let Handled::Stop(r) = handled {
                        reason = r;
                        break;
                    }
                }
                // nothing else was due: a pass over every file would find nothing to do
                Err(RecvTimeoutError::Timeout) if heartbeat_only => {
                    self.metrics.heartbeat();
                    continue;
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

    /// The earliest instant something is due, and whether that is only the heartbeat.
    fn next_deadline(&self) -> (Instant, bool) {
        let now = Instant::now();
        let heartbeat = now + HEARTBEAT_EVERY;
        let mut d = heartbeat;
        d = d.min(self.last_status + Duration::from_secs(self.cfg.status_period_secs));
        for j in self.flows.iter().filter(|f| !f.retiring).flat_map(|f| &f.journals) {
            if let Some(t) = j.restart_due() {
                d = d.min(t);
            }
        }
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
                    return (now, false);
                }
                d = d.min(at);
            }
        }
        if let Some(at) = self.committer.next_due(self.store.has_staged()) {
            d = d.min(at);
        }
        (d.max(now), d == heartbeat)
    }

    fn handle(&mut self, ev: Event) -> Handled {
        match ev {
            Event::Stop(why) => return Handled::Stop(why),
            Event::StopNow(why) => {
                self.stop_now = true;
                return Handled::Stop(why);
            }
            Event::Reload => self.reload(),
            Event::Delivered(d) => self.delivered(d),
            Event::SinkDied(d) => self.sink_died(d),
            Event::Journal => {}
            Event::Fs(DirNotice::Written(p)) => {
                for f in &mut self.flows {
                    f.tails.changed(&p);
                }
            }
            Event::Fs(DirNotice::Changed) => self.flows.iter_mut().for_each(|f| f.tails.request_scan()),
            // the kernel's queue overflowed, or reading it failed: every file is looked at
            Event::Fs(DirNotice::Lost(why)) => {
                tracing::warn!("file notifications were lost ({why}); looking at every file");
                self.full_scan_now();
            }
        }
        Handled::Pass
    }

    /// The next scan of every flow lists every directory and looks at every file.
    fn full_scan_now(&mut self) {
        let now = Instant::now();
        self.flows.iter_mut().for_each(|f| {
            f.next_full_scan = now;
            f.tails.request_scan()
        });
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
            let seqs = run.iter().map(|a| a.seq);
            match run[0].tail.checked_sub(crate::source::journal::JOURNAL_TAIL_BASE) {
                Some(j) => {
                    if let Some(jt) = flow.journals.get_mut(j as usize) {
                        moved |= jt.ack(seqs);
                        if let Some(cursor) = jt.to_save.take() {
                            self.store.stage_meta(&journal_cursor_key(&flow.flow.id, &jt.key), &cursor);
                        }
                    }
                }
                None => moved |= flow.tails.ack(run[0].tail, seqs, &mut self.store),
            }
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
        if !self.waiting_to_start.is_empty() || !self.waiting_to_hold.is_empty() {
            self.start_waiting_flows();
        }
        if self.committer.is_due(now, self.store.has_staged()) {
            self.commit();
        }
        if memory::trim_due(self.last_trim, now) {
            self.last_trim = now;
            memory::give_back_free_memory();
        }
        self.metrics.heartbeat();
        if self.flows.iter().all(|f| f.tails.initial_scan_done() || f.retiring) {
            self.metrics.set_ready();
        }
        if now >= self.last_publish + PUBLISH_EVERY {
            self.last_publish = now;
            for fi in 0..self.flows.len() {
                if !self.flows[fi].retiring {
                    self.bound_deleted(fi);
                }
            }
            self.publish_metrics();
        }
        if now >= self.last_status + Duration::from_secs(self.cfg.status_period_secs) {
            self.last_status = now;
            self.log_progress();
        }
    }

    fn commit(&mut self) {
        self.committer.commit(Instant::now(), &mut self.store, &self.metrics);
    }

    fn watch(&mut self, dirs: &[PathBuf]) {
        let Some(w) = self.watcher.as_mut() else { return };
        for d in dirs {
            if self.watched.contains(d) {
                continue;
            }
            match w.watch(d) {
                Ok(()) => {
                    self.watched.insert(d.clone());
                    if crate::source::fs::writes_notified(d) {
                        self.notified.insert(d.clone());
                    }
                }
                Err(e) => tracing::debug!("cannot watch {}: {e}", d.display()),
            }
        }
    }

    fn scan(&mut self, fi: usize) {
        self.set_file_limit(fi);
        let now = Instant::now();
        let mut scan = crate::source::discover::Scan::default();
        let f = &mut self.flows[fi];
        // without notifications, only a look at every file finds its growth
        if self.watcher.is_none() || now >= f.next_full_scan {
            f.discovery.scan(&mut scan);
            // what the listing and the looks took (not the files a first scan starts tailing)
            f.next_full_scan = Instant::now() + FULL_SCAN_EVERY.max(now.elapsed() * FULL_SCAN_SHARE);
        } else {
            f.discovery.scan_with(&mut scan, crate::source::discover::Reuse::Unchanged { watched: &self.notified });
        }
        report_scan_problems(f, &scan);
        let mut dirs = std::mem::take(&mut scan.dirs);
        dirs.extend(scan.found.iter().filter_map(|f| f.target_dir.as_deref().map(Path::to_path_buf)));
        let mark_started = !f.tails.initial_scan_done() && f.tails.first_start();
        f.tails.on_scan(now, &scan, &mut self.store);
        for d in &scan.replaced {
            self.watched.remove(d);
            self.notified.remove(d);
        }
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

    /// Bytes the tails' buffers hold, of every flow.
    fn held_total(&self) -> u64 {
        self.flows.iter().map(|f| f.tails.held()).sum()
    }

    /// Bytes the tails' buffers hold, of every flow but `fi`.
    fn held_except(&self, fi: usize) -> u64 {
        self.flows.iter().enumerate().filter(|(i, _)| *i != fi).map(|(_, f)| f.tails.held()).sum()
    }

    /// Starts the flow's journal readers when due, and takes what they read while there is
    /// room; the cursors acknowledged meanwhile are staged.
    fn read_journals(&mut self, fi: usize, now: Instant) {
        if self.flows[fi].journals.is_empty() {
            return;
        }
        let (others_held, share, budget) = (self.held_except(fi), self.flow_share(), self.cfg.max_bytes_in_flight);
        let Engine { flows, store, in_flight, events_tx, .. } = self;
        let FlowState { flow, chain, out, stats, journals, .. } = &mut flows[fi];
        out.read_ms = crate::ops::metrics::now_ms() as i64;
        let mut pipe = FlowPipe { flow, chain, stats, out, in_flight, others_held, budget, share };
        for j in journals.iter_mut() {
            let tx = events_tx.clone();
            j.start_if_due(now, &pipe.flow.id, move || {
                let _ = tx.send(Event::Journal);
            });
            j.read(now, &pipe.flow.id, &mut pipe);
            if let Some(cursor) = j.to_save.take() {
                store.stage_meta(&journal_cursor_key(&pipe.flow.id, &j.key), &cursor);
            }
        }
    }

    /// Runs `body` with flow `fi`'s tails and its record pipeline.
    fn with_pipe<R>(&mut self, fi: usize, body: impl FnOnce(&mut TailSet<RealFs>, &mut FlowPipe<'_>, &mut Store, &mut [u8]) -> R) -> R {
        let (others_held, share, budget) = (self.held_except(fi), self.flow_share(), self.cfg.max_bytes_in_flight);
        let Engine { flows, store, buf, in_flight, .. } = self;
        let FlowState { flow, chain, out, stats, tails, .. } = &mut flows[fi];
        out.read_ms = crate::ops::metrics::now_ms() as i64;
        let mut pipe = FlowPipe { flow, chain, stats, out, in_flight, others_held, budget, share };
        body(tails, &mut pipe, store, buf)
    }

    fn read_flow(&mut self, fi: usize) {
        self.set_file_limit(fi);
        let now = Instant::now();
        self.with_pipe(fi, |tails, pipe, store, buf| tails.read(now, buf, pipe, store));
        self.read_journals(fi, now);
        // held back by its share or the budget with nothing at the sink: what the batch holds
        // goes now, instead of at its age (a share can be smaller than a full batch)
        let (share, budget, held) = (self.flow_share(), self.cfg.max_bytes_in_flight, self.held_total());
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

    /// Closes the descriptors of idle files, and of the files a flow may close while it holds
    /// more than its limit (after a reload, or another flow claiming its share).
    fn close_idle(&mut self) {
        let idle = Duration::from_millis(self.cfg.idle_close_ms);
        let now = Instant::now();
        for fi in 0..self.flows.len() {
            self.set_file_limit(fi);
            self.flows[fi].tails.close_idle(now, idle);
        }
    }

    /// Tells flow `fi` how many descriptors it may hold now ([`crate::source::tail::flow_file_limit`]).
    fn set_file_limit(&mut self, fi: usize) {
        let running = self.flows.iter().filter(|f| !f.retiring).count();
        let others = self.flows.iter().enumerate().filter(|(i, _)| *i != fi).map(|(_, f)| (f.tails.open_files(), f.tails.known_files()));
        let limit = crate::source::tail::flow_file_limit(self.file_cap.cap, running, others);
        self.flows[fi].tails.set_file_limit(limit);
    }
}

/// The metadata key of a journald source's cursor.
pub fn journal_cursor_key(flow: &str, source: &str) -> String {
    format!("journal_cursor:{flow}:{source}")
}

/// Helper for `logferry checkpoints`: current size of a file if it still has this identity.
pub fn current_size(path: &Path, key: FileKey) -> Option<u64> {
    let m = std::fs::metadata(path).ok()?;
    (FileKey::of(&m) == key).then(|| m.size())
}
