//! The local sinks (`file`, `stdout`).
//!
//! Guarantees: a delivery returns only after all its records were written (and, for `file`,
//! `fsync`ed); a failed write is retried with backoff and never reported delivered, so the data
//! waits in the log files; the batches waiting are one delivery, written under one `fsync`. Each record is written
//! as its bytes, plus a `\n` when it does not end with one, so the output stays line-oriented.
//! The `file` sink follows its path: when the output was renamed or deleted (logrotate), the
//! next group goes to a new file at the path, created with the sink's mode (0640 by default).
//! It assumes it is the output's only writer (the configuration gives each file sink its own
//! file): a failed group is cut off before it is written again.

pub mod settings;

pub use settings::FileSettings;

use super::{GroupSink, Rejected};
use crate::batch::Batch;
use crate::ops::metrics::{Call, ErrorKind, FlowMetrics};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What a local destination implies: records as large as Firehose takes (so that what a file
/// sink shows is what an AWS sink would ship), one record per line.
pub fn file_facts(path: &Path) -> super::Facts {
    local_facts(format!("File:{}", path.display()), Some(path.to_path_buf()))
}

pub fn stdout_facts() -> super::Facts {
    local_facts("Stdout".into(), None)
}

fn local_facts(name: String, output: Option<PathBuf>) -> super::Facts {
    super::Facts {
        name,
        max_record_bytes: super::firehose::MAX_RECORD_BYTES,
        max_request_records: super::firehose::MAX_REQUEST_RECORDS as u64,
        packs_records: false,
        notes: Vec::new(),
        output,
    }
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

/// Writes a group until it succeeds, with backoff, logging the failures (`target` names the
/// output); then counts the records sent.
fn write_until_done(
    metrics: &FlowMetrics,
    target: &str,
    group: &[Batch],
    mut attempt: impl FnMut() -> std::io::Result<()>,
) -> Vec<Vec<Rejected>> {
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u32;
    while let Err(e) = attempt() {
        metrics.record_error("WriteFailed", &e.to_string(), 1, ErrorKind::Failed);
        if failures == 0 || failures.is_power_of_two() {
            tracing::error!(flow = %metrics.id, "cannot write to {target}: {e}; retrying (attempt {}), the records wait in the log files", failures + 1);
        }
        failures += 1;
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    let records = group.iter().map(|b| b.len() as u64).sum();
    let bytes = group.iter().map(|b| b.data.len() as u64).sum();
    metrics.record_call(Call { attempted: records, sent: records, bytes_sent: bytes, ..Call::default() });
    vec![Vec::new(); group.len()]
}

/// The `file` sink.
pub struct FileSink {
    path: PathBuf,
    mode: u32,
    file: Option<std::fs::File>,
    metrics: Arc<FlowMetrics>,
}

impl FileSink {
    /// Appends to `path`, created with `mode` when missing.
    pub fn new(path: PathBuf, mode: u32, metrics: Arc<FlowMetrics>) -> Self {
        FileSink { path, mode, file: None, metrics }
    }

    /// One attempt at writing `group`; what it wrote is cut off again when it fails, so the
    /// retry does not write it twice.
    fn write(&mut self, group: &[Batch], group_start: &mut Option<u64>) -> std::io::Result<()> {
        let result = (|| {
            // rotated away: the records go to the file now at the path
            if self.file.as_ref().is_some_and(|f| !still_at(f, &self.path)) {
                self.file = None;
            }
            if self.file.is_none() {
                use std::os::unix::fs::OpenOptionsExt;
                if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                self.file = Some(std::fs::OpenOptions::new().create(true).append(true).mode(self.mode).open(&self.path)?);
                *group_start = None;
            }
            let Some(f) = self.file.as_mut() else { return Err(std::io::Error::other("the output is not open")) };
            // where the group starts, so that a failed attempt can be undone
            group_start.get_or_insert(f.metadata()?.len());
            // each batch is one contiguous buffer: written as it is, no copy
            for b in group {
                write_records(f, b)?;
            }
            f.sync_data()
        })();
        if result.is_err() {
            // if even the cut fails, a partial write may repeat: at-least-once, never lost
            // (through the descriptor written to: the path may name another file by now)
            if let (Some(f), Some(len)) = (self.file.take(), *group_start) {
                let _ = f.set_len(len);
            }
        }
        result
    }
}

impl GroupSink for FileSink {
    fn deliver(&mut self, group: &[Batch]) -> Vec<Vec<Rejected>> {
        let mut group_start = None;
        let (metrics, target) = (self.metrics.clone(), self.path.display().to_string());
        write_until_done(&metrics, &target, group, || self.write(group, &mut group_start))
    }

    fn group_bytes(&self) -> usize {
        GROUP_BYTES
    }
}

/// The `stdout` sink.
pub struct StdoutSink {
    metrics: Arc<FlowMetrics>,
}

impl StdoutSink {
    pub fn new(metrics: Arc<FlowMetrics>) -> Self {
        StdoutSink { metrics }
    }
}

impl GroupSink for StdoutSink {
    fn deliver(&mut self, group: &[Batch]) -> Vec<Vec<Rejected>> {
        write_until_done(&self.metrics, "stdout", group, || {
            let mut out = std::io::stdout().lock();
            group.iter().try_for_each(|b| write_records(&mut out, b)).and_then(|()| out.flush())
        })
    }

    fn group_bytes(&self) -> usize {
        GROUP_BYTES
    }
}
