//! journald sources: each reads the journal through `journalctl --output=export --follow` (the
//! journal's own code reads its files: rotation, vacuuming, corruption and the file format stay
//! systemd's business), frames the export stream ([`crate::framing::journal_export`]), keeps the
//! entries its filters admit, turns each into a record ([`crate::convert::journal`]) and
//! remembers the entry's cursor; the cursor of the last entry whose record (and every record
//! before it) was acknowledged is saved with the file positions.
//!
//! Guarantees:
//! - entries are acknowledged in stream order exactly as file pieces are (an [`AckTracker`] over
//!   export-stream offsets); an entry a filter leaves out counts as acknowledged, so the cursor
//!   moves past it;
//! - a restart resumes after the saved cursor (journalctl starts at the cursor's entry, which is
//!   skipped; when that entry is gone, the entries after it were vacuumed or rotated away unread:
//!   an error says so and the gap is counted); a first start (no cursor) begins where the source
//!   says: the journal's head, its tail, or a time;
//! - `journalctl` runs on a thread that hands the engine chunks through a bounded channel: when
//!   the flow may not read (budget, sink backed up), the pipe fills and journalctl waits, so
//!   memory stays bounded; a journalctl that exits is started again after a pause, after the last
//!   entry read (what was read is in flight and will be acknowledged), and its error is logged;
//! - the decisions (arguments, filters) are pure functions.
//!
//! Not done: how many entries a gap lost (the journal does not say); how far behind the
//! journal's end a source is (journalctl cannot tell cheaply).

use crate::checkpoint::acks::AckTracker;
use crate::config::{JournalShape, JournalSource, JournalStart};
use crate::convert::json::JsonLayout;
use crate::framing::journal_export::{ExportParser, JournalEntry};
use crate::framing::{Piece, Record};
use crate::source::tail::Pipeline;
use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

/// Tail ids of journal sources start here (file tails count up from 0), so an acknowledgement
/// finds its source.
pub const JOURNAL_TAIL_BASE: u64 = 1 << 62;
/// The largest journal field value kept; a longer one is cut (the entry counts as a runaway).
pub const MAX_VALUE: usize = 1 << 20;
/// Chunks of journalctl's output waiting for the engine.
const CHANNEL_CHUNKS: usize = 4;
const CHUNK: usize = 64 << 10;
/// How long a journalctl that exited waits before it is started again.
const RESTART_AFTER: Duration = Duration::from_secs(5);

/// The key under which a source's cursor is saved: its directory (or `system`) and its place
/// among the flow's sources that read that directory.
pub fn source_key(src: &JournalSource, nth_of_directory: usize) -> String {
    let dir = src.directory.as_deref().map_or_else(|| "system".to_string(), |d| d.display().to_string());
    format!("journal:{dir}#{nth_of_directory}")
}

