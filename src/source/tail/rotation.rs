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
}

impl CopyIndex {
    pub fn new<'a, H: 'a>(tails: impl Iterator<Item = &'a Tail<H>>) -> CopyIndex {
        let awaiting = tails.filter(|t| matches!(t.phase, Phase::AwaitingCopy { .. })).map(|t| t.id).collect();
        CopyIndex { awaiting, ..CopyIndex::default() }
    }

    /// Indexes file `id` by its first bytes `head` (once the index is made).
    pub fn add(&mut self, id: u64, head: &[u8]) {
        if let Some(heads) = self.heads.as_mut().filter(|_| !head.is_empty()) {
            self.lens.insert(head.len());
            heads.insert((head.into(), id));
        }
    }

    /// The files (of `files`, every one the set follows, by id and first bytes) whose first
    /// bytes start with `new_head` (not empty) or that it starts with: the files
    /// [`may_be_copy_of`] (or [`heads_agree`], for a file at rest) can say yes to.
    pub fn candidates<'a>(&mut self, files: impl Iterator<Item = (u64, &'a [u8])>, new_head: &[u8]) -> Vec<u64> {
        if self.heads.is_none() {
            self.heads = Some(Default::default());
            files.for_each(|(id, head)| self.add(id, head));
        }
        let Some(heads) = self.heads.as_ref() else { return Vec::new() };
        let from = |head: &[u8]| (Box::<[u8]>::from(head), 0u64);
        let longer = heads.range(from(new_head)..).take_while(|(h, _)| h.starts_with(new_head));
        let shorter = self
            .lens
            .range(..new_head.len())
            .flat_map(|&n| heads.range(from(&new_head[..n])..).take_while(move |(h, _)| **h == new_head[..n]));
        longer.chain(shorter).map(|(_, id)| *id).collect()
    }
}

/// Matches a new file of `size` bytes, first bytes `new_head`, against the truncated files
/// waiting for their copy (`waiting`: id and first bytes). The copy may be shorter than what was
/// read: lines written between logrotate's copy and its truncate were read from the original. A
/// whole file (shorter than a fingerprint) that the original starts with is such a copy: the
/// truncation was seen, so the copy was complete; a file holding only part of a longer head may
/// still be being written.
pub(crate) fn match_copy<'a>(new_head: &[u8], size: u64, waiting: impl IntoIterator<Item = (u64, &'a [u8])>) -> CopyMatch {
    let mut in_progress = false;
    let whole = size > 0 && size == new_head.len() as u64;
    for (id, head) in waiting {
        if head.is_empty() {
            continue;
        }
        if (new_head.len() >= head.len() && new_head.starts_with(head)) || (whole && head.starts_with(new_head)) {
            return CopyMatch::CopyOf(id);
        }
        in_progress |= head.starts_with(new_head);
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
    if original.phase != Phase::Following || original.framer.offset() == 0 || original.head.is_empty() {
        return false;
    }
    if !heads_agree(new_head, &original.head) {
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

/// Whether two files' first bytes agree as far as both go.
pub(crate) fn heads_agree(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
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
        /// The index gives every tail whose first bytes agree with a new file's as far as both
        /// go (what `may_be_copy_of` compares first), whatever the heads.
        #[test]
        fn the_copy_index_finds_every_tail_whose_first_bytes_agree(
            heads in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..6), 0..40),
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
            for (id, head) in heads.iter().enumerate() {
                let key = identity::FileKey { dev: 1, ino: id as u64 };
                let mut t = Tail::closed(id as u64, key, std::path::Path::new("/l/a.log").into(), None, 0, 0, &flow, &flow.assembly.clone().into(), None, now)
                    .with_file(std::fs::File::open("/dev/null").unwrap());
                t.head = head.clone();
                tails.push(t);
            }
            let mut index = CopyIndex::new(tails.iter());
            let mut got = index.candidates(tails.iter().map(|t| (t.id, t.head.as_slice())), &new_head);
            got.sort();
            let want: Vec<u64> = tails
                .iter()
                .filter(|t| !t.head.is_empty())
                .filter(|t| {
                    let n = t.head.len().min(new_head.len());
                    t.head[..n] == new_head[..n]
                })
                .map(|t| t.id)
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
