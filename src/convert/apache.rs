//! Hand-written parsers for the Apache access (common, combined) and error log formats.
//!
//! With [`Dialect::KINESIS_AGENT`] a line is accepted exactly when the Kinesis Agent's
//! `COMMON_APACHE_LOG.*`, `COMBINED_APACHE_LOG.*` or `APACHE_ERROR_LOG` pattern fully matches it,
//! and each returned span is the text its capture group would hold (the differential test in
//! `tests/differential.rs` holds this against the translated patterns). The native dialect also
//! takes IPv6 hosts, `\"` inside quoted fields and empty quoted fields.
//!
//! Input is the record without its trailing `\n`. Nothing is allocated.

use super::scan::*;

/// What the parser accepts beyond the Kinesis Agent's patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// `::1`, `2001:db8::1` as host or client.
    pub ipv6_hosts: bool,
    /// `\"` does not end a quoted field, and `""` is a legal empty field.
    pub lenient_quotes: bool,
}

impl Dialect {
    pub const KINESIS_AGENT: Dialect = Dialect { ipv6_hosts: false, lenient_quotes: false };
    pub const NATIVE: Dialect = Dialect { ipv6_hosts: true, lenient_quotes: true };
}

pub const COMMON_FIELDS: [&str; 7] = ["host", "ident", "authuser", "datetime", "request", "response", "bytes"];
pub const COMBINED_FIELDS: [&str; 9] = ["host", "ident", "authuser", "datetime", "request", "response", "bytes", "referer", "agent"];
pub const ERROR_FIELDS: [&str; 7] = ["timestamp", "module", "severity", "processid", "threadid", "client", "message"];

/// Up to nine captured fields; `None` is a group that did not participate.
pub type Fields = [Option<Span>; 9];

fn host_ok(s: &[u8], d: Dialect) -> bool {
    is_ip_or_host(s) || (d.ipv6_hosts && is_ipv6(s))
}