/// The arguments `journalctl` gets for `src`, resuming after `cursor` when there is one.
pub fn journalctl_args(src: &JournalSource, cursor: Option<&str>) -> Vec<String> {
    let mut a = vec!["--output=export".to_string(), "--follow".into(), "--no-pager".into(), "--quiet".into()];
    match &src.directory {
        Some(d) => a.push(format!("--directory={}", d.display())),
        None => a.push("--system".into()),
    }
    if src.current_boot_only {
        a.push("--boot".into());
    }
    match (cursor, &src.start_at) {
        // the saved entry itself first: if it is still there it is skipped, and if it is not the
        // entries after it were vacuumed or rotated away unread (see `JournalTail::take`)
        (Some(c), _) => {
            a.push(format!("--cursor={c}"));
            a.push("--no-tail".into());
        }
        (None, JournalStart::Head) => a.push("--no-tail".into()),
        (None, JournalStart::Tail) => a.push("--lines=0".into()),
        (None, JournalStart::Since(unix_secs)) => {
            a.push(format!("--since=@{unix_secs}"));
            a.push("--no-tail".into());
        }
    }
    a
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
        e.fields.iter().any(|(n, v)| n == field && wanted.contains(&v.as_slice()))
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

/// The boot id a cursor names (`b=`), as the journal writes `_BOOT_ID`.
fn boot_of(cursor: &str) -> Option<&str> {
    cursor.split(';').find_map(|p| p.strip_prefix("b="))
}

/// What the reader thread hands the engine.
enum Chunk {
    Bytes(Vec<u8>),
    /// journalctl ended: its status and the first lines it wrote on stderr.
    Ended(String),
}

/// One running journalctl and the thread reading it.
struct Reader {
    child: Child,
    rx: Receiver<Chunk>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_reader(args: &[String], flow: &str, wake: impl Fn() + Send + 'static) -> std::io::Result<Reader> {
    let mut child = Command::new("journalctl").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    // what journalctl says (a damaged file it skips, a directory it cannot read) is logged as it
    // comes, and its last lines explain an exit
    let last_said = std::sync::Arc::new(std::sync::Mutex::new(VecDeque::<String>::new()));
    let said = last_said.clone();
    let flow_id = flow.to_string();
    let errors = std::thread::Builder::new().name("journalctl-err".into()).spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if line.is_empty() {
                continue;
            }
            tracing::warn!(flow = %flow_id, "journalctl: {line}");
            if let Ok(mut s) = said.lock() {
                s.push_back(line);
                if s.len() > 3 {
                    s.pop_front();
                }
            }
        }
    })?;
    let (tx, rx): (SyncSender<Chunk>, Receiver<Chunk>) = mpsc::sync_channel(CHANNEL_CHUNKS);
    std::thread::Builder::new().name("journalctl".into()).spawn(move || {
        // one read buffer; each hand-over is what one read gave (up to CHUNK: while the engine
        // is busy the pipe fills, so a backlog goes in large chunks and a quiet journal's entry
        // at once)
        let mut read_buf = vec![0u8; CHUNK];
        loop {
            match stdout.read(&mut read_buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Chunk::Bytes(read_buf[..n].to_vec())).is_err() {
                        return;
                    }
                    wake();
                }
            }
        }
        let _ = errors.join();
        let said: Vec<String> = last_said.lock().map(|s| s.iter().cloned().collect()).unwrap_or_default();
        let _ = tx.send(Chunk::Ended(if said.is_empty() { "journalctl ended".into() } else { said.join("; ") }));
        wake();
    })?;
    Ok(Reader { child, rx })
}

/// One journald source of a flow, as the engine runs it.
pub struct JournalTail {
    pub id: u64,
    pub key: String,
    src: JournalSource,
    units: Option<globset::GlobSet>,
    layout: JsonLayout,
    offset: time::UtcOffset,
    parser: ExportParser,
    /// Stream offset of the current journalctl's byte 0 (offsets keep growing across restarts).
    base: u64,
    /// Where the last entry read ends in the stream.
    read_end: u64,
    acks: AckTracker,
    /// Cursors (and times) of entries read and not yet covered by the acknowledged prefix, by
    /// their end.
    cursors: VecDeque<(u64, String, Option<u64>)>,
    /// When the last acknowledged entry was written (µs since the epoch).
    acked_realtime_us: Option<u64>,
    /// Entries read and gaps seen, up to what the metrics were given.
    published: (u64, u64),
    /// The last entry read, where a restarted journalctl begins.
    last_read: Option<String>,
    /// The cursor journalctl was started at, until its first entry is seen: that entry is the
    /// cursor's own (already sent: skipped), or the entries after it are gone.
    resumed_at: Option<String>,
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
    pub errors: u64,
}

