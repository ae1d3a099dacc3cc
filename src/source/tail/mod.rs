//! Every file one flow tails, followed across rotation: [`TailSet`] takes what a scan found,
//! which paths changed, the time, and the room the pipeline has, and reads, hands framed pieces
//! to a [`Pipeline`], lets finished files go and stages checkpoints in [`Checkpoints`].
//!
//! Guarantees:
//! - a file is followed by identity (device, inode, fingerprint): a rename keeps reading the same
//!   file to its end; a copytruncate copy inherits the offset reached in the original while the
//!   truncated original starts over; truncation in place starts over; a deleted or rotated-away
//!   file is read to its end through its open descriptor, and let go (its unterminated last line
//!   sent) only once it has not grown for the flow's `rotated_file_grace_ms`;
//! - a new file that starts like a followed one waits for a truncation at most [`COPY_WAIT`]
//!   from when it was first seen, then is tailed as a file of its own;
//! - on resume the fingerprint and the bytes before the checkpoint are checked, so a replaced or
//!   rewritten file is read from its start instead of from a stale offset;
//! - a staged checkpoint never passes the acknowledged prefix of its file ([`crate::checkpoint::acks`]);
//! - a deleted file is held open (and read) until it is finished; what it still holds is told
//!   ([`TailSet::deleted`]), and letting it go before ([`TailSet::let_go`]) says what is lost;
//! - the flow holds at most its limit of descriptors: when more files have data than that, they
//!   take turns ([`descriptors`]);
//! - reads stop at the flow's share of the in-flight budget and at the global budget (a tail in
//!   the middle of a line may finish it), and a tail holding a long unfinished line over the
//!   budget gives it back to the file.
//!
//! No clock is read here and all file access goes through a [`FileSystem`]: a test drives
//! rotation with an in-memory file system and an instant of its choosing. Not done here:
//! listing directories ([`crate::source::discover`]), converting and batching (the pipeline).

mod descriptors;
mod file;
mod read;
mod restart;
mod resting;
mod rotation;
mod scan;
#[cfg(test)]
mod tests;

use crate::checkpoint::acks::AckTracker;
use crate::checkpoint::{Row, Store};
use crate::config::Flow;
use crate::framing::Piece;
use crate::source::fs::{FileSystem, OpenFile, ReadAt};
use crate::source::identity::{self, FileKey};
pub use descriptors::flow_file_limit;
use file::{Phase, Tail};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a truncated file's old state waits for its copytruncate copy to appear, and a new
/// file that starts like a followed one waits for that file's truncation.
pub const COPY_WAIT: Duration = Duration::from_secs(5);

/// How often a new pod's file waiting for its metadata looks whether it came.
const METADATA_POLL: Duration = Duration::from_millis(20);

/// The most bytes read to count the lines of a part of a file ([`TailSet::lines_between`]).
pub const COUNT_LINES_MAX: u64 = 64 << 20;

/// Where framed pieces go, and how much room there is for more.
pub trait Pipeline {
    /// One framed piece of tail `tail` (now at `path`); registers it with `acks`.
    fn piece(&mut self, acks: &mut AckTracker, tail: u64, path: &Path, piece: Piece<'_>);
    /// The budget and what is in flight, now.
    fn room(&self) -> Room;
    /// Bytes read from files.
    fn bytes_read(&mut self, n: u64);
    /// Lines longer than max_line_bytes sent in pieces.
    fn lines_split(&mut self, n: u64);
}

/// The budget as the pipeline sees it.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    /// Bytes read and not yet acknowledged, of every flow.
    pub in_flight: u64,
    /// Bytes the other flows' tails hold in their buffers.
    pub others_held: u64,
    pub budget: u64,
    /// This flow's share of the budget, and what it has in flight.
    pub share: u64,
    pub flow_in_flight: u64,
    /// The sink has every batch waiting it may have: nothing is read.
    pub backed_up: bool,
}

