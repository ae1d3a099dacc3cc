//! Batches: converted records laid end to end, each with the reference that acknowledges it
//! and where it came from; and [`Delivered`], what comes back when a batch reached its
//! destination.
//!
//! Guarantees: a batch's records, references, offsets and sources stay aligned by index. Not
//! done here: filling batches (the pipeline) and delivering them (the sinks).

pub mod pipeline;

use std::path::{Path, PathBuf};

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
