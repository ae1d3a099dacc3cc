//! Hand-written parsers for BSD syslog file lines (`SYSLOG`, `RFC3339SYSLOG`) and RFC 5424.
//!
//! `parse_bsd` accepts a line exactly when the Kinesis Agent's `SYSLOG_BASE` or
//! `RFC3339_SYSLOG_BASE` pattern fully matches it, returning the five capture spans
//! (timestamp, hostname, program, processid, message); `[0]` as a pid, a missing `prog: ` part or a
//! CR drop the line, as they do there. The optional `<PRI>` is matched with the agent's odd
//! `<\d+.\d+>` rule and discarded. `parse_rfc5424` is logferry's own (native format only).
//! Input is the record without its trailing `\n`. Nothing is allocated.

use super::scan::*;

pub const FIELDS: [&str; 5] = ["timestamp", "hostname", "program", "processid", "message"];

/// Which timestamp leads the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BsdTimestamp {
    /// `Mmm dd hh:mm:ss` (SYSLOGTIMESTAMP).
    Traditional,
    /// RFC 3339 with a mandatory offset colon.
    Rfc3339,
}

/// Capture spans: timestamp, hostname, program, processid (absent without `[pid]`), message.
pub type BsdFields = [Option<Span>; 5];

/// End of SYSLOGTIMESTAMP `MONTH\s+MONTHDAY\s+TIME` at the start of `s`, which must be followed by
/// a space.
fn traditional_timestamp_end(s: &[u8]) -> Option<usize> {
    let m = s.iter().position(|&b| is_java_space(b))?;
    month_number(&s[..m])?;
    let mut i = m + s[m..].iter().take_while(|&&b| is_java_space(b)).count();
    let d = s[i..].iter().position(|&b| is_java_space(b))? + i;
    if !is_monthday(&s[i..d]) {
        return None;
    }
    i = d + s[d..].iter().take_while(|&&b| is_java_space(b)).count();
    let t = memchr::memchr(b' ', &s[i..])? + i;
    parse_time(&s[i..t])?;
    Some(t)
}

/// `<` NONNEGINT `.` NONNEGINT `> ` starting at `s[0] == b'<'`; returns the length consumed.
fn facility_len(s: &[u8]) -> Option<usize> {
    let d1 = s[1..].iter().take_while(|b| b.is_ascii_digit()).count();
    if d1 == 0 {
        return None;
    }
    let k = 1 + d1;
    if d1 >= 3 && s[k..].starts_with(b"> ") {
        return Some(k + 2);
    }
    let x = java_dot_len(&s[k..])?;
    let j = k + x;
    let d2 = s[j..].iter().take_while(|b| b.is_ascii_digit()).count();
    if d2 == 0 || !s[j + d2..].starts_with(b"> ") {
        return None;
    }
    Some(j + d2 + 2)
}

pub fn parse_bsd(s: &[u8], ts: BsdTimestamp) -> Option<BsdFields> {
    let t_end = match ts {
        BsdTimestamp::Traditional => traditional_timestamp_end(s)?,
        BsdTimestamp::Rfc3339 => {
            let e = memchr::memchr(b' ', s)?;
            is_rfc3339_loose(&s[..e]).then_some(e)?
        }
    };
    let mut f: BsdFields = [None; 5];
    f[0] = Some((0, t_end));
    let mut i = t_end + 1;
    if s.get(i) == Some(&b'<') {
        i += facility_len(&s[i..])?;
    }
    let sp = memchr::memchr(b' ', &s[i..])? + i;
    if !is_user(&s[i..sp]) {
        return None;
    }
    f[1] = Some((i, sp));
    i = sp + 1;
    let p = s[i..].iter().take_while(|&&b| is_prog(b)).count();
    if p == 0 {
        return None;
    }
    f[2] = Some((i, i + p));
    i += p;
    if s.get(i) == Some(&b'[') {
        let close = memchr::memchr(b']', &s[i..])? + i;
        if !is_posint(&s[i + 1..close]) {
            return None;
        }
        f[3] = Some((i + 1, close));
        i = close + 1;
    }
    if !s[i..].starts_with(b": ") {
        return None;
    }
    i += 2;
    f[4] = Some((i, s.len()));
    is_any_data(&s[i..]).then_some(f)
}

