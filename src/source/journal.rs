//! journald sources: each reads the journal through `sd_journal` from libsystemd
//! ([`super::sd_journal`]: the journal's own code reads its files, so rotation, vacuuming,
//! corruption and the file format stay systemd's business). It keeps the entries its filters
//! admit, turns each into a record ([`crate::convert::journal`]) and remembers the entry's cursor.
//! The cursor of the last entry whose record (and every record before it) was acknowledged is
//! saved with the file positions.
//!
//! Guarantees:
//! - entries are acknowledged in read order exactly as file pieces are (an [`AckTracker`] over
//!   the bytes of the entries read); an entry a filter leaves out counts as acknowledged, so the
//!   cursor moves past it;
//! - a restart resumes after the saved cursor. When the cursor's entry is gone, the entries
//!   after it were vacuumed or rotated away unread: an error says so and the gap is counted. A
//!   first start (no cursor) begins where the source says: the journal's head, its tail, or a time;
//! - the reader runs on a thread that hands the engine batches of entries through a bounded
//!   channel: when the flow may not read (budget, sink backed up), the reader waits, so memory
//!   stays bounded. A reader that ends (no libsystemd, a journal that cannot be opened) is logged
//!   with the reason and started again after a pause, after the last entry read (what was read
//!   is in flight and will be acknowledged);
//! - the filters are pure functions.
//!
//! Not done: how many entries a gap lost (the journal does not say); how far behind the
//! journal's end a source is.

use super::sd_journal::{self, Batch};
use crate::checkpoint::acks::AckTracker;
use crate::config::{JournalShape, JournalSource};
use crate::convert::json::JsonLayout;
use crate::framing::journal::JournalEntry;
use crate::framing::{Piece, Record};
use crate::source::tail::Pipeline;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tail ids of journal sources start here (file tails count up from 0), so an acknowledgement
/// finds its source.
pub const JOURNAL_TAIL_BASE: u64 = 1 << 62;
/// The largest journal field value kept; a longer one is cut (the entry counts as a runaway).
pub const MAX_VALUE: usize = 1 << 20;
/// Records are written compact.
const LAYOUT: JsonLayout = JsonLayout::Compact;
/// Batches of entries waiting for the engine.
const CHANNEL_BATCHES: usize = 4;
/// How long a reader that ended waits before it is started again.
const RESTART_AFTER: Duration = Duration::from_secs(5);

/// The key under which a source's cursor is saved: its directory (or `system`) and its place
/// among the flow's sources that read that directory.
pub fn source_key(src: &JournalSource, nth_of_directory: usize) -> String {
    let dir = src.directory.as_deref().map_or_else(|| "system".to_string(), |d| d.display().to_string());
    format!("journal:{dir}#{nth_of_directory}")
}

/// Whether the source's filters admit the entry: its unit (`_SYSTEMD_UNIT`) matches one of the
/// unit globs (when there are any), its priority is at most the limit (an entry without one
/// passes), it is not a kernel message when those are off, and for each field the matches name,
/// the entry has one of the values given for it.
pub fn admits(src: &JournalSource, units: Option<&globset::GlobSet>, e: &JournalEntry) -> bool {
    if let Some(units) = units {
        match e.get_str("_SYSTEMD_UNIT") {
            Some(u) if units.is_match(u) => {}
            _ => return false,
        }
    }
    if let Some(max) = src.max_priority {
        if e.get_str("PRIORITY").and_then(|p| p.parse::<u8>().ok()).is_some_and(|p| p > max) {
            return false;
        }
    }
    if !src.kernel && e.get("_TRANSPORT") == Some(b"kernel") {
        return false;
    }
    let mut fields: Vec<&str> = src.matches.iter().map(|(f, _)| f.as_str()).collect();
    fields.dedup();
    fields.iter().all(|field| {
        let wanted: Vec<&[u8]> = src.matches.iter().filter(|(f, _)| f == field).map(|(_, v)| v.as_bytes()).collect();
        e.fields().any(|(n, v)| n == *field && wanted.contains(&v))
    })
}

