//! One running flow: its discovery, its tails, its record pipeline and its sink workers, and how
//! it is started.
//!
//! Guarantees: a flow starts from its saved positions (or the Kinesis Agent's, at the first
//! start); problems a scan meets are logged once per path and counted; a held flow (its
//! configuration would drop every line) is not started, and its files' positions are saved as
//! its first start would have set them, so a fixed flow reads what was written while it was held.
//! Not done here: running it (the engine's loop).

use super::{EngineError, Event};
use crate::batch::pipeline::{FlowStats, Outbox};
use crate::batch::Batch;
use crate::checkpoint::{Row, Store};
use crate::config::{Config, Flow, HeldFlow};
use crate::convert::{Chain, ChainContext};
use crate::ops::metrics::{FlowMetrics, Metrics};
use crate::source::discover::Discovery;
use crate::source::fs::RealFs;
use crate::source::identity::FileKey;
use crate::source::tail::TailSet;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Instant;

pub(super) struct FlowState {
    pub flow: Flow,
    pub discovery: Discovery,
    pub chain: Chain,
    pub tails: TailSet<RealFs>,
    pub out: Outbox,
    pub sink_threads: Vec<std::thread::JoinHandle<()>>,
    pub metrics: Arc<FlowMetrics>,
    /// Removed or changed by a reload: reads no more, and goes once everything read is acknowledged.
    pub retiring: bool,
    /// A retiring flow whose records are not all acknowledged by then is let go anyway (its
    /// sink may be stalled for good): the unacknowledged records are read again by its successor.
    pub retire_deadline: Option<Instant>,
    /// What the metrics were last given (counters get the difference).
    pub published: FlowStats,
    /// The flow's journald sources.
    pub journals: Vec<crate::source::journal::JournalTail>,
    /// When a checkpoint of the flow last moved.
    pub last_advance: Instant,
    /// Directories that could not be listed at the last scan (logged once).
    pub unlistable: HashSet<PathBuf>,
    /// Matching paths refused at the last scan (logged once).
    pub refused: HashSet<PathBuf>,
    /// When the next scan looks at every directory and file afresh ([`super::FULL_SCAN_EVERY`]).
    pub next_full_scan: Instant,
    pub stats: FlowStats,
}

/// A container flow's pod metadata from the Kubernetes API, started (its first list within its
/// timeout); without it (no credentials, say) records carry what their paths give, said at ERROR.
fn pod_metadata(flow: &Flow) -> Option<crate::source::kubernetes::PodMetadata> {
    let crate::framing::Assembly::Container { metadata: Some(settings), .. } = &flow.assembly else { return None };
    match crate::source::kubernetes::PodMetadata::start(&flow.id, settings) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!(flow = %flow.id, "no Kubernetes metadata for this flow: {e}; its records carry what their paths give");
            None
        }
    }
}

/// Starts one flow: its discovery, its saved positions, its sink threads. `index` is its place
/// in the engine's flows, which sinks report deliveries with.
#[allow(clippy::too_many_arguments)]
pub(super) fn start_flow(
    cfg: &Config,
    flow: &Flow,
    index: usize,
    store: &mut Store,
    imported_positions: &[crate::checkpoint::KinesisAgentPosition],
    events_tx: &Sender<Event>,
    metrics: &Metrics,
    ctx: &ChainContext,
) -> Result<FlowState, EngineError> {
    let flow_metrics = metrics.add_flow(&flow.id, &crate::sinks::facts(&flow.destination).name);
    flow_metrics.set_file_series_max(cfg.http.per_file_series);
    let discovery = discovery(cfg, flow)?;
    let mut saved = store.rows(Some(&flow.id))?;
    let imported: HashMap<FileKey, u64> = imported_positions.iter().filter(|p| p.flow == flow.id).map(|p| (p.key, p.offset)).collect();
    // an emptied table (deleted files, pruning) is not a first start: a flag says it
    let started = store.meta(&started_key(&flow.id))?.is_some();
    let first_start = !started && saved.is_empty() && imported.is_empty();
    if saved.is_empty() && imported.is_empty() {
        saved = adopt_positions(cfg, flow, store)?;
    }
    let (sink_tx, sink_rx) = mpsc::channel::<Batch>();
    let (delivered, died) = (events_tx.clone(), events_tx.clone());
    let sink_threads = crate::sinks::start(
        &flow.sink(cfg),
        index,
        &flow_metrics,
        sink_rx,
        move |d| {
            let _ = delivered.send(Event::Delivered(d));
        },
        move |d| {
            let _ = died.send(Event::SinkDied(d));
        },
    )
    .map_err(|source| EngineError::SinkWorkers { flow: flow.id.clone(), source })?;
    Ok(FlowState {
        flow: flow.clone(),
        discovery,
        chain: Chain::new(&flow.processors, ctx.clone()),
        tails: TailSet::new(RealFs, flow.clone(), saved, imported, first_start, Instant::now()).with_pod_metadata(pod_metadata(flow)),
        // AWS sinks: eight batches per request in flight and one more. A batch is delivered only
        // when its last record was accepted, and with 30 % of the records of every request
        // refused that takes about five requests: with two batches per request the queue ran dry
        // and requests went half full (47-53 % of the fault-free rate against 64-65 % with eight,
        // docs/benchmarks.md); reading further ahead only holds memory. Local sinks write what
        // waits under one fsync.
        out: Outbox::new(sink_tx, flow, flow.destination.aws().map_or(usize::MAX, |a| 8 * a.in_flight_requests.max(1) + 1)),
        sink_threads,
        unlistable: HashSet::new(),
        refused: HashSet::new(),
        next_full_scan: Instant::now(),
        stats: FlowStats::default(),
        published: FlowStats::default(),
        journals: start_journals(flow, store)?,
        last_advance: Instant::now(),
        metrics: flow_metrics,
        retiring: false,
        retire_deadline: None,
    })
}

