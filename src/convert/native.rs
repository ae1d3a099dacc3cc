//! The native format's processors: typed parsing, named-group regex, JSON pass-through, filters.
//!
//! Guarantees:
//! - typed parsing writes integers for status, size, pid, tid, priority fields, RFC 3339 UTC
//!   timestamps (`2000-10-10T20:55:36Z`, fraction kept as written), and null for `-`;
//! - a timestamp that names no real instant (31 February, second 60), or whose UTC time leaves
//!   the calendar's range (year 9999 at `-23:59`), is kept as written;
//! - lines may end in CRLF (the CR is removed first), Apache hosts and clients may be IPv6, quoted
//!   fields may hold `\"` and may be empty;
//! - a line that does not parse is sent raw or dropped as the step's `on_mismatch` says.
//!
//! Field names are listed in the README ("Native typed fields").

use super::apache::{self, Dialect};
use super::civil::{write_utc, Civil};
use super::json::{self, write_str, JsonLayout, ObjectWriter, Text};
use super::scan::Span;
use super::syslog::{self, BsdTimestamp};
use super::{strip_newline, MismatchPolicy, NativeFormat, Step};
use std::io::Write;

/// Reused buffers of the native steps.
#[derive(Default)]
pub struct NativeScratch {
    ts: TimestampCache,
}

/// The last timestamp converted, by its text as written: log lines come in bursts within one
/// second, so most lines reuse it instead of converting the civil time to UTC again.
#[derive(Default)]
struct TimestampCache {
    /// The timestamp as written, and what its conversion depends on besides (the current day,
    /// for years inferred by BSD syslog).
    written: Vec<u8>,
    context: i32,
    valid: bool,
    /// Its UTC form, or `None` when it names no instant the calendar holds (kept as written).
    utc: Option<Vec<u8>>,
}

fn mismatch(input: &[u8], policy: MismatchPolicy, out: &mut Vec<u8>) -> Step {
    match policy {
        MismatchPolicy::Drop => Step::Drop,
        MismatchPolicy::Raw => {
            out.extend_from_slice(input);
            Step::Ok
        }
    }
}

fn strip_line_end(input: &[u8]) -> &[u8] {
    let l = strip_newline(input);
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn num(s: &[u8]) -> i64 {
    s.iter().fold(0i64, |acc, d| acc.saturating_mul(10).saturating_add((d - b'0') as i64))
}

/// Writes an integer field (its key pre-encoded) from an INT token, null for `-` or anything
/// else. Plain digits without a leading zero are already the JSON number: copied as they are.
fn int_field(w: &mut ObjectWriter<'_>, key: &[u8], v: Option<&[u8]>) {
    let out = w.encoded_key(key);
    match v {
        Some(d) if !d.is_empty() && d.len() <= 18 && d.iter().all(u8::is_ascii_digit) && (d[0] != b'0' || d.len() == 1) => {
            out.extend_from_slice(d)
        }
        _ => match v.and_then(|v| std::str::from_utf8(v).ok()).and_then(|s| s.trim_start_matches('+').parse::<i64>().ok()) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.extend_from_slice(b"null"),
        },
    }
}

fn str_or_null(line: &[u8], span: Option<Span>) -> Option<&[u8]> {
    span.map(|(a, b)| &line[a..b]).filter(|v| *v != b"-")
}

/// Writes the timestamp at `span` (under the pre-encoded `key`) converted to UTC (as written when it cannot be), through the
/// cache: `civil` is only called for a timestamp other than the last one.
fn ts_field(
    w: &mut ObjectWriter<'_>,
    key: &[u8],
    line: &[u8],
    span: Span,
    context: i32,
    civil: impl FnOnce() -> Option<Civil>,
    cache: &mut TimestampCache,
) {
    let written = &line[span.0..span.1];
    if !(cache.valid && cache.context == context && cache.written == written) {
        cache.valid = true;
        cache.context = context;
        cache.written.clear();
        cache.written.extend_from_slice(written);
        let mut utc = cache.utc.take().unwrap_or_default();
        cache.utc = match civil() {
            Some(c) if write_utc(&mut utc, line, &c) => Some(utc),
            _ => None,
        };
    }
    match cache.utc.as_deref() {
        // digits, `-`, `:`, `T`, `.` and `Z`: nothing to escape
        Some(utc) => w.str_field_fast(key, Some(utc), Text::Verbatim),
        None => write_str(w.encoded_key(key), written),
    }
}