/// The unit globs of a source (a name without a dot means `NAME.service`, as `journalctl -u`
/// takes it); `None` when it names none.
pub fn unit_globs(src: &JournalSource) -> Result<Option<globset::GlobSet>, String> {
    if src.units.is_empty() {
        return Ok(None);
    }
    let mut b = globset::GlobSetBuilder::new();
    for u in &src.units {
        let pattern = if u.contains('.') { u.clone() } else { format!("{u}.service") };
        b.add(globset::Glob::new(&pattern).map_err(|e| format!("unit pattern {u:?}: {e}"))?);
    }
    b.build().map(Some).map_err(|e| e.to_string())
}

/// One running reader thread.
struct Reader {
    stop: Arc<AtomicBool>,
    rx: Receiver<Batch>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn spawn_reader(src: &JournalSource, cursor: Option<String>, wake: impl Fn() + Send + 'static) -> std::io::Result<Reader> {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel(CHANNEL_BATCHES);
    let (src, stopping) = (src.clone(), stop.clone());
    std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || sd_journal::read(&src, cursor.as_deref(), MAX_VALUE, stopping, tx, &wake))?;
    Ok(Reader { stop, rx })
}

/// One journald source of a flow, as the engine runs it.
pub struct JournalTail {
    pub id: u64,
    pub key: String,
    src: JournalSource,
    units: Option<globset::GlobSet>,
    offset: time::UtcOffset,
    /// The bytes of the entries read so far: where the last one ends, for the acknowledgements.
    read_end: u64,
    acks: AckTracker,
    /// Cursors (and times) of entries read and not yet covered by the acknowledged prefix, by
    /// their end.
    cursors: VecDeque<(u64, String, Option<u64>)>,
    /// When the last acknowledged entry was written (µs since the epoch).
    acked_realtime_us: Option<u64>,
    /// Entries read and gaps seen, up to what the metrics were given.
    published: (u64, u64),
    /// The last entry read, where a restarted reader begins.
    last_read: Option<String>,
    /// Times the saved entry was gone at a start: entries between it and the oldest one left
    /// were lost (vacuumed or rotated away before they were read).
    pub gaps: u64,
    /// The last acknowledged cursor, not yet saved.
    pub to_save: Option<String>,
    reader: Option<Reader>,
    restart_at: Option<Instant>,
    record: Vec<u8>,
    scratch: Vec<u8>,
    /// The keys of the `syslog` shape, encoded once.
    keys: Vec<Vec<u8>>,
    pub entries_read: u64,
}

impl JournalTail {
    pub fn new(id: u64, key: String, src: JournalSource, saved: Option<String>, offset: time::UtcOffset) -> Result<JournalTail, String> {
        Ok(JournalTail {
            id,
            key,
            units: unit_globs(&src)?,
            src,
            offset,
            read_end: 0,
            acks: AckTracker::new(0),
            cursors: VecDeque::new(),
            acked_realtime_us: None,
            published: (0, 0),
            last_read: saved,
            gaps: 0,
            to_save: None,
            reader: None,
            restart_at: Some(Instant::now()),
            record: Vec::new(),
            scratch: Vec::new(),
            keys: crate::convert::journal::syslog_keys(),
            entries_read: 0,
        })
    }

    /// Entries read and gaps seen since the last call.
    pub fn take_counts(&mut self) -> (u64, u64) {
        let d = (self.entries_read - self.published.0, self.gaps - self.published.1);
        self.published = (self.entries_read, self.gaps);
        d
    }

    /// When the last acknowledged entry was written (µs since the epoch).
    pub fn acked_realtime_us(&self) -> Option<u64> {
        self.acked_realtime_us
    }