/// A deleted file still held open with bytes not yet acknowledged ([`TailSet::deleted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub tail: u64,
    /// Its path when it was last seen.
    pub path: PathBuf,
    /// The end of its acknowledged prefix: a stop now loses everything after it.
    pub acknowledged: u64,
    /// Where its unread part starts (the start of a line not finished yet): letting it go loses
    /// everything after it; what was read before it still ships.
    pub unread_from: u64,
    /// Its length, or where it was let go.
    pub len: u64,
    /// Let go already ([`TailSet::let_go`]): only what was read before it is left.
    pub let_go: bool,
}

impl Deleted {
    /// Bytes not yet acknowledged.
    pub fn behind(&self) -> u64 {
        self.len.saturating_sub(self.acknowledged)
    }

    /// Bytes not yet read.
    pub fn unread(&self) -> u64 {
        self.len.saturating_sub(self.unread_from)
    }
}

/// What letting a deleted file go lost ([`TailSet::let_go`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub path: PathBuf,
    /// The byte range never read.
    pub from: u64,
    pub to: u64,
    /// The lines in it, exactly when `exact`, else extrapolated ([`TailSet::lines_between`]).
    pub lines: u64,
    pub exact: bool,
}

/// Where checkpoints are staged.
pub trait Checkpoints {
    fn stage(&mut self, row: Row);
    fn delete(&mut self, flow: &str, key: FileKey);
}

impl Checkpoints for Store {
    fn stage(&mut self, mut row: Row) {
        row.updated_at = crate::checkpoint::now_secs();
        Store::stage(self, row);
        self.commit_if_large();
    }

    fn delete(&mut self, flow: &str, key: FileKey) {
        self.stage_delete(flow, key)
    }
}

/// The files of one flow.
pub struct TailSet<F: FileSystem> {
    fs: F,
    flow: Flow,
    /// The files that need attention: held open, or with lines, records or acknowledgements in
    /// progress, or rotated away. (Boxed: a file followed is a pointer in the table, its state
    /// sized as it is.)
    tails: HashMap<u64, Box<Tail<F::File>>>,
    /// The others, at rest ([`resting`]); an id is in one table or the other. (Boxed: a table
    /// of 100,000 grows without holding two copies of them.)
    resting: HashMap<u64, Box<resting::Resting>>,
    /// The resting files with data to read, least recently changed first.
    waiting: BTreeSet<(Instant, u64)>,
    /// The resting files with pieces in flight.
    unacknowledged: HashSet<u64>,
    by_key: HashMap<FileKey, u64>,
    /// The tail each path (and symlink target) leads to, for change notifications.
    by_path: HashMap<Arc<Path>, u64>,
    /// Checkpoints loaded at start, consumed as files are found.
    saved: HashMap<FileKey, Row>,
    /// Positions imported from the Kinesis Agent, by file.
    imported: HashMap<FileKey, u64>,
    first_start: bool,
    initial_scan_done: bool,
    next_scan: Instant,
    rescan_requested: bool,
    /// New files that start like a tailed file, waiting to see whether they are its copy:
    /// when first seen, path, size.
    maybe_copies: HashMap<FileKey, (Instant, crate::source::discover::Found, u64)>,
    /// Files that could not be opened (logged once, retried at each scan).
    unreadable: HashSet<FileKey>,
    next_tail_id: u64,
    /// Bytes the tails' line and record buffers hold.
    held: u64,
    open_files: usize,
    /// The descriptors it may hold ([`TailSet::set_file_limit`]).
    file_limit: usize,
    /// The start was told that more files match than it may hold.
    told_over_limit: bool,
    /// Container logs: the pods' metadata from the Kubernetes API, when the flow asks.
    metadata: Option<crate::source::kubernetes::PodMetadata>,
    /// How the flow's lines become records, shared by its files' assemblers.
    assembly: std::sync::Arc<crate::framing::Assembly>,
}

