//! Batches and the local sinks (`file`, `stdout`).
//!
//! A [`Batch`] carries converted records and, for each, the reference the engine needs to
//! acknowledge it. A sink runs on its own thread, takes batches from a channel and reports each
//! delivered batch back as [`Delivered`]. Guarantees of the local sinks: a batch is acknowledged
//! only after all its records were written (and, for `file`, `fsync`ed); a failed write is retried
//! with backoff and never acknowledged, so the data waits in the log files; batches already
//! waiting are written together under one `fsync`. Each record is written
//! as its bytes, plus a `\n` when it does not end with one, so the output stays line-oriented.
//! The `file` sink follows its path: when the output was renamed or deleted (logrotate), the
//! next group goes to a new file at the path, created with the sink's mode (0640 by default).
//! It assumes it is the output's only writer (the configuration gives each file sink its own
//! file): a failed group is cut off before it is written again.

use crate::metrics::{Call, FlowMetrics};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// Which tailed file and which piece of it a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRef {
    pub tail: u64,
    pub seq: u64,
}

/// Records bound for one sink, laid end to end in one buffer.
#[derive(Debug, Default)]
pub struct Batch {
    pub data: Vec<u8>,
    pub ends: Vec<usize>,
    pub acks: Vec<AckRef>,
    /// Bytes this batch holds against the in-flight budget.
    pub budget_bytes: u64,
    /// Per record, the offset in its file where the bytes it was made from start.
    pub offsets: Vec<u64>,
    /// The path of each tailed file with records in the batch, when it was read.
    pub sources: Vec<(u64, PathBuf)>,
}

impl Batch {
    /// An empty batch with room for `bytes` of records and `records` records.
    pub fn with_capacity(bytes: usize, records: usize) -> Batch {
        Batch {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
            acks: Vec::with_capacity(records),
            offsets: Vec::with_capacity(records),
            ..Batch::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Ends a record whose bytes were appended to `data` directly; it was made from the bytes of
    /// `path` starting at `offset`.
    pub fn commit_record(&mut self, ack: AckRef, budget_bytes: u64, path: &Path, offset: u64) {
        self.ends.push(self.data.len());
        self.acks.push(ack);
        self.offsets.push(offset);
        self.budget_bytes += budget_bytes;
        if !self.sources.iter().rev().any(|(t, _)| *t == ack.tail) {
            self.sources.push((ack.tail, path.to_path_buf()));
        }
    }

    /// The bytes of the consecutive records `range`, end to end.
    pub fn span(&self, range: std::ops::Range<usize>) -> &[u8] {
        let start = if range.start == 0 { 0 } else { self.ends[range.start - 1] };
        &self.data[start..self.ends[range.end - 1]]
    }

    /// Where record `i` came from: its file and offset.
    pub fn origin(&self, i: usize) -> (Option<&Path>, u64) {
        let tail = self.acks[i].tail;
        (self.sources.iter().rev().find(|(t, _)| *t == tail).map(|(_, p)| p.as_path()), self.offsets[i])
    }

    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let r = &self.data[start..end];
            start = end;
            r
        })
    }
}

/// A batch that reached its destination.
#[derive(Debug)]
pub struct Delivered {
    pub flow: usize,
    pub acks: Vec<AckRef>,
    pub budget_bytes: u64,
    /// Records of the batch the service rejected for good, written to the dead-letter file.
    pub dead_lettered: u64,
}

pub enum LocalSink {
    /// A file, created with this mode.
    File(PathBuf, u32),
    Stdout,
}

/// Whether `file` is still what `path` names (not renamed away or deleted by a rotation).
fn still_at(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn write_records(w: &mut impl Write, batch: &Batch) -> std::io::Result<()> {
    // records lie end to end: when each ends its line, the batch is one write
    if batch.records().all(|r| r.last() == Some(&b'\n')) {
        return w.write_all(&batch.data);
    }
    for r in batch.records() {
        w.write_all(r)?;
        if !r.ends_with(b"\n") {
            w.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// Most bytes written before one `fsync` when several batches wait.
const GROUP_BYTES: usize = 16 << 20;

/// Runs a local sink until its channel closes. Batches that are already waiting are written
/// together and made durable with one `fsync` (group commit); each is acknowledged after it.
pub fn run_local(sink: LocalSink, flow: usize, metrics: Arc<FlowMetrics>, batches: Receiver<Batch>, delivered: impl Fn(Delivered)) {
    let fm = &*metrics;
    let flow_id = fm.id.clone();
    let mut file: Option<std::fs::File> = None;
    while let Ok(first) = batches.recv() {
        let mut group = vec![first];
        let mut bytes = group[0].data.len();
        while bytes < GROUP_BYTES {
            match batches.try_recv() {
                Ok(b) => {
                    bytes += b.data.len();
                    group.push(b);
                }
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u32;
        let mut group_start: Option<u64> = None;
        loop {
            let result = match &sink {
                LocalSink::Stdout => {
                    let mut out = std::io::stdout().lock();
                    group.iter().try_for_each(|b| write_records(&mut out, b)).and_then(|()| out.flush())
                }
                LocalSink::File(path, mode) => (|| {
                    // rotated away: the records go to the file now at the path
                    if file.as_ref().is_some_and(|f| !still_at(f, path)) {
                        file = None;
                    }
                    if file.is_none() {
                        use std::os::unix::fs::OpenOptionsExt;
                        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                            std::fs::create_dir_all(dir)?;
                        }
                        file = Some(std::fs::OpenOptions::new().create(true).append(true).mode(*mode).open(path)?);
                        group_start = None;
                    }
                    // each batch is one contiguous buffer: written as it is, no copy
                    let f = file.as_mut().expect("opened above");
                    // where the group starts, so that a failed attempt can be undone
                    group_start.get_or_insert(f.metadata()?.len());
                    for b in &group {
                        write_records(f, b)?;
                    }
                    f.sync_data()
                })(),
            };
            match result {
                Ok(()) => break,
                Err(e) => {
                    // what this attempt wrote is cut off, so the retry does not write it twice;
                    // if even that fails, a partial write may repeat: at-least-once, never lost
                    // (through the descriptor written to: the path may name another file by now)
                    if let (Some(f), Some(len)) = (file.take(), group_start) {
                        let _ = f.set_len(len);
                    }
                    fm.record_error("WriteFailed", &e.to_string(), 1);
                    if failures == 0 || failures.is_power_of_two() {
                        let target = match &sink {
                            LocalSink::File(p, _) => p.display().to_string(),
                            LocalSink::Stdout => "stdout".into(),
                        };
                        tracing::error!(flow = %flow_id, "cannot write to {target}: {e}; retrying (attempt {}), the records wait in the log files", failures + 1);
                    }
                    failures += 1;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        let records = group.iter().map(|b| b.len() as u64).sum();
        let bytes = group.iter().map(|b| b.data.len() as u64).sum();
        fm.record_call(Call { attempted: records, sent: records, bytes_sent: bytes, ..Call::default() });
        for b in group {
            delivered(Delivered { flow, acks: b.acks, budget_bytes: b.budget_bytes, dead_lettered: 0 });
        }
    }
}
