//! Descriptors as a budget: a flow holds at most its limit of files open ([`TailSet::set_file_limit`],
//! given by the engine from `max_open_files` and the process's open-file limit), and when more
//! files match than that, it holds the ones with unread data and visits the rest in turn.
//!
//! Guarantees:
//! - a descriptor is opened to hold a file only while the flow holds fewer than its limit less
//!   one (after closing one that may be closed, least recently read first); that last one is for
//!   the file opened for a moment (to identify a file found while the flow holds all it may, which
//!   is closed again and waits for its turn, or to stage a closed file's checkpoint): the flow's
//!   descriptors never exceed its limit;
//! - the files that wait for a descriptor are opened rotated-away first, then least recently read
//!   first: a file written to all the time does not keep the others from their turn once it is
//!   read to its end;
//! - a file may be closed only when it is followed at its path, read to its end (as its
//!   descriptor tells at that moment), and holds no unfinished line or record: closing it loses
//!   nothing, and it is opened again by path and identity when it grows (a notification or the
//!   scan). Records of it still in flight keep
//!   their acknowledgements: a checkpoint is then staged through a descriptor opened for it;
//! - a file rotated away, truncated and waiting for its copy, or finished keeps its descriptor,
//!   so what it holds is read even once it is deleted.
//!
//! Not guaranteed: a file that waits for its turn and is rotated away and deleted before that
//! loses what was written to it since it was last read (the start warns when a flow's files
//! outnumber its descriptors, so its limit can be raised).

use super::file::Tail;
use super::TailSet;
use crate::source::fs::{FileSystem, OpenFile};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The descriptors a flow may hold, given the `(open, known)` descriptors held and files known by
/// each of the other flows: `cap` less what each other flow holds or may claim, whichever is more.
/// A flow may claim its share (`cap` split evenly among the `flows` running) or as many files as
/// it knows, if fewer: a flow of a few files (or of journals only) leaves the rest to the others,
/// and takes its share back as the files it knows grow (the others then close what they may).
/// Each flow opens only below its limit, so together they never hold more than `cap`.
pub fn flow_file_limit(cap: usize, flows: usize, others: impl IntoIterator<Item = (usize, usize)>) -> usize {
    let share = (cap / flows.max(1)).max(1);
    let claimed: usize = others.into_iter().map(|(open, known)| open.max(known.min(share))).sum();
    cap.saturating_sub(claimed)
}

impl<F: FileSystem> TailSet<F> {
    /// The descriptors this flow may have open from now on.
    pub fn set_file_limit(&mut self, limit: usize) {
        self.file_limit = limit.max(1);
    }

    /// The descriptors it may hold on files: one of its limit is kept for the file opened for a
    /// moment.
    pub(super) fn held_limit(&self) -> usize {
        self.file_limit.saturating_sub(1).max(1)
    }

    /// Files with data to read that wait for a descriptor.
    pub fn waiting_for_descriptor(&self) -> usize {
        self.tails.values().filter(|t| t.file.is_none() && t.wants_read()).count() + self.waiting.len()
    }

    /// Closes the files idle (read, acknowledged, quiet) for `idle_after`, and, while the flow
    /// holds more than its limit, the files that may be closed, least recently read first.
    pub fn close_idle(&mut self, now: Instant, idle_after: Duration) {
        let over = self.open_files.saturating_sub(self.held_limit());
        let mut candidates: Vec<(Instant, u64, bool)> =
            self.tails.values().filter(|t| t.closable() && (over > 0 || t.idle())).map(|t| (t.last_change, t.id, t.idle())).collect();
        candidates.sort_unstable();
        for (i, (last, id, idle)) in candidates.into_iter().enumerate() {
            let due = i < over || (idle && now >= last + idle_after);
            if !due || self.grew_unseen(id) {
                continue;
            }
            self.close(id);
        }
    }

    /// Whether open tail `id`, about to be closed as read to its end, grew since it was last
    /// looked at, as its descriptor tells (one `fstat`); it is then marked to be read. A write
    /// notified under a name the set does not know (the file renamed away since the last scan)
    /// marks nothing: closed, such a file would lose what it holds once its last name goes.
    fn grew_unseen(&mut self, id: u64) -> bool {
        let Some(t) = self.tails.get_mut(&id) else { return false };
        let Some(size) = t.file.as_ref().and_then(|f| f.stat().ok()).map(|s| s.len) else { return false };
        if t.sealed || size <= t.size {
            return false;
        }
        t.size = size;
        t.dirty = true;
        true
    }

