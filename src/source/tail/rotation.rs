//! The rotation decisions: is a new file the copytruncate copy of a truncated one, may it be a
//! copy still being written, and where does a file found at start resume.
//!
//! Guarantees: each decision reads only the files and facts passed in; none reads a clock.
//! Not guaranteed: telling apart two files whose compared bytes are identical (a copy and an
//! independent file written with the same lines are the same to these rules).

use super::file::{Phase, Tail};
use crate::checkpoint::Row;
use crate::config::InitialPosition;
use crate::source::fs::{OpenFile, ReadAt};
use crate::source::identity;

/// What a file found for the first time is, next to the truncated files waiting for their copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyMatch {
    /// It holds the first bytes of this truncated file: it is its copy.
    CopyOf(u64),
    /// It is a prefix of a truncated file's first bytes: a copy still being written.
    InProgress,
    None,
}

/// A followed file's first bytes (up to [`identity::FINGERPRINT_MAX`]) as the copy rules compare
/// them: the bytes themselves, which a tail holds, or only the hash its fingerprint was made from,
/// for a file at rest (or a tail woken from rest, until its fingerprint grows): a host of 100,000
/// files keeps no 256 bytes for each.
///
/// A hash tells exactly whether a new file starts with all of those bytes, but not whether a new
/// file shorter than them is their start: such a file is not taken for a copy of a file known
/// only by its hash. A true copy holds at least what the original held when it was copied; it is
/// shorter than the fingerprint only when the fingerprint grew after the copy was made (a file at
/// rest keeps its bytes for a while after that, [`super::resting::HEAD_KEPT_AT_REST`]), or when
/// it is still being written in pieces smaller than the fingerprint (`cp` and logrotate write far
/// larger ones).
#[derive(Debug, Clone, Copy)]
pub(crate) enum FirstBytes<'a> {
    Bytes(&'a [u8]),
    Hashed(identity::Fingerprint),
}

impl FirstBytes<'_> {
    pub fn len(&self) -> usize {
        match self {
            FirstBytes::Bytes(b) => b.len(),
            FirstBytes::Hashed(fp) => fp.len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `x` starts with all of them (and they are not none).
    pub fn are_prefix_of(&self, x: &[u8]) -> bool {
        let n = self.len();
        n > 0
            && x.len() >= n
            && match self {
                FirstBytes::Bytes(b) => x[..n] == **b,
                FirstBytes::Hashed(fp) => identity::fnv1a(&x[..n]) == fp.hash,
            }
    }

    /// Whether they start with all of `x` (not empty); known only by their hash, only when `x`
    /// is all of them.
    pub fn start_with(&self, x: &[u8]) -> bool {
        !x.is_empty()
            && match self {
                FirstBytes::Bytes(b) => b.starts_with(x),
                FirstBytes::Hashed(_) => x.len() == self.len() && self.are_prefix_of(x),
            }
    }

    /// Whether they and `x` agree as far as both go (neither empty).
    pub fn agree_with(&self, x: &[u8]) -> bool {
        self.are_prefix_of(x) || self.start_with(x)
    }
}

/// The tails a new file may be the copy of, found without looking at every tail: those waiting
/// for their copy, and the others by their first bytes. Built for one scan's new files (a tail
/// added meanwhile is added to it): a scan that finds 100,000 new files compares each with the
/// tails whose first bytes it starts with or that start with its, not with all of them.
#[derive(Default)]
pub(crate) struct CopyIndex {
    /// Truncated tails waiting for their copy.
    pub awaiting: Vec<u64>,
    /// Files' first bytes and ids, made at the first question (a scan whose new files are all
    /// empty asks none).
    heads: Option<std::collections::BTreeSet<(Box<[u8]>, u64)>>,
    /// The lengths of those first bytes.
    lens: std::collections::BTreeSet<usize>,
    /// The files known by the hash of their first bytes: length, hash, id.
    hashed: std::collections::BTreeSet<(u64, u64, u64)>,
    /// The lengths of those.
    hashed_lens: std::collections::BTreeSet<u64>,
}

impl CopyIndex {
    pub fn new<'a, H: 'a>(tails: impl Iterator<Item = &'a Tail<H>>) -> CopyIndex {
        let awaiting = tails.filter(|t| matches!(t.phase, Phase::AwaitingCopy { .. })).map(|t| t.id).collect();
        CopyIndex { awaiting, ..CopyIndex::default() }
    }

    /// Indexes file `id` by its first bytes (once the index is made).
    pub fn add(&mut self, id: u64, first: FirstBytes<'_>) {
        let Some(heads) = self.heads.as_mut().filter(|_| !first.is_empty()) else { return };
        match first {
            FirstBytes::Bytes(head) => {
                self.lens.insert(head.len());
                heads.insert((head.into(), id));
            }
            FirstBytes::Hashed(fp) => {
                self.hashed_lens.insert(fp.len);
                self.hashed.insert((fp.len, fp.hash, id));
            }
        }
    }

    /// The files (of `files`, every one the set follows, by id and first bytes) whose first
    /// bytes agree with `new_head` (not empty) as far as [`FirstBytes::agree_with`] can tell: the
    /// files [`may_be_copy_of`] (or, for a file at rest, `agree_with`) can say yes to.
    pub fn candidates<'a>(&mut self, files: impl Iterator<Item = (u64, FirstBytes<'a>)>, new_head: &[u8]) -> Vec<u64> {
        if self.heads.is_none() {
            self.heads = Some(Default::default());
            files.for_each(|(id, first)| self.add(id, first));
        }
        let Some(heads) = self.heads.as_ref() else { return Vec::new() };
        let from = |head: &[u8]| (Box::<[u8]>::from(head), 0u64);
        let longer = heads.range(from(new_head)..).take_while(|(h, _)| h.starts_with(new_head));
        let shorter = self
            .lens
            .range(..new_head.len())
            .flat_map(|&n| heads.range(from(&new_head[..n])..).take_while(move |(h, _)| **h == new_head[..n]));
        let mut found: Vec<u64> = longer.chain(shorter).map(|(_, id)| *id).collect();
        if !self.hashed.is_empty() {
            // one pass over the new file's first bytes gives the hash of each length asked
            for (n, hash) in (1u64..).zip(identity::fnv1a_prefixes(new_head)) {
                if self.hashed_lens.contains(&n) {
                    found.extend(self.hashed.range((n, hash, 0)..=(n, hash, u64::MAX)).map(|(_, _, id)| *id));
                }
            }
        }
        found
    }
}