/// One RFC 5424 message: header spans (`None` for the nil value `-`), structured data span and
/// message span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc5424 {
    pub priority: u8,
    pub version: Span,
    pub timestamp: Option<Span>,
    pub hostname: Option<Span>,
    pub app_name: Option<Span>,
    pub procid: Option<Span>,
    pub msgid: Option<Span>,
    /// The whole STRUCTURED-DATA part, `None` for `-`.
    pub structured_data: Option<Span>,
    pub message: Option<Span>,
}

/// Parses `<PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]`.
pub fn parse_rfc5424(s: &[u8]) -> Option<Rfc5424> {
    if s.first() != Some(&b'<') {
        return None;
    }
    let close = memchr::memchr(b'>', s)?;
    let pri = &s[1..close];
    if pri.is_empty() || pri.len() > 3 || !is_digits(pri) {
        return None;
    }
    let priority: u16 = std::str::from_utf8(pri).ok()?.parse().ok()?;
    if priority > 191 {
        return None;
    }
    let mut i = close + 1;
    let token = |i: &mut usize| -> Option<Span> {
        // past the end after the last token: nothing more
        let rest = s.get(*i..)?;
        let e = memchr::memchr(b' ', rest).map_or(s.len(), |p| p + *i);
        let span = (*i, e);
        *i = (e + 1).min(s.len() + 1);
        (e > span.0).then_some(span)
    };
    let version = token(&mut i)?;
    if !is_posint(&s[version.0..version.1]) {
        return None;
    }
    let nil = |sp: Span| (&s[sp.0..sp.1] != b"-").then_some(sp);
    let timestamp = nil(token(&mut i)?);
    if let Some((a, b)) = timestamp {
        if !is_rfc3339_loose(&s[a..b]) {
            return None;
        }
    }
    let hostname = nil(token(&mut i)?);
    let app_name = nil(token(&mut i)?);
    let procid = nil(token(&mut i)?);
    let msgid = nil(token(&mut i)?);
    if i > s.len() {
        return None;
    }
    let (structured_data, after) = if s[i..].starts_with(b"-") {
        (None, i + 1)
    } else {
        let end = sd_end(s, i)?;
        (Some((i, end)), end)
    };
    let message = match s.get(after) {
        None => None,
        Some(b' ') => {
            let mut m = after + 1;
            if s[m..].starts_with(b"\xEF\xBB\xBF") {
                m += 3;
            }
            Some((m, s.len()))
        }
        Some(_) => return None,
    };
    Some(Rfc5424 { priority: priority as u8, version, timestamp, hostname, app_name, procid, msgid, structured_data, message })
}

