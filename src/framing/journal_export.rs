//! The systemd journal's export format, as `journalctl --output=export` writes it: the framing of
//! journal sources. An entry is a run of fields, each either `NAME=value\n` (text) or `NAME\n`,
//! a 64-bit little-endian length, that many bytes and `\n` (binary, or text holding a newline);
//! an empty line ends the entry.
//!
//! Guarantees:
//! - chunking-independent: the entries and the errors are the same however the stream is cut
//!   (property test);
//! - bounded memory: a value longer than `max_value` bytes keeps its first `max_value` bytes and
//!   marks the entry `truncated`; a field name longer than [`MAX_NAME`] is an error; at most one
//!   entry is held between pushes;
//! - a stream that breaks the format (a name with a byte a journal field name cannot have, a
//!   binary value not followed by `\n`) is an error naming the byte offset; the entry being read
//!   is dropped and the parser waits for the next empty line, so one bad entry costs one entry.
//!
//! No I/O: the reader feeds the bytes of `journalctl`'s output.

/// The longest field name taken (the journal allows 64 bytes).
pub const MAX_NAME: usize = 64;

/// One journal entry: its fields in the order written (a name may repeat).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JournalEntry {
    pub fields: Vec<(String, Vec<u8>)>,
    /// A value was longer than the limit and was cut.
    pub truncated: bool,
    /// Where the entry ends in the stream (just after its empty line).
    pub end: u64,
}

impl JournalEntry {
    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// The first value of a field, when it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Where the journal can resume after this entry (`__CURSOR`).
    pub fn cursor(&self) -> Option<&str> {
        self.get_str("__CURSOR")
    }

    /// `__REALTIME_TIMESTAMP`: microseconds since the Unix epoch.
    pub fn realtime_us(&self) -> Option<u64> {
        self.get_str("__REALTIME_TIMESTAMP").and_then(|s| s.parse().ok())
    }
}

/// A break in the export format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the journal export stream breaks its format at byte {offset}: {reason}")]
pub struct ExportError {
    pub offset: u64,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line: a name, or the empty line that ends the entry.
    LineStart,
    Name,
    Text,
    BinaryLength {
        have: u8,
    },
    Binary {
        left: u64,
    },
    BinaryEnd,
    /// After an error: skipping to the empty line that ends the broken entry.
    Resync {
        at_line_start: bool,
    },
}

/// Turns the export stream into entries.
#[derive(Debug)]
pub struct ExportParser {
    max_value: usize,
    state: State,
    offset: u64,
    name: Vec<u8>,
    value: Vec<u8>,
    length: [u8; 8],
    entry: JournalEntry,
}

impl ExportParser {
    pub fn new(max_value: usize) -> Self {
        ExportParser {
            max_value,
            state: State::LineStart,
            offset: 0,
            name: Vec::new(),
            value: Vec::new(),
            length: [0; 8],
            entry: JournalEntry::default(),
        }
    }

    /// Bytes of the stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes held for the entry being read.
    pub fn held_bytes(&self) -> usize {
        self.name.capacity() + self.value.capacity() + self.entry.fields.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
    }

