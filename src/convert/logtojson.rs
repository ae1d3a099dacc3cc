//! LOGTOJSON exactly as the Kinesis Agent writes it.
//!
//! One trailing `\n` is removed (a CR stays, and makes every built-in format drop the line); the
//! line must match the whole pattern or it is dropped; values are strings or null, and in the
//! three Apache formats a value that is exactly `-` is null. Built-in formats go through the
//! hand-written parsers; a `matchPattern` runs through the Java-dialect regex.

use super::apache::{self, Dialect};
use super::json::{self, JsonLayout, ObjectWriter, Text};
use super::scan::Span;
use super::syslog::{self, BsdTimestamp};
use super::{strip_newline, LogFormat, Step};
use crate::javaregex::JavaRegex;

/// Capture spans of a built-in format, in field order, or `None` when the line does not match.
pub fn builtin_spans(line: &[u8], format: LogFormat) -> Option<([Option<Span>; 9], usize)> {
    let d = Dialect::KINESIS_AGENT;
    match format {
        LogFormat::CommonApacheLog => apache::parse_access(line, false, d).map(|f| (f, 7)),
        LogFormat::CombinedApacheLog => apache::parse_access(line, true, d).map(|f| (f, 9)),
        LogFormat::ApacheErrorLog => apache::parse_error(line, d).map(|f| (f, 7)),
        LogFormat::Syslog | LogFormat::Rfc3339Syslog => {
            let ts = if format == LogFormat::Syslog { BsdTimestamp::Traditional } else { BsdTimestamp::Rfc3339 };
            syslog::parse_bsd(line, ts).map(|f| {
                let mut all = [None; 9];
                all[..5].copy_from_slice(&f);
                (all, 5)
            })
        }
    }
}

pub(crate) fn convert(
    input: &[u8],
    format: LogFormat,
    pattern: Option<&JavaRegex>,
    keys: &[Vec<u8>],
    layout: JsonLayout,
    out: &mut Vec<u8>,
) -> Step {
    let line = strip_newline(input);
    let dash_null = format.dash_is_null();
    fn value(dash_null: bool, v: &[u8]) -> Option<&[u8]> {
        (!(dash_null && v == b"-")).then_some(v)
    }
    match pattern {
        None => {
            let Some((spans, n)) = builtin_spans(line, format) else {
                return Step::Drop;
            };
            // one look at the whole line instead of one per value: in the access-log formats a
            // value never holds a `"` (it ends a quoted field), so a line without control
            // characters and `\` has nothing to escape in any value
            let text = if std::str::from_utf8(line).is_err() {
                Text::Bytes
            } else if json::needs_escape(line, !format.quotes_delimit_values()) {
                Text::Utf8
            } else {
                Text::Verbatim
            };
            let mut w = ObjectWriter::begin(out, layout);
            for (key, span) in keys.iter().zip(&spans[..n]) {
                w.str_field_fast(key, span.and_then(|(a, b)| value(dash_null, &line[a..b])), text);
            }
            w.end();
        }
        Some(re) => {
            let text = String::from_utf8_lossy(line);
            let Some(caps) = re.full().captures(&text) else {
                return Step::Drop;
            };
            if caps.len() - 1 != keys.len() {
                return Step::Drop;
            }
            let mut w = ObjectWriter::begin(out, layout);
            for (i, key) in keys.iter().enumerate() {
                w.str_field_fast(key, caps.get(i + 1).and_then(|m| value(dash_null, m.as_str().as_bytes())), Text::Utf8);
            }
            w.end();
        }
    }
    out.push(b'\n');
    Step::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str, format: LogFormat, pattern: Option<&str>, fields: &[&str]) -> Option<String> {
        let mut out = Vec::new();
        let p = pattern.map(|p| JavaRegex::new(p).unwrap());
        let names: Vec<&str> = if fields.is_empty() { format.fields().to_vec() } else { fields.to_vec() };
        let keys: Vec<Vec<u8>> = names.iter().map(|n| crate::convert::json::encode_key(n)).collect();
        match convert(line.as_bytes(), format, p.as_ref(), &keys, JsonLayout::Compact, &mut out) {
            Step::Ok => Some(String::from_utf8(out).unwrap()),
            _ => None,
        }
    }

    #[test]
    fn combined_record_is_byte_exact() {
        let l =
            "127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET /a.gif HTTP/1.0\" 200 2326 \"-\" \"Mozilla/4.08 [en] (Win98; I ;Nav)\"\n";
        assert_eq!(
            run(l, LogFormat::CombinedApacheLog, None, &[]).unwrap(),
            "{\"host\":\"127.0.0.1\",\"ident\":null,\"authuser\":\"frank\",\"datetime\":\"10/Oct/2000:13:55:36 -0700\",\"request\":\"GET /a.gif HTTP/1.0\",\"response\":\"200\",\"bytes\":\"2326\",\"referer\":null,\"agent\":\"Mozilla/4.08 [en] (Win98; I ;Nav)\"}\n"
        );
    }

    #[test]
    fn access_log_values_are_escaped_when_the_line_holds_a_backslash_or_a_control_character() {
        let l = "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /a\\b HTTP/1.0\" 200 1 \"-\" \"tab\there\"\n";
        let out = run(l, LogFormat::CombinedApacheLog, None, &[]).unwrap();
        assert!(out.contains(r#""request":"GET /a\\b HTTP/1.0""#), "{out}");
        assert!(out.contains(r#""agent":"tab\there""#), "{out}");
        let l = "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /\x01 HTTP/1.0\" 200 1\n";
        assert!(run(l, LogFormat::CommonApacheLog, None, &[]).unwrap().contains(r#""request":"GET /\u0001 HTTP/1.0""#));
        let l = "Mar  7 04:22:00 host cron: say \"hi\"\n";
        assert!(
            run(l, LogFormat::Syslog, None, &[]).unwrap().contains(r#""message":"say \"hi\"""#),
            "quotes in syslog messages are escaped"
        );
    }

    #[test]
    fn syslog_keeps_dashes_and_renames() {
        let l = "Mar  7 04:22:00 - cron: -\n";
        assert_eq!(
            run(l, LogFormat::Syslog, None, &["t", "h", "p", "i", "m"]).unwrap(),
            "{\"t\":\"Mar  7 04:22:00\",\"h\":\"-\",\"p\":\"cron\",\"i\":null,\"m\":\"-\"}\n"
        );
    }

    #[test]
    fn crlf_drops_the_line() {
        let l = "Mar  7 04:22:00 host cron: x\r\n";
        assert_eq!(run(l, LogFormat::Syslog, None, &[]), None);
    }

    #[test]
    fn custom_pattern_full_match_and_dash_rule() {
        assert_eq!(
            run("a - c\n", LogFormat::CommonApacheLog, Some(r"(\w) (\S) (\w)"), &["x", "y", "z"]).unwrap(),
            "{\"x\":\"a\",\"y\":null,\"z\":\"c\"}\n"
        );
        assert_eq!(
            run("a - c\n", LogFormat::Syslog, Some(r"(\w) (\S) (\w)"), &["x", "y", "z"]).unwrap(),
            "{\"x\":\"a\",\"y\":\"-\",\"z\":\"c\"}\n"
        );
        assert_eq!(run("a - cd\n", LogFormat::Syslog, Some(r"(\w) (\S) (\w)"), &["x", "y", "z"]), None);
        assert_eq!(run("a\n", LogFormat::Syslog, Some(r"(\w)(x)?"), &["x", "y"]).unwrap(), "{\"x\":\"a\",\"y\":null}\n");
    }
}
