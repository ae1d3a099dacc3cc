//! One tailed file: where it is read to, what its buffers hold, and where it stands in its life
//! (followed, rotated away, truncated and waiting for its copy, a sealed copy, finished).
//!
//! Guarantees: the predicates here read only the tail's own state and the figures passed in.
//! Not done here: reading, and deciding what happens next (the [`super::TailSet`] does both).

use super::rotation::FirstBytes;
use crate::checkpoint::acks::AckTracker;
use crate::config::{Flow, Oversized};
use crate::framing::{LineFramer, RecordAssembler};
use crate::source::fs::{OpenFile, ReadAt};
use crate::source::identity::{self, FileKey, Fingerprint, FINGERPRINT_MAX};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a tail stands in its life. A copytruncate copy holding no more than was read from its
/// original is also `sealed` (never read), whatever its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Found at a matching path by the last scan.
    Following,
    /// Not found by this many consecutive scans (rotated away under another name, or
    /// deleted): read through its descriptor; a listing taken during a burst of renames can miss
    /// a file once, so it is let go only when two scans agree (or it is deleted) and it has not
    /// grown for the grace period.
    Orphaned { missed_scans: u32 },
    /// Truncated: its old state waits for its copytruncate copy until this instant.
    AwaitingCopy { until: Instant },
    /// Everything was read and its last line sent; it goes once fully acknowledged.
    Finished,
}

impl Phase {
    /// Whether its file is read in this phase (a tail waiting for its copy, or finished, is not).
    pub fn reads(self) -> bool {
        matches!(self, Phase::Following | Phase::Orphaned { .. })
    }

    pub fn is_orphaned(self) -> bool {
        matches!(self, Phase::Orphaned { .. })
    }
}

/// One file being tailed, through an open file of type `H`.
pub(crate) struct Tail<H> {
    pub id: u64,
    pub key: FileKey,
    /// Shared with the set's index of paths: one copy of each.
    pub path: Arc<Path>,
    /// The symlink target, when `path` is a link.
    pub target: Option<Arc<Path>>,
    pub file: Option<H>,
    pub fingerprint: Fingerprint,
    /// The first bytes the fingerprint was made from, to recognise a copy still being written;
    /// none when woken from rest (unless kept, [`super::resting::HEAD_KEPT_AT_REST`]) until its
    /// fingerprint grows ([`Tail::first_bytes`]).
    pub head: Vec<u8>,
    /// When its fingerprint last grew (it read on past a short file's first bytes): a copy made
    /// just before is shorter than the first bytes it now has.
    pub fingerprint_grew_at: Option<Instant>,
    pub framer: LineFramer,
    pub assembler: RecordAssembler,
    pub acks: AckTracker,
    pub size: u64,
    pub last_change: Instant,
    /// Where it stands in its life.
    pub phase: Phase,
    /// A copytruncate copy holding no more than was already read from its original: never read,
    /// never taken for truncated.
    pub sealed: bool,
    pub dirty: bool,
    pub read_error_logged: bool,
    /// Bytes its line and record buffers hold (counted in the set's `held`).
    pub held: u64,
    /// Its long unterminated line was given back to the file to stay within the budget: it is
    /// read again, from where that line starts, once the line fits.
    pub parked: bool,
    /// A parked tail's line cut at max_line: where it starts and how far it was searched, so
    /// taking it up again reads its first max_line bytes, not the whole line.
    pub parked_cut_line: Option<(u64, u64)>,
    /// Where the line starts that this tail was holding unfinished when the budget (or its
    /// flow's share) filled: over the budget it may read on only to finish that line.
    pub finishing_line: Option<u64>,
    /// Let go at this offset (its deleted file held more than the flow's cap): nothing after it
    /// is read; it goes once what was read before is acknowledged.
    pub let_go_at: Option<u64>,
}