    /// Feeds bytes; each complete entry, or error, goes to `out` in stream order.
    pub fn push(&mut self, bytes: &[u8], mut out: impl FnMut(Result<JournalEntry, ExportError>)) {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::LineStart if b == b'\n' => {
                    i += 1;
                    if !self.entry.fields.is_empty() {
                        self.entry.end = self.offset + i as u64;
                        out(Ok(std::mem::take(&mut self.entry)));
                    }
                }
                State::LineStart => self.state = State::Name,
                State::Name => match b {
                    b'=' => {
                        self.state = State::Text;
                        i += 1;
                    }
                    b'\n' => {
                        self.state = State::BinaryLength { have: 0 };
                        i += 1;
                    }
                    _ if self.name.len() >= MAX_NAME => {
                        self.fail(i, "a field name longer than 64 bytes", &mut out);
                    }
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => {
                        self.name.push(b);
                        i += 1;
                    }
                    _ => self.fail(i, "a byte a journal field name cannot have", &mut out),
                },
                State::Text => {
                    let rest = &bytes[i..];
                    match memchr::memchr(b'\n', rest) {
                        Some(n) => {
                            self.take_value(&rest[..n]);
                            self.end_field();
                            i += n + 1;
                        }
                        None => {
                            self.take_value(rest);
                            i = bytes.len();
                        }
                    }
                }
                State::BinaryLength { have } => {
                    self.length[have as usize] = b;
                    i += 1;
                    self.state = if have == 7 {
                        State::Binary { left: u64::from_le_bytes(self.length) }
                    } else {
                        State::BinaryLength { have: have + 1 }
                    };
                }
                State::Binary { left: 0 } => self.state = State::BinaryEnd,
                State::Binary { left } => {
                    let n = (left.min((bytes.len() - i) as u64)) as usize;
                    self.take_value(&bytes[i..i + n]);
                    i += n;
                    self.state = State::Binary { left: left - n as u64 };
                }
                State::BinaryEnd if b == b'\n' => {
                    self.end_field();
                    i += 1;
                }
                State::BinaryEnd => self.fail(i, "a binary value not followed by a newline", &mut out),
                State::Resync { at_line_start } => {
                    if b == b'\n' && at_line_start {
                        self.state = State::LineStart;
                    } else {
                        self.state = State::Resync { at_line_start: b == b'\n' };
                    }
                    i += 1;
                }
            }
        }
        self.offset += bytes.len() as u64;
    }

    /// The stream ended: an entry not closed by its empty line is dropped (journalctl always
    /// closes its entries; a cut stream is read again from the last cursor).
    pub fn finish(&mut self) -> bool {
        let dropped = !self.entry.fields.is_empty() || self.state != State::LineStart;
        *self = ExportParser::new(self.max_value);
        dropped
    }

    fn take_value(&mut self, bytes: &[u8]) {
        let room = self.max_value.saturating_sub(self.value.len());
        if bytes.len() > room {
            self.entry.truncated = true;
        }
        self.value.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_field(&mut self) {
        // names are ASCII (checked byte by byte)
        let name = String::from_utf8_lossy(&self.name).into_owned();
        self.entry.fields.push((name, std::mem::take(&mut self.value)));
        self.name.clear();
        self.state = State::LineStart;
    }

    fn fail(&mut self, at: usize, reason: &'static str, out: &mut impl FnMut(Result<JournalEntry, ExportError>)) {
        out(Err(ExportError { offset: self.offset + at as u64, reason }));
        self.name.clear();
        self.value.clear();
        self.entry = JournalEntry::default();
        // the byte that broke the format is looked at again as the start of the skip
        self.state = State::Resync { at_line_start: false };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binary(name: &str, value: &[u8]) -> Vec<u8> {
        let mut out = format!("{name}\n").into_bytes();
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
        out
    }

    fn parse(chunks: &[&[u8]], max_value: usize) -> Vec<Result<JournalEntry, ExportError>> {
        let mut p = ExportParser::new(max_value);
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, |e| out.push(e));
        }
        out
    }

    fn stream() -> Vec<u8> {
        let mut s = b"__CURSOR=s=1;i=1\n__REALTIME_TIMESTAMP=1700000000000000\nMESSAGE=hello\n_PID=42\n\n".to_vec();
        s.extend_from_slice(b"__CURSOR=s=1;i=2\n");
        s.extend_from_slice(&binary("MESSAGE", b"two\nlines\n\n\xff"));
        s.extend_from_slice(b"EMPTY=\n\n");
        s
    }

    #[test]
    fn text_and_binary_fields_make_entries_that_end_at_the_empty_line() {
        let got = parse(&[&stream()], 1 << 20);
        assert_eq!(got.len(), 2);
        let first = got[0].as_ref().unwrap();
        assert_eq!(first.cursor(), Some("s=1;i=1"));
        assert_eq!(first.realtime_us(), Some(1_700_000_000_000_000));
        assert_eq!(first.get("MESSAGE"), Some(&b"hello"[..]));
        let second = got[1].as_ref().unwrap();
        assert_eq!(second.get("MESSAGE"), Some(&b"two\nlines\n\n\xff"[..]));
        assert_eq!(second.get("EMPTY"), Some(&b""[..]));
        assert!(!second.truncated);
    }

    #[test]
    fn a_long_value_is_cut_and_the_entry_marked() {
        let mut s = format!("MESSAGE={}\n\n", "x".repeat(100)).into_bytes();
        s.extend_from_slice(&binary("DATA", &[7u8; 100]));
        s.push(b'\n');
        let got = parse(&[&s], 10);
        let (a, b) = (got[0].as_ref().unwrap(), got[1].as_ref().unwrap());
        assert_eq!((a.get("MESSAGE").unwrap().len(), a.truncated), (10, true));
        assert_eq!((b.get("DATA").unwrap().len(), b.truncated), (10, true));
    }

    #[test]
    fn a_broken_entry_is_an_error_at_its_offset_and_the_next_entry_is_read() {
        let s = b"MESSAGE=a\n\nBAD-NAME=x\nMORE=y\n\nMESSAGE=c\n\n";
        let got = parse(&[s], 100);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap().get("MESSAGE"), Some(&b"a"[..]));
        assert_eq!(got[1], Err(ExportError { offset: 14, reason: "a byte a journal field name cannot have" }));
        assert_eq!(got[2].as_ref().unwrap().get("MESSAGE"), Some(&b"c"[..]));
    }

    #[test]
    fn finish_reports_an_unclosed_entry() {
        let mut p = ExportParser::new(100);
        p.push(b"MESSAGE=a\n", |_| panic!("not closed yet"));
        assert!(p.finish());
        assert!(!p.finish());
    }

    proptest! {
        #[test]
        fn entries_do_not_depend_on_how_the_stream_is_cut(cuts in proptest::collection::vec(0usize..200, 0..12), max in 1usize..40) {
            let mut s = stream();
            s.extend_from_slice(b"X-Y=broken\n\nMESSAGE=after\n\n");
            s.extend_from_slice(&stream());
            let whole = parse(&[&s], max);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (s.len() + 1)).collect();
            points.sort();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&s[last..p]);
                last = p;
            }
            chunks.push(&s[last..]);
            prop_assert_eq!(parse(&chunks, max), whole);
        }
    }
}
