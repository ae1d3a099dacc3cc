//! Reading: the tails with data are read as far as the budget, the flow's share and the sink's
//! queue allow, their bytes framed into lines and records and handed to the pipeline.
//!
//! Guarantees: at most `READ_SLICE` bytes from one file before the others get their turn; a read
//! takes no more than what is left of the share and the budget (at least `MIN_READ`); over the
//! budget a tail reads on only to finish the line it held; a file found shorter than what was read
//! or starting differently is handled as truncated.

use super::file::{buffered, head_of, Tail};
use super::{Checkpoints, Pipeline, Room, TailSet};
use crate::source::fs::{FileSystem, OpenFile, ReadAt};
use crate::source::identity::{self, FINGERPRINT_MAX};
use std::ops::Bound::{Excluded, Unbounded};
use std::time::Instant;

/// Bytes read from one file before the loop turns to the others.
const READ_SLICE: u64 = 4 << 20;
/// The smallest read when the share or the budget limits a read.
const MIN_READ: usize = 64 << 10;

impl<F: FileSystem> TailSet<F> {
    /// Reads every tail that has data and room for it, into `buf` (its length is the largest
    /// read).
    pub fn read(&mut self, now: Instant, buf: &mut [u8], pipe: &mut impl Pipeline, store: &mut impl Checkpoints) {
        // the files held open first; then those waiting for a descriptor, rotated-away ones
        // first, then the least recently read (those at rest among them taken from `waiting`
        // as they come, so a pass reads as many as the descriptors can be passed round to)
        let mut open: Vec<u64> = Vec::new();
        let mut waiting: Vec<(bool, Instant, u64)> = Vec::new();
        for t in self.tails.values().filter(|t| t.wants_read()) {
            match t.file {
                Some(_) => open.push(t.id),
                None => waiting.push((!t.phase.is_orphaned(), t.last_change, t.id)),
            }
        }
        waiting.sort_unstable();
        let mut open = open.into_iter();
        let mut waiting = waiting.into_iter().peekable();
        let mut resting_after: Option<(Instant, u64)> = None;
        let mut closable = None;
        loop {
            let room = pipe.room();
            if room.backed_up {
                break;
            }
            let id = match open.next() {
                Some(id) => id,
                None => {
                    let resting = match resting_after {
                        None => self.waiting.first(),
                        Some(after) => self.waiting.range((Excluded(after), Unbounded)).next(),
                    }
                    .copied();
                    let id = match (waiting.peek(), resting) {
                        (Some(&(f, c, id)), Some((rc, rid))) if (f, c, id) < (true, rc, rid) => waiting.next().map(|w| w.2),
                        (_, Some((rc, rid))) => {
                            // a file at rest holds no line: when the budget stops one, it stops all
                            if !self.resting_may_read(room) {
                                break;
                            }
                            resting_after = Some((rc, rid));
                            Some(rid)
                        }
                        (_, None) => waiting.next().map(|w| w.2),
                    };
                    let Some(id) = id else { break };
                    if !self.make_room(&mut closable, 1) {
                        break; // every descriptor holds a file with data still to read
                    }
                    self.wake(id, now);
                    id
                }
            };
            // the pod's metadata looked at now: a file whose pod is being fetched (again) waits
            if let Some(t) = self.tails.get_mut(&id) {
                t.assembler.set_clock(now);
            }
            if !self.tails.get(&id).is_some_and(|t| self.may_read(t, room) && t.assembler.metadata_wait(now).is_none()) {
                continue;
            }
            self.read_tail(now, id, buf, pipe, store);
            if let Some(t) = self.tails.get_mut(&id) {
                t.update_held(&mut self.held);
                pipe.lines_split(t.framer.take_streamed_lines());
                // read now: the last to be closed for another
                if let Some(queue) = closable.as_mut() {
                    queue.push_back(id);
                }
            }
            self.park_if_over_budget(id, pipe.room());
        }
    }

    /// Over the budget, a tail left holding a long unterminated line (waiting for its writer,
    /// or stopped by the budget) gives it back to the file: the bytes are read again once the
    /// line fits. So what the buffers hold stays within the budget (plus the one line being
    /// completed), however many files have long lines in progress.
    fn park_if_over_budget(&mut self, id: u64, room: Room) {
        if room.in_flight + room.others_held + self.held < room.budget {
            return;
        }
        let Some(t) = self.tails.get_mut(&id) else { return };
        // only a tail at the end of its data waits for its writer; one stopped in the middle
        // of a line reads on to its end at the next pass
        if t.held <= crate::framing::KEEP_CAPACITY as u64 || t.dirty {
            return;
        }
        let Some(to) = t.assembler.release_point(t.framer.line_start()) else { return };
        t.parked_cut_line = t.framer.cut_line().filter(|(start, _)| *start == to);
        t.framer.release(to);
        t.assembler.release();
        // it waits for the file to change (and for the line to fit)
        t.parked = true;
        t.update_held(&mut self.held);
    }