impl<F: FileSystem> TailSet<F> {
    /// The files of `flow`, resuming at `saved` checkpoints (or `imported` Kinesis Agent
    /// positions); `first_start` when the flow never ran on this checkpoint database.
    pub fn new(fs: F, flow: Flow, saved: Vec<Row>, imported: HashMap<FileKey, u64>, first_start: bool, now: Instant) -> Self {
        TailSet {
            fs,
            assembly: std::sync::Arc::new(flow.assembly.clone()),
            flow,
            tails: HashMap::new(),
            resting: HashMap::new(),
            waiting: BTreeSet::new(),
            unacknowledged: HashSet::new(),
            by_key: HashMap::new(),
            by_path: HashMap::new(),
            saved: saved.into_iter().map(|r| (r.key, r)).collect(),
            imported,
            first_start,
            initial_scan_done: false,
            next_scan: now,
            rescan_requested: true,
            maybe_copies: HashMap::new(),
            unreadable: HashSet::new(),
            next_tail_id: 1,
            held: 0,
            open_files: 0,
            file_limit: usize::MAX,
            told_over_limit: false,
            metadata: None,
        }
    }

    /// Container records of this flow carry their pods' metadata from `metadata`.
    pub fn with_pod_metadata(mut self, metadata: Option<crate::source::kubernetes::PodMetadata>) -> Self {
        self.metadata = metadata;
        self
    }

    /// The pods' metadata this flow's records carry, if any.
    pub fn pod_metadata(&self) -> Option<&crate::source::kubernetes::PodMetadata> {
        self.metadata.as_ref()
    }

    /// Whether a scan is due.
    pub fn scan_due(&self, now: Instant) -> bool {
        self.rescan_requested || now >= self.next_scan
    }

    /// When the next scan is due (`debounce` after a request for one).
    pub fn next_scan(&self, now: Instant, debounce: Duration) -> Instant {
        if self.rescan_requested {
            now + debounce
        } else {
            self.next_scan
        }
    }

    pub fn request_scan(&mut self) {
        self.rescan_requested = true;
    }

    pub fn initial_scan_done(&self) -> bool {
        self.initial_scan_done
    }

    pub fn first_start(&self) -> bool {
        self.first_start
    }

    /// Bytes the tails' buffers hold.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Descriptors held open.
    pub fn open_files(&self) -> usize {
        self.open_files
    }

    /// Files it knows (held open or not).
    pub fn known_files(&self) -> usize {
        self.tails.len() + self.resting.len()
    }

