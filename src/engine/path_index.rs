//! Which tails a path belongs to, for file notifications: several flows may tail one file (one
//! file to Firehose and to Kinesis is common in agent.json), so a path maps to one tail per flow.
//!
//! Guarantees: a (flow, path) pair names at most one tail; removing a tail, or a flow, removes
//! every path it was indexed under. Not guaranteed: that the tails still exist (the caller looks
//! them up).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A tail as the engine names it: the flow's index and the tail's id within the flow.
pub type TailRef = (usize, u64);

#[derive(Debug, Default)]
pub struct PathIndex {
    by_path: HashMap<PathBuf, Vec<TailRef>>,
}

impl PathIndex {
    /// Indexes `tail` under `path`, replacing the flow's previous tail at that path.
    pub fn insert(&mut self, path: PathBuf, tail: TailRef) {
        let tails = self.by_path.entry(path).or_default();
        tails.retain(|t| t.0 != tail.0);
        tails.push(tail);
    }

    /// The tails indexed under `path` (one per flow).
    pub fn get(&self, path: &Path) -> &[TailRef] {
        self.by_path.get(path).map_or(&[], Vec::as_slice)
    }

    /// Forgets `tail` at `path` (not another flow's tail there, nor a newer tail of its flow).
    pub fn remove(&mut self, path: &Path, tail: TailRef) {
        if let Some(tails) = self.by_path.get_mut(path) {
            tails.retain(|t| *t != tail);
            if tails.is_empty() {
                self.by_path.remove(path);
            }
        }
    }

    /// Forgets `tail` at every path.
    pub fn remove_tail(&mut self, tail: TailRef) {
        self.retain(|t| *t != tail);
    }

    /// Forgets every tail of the flow `flow`.
    pub fn remove_flow(&mut self, flow: usize) {
        self.retain(|t| t.0 != flow);
    }

    fn retain(&mut self, keep: impl Fn(&TailRef) -> bool) {
        self.by_path.retain(|_, tails| {
            tails.retain(&keep);
            !tails.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_flows_tailing_one_file_are_both_found_by_its_path() {
        let mut ix = PathIndex::default();
        let p = PathBuf::from("/var/log/app.log");
        ix.insert(p.clone(), (0, 1));
        ix.insert(p.clone(), (1, 7));
        assert_eq!(ix.get(&p), &[(0, 1), (1, 7)]);
        // a new tail of flow 0 at the path (rotation) replaces its old one only
        ix.insert(p.clone(), (0, 2));
        assert_eq!(ix.get(&p), &[(1, 7), (0, 2)]);
        // removing a tail that is no longer indexed there changes nothing
        ix.remove(&p, (0, 1));
        assert_eq!(ix.get(&p).len(), 2);
        ix.remove(&p, (0, 2));
        assert_eq!(ix.get(&p), &[(1, 7)]);
    }

    #[test]
    fn removing_a_tail_or_a_flow_forgets_every_path_it_had() {
        let mut ix = PathIndex::default();
        ix.insert("/var/log/containers/a.log".into(), (0, 1));
        ix.insert("/var/log/pods/a/0.log".into(), (0, 1));
        ix.insert("/var/log/pods/a/0.log".into(), (1, 3));
        ix.remove_tail((0, 1));
        assert!(ix.get(Path::new("/var/log/containers/a.log")).is_empty());
        assert_eq!(ix.get(Path::new("/var/log/pods/a/0.log")), &[(1, 3)]);
        ix.remove_flow(1);
        assert!(ix.by_path.is_empty());
    }
}
