//! Files deleted while the agent holds them open. The log files are the buffer, and these have
//! no name left: what they hold that is not yet acknowledged is the one backlog a stop cannot
//! keep, and it takes disk space until it is let go.
//!
//! Guarantees: what such files hold is in the metrics and `/status` (and in `bytes_behind`);
//! past the flow's `deleted_files_max_bytes` the oldest is let go, with an error naming the file,
//! the bytes and the lines lost, which are counted; a stop or a reload that abandons some says how
//! many at error level before it does. Not done here: holding files (the `TailSet` holds each one
//! from discovery until it is finished).

use super::Engine;
use crate::source::tail::Deleted;

impl Engine {
    /// Keeps flow `fi`'s deleted files within its cap, oldest let go first, and gives the
    /// metrics what they hold.
    pub(super) fn bound_deleted(&mut self, fi: usize) {
        let f = &mut self.flows[fi];
        let cap = f.flow.deleted_files_max_bytes;
        let deleted = f.tails.deleted();
        let mut total: u64 = deleted.iter().map(Deleted::behind).sum();
        // what files already let go hold was read: it ships, and only their unread part counts
        let mut over: u64 = deleted.iter().filter(|d| !d.let_go).map(Deleted::behind).sum::<u64>().saturating_sub(cap);
        for d in deleted.iter().filter(|d| !d.let_go && d.unread() > 0) {
            if over == 0 {
                break;
            }
            let Some(lost) = f.tails.let_go(d.tail) else { continue };
            over = over.saturating_sub(d.behind());
            total = total.saturating_sub(d.unread());
            tracing::error!(
                flow = %f.flow.id,
                "{} was deleted while {} bytes of it were not shipped, and the flow's deleted files hold more than deleted_files_max_bytes ({cap}): it is let go, and its {}{} lines from offset {} to {} are lost. The destination takes less than is written: raise its throughput, keep more rotated files, or raise the cap",
                lost.path.display(),
                d.behind(),
                if lost.exact { "" } else { "about " },
                lost.lines,
                lost.from,
                lost.to
            );
            f.metrics.lines_lost.inc_by(lost.lines);
            f.metrics.bytes_lost.inc_by(lost.to.saturating_sub(lost.from));
        }
        f.metrics.deleted_bytes_behind.set(total as i64);
        f.metrics.deleted_files_behind.set(deleted.len() as i64);
    }

    /// Says at error level what stopping flow `fi` (`why`) abandons in deleted files: the
    /// bytes and lines not yet acknowledged, which no restart can read again.
    pub(super) fn report_abandoned(&self, fi: usize, why: &str) {
        let f = &self.flows[fi];
        let deleted = f.tails.deleted();
        if deleted.is_empty() {
            return;
        }
        let bytes: u64 = deleted.iter().map(Deleted::behind).sum();
        let counts: Vec<(u64, bool)> = deleted.iter().map(|d| f.tails.lines_between(d.tail, d.acknowledged, d.len)).collect();
        let lines: u64 = counts.iter().map(|c| c.0).sum();
        let about = if counts.iter().all(|c| c.1) { "" } else { "about " };
        let files: Vec<String> =
            deleted.iter().map(|d| format!("{} ({} bytes from offset {})", d.path.display(), d.behind(), d.acknowledged)).collect();
        tracing::error!(
            flow = %f.flow.id,
            "{why} abandons {bytes} bytes ({about}{lines} lines) not yet acknowledged in {} deleted files, which no restart can read again: {}",
            deleted.len(),
            files.join(", ")
        );
    }
}
