//! Turning a file's bytes into records: line framing, header skipping, multi-line joining,
//! aggregation and truncation. No I/O and no clock: the caller feeds bytes and says when data has
//! run out or a multi-line record has waited long enough.
//!
//! Guarantees:
//! - a line is everything up to and including the next `\n` (a CR stays in the line); an
//!   unterminated tail is held until more bytes come or the caller calls [`LineFramer::finish`];
//! - every byte consumed belongs to exactly one emitted [`Piece`], so the byte ranges of the pieces
//!   tile the file without gaps or overlap (the checkpoint relies on this);
//! - a line longer than the framer's limit is cut: its first `max_line` bytes are emitted, marked
//!   `runaway`, and the rest up to its `\n` is consumed without being kept, so memory stays bounded;
//!   in stream mode ([`LineFramer::streaming`], for `oversized_records: split`) it is emitted
//!   instead as consecutive pieces of `max_line` bytes (its `\n` joins the last), as soon as each
//!   is read: a piece's end is a place to resume from, since the pieces after it come out the same;
//! - a buffer that held a long line is given back once the line is out (at most
//!   [`KEEP_CAPACITY`] bytes are kept), and what the buffers hold is reported
//!   ([`LineFramer::held_bytes`], [`RecordAssembler::held_bytes`]) so the caller can count it
//!   against its memory budget, and can release a waiting line to read it again later
//!   ([`LineFramer::release`]);
//! - `skipHeaderLines` counts lines from offset 0 and carries over when the file is shorter;
//! - multi-line (`multiLineStartPattern`, a continuation pattern or a preset, see [`multiline`]):
//!   the record waiting is emitted when a line the rule does not join comes, when it would grow
//!   past the limit, or when the caller flushes it (no line for the flush timeout, end of a
//!   finished file); a line the rule can never continue is emitted at once;
//! - aggregation (`aggregatedRecordSizeBytes`): whole lines are packed greedily while the record
//!   stays within the limit; a longer line is a record of its own; what is packed is emitted when
//!   the caller reports the end of the available data.
//!
//! Not done here: conversion (see `convert`), and deciding when a timeout has passed.

pub mod container;
pub mod journal;
pub mod multiline;
pub mod pod_info;
pub mod pod_link;

use crate::source::kubernetes::{MetadataSettings, PodMetadata};
use container::{ContainerAssembler, ContainerFormat, PodInfo};
use multiline::{GroupState, MultiLineRule, Step};
use std::time::{Duration, Instant};

/// One line as the framer saw it. `start..end` is the file range consumed, which is longer than
/// `bytes` for a runaway line.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub start: u64,
    pub end: u64,
    pub bytes: &'a [u8],
    pub runaway: bool,
}

/// The most a buffer keeps of its room once the long line or record it held is out.
pub const KEEP_CAPACITY: usize = 64 << 10;

/// Gives back a buffer's room beyond [`KEEP_CAPACITY`] when it is empty.
fn shrink(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
        *buf = Vec::new();
    }
}

/// Splits a byte stream into lines, copying only lines that straddle two pushes.
#[derive(Debug)]
pub struct LineFramer {
    max_line: usize,
    offset: u64,
    line_start: u64,
    pending: Vec<u8>,
    in_line: bool,
    runaway: bool,
    /// Long lines go out in pieces instead of being cut.
    stream: bool,
    /// Stream mode: a piece of the current line went out and its end has not.
    mid_stream: bool,
    /// Lines sent in pieces since the last [`LineFramer::take_streamed_lines`].
    streamed: u64,
}

impl LineFramer {
    /// `offset` is the file position of the first byte that will be pushed.
    pub fn new(offset: u64, max_line: usize) -> Self {
        LineFramer {
            max_line: max_line.max(1),
            offset,
            line_start: offset,
            pending: Vec::new(),
            in_line: false,
            runaway: false,
            stream: false,
            mid_stream: false,
            streamed: 0,
        }
    }

    /// How many lines went out in pieces (stream mode) since the last call.
    pub fn take_streamed_lines(&mut self) -> u64 {
        std::mem::take(&mut self.streamed)
    }

    /// Lines longer than the limit are emitted in pieces of `max_line` bytes as they are read,
    /// instead of being cut (`oversized_records: split`).
    pub fn streaming(mut self, on: bool) -> Self {
        self.stream = on;
        self
    }

