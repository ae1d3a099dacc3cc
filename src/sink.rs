//! Batches and the local sinks (`file`, `stdout`).
//!
//! A [`Batch`] carries converted records and, for each, the reference the engine needs to
//! acknowledge it. A sink runs on its own thread, takes batches from a channel and reports each
//! delivered batch back as [`Delivered`]. Guarantees of the local sinks: a batch is acknowledged
//! only after all its records were written (and, for `file`, `fsync`ed); a failed write is retried
//! with backoff and never acknowledged, so the data waits in the log files. Each record is written
//! as its bytes, plus a `\n` when it does not end with one, so the output stays line-oriented.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
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
}

impl Batch {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn push(&mut self, record: &[u8], ack: AckRef, budget_bytes: u64) {
        self.data.extend_from_slice(record);
        self.ends.push(self.data.len());
        self.acks.push(ack);
        self.budget_bytes += budget_bytes;
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
}

pub enum LocalSink {
    File(PathBuf),
    Stdout,
}

fn write_records(w: &mut impl Write, batch: &Batch) -> std::io::Result<()> {
    for r in batch.records() {
        w.write_all(r)?;
        if !r.ends_with(b"\n") {
            w.write_all(b"\n")?;
        }
    }
    w.flush()
}

/// Runs a local sink until its channel closes.
pub fn run_local(sink: LocalSink, flow: usize, flow_id: String, batches: Receiver<Batch>, delivered: impl Fn(Delivered)) {
    let mut file: Option<std::fs::File> = None;
    for batch in batches {
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            let result = match &sink {
                LocalSink::Stdout => write_records(&mut std::io::stdout().lock(), &batch),
                LocalSink::File(path) => (|| {
                    if file.is_none() {
                        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                            std::fs::create_dir_all(dir)?;
                        }
                        file = Some(std::fs::OpenOptions::new().create(true).append(true).open(path)?);
                    }
                    let f = file.as_mut().expect("opened above");
                    let mut w = std::io::BufWriter::with_capacity(256 << 10, &mut *f);
                    write_records(&mut w, &batch)?;
                    drop(w);
                    f.sync_data()
                })(),
            };
            match result {
                Ok(()) => break,
                Err(e) => {
                    file = None;
                    if failures == 0 || failures.is_power_of_two() {
                        let target = match &sink {
                            LocalSink::File(p) => p.display().to_string(),
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
        delivered(Delivered { flow, acks: batch.acks, budget_bytes: batch.budget_bytes });
    }
}

/// Sends batches to a sink thread.
pub type BatchSender = Sender<Batch>;