    /// Pieces handed to the pipeline and not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        let resting = self.unacknowledged.iter().filter_map(|id| self.resting.get(id)?.acks.as_ref()).map(|a| a.outstanding());
        self.tails.values().map(|t| t.acks.outstanding()).chain(resting).sum()
    }

    /// The path of each tailed file with bytes not yet acknowledged, and those bytes (a file
    /// caught up costs nothing here: the publish of many idle files is cheap).
    pub fn behind(&self) -> Vec<(String, u64)> {
        self.tails
            .values()
            .filter(|t| !t.sealed)
            .map(|t| (t, t.size.saturating_sub(t.acks.committed())))
            .filter(|(_, behind)| *behind > 0)
            .map(|(t, behind)| (t.path.display().to_string(), behind))
            .chain(
                // a resting file is behind only while it waits for its turn or has pieces in
                // flight
                self.waiting
                    .iter()
                    .map(|(_, id)| id)
                    .chain(
                        self.unacknowledged
                            .iter()
                            .filter(|id| !self.resting.get(id).is_some_and(|r| self.waiting.contains(&(r.last_change, **id)))),
                    )
                    .filter_map(|id| self.resting.get(id))
                    .filter(|r| r.behind() > 0)
                    .map(|r| (r.path.display().to_string(), r.behind())),
            )
            .collect()
    }

    /// The deleted files this flow still holds open with bytes not yet acknowledged, oldest
    /// first: what a stop or a reload would lose. Only files no scan found are looked at (a
    /// deleted file is orphaned by the next scan), so a followed file costs nothing.
    pub fn deleted(&self) -> Vec<Deleted> {
        let mut out: Vec<Deleted> = self
            .tails
            .values()
            .filter(|t| t.phase != Phase::Following && !t.sealed && t.deleted())
            .filter_map(|t| {
                let len = t.let_go_at.or_else(|| t.current_len())?;
                let acknowledged = t.acks.committed();
                let unread_from = t.let_go_at.unwrap_or_else(|| t.framer.line_start());
                (len > acknowledged).then(|| Deleted {
                    tail: t.id,
                    path: t.path.to_path_buf(),
                    acknowledged,
                    unread_from,
                    len,
                    let_go: t.let_go_at.is_some(),
                })
            })
            .collect();
        out.sort_by_key(|d| d.tail);
        out
    }

    /// Lines (counting an unterminated last one) in `[from, len)` of tail `tail`'s open file, and
    /// whether that is exact: past [`COUNT_LINES_MAX`] bytes the count is extrapolated from the
    /// lines in the first ones (counting is done on the engine's thread).
    pub fn lines_between(&self, tail: u64, from: u64, len: u64) -> (u64, bool) {
        let Some(file) = self.tails.get(&tail).and_then(|t| t.file.as_ref()) else { return (0, false) };
        let end = len.min(from.saturating_add(COUNT_LINES_MAX));
        let mut buf = vec![0u8; (end.saturating_sub(from)).min(1 << 20) as usize];
        let (mut at, mut lines, mut last) = (from, 0u64, b'\n');
        while at < end {
            let want = ((end - at) as usize).min(buf.len());
            let n = match file.read_at(&mut buf[..want], at) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            last = buf[n - 1];
            at += n as u64;
        }
        if at < len && at > from {
            // the rest is taken to have lines as long as the part counted
            let estimate = (lines as u128 * (len - from) as u128 / (at - from) as u128) as u64;
            return (estimate.max(lines), false);
        }
        (lines + u64::from(last != b'\n' && at > from), at >= len)
    }

    /// Lets the deleted file of tail `tail` go without reading the rest (its flow's deleted files
    /// hold more than its cap): those lines are lost, and what is returned says which. What was
    /// read before still ships; the tail goes once it is acknowledged.
    pub fn let_go(&mut self, tail: u64) -> Option<Lost> {
        let t = self.tails.get(&tail)?;
        if t.let_go_at.is_some() {
            return None;
        }
        let (from, to) = (t.framer.line_start(), t.current_len().unwrap_or(t.size));
        let (lines, exact) = self.lines_between(tail, from, to);
        let t = self.tails.get_mut(&tail)?;
        t.let_go_at = Some(from);
        t.phase = Phase::Finished;
        t.dirty = false;
        // what is behind is what was read before the cut
        t.size = from;
        Some(Lost { path: t.path.to_path_buf(), from, to, lines, exact })
    }

    /// A file notification for `path`: its tail has data to read. A write to a path no tail
    /// follows matters only when a deferred new file sits there.
    pub fn changed(&mut self, path: &Path) -> bool {
        if let Some(&id) = self.by_path.get(path) {
            if let Some(t) = self.tails.get_mut(&id) {
                t.dirty = true;
                return true;
            }
            if self.resting_changed(id) {
                return true;
            }
        }
        // a file waiting to say more (empty, or maybe a copy) changed: under its path, or, for
        // a link (a container log), under the file it leads to, whose directory is watched
        let fs = &self.fs;
        if self.maybe_copies.values().any(|(_, f, _)| *f.path == *path || fs.canonicalize(&f.path).is_some_and(|t| t == path)) {
            self.rescan_requested = true;
        }
        false
    }

    /// Closes an idle tail's descriptor (it rests if it may); it is reopened by identity when
    /// the file changes.
    pub fn close(&mut self, id: u64) {
        if let Some(t) = self.tails.get_mut(&id) {
            if t.file.take().is_some() {
                self.open_files -= 1;
            }
        }
        self.rest(id);
    }

    /// The acknowledgement of piece `seq` of tail `tail`; stages the tail's checkpoint when it
    /// moved. Whether it moved.
    pub fn ack(&mut self, tail: u64, seqs: impl IntoIterator<Item = u64>, store: &mut impl Checkpoints) -> bool {
        let Some(t) = self.tails.get_mut(&tail) else { return self.ack_resting(tail, seqs, store) };
        let mut advanced = false;
        for seq in seqs {
            advanced |= t.acks.ack(seq).is_some();
        }
        if advanced {
            match &t.file {
                Some(_) => stage_row(store, &self.flow.id, t),
                // closed to make room for another file: opened for the moment it takes, and
                // at rest once nothing of it is in flight
                None => {
                    if let Some(row) = Self::reopen(&self.fs, t).and_then(|file| row_with(&self.flow.id, t, &file)) {
                        store.stage(row);
                    }
                    self.rest(tail);
                }
            }
        }
        advanced
    }

    /// The timers: multi-line records whose flush time passed, truncated files whose copy did
    /// not come, rotated-away files quiet for the grace period; finished, acknowledged files go.
    pub fn tick(&mut self, now: Instant, pipe: &mut impl Pipeline, store: &mut impl Checkpoints) {
        let grace = Duration::from_millis(self.flow.rotated_grace_ms);
        let flush_after = Duration::from_millis(self.flow.multiline_flush_ms);
        let (mut gone, mut rest) = (Vec::new(), Vec::new());
        for t in self.tails.values_mut() {
            let id = t.id;
            if t.assembler.next_flush(flush_after).is_some_and(|due| now >= due) {
                let Tail { assembler, acks, path, .. } = &mut **t;
                assembler.flush_stale(now, flush_after, |p| pipe.piece(acks, id, path, p));
            }
            if matches!(t.phase, Phase::AwaitingCopy { until } if now >= until) {
                // no copy appeared: the truncated content is gone; send what was read and end
                t.dirty = false;
                finish(t, pipe);
            }
            if matches!(t.phase, Phase::Orphaned { missed_scans } if missed_scans < 2) && t.deleted() {
                t.phase = Phase::Orphaned { missed_scans: 2 }; // deleted: no scan will find it again
            }
            if t.may_finish() && now >= t.finish_due(grace) {
                // written to since the last read? read that first, and wait again
                if t.current_len().is_some_and(|len| len > t.framer.offset()) && !t.sealed {
                    t.dirty = true;
                    t.last_change = now;
                } else {
                    finish(t, pipe);
                }
            }
            // (a file let go may still hold a multi-line record: it goes at its flush time)
            if t.phase == Phase::Finished && t.acks.outstanding() == 0 && !t.assembler.has_pending() {
                gone.push(id);
            }
            t.update_held(&mut self.held);
            // (one with data to read waits as it is: it may be waiting for its pod's metadata)
            if !t.dirty && t.restable() {
                rest.push(id);
            }
        }
        for id in rest {
            self.rest(id);
        }
        for id in gone {
            let Some(t) = self.tails.remove(&id) else { continue };
            self.held = self.held.saturating_sub(t.held);
            if self.by_key.get(&t.key) == Some(&id) {
                self.by_key.remove(&t.key);
                let still_exists = t.file.as_ref().and_then(|f| f.stat().ok()).is_some_and(|s| s.links > 0);
                match still_exists.then(|| row_of(&self.flow.id, &t)).flatten() {
                    // renamed out of the pattern: if it comes back, it resumes where it ended
                    Some(row) => {
                        self.saved.insert(t.key, row);
                    }
                    None => store.delete(&self.flow.id, t.key),
                }
            }
            if t.file.is_some() {
                self.open_files -= 1;
            }
            // (the paths it is indexed under: a look at two entries, not at every file's)
            for p in [Some(&t.path), t.target.as_ref()].into_iter().flatten() {
                unindex(&mut self.by_path, p, id);
            }
            tracing::debug!(flow = %self.flow.id, "finished {}", t.path.display());
        }
    }

    /// The next instant something is due, `now` when a tail can be read at once.
    pub fn next_deadline(&self, now: Instant, room: Room) -> Option<Instant> {
        let grace = Duration::from_millis(self.flow.rotated_grace_ms);
        let mut d: Option<Instant> = None;
        let mut at = |i: Instant| d = Some(d.map_or(i, |d| d.min(i)));
        // a file waiting for a descriptor is read when one is free (or may be made free)
        let mut descriptor = None;
        for t in self.tails.values() {
            if t.wants_read()
                && !room.backed_up
                && self.may_read(t, room)
                && (t.file.is_some() || *descriptor.get_or_insert_with(|| self.descriptor_available()))
            {
                match t.assembler.metadata_wait(now) {
                    // a new pod's file waits for its metadata: looked at again soon
                    Some(until) => at(until.min(now + METADATA_POLL)),
                    None => return Some(now),
                }
            }
            if let Some(due) = t.assembler.next_flush(Duration::from_millis(self.flow.multiline_flush_ms)) {
                at(due);
            }
            if let Phase::AwaitingCopy { until } = t.phase {
                at(until);
            }
            if t.may_finish() {
                at(t.finish_due(grace));
            }
        }
        if !self.waiting.is_empty() && !room.backed_up && self.resting_may_read(room) && self.descriptor_available() {
            return Some(now);
        }
        d
    }

    /// Where `item`, a file found by a scan, leads when it is a link (its target's directory is
    /// watched, so writes are notified under the target too).
    fn link_target(&self, item: &crate::source::discover::Found) -> Option<Arc<Path>> {
        item.target_dir.as_ref().and_then(|_| self.fs.canonicalize(&item.path)).map(Arc::from)
    }

    /// Whether the budget and the flow's share let a file at rest read now (it holds no line).
    fn resting_may_read(&self, room: Room) -> bool {
        room.in_flight + room.others_held + self.held < room.budget && room.flow_in_flight < room.share
    }

    /// Whether the budget and the flow's share let `t` read now (a new pod's file may also wait
    /// for its metadata: `RecordAssembler::metadata_wait`).
    fn may_read(&self, t: &Tail<F::File>, room: Room) -> bool {
        t.fits(room.in_flight, room.others_held + self.held, room.budget, self.flow.max_line_bytes)
            && (room.flow_in_flight < room.share || t.may_finish_line())
    }

    /// Sends what the tails' record assemblers hold (the flow is stopping).
    pub fn flush_assemblers(&mut self, pipe: &mut impl Pipeline) {
        for t in self.tails.values_mut() {
            let Tail { id, assembler, acks, path, .. } = &mut **t;
            assembler.flush(|p| pipe.piece(acks, *id, path, p));
        }
    }

    /// Stages every tail's position and lets every file go (the flow stopped).
    pub fn release(&mut self, store: &mut impl Checkpoints) {
        for t in self.tails.values() {
            stage_row(store, &self.flow.id, t);
        }
        self.tails.clear();
        // (a resting file's checkpoint was staged when its last piece was acknowledged)
        self.resting.clear();
        self.waiting.clear();
        self.unacknowledged.clear();
        self.by_key.clear();
        self.by_path.clear();
        self.held = 0;
        self.open_files = 0;
        // its pod metadata fetcher ends with the last handle
        self.metadata = None;
    }

    /// A file shrank below what was read: its old state waits for a copytruncate copy, and the
    /// file itself starts over at offset 0.
    fn truncated(&mut self, now: Instant, id: u64, store: &mut impl Checkpoints) {
        let Some(old) = self.tails.get_mut(&id) else { return };
        tracing::info!(flow = %self.flow.id, "{} was truncated at offset {}; reading it again from the start", old.path.display(), old.framer.offset());
        let key = old.key;
        let path = old.path.clone();
        let target = old.target.clone();
        // closed to make room for others: opened again to read it from its start
        let file = match old.file.take() {
            Some(f) => Some(f),
            None => Self::reopen(&self.fs, old).inspect(|_| self.open_files += 1),
        };
        let Some(old) = self.tails.get_mut(&id) else { return };
        old.phase = Phase::AwaitingCopy { until: now + COPY_WAIT };
        old.dirty = false;
        self.by_key.remove(&key);
        self.rescan_requested = true;
        let Some(file) = file else { return };
        let size = file.stat().map(|m| m.len).unwrap_or(0);
        let new_id = self.next_tail_id;
        self.next_tail_id += 1;
        let tail =
            Tail::closed(new_id, key, path.clone(), target.clone(), size, 0, &self.flow, &self.assembly, self.metadata.as_ref(), now)
                .with_file(file);
        stage_row(store, &self.flow.id, &tail);
        self.tails.insert(new_id, Box::new(tail));
        self.by_key.insert(key, new_id);
        self.by_path.insert(path, new_id);
        if let Some(t) = target {
            self.by_path.insert(t, new_id);
        }
        self.hold_or_close(new_id, &mut None);
    }
}