    /// Bytes of memory the framer holds for an unterminated line.
    pub fn held_bytes(&self) -> usize {
        self.pending.capacity()
    }

    /// Where the unterminated line being held starts (the offset itself when none is).
    pub fn line_start(&self) -> u64 {
        if self.in_line {
            self.line_start
        } else {
            self.offset
        }
    }

    /// Forgets the unterminated line being held and goes back to `to` (at most where that line
    /// starts, at least where the last line emitted ended): the bytes are read again later,
    /// from the file, which is the buffer.
    pub fn release(&mut self, to: u64) {
        debug_assert!(to <= self.line_start());
        self.offset = to;
        self.line_start = to;
        self.pending = Vec::new();
        self.in_line = false;
        self.runaway = false;
    }

    /// For a line cut at `max_line` and still unterminated (not in stream mode): where it
    /// starts and how far it was searched for its end. With them, [`LineFramer::resume_cut_line`]
    /// takes the line up again after a [`LineFramer::release`] without searching it again.
    pub fn cut_line(&self) -> Option<(u64, u64)> {
        (self.in_line && self.runaway && !self.stream).then_some((self.line_start, self.offset))
    }

    /// Takes up again a line cut at `max_line` that starts at `line_start`, whose first bytes
    /// are `prefix` (as read again from the file: `max_line` of them) and which has no `\n`
    /// before `searched_to`; the next byte pushed is the one at `searched_to`.
    pub fn resume_cut_line(&mut self, line_start: u64, prefix: &[u8], searched_to: u64) {
        self.pending.clear();
        self.pending.extend_from_slice(&prefix[..prefix.len().min(self.max_line)]);
        self.in_line = true;
        self.runaway = true;
        self.line_start = line_start;
        self.offset = searched_to;
    }