impl<H> Tail<H> {
    /// Its first bytes as the copy rules compare them: those it holds, or its fingerprint's hash
    /// when it holds none (woken from rest).
    pub fn first_bytes(&self) -> FirstBytes<'_> {
        if self.head.is_empty() {
            FirstBytes::Hashed(self.fingerprint)
        } else {
            FirstBytes::Bytes(&self.head)
        }
    }
}

impl<H: OpenFile> Tail<H> {
    /// The file, open as `file`: its fingerprint and first bytes are read from it.
    pub fn with_file(mut self, file: H) -> Self {
        self.fingerprint = identity::fingerprint(&file, self.size).unwrap_or_default();
        self.head = head_of(&file, self.size);
        self.file = Some(file);
        self
    }

    /// The length of its open file now, if it is open.
    pub fn current_len(&self) -> Option<u64> {
        self.file.as_ref().and_then(|f| f.stat().ok()).map(|s| s.len)
    }

    /// Whether its open file is shorter than what was read, or changed size and no longer starts
    /// with the bytes it was fingerprinted from (truncated and written again).
    pub fn truncated_since_read(&self) -> bool {
        let Some(len) = self.current_len() else { return false };
        let Some(file) = self.file.as_ref() else { return false };
        len < self.framer.offset() || (len != self.size && !identity::starts_with(file, self.fingerprint).unwrap_or(true))
    }

    /// A file rotated away under a name no pattern matches is still written to by a slow writer
    /// for a while: at each scan its growth is looked for, through its descriptor.
    pub fn look_for_growth_if_orphaned(&mut self) {
        if self.phase.is_orphaned() && !self.sealed && !self.dirty && self.current_len().is_some_and(|len| len > self.framer.offset()) {
            self.dirty = true;
        }
    }

    /// Whether its open file has lost its last name (deleted).
    pub fn deleted(&self) -> bool {
        self.file.as_ref().and_then(|f| f.stat().ok()).is_some_and(|s| s.links == 0)
    }
}

impl<H> Tail<H> {
    /// A file of `size` bytes to be read from `start`, holding no descriptor yet (opened with
    /// [`Tail::with_file`], or its fingerprint and first bytes set by the caller); header lines
    /// are skipped when `start` is offset 0.
    #[allow(clippy::too_many_arguments)]
    pub fn closed(
        id: u64,
        key: FileKey,
        path: Arc<Path>,
        target: Option<Arc<Path>>,
        size: u64,
        start: u64,
        flow: &Flow,
        assembly: &std::sync::Arc<crate::framing::Assembly>,
        metadata: Option<&crate::source::kubernetes::PodMetadata>,
        now: Instant,
    ) -> Self {
        let skip = if start == 0 { flow.skip_header_lines } else { 0 };
        let pod = crate::framing::container::PodInfo::from_paths(&[&*path].into_iter().chain(target.as_deref()).collect::<Vec<_>>());
        Tail {
            id,
            key,
            path,
            target,
            fingerprint: Fingerprint::default(),
            head: Vec::new(),
            fingerprint_grew_at: None,
            file: None,
            framer: LineFramer::new(start, flow.max_line_bytes).streaming(flow.oversized == Oversized::Split),
            assembler: RecordAssembler::new(assembly.clone(), skip, now).with_limit(flow.max_line_bytes).with_pod(&pod, metadata),
            acks: AckTracker::new(start),
            size,
            last_change: now,
            phase: Phase::Following,
            sealed: false,
            dirty: true,
            read_error_logged: false,
            held: 0,
            parked: false,
            parked_cut_line: None,
            finishing_line: None,
            let_go_at: None,
        }
    }

