//! Taking a scan: files that moved, grew or went (orphaned and read through their descriptor),
//! files found for the first time (tailed, deferred while they may be a copy being written, or
//! said unreadable once per cause), and a scan that found nothing changed.
//!
//! Guarantees: a file is matched to its tail by identity, never by name; a new file is compared
//! only with the tails whose first bytes agree with its own ([`rotation::CopyIndex`]); a new file
//! found while the flow holds all the descriptors it may is opened for a moment and waits for its
//! turn ([`super::descriptors`]). Not done here: listing directories ([`crate::source::discover`]).

use super::file::{end_of_last_line, head_of, Phase, Tail};
use super::rotation::{self, CopyMatch, Resume};
use super::{stage_row, unindex, Checkpoints, TailSet, COPY_WAIT};
use crate::source::discover::{Found, Scan};
use crate::source::fs::{FileSystem, OpenFile};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

impl<F: FileSystem> TailSet<F> {
    /// Takes what a scan found: known files may have moved or grown, missing ones are orphaned,
    /// new ones are tailed (or deferred while they may be a copy being written).
    pub fn on_scan(&mut self, now: Instant, scan: &Scan, store: &mut impl Checkpoints) {
        self.rescan_requested = false;
        self.next_scan = now + Duration::from_millis(self.flow.max_time_between_file_tracker_refresh_ms);
        // a file shorter than what was read, or changed and no longer starting with its
        // fingerprint, was truncated (and maybe written again), whether or not the budget lets it
        // be read now: its old state waits for a copy before the new files are looked at
        let mut shrunk: Vec<u64> =
            self.tails.values().filter(|t| !t.sealed && t.phase.reads() && t.truncated_since_read()).map(|t| t.id).collect();
        // a file closed to make room for others (or at rest): the scan's size says it
        if self.open_files < self.known_files() {
            let closed_and_shrunk = |item: &Found| {
                let id = *self.by_key.get(&item.key)?;
                let size = item.size?;
                match self.tails.get(&id) {
                    Some(t) => (t.file.is_none() && !t.sealed && t.phase.reads() && size < t.framer.offset()).then_some(id),
                    None => self.resting.get(&id).is_some_and(|r| size < r.offset).then_some(id),
                }
            };
            shrunk.extend(scan.found.iter().filter_map(closed_and_shrunk));
        }
        for id in shrunk {
            self.wake(id, now);
            self.truncated(now, id, store);
        }
        if scan.unchanged {
            self.unchanged_scan(now, store);
            return;
        }
        let mut seen = HashSet::new();
        let mut new_files = Vec::new();
        for item in &scan.found {
            seen.insert(item.key);
            let Some(&id) = self.by_key.get(&item.key) else {
                new_files.push(item);
                continue;
            };
            if self.resting.contains_key(&id) && !self.resting_found(id, item, now) {
                // renamed, or its link leads elsewhere: a tail's rules apply
                self.wake(id, now);
            }
            // where a link leads now (for a link, or a file that was one)
            let target =
                (item.target_dir.is_some() || self.tails.get(&id).is_some_and(|t| t.target.is_some())).then(|| self.link_target(item));
            let Some(t) = self.tails.get_mut(&id) else { continue };
            // (byte comparisons: comparing and hashing paths by component is what a scan of
            // many unchanged files spent its time on)
            let mut moved = t.phase.is_orphaned();
            if t.path.as_os_str() != item.path.as_os_str() {
                tracing::debug!(flow = %self.flow.id, "{} is now {}", t.path.display(), item.path.display());
                unindex(&mut self.by_path, &t.path, t.id);
                t.path = item.path.clone();
                moved = true;
            }
            if let Some(target) = target {
                if target != t.target {
                    // the file its link led to before: not this tail's any more
                    if let Some(old) = &t.target {
                        unindex(&mut self.by_path, old, t.id);
                    }
                    moved = true;
                }
                t.target = target;
            }
            if moved {
                for p in [Some(&t.path), t.target.as_ref()].into_iter().flatten() {
                    self.by_path.insert(p.clone(), t.id);
                }
            }
            if t.phase.is_orphaned() {
                t.phase = Phase::Following;
            }
            // a size the scan did not look at (its directory did not change): its growth is
            // notified
            let Some(size) = item.size else { continue };
            // a parked tail waits for its file to change, not for the bytes it gave back
            if !t.sealed && (size != t.size || (size > t.framer.offset() && !t.parked)) {
                t.dirty = true;
            }
            // bytes behind stay true while the tail is not read (a stalled sink)
            if !t.sealed && size > t.size {
                t.size = size;
            }
        }
        // a file at rest no scan found any more is orphaned as a tail
        let unlisted = |path: &std::path::Path| scan.errors.iter().any(|(dir, _)| path.starts_with(dir));
        let missing: Vec<u64> =
            self.resting.iter().filter(|(_, r)| !seen.contains(&r.key) && !unlisted(&r.path)).map(|(id, _)| *id).collect();
        for id in missing {
            self.wake(id, now);
        }
        for t in self.tails.values_mut() {
            t.look_for_growth_if_orphaned();
            // files no longer found at a matching path keep being read through their
            // descriptor; a directory that could not be listed says nothing about its files
            let unlisted = unlisted(&t.path);
            if !seen.contains(&t.key) && !unlisted {
                if let Phase::Orphaned { missed_scans } = &mut t.phase {
                    *missed_scans += 1;
                } else if t.phase == Phase::Following {
                    t.phase = Phase::Orphaned { missed_scans: 1 };
                    // one last look at what was written before it went
                    t.dirty = !t.sealed;
                    // its old path may already hold a new file: events there are not its own
                    for p in [Some(&t.path), t.target.as_ref()].into_iter().flatten() {
                        unindex(&mut self.by_path, p, t.id);
                    }
                }
            }
        }
        self.add_files(now, &new_files, store);
        if !self.initial_scan_done {
            self.follow_rotated_while_stopped(now, store);
        }
        if scan.found.len() > self.file_limit && !self.told_over_limit {
            self.told_over_limit = true;
            tracing::warn!(
                flow = %self.flow.id,
                "{} files match, more than the {} this flow may hold open (max_open_files, within the process's open-file limit, shared among the flows): files with data to read are held first and the others visited in turn; a file rotated away and deleted before its turn loses what was written to it since it was last read: raise max_open_files (and LimitNOFILE) above the number of files written to at once",
                scan.found.len(),
                self.file_limit
            );
        }
        self.maybe_copies.retain(|k, _| seen.contains(k));
        let by_key = &self.by_key;
        self.unreadable.retain(|k| seen.contains(k) && !by_key.contains_key(k));
        self.initial_scan_done = true;
    }