    /// Position after the last byte pushed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes held for an unterminated line.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(Line<'_>)) {
        if self.stream {
            return self.push_streaming(chunk, emit);
        }
        let mut i = 0;
        while i < chunk.len() {
            match memchr::memchr(b'\n', &chunk[i..]) {
                Some(p) => {
                    let end = i + p + 1;
                    let consumed_end = self.offset + end as u64;
                    if !self.in_line {
                        let bytes = &chunk[i..end];
                        let runaway = bytes.len() > self.max_line;
                        let bytes = if runaway { &bytes[..self.max_line] } else { bytes };
                        emit(Line { start: self.offset + i as u64, end: consumed_end, bytes, runaway });
                    } else {
                        self.append(&chunk[i..end]);
                        emit(Line { start: self.line_start, end: consumed_end, bytes: &self.pending, runaway: self.runaway });
                        self.pending.clear();
                        shrink(&mut self.pending);
                        self.in_line = false;
                        self.runaway = false;
                    }
                    i = end;
                }
                None => {
                    if !self.in_line {
                        self.in_line = true;
                        self.line_start = self.offset + i as u64;
                    }
                    self.append(&chunk[i..]);
                    i = chunk.len();
                }
            }
        }
        self.offset += chunk.len() as u64;
    }

    /// Stream mode: a line goes out whole when it ends within `max_line` bytes, else in pieces
    /// of exactly `max_line` bytes, each as soon as it is complete (a `\n` right after a full
    /// piece joins it).
    fn push_streaming(&mut self, chunk: &[u8], mut emit: impl FnMut(Line<'_>)) {
        let mut i = 0;
        while i < chunk.len() {
            let room = self.max_line - self.pending.len();
            let rest = &chunk[i..];
            let start = if self.in_line { self.line_start } else { self.offset + i as u64 };
            let take = match memchr::memchr(b'\n', rest) {
                Some(p) if p <= room => p + 1,
                _ if rest.len() <= room => {
                    // not a whole piece yet: wait for more (a `\n` may still come within room)
                    if !self.in_line {
                        self.in_line = true;
                        self.line_start = start;
                    }
                    self.pending.extend_from_slice(rest);
                    break;
                }
                _ => room,
            };
            let end = self.offset + (i + take) as u64;
            // take is 0 when the held bytes are a full piece and the next byte is not its `\n`
            let ends_line = take > 0 && rest[take - 1] == b'\n';
            if !ends_line && !self.mid_stream {
                self.streamed += 1;
            }
            self.mid_stream = !ends_line;
            if self.in_line {
                self.pending.extend_from_slice(&rest[..take]);
                emit(Line { start, end, bytes: &self.pending, runaway: false });
                self.pending.clear();
                shrink(&mut self.pending);
                self.in_line = false;
            } else {
                emit(Line { start, end, bytes: &rest[..take], runaway: false });
            }
            i += take;
        }
        self.offset += chunk.len() as u64;
    }

    fn append(&mut self, b: &[u8]) {
        let room = self.max_line.saturating_sub(self.pending.len());
        if b.len() > room {
            self.runaway = true;
        }
        self.pending.extend_from_slice(&b[..b.len().min(room)]);
    }

    /// Emits the unterminated tail as a last line (the file is complete or rotated away).
    pub fn finish(&mut self, mut emit: impl FnMut(Line<'_>)) {
        if self.in_line {
            emit(Line { start: self.line_start, end: self.offset, bytes: &self.pending, runaway: self.runaway });
            self.pending.clear();
            self.in_line = false;
            self.runaway = false;
        }
        shrink(&mut self.pending);
    }
}

/// How lines become records.
#[derive(Debug, Clone, PartialEq)]
pub enum Assembly {
    /// One line, one record.
    Lines,
    /// `multiLineStartPattern`, a continuation pattern or a preset ([`multiline`]).
    MultiLine { rule: MultiLineRule },
    /// `aggregatedRecordSizeBytes`.
    Aggregate { max_bytes: usize },
    /// Container runtime logs ([`crate::framing::container`]): partial lines merged, one JSON record per
    /// log line (or per multi-line record of a stream, with `multiline`) with the pod's identity;
    /// files of namespaces not wanted are read and skipped.
    Container {
        format: ContainerFormat,
        include_namespaces: Vec<String>,
        exclude_namespaces: Vec<String>,
        multiline: Option<MultiLineRule>,
        /// Pod metadata from the Kubernetes API ([`crate::source::kubernetes`]).
        metadata: Option<Box<MetadataSettings>>,
    },
}

/// What the assembler hands on: a record, or a range consumed with nothing to send (header lines).
#[derive(Debug)]
pub enum Piece<'a> {
    Record(Record<'a>),
    Skipped { start: u64, end: u64 },
}

#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub start: u64,
    pub end: u64,
    pub bytes: &'a [u8],
    /// Made from a line cut at the framer's limit.
    pub runaway: bool,
}

/// Joins lines into records by the flow's rule.
#[derive(Debug)]
pub struct RecordAssembler {
    /// Shared by the files of a flow (a file's assembler is small: 100,000 files hold 100,000).
    mode: std::sync::Arc<Assembly>,
    skip_remaining: u64,
    buf: Vec<u8>,
    buf_start: u64,
    buf_end: u64,
    buf_runaway: bool,
    has_buf: bool,
    /// What may join the multi-line record waiting.
    buf_state: GroupState,
    /// When the last line joined the record waiting.
    buf_since: Instant,
    /// The time lines are pushed at.
    now: Instant,
    /// A multi-line record is sent when it would grow past this many bytes.
    limit: usize,
    /// Container logs: the merging state, or `None` when the file's namespace is not wanted.
    container: Option<Box<ContainerAssembler>>,
    /// End of the last line taken.
    last_end: u64,
}

impl RecordAssembler {
    /// `skip_header_lines` applies only when the file is read from offset 0; `now` is the time
    /// the first lines are pushed at (see [`RecordAssembler::set_clock`]).
    pub fn new(mode: impl Into<std::sync::Arc<Assembly>>, skip_header_lines: u64, now: Instant) -> Self {
        RecordAssembler {
            mode: mode.into(),
            skip_remaining: skip_header_lines,
            buf: Vec::new(),
            buf_start: 0,
            buf_end: 0,
            buf_runaway: false,
            has_buf: false,
            buf_state: GroupState::Open,
            buf_since: now,
            now,
            limit: usize::MAX,
            container: None,
            last_end: 0,
        }
    }

