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
    /// When records were read (ms since the epoch), run-length: from each record index on,
    /// until the next entry (one entry per read, not per record).
    pub read_at: Vec<(usize, i64)>,
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

    /// Stamps the records committed from now on as read at `ms` (ms since the epoch).
    pub fn mark_read_at(&mut self, ms: i64) {
        if self.read_at.last().is_none_or(|&(_, last)| last != ms) {
            let i = self.len();
            match self.read_at.last_mut() {
                // nothing committed since the last stamp: it is replaced
                Some(last) if last.0 == i => last.1 = ms,
                _ => self.read_at.push((i, ms)),
            }
        }
    }

    /// When record `i` was read (ms since the epoch), if the batch was stamped.
    pub fn read_ms(&self, i: usize) -> Option<i64> {
        let at = self.read_at.partition_point(|&(first, _)| first <= i);
        at.checked_sub(1).map(|k| self.read_at[k].1)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_keeps_when_it_was_read_with_one_entry_per_read() {
        let mut b = Batch::default();
        assert_eq!(b.read_ms(0), None, "a batch never stamped");
        let commit = |b: &mut Batch, ms: i64, n: usize| {
            b.mark_read_at(ms);
            for _ in 0..n {
                b.data.push(b'x');
                b.commit_record(AckRef { tail: 1, seq: b.len() as u64 }, 1, Path::new("/a"), 0);
            }
        };
        commit(&mut b, 100, 3);
        commit(&mut b, 100, 2);
        commit(&mut b, 250, 0);
        commit(&mut b, 300, 1);
        commit(&mut b, 400, 2);
        assert_eq!(b.read_at, vec![(0, 100), (5, 300), (6, 400)], "a stamp with no record is replaced");
        let times: Vec<Option<i64>> = (0..8).map(|i| b.read_ms(i)).collect();
        assert_eq!(times, [100, 100, 100, 100, 100, 300, 400, 400].map(Some));
    }
}