    /// A scan that found nothing added, removed or renamed since the one before (the same
    /// directories, none changed): the files are those found then. Files rotated away miss one
    /// more scan (and are looked at for growth), and new files waiting to say more (empty, or
    /// maybe a copy) are looked at again; files that could not be opened are retried when their
    /// directory changes or at the next full scan.
    fn unchanged_scan(&mut self, now: Instant, store: &mut impl Checkpoints) {
        for t in self.tails.values_mut() {
            t.look_for_growth_if_orphaned();
            if let Phase::Orphaned { missed_scans } = &mut t.phase {
                *missed_scans += 1;
            }
        }
        let waiting: Vec<Found> = self.maybe_copies.values().map(|(_, f, _)| f.clone()).collect();
        self.add_files(now, &waiting.iter().collect::<Vec<_>>(), store);
        self.initial_scan_done = true;
    }

    /// Tails the files found for the first time (or defers them); those that cannot be opened
    /// are said once per cause, with a count and an example.
    fn add_files(&mut self, now: Instant, items: &[&Found], store: &mut impl Checkpoints) {
        let mut cannot_open: Vec<(String, usize, PathBuf)> = Vec::new();
        let mut closable = None;
        let mut copies = (!items.is_empty()).then(|| rotation::CopyIndex::new(self.tails.values().map(|t| &**t)));
        for item in items {
            let copies = copies.as_mut().expect("made when there are new files");
            if let Some(e) = self.add_file(now, item, store, &mut closable, copies) {
                match cannot_open.iter_mut().find(|(cause, _, _)| *cause == e) {
                    Some((_, n, _)) => *n += 1,
                    None => cannot_open.push((e, 1, item.path.to_path_buf())),
                }
            }
        }
        for (cause, n, example) in cannot_open {
            let what = if n == 1 { example.display().to_string() } else { format!("{n} files, such as {},", example.display()) };
            let these = if n == 1 { "this one is" } else { "these are" };
            tracing::error!(flow = %self.flow.id, "cannot read {what}: {cause}; other files keep flowing, {these} retried at each scan");
        }
    }

