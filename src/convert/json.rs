//! JSON output that matches the Kinesis Agent's Jackson 2 default writer byte for byte.
//!
//! Guarantees:
//! - strings are written from raw bytes: valid UTF-8 is copied as is, every maximal invalid
//!   subsequence becomes one U+FFFD (the same substitution Java's UTF-8 decoder makes);
//! - `"` and `\` are escaped, `\b \t \n \f \r` use short escapes, every other control character
//!   below U+0020 becomes `\u00XX` with upper-case hex; `/`, DEL and all non-ASCII are raw;
//! - objects are written in the order the caller gives the keys, compact (`{"a":"b"}`) or in
//!   Jackson's default pretty form (`{` NL, two-space indent, `"k" : v`, NL `}`; `{ }` when empty;
//!   arrays inline as `[ a, b ]`).
//!
//! It does not allocate: everything is appended to the caller's buffer.

use serde_json::Value;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `bytes` as a JSON string literal (with quotes).
pub fn write_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    if std::str::from_utf8(bytes).is_ok() {
        escape_valid(out, bytes);
    } else {
        for chunk in bytes.utf8_chunks() {
            escape_valid(out, chunk.valid().as_bytes());
            if !chunk.invalid().is_empty() {
                out.extend_from_slice("\u{FFFD}".as_bytes());
            }
        }
    }
    out.push(b'"');
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// True when one of the 8 bytes is below 0x20, `"` or `\` (bytes of 0x80 and above never are).
#[inline]
fn word_needs_escape(w: u64) -> bool {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    (below_space | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64))) != 0
}

/// True when `s` holds a byte a JSON string must escape: a control character or `\`, and `"`
/// when `quotes` is set. Eight bytes at a time.
pub fn needs_escape(s: &[u8], quotes: bool) -> bool {
    let quote_word = if quotes { ONES * b'"' as u64 } else { ONES * b'\\' as u64 };
    let mut words = s.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
        if (below_space | has_zero(w ^ quote_word) | has_zero(w ^ (ONES * b'\\' as u64))) != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b < 0x20 || b == b'\\' || (quotes && b == b'"'))
}

/// What is known of a string value's bytes before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// Valid UTF-8 with nothing to escape: copied as is.
    Verbatim,
    /// Valid UTF-8: escaped where needed.
    Utf8,
    /// Any bytes: invalid UTF-8 replaced, then escaped.
    Bytes,
}

/// Escapes valid UTF-8, skipping eight bytes at a time where nothing needs escaping.
pub(crate) fn escape_valid(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    let mut i = 0;
    while let Some(word) = s.get(i..i + 8) {
        let w = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        if word_needs_escape(w) {
            escape_bytes(out, s, &mut start, i, i + 8);
        }
        i += 8;
    }
    // the last bytes, fewer than eight, as one word padded with spaces (which need no escape)
    let tail = &s[i..];
    let padded = tail.iter().enumerate().fold(u64::MAX / 255 * b' ' as u64, |w, (k, &b)| {
        let shift = 8 * k;
        (w & !(0xFF << shift)) | (u64::from(b) << shift)
    });
    if word_needs_escape(padded) {
        escape_bytes(out, s, &mut start, i, s.len());
    }
    out.extend_from_slice(&s[start..]);
}

/// Escapes what needs it in `s[from..to]`; `start` is where the text not yet copied begins.
#[inline]
fn escape_bytes(out: &mut Vec<u8>, s: &[u8], start: &mut usize, from: usize, to: usize) {
    for (i, &b) in s.iter().enumerate().take(to).skip(from) {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0C => b'f',
            b'\r' => b'r',
            0..=0x1F => 0,
            _ => continue,
        };
        out.extend_from_slice(&s[*start..i]);
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
        *start = i + 1;
    }
}

/// A key as it appears in the output, quotes included, computed once for a field name.
pub fn encode_key(key: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 2);
    write_str(&mut v, key.as_bytes());
    v
}

/// The two layouts the Kinesis Agent can print (`jsonFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JsonLayout {
    #[default]
    Compact,
    Pretty,
}