    /// Whether reading it now keeps the bytes held within `budget`, given `used` (in flight
    /// and held): a tail whose long unterminated line was released waits until that line fits.
    /// A tail in the middle of a line may always read on to its end (it holds that line
    /// already, and finishing it turns held bytes into bytes in flight); over the budget it is
    /// parked afterwards if the line is still unfinished.
    /// A parked tail is taken up when its line fits in what is left of the budget, or when
    /// nothing is in flight (what others hold then is their own unfinished lines, themselves
    /// bounded by parking): a line as long as the whole budget is not starved for ever.
    pub fn fits(&self, in_flight: u64, held: u64, budget: u64, max_line: usize) -> bool {
        let used = in_flight + held;
        if !self.parked {
            return used < budget || self.may_finish_line();
        }
        let line = self.size.saturating_sub(self.framer.offset()).min(max_line as u64);
        in_flight == 0 || used + line <= budget
    }

    /// Over the budget, a tail holding an unfinished line may read on to its end: the line it
    /// held when the budget filled, not the ones after it.
    pub fn may_finish_line(&self) -> bool {
        self.framer.pending_len() > 0 && self.finishing_line.is_none_or(|s| s == self.framer.line_start())
    }

    /// Brings `total` (the bytes every tail's buffers hold) up to date with this tail's.
    pub fn update_held(&mut self, total: &mut u64) {
        let now = buffered(&self.framer, &self.assembler);
        *total = (*total + now).saturating_sub(self.held);
        self.held = now;
    }

    /// Has unread bytes that reading can get now.
    pub fn wants_read(&self) -> bool {
        self.dirty && !self.sealed && self.phase.reads()
    }

    /// Rotated away or deleted, confirmed, fully read: only time stands between it and its end.
    pub fn may_finish(&self) -> bool {
        matches!(self.phase, Phase::Orphaned { missed_scans } if missed_scans >= 2) && !self.dirty
    }

    /// When it is let go if nothing is written to it meanwhile.
    pub fn finish_due(&self, grace: Duration) -> Instant {
        self.last_change + grace
    }

    /// Followed at its path, read to its end, holding no unfinished line or record: closing its
    /// descriptor loses nothing (it is opened again by path and identity when it grows). Records
    /// of it may still be in flight.
    pub fn closable(&self) -> bool {
        self.file.is_some()
            && self.phase == Phase::Following
            && !self.dirty
            && !self.assembler.has_pending()
            && ((self.framer.pending_len() == 0 && self.size == self.framer.offset()) || self.sealed)
    }

    /// Closable, and everything read of it acknowledged.
    pub fn idle(&self) -> bool {
        self.closable() && self.acks.outstanding() == 0
    }
}

/// What a tail's line and record buffers hold against the budget: their memory while they hold
/// an unfinished line or record. Empty buffers keep some room (at most
/// [`crate::framing::KEEP_CAPACITY`] each) that is not counted: counted, the room kept by many
/// idle files could fill the budget with nothing in flight and stop every read for good.
pub(crate) fn buffered(framer: &LineFramer, assembler: &RecordAssembler) -> u64 {
    if framer.pending_len() == 0 && !assembler.has_pending() {
        return 0;
    }
    (framer.held_bytes() + assembler.held_bytes()) as u64
}

/// The first bytes of a file (at most the fingerprint's length).
pub(crate) fn head_of(file: &impl ReadAt, size: u64) -> Vec<u8> {
    let mut head = vec![0u8; size.min(FINGERPRINT_MAX) as usize];
    match file.read_full_at(&mut head, 0) {
        Ok(n) if n == head.len() => head,
        _ => Vec::new(),
    }
}

/// Offset just after the last `\n` of a file (`END_OF_FILE`: an unterminated last line is read
/// once it is complete).
pub(crate) fn end_of_last_line(file: &impl ReadAt, size: u64) -> u64 {
    let mut buf = vec![0u8; 64 << 10];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        if !file.read_full_at(chunk, start).is_ok_and(|n| n == chunk.len()) {
            return size;
        }
        if let Some(p) = memchr::memrchr(b'\n', chunk) {
            return start + p as u64 + 1;
        }
        end = start;
    }
    0
}