/// Matches a new file of `size` bytes, first bytes `new_head`, against the truncated files
/// waiting for their copy (`waiting`: id and first bytes). The copy may be shorter than what was
/// read: lines written between logrotate's copy and its truncate were read from the original. A
/// whole file (shorter than a fingerprint) that the original starts with is such a copy: the
/// truncation was seen, so the copy was complete; a file holding only part of a longer head may
/// still be being written.
pub(crate) fn match_copy<'a>(new_head: &[u8], size: u64, waiting: impl IntoIterator<Item = (u64, FirstBytes<'a>)>) -> CopyMatch {
    let mut in_progress = false;
    let whole = size > 0 && size == new_head.len() as u64;
    for (id, head) in waiting {
        if head.is_empty() {
            continue;
        }
        if head.are_prefix_of(new_head) || (whole && head.start_with(new_head)) {
            return CopyMatch::CopyOf(id);
        }
        in_progress |= head.start_with(new_head);
    }
    if in_progress {
        CopyMatch::InProgress
    } else {
        CopyMatch::None
    }
}

/// Whether the file `copy` (`len` bytes, first bytes `new_head`) may be a copy of the followed
/// file `original`, about to be truncated. It is not when their first bytes differ, nor when the
/// original is still the file that was read (not shorter than what was read, same first bytes)
/// and holds other bytes than the copy just before `len` (up to 4 KiB): a file that only shares
/// a banner. A truncated or rewritten original may have been copied.
pub(crate) fn may_be_copy_of<H: OpenFile>(copy: &impl ReadAt, new_head: &[u8], len: u64, original: &Tail<H>) -> bool {
    let first = original.first_bytes();
    if original.phase != Phase::Following || original.framer.offset() == 0 || first.is_empty() {
        return false;
    }
    if !first.agree_with(new_head) {
        return false;
    }
    let Some(file) = original.file.as_ref() else { return true };
    let unchanged = file.stat().is_ok_and(|m| m.len >= original.framer.offset().max(len))
        && identity::starts_with(file, original.fingerprint).unwrap_or(false);
    if !unchanged {
        return true;
    }
    let n = len.min(4096) as usize;
    let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
    let at = len - n as u64;
    match (copy.read_full_at(&mut a, at), file.read_full_at(&mut b, at)) {
        (Ok(x), Ok(y)) if x == n && y == n => a == b,
        _ => true,
    }
}

/// Where a file found for the first time starts being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// At its checkpoint, which still describes it.
    Checkpoint(u64),
    /// Its checkpoint describes another file (replaced, rewritten or truncated while stopped).
    Replaced,
    /// At the Kinesis Agent's position for it.
    Imported(u64),
    /// After its last complete line (`END_OF_FILE` at the very first start).
    EndOfFile,
    Start,
}