/// `+HHMM` / `-HH:MM` / `-HH` offsets in minutes.
fn offset_minutes(s: &[u8]) -> Option<i32> {
    let (sign, d) = match s.first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => (1, s),
    };
    let digits: Vec<u8> = d.iter().copied().filter(|b| *b != b':').collect();
    let m = match digits.len() {
        1 | 2 => num(&digits) * 60,
        4 => num(&digits[..2]) * 60 + num(&digits[2..]),
        _ => return None,
    };
    Some(sign * m as i32)
}

fn rfc3339_civil(line: &[u8], (a, b): Span) -> Option<Civil> {
    let s = &line[a..b];
    let mut frac = None;
    let mut rest = &s[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        frac = Some((a + 20, a + 20 + n));
        rest = &rest[1 + n..];
    }
    let offset = if rest == b"Z" { 0 } else { offset_minutes(rest)? };
    Some(Civil {
        year: num(&s[0..4]) as i32,
        month: num(&s[5..7]) as u8,
        day: num(&s[8..10]) as u8,
        hour: num(&s[11..13]) as u8,
        minute: num(&s[14..16]) as u8,
        second: num(&s[17..19]) as u8,
        frac,
        offset_minutes: offset,
    })
}

pub(crate) fn parse(
    input: &[u8],
    format: NativeFormat,
    policy: MismatchPolicy,
    clock: impl Fn() -> time::OffsetDateTime,
    scratch: &mut NativeScratch,
    out: &mut Vec<u8>,
) -> Step {
    let line = strip_line_end(input);
    let layout = JsonLayout::Compact;
    let d = Dialect::NATIVE;
    match format {
        NativeFormat::ApacheCommon | NativeFormat::ApacheCombined => {
            let combined = format == NativeFormat::ApacheCombined;
            let Some((f, date)) = apache::parse_access_dated(line, combined, d) else {
                return mismatch(input, policy, out);
            };
            let Some(dt) = f[3] else { return mismatch(input, policy, out) };
            let civil = || {
                let (day, month, (y0, y1), (h, mi, s, frac), (o0, o1)) = date;
                let base = dt.0;
                Some(Civil {
                    year: i32::try_from(num(&line[base + y0..base + y1])).ok()?,
                    month,
                    day,
                    hour: h,
                    minute: mi,
                    second: s,
                    frac: frac.map(|(a, b)| (a + base, b + base)),
                    offset_minutes: offset_minutes(&line[base + o0..base + o1])?,
                })
            };
            // one look at the whole line, as LOGTOJSON does: a value of an access log never holds
            // a `"` (it would end its quoted field), so a valid line without `\` or control
            // characters has nothing to escape in any value
            let text = if std::str::from_utf8(line).is_err() {
                Text::Bytes
            } else if json::needs_escape(line, false) {
                Text::Utf8
            } else {
                Text::Verbatim
            };
            let mut w = ObjectWriter::begin(out, layout);
            for (i, key) in [&b"\"host\""[..], b"\"ident\"", b"\"authuser\""].into_iter().enumerate() {
                w.str_field_fast(key, str_or_null(line, f[i]), text);
            }
            ts_field(&mut w, b"\"datetime\"", line, dt, 0, civil, &mut scratch.ts);
            w.str_field_fast(b"\"request\"", str_or_null(line, f[4]), text);
            int_field(&mut w, b"\"response\"", str_or_null(line, f[5]));
            int_field(&mut w, b"\"bytes\"", str_or_null(line, f[6]));
            if combined {
                w.str_field_fast(b"\"referer\"", str_or_null(line, f[7]), text);
                w.str_field_fast(b"\"agent\"", str_or_null(line, f[8]), text);
            }
            w.end();
        }
        NativeFormat::ApacheError => {
            let Some(f) = apache::parse_error(line, d) else {
                return mismatch(input, policy, out);
            };
            let ts = f[0].unwrap();
            let civil = || {
                apache::parse_error_timestamp(&line[ts.0..ts.1]).and_then(|(day, month, (h, mi, s, frac), (y0, y1))| {
                    Some(Civil {
                        year: i32::try_from(num(&line[ts.0 + y0..ts.0 + y1])).ok()?,
                        month,
                        day,
                        hour: h,
                        minute: mi,
                        second: s,
                        frac: frac.map(|(a, b)| (a + ts.0, b + ts.0)),
                        offset_minutes: 0,
                    })
                })
            };
            let mut w = ObjectWriter::begin(out, layout);
            ts_field(&mut w, b"\"timestamp\"", line, ts, 0, civil, &mut scratch.ts);
            w.str_field(b"module", str_or_null(line, f[1]));
            w.str_field(b"severity", str_or_null(line, f[2]));
            int_field(&mut w, b"\"processid\"", str_or_null(line, f[3]));
            int_field(&mut w, b"\"threadid\"", str_or_null(line, f[4]));
            w.str_field(b"client", str_or_null(line, f[5]));
            w.str_field(b"message", f[6].map(|(a, b)| &line[a..b]));
            w.end();
        }
        NativeFormat::Syslog | NativeFormat::Rfc3339Syslog => {
            let kind = if format == NativeFormat::Syslog { BsdTimestamp::Traditional } else { BsdTimestamp::Rfc3339 };
            let Some(f) = syslog::parse_bsd(line, kind) else {
                return mismatch(input, policy, out);
            };
            let ts = f[0].unwrap();
            // a BSD timestamp has no year: its conversion depends on today's date too (the clock
            // is read only for those)
            let now = if kind == BsdTimestamp::Traditional { Some(clock()) } else { None };
            let context = now.map_or(0, |n| n.date().to_julian_day());
            let civil = || match kind {
                BsdTimestamp::Rfc3339 => rfc3339_civil(line, ts),
                BsdTimestamp::Traditional => bsd_civil(line, ts, now?),
            };
            let mut w = ObjectWriter::begin(out, layout);
            ts_field(&mut w, b"\"timestamp\"", line, ts, context, civil, &mut scratch.ts);
            w.str_field(b"hostname", f[1].map(|(a, b)| &line[a..b]));
            w.str_field(b"program", f[2].map(|(a, b)| &line[a..b]));
            int_field(&mut w, b"\"processid\"", f[3].map(|(a, b)| &line[a..b]));
            w.str_field(b"message", f[4].map(|(a, b)| &line[a..b]));
            w.end();
        }
        NativeFormat::Rfc5424 => {
            let Some(m) = syslog::parse_rfc5424(line) else {
                return mismatch(input, policy, out);
            };
            let mut w = ObjectWriter::begin(out, layout);
            let _ = write!(w.key(b"facility"), "{}", m.priority >> 3);
            let _ = write!(w.key(b"severity"), "{}", m.priority & 7);
            let _ = write!(w.key(b"version"), "{}", num(&line[m.version.0..m.version.1]));
            match m.timestamp {
                Some(ts) => ts_field(&mut w, b"\"timestamp\"", line, ts, 0, || rfc3339_civil(line, ts), &mut scratch.ts),
                None => w.str_field(b"timestamp", None),
            }
            let text = |s: Option<Span>| s.map(|(a, b)| &line[a..b]);
            w.str_field(b"hostname", text(m.hostname));
            w.str_field(b"appname", text(m.app_name));
            w.str_field(b"procid", text(m.procid));
            w.str_field(b"msgid", text(m.msgid));
            match m.structured_data {
                None => w.str_field(b"structured_data", None),
                Some((a, b)) => {
                    let o = w.key(b"structured_data");
                    write_structured_data(o, &line[a..b]);
                }
            }
            w.str_field(b"message", text(m.message));
            w.end();
        }
    }
    out.push(b'\n');
    Step::Ok
}

