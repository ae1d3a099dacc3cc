//! The record pipeline of one flow: each framed piece is registered for acknowledgement,
//! converted straight into the batch being filled, cut or split to what the destination takes,
//! and the batch is sent to the flow's sink when it is full or old.
//!
//! Guarantees: a record is copied once, from the read buffer into the batch; only the last
//! piece of a split record moves the checkpoint past it; the bytes counted in flight are the
//! ones the batch's acknowledgement gives back. Not done here: deciding when a batch is old
//! (the engine's timers) and delivering it (the sinks).

use crate::batch::{AckRef, Batch};
use crate::checkpoint::acks::AckTracker;
use crate::config::{Flow, Oversized};
use crate::convert::{Chain, Outcome};
use crate::framing::{truncate_record_from, Piece};
use crate::source::tail::{Pipeline, Room};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::time::Instant;

/// What one flow's pipeline did, counted (the metrics get the differences).
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowStats {
    pub records: u64,
    pub dropped: u64,
    pub truncated: u64,
    /// Records longer than the destination takes, sent in pieces.
    pub split: u64,
    /// Records a service rejected for good, written to the dead-letter file.
    pub dead_lettered: u64,
    pub processing_errors: u64,
    /// Records on which a processor panicked (sent as they were read; counted in
    /// `processing_errors` too).
    pub processor_panics: u64,
    /// Records sent with a field a field step could not parse, kept as it was.
    pub fields_unparsed: u64,
    /// Records in a row that failed conversion, up to the last one.
    pub consecutive_processing_errors: u64,
    pub runaway_lines: u64,
    pub bytes_read: u64,
}

/// Handles one framed piece: registers it for acknowledgement, converts records and batches them.
/// `source` is the tail and its current path, kept with each record for the dead-letter file.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit(
    flow: &Flow,
    chain: &mut Chain,
    stats: &mut FlowStats,
    acks: &mut AckTracker,
    out: &mut Outbox,
    in_flight: &mut u64,
    source: (u64, &Path),
    piece: Piece<'_>,
) {
    let r = match piece {
        Piece::Skipped { end, .. } => {
            acks.push(end, true);
            return;
        }
        Piece::Record(r) => r,
    };
    if r.runaway {
        stats.runaway_lines += 1;
    }
    // converted straight into the batch buffer
    let start = out.batch.data.len();
    match chain.convert_append(r.bytes, &mut out.batch.data) {
        Outcome::Dropped => {
            stats.dropped += 1;
            acks.push(r.end, true);
            return;
        }
        Outcome::FellBack => {
            stats.processing_errors += 1;
            stats.consecutive_processing_errors += 1;
        }
        Outcome::Panicked => {
            stats.processing_errors += 1;
            stats.consecutive_processing_errors += 1;
            stats.processor_panics += 1;
            if stats.processor_panics == 1 {
                tracing::error!(flow = %flow.id, "a processor failed on the record of {} at offset {} (a bug in logferry; please report it with that line): the record is sent as it was read, and later such records are only counted (processor_panics)", source.1.display(), r.start);
            }
        }
        Outcome::Emitted => stats.consecutive_processing_errors = 0,
        Outcome::FieldKept => {
            stats.consecutive_processing_errors = 0;
            stats.fields_unparsed += 1;
        }
    }
    // journal entries carry their host and source already
    if source.0 < crate::source::journal::JOURNAL_TAIL_BASE {
        add_provenance(&mut out.batch.data, start, &flow.provenance, source.1);
    }
    stats.records += 1;
    let len = out.batch.data.len() - start;
    // a container record may report an end before its start (held back for a partial line)
    let cost = r.end.saturating_sub(r.start).max(len as u64);
    let add = |out: &mut Outbox, acks: &mut AckTracker, in_flight: &mut u64, start: usize, end: u64, cost: u64| {
        let seq = acks.push(end, false);
        out.add(flow, start, AckRef { tail: source.0, seq }, source.1, r.start, cost);
        *in_flight += cost;
    };
    if len > flow.max_record_bytes && flow.oversized == Oversized::Split {
        // pieces of at most the largest size that concatenate to the record; the file advances
        // past it only when every piece was acknowledged
        stats.split += 1;
        let record = out.batch.data.split_off(start);
        let pieces = record.len().div_ceil(flow.max_record_bytes);
        for (k, piece) in record.chunks(flow.max_record_bytes).enumerate() {
            let start = out.batch.data.len();
            out.batch.data.extend_from_slice(piece);
            let last = k + 1 == pieces;
            let share = if last { cost - (cost / pieces as u64) * (pieces as u64 - 1) } else { cost / pieces as u64 };
            // only the last piece moves the checkpoint past the record
            add(out, acks, in_flight, start, if last { r.end } else { r.start.min(r.end) }, share);
        }
        return;
    }
    if truncate_record_from(&mut out.batch.data, start, flow.max_record_bytes, &flow.truncated_record_terminator) {
        stats.truncated += 1;
    }
    add(out, acks, in_flight, start, r.end, cost);
}

