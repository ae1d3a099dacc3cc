//! Byte-level recognisers for the token languages of the Kinesis Agent's built-in patterns.
//!
//! Each function answers whether a whole byte slice belongs to one sub-pattern of
//! `PatternConstants` (with Java's ASCII `\w \d \s`), so the parsers can delimit a token by its
//! terminator and then test it, instead of running a regex. The languages are exact; none of these
//! functions allocates.

/// A byte range `start..end` inside the parsed line.
pub type Span = (usize, usize);

/// Hour, minute, second and the span of the fractional digits, if any.
pub type Clock = (u8, u8, u8, Option<Span>);

/// Java's `\s` without flags: `[ \t\n\x0B\f\r]`.
#[inline]
pub fn is_java_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// `\w` without flags.
#[inline]
pub fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// USER: `[a-zA-Z0-9._-]+`.
pub fn is_user(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// WORD: `\w+`.
pub fn is_word_run(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_word(b))
}

/// PROG character: `[\w._/%-]`.
#[inline]
pub fn is_prog(b: u8) -> bool {
    is_word(b) || matches!(b, b'.' | b'_' | b'/' | b'%' | b'-')
}

/// IPORHOST: HOSTNAME `[\w-]+(\.[\w-]+)*\.?` or IP `[\d.]+`.
pub fn is_ip_or_host(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    if s.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
        return true;
    }
    if s[0] == b'.' || !s.iter().all(|&b| is_word(b) || b == b'-' || b == b'.') {
        return false;
    }
    !s.windows(2).any(|w| w == b"..")
}

/// INT: `[+-]?[0-9]+`.
pub fn is_int(s: &[u8]) -> bool {
    let d = match s.first() {
        Some(b'+' | b'-') => &s[1..],
        _ => s,
    };
    is_digits(d)
}

/// NONNEGINT: `[0-9]+`.
pub fn is_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

/// POSINT: `[1-9][0-9]*`.
pub fn is_posint(s: &[u8]) -> bool {
    is_digits(s) && s[0] != b'0'
}

/// Length of the longest prefix of `s` in INT.
pub fn int_prefix_len(s: &[u8]) -> usize {
    let sign = usize::from(matches!(s.first(), Some(b'+' | b'-')));
    let digits = s[sign..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        0
    } else {
        sign + digits
    }
}

/// MONTHDAY: `0[1-9]|[12][0-9]|3[01]|[1-9]`.
pub fn is_monthday(s: &[u8]) -> bool {
    matches!(s, [b'1'..=b'9'] | [b'0', b'1'..=b'9'] | [b'1' | b'2', b'0'..=b'9'] | [b'3', b'0' | b'1'])
}

const MONTHS: [&[u8]; 23] = [
    b"Jan",
    b"January",
    b"Feb",
    b"February",
    b"Mar",
    b"March",
    b"Apr",
    b"April",
    b"May",
    b"Jun",
    b"June",
    b"Jul",
    b"July",
    b"Aug",
    b"August",
    b"Sep",
    b"September",
    b"Oct",
    b"October",
    b"Nov",
    b"November",
    b"Dec",
    b"December",
];

/// Month number (1-12) of a MONTH token, English abbreviation or full name.
pub fn month_number(s: &[u8]) -> Option<u8> {
    if !(3..=9).contains(&s.len()) {
        return None;
    }
    MONTHS.iter().position(|m| *m == s).map(|i| match i {
        0..=7 => (i / 2 + 1) as u8,
        8 => 5,
        _ => ((i - 9) / 2 + 6) as u8,
    })
}

const DAYS: [&[u8]; 14] = [
    b"Mon",
    b"Monday",
    b"Tue",
    b"Tuesday",
    b"Wed",
    b"Wednesday",
    b"Thu",
    b"Thursday",
    b"Fri",
    b"Friday",
    b"Sat",
    b"Saturday",
    b"Sun",
    b"Sunday",
];

/// DAY: `Mon(day)?|Tue(sday)?|...`.
pub fn is_weekday(s: &[u8]) -> bool {
    DAYS.contains(&s)
}

/// YEAR: `[1-9]\d*`.
pub fn is_year(s: &[u8]) -> bool {
    is_posint(s)
}

/// TIME: `HOUR:MINUTE:SECOND` with HOUR `2[0-3]|[01]?[0-9]`, MINUTE `[0-5][0-9]` and SECOND
/// `([0-5]?[0-9]|60)([:.,][0-9]+)?`. Returns the clock fields and the fraction's span when it is one.
pub fn parse_time(s: &[u8]) -> Option<Clock> {
    let c1 = memchr::memchr(b':', s)?;
    let hour = match &s[..c1] {
        [d @ b'0'..=b'9'] => d - b'0',
        [a @ (b'0' | b'1'), b @ b'0'..=b'9'] => (a - b'0') * 10 + (b - b'0'),
        [b'2', b @ b'0'..=b'3'] => 20 + (b - b'0'),
        _ => return None,
    };
    let rest = &s[c1 + 1..];
    let minute = match rest {
        [a @ b'0'..=b'5', b @ b'0'..=b'9', b':', ..] => (a - b'0') * 10 + (b - b'0'),
        _ => return None,
    };
    let sec_start = c1 + 4;
    let sec = &s[sec_start..];
    let ndig = sec.iter().take_while(|b| b.is_ascii_digit()).count();
    let second = match &sec[..ndig] {
        [d] => d - b'0',
        [a @ b'0'..=b'5', b] => (a - b'0') * 10 + (b - b'0'),
        b"60" => 60,
        _ => return None,
    };
    let frac = &sec[ndig..];
    if frac.is_empty() {
        return Some((hour, minute, second, None));
    }
    if matches!(frac[0], b':' | b'.' | b',') && is_digits(&frac[1..]) {
        let start = sec_start + ndig + 1;
        return Some((hour, minute, second, Some((start, s.len()))));
    }
    None
}