fn is_ipv6(s: &[u8]) -> bool {
    s.contains(&b':') && std::str::from_utf8(s).is_ok_and(|t| t.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Position of the first `b` in `s` at or after `from`.
#[inline]
fn find(s: &[u8], from: usize, b: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let rest = s.get(from..)?;
    // most fields are short: eight bytes at a time first (the lowest flagged byte is always a
    // true match), a vectorised search for what is still far after 32 bytes
    let pattern = ONES * u64::from(b);
    let mut i = 0;
    while let Some(word) = rest.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes")) ^ pattern;
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(from + i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
        if i == 32 {
            return memchr::memchr(b, &rest[i..]).map(|p| from + i + p);
        }
    }
    rest[i..].iter().position(|&x| x == b).map(|p| from + i + p)
}

/// End of a quoted field that starts at `from` (just after the opening quote).
fn quoted_end(s: &[u8], from: usize, d: Dialect) -> Option<usize> {
    if !d.lenient_quotes {
        let end = find(s, from, b'"')?;
        return (end > from).then_some(end);
    }
    let mut i = from;
    loop {
        let q = find(s, i, b'"')?;
        let backslashes = s[from..q].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(q);
        }
        i = q + 1;
    }
}

#[inline]
fn expect(s: &[u8], at: usize, lit: &[u8]) -> Option<usize> {
    s.get(at..at + lit.len()).filter(|x| *x == lit).map(|_| at + lit.len())
}

/// Day, month, year span, clock, offset span of an HTTPDATE.
pub type HttpDate = (u8, u8, Span, Clock, Span);

pub fn parse_httpdate(s: &[u8]) -> Option<HttpDate> {
    // a date is a few dozen bytes: a plain scan beats a vectorised search's set-up
    let find = |from: usize, b: u8| s.get(from..)?.iter().position(|&x| x == b).map(|p| p + from);
    let a = find(0, b'/')?;
    if !is_monthday(&s[..a]) {
        return None;
    }
    let b = find(a + 1, b'/')?;
    let month = month_number(&s[a + 1..b])?;
    let c = find(b + 1, b':')?;
    if !is_year(&s[b + 1..c]) {
        return None;
    }
    let ws = s[c + 1..].iter().position(|&x| is_java_space(x))? + c + 1;
    let mut time = parse_time(&s[c + 1..ws])?;
    if let Some((f0, f1)) = time.3 {
        time.3 = Some((f0 + c + 1, f1 + c + 1));
    }
    if !is_int(&s[ws + 1..]) {
        return None;
    }
    let day = s[..a].iter().fold(0u8, |acc, d| acc * 10 + (d - b'0'));
    Some((day, month, (b + 1, c), time, (ws + 1, s.len())))
}

/// Parses a common (`combined == false`) or combined access-log line.
pub fn parse_access(s: &[u8], combined: bool, d: Dialect) -> Option<Fields> {
    parse_access_dated(s, combined, d).map(|(f, _)| f)
}

/// [`parse_access`], with the parts of the line's date (relative to its field `f[3]`): the
/// check that the date is one already took it apart.
pub fn parse_access_dated(s: &[u8], combined: bool, d: Dialect) -> Option<(Fields, HttpDate)> {
    let mut f: Fields = [None; 9];
    let sp = find(s, 0, b' ')?;
    if !host_ok(&s[..sp], d) {
        return None;
    }
    f[0] = Some((0, sp));
    let mut i = sp + 1;
    for slot in &mut f[1..3] {
        let sp = find(s, i, b' ')?;
        if !is_user(&s[i..sp]) {
            return None;
        }
        *slot = Some((i, sp));
        i = sp + 1;
    }
    i = expect(s, i, b"[")?;
    let close = find(s, i, b']')?;
    let date = parse_httpdate(&s[i..close])?;
    f[3] = Some((i, close));
    i = expect(s, close, b"] \"")?;
    let q = quoted_end(s, i, d)?;
    f[4] = Some((i, q));
    i = expect(s, q, b"\" ")?;
    let sp = find(s, i, b' ')?;
    let resp = &s[i..sp];
    if !(is_int(resp) || resp == b"-") {
        return None;
    }
    f[5] = Some((i, sp));
    i = sp + 1;
    if !combined {
        let n = int_prefix_len(&s[i..]);
        let n = if n > 0 {
            n
        } else if s.get(i) == Some(&b'-') {
            1
        } else {
            return None;
        };
        f[6] = Some((i, i + n));
        return is_any_data(&s[i + n..]).then_some((f, date));
    }
    let sp = find(s, i, b' ')?;
    let bytes = &s[i..sp];
    if !(is_int(bytes) || bytes == b"-") {
        return None;
    }
    f[6] = Some((i, sp));
    i = expect(s, sp, b" \"")?;
    let q = quoted_end(s, i, d)?;
    f[7] = Some((i, q));
    i = expect(s, q, b"\" \"")?;
    let q = quoted_end(s, i, d)?;
    f[8] = Some((i, q));
    is_any_data(&s[q + 1..]).then_some((f, date))
}

/// APACHEERRORLOGTIMESTAMP: `DAY\s+MONTH\s+MONTHDAY\s+TIME\s+YEAR`.
pub fn parse_error_timestamp(s: &[u8]) -> Option<(u8, u8, Clock, Span)> {
    let [day, mon, md, time, year] = split_ws::<5>(s)?;
    if !is_weekday(&s[day.0..day.1]) || !is_monthday(&s[md.0..md.1]) || !is_year(&s[year.0..year.1]) {
        return None;
    }
    let month = month_number(&s[mon.0..mon.1])?;
    let mut t = parse_time(&s[time.0..time.1])?;
    if let Some((a, b)) = t.3 {
        t.3 = Some((a + time.0, b + time.0));
    }
    let mday = s[md.0..md.1].iter().fold(0u8, |acc, d| acc * 10 + (d - b'0'));
    Some((mday, month, t, year))
}

/// Parses an Apache error-log line.
pub fn parse_error(s: &[u8], d: Dialect) -> Option<Fields> {
    let mut f: Fields = [None; 9];
    let mut i = expect(s, 0, b"[")?;
    let close = find(s, i, b']')?;
    parse_error_timestamp(&s[i..close])?;
    f[0] = Some((i, close));
    i = expect(s, close, b"] [")?;
    let close = find(s, i, b']')?;
    let ms = &s[i..close];
    match memchr::memchr(b':', ms) {
        Some(c) if is_word_run(&ms[..c]) && is_word_run(&ms[c + 1..]) => {
            f[1] = Some((i, i + c));
            f[2] = Some((i + c + 1, close));
        }
        None if is_word_run(ms) => f[2] = Some((i, close)),
        _ => return None,
    }
    i = expect(s, close, b"] [pid ")?;
    let n = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    f[3] = Some((i, i + n));
    i += n;
    if let Some(j) = expect(s, i, b":tid ") {
        let n = s[j..].iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        f[4] = Some((j, j + n));
        i = j + n;
    }
    i = expect(s, i, b"] [client ")?;
    let close = find(s, i, b']')?;
    let c = &s[i..close];
    let host_ok = match memchr::memrchr(b':', c) {
        _ if d.ipv6_hosts && is_ipv6(c) => true,
        Some(p) if d.ipv6_hosts && c.first() == Some(&b'[') => c[p - 1] == b']' && is_ipv6(&c[1..p - 1]) && is_posint(&c[p + 1..]),
        Some(p) => host_ok(&c[..p], d) && is_posint(&c[p + 1..]),
        None => host_ok(c, d),
    };
    if !host_ok {
        return None;
    }
    f[5] = Some((i, close));
    i = expect(s, close, b"] ")?;
    f[6] = Some((i, s.len()));
    is_any_data(&s[i..]).then_some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn find_agrees_with_a_plain_scan(s in prop::collection::vec(prop_oneof![Just(b' '), Just(b'"'), any::<u8>()], 0..90), from in 0usize..95, b in prop_oneof![Just(b' '), Just(b'"'), any::<u8>()]) {
            let expected = s.get(from..).and_then(|r| r.iter().position(|&x| x == b)).map(|p| p + from);
            prop_assert_eq!(find(&s, from, b), expected);
        }
    }

    fn texts(s: &str, f: Option<Fields>, n: usize) -> Option<Vec<Option<&str>>> {
        f.map(|f| f[..n].iter().map(|x| x.map(|(a, b)| &s[a..b])).collect())
    }

    #[test]
    fn combined_line_fields() {
        let l = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://x/" "Mozilla/4.08""#;
        let v = texts(l, parse_access(l.as_bytes(), true, Dialect::KINESIS_AGENT), 9).unwrap();
        assert_eq!(
            v,
            [
                Some("127.0.0.1"),
                Some("-"),
                Some("frank"),
                Some("10/Oct/2000:13:55:36 -0700"),
                Some("GET /a.gif HTTP/1.0"),
                Some("200"),
                Some("2326"),
                Some("http://x/"),
                Some("Mozilla/4.08")
            ]
        );
    }

    #[test]
    fn common_takes_trailing_text_and_greedy_bytes() {
        let l = r#"h - - [1/Jan/2020:0:00:00 +0000] "GET /" 200 12abc trailing"#;
        let v = texts(l, parse_access(l.as_bytes(), false, Dialect::KINESIS_AGENT), 7).unwrap();
        assert_eq!(v[6], Some("12"));
        let l = r#"h - - [1/Jan/2020:0:00:00 +0000] "GET /" 200 -x"#;
        assert_eq!(texts(l, parse_access(l.as_bytes(), false, Dialect::KINESIS_AGENT), 7).unwrap()[6], Some("-"));
    }

    #[test]
    fn agent_quirks_drop_lines() {
        let base = r#"h - - [1/Jan/2020:0:00:00 +0000] "GET /" 200 1 "r" "a""#;
        assert!(parse_access(base.as_bytes(), true, Dialect::KINESIS_AGENT).is_some());
        for bad in [
            r#"::1 - - [1/Jan/2020:0:00:00 +0000] "GET /" 200 1 "r" "a""#,
            r#"h - - [1/Jan/2020:0:00:00 +0000] "GET /" 200 1 "r" """#,
            r#"h - a@b [1/Jan/2020:0:00:00 +0000] "GET /" 200 1 "r" "a""#,
            r#"h - - [1/Jan/2020:0:00:00 +0000] "GET /\"x" 200 1 "r" "a""#,
            "h - - [1/Jan/2020:0:00:00 +0000] \"GET /\" 200 1 \"r\" \"a\"\r",
        ] {
            assert!(parse_access(bad.as_bytes(), true, Dialect::KINESIS_AGENT).is_none(), "{bad}");
        }
        let v6 = r#"::1 - - [1/Jan/2020:0:00:00 +0000] "GET /\"x" 200 1 "" "a""#;
        assert!(parse_access(v6.as_bytes(), true, Dialect::NATIVE).is_some());
    }

    #[test]
    fn error_log_fields() {
        let l = "[Wed Oct 11 14:32:52.123 2000] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187:80] File does not exist";
        let v = texts(l, parse_error(l.as_bytes(), Dialect::KINESIS_AGENT), 7).unwrap();
        assert_eq!(
            v,
            [
                Some("Wed Oct 11 14:32:52.123 2000"),
                Some("core"),
                Some("error"),
                Some("35708"),
                Some("4328636416"),
                Some("72.15.99.187:80"),
                Some("File does not exist")
            ]
        );
        let l = "[Wed Oct 11 14:32:52 2000] [error] [pid 1] [client h] ";
        let v = texts(l, parse_error(l.as_bytes(), Dialect::KINESIS_AGENT), 7).unwrap();
        assert_eq!(v[1], None);
        assert_eq!(v[4], None);
        assert_eq!(v[6], Some(""));
        let no_client = "[Wed Oct 11 14:32:52 2000] [core:error] [pid 1] AH00111: x";
        assert!(parse_error(no_client.as_bytes(), Dialect::KINESIS_AGENT).is_none());
    }
}