/// `{"id":{"param":"value",...},...}` with RFC 5424 escapes (`\" \\ \]`) undone.
fn write_structured_data(out: &mut Vec<u8>, sd: &[u8]) {
    let mut first_el = true;
    let mut first_param = true;
    let mut open = false;
    let mut value = Vec::new();
    out.push(b'{');
    syslog::for_each_sd_param(sd, |e| match e {
        syslog::SdEvent::Element(id) => {
            if open {
                out.push(b'}');
            }
            if !first_el {
                out.push(b',');
            }
            first_el = false;
            first_param = true;
            open = true;
            write_str(out, id);
            out.extend_from_slice(b":{");
        }
        syslog::SdEvent::Param(name, raw) => {
            if !first_param {
                out.push(b',');
            }
            first_param = false;
            write_str(out, name);
            out.push(b':');
            value.clear();
            let mut i = 0;
            while i < raw.len() {
                if raw[i] == b'\\' && matches!(raw.get(i + 1), Some(b'"' | b'\\' | b']')) {
                    i += 1;
                }
                value.push(raw[i]);
                i += 1;
            }
            write_str(out, &value);
        }
    });
    if open {
        out.push(b'}');
    }
    out.push(b'}');
}

/// `Mmm dd hh:mm:ss` has no year and no zone: UTC, and the current year unless that puts the
/// line more than a day in the future (a December line read in January).
fn bsd_civil(line: &[u8], (a, b): Span, now: time::OffsetDateTime) -> Option<Civil> {
    let s = &line[a..b];
    let [mon, day, t] = super::scan::split_ws::<3>(s)?;
    let month = super::scan::month_number(&s[mon.0..mon.1])?;
    let day = num(&s[day.0..day.1]) as u8;
    let (hour, minute, second, frac) = super::scan::parse_time(&s[t.0..t.1])?;
    let mut year = now.year();
    let m = time::Month::try_from(month).ok()?;
    if let Ok(date) = time::Date::from_calendar_date(year, m, day) {
        if date > now.date() + time::Duration::days(1) {
            year -= 1;
        }
    }
    Some(Civil { year, month, day, hour, minute, second, frac: frac.map(|(x, y)| (x + a + t.0, y + a + t.0)), offset_minutes: 0 })
}