/// The positions that flows no longer configured hold, taken over by `flow`, which has none of
/// its own: an agent.json flow's id is made of its pattern and its stream, so editing either
/// makes a new flow, which would otherwise begin at `initialPosition` and skip what was written
/// since the old flow's last acknowledgement (or read it all again). Each position is checked
/// against its file as any checkpoint is (fingerprint and the bytes before it); of two old flows
/// holding one file, the newer position wins. The old flow's rows move to the new one.
fn adopt_positions(cfg: &Config, flow: &Flow, store: &mut Store) -> Result<Vec<Row>, EngineError> {
    let mut by_file: HashMap<FileKey, Row> = HashMap::new();
    for row in store.rows(None)? {
        if cfg.is_configured(&row.flow) {
            continue;
        }
        match by_file.get(&row.key) {
            Some(have) if have.updated_at >= row.updated_at => {}
            _ => {
                by_file.insert(row.key, row);
            }
        }
    }
    if by_file.is_empty() {
        return Ok(Vec::new());
    }
    let mut from: Vec<String> = by_file.values().map(|r| r.flow.clone()).collect();
    from.sort();
    from.dedup();
    tracing::info!(
        flow = %flow.id,
        "this flow has no positions of its own: it takes over the {} positions of {} (no longer configured), so what was written since they were saved is neither skipped nor sent again",
        by_file.len(),
        from.join(", ")
    );
    let mut rows = Vec::with_capacity(by_file.len());
    for (key, row) in by_file {
        store.stage_delete(&row.flow, key);
        let row = Row { flow: flow.id.clone(), ..row };
        store.stage(row.clone());
        rows.push(row);
    }
    Ok(rows)
}

/// Holds back a flow whose configuration would drop every line: it is not started, and says so
/// at ERROR level. The first time (no positions, never started), its files' positions are saved
/// as its first start would set them (`initialPosition`, the Kinesis Agent's checkpoints, or those
/// of a flow no longer configured), and it counts as started: a reload that fixes it resumes there
/// and reads what was written meanwhile, files that appeared meanwhile included.
pub(super) fn hold_flow(
    cfg: &Config,
    held: &HeldFlow,
    store: &mut Store,
    imported_positions: &[crate::checkpoint::KinesisAgentPosition],
) -> Result<(), EngineError> {
    let flow = &held.flow;
    tracing::error!(
        flow = %flow.id,
        "this flow is not started: {}; its files wait unread (nothing is lost) until a reload with the flow fixed starts it",
        held.reason()
    );
    if store.meta(&started_key(&flow.id))?.is_some() || !store.rows(Some(&flow.id))?.is_empty() {
        return Ok(()); // its positions are kept as they are
    }
    let discovery = discovery(cfg, flow)?;
    let imported: HashMap<FileKey, u64> = imported_positions.iter().filter(|p| p.flow == flow.id).map(|p| (p.key, p.offset)).collect();
    let first_start = imported.is_empty();
    let saved = if first_start { adopt_positions(cfg, flow, store)? } else { Vec::new() };
    let mut tails = TailSet::new(RealFs, flow.clone(), saved, imported, first_start, Instant::now());
    let mut scan = crate::source::discover::Scan::default();
    discovery.scan(&mut scan);
    tails.on_scan(Instant::now(), &scan, store);
    tails.release(store);
    store.commit()?;
    store.set_meta(&started_key(&flow.id), "1")?;
    Ok(())
}

/// The flow's journald sources, each resuming after its saved cursor.
fn start_journals(flow: &Flow, store: &Store) -> Result<Vec<crate::source::journal::JournalTail>, EngineError> {
    use crate::source::journal::{source_key, JournalTail, JOURNAL_TAIL_BASE};
    // rsyslog writes local time: the host's offset, read at start
    let offset = crate::convert::journal::host_offset();
    let mut out = Vec::new();
    for (i, src) in flow.journals.iter().enumerate() {
        let nth = flow.journals[..i].iter().filter(|s| s.directory == src.directory).count();
        let key = source_key(src, nth);
        let saved = store.meta(&super::journal_cursor_key(&flow.id, &key))?;
        if let Some(c) = &saved {
            tracing::info!(flow = %flow.id, "{key} resumes after cursor {c}");
        }
        let tail = JournalTail::new(JOURNAL_TAIL_BASE + i as u64, key, src.clone(), saved, offset)
            .map_err(|reason| EngineError::Sources { flow: flow.id.clone(), reason })?;
        out.push(tail);
    }
    Ok(out)
}

/// How the flow finds its files: its patterns and symlink rule, never the agent's own files.
fn discovery(cfg: &Config, flow: &Flow) -> Result<Discovery, EngineError> {
    Ok(Discovery::new(&flow.sources, flow.path_rules)
        .map_err(|reason| EngineError::Sources { flow: flow.id.clone(), reason })?
        .with_symlinks(flow.symlinks.clone())
        .with_own_files(crate::source::discover::own_files(cfg)))
}

pub(super) fn started_key(flow: &str) -> String {
    format!("flow_started:{flow}")
}

/// Logs, once per path and failure, the directories a scan could not list and the paths it
/// refused, and counts them.
pub(super) fn report_scan_problems(f: &mut FlowState, scan: &crate::source::discover::Scan) {
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