    /// The source as `/status` shows it.
    pub fn status(&self) -> crate::ops::metrics::JournalStatus {
        crate::ops::metrics::JournalStatus {
            source: self.key.clone(),
            entries_read: self.entries_read,
            unacknowledged: self.acks.outstanding() as u64,
            gaps: self.gaps,
            cursor_time: self.acked_realtime_us.map(crate::convert::journal::rfc3339_micros),
        }
    }

    /// Stops reading: the reader ends (a retiring flow reads nothing more).
    pub fn stop(&mut self) {
        self.reader = None;
        self.restart_at = None;
    }

    /// Records not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.acks.outstanding()
    }

    /// When the reader is to be started (again), if it is not running.
    pub fn restart_due(&self) -> Option<Instant> {
        self.restart_at
    }

    /// Starts the reader when due.
    pub fn start_if_due(&mut self, now: Instant, flow: &str, wake: impl Fn() + Send + 'static) {
        if self.restart_at.is_none_or(|t| now < t) {
            return;
        }
        self.restart_at = None;
        match spawn_reader(&self.src, self.last_read.clone(), wake) {
            Ok(r) => {
                let from = self.last_read.as_deref().map_or_else(|| format!("{:?}", self.src.start_at), |c| format!("after cursor {c}"));
                tracing::info!(flow = %flow, "reading the journal ({}) from {from}", self.key);
                self.reader = Some(r);
            }
            Err(e) => {
                tracing::error!(flow = %flow, "cannot start the journal reader ({e}); trying again in {} s", RESTART_AFTER.as_secs());
                self.restart_at = Some(now + RESTART_AFTER);
            }
        }
    }

    /// Takes what the reader read while the pipeline has room; each admitted entry becomes a
    /// record, each other one a skipped piece.
    pub fn read(&mut self, now: Instant, flow: &str, pipe: &mut impl Pipeline) {
        loop {
            let room = pipe.room();
            if room.backed_up || room.flow_in_flight >= room.share || room.in_flight >= room.budget {
                return;
            }
            let Some(reader) = &self.reader else { return };
            let batch = match reader.rx.try_recv() {
                Ok(b) => b,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => Batch::Ended("the journal reader stopped".into()),
            };
            match batch {
                Batch::Entries(entries) => self.take(entries, pipe),
                Batch::Gap(at) => {
                    self.gaps += 1;
                    tracing::error!(
                        flow = %flow,
                        "{}: the entry of the saved cursor is no longer in the journal (vacuumed or rotated away before it was read): reading resumes at the oldest entry left, {}; what was written between is lost",
                        self.key,
                        at.map(crate::convert::journal::rfc3339_micros).unwrap_or_default()
                    );
                }
                Batch::Unreadable(what) => {
                    tracing::warn!(flow = %flow, "{}: journal file {what}: skipped, the others are read", self.key);
                }
                Batch::Ended(why) => {
                    tracing::error!(flow = %flow, "{}: {why}; reading starts again in {} s after the last entry read", self.key, RESTART_AFTER.as_secs());
                    self.reader = None;
                    self.restart_at = Some(now + RESTART_AFTER);
                    return;
                }
            }
        }
    }

    fn take(&mut self, entries: Vec<JournalEntry>, pipe: &mut impl Pipeline) {
        for entry in entries {
            let size = entry.size() + 1;
            pipe.bytes_read(size as u64);
            let (start, end) = (self.read_end, self.read_end + size as u64);
            self.read_end = end;
            self.entries_read += 1;
            self.emit(&entry, start, end, pipe);
            if let Some(c) = entry.cursor() {
                self.cursors.push_back((end, c.to_string(), entry.realtime_us()));
                self.last_read = Some(c.to_string());
            }
        }
        self.collect_saved();
    }

    fn emit(&mut self, entry: &JournalEntry, start: u64, end: u64, pipe: &mut impl Pipeline) {
        if !admits(&self.src, self.units.as_ref(), entry) {
            pipe.piece(&mut self.acks, self.id, Path::new(&self.key), Piece::Skipped { start, end });
            return;
        }
        self.record.clear();
        let made = match self.src.shape {
            JournalShape::Fields => {
                crate::convert::journal::fields_record(entry, LAYOUT, &mut self.record);
                true
            }
            JournalShape::Syslog => matches!(
                crate::convert::journal::syslog_record(entry, self.offset, LAYOUT, &self.keys, &mut self.scratch, &mut self.record),
                crate::convert::Step::Ok
            ),
        };
        let piece = if made {
            Piece::Record(Record { start, end, bytes: &self.record, runaway: entry.truncated })
        } else {
            Piece::Skipped { start, end }
        };
        pipe.piece(&mut self.acks, self.id, Path::new(&self.key), piece);
    }

    /// Acknowledges records; the cursor to save moves with the acknowledged prefix.
    pub fn ack(&mut self, seqs: impl Iterator<Item = u64>) -> bool {
        let mut moved = false;
        for s in seqs {
            moved |= self.acks.ack(s).is_some();
        }
        self.collect_saved();
        moved
    }

    fn collect_saved(&mut self) {
        let done = self.acks.committed();
        while let Some((end, _, _)) = self.cursors.front() {
            if *end > done {
                break;
            }
            if let Some((_, cursor, realtime)) = self.cursors.pop_front() {
                self.to_save = Some(cursor);
                self.acked_realtime_us = realtime.or(self.acked_realtime_us);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JournalStart;

    fn source() -> JournalSource {
        JournalSource {
            directory: None,
            units: Vec::new(),
            max_priority: None,
            matches: Vec::new(),
            kernel: true,
            current_boot_only: false,
            start_at: JournalStart::Head,
            shape: JournalShape::Fields,
        }
    }

    fn entry(fields: &[(&str, &str)]) -> JournalEntry {
        JournalEntry::of(fields.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    #[test]
    fn filters_take_units_priority_kernel_and_matches_together() {
        let s = JournalSource {
            units: vec!["sshd".into(), "kube*.service".into()],
            max_priority: Some(4),
            kernel: false,
            matches: vec![("TEAM".into(), "web".into()), ("TEAM".into(), "api".into()), ("ZONE".into(), "a".into())],
            ..source()
        };
        let units = unit_globs(&s).unwrap();
        let ok = [("_SYSTEMD_UNIT", "sshd.service"), ("PRIORITY", "3"), ("TEAM", "api"), ("ZONE", "a")];
        assert!(admits(&s, units.as_ref(), &entry(&ok)));
        let with = |k: &'static str, v: &'static str| {
            let mut f = ok.to_vec();
            f.retain(|(n, _)| *n != k);
            f.push((k, v));
            entry(&f)
        };
        assert!(admits(&s, units.as_ref(), &with("_SYSTEMD_UNIT", "kubelet.service")));
        assert!(!admits(&s, units.as_ref(), &with("_SYSTEMD_UNIT", "cron.service")));
        assert!(!admits(&s, units.as_ref(), &with("PRIORITY", "6")));
        assert!(!admits(&s, units.as_ref(), &with("TEAM", "db")));
        assert!(!admits(&s, units.as_ref(), &with("_TRANSPORT", "kernel")));
        assert!(!admits(&s, units.as_ref(), &entry(&ok[..3])), "a field the matches name must be there");
        assert!(admits(&source(), None, &entry(&[("MESSAGE", "x")])), "no filter: everything");
    }

    #[test]
    fn a_sources_key_is_its_directory_and_its_place_among_those_reading_it() {
        assert_eq!(source_key(&source(), 0), "journal:system#0");
        let d = JournalSource { directory: Some("/run/log/journal".into()), ..source() };
        assert_eq!(source_key(&d, 1), "journal:/run/log/journal#1");
    }
}
