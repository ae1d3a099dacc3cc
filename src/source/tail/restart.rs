//! Files across a stop: what a stopping flow sends of the files rotated away, and the files a
//! starting flow finds again by identity though no pattern matches them any more.
//!
//! Guarantees: a rotated-away file the next start will find again (still there, beside its
//! path or its link's target) keeps what waits in it at a stop, to be read whole then; at a
//! start, such a file is read from its checkpoint to its end when it is still the file the
//! checkpoint describes (fingerprint and the bytes before the offset), each directory listed
//! once however many checkpoints point into it. Not done: a file rotated into another directory
//! (logrotate's `olddir`) is not looked for.

use super::file::{Phase, Tail};
use super::rotation::{self, Resume};
use super::{stage_row, Checkpoints, Pipeline, TailSet};
use crate::checkpoint::Row;
use crate::source::fs::{FileSystem, OpenFile};
use crate::source::identity::FileKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

impl<F: FileSystem> TailSet<F> {
    /// Files rotated away get no more lines: what waits in them (a multi-line record, a partial
    /// container line, an unterminated last line) goes now, unless the next start finds the file
    /// again and reads it whole.
    pub fn flush_orphans(&mut self, pipe: &mut impl Pipeline) {
        let fs = &self.fs;
        let found_again = |t: &Tail<F::File>| {
            let exists = t.file.as_ref().and_then(|f| f.stat().ok()).is_some_and(|s| s.links > 0);
            exists && [Some(&t.path), t.target.as_ref()].into_iter().flatten().any(|p| fs.find_by_key(p, t.key).is_some())
        };
        for t in self.tails.values_mut().filter(|t| t.phase.is_orphaned() && !found_again(t)) {
            let Tail { id, assembler, acks, framer, path, .. } = &mut **t;
            framer.finish(|line| assembler.push_line(line, |p| pipe.piece(acks, *id, path, p)));
            assembler.flush(|p| pipe.piece(acks, *id, path, p));
        }
    }

    /// A checkpointed file the first scan did not find may have been rotated to a name no
    /// pattern matches while the agent was stopped, with lines it never read: a container log's
    /// rotated `0.log.<time>` is never in `/var/log/containers`. It is looked for by identity
    /// beside its path and beside the file its link leads to now, and read from its checkpoint
    /// to its end as a rotated-away file. A file that only shares its inode number, or one still
    /// at its own path (the flow no longer covers it), is left alone.
    pub(super) fn follow_rotated_while_stopped(&mut self, now: Instant, store: &mut impl Checkpoints) {
        let rows: Vec<Row> = self.saved.values().cloned().collect();
        let mut listed: HashMap<PathBuf, Vec<(PathBuf, FileKey)>> = HashMap::new();
        for row in rows {
            let path = PathBuf::from(&row.path);
            let found = [Some(path.clone()), self.fs.canonicalize(&path)].into_iter().flatten().find_map(|p| {
                let dir = p.parent().map(Path::to_path_buf)?;
                let files = listed.entry(dir).or_insert_with_key(|d| self.fs.keys_in(d));
                files.iter().find(|(_, k)| *k == row.key).map(|(p, _)| p.clone())
            });
            // still at its own path (or a link there to it): not this rule's to read
            let Some(found) = found.filter(|f| *f != path) else { continue };
            let Ok(file) = self.fs.open(&found) else { continue };
            let Ok(stat) = file.stat() else { continue };
            if stat.key != row.key || self.by_key.contains_key(&row.key) {
                continue;
            }
            match rotation::resume(&file, stat.len, Some(&row), None, false, self.flow.initial_position) {
                // read to its end before the stop: nothing to do
                Resume::Checkpoint(offset) if offset < stat.len => {
                    self.saved.remove(&row.key);
                    tracing::info!(flow = %self.flow.id, "{} was rotated to {} while logferry was stopped; reading the {} bytes after its checkpoint", row.path, found.display(), stat.len - offset);
                    let id = self.next_tail_id;
                    self.next_tail_id += 1;
                    let mut tail = Tail::closed(
                        id,
                        row.key,
                        found.into(),
                        None,
                        stat.len,
                        offset,
                        &self.flow,
                        &self.assembly,
                        self.metadata.as_ref(),
                        now,
                    )
                    .with_file(file);
                    tail.phase = Phase::Orphaned { missed_scans: 1 };
                    tail.dirty = true;
                    self.open_files += 1;
                    stage_row(store, &self.flow.id, &tail);
                    self.tails.insert(id, Box::new(tail));
                    self.by_key.insert(row.key, id);
                    // over the limit, it waits for its turn (the first among those waiting)
                    self.hold_or_close(id, &mut None);
                }
                _ => {}
            }
        }
    }
}