/// End (exclusive) of one or more `[id param="value"...]` elements starting at `i`.
fn sd_end(s: &[u8], mut i: usize) -> Option<usize> {
    if s.get(i) != Some(&b'[') {
        return None;
    }
    while s.get(i) == Some(&b'[') {
        i += 1;
        let mut in_value = false;
        loop {
            match *s.get(i)? {
                b'\\' if in_value => i += 2,
                b'"' => {
                    in_value = !in_value;
                    i += 1
                }
                b']' if !in_value => {
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
    }
    Some(i)
}

/// One event of a structured-data walk.
pub enum SdEvent<'a> {
    /// An element starts: its SD-ID.
    Element(&'a [u8]),
    /// A parameter of the current element; the value keeps its `\"`, `\\`, `\]` escapes.
    Param(&'a [u8], &'a [u8]),
}

/// Walks a structured-data span element by element, parameter by parameter.
pub fn for_each_sd_param<'a>(sd: &'a [u8], mut visit: impl FnMut(SdEvent<'a>)) {
    let mut i = 0;
    while sd.get(i) == Some(&b'[') {
        i += 1;
        let id_end = sd[i..].iter().position(|&b| b == b' ' || b == b']').map_or(sd.len(), |p| p + i);
        visit(SdEvent::Element(&sd[i..id_end]));
        i = id_end;
        while sd.get(i) == Some(&b' ') {
            i += 1;
            let eq = match memchr::memchr(b'=', &sd[i..]) {
                Some(p) => p + i,
                None => return,
            };
            let name = &sd[i..eq];
            let vstart = eq + 2;
            let mut j = vstart;
            while j < sd.len() && sd[j] != b'"' {
                j += if sd[j] == b'\\' { 2 } else { 1 };
            }
            visit(SdEvent::Param(name, &sd[vstart.min(sd.len())..j.min(sd.len())]));
            i = j + 1;
        }
        if sd.get(i) == Some(&b']') {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_ending_after_the_version_is_no_match_not_a_panic() {
        // found by `converters_never_panic_on_arbitrary_bytes`
        assert!(parse_rfc5424(b"<13>99").is_none());
        assert!(parse_rfc5424(b"<13>1 ").is_none());
    }

    fn texts(s: &str, f: Option<BsdFields>) -> Option<Vec<Option<&str>>> {
        f.map(|f| f.iter().map(|x| x.map(|(a, b)| &s[a..b])).collect())
    }

    #[test]
    fn bsd_fields_and_spacing() {
        let l = "Mar  7 04:22:00 host sshd[123]: Accepted key";
        assert_eq!(
            texts(l, parse_bsd(l.as_bytes(), BsdTimestamp::Traditional)).unwrap(),
            [Some("Mar  7 04:22:00"), Some("host"), Some("sshd"), Some("123"), Some("Accepted key")]
        );
        let l = "Mar 17 04:22:00 host kernel: x";
        assert_eq!(texts(l, parse_bsd(l.as_bytes(), BsdTimestamp::Traditional)).unwrap()[3], None);
    }

    #[test]
    fn bsd_agent_quirks() {
        for bad in [
            "Mar  7 04:22:00 host sshd[0]: x",
            "Mar  7 04:22:00 host last message repeated 3 times",
            "Mar  7 04:22:00 host sshd:x",
            "Mar  7 04:22:00 host sshd: x\r",
            "Mar  7 04:22:00 <13> host sshd: x",
            "Mar  7 04:22:00  host sshd: x",
        ] {
            assert!(parse_bsd(bad.as_bytes(), BsdTimestamp::Traditional).is_none(), "{bad}");
        }
        for good in ["Mar  7 04:22:00 <134> host sshd: x", "Mar  7 04:22:00 <1>2> host sshd: x", "Mar  7 04:22:00 <1.3> host sshd: "] {
            assert!(parse_bsd(good.as_bytes(), BsdTimestamp::Traditional).is_some(), "{good}");
        }
    }

    #[test]
    fn rfc3339_variant() {
        let l = "2024-02-28T22:00:00.123+01:00 host app[9]: m";
        assert!(parse_bsd(l.as_bytes(), BsdTimestamp::Rfc3339).is_some());
        assert!(parse_bsd(b"2024-02-28T22:00:00+0100 host app: m", BsdTimestamp::Rfc3339).is_none());
    }

    #[test]
    fn rfc5424_message() {
        let l = r#"<165>1 2003-10-11T22:14:15.003Z mymachine evntslog - ID47 [exampleSDID@32473 iut="3" eventID="10\"11"][x a="]"] BOMAn application"#;
        let m = parse_rfc5424(l.as_bytes()).unwrap();
        assert_eq!(m.priority, 165);
        assert_eq!(m.procid, None);
        let sd = m.structured_data.unwrap();
        assert_eq!(&l[sd.0..sd.1], r#"[exampleSDID@32473 iut="3" eventID="10\"11"][x a="]"]"#);
        let mut got = Vec::new();
        for_each_sd_param(&l.as_bytes()[sd.0..sd.1], |e| match e {
            SdEvent::Element(id) => got.push(format!("@{}", String::from_utf8_lossy(id))),
            SdEvent::Param(k, v) => got.push(format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
        });
        assert_eq!(got, ["@exampleSDID@32473", "iut=3", r#"eventID=10\"11"#, "@x", "a=]"]);
        let msg = m.message.unwrap();
        assert_eq!(&l[msg.0..msg.1], "BOMAn application");
        assert!(parse_rfc5424(b"<34>1 - - - - - -").unwrap().message.is_none());
        assert!(parse_rfc5424(b"<192>1 - - - - - -").is_none());
        assert!(parse_rfc5424(b"<34>1 - - - - -").is_none());
    }
}