impl Resume {
    pub fn offset(self, end_of_last_line: impl FnOnce() -> u64) -> u64 {
        match self {
            Resume::Checkpoint(o) | Resume::Imported(o) => o,
            Resume::EndOfFile => end_of_last_line(),
            Resume::Replaced | Resume::Start => 0,
        }
    }
}

/// Where the file `file` of `size` bytes resumes: at its checkpoint `saved` when the fingerprint
/// and the bytes before the offset still match, else from the start; at the Kinesis Agent's
/// position `imported` when it has no checkpoint; at the end of its last line when this is the
/// flow's first start, its first scan, and the flow starts at the end of files.
pub(crate) fn resume(
    file: &impl ReadAt,
    size: u64,
    saved: Option<&Row>,
    imported: Option<u64>,
    first_scan_of_first_start: bool,
    initial: InitialPosition,
) -> Resume {
    if let Some(row) = saved {
        let same = row.fingerprint.len <= size
            && identity::starts_with(file, row.fingerprint).unwrap_or(false)
            && row.offset <= size
            && identity::tail_hash(file, row.offset).ok().flatten() == Some(row.tail);
        return if same { Resume::Checkpoint(row.offset) } else { Resume::Replaced };
    }
    match imported {
        Some(offset) if offset <= size => Resume::Imported(offset),
        _ if first_scan_of_first_start && initial == InitialPosition::EndOfFile => Resume::EndOfFile,
        _ => Resume::Start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The index gives every file whose first bytes agree with a new file's as far as they
        /// can tell (what `may_be_copy_of` compares first), whatever the heads, whether a file
        /// holds its bytes or only their hash.
        #[test]
        fn the_copy_index_finds_every_file_whose_first_bytes_agree(
            heads in proptest::collection::vec((proptest::collection::vec(0u8..3, 0..6), any::<bool>()), 0..40),
            new_head in proptest::collection::vec(0u8..3, 1..6),
        ) {
            let flow = crate::config::native::load(
                std::path::Path::new("/x.yaml"),
                "checkpoint_file: /x.db\nflows:\n  - id: m\n    path: /l/*.log\n    sink: {type: stdout}\n",
            )
            .unwrap()
            .flows
            .remove(0);
            let now = std::time::Instant::now();
            let mut tails = Vec::new();
            for (id, (head, hashed)) in heads.iter().enumerate() {
                let key = identity::FileKey { dev: 1, ino: id as u64 };
                let mut t = Tail::closed(id as u64, key, std::path::Path::new("/l/a.log").into(), None, 0, 0, &flow, &flow.assembly.clone().into(), None, now)
                    .with_file(std::fs::File::open("/dev/null").unwrap());
                t.fingerprint = identity::Fingerprint { len: head.len() as u64, hash: identity::fnv1a(head) };
                t.head = if *hashed { Vec::new() } else { head.clone() };
                tails.push(t);
            }
            let mut index = CopyIndex::new(tails.iter());
            let mut got = index.candidates(tails.iter().map(|t| (t.id, t.first_bytes())), &new_head);
            got.sort();
            let want: Vec<u64> = tails.iter().filter(|t| t.first_bytes().agree_with(&new_head)).map(|t| t.id).collect();
            prop_assert_eq!(got, want);
        }

        /// A hash says what the bytes say whenever the new file holds all of them, and shorter
        /// only that it is not all of them.
        #[test]
        fn first_bytes_known_by_their_hash_agree_as_the_bytes_do_when_the_new_file_holds_them_all(
            head in proptest::collection::vec(0u8..3, 0..8),
            new_head in proptest::collection::vec(0u8..3, 0..8),
        ) {
            let bytes = FirstBytes::Bytes(&head);
            let hashed = FirstBytes::Hashed(identity::Fingerprint { len: head.len() as u64, hash: identity::fnv1a(&head) });
            prop_assert_eq!(hashed.are_prefix_of(&new_head), bytes.are_prefix_of(&new_head));
            if new_head.len() >= head.len() {
                prop_assert_eq!(hashed.agree_with(&new_head), bytes.agree_with(&new_head));
            } else {
                prop_assert!(!hashed.agree_with(&new_head));
            }
            let n = head.len().min(new_head.len());
            prop_assert_eq!(bytes.agree_with(&new_head), !head.is_empty() && !new_head.is_empty() && head[..n] == new_head[..n]);
        }
    }
}
