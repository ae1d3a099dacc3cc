//! Files at rest: a file the flow follows but holds no descriptor for, read to the end of a line,
//! is kept as its identity, position and acknowledgements only ([`Resting`], about a hundred
//! bytes and its path), apart from the tails that need attention. The passes over the files
//! (reading, timers, deadlines, what is behind) visit only those: an idle host of 100,000 files
//! costs what its changes cost, and a first start on 100,000 small files holds the pieces in
//! flight, not a reader for every file.
//!
//! Guarantees:
//! - a tail rests only when resting loses nothing: followed at its path, not a sealed copy, no
//!   descriptor, no unfinished line or record, no header line left to skip, not parked, not let
//!   go; its pieces in flight keep their acknowledgement tracker, and an acknowledgement stages
//!   its checkpoint as for a closed tail (through a descriptor opened for the moment);
//! - a resting file with data to read (a notification, a scan saw it grow, or found beyond the
//!   flow's descriptors) waits in [`TailSet`]'s `waiting`, least recently changed first, and is
//!   woken (made a tail again, its framer and assembler new at its offset) when it gets its turn;
//! - anything else that concerns it (a rename, a truncation, a scan that no longer finds it)
//!   wakes it first, so the rules for tails apply unchanged; a new file that may be its copy is
//!   compared with its first bytes as with a closed tail's.
//!
//! Not kept: its first bytes (up to 256 of them: the hash its fingerprint was made from stands
//! for them in copy detection, see [`super::rotation::FirstBytes`]), save for
//! [`HEAD_KEPT_AT_REST`] after its fingerprint grew; and the pod metadata a container file's
//! records carry, looked up again when it wakes (from the flow's cache).

use super::file::{Phase, Tail};
use super::rotation::FirstBytes;
use super::{Checkpoints, TailSet};
use crate::checkpoint::acks::AckTracker;
use crate::source::fs::FileSystem;
use crate::source::identity::{FileKey, Fingerprint};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long after its fingerprint grew a file at rest keeps its first bytes: a copytruncate copy
/// made just before that growth is shorter than them, and the hash alone cannot say it is their
/// start. As long as a full scan's interval, so the truncation that follows the copy is seen
/// first; dropped by the first scan that finds the file after that (a scan that finds nothing
/// changed hands out no files: at the latest, the next full scan).
pub(crate) const HEAD_KEPT_AT_REST: Duration = Duration::from_secs(60);

/// First bytes a file at rest keeps for a while ([`HEAD_KEPT_AT_REST`]).
pub(crate) struct KeptHead {
    pub until: Instant,
    pub bytes: Box<[u8]>,
}

/// A file at rest: what it takes to find it again and read on from where it was read to.
pub(crate) struct Resting {
    pub key: FileKey,
    pub fingerprint: Fingerprint,
    /// Read up to here.
    pub offset: u64,
    /// Its pieces in flight (none when everything read was acknowledged).
    pub acks: Option<Box<AckTracker>>,
    /// Its length when last seen.
    pub size: u64,
    pub last_change: Instant,
    pub path: Arc<Path>,
    pub target: Option<Arc<Path>>,
    /// Its first bytes, only for a while after its fingerprint grew.
    pub head: Option<Box<KeptHead>>,
    pub read_error_logged: bool,
}

impl Resting {
    /// Read and acknowledged up to here.
    pub fn committed(&self) -> u64 {
        self.acks.as_ref().map_or(self.offset, |a| a.committed())
    }

    /// Its first bytes as the copy rules compare them: kept, or their hash.
    pub fn first_bytes(&self) -> FirstBytes<'_> {
        match &self.head {
            Some(kept) => FirstBytes::Bytes(&kept.bytes),
            None => FirstBytes::Hashed(self.fingerprint),
        }
    }

    /// Bytes behind: seen and not yet acknowledged.
    pub fn behind(&self) -> u64 {
        self.size.max(self.offset).saturating_sub(self.committed())
    }
}

impl<H> Tail<H> {
    /// Whether it may rest (see the module's guarantees).
    pub fn restable(&self) -> bool {
        self.file.is_none()
            && self.phase == Phase::Following
            && !self.sealed
            && !self.parked
            && self.parked_cut_line.is_none()
            && self.finishing_line.is_none()
            && self.let_go_at.is_none()
            && self.held == 0
            && self.framer.pending_len() == 0
            && self.framer.line_start() == self.framer.offset()
            && !self.assembler.has_pending()
            // (at offset 0 the header is skipped again when it wakes)
            && (!self.assembler.skipping_header() || self.framer.offset() == 0)
    }

    /// Its state at rest, and whether it has data to read (it then waits in the set's
    /// `waiting`, which alone says so).
    fn into_resting(self) -> (Resting, bool) {
        let offset = self.framer.offset();
        let done = self.acks.outstanding() == 0 && self.acks.committed() == offset;
        let resting = Resting {
            key: self.key,
            fingerprint: self.fingerprint,
            offset,
            acks: (!done).then(|| Box::new(self.acks)),
            size: self.size,
            last_change: self.last_change,
            path: self.path,
            target: self.target,
            head: self
                .fingerprint_grew_at
                .filter(|_| !self.head.is_empty())
                .map(|grew| Box::new(KeptHead { until: grew + HEAD_KEPT_AT_REST, bytes: self.head.into_boxed_slice() })),
            read_error_logged: self.read_error_logged,
        };
        (resting, self.dirty)
    }
}