#[cfg(test)]
impl<F: FileSystem> TailSet<F> {
    /// Whether every path indexed leads to a file the set knows (none to a file gone).
    pub(crate) fn paths_lead_to_known_files(&self) -> bool {
        self.by_path.values().all(|id| self.tails.contains_key(id) || self.resting.contains_key(id))
    }
}

/// Reads what is left of a file's last line and ends its records: nothing more comes.
fn finish<H>(t: &mut Tail<H>, pipe: &mut impl Pipeline) {
    let Tail { id, assembler, acks, framer, path, .. } = &mut *t;
    framer.finish(|line| assembler.push_line(line, |p| pipe.piece(acks, *id, path, p)));
    assembler.flush(|p| pipe.piece(acks, *id, path, p));
    t.phase = Phase::Finished;
}

/// Forgets that `path` leads to tail `id` (not another tail indexed there since).
fn unindex(by_path: &mut HashMap<Arc<Path>, u64>, path: &Path, id: u64) {
    if by_path.get(path) == Some(&id) {
        by_path.remove(path);
    }
}

fn stage_row<H: OpenFile>(store: &mut impl Checkpoints, flow: &str, t: &Tail<H>) {
    if let Some(row) = row_of(flow, t) {
        store.stage(row);
    }
}

/// The checkpoint row of a tail, when its file is open to hash the bytes before the offset.
fn row_of<H: OpenFile>(flow: &str, t: &Tail<H>) -> Option<Row> {
    row_with(flow, t, t.file.as_ref()?)
}

/// The checkpoint row of a tail, its file open as `file`.
fn row_with<H: OpenFile>(flow: &str, t: &Tail<H>, file: &H) -> Option<Row> {
    // a sealed copy is shorter than what was read from its original: all of it is done
    let len = || file.stat().ok().map(|s| s.len);
    let offset = if t.sealed { t.acks.committed().min(len().unwrap_or(u64::MAX)) } else { t.acks.committed() };
    row_for(flow, t.key, &t.path, t.fingerprint, offset, file)
}

/// The checkpoint row of file `key` at `path`, acknowledged to `offset`, open as `file`.
fn row_for(flow: &str, key: FileKey, path: &Path, fingerprint: identity::Fingerprint, offset: u64, file: &impl ReadAt) -> Option<Row> {
    // a file rewritten since it was read (truncated and written past the offset while the
    // budget held its reads) is not where its acknowledgements point: nothing is staged, and
    // the next read finds it replaced
    if !identity::starts_with(file, fingerprint).unwrap_or(false) {
        return None;
    }
    let tail = identity::tail_hash(file, offset).ok().flatten()?;
    Some(Row { flow: flow.to_string(), key, path: path.display().to_string(), offset, fingerprint, tail, updated_at: 0 })
}