    /// Container logs: the identity of the file's pod (from its paths). Files of namespaces the
    /// flow does not want are skipped.
    /// With `metadata`, records also carry what the Kubernetes API says of the pod.
    pub fn with_pod(mut self, pod: &PodInfo, metadata: Option<&PodMetadata>) -> Self {
        if let Assembly::Container { format, include_namespaces, exclude_namespaces, multiline, .. } = &*self.mode {
            let ns = pod.namespace.as_deref().unwrap_or_default();
            let wanted = (include_namespaces.is_empty() || include_namespaces.iter().any(|n| n == ns))
                && !exclude_namespaces.iter().any(|n| n == ns);
            self.container = wanted.then(|| {
                let c = ContainerAssembler::new(*format, pod, self.limit, multiline.clone(), self.now);
                Box::new(match metadata {
                    Some(m) => c.with_metadata(m, pod),
                    None => c,
                })
            });
        }
        self
    }

    /// The time the next lines are pushed at: a record waiting for more lines is sent once
    /// no line came for it for the flush timeout ([`RecordAssembler::flush_stale`]).
    pub fn set_clock(&mut self, now: Instant) {
        self.now = now;
        if let Some(c) = &mut self.container {
            c.set_clock(now);
        }
    }

    /// Until when a new pod's file waits before it is read: its pod's metadata is being fetched
    /// for the first time (see `ContainerAssembler::metadata_wait`).
    pub fn metadata_wait(&self, now: Instant) -> Option<Instant> {
        self.container.as_ref().and_then(|c| c.metadata_wait(now))
    }

    /// When a record waiting for more lines will have waited `after` (`None`: none waits).
    pub fn next_flush(&self, after: Duration) -> Option<Instant> {
        let own = (self.has_buf && matches!(*self.mode, Assembly::MultiLine { .. })).then_some(self.buf_since + after);
        let container = self.container.as_ref().and_then(|c| c.next_flush(after));
        own.into_iter().chain(container).min()
    }

    /// Sends the records that waited `after` without a new line (for container logs, per
    /// stream: a busy stream does not keep another's record waiting).
    pub fn flush_stale(&mut self, now: Instant, after: Duration, mut emit: impl FnMut(Piece<'_>)) {
        if self.has_buf && self.buf_since + after <= now {
            self.emit_buf(&mut emit);
        }
        if let Some(c) = &mut self.container {
            c.flush_stale(now, after, self.last_end, |f| {
                emit(Piece::Record(Record { start: f.start, end: f.end, bytes: &f.json, runaway: f.cut }))
            });
        }
    }

    /// Bounds a multi-line record: a line that would take it past `limit` bytes starts the next
    /// record, so memory stays bounded when the start pattern never matches.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Bytes of memory the assembler holds for records waiting for more lines.
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity() + self.container.as_deref().map_or(0, ContainerAssembler::held_bytes)
    }

    /// Where reading may start again if the record waiting for more lines is dropped: its start,
    /// or `line_start` (the framer's) when none waits; `None` while container partial lines
    /// wait (later lines of other streams were already sent: reading again would send them
    /// twice).
    pub fn release_point(&self, line_start: u64) -> Option<u64> {
        if self.container.as_deref().is_some_and(ContainerAssembler::has_pending) {
            return None;
        }
        Some(if self.has_buf { self.buf_start } else { line_start })
    }

    /// Drops the record waiting for more lines (see [`RecordAssembler::release_point`]).
    pub fn release(&mut self) {
        self.has_buf = false;
        self.buf = Vec::new();
    }

    /// Header lines are still to be skipped.
    pub fn skipping_header(&self) -> bool {
        self.skip_remaining > 0
    }

    /// True while a multi-line or aggregated record is waiting for more lines.
    pub fn has_pending(&self) -> bool {
        self.has_buf || self.container.as_deref().is_some_and(ContainerAssembler::has_pending)
    }