impl<F: FileSystem> TailSet<F> {
    /// Lets tail `id` rest if it may.
    pub(super) fn rest(&mut self, id: u64) {
        if !self.tails.get(&id).is_some_and(|t| t.restable()) {
            return;
        }
        let Some(t) = self.tails.remove(&id) else { return };
        let (r, dirty) = t.into_resting();
        if dirty {
            self.waiting.insert((r.last_change, id));
        }
        if r.acks.is_some() {
            self.unacknowledged.insert(id);
        }
        self.resting.insert(id, Box::new(r));
        // a table grown by a burst of active files gives its room back
        if let Some(room) = room_to_keep(self.tails.len(), self.tails.capacity()) {
            self.tails.shrink_to(room);
        }
    }

    /// Makes resting file `id` a tail again (closed, its framer and assembler new at its
    /// offset); nothing when it is not resting.
    pub(super) fn wake(&mut self, id: u64, now: Instant) {
        let Some(r) = self.resting.remove(&id).map(|r| *r) else { return };
        let dirty = self.waiting.remove(&(r.last_change, id));
        all_acknowledged(&mut self.unacknowledged, id);
        let mut t = Tail::closed(id, r.key, r.path, r.target, r.size, r.offset, &self.flow, &self.assembly, self.metadata.as_ref(), now);
        if let Some(acks) = r.acks {
            t.acks = *acks;
        }
        t.fingerprint = r.fingerprint;
        if let Some(kept) = r.head {
            t.head = kept.bytes.into_vec();
            t.fingerprint_grew_at = kept.until.checked_sub(HEAD_KEPT_AT_REST);
        }
        t.last_change = r.last_change;
        t.dirty = dirty;
        t.read_error_logged = r.read_error_logged;
        self.tails.insert(id, Box::new(t));
    }

    /// Resting file `id` has data to read (or may have): it waits for its turn.
    pub(super) fn resting_changed(&mut self, id: u64) -> bool {
        let Some(r) = self.resting.get(&id) else { return false };
        self.waiting.insert((r.last_change, id));
        true
    }

    /// A scan found resting file `id` as `item`: false when that is more than a change of size
    /// (a rename, or its link leads elsewhere), which wakes it.
    pub(super) fn resting_found(&mut self, id: u64, item: &crate::source::discover::Found, now: Instant) -> bool {
        let Some(r) = self.resting.get(&id) else { return false };
        if r.path.as_os_str() != item.path.as_os_str() {
            return false;
        }
        if (item.target_dir.is_some() || r.target.is_some()) && self.link_target(item) != r.target {
            return false;
        }
        let Some(r) = self.resting.get_mut(&id) else { return false };
        if r.head.as_ref().is_some_and(|kept| now >= kept.until) {
            r.head = None;
        }
        // a size the scan did not look at (its directory did not change): its growth is notified
        let Some(size) = item.size else { return true };
        let grew = size != r.size || size > r.offset;
        r.size = r.size.max(size);
        if grew {
            self.resting_changed(id);
        }
        true
    }

    /// The acknowledgement of pieces `seqs` of resting file `id`; stages its checkpoint when it
    /// moved. Whether it moved (false when `id` is not at rest).
    pub(super) fn ack_resting(&mut self, id: u64, seqs: impl IntoIterator<Item = u64>, store: &mut impl Checkpoints) -> bool {
        let Some(r) = self.resting.get_mut(&id) else { return false };
        let Some(acks) = r.acks.as_mut() else { return false };
        let mut advanced = false;
        for seq in seqs {
            advanced |= acks.ack(seq).is_some();
        }
        if !advanced {
            return false;
        }
        let committed = acks.committed();
        if acks.outstanding() == 0 && committed == r.offset {
            r.acks = None;
            all_acknowledged(&mut self.unacknowledged, id);
        }
        let file = super::descriptors::reopen_at(&self.fs, &r.path, r.key, false);
        if let Some(row) = file.and_then(|f| super::row_for(&self.flow.id, r.key, &r.path, r.fingerprint, committed, &f)) {
            store.stage(row);
        }
        true
    }

    /// Files at rest.
    pub fn resting_files(&self) -> usize {
        self.resting.len()
    }
}

/// Resting file `id` has no pieces in flight (any more): the set of those that have
/// (`unacknowledged`) gives back the room a first start grew it to, when every file found had.
fn all_acknowledged(unacknowledged: &mut std::collections::HashSet<u64>, id: u64) {
    if !unacknowledged.remove(&id) {
        return;
    }
    if let Some(room) = room_to_keep(unacknowledged.len(), unacknowledged.capacity()) {
        unacknowledged.shrink_to(room);
    }
}

/// The room a table of `len` entries holding room for `capacity` keeps when it gives back what a
/// burst grew it to (under a quarter used: twice its entries), or `None` to keep it as it is
/// (small, or used enough that shrinking and growing again would alternate).
fn room_to_keep(len: usize, capacity: usize) -> Option<usize> {
    (capacity > 64 && len * 4 < capacity).then_some(len * 2)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_set_of_files_with_pieces_in_flight_gives_back_its_room_as_they_are_acknowledged() {
        // a first start: every file found rests with its pieces in flight
        let mut set: std::collections::HashSet<u64> = (0..100_000).collect();
        for id in 0..99_990 {
            super::all_acknowledged(&mut set, id);
        }
        assert_eq!(set.len(), 10);
        assert!(set.capacity() <= 64, "{}", set.capacity());
        super::all_acknowledged(&mut set, 5);
        assert!(!set.contains(&5) && set.contains(&99_995));
    }
}