    /// Room for `extra` more descriptors: true when the flow holds at most its limit less
    /// `extra`, or after closing, least recently read first, files of `closable` (the ids
    /// [`TailSet::closable_now`] gave, and those read since at its back) that still may be.
    pub(super) fn make_room(&mut self, closable: &mut Option<VecDeque<u64>>, extra: usize) -> bool {
        while self.open_files + extra > self.held_limit() {
            let queue = closable.get_or_insert_with(|| self.closable_now());
            let Some(id) = queue.pop_front() else { return false };
            if self.tails.get(&id).is_some_and(|t| t.closable()) && !self.grew_unseen(id) {
                self.close(id);
            }
        }
        true
    }

    /// The files that may be closed to make room, least recently read first.
    fn closable_now(&self) -> VecDeque<u64> {
        let mut c: Vec<(Instant, u64)> = self.tails.values().filter(|t| t.closable()).map(|t| (t.last_change, t.id)).collect();
        c.sort_unstable();
        c.into_iter().map(|(_, id)| id).collect()
    }

    /// A file just opened and counted keeps its descriptor if the flow is within its limit, or
    /// if it has data to read and another file may be closed for it; otherwise it is closed and
    /// waits for its turn (its checkpoint is staged already).
    pub(super) fn hold_or_close(&mut self, id: u64, closable: &mut Option<VecDeque<u64>>) {
        if self.open_files <= self.held_limit() {
            return;
        }
        let Some(t) = self.tails.get_mut(&id) else { return };
        let unread = !t.sealed && t.size > t.framer.offset();
        t.dirty = unread;
        if unread && self.make_room(closable, 0) {
            return;
        }
        self.close(id);
    }

    /// Whether a tail without a descriptor could get one now.
    pub(super) fn descriptor_available(&self) -> bool {
        self.open_files < self.held_limit() || self.tails.values().any(|t| t.closable())
    }

    /// The file of a tail that holds no descriptor, opened again: at its path when that is still
    /// the same file, else found by identity beside it (rotated while closed).
    pub(super) fn reopen(fs: &F, t: &Tail<F::File>) -> Option<F::File> {
        reopen_at(fs, &t.path, t.key, t.phase.is_orphaned())
    }
}

/// The file `key` last seen at `path`, opened again: at its path when that is still the same
/// file (unless it was `rotated` away), else found by identity beside it.
pub(super) fn reopen_at<F: FileSystem>(
    fs: &F,
    path: &std::path::Path,
    key: crate::source::identity::FileKey,
    rotated: bool,
) -> Option<F::File> {
    let by_path = if rotated { None } else { fs.open(path).ok() };
    by_path.filter(|file| file.stat().is_ok_and(|s| s.key == key)).or_else(|| fs.find_by_key(path, key).and_then(|p| fs.open(&p).ok()))
}

#[cfg(test)]
mod tests {
    use super::flow_file_limit;

    #[test]
    fn one_flow_may_hold_the_whole_cap() {
        assert_eq!(flow_file_limit(256, 1, []), 256);
    }

    #[test]
    fn a_flow_of_few_files_leaves_the_rest_to_the_others() {
        // the other flow knows 10 files and holds them
        assert_eq!(flow_file_limit(256, 2, [(10, 10)]), 246);
        // a flow of journals only knows no file
        assert_eq!(flow_file_limit(256, 2, [(0, 0)]), 256);
        // the other knows 1,000 files: it may claim its share, held or not
        assert_eq!(flow_file_limit(256, 2, [(0, 1000)]), 128);
        // three flows, share 85
        assert_eq!(flow_file_limit(256, 3, [(0, 5000), (85, 85)]), 86);
    }

    #[test]
    fn a_flow_that_holds_more_than_its_share_leaves_only_what_is_left() {
        // it borrowed while this flow knew no file: this flow gets what is left until it closes
        assert_eq!(flow_file_limit(256, 2, [(200, 10_000)]), 56);
        assert_eq!(flow_file_limit(256, 2, [(300, 10_000)]), 0);
    }

    #[test]
    fn the_flows_together_never_hold_more_than_the_cap() {
        // each flow in turn opens all it may, in any order, knowing any number of files
        for flows in 1..6usize {
            for cap in [1usize, 7, 64, 256, 1000] {
                for known in [[0usize, 3, 50000, 7, 200], [9000, 9000, 1, 0, 300]] {
                    let mut open = vec![0usize; flows];
                    for round in 0..4 {
                        for k in 0..flows {
                            let i = if round % 2 == 0 { k } else { flows - 1 - k };
                            let others = (0..flows).filter(|j| *j != i).map(|j| (open[j], known[j]));
                            let limit = flow_file_limit(cap, flows, others);
                            open[i] = open[i].max(limit.min(known[i]));
                            let total: usize = open.iter().sum();
                            assert!(total <= cap, "{flows} flows, cap {cap}: {open:?} hold {total}");
                        }
                    }
                }
            }
        }
    }
}