    fn read_tail(&mut self, now: Instant, id: u64, buf: &mut [u8], pipe: &mut impl Pipeline, store: &mut impl Checkpoints) {
        let Some(t) = self.tails.get_mut(&id) else { return };
        t.parked = false;
        let resume_cut_line = t.parked_cut_line.take();
        if t.file.is_none() {
            // the path may hold another file now; a rotated-away file is looked for by identity
            // in its directory before giving up on it
            match Self::reopen(&self.fs, t) {
                Some(file) => {
                    t.file = Some(file);
                    self.open_files += 1;
                }
                None => {
                    t.dirty = false;
                    self.rescan_requested = true;
                    return;
                }
            }
        }
        let max_line = self.flow.max_line_bytes;
        // what the other tails of this flow hold, with the other flows'
        let others_held = self.held.saturating_sub(t.held);
        let Tail {
            file,
            framer,
            assembler,
            acks,
            dirty,
            last_change,
            read_error_logged,
            path,
            size,
            fingerprint,
            head,
            fingerprint_grew_at,
            finishing_line,
            ..
        } = &mut **t;
        let Some(file) = file.as_ref() else { return };
        // a file truncated and written again faster than a scan still starts differently
        let replaced = file.stat().map(|m| m.len < framer.offset()).unwrap_or(false)
            || (fingerprint.len > 0 && !identity::starts_with(file, *fingerprint).unwrap_or(true));
        if replaced {
            *dirty = false;
            self.truncated(now, id, store);
            return;
        }
        if let Some((start, searched_to)) = resume_cut_line {
            let mut prefix = vec![0u8; max_line];
            // shorter than when it was cut: read as it is now
            if file.read_full_at(&mut prefix, start).is_ok_and(|n| n == prefix.len()) {
                framer.resume_cut_line(start, &prefix, searched_to);
            }
        }
        let mut read_now = 0u64;
        loop {
            let room = pipe.room();
            // what this read adds to the buffers counts as it is read
            let holding = room.others_held + others_held + buffered(framer, assembler);
            let over = room.in_flight + holding >= room.budget || room.flow_in_flight >= room.share;
            if over {
                // only to finish the line held when the budget filled
                let same_line = finishing_line.is_none_or(|s| s == framer.line_start());
                if framer.pending_len() == 0 || !same_line {
                    return; // stays dirty
                }
                finishing_line.get_or_insert(framer.line_start());
            } else {
                *finishing_line = None;
            }
            if read_now >= READ_SLICE || room.backed_up {
                return; // stays dirty
            }
            // a read takes no more than what is left of the flow's share and of the budget
            let left = room.share.saturating_sub(room.flow_in_flight).min(room.budget.saturating_sub(room.in_flight + holding));
            let want = (left as usize).clamp(MIN_READ.min(buf.len()), buf.len());
            let n = match file.read_at(&mut buf[..want], framer.offset()) {
                Ok(n) => n,
                Err(e) => {
                    if !*read_error_logged {
                        tracing::error!(flow = %self.flow.id, "cannot read {}: {e}", path.display());
                        *read_error_logged = true;
                    }
                    *dirty = false;
                    return;
                }
            };
            if n == 0 {
                break;
            }
            read_now += n as u64;
            pipe.bytes_read(n as u64);
            *last_change = now;
            assembler.set_clock(now);
            framer.push(&buf[..n], |line| assembler.push_line(line, |p| pipe.piece(acks, id, path, p)));
            if n < want {
                break;
            }
        }
        // at the end of the data for now
        assembler.end_of_data(|p| pipe.piece(acks, id, path, p));
        *dirty = false;
        let Ok(stat) = file.stat() else { return };
        *size = stat.len;
        if fingerprint.len < FINGERPRINT_MAX && *size > fingerprint.len {
            if let Ok(fp) = identity::fingerprint(file, *size) {
                *fingerprint = fp;
                *head = head_of(file, *size);
                *fingerprint_grew_at = Some(now);
            }
        }
        if *size < framer.offset() {
            self.truncated(now, id, store);
        }
    }
}
