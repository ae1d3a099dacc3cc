//! SINGLELINE, CSVTOJSON and ADDMETADATA with the Kinesis Agent's exact output.
//!
//! Each works on the record decoded as UTF-8 (invalid bytes become U+FFFD, as in Java) and writes
//! into the caller's buffer. See the Kinesis Agent behaviour reference, sections 4.2, 4.3 and 4.5.

use super::json::{write_str, JsonLayout, ObjectWriter};
use super::{strip_newline, Step};
use crate::javaregex::{java_split, JavaRegex};
use serde_json::Value;

/// SINGLELINE: split on `\n` (Java split: trailing empty pieces dropped), trim each piece of
/// characters <= U+0020 unless `no_trim`, join with nothing or with the three characters `\\n`
/// (`escape_new_line`), then append one `\n`.
pub(crate) fn single_line(input: &[u8], no_trim: bool, escape_new_line: bool, out: &mut Vec<u8>) -> Step {
    let text = String::from_utf8_lossy(input);
    // Java's split drops trailing empty pieces; dropping the trailing newlines first is the same.
    for (i, p) in text.trim_end_matches('\n').split('\n').enumerate() {
        if i > 0 && escape_new_line {
            out.extend_from_slice(b"\\\\n");
        }
        let p = if no_trim { p } else { p.trim_matches(|c: char| c <= ' ') };
        out.extend_from_slice(p.as_bytes());
    }
    out.push(b'\n');
    Step::Ok
}

/// CSVTOJSON: one trailing `\n` removed, split with `delimiter` as a Java regex and Java's split
/// rules, field i = column i or null when there are fewer columns; a repeated name keeps its first
/// position and takes the last value. No quote handling, as in the Kinesis Agent.
pub(crate) fn csv_to_json(input: &[u8], fields: &[String], delimiter: &JavaRegex, layout: JsonLayout, out: &mut Vec<u8>) -> Step {
    let text = String::from_utf8_lossy(strip_newline(input));
    let mut columns = Vec::with_capacity(fields.len());
    java_split(delimiter, &text, &mut columns);
    let mut w = ObjectWriter::begin(out, layout);
    for (i, name) in fields.iter().enumerate() {
        if fields[..i].contains(name) {
            continue;
        }
        let last = fields.iter().rposition(|f| f == name).unwrap_or(i);
        w.str_field(name.as_bytes(), columns.get(last).map(|c| c.as_bytes()));
    }
    w.end();
    out.push(b'\n');
    Step::Ok
}

/// ADDMETADATA: `{"ts":..., "metadata":..., "data":"<record without its \n>"}` + `\n`; `ts` only
/// when enabled, formatted `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'` in UTC.
pub(crate) fn add_metadata(
    input: &[u8],
    metadata: Option<&Value>,
    now: Option<time::OffsetDateTime>,
    layout: JsonLayout,
    out: &mut Vec<u8>,
) -> Step {
    let data = strip_newline(input);
    let mut w = ObjectWriter::begin(out, layout);
    if let Some(now) = now {
        let ts = format_millis_utc(now);
        w.str_field(b"ts", Some(ts.as_bytes()));
    }
    match metadata {
        Some(v) => w.value_field(b"metadata", v),
        None => w.raw_field(b"metadata", b"null"),
    }
    write_str(w.key(b"data"), data);
    w.end();
    out.push(b'\n');
    Step::Ok
}

/// `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'` in UTC.
pub fn format_millis_utc(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sl(input: &str, no_trim: bool, esc: bool) -> String {
        let mut out = Vec::new();
        single_line(input.as_bytes(), no_trim, esc, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_line_joins_with_nothing() {
        assert_eq!(sl("first\n  second\n", false, false), "firstsecond\n");
        assert_eq!(sl("a\r\n\tb\n", false, false), "ab\n");
        assert_eq!(sl("no newline", false, false), "no newline\n");
        assert_eq!(sl("\n\n", false, false), "\n");
        assert_eq!(sl("\na\n\nb\n\n", false, true), "\\\\na\\\\n\\\\nb\n");
        assert_eq!(sl(" a \n b \n", true, false), " a  b \n");
    }

    fn csv(input: &str, fields: &[&str], delim: &str) -> String {
        let mut out = Vec::new();
        let f: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        csv_to_json(input.as_bytes(), &f, &JavaRegex::new(delim).unwrap(), JsonLayout::Compact, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_follows_java_split_and_null_rules() {
        assert_eq!(csv("a,b,c\n", &["x", "y"], ","), "{\"x\":\"a\",\"y\":\"b\"}\n");
        assert_eq!(csv("a,,\n", &["x", "y", "z"], ","), "{\"x\":\"a\",\"y\":null,\"z\":null}\n");
        assert_eq!(csv("a,,c\r\n", &["x", "y", "z"], ","), "{\"x\":\"a\",\"y\":\"\",\"z\":\"c\\r\"}\n");
        assert_eq!(csv("\n", &["x"], ","), "{\"x\":\"\"}\n");
        assert_eq!(csv("\"a,b\",c\n", &["x", "y"], ","), "{\"x\":\"\\\"a\",\"y\":\"b\\\"\"}\n");
        assert_eq!(csv("ab\n", &["x", "y"], "|"), "{\"x\":\"a\",\"y\":\"b\"}\n");
        assert_eq!(csv("a\tb\n", &["x", "y"], "\t"), "{\"x\":\"a\",\"y\":\"b\"}\n");
        assert_eq!(csv("1,2,3\n", &["x", "y", "x"], ","), "{\"x\":\"3\",\"y\":\"2\"}\n");
    }

    #[test]
    fn add_metadata_wraps_text() {
        let mut out = Vec::new();
        let md = serde_json::json!({"b": 1, "a": {"c": [true]}});
        let t = time::macros::datetime!(2024-02-29 01:02:03.004 UTC);
        add_metadata(b"line \"q\"\n", Some(&md), Some(t), JsonLayout::Compact, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"ts\":\"2024-02-29T01:02:03.004Z\",\"metadata\":{\"b\":1,\"a\":{\"c\":[true]}},\"data\":\"line \\\"q\\\"\"}\n"
        );
        let mut out = Vec::new();
        add_metadata(b"x", None, None, JsonLayout::Compact, &mut out);
        assert_eq!(out, b"{\"metadata\":null,\"data\":\"x\"}\n");
    }
}
