//! A journal entry, as journald sources read it: the framing stage of the journal, where files
//! have lines. Each field is a name and its bytes, in the journal's order, with the journal's
//! addresses (`__CURSOR`, `__REALTIME_TIMESTAMP`) among them as in its export format.
//!
//! Guarantees: an entry is three allocations however many fields it has (names in one string,
//! values in one buffer, their places in one list); a field name is UTF-8 by construction.

use std::ops::Range;

/// One journal entry: its fields in the order written (a name may repeat).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JournalEntry {
    names: String,
    values: Vec<u8>,
    places: Vec<(Range<u32>, Range<u32>)>,
    /// A value was longer than the limit and was cut.
    pub truncated: bool,
}

impl JournalEntry {
    /// An entry of these fields.
    pub fn of<'a>(fields: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> JournalEntry {
        let mut e = JournalEntry::default();
        for (n, v) in fields {
            e.push(n, v);
        }
        e
    }

    /// Appends a field.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        let n = self.names.len() as u32..(self.names.len() + name.len()) as u32;
        self.names.push_str(name);
        let v = self.values.len() as u32..(self.values.len() + value.len()) as u32;
        self.values.extend_from_slice(value);
        self.places.push((n, v));
    }

    /// The fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.places.iter().map(|(n, v)| (&self.names[n.start as usize..n.end as usize], &self.values[v.start as usize..v.end as usize]))
    }

    /// How many bytes its names and values hold.
    pub fn size(&self) -> usize {
        self.names.len() + self.values.len()
    }

    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields().find(|(n, _)| *n == name).map(|(_, v)| v)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_order_repeats_and_bytes() {
        let e = JournalEntry::of([("A", &b"1"[..]), ("B", &b"\xff\n"[..]), ("A", &b""[..])]);
        assert_eq!(e.fields().collect::<Vec<_>>(), [("A", &b"1"[..]), ("B", &b"\xff\n"[..]), ("A", &b""[..])]);
        assert_eq!(e.get("A"), Some(&b"1"[..]));
        assert_eq!(e.get_str("B"), None);
        assert_eq!(e.size(), 6);
    }
}