    pub fn push_line(&mut self, line: Line<'_>, mut emit: impl FnMut(Piece<'_>)) {
        if self.skip_remaining > 0 {
            self.skip_remaining -= 1;
            emit(Piece::Skipped { start: line.start, end: line.end });
            return;
        }
        self.last_end = line.end;
        match &*self.mode {
            Assembly::Container { .. } => match &mut self.container {
                Some(c) => c.push_line(line.start, line.end, line.bytes, |f| {
                    emit(Piece::Record(Record { start: f.start, end: f.end, bytes: &f.json, runaway: f.cut || line.runaway }))
                }),
                None => emit(Piece::Skipped { start: line.start, end: line.end }),
            },
            Assembly::Lines => emit(Piece::Record(Record { start: line.start, end: line.end, bytes: line.bytes, runaway: line.runaway })),
            Assembly::MultiLine { rule } => {
                let mut step = rule.step(self.has_buf.then_some(self.buf_state), &String::from_utf8_lossy(line.bytes));
                if let Step::Join(s) = step {
                    if self.buf.len() + line.bytes.len() > self.limit {
                        step = Step::Begin(s);
                    }
                }
                match step {
                    Step::Join(s) => {
                        self.append(line);
                        self.buf_state = s;
                    }
                    Step::Begin(s) => {
                        self.emit_buf(&mut emit);
                        self.append(line);
                        self.buf_state = s;
                    }
                    Step::Alone => {
                        self.emit_buf(&mut emit);
                        emit(Piece::Record(Record { start: line.start, end: line.end, bytes: line.bytes, runaway: line.runaway }));
                    }
                }
            }
            Assembly::Aggregate { max_bytes } => {
                let max = *max_bytes;
                if self.has_buf && self.buf.len() + line.bytes.len() > max {
                    self.emit_buf(&mut emit);
                }
                if !self.has_buf && line.bytes.len() > max {
                    emit(Piece::Record(Record { start: line.start, end: line.end, bytes: line.bytes, runaway: line.runaway }));
                } else {
                    self.append(line);
                }
            }
        }
    }

    fn append(&mut self, line: Line<'_>) {
        if !self.has_buf {
            self.has_buf = true;
            self.buf.clear();
            self.buf_start = line.start;
            self.buf_runaway = false;
        }
        self.buf.extend_from_slice(line.bytes);
        self.buf_end = line.end;
        self.buf_since = self.now;
        self.buf_runaway |= line.runaway;
    }

    fn emit_buf(&mut self, emit: &mut impl FnMut(Piece<'_>)) {
        if self.has_buf {
            self.has_buf = false;
            emit(Piece::Record(Record { start: self.buf_start, end: self.buf_end, bytes: &self.buf, runaway: self.buf_runaway }));
            self.buf.clear();
            shrink(&mut self.buf);
        }
    }

    /// The reader has no more bytes for now: aggregated lines are emitted (the Kinesis Agent's
    /// rule); a multi-line record keeps waiting for its next line or its timeout.
    pub fn end_of_data(&mut self, mut emit: impl FnMut(Piece<'_>)) {
        if matches!(*self.mode, Assembly::Aggregate { .. }) {
            self.emit_buf(&mut emit);
        }
    }

    /// Emits whatever is waiting: a multi-line record whose timeout passed, or the end of a
    /// finished file.
    pub fn flush(&mut self, mut emit: impl FnMut(Piece<'_>)) {
        self.emit_buf(&mut emit);
        if let Some(c) = &mut self.container {
            c.flush(self.last_end, |f| emit(Piece::Record(Record { start: f.start, end: f.end, bytes: &f.json, runaway: f.cut })));
        }
    }
}

/// Cuts `record` to `max` bytes and writes `terminator` over its last bytes, as the Kinesis Agent
/// does with records over the service maximum. Returns true when the record was truncated.
pub fn truncate_record(record: &mut Vec<u8>, max: usize, terminator: &[u8]) -> bool {
    truncate_record_from(record, 0, max, terminator)
}

/// [`truncate_record`] for the record that starts at `start` in `buf` and runs to its end.
pub fn truncate_record_from(buf: &mut Vec<u8>, start: usize, max: usize, terminator: &[u8]) -> bool {
    if buf.len() - start <= max {
        return false;
    }
    buf.truncate(start + max);
    let t = terminator.len().min(max);
    let end = buf.len();
    buf[end - t..].copy_from_slice(&terminator[..t]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]], max: usize, finish: bool) -> Vec<(u64, u64, Vec<u8>, bool)> {
        let mut f = LineFramer::new(10, max);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, |l| out.push((l.start, l.end, l.bytes.to_vec(), l.runaway)));
        }
        if finish {
            f.finish(|l| out.push((l.start, l.end, l.bytes.to_vec(), l.runaway)));
        }
        out
    }

    #[test]
    fn lines_keep_their_newline_and_offsets() {
        let got = lines(&[b"ab\ncd", b"e\r\n\n", b"tail"], 100, false);
        assert_eq!(got, vec![(10, 13, b"ab\n".to_vec(), false), (13, 18, b"cde\r\n".to_vec(), false), (18, 19, b"\n".to_vec(), false)]);
        let got = lines(&[b"ab\ncd", b"e\r\n\n", b"tail"], 100, true);
        assert_eq!(got.last().unwrap(), &(19, 23, b"tail".to_vec(), false));
    }

    #[test]
    fn runaway_lines_are_cut_but_fully_consumed() {
        let got = lines(&[b"0123456789\nab", b"cdefgh", b"ij\nk\n"], 4, false);
        assert_eq!(got, vec![(10, 21, b"0123".to_vec(), true), (21, 32, b"abcd".to_vec(), true), (32, 34, b"k\n".to_vec(), false)]);
    }

    fn assemble(mode: Assembly, skip: u64, input: &[u8], end_of_data_each_push: bool) -> Vec<String> {
        let mut f = LineFramer::new(0, 1 << 20);
        let mut a = RecordAssembler::new(mode, skip, Instant::now());
        let mut out = Vec::new();
        let mut next = 0;
        let mut on_piece = |p: Piece<'_>| match p {
            Piece::Record(r) => {
                assert_eq!(r.start, next);
                next = r.end;
                out.push(String::from_utf8_lossy(r.bytes).into_owned())
            }
            Piece::Skipped { start, end } => {
                assert_eq!(start, next);
                next = end;
                out.push("<skip>".into())
            }
        };
        for chunk in input.split_inclusive(|b| *b == b'\n') {
            f.push(chunk, |l| a.push_line(l, &mut on_piece));
            if end_of_data_each_push {
                a.end_of_data(&mut on_piece);
            }
        }
        f.finish(|l| a.push_line(l, &mut on_piece));
        a.flush(&mut on_piece);
        out
    }

    #[test]
    fn header_lines_are_skipped() {
        assert_eq!(assemble(Assembly::Lines, 2, b"h1\nh2\na\nb", false), ["<skip>", "<skip>", "a\n", "b"]);
    }

    #[test]
    fn multiline_never_tests_the_first_line() {
        let rule = MultiLineRule::Start(crate::javaregex::JavaRegex::new(r"\d{4}-").unwrap());
        let got = assemble(Assembly::MultiLine { rule }, 0, b"  orphan\n  more\n2024-01 a\n  at x\n2024-02 b\n", false);
        assert_eq!(got, ["  orphan\n  more\n", "2024-01 a\n  at x\n", "2024-02 b\n"]);
    }

    #[test]
    fn multiline_records_are_bounded() {
        let mut f = LineFramer::new(0, 1 << 20);
        let mut a = RecordAssembler::new(
            Assembly::MultiLine { rule: MultiLineRule::Start(crate::javaregex::JavaRegex::new("x").unwrap()) },
            0,
            Instant::now(),
        )
        .with_limit(10);
        let mut out = Vec::new();
        let mut on = |p: Piece<'_>| {
            if let Piece::Record(r) = p {
                out.push(String::from_utf8_lossy(r.bytes).into_owned())
            }
        };
        f.push(b"a1\nb22\nc333\nd4444\n", |l| a.push_line(l, &mut on));
        a.flush(&mut on);
        assert_eq!(out, ["a1\nb22\n", "c333\n", "d4444\n"]);
    }

    #[test]
    fn aggregation_packs_whole_lines() {
        let got = assemble(Assembly::Aggregate { max_bytes: 8 }, 0, b"aa\nbb\ncc\nverylongline\ndd\n", false);
        assert_eq!(got, ["aa\nbb\n", "cc\n", "verylongline\n", "dd\n"]);
    }

    #[test]
    fn truncation_writes_the_terminator() {
        let mut r = b"abcdefgh\n".to_vec();
        assert!(truncate_record(&mut r, 5, b"\n"));
        assert_eq!(r, b"abcd\n");
        let mut r = b"abc".to_vec();
        assert!(!truncate_record(&mut r, 5, b"\n"));
        let mut r = b"abcdefgh".to_vec();
        assert!(truncate_record(&mut r, 6, b"...\n"));
        assert_eq!(r, b"ab...\n");
    }
}
