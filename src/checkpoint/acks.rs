//! The order in which a file's checkpoint may advance.
//!
//! Every piece of a file that leaves the reader (a record sent to a sink, a header line skipped, a
//! record a converter dropped) is registered in file order with the offset where it ends. The
//! sink acknowledges records in any order; [`AckTracker::committed`] is the end of the longest
//! fully acknowledged prefix. So the checkpoint moves to X only when every record made from bytes
//! before X has been acknowledged: with several batches in flight, a later batch's success never
//! moves the checkpoint past an earlier batch that is still being retried.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy)]
struct Entry {
    end: u64,
    acked: bool,
}

/// Acknowledgement order of one file.
#[derive(Debug, Clone)]
pub struct AckTracker {
    committed: u64,
    first_seq: u64,
    entries: VecDeque<Entry>,
}

impl AckTracker {
    /// Starts at `offset`: everything before it is already committed.
    pub fn new(offset: u64) -> Self {
        AckTracker { committed: offset, first_seq: 0, entries: VecDeque::new() }
    }

    /// Registers the next piece of the file, ending at `end`; returns its sequence number.
    /// A piece that needs no acknowledgement (skipped, dropped) is registered as `acked`.
    pub fn push(&mut self, end: u64, acked: bool) -> u64 {
        let seq = self.first_seq + self.entries.len() as u64;
        self.entries.push_back(Entry { end, acked });
        self.advance();
        seq
    }

    /// Acknowledges piece `seq`; returns the new committed offset when it moved.
    pub fn ack(&mut self, seq: u64) -> Option<u64> {
        let before = self.committed;
        if let Some(e) = seq.checked_sub(self.first_seq).and_then(|i| self.entries.get_mut(i as usize)) {
            e.acked = true;
        }
        self.advance();
        (self.committed != before).then_some(self.committed)
    }

    fn advance(&mut self) {
        while let Some(e) = self.entries.front().filter(|e| e.acked) {
            // pieces are registered in file order, their ends never go back; if one did, the
            // checkpoint would still not
            debug_assert!(e.end >= self.committed, "a piece ends at {} before the committed {}", e.end, self.committed);
            self.committed = self.committed.max(e.end);
            self.entries.pop_front();
            self.first_seq += 1;
        }
    }

    /// End of the longest acknowledged prefix.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Pieces registered and not yet covered by the committed offset.
    pub fn outstanding(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn out_of_order_acks_wait_for_the_gap() {
        let mut t = AckTracker::new(100);
        let a = t.push(110, false);
        let b = t.push(120, false);
        t.push(125, true);
        let c = t.push(130, false);
        assert_eq!(t.ack(b), None);
        assert_eq!(t.ack(c), None);
        assert_eq!(t.committed(), 100);
        assert_eq!(t.ack(a), Some(130));
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.ack(a), None, "a repeated ack changes nothing");
    }

    proptest! {
        /// Model: the committed offset is the end of the last piece of the longest prefix of
        /// acknowledged pieces, whatever order the acknowledgements come in.
        #[test]
        fn committed_offset_is_the_longest_acked_prefix(
            sizes in prop::collection::vec((1u64..100, any::<bool>()), 1..60),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..80),
        ) {
            let mut t = AckTracker::new(0);
            let mut ends = Vec::new();
            let mut acked = Vec::new();
            let mut end = 0;
            for (size, pre_acked) in &sizes {
                end += size;
                t.push(end, *pre_acked);
                ends.push(end);
                acked.push(*pre_acked);
            }
            for idx in order {
                let i = idx.index(sizes.len());
                t.ack(i as u64);
                acked[i] = true;
                let prefix = acked.iter().take_while(|a| **a).count();
                let expected = if prefix == 0 { 0 } else { ends[prefix - 1] };
                prop_assert_eq!(t.committed(), expected);
                prop_assert_eq!(t.outstanding(), sizes.len() - prefix);
            }
        }
    }
}