impl JournalTail {
    pub fn new(id: u64, key: String, src: JournalSource, saved: Option<String>, offset: time::UtcOffset) -> Result<JournalTail, String> {
        Ok(JournalTail {
            id,
            key,
            units: unit_globs(&src)?,
            layout: JsonLayout::Compact,
            src,
            offset,
            parser: ExportParser::new(MAX_VALUE),
            base: 0,
            read_end: 0,
            acks: AckTracker::new(0),
            cursors: VecDeque::new(),
            acked_realtime_us: None,
            published: (0, 0),
            last_read: saved,
            resumed_at: None,
            gaps: 0,
            to_save: None,
            reader: None,
            restart_at: Some(Instant::now()),
            record: Vec::new(),
            scratch: Vec::new(),
            keys: crate::convert::journal::syslog_keys(),
            entries_read: 0,
            errors: 0,
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

    /// Stops reading: journalctl ends (a retiring flow reads nothing more).
    pub fn stop(&mut self) {
        self.reader = None;
        self.restart_at = None;
    }

    /// Records not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.acks.outstanding()
    }

    /// When journalctl is to be started (again), if it is not running.
    pub fn restart_due(&self) -> Option<Instant> {
        self.restart_at
    }

    /// Starts journalctl when due.
    pub fn start_if_due(&mut self, now: Instant, flow: &str, wake: impl Fn() + Send + 'static) {
        if self.restart_at.is_none_or(|t| now < t) {
            return;
        }
        self.restart_at = None;
        let args = journalctl_args(&self.src, self.last_read.as_deref());
        match spawn_reader(&args, flow, wake) {
            Ok(r) => {
                tracing::info!(flow = %flow, "reading the journal: journalctl {}", args.join(" "));
                self.reader = Some(r);
                self.resumed_at = self.last_read.clone();
            }
            Err(e) => {
                self.errors += 1;
                tracing::error!(flow = %flow, "cannot run journalctl ({e}): is it installed and on PATH? Trying again in {} s", RESTART_AFTER.as_secs());
                self.restart_at = Some(now + RESTART_AFTER);
            }
        }
    }

    /// Reads what journalctl wrote while the pipeline has room; each admitted entry becomes a
    /// record, each other one a skipped piece.
    pub fn read(&mut self, now: Instant, flow: &str, pipe: &mut impl Pipeline) {
        loop {
            let room = pipe.room();
            if room.backed_up || room.flow_in_flight >= room.share || room.in_flight >= room.budget {
                return;
            }
            let Some(reader) = &self.reader else { return };
            let chunk = match reader.rx.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => Chunk::Ended("journalctl's reader stopped".into()),
            };
            match chunk {
                Chunk::Bytes(bytes) => {
                    pipe.bytes_read(bytes.len() as u64);
                    self.take(&bytes, flow, pipe);
                }
                Chunk::Ended(why) => {
                    self.errors += 1;
                    tracing::error!(flow = %flow, "journalctl stopped: {why}; started again in {} s after the last entry read", RESTART_AFTER.as_secs());
                    self.reader = None;
                    self.base += self.parser.offset();
                    self.read_end = self.read_end.max(self.base);
                    self.parser.finish();
                    self.restart_at = Some(now + RESTART_AFTER);
                    return;
                }
            }
        }
    }

    fn take(&mut self, bytes: &[u8], flow: &str, pipe: &mut impl Pipeline) {
        let mut entries = Vec::new();
        self.parser.push(bytes, |e| entries.push(e));
        for e in entries {
            match e {
                Err(err) => {
                    self.errors += 1;
                    tracing::warn!(flow = %flow, "{err}; that entry is skipped");
                }
                Ok(entry) => {
                    let (start, end) = (self.read_end, self.base + entry.end);
                    self.read_end = end;
                    if let Some(saved) = self.resumed_at.take() {
                        if entry.cursor() == Some(saved.as_str()) {
                            // the saved entry itself: sent before
                            pipe.piece(&mut self.acks, self.id, Path::new(&self.key), Piece::Skipped { start, end });
                            continue;
                        }
                        if !(self.src.current_boot_only && boot_of(&saved) != entry.get_str("_BOOT_ID")) {
                            self.gaps += 1;
                            tracing::error!(
                                flow = %flow,
                                "{}: the entry of the saved cursor is no longer in the journal (vacuumed or rotated away before it was read): reading resumes at the oldest entry left, {}; what was written between is lost",
                                self.key,
                                entry.realtime_us().map(crate::convert::journal::rfc3339_micros).unwrap_or_default()
                            );
                        }
                    }
                    self.entries_read += 1;
                    self.emit(&entry, start, end, pipe);
                    if let Some(c) = entry.cursor() {
                        self.cursors.push_back((end, c.to_string(), entry.realtime_us()));
                        self.last_read = Some(c.to_string());
                    }
                }
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
                crate::convert::journal::fields_record(entry, self.layout, &mut self.record);
                true
            }
            JournalShape::Syslog => matches!(
                crate::convert::journal::syslog_record(entry, self.offset, self.layout, &self.keys, &mut self.scratch, &mut self.record),
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
        JournalEntry { fields: fields.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect(), truncated: false, end: 0 }
    }

    #[test]
    fn journalctl_resumes_after_the_cursor_else_starts_where_the_source_says() {
        let s = JournalSource { directory: Some("/var/log/journal".into()), current_boot_only: true, ..source() };
        assert_eq!(
            journalctl_args(&s, Some("s=1;i=2")).join(" "),
            "--output=export --follow --no-pager --quiet --directory=/var/log/journal --boot --cursor=s=1;i=2 --no-tail"
        );
        assert_eq!(journalctl_args(&source(), None).join(" "), "--output=export --follow --no-pager --quiet --system --no-tail");
        let tail = JournalSource { start_at: JournalStart::Tail, ..source() };
        assert!(journalctl_args(&tail, None).ends_with(&["--lines=0".to_string()]));
        let since = JournalSource { start_at: JournalStart::Since(1_765_000_000), ..source() };
        assert!(journalctl_args(&since, None).join(" ").ends_with("--since=@1765000000 --no-tail"));
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