/// Writes one JSON object field by field, in the order given.
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    layout: JsonLayout,
    depth: usize,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    pub fn begin(out: &'a mut Vec<u8>, layout: JsonLayout) -> Self {
        out.push(b'{');
        ObjectWriter { out, layout, depth: 1, first: true }
    }

    /// Starts a field and returns the buffer positioned for its value.
    pub fn key(&mut self, key: &[u8]) -> &mut Vec<u8> {
        self.separator();
        write_str(self.out, key);
        self.colon()
    }

    /// Like [`ObjectWriter::key`] with a key already encoded by [`encode_key`].
    pub fn encoded_key(&mut self, encoded: &[u8]) -> &mut Vec<u8> {
        self.separator();
        self.out.extend_from_slice(encoded);
        self.colon()
    }

    /// A string field whose key is pre-encoded, with what is known of the value's bytes.
    #[inline]
    pub fn str_field_fast(&mut self, encoded_key: &[u8], value: Option<&[u8]>, text: Text) {
        let out = self.encoded_key(encoded_key);
        match (value, text) {
            (Some(v), Text::Verbatim) => {
                out.push(b'"');
                out.extend_from_slice(v);
                out.push(b'"');
            }
            (Some(v), Text::Utf8) => {
                out.push(b'"');
                escape_valid(out, v);
                out.push(b'"');
            }
            (Some(v), Text::Bytes) => write_str(out, v),
            (None, _) => out.extend_from_slice(b"null"),
        }
    }

    fn separator(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        if self.layout == JsonLayout::Pretty {
            newline_indent(self.out, self.depth);
        }
    }

    fn colon(&mut self) -> &mut Vec<u8> {
        match self.layout {
            JsonLayout::Compact => self.out.push(b':'),
            JsonLayout::Pretty => self.out.extend_from_slice(b" : "),
        }
        self.out
    }

    pub fn str_field(&mut self, key: &[u8], value: Option<&[u8]>) {
        let out = self.key(key);
        match value {
            Some(v) => write_str(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }

    pub fn raw_field(&mut self, key: &[u8], raw_json: &[u8]) {
        self.key(key).extend_from_slice(raw_json);
    }

    pub fn value_field(&mut self, key: &[u8], value: &Value) {
        let layout = self.layout;
        let depth = self.depth;
        let out = self.key(key);
        write_value(out, value, layout, depth);
    }

    pub fn end(self) {
        if self.layout == JsonLayout::Pretty {
            if self.first {
                self.out.push(b' ');
            } else {
                newline_indent(self.out, self.depth - 1);
            }
        }
        self.out.push(b'}');
    }
}

fn newline_indent(out: &mut Vec<u8>, depth: usize) {
    out.push(b'\n');
    for _ in 0..depth {
        out.extend_from_slice(b"  ");
    }
}

/// Writes any JSON value as Jackson would (objects keep their insertion order).
pub fn write_value(out: &mut Vec<u8>, value: &Value, layout: JsonLayout, depth: usize) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(out, s.as_bytes()),
        Value::Array(items) if items.is_empty() && layout == JsonLayout::Pretty => out.extend_from_slice(b"[ ]"),
        Value::Array(items) => {
            out.push(b'[');
            if layout == JsonLayout::Pretty {
                out.push(b' ');
            }
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(if layout == JsonLayout::Pretty { b", " } else { b"," });
                }
                write_value(out, item, layout, depth);
            }
            if layout == JsonLayout::Pretty {
                out.push(b' ');
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut w = ObjectWriter { out, layout, depth: depth + 1, first: true };
            w.out.push(b'{');
            for (k, v) in map {
                w.value_field(k.as_bytes(), v);
            }
            w.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        write_str(&mut out, bytes);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_like_jackson() {
        assert_eq!(s(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(s(b"\x08\t\n\x0c\r"), r#""\b\t\n\f\r""#);
        assert_eq!(s(b"\x00\x01\x1f"), r#""\u0000\u0001\u001F""#);
        assert_eq!(s(b"/\x7f"), "\"/\x7f\"");
        assert_eq!(s("é\u{2028}😀".as_bytes()), "\"é\u{2028}😀\"");
    }

    #[test]
    fn word_scan_finds_every_escape_at_every_position() {
        for special in [0u8, 0x1f, b'"', b'\\', b'\n', 0x7f] {
            for len in 1..20 {
                for pos in 0..len {
                    let mut v = vec![b'a'; len];
                    v[pos] = special;
                    let mut expected = String::from("\"");
                    for &b in &v {
                        match b {
                            0 => expected.push_str("\\u0000"),
                            0x1f => expected.push_str("\\u001F"),
                            b'"' => expected.push_str("\\\""),
                            b'\\' => expected.push_str("\\\\"),
                            b'\n' => expected.push_str("\\n"),
                            other => expected.push(other as char),
                        }
                    }
                    expected.push('"');
                    assert_eq!(s(&v), expected, "{special:#x} at {pos} of {len}");
                }
            }
        }
        assert_eq!(s("é\"ü ab cd ef gh ij\u{1}".as_bytes()), "\"é\\\"ü ab cd ef gh ij\\u0001\"");
    }

    proptest! {
        #[test]
        fn any_text_reads_back_as_itself(chars in prop::collection::vec(prop_oneof![
            any::<char>(),
            (0u8..0x20).prop_map(char::from),
            Just('"'),
            Just('\\'),
        ], 0..40)) {
            let text: String = chars.into_iter().collect();
            let back: String = serde_json::from_str(&s(text.as_bytes())).unwrap();
            prop_assert_eq!(back, text);
        }
    }

    #[test]
    fn needs_escape_finds_controls_backslashes_and_optionally_quotes_anywhere() {
        for len in 1..20 {
            for pos in 0..len {
                for (special, with_quotes, without) in [(0u8, true, true), (0x1f, true, true), (b'\\', true, true), (b'"', true, false)] {
                    let mut v = vec![b'a'; len];
                    v[pos] = special;
                    assert_eq!(needs_escape(&v, true), with_quotes, "{special:#x} at {pos} of {len}");
                    assert_eq!(needs_escape(&v, false), without, "{special:#x} at {pos} of {len}");
                }
                assert!(!needs_escape(&vec![b' '; len], true));
                assert!(!needs_escape("é/\x7f~".as_bytes(), true));
            }
        }
    }

    #[test]
    fn invalid_utf8_becomes_one_replacement_per_maximal_subpart() {
        assert_eq!(s(b"a\xffb"), "\"a\u{FFFD}b\"");
        assert_eq!(s(b"\xe2\x82"), "\"\u{FFFD}\"");
        assert_eq!(s(b"\xed\xa0\x80"), "\"\u{FFFD}\u{FFFD}\u{FFFD}\"");
    }

    #[test]
    fn pretty_objects_match_jackson_default_printer() {
        let mut out = Vec::new();
        let mut w = ObjectWriter::begin(&mut out, JsonLayout::Pretty);
        w.str_field(b"a", Some(b"1"));
        w.str_field(b"b", None);
        w.value_field(b"m", &serde_json::json!({"x": [1, "y"], "e": {}}));
        w.end();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n  \"a\" : \"1\",\n  \"b\" : null,\n  \"m\" : {\n    \"x\" : [ 1, \"y\" ],\n    \"e\" : { }\n  }\n}"
        );
        let mut out = Vec::new();
        ObjectWriter::begin(&mut out, JsonLayout::Pretty).end();
        assert_eq!(out, b"{ }");
    }

    #[test]
    fn compact_objects_have_no_spaces() {
        let mut out = Vec::new();
        let mut w = ObjectWriter::begin(&mut out, JsonLayout::Compact);
        w.str_field(b"a", Some(b"1"));
        w.value_field(b"m", &serde_json::json!({"x": [1, null]}));
        w.end();
        assert_eq!(out, br#"{"a":"1","m":{"x":[1,null]}}"#);
    }
}