/// The host's name, read once: `/proc/sys/kernel/hostname`, which the systemd sandbox hides
/// (`ProcSubset=pid`), then `/etc/hostname`.
pub(crate) fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "localhost".into())
    })
}

/// Adds the record's provenance (its file's path, the host's name) under the keys asked for:
/// into a record that is a JSON object, after its last field; a record that is not becomes
/// `{"message": <the record without its newline>, ...}`. Nothing when no key is asked for.
pub(crate) fn add_provenance(data: &mut Vec<u8>, start: usize, p: &crate::config::Provenance, path: &Path) {
    use crate::convert::json::write_str;
    if p.path_key.is_none() && p.host_key.is_none() {
        return;
    }
    let newline = data.last() == Some(&b'\n') && data.len() > start;
    let end = data.len() - usize::from(newline);
    let record = &data[start..end];
    let is_object =
        record.first() == Some(&b'{') && record.last() == Some(&b'}') && serde_json::from_slice::<serde::de::IgnoredAny>(record).is_ok();
    let mut fields = Vec::new();
    for (key, value) in [(&p.path_key, path.to_string_lossy().as_bytes().to_vec()), (&p.host_key, host_name().as_bytes().to_vec())] {
        if let Some(k) = key {
            fields.push(b',');
            write_str(&mut fields, k.as_bytes());
            fields.push(b':');
            write_str(&mut fields, &value);
        }
    }
    if is_object {
        let empty = record.iter().filter(|b| !b.is_ascii_whitespace()).count() == 2;
        let close = end - 1;
        let insert = if empty { &fields[1..] } else { &fields[..] };
        data.splice(close..close, insert.iter().copied());
    } else {
        let mut wrapped = b"{\"message\":".to_vec();
        write_str(&mut wrapped, record);
        wrapped.extend_from_slice(&fields);
        wrapped.push(b'}');
        if newline {
            wrapped.push(b'\n');
        }
        data.truncate(start);
        data.extend_from_slice(&wrapped);
    }
}

/// One flow's record pipeline as its tails see it: pieces go through [`emit`] into the batch.
pub struct FlowPipe<'a> {
    pub flow: &'a Flow,
    pub chain: &'a mut Chain,
    pub stats: &'a mut FlowStats,
    pub out: &'a mut Outbox,
    /// Bytes in flight, every flow's.
    pub in_flight: &'a mut u64,
    /// Bytes the other flows' tails hold.
    pub others_held: u64,
    pub budget: u64,
    /// This flow's share of the budget.
    pub share: u64,
}

impl Pipeline for FlowPipe<'_> {
    fn piece(&mut self, acks: &mut AckTracker, tail: u64, path: &Path, piece: Piece<'_>) {
        emit(self.flow, self.chain, self.stats, acks, self.out, self.in_flight, (tail, path), piece);
    }

    fn room(&self) -> Room {
        Room {
            in_flight: *self.in_flight,
            others_held: self.others_held,
            budget: self.budget,
            share: self.share,
            flow_in_flight: self.out.in_flight,
            backed_up: self.out.is_backed_up(),
        }
    }

    fn bytes_read(&mut self, n: u64) {
        self.stats.bytes_read += n;
    }

    fn lines_split(&mut self, n: u64) {
        self.stats.split += n;
    }
}