    /// Tails a file found for the first time (or defers it); the cause when it cannot be opened
    /// and was not said before.
    fn add_file(
        &mut self,
        now: Instant,
        item: &Found,
        store: &mut impl Checkpoints,
        closable: &mut Option<std::collections::VecDeque<u64>>,
        copies: &mut rotation::CopyIndex,
    ) -> Option<String> {
        let file = match self.fs.open(&item.path) {
            Ok(f) => f,
            Err(e) => {
                // said once per file (and per scan, once per cause for all the files it hits)
                return self.unreadable.insert(item.key).then(|| e.to_string());
            }
        };
        let Ok(stat) = file.stat() else { return None };
        let (key, size) = (stat.key, stat.len);
        if key != item.key || self.by_key.contains_key(&key) {
            self.rescan_requested = true;
            return None;
        }
        let new_head = head_of(&file, size);
        // Is it the copytruncate copy of a file whose old state waits for it?
        let tails = &self.tails;
        let waiting = copies
            .awaiting
            .iter()
            .filter_map(|id| tails.get(id))
            .filter(|t| matches!(t.phase, Phase::AwaitingCopy { .. }))
            .map(|t| (t.id, t.first_bytes()));
        let copy = rotation::match_copy(&new_head, size, waiting);
        if let CopyMatch::CopyOf(id) = copy {
            let t = self.tails.get_mut(&id).expect("matched among the tails");
            tracing::info!(flow = %self.flow.id, "{} is the copy of a truncated file; reading it from offset {}", item.path.display(), t.framer.offset());
            t.key = key;
            t.path = item.path.clone();
            t.file = Some(file);
            self.open_files += 1;
            t.size = size;
            t.phase = Phase::Following;
            t.sealed = size <= t.framer.offset();
            t.dirty = !t.sealed;
            self.by_key.insert(key, id);
            self.maybe_copies.remove(&key);
            self.by_path.insert(t.path.clone(), id);
            stage_row(store, &self.flow.id, t);
            self.hold_or_close(id, closable);
            return None;
        }
        // An empty file, or one that so far starts like a tailed file, may be a copy being written
        // (about to be followed by a truncation): decide when it says more.
        if size == 0 {
            self.maybe_copies.entry(key).or_insert((now, item.clone(), 0));
            return None;
        }
        let known = self.tails.values().map(|t| (t.id, t.first_bytes())).chain(self.resting.iter().map(|(id, r)| (*id, r.first_bytes())));
        let looks_like_copy = copy == CopyMatch::InProgress
            || copies.candidates(known, &new_head).into_iter().any(|id| match self.tails.get(&id) {
                Some(t) => rotation::may_be_copy_of(&file, &new_head, size, t),
                // a file at rest is closed: that its first bytes agree is all it can say, as
                // for a closed tail
                None => self.resting.get(&id).is_some_and(|r| r.offset > 0 && r.first_bytes().agree_with(&new_head)),
            });
        if looks_like_copy {
            // one fixed deadline per candidate: looked at again then (or when a tailed file is
            // truncated), not at every event
            let entry = self.maybe_copies.entry(key).or_insert((now, item.clone(), size));
            entry.2 = size;
            let deadline = entry.0 + COPY_WAIT;
            if now < deadline {
                self.next_scan = self.next_scan.min(deadline);
                return None;
            }
            tracing::warn!(flow = %self.flow.id, "{} starts like another tailed file but no truncation followed; tailing it as a file of its own", item.path.display());
        }
        self.maybe_copies.remove(&key);
        let first_scan_of_first_start = self.first_start && !self.initial_scan_done;
        let saved = self.saved.remove(&key);
        let imported = if saved.is_none() { self.imported.remove(&key) } else { None };
        let resume = rotation::resume(&file, size, saved.as_ref(), imported, first_scan_of_first_start, self.flow.initial_position);
        match resume {
            Resume::Replaced => {
                tracing::warn!(flow = %self.flow.id, "{} is not the file its checkpoint describes (replaced, rewritten or truncated while logferry was stopped); reading it from the start", item.path.display())
            }
            Resume::Imported(offset) => {
                tracing::info!(flow = %self.flow.id, "{} resumes at offset {offset} from the Kinesis Agent's checkpoint", item.path.display())
            }
            _ => {}
        }
        let start = resume.offset(|| end_of_last_line(&file, size));
        tracing::debug!(flow = %self.flow.id, "tailing {} ({}) from offset {start} of {size}", item.path.display(), key.kinesis_agent_id());
        let id = self.next_tail_id;
        self.next_tail_id += 1;
        let target = self.link_target(item);
        // one copy of the path (the scan's), shared by the tail and the index of paths
        let path = item.path.clone();
        let tail =
            Tail::closed(id, key, path.clone(), target.clone(), size, start, &self.flow, &self.assembly, self.metadata.as_ref(), now)
                .with_file(file);
        copies.add(id, tail.first_bytes());
        self.open_files += 1;
        stage_row(store, &self.flow.id, &tail);
        self.tails.insert(id, Box::new(tail));
        self.by_key.insert(key, id);
        self.by_path.insert(path, id);
        if let Some(t) = target {
            self.by_path.insert(t, id);
        }
        self.hold_or_close(id, closable);
        None
    }
}