/// Named groups become string fields (unmatched optional groups are null).
pub(crate) fn regex_fields(input: &[u8], re: &regex::Regex, policy: MismatchPolicy, out: &mut Vec<u8>) -> Step {
    let text = String::from_utf8_lossy(strip_line_end(input));
    let Some(caps) = re.captures(&text) else {
        return mismatch(input, policy, out);
    };
    let mut w = ObjectWriter::begin(out, JsonLayout::Compact);
    for name in re.capture_names().flatten() {
        w.str_field(name.as_bytes(), caps.name(name).map(|m| m.as_str().as_bytes()));
    }
    w.end();
    out.push(b'\n');
    Step::Ok
}

/// The line must be one JSON value; it is re-written compact with one `\n`.
pub(crate) fn json_passthrough(input: &[u8], policy: MismatchPolicy, out: &mut Vec<u8>) -> Step {
    match serde_json::from_slice::<serde_json::Value>(strip_line_end(input)) {
        Ok(v) => {
            super::json::write_value(out, &v, JsonLayout::Compact, 0);
            out.push(b'\n');
            Step::Ok
        }
        Err(_) => mismatch(input, policy, out),
    }
}

pub(crate) fn filter(
    input: &[u8],
    include: &[super::Pattern<regex::bytes::Regex>],
    exclude: &[super::Pattern<regex::bytes::Regex>],
    out: &mut Vec<u8>,
) -> Step {
    let line = strip_line_end(input);
    let included = include.is_empty() || include.iter().any(|r| r.is_match(line));
    if !included || exclude.iter().any(|r| r.is_match(line)) {
        return Step::Drop;
    }
    out.extend_from_slice(input);
    Step::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str, f: NativeFormat) -> Option<String> {
        let mut out = Vec::new();
        let now = time::macros::datetime!(2024-03-01 00:00 UTC);
        match parse(line.as_bytes(), f, MismatchPolicy::Drop, || now, &mut NativeScratch::default(), &mut out) {
            Step::Ok => Some(String::from_utf8(out).unwrap()),
            _ => None,
        }
    }

    #[test]
    fn the_timestamp_cache_gives_what_converting_every_line_gives() {
        let lines = [
            (NativeFormat::ApacheCommon, "h - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 5\n"),
            (NativeFormat::ApacheCommon, "h - - [10/Oct/2000:13:55:36 -0700] \"GET /again HTTP/1.1\" 200 5\n"),
            (NativeFormat::ApacheCommon, "h - - [10/Oct/2000:13:55:36 +0000] \"GET /other-offset HTTP/1.1\" 200 5\n"),
            (NativeFormat::ApacheCommon, "h - - [31/Dec/9999:23:59:59 -2359] \"GET /end HTTP/1.1\" 200 5\n"),
            (NativeFormat::ApacheCommon, "h - - [31/Dec/9999:23:59:59 -2359] \"GET /end-again HTTP/1.1\" 200 5\n"),
            (NativeFormat::ApacheCommon, "h - - [10/Oct/2000:13:55:37 -0700] \"GET /next HTTP/1.1\" 200 5\n"),
            (NativeFormat::Rfc3339Syslog, "2024-05-01T10:00:00.5+02:00 host app[1]: a\n"),
            (NativeFormat::Rfc3339Syslog, "2024-05-01T10:00:00.5+02:00 host app[1]: b\n"),
            (NativeFormat::Rfc3339Syslog, "2024-05-01T10:00:00.25+02:00 host app[1]: other fraction\n"),
            (NativeFormat::Syslog, "Feb 29 12:00:00 host app: leap\n"),
            (NativeFormat::Syslog, "Feb 29 12:00:00 host app: leap again\n"),
        ];
        let now = time::macros::datetime!(2024-03-01 00:00 UTC);
        let mut shared = NativeScratch::default();
        for (f, l) in lines {
            let (mut cached, mut fresh) = (Vec::new(), Vec::new());
            parse(l.as_bytes(), f, MismatchPolicy::Drop, || now, &mut shared, &mut cached);
            parse(l.as_bytes(), f, MismatchPolicy::Drop, || now, &mut NativeScratch::default(), &mut fresh);
            assert_eq!(String::from_utf8(cached).unwrap(), String::from_utf8(fresh).unwrap(), "{l}");
        }
        // the same BSD timestamp read on another day may name another year
        let (mut before, mut after) = (Vec::new(), Vec::new());
        let l = b"Jan  1 00:10:00 host app: new year\n";
        parse(l, NativeFormat::Syslog, MismatchPolicy::Drop, || time::macros::datetime!(2024-12-31 23:30 UTC), &mut shared, &mut before);
        parse(l, NativeFormat::Syslog, MismatchPolicy::Drop, || time::macros::datetime!(2025-01-01 00:30 UTC), &mut shared, &mut after);
        let mut fresh = Vec::new();
        parse(
            l,
            NativeFormat::Syslog,
            MismatchPolicy::Drop,
            || time::macros::datetime!(2025-01-01 00:30 UTC),
            &mut NativeScratch::default(),
            &mut fresh,
        );
        assert_eq!(after, fresh);
        assert_ne!(before, after, "{}", String::from_utf8_lossy(&after));
    }

    #[test]
    fn typed_combined() {
        let l = "::1 - - [10/Oct/2000:13:55:36.25 -0700] \"GET /a \\\"b\\\"\" 200 - \"\" \"ua\"\r\n";
        assert_eq!(
            run(l, NativeFormat::ApacheCombined).unwrap(),
            "{\"host\":\"::1\",\"ident\":null,\"authuser\":null,\"datetime\":\"2000-10-10T20:55:36.25Z\",\"request\":\"GET /a \\\\\\\"b\\\\\\\"\",\"response\":200,\"bytes\":null,\"referer\":\"\",\"agent\":\"ua\"}\n"
        );
    }

    #[test]
    fn typed_syslog_infers_year() {
        assert_eq!(
            run("Dec 31 23:59:59 h p[7]: m\n", NativeFormat::Syslog).unwrap(),
            "{\"timestamp\":\"2023-12-31T23:59:59Z\",\"hostname\":\"h\",\"program\":\"p\",\"processid\":7,\"message\":\"m\"}\n"
        );
        assert!(run("Feb 29 01:00:00 h p: m\n", NativeFormat::Syslog).unwrap().contains("2024-02-29T01:00:00Z"));
        assert!(run("2024-02-29T01:00:00.5+01:30 h p: m\n", NativeFormat::Rfc3339Syslog).unwrap().contains("2024-02-28T23:30:00.5Z"));
    }

    #[test]
    fn typed_error_and_impossible_dates() {
        let l = "[Sat Feb 31 14:32:52 2024] [core:error] [pid 1:tid 2] [client ::1:5] m\n";
        assert_eq!(
            run(l, NativeFormat::ApacheError).unwrap(),
            "{\"timestamp\":\"Sat Feb 31 14:32:52 2024\",\"module\":\"core\",\"severity\":\"error\",\"processid\":1,\"threadid\":2,\"client\":\"::1:5\",\"message\":\"m\"}\n"
        );
    }

    #[test]
    fn timestamps_whose_utc_time_leaves_the_calendar_are_kept_as_written() {
        // these panicked in the conversion to UTC, killing the agent at every restart
        let l = "9999-12-31T23:59:59-23:59 h p: m\n";
        assert!(run(l, NativeFormat::Rfc3339Syslog).unwrap().contains("\"timestamp\":\"9999-12-31T23:59:59-23:59\""));
        let l = "<13>1 9999-12-31T23:59:59.999-23:59 h a - - - m\n";
        assert!(run(l, NativeFormat::Rfc5424).unwrap().contains("\"timestamp\":\"9999-12-31T23:59:59.999-23:59\""));
        let l = "<13>1 0000-01-01T00:00:00+23:59 h a - - - m\n";
        assert!(run(l, NativeFormat::Rfc5424).unwrap().contains("\"timestamp\":\"0000-01-01T00:00:00+23:59\""));
        for f in [NativeFormat::ApacheCommon, NativeFormat::ApacheCombined] {
            let l = "1.2.3.4 - - [31/Dec/9999:23:59:59 -2359] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"\n";
            assert!(run(l, f).unwrap().contains("\"datetime\":\"31/Dec/9999:23:59:59 -2359\""), "{f:?}");
        }
    }

    #[test]
    fn rfc5424_structured() {
        let l = r#"<165>1 2003-10-11T22:14:15.003Z host app - ID47 [a@1 x="1\"2" y="\]"][b] msg"#;
        assert_eq!(
            run(l, NativeFormat::Rfc5424).unwrap(),
            "{\"facility\":20,\"severity\":5,\"version\":1,\"timestamp\":\"2003-10-11T22:14:15.003Z\",\"hostname\":\"host\",\"appname\":\"app\",\"procid\":null,\"msgid\":\"ID47\",\"structured_data\":{\"a@1\":{\"x\":\"1\\\"2\",\"y\":\"]\"},\"b\":{}},\"message\":\"msg\"}\n"
        );
    }

    #[test]
    fn regex_json_filter() {
        let mut out = Vec::new();
        let re = regex::Regex::new(r"^(?<level>\w+): (?<msg>.*)$").unwrap();
        assert!(matches!(regex_fields(b"WARN: disk\n", &re, MismatchPolicy::Drop, &mut out), Step::Ok));
        assert_eq!(out, b"{\"level\":\"WARN\",\"msg\":\"disk\"}\n");
        out.clear();
        assert!(matches!(regex_fields(b"nope\n", &re, MismatchPolicy::Raw, &mut out), Step::Ok));
        assert_eq!(out, b"nope\n");
        out.clear();
        assert!(matches!(json_passthrough(b"{ \"a\" : [1, 2] }\r\n", MismatchPolicy::Drop, &mut out), Step::Ok));
        assert_eq!(out, b"{\"a\":[1,2]}\n");
        assert!(matches!(json_passthrough(b"{nope\n", MismatchPolicy::Drop, &mut Vec::new()), Step::Drop));
        let inc = [super::super::Pattern(regex::bytes::Regex::new("ERROR").unwrap())];
        let exc = [super::super::Pattern(regex::bytes::Regex::new("healthcheck").unwrap())];
        assert!(matches!(filter(b"ERROR x\n", &inc, &exc, &mut Vec::new()), Step::Ok));
        assert!(matches!(filter(b"ERROR healthcheck\n", &inc, &exc, &mut Vec::new()), Step::Drop));
        assert!(matches!(filter(b"INFO\n", &inc, &exc, &mut Vec::new()), Step::Drop));
    }
}