/// Splits `s` on runs of Java whitespace into at most `N` tokens; `None` if `s` has leading or
/// trailing whitespace or a different number of tokens.
pub fn split_ws<const N: usize>(s: &[u8]) -> Option<[Span; N]> {
    let mut out = [(0, 0); N];
    let mut i = 0;
    for (k, slot) in out.iter_mut().enumerate() {
        if k > 0 {
            let ws = s[i..].iter().take_while(|&&b| is_java_space(b)).count();
            if ws == 0 {
                return None;
            }
            i += ws;
        }
        let len = s[i..].iter().take_while(|&&b| !is_java_space(b)).count();
        if len == 0 {
            return None;
        }
        *slot = (i, i + len);
        i += len;
    }
    (i == s.len()).then_some(out)
}

/// Java's `.*`: true when `s` holds none of Java's line terminators (`\n \r U+0085 U+2028 U+2029`).
pub fn is_any_data(s: &[u8]) -> bool {
    let mut rest = s;
    while let Some(p) = memchr::memchr3(b'\n', b'\r', 0xE2, rest) {
        match rest[p] {
            0xE2 if rest.get(p + 1) == Some(&0x80) && matches!(rest.get(p + 2), Some(0xA8 | 0xA9)) => return false,
            0xE2 => rest = &rest[p + 1..],
            _ => return false,
        }
    }
    let mut rest = s;
    while let Some(p) = memchr::memchr(0xC2, rest) {
        if rest.get(p + 1) == Some(&0x85) {
            return false;
        }
        rest = &rest[p + 1..];
    }
    true
}

/// Java's `.` on one character at the start of `s`: the byte length it consumes (a maximal
/// invalid UTF-8 subpart counts as one U+FFFD character), or `None` at a line terminator or end.
pub fn java_dot_len(s: &[u8]) -> Option<usize> {
    let chunk = s.utf8_chunks().next()?;
    let len = match chunk.valid().chars().next() {
        Some(c) => {
            if matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}') {
                return None;
            }
            c.len_utf8()
        }
        None => chunk.invalid().len(),
    };
    Some(len)
}

/// RFC 3339 timestamp as the agent's pattern states it:
/// `\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[-+]\d{2}:\d{2})`.
pub fn is_rfc3339_loose(s: &[u8]) -> bool {
    let d = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
    if s.len() < 20 || !d(&s[0..4]) || s[4] != b'-' || !d(&s[5..7]) || s[7] != b'-' || !d(&s[8..10]) || s[10] != b'T' {
        return false;
    }
    if !d(&s[11..13]) || s[13] != b':' || !d(&s[14..16]) || s[16] != b':' || !d(&s[17..19]) {
        return false;
    }
    let mut rest = &s[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &rest[1 + n..];
    }
    match rest {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_language() {
        for ok in ["a", "a.b", "a.b.", "a-b_c.d", "1.2.3.4", "..1", "1..2", "_x"] {
            assert!(is_ip_or_host(ok.as_bytes()), "{ok}");
        }
        for bad in ["", ".a", "a..b", "::1", "a b", "a@b", "é"] {
            assert!(!is_ip_or_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn time_language() {
        assert_eq!(parse_time(b"04:22:00"), Some((4, 22, 0, None)));
        assert_eq!(parse_time(b"4:22:60"), Some((4, 22, 60, None)));
        assert_eq!(parse_time(b"23:59:59.123"), Some((23, 59, 59, Some((9, 12)))));
        assert_eq!(parse_time(b"23:59:5,1"), Some((23, 59, 5, Some((8, 9)))));
        for bad in ["24:00:00", "1:2:03", "12:60:00", "12:00:61", "12:00:00.", "12:00:00x", "012:00:00", "12:00:000"] {
            assert_eq!(parse_time(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn month_and_day_languages() {
        assert_eq!(month_number(b"Jan"), Some(1));
        assert_eq!(month_number(b"May"), Some(5));
        assert_eq!(month_number(b"June"), Some(6));
        assert_eq!(month_number(b"December"), Some(12));
        assert_eq!(month_number(b"jan"), None);
        assert_eq!(month_number(b"Janu"), None);
        assert!(
            is_monthday(b"7")
                && is_monthday(b"07")
                && is_monthday(b"31")
                && !is_monthday(b"32")
                && !is_monthday(b"0")
                && !is_monthday(b"00")
        );
        assert!(is_weekday(b"Wednesday") && !is_weekday(b"Wedn"));
    }

    #[test]
    fn any_data_rejects_java_line_terminators() {
        assert!(is_any_data("abc é \u{2027}".as_bytes()));
        assert!(is_any_data(b"\xe2\x80"));
        for bad in ["a\r", "a\n", "a\u{85}", "a\u{2028}b", "\u{2029}"] {
            assert!(!is_any_data(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn whitespace_split() {
        assert_eq!(split_ws::<2>(b"a \t b"), Some([(0, 1), (4, 5)]));
        assert_eq!(split_ws::<2>(b" a b"), None);
        assert_eq!(split_ws::<2>(b"a b "), None);
        assert_eq!(split_ws::<2>(b"a b c"), None);
    }
}