/// The batch a flow is filling and the channel to its sink.
pub struct Outbox {
    pub batch: Batch,
    /// When the batch got its first record.
    pub started: Option<Instant>,
    pub sink: Option<Sender<Batch>>,
    /// Batches handed to the sink and not delivered yet.
    pub waiting: usize,
    /// Beyond this many waiting batches, the flow's files are not read (they stay dirty).
    pub max_waiting: usize,
    /// Bytes of this flow read and not yet acknowledged (its share of the budget in use).
    pub in_flight: u64,
    /// Since when batches have waited at the sink with none delivered.
    pub waiting_since: Option<Instant>,
    /// When the records being added were read (ms since the epoch): set before each read, stamped
    /// on each record (`Batch::read_ms`), the event time of a destination that has one.
    pub read_ms: i64,
    /// The records that close a batch: the flow's limit, or none when the sink packs records
    /// (then the count that matters is of packed records: the sink cuts requests by it, and the
    /// batch closes by size and age).
    max_records: u64,
}

impl Outbox {
    /// An empty outbox of `flow` sending to `sink`; beyond `max_waiting` batches at the sink,
    /// reads stop.
    pub fn new(sink: Sender<Batch>, flow: &Flow, max_waiting: usize) -> Outbox {
        let max_records = if crate::sinks::facts(&flow.destination).packs_records { u64::MAX } else { flow.buffer.max_records };
        Outbox {
            batch: Batch::default(),
            started: None,
            sink: Some(sink),
            waiting: 0,
            max_waiting,
            in_flight: 0,
            waiting_since: None,
            read_ms: 0,
            max_records,
        }
    }

    pub fn is_backed_up(&self) -> bool {
        self.waiting >= self.max_waiting
    }

    /// Ends the record whose bytes start at `start` in the batch buffer: sends the batch first
    /// when the record does not fit, and sends it after when it is full.
    pub fn add(&mut self, flow: &Flow, start: usize, ack: AckRef, path: &Path, offset: u64, cost: u64) {
        let max_records = self.max_records;
        let full = |b: &Batch, over: bool| {
            b.len() as u64 >= max_records
                || if over { b.data.len() as u64 > flow.buffer.max_bytes } else { b.data.len() as u64 >= flow.buffer.max_bytes }
        };
        if !self.batch.is_empty() && full(&self.batch, true) {
            // the batch is full without this record: send it, and start the next one with it
            let record = self.batch.data.split_off(start);
            self.send();
            self.batch.data.extend_from_slice(&record);
        }
        self.batch.mark_read_at(self.read_ms);
        self.batch.commit_record(ack, cost, path, offset);
        self.in_flight += cost;
        self.started.get_or_insert_with(Instant::now);
        if full(&self.batch, false) {
            self.send();
        }
    }

    pub fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.started = None;
        // the next batch is likely the size of this one: room for it up front, instead of
        // growing by doubling (copies, and up to twice the memory)
        let next = Batch::with_capacity(self.batch.data.len() + self.batch.data.len() / 8, self.batch.len());
        let b = std::mem::replace(&mut self.batch, next);
        if let Some(s) = &self.sink {
            if s.send(b).is_ok() {
                self.waiting += 1;
                self.waiting_since.get_or_insert_with(Instant::now);
            }
        }
    }
}

#[cfg(test)]
mod provenance_tests {
    use super::*;
    use crate::config::Provenance;

    fn with(record: &str, p: &Provenance) -> String {
        let mut data = b"earlier record\n".to_vec();
        let start = data.len();
        data.extend_from_slice(record.as_bytes());
        add_provenance(&mut data, start, p, Path::new("/var/log/app \"a\".log"));
        assert!(data.starts_with(b"earlier record\n"));
        String::from_utf8(data[start..].to_vec()).unwrap()
    }

    #[test]
    fn the_path_and_host_join_a_json_record_and_wrap_any_other() {
        let both = Provenance { path_key: Some("file".into()), host_key: Some("host".into()) };
        let host = host_name();
        assert_eq!(with("{\"a\":1}\n", &both), format!("{{\"a\":1,\"file\":\"/var/log/app \\\"a\\\".log\",\"host\":\"{host}\"}}\n"));
        assert_eq!(with("{ }\n", &Provenance { path_key: Some("f".into()), host_key: None }), "{ \"f\":\"/var/log/app \\\"a\\\".log\"}\n");
        assert_eq!(
            with("plain {x}\n", &Provenance { host_key: Some("h".into()), path_key: None }),
            format!("{{\"message\":\"plain {{x}}\",\"h\":\"{host}\"}}\n")
        );
        assert_eq!(
            with("{not json}\n", &Provenance { host_key: Some("h".into()), path_key: None }),
            format!("{{\"message\":\"{{not json}}\",\"h\":\"{host}\"}}\n")
        );
        assert_eq!(with("as is\n", &Provenance::default()), "as is\n");
    }
}
