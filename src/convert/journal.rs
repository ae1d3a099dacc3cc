//! Journal entries as records: the two shapes a journald source writes.
//!
//! - [`fields_record`]: one JSON object per entry. First `timestamp`, the entry's
//!   `__REALTIME_TIMESTAMP` as RFC 3339 in UTC with microseconds; then every field of the entry
//!   in the journal's order, user fields and trusted `_` fields alike, except the journal's own
//!   addresses (`__CURSOR`, `__REALTIME_TIMESTAMP`, `__MONOTONIC_TIMESTAMP`, `__SEQNUM`,
//!   `__SEQNUM_ID`). A value that is UTF-8 is a string; any other (binary) value is its base64;
//!   a field given several times is an array of its values, in order.
//! - `syslog_record`: exactly the object the Kinesis Agent's `LOGTOJSON SYSLOG` makes of the line
//!   rsyslog's default template (`RSYSLOG_TraditionalFileFormat`) writes to `/var/log/messages` for
//!   the entry: the line is built (`Mmm dd hh:mm:ss` in the host's offset, `_HOSTNAME`, the tag
//!   `SYSLOG_IDENTIFIER[SYSLOG_PID or _PID]:`, a space, `MESSAGE` with control characters escaped
//!   as `#ooo` and one trailing newline dropped) and then converted by the same LOGTOJSON code
//!   the file sources use, so it is the same bytes, and an entry whose line LOGTOJSON would drop
//!   is dropped.
//!
//! Pure: the host's UTC offset is passed in. Not done: rsyslog templates other than the default.

use super::json::{write_str, JsonLayout, ObjectWriter};
use super::{LogFormat, Step};
use crate::framing::journal::JournalEntry;
use base64::Engine as _;

static HOST_OFFSET: std::sync::OnceLock<time::UtcOffset> = std::sync::OnceLock::new();

/// Reads the host's UTC offset (`TZ`, `/etc/localtime`) for the `syslog` shape. Call it while the
/// process has one thread: the `time` crate refuses to read it otherwise (UTC is used then).
pub fn read_host_offset() {
    let _ = HOST_OFFSET.set(time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC));
}

/// The host's UTC offset as read at start (UTC when it was not read).
pub fn host_offset() -> time::UtcOffset {
    HOST_OFFSET.get().copied().unwrap_or(time::UtcOffset::UTC)
}

/// The journal's addresses of an entry: not written as fields.
const ADDRESS_FIELDS: [&str; 5] = ["__CURSOR", "__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "__SEQNUM", "__SEQNUM_ID"];

/// RFC 3339 in UTC with microseconds: `2026-12-07T08:00:00.123456Z`.
pub fn rfc3339_micros(us: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(FORMAT).unwrap_or_default()
}

fn write_value(out: &mut Vec<u8>, v: &[u8]) {
    if std::str::from_utf8(v).is_ok() {
        out.push(b'"');
        super::json::escape_valid(out, v);
        out.push(b'"');
    } else {
        out.push(b'"');
        out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(v).as_bytes());
        out.push(b'"');
    }
}

/// The `fields` shape of an entry, with one `\n` after it.
pub fn fields_record(e: &JournalEntry, layout: JsonLayout, out: &mut Vec<u8>) {
    let mut w = ObjectWriter::begin(out, layout);
    if let Some(us) = e.realtime_us() {
        write_str(w.key(b"timestamp"), rfc3339_micros(us).as_bytes());
    }
    let fields: Vec<(&str, &[u8])> = e.fields().collect();
    for (i, &(name, value)) in fields.iter().enumerate() {
        if ADDRESS_FIELDS.contains(&name) || fields[..i].iter().any(|(n, _)| *n == name) {
            continue;
        }
        let repeats = fields[i + 1..].iter().any(|(n, _)| *n == name);
        let buf = w.key(name.as_bytes());
        if !repeats {
            write_value(buf, value);
            continue;
        }
        buf.push(b'[');
        for (j, (_, v)) in fields[i..].iter().filter(|(n, _)| *n == name).enumerate() {
            if j > 0 {
                buf.push(b',');
            }
            write_value(buf, v);
        }
        buf.push(b']');
    }
    w.end();
    out.push(b'\n');
}

/// The line rsyslog's default file template writes for the entry, with its `\n`; `None` when the
/// entry has no `MESSAGE` or no time.
pub fn rsyslog_line(e: &JournalEntry, offset: time::UtcOffset, line: &mut Vec<u8>) -> Option<()> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let message = e.get("MESSAGE")?;
    let us = e.realtime_us()?;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000).ok()?.to_offset(offset);
    line.clear();
    line.extend_from_slice(
        format!("{} {:>2} {:02}:{:02}:{:02} ", MONTHS[t.month() as usize - 1], t.day(), t.hour(), t.minute(), t.second()).as_bytes(),
    );
    line.extend_from_slice(e.get("_HOSTNAME").unwrap_or(b"localhost"));
    line.push(b' ');
    let identifier = e.get("SYSLOG_IDENTIFIER").or_else(|| e.get("_COMM")).unwrap_or(b"journal");
    line.extend_from_slice(identifier);
    if let Some(pid) = e.get("SYSLOG_PID").or_else(|| e.get("_PID")) {
        line.push(b'[');
        line.extend_from_slice(pid);
        line.push(b']');
    }
    line.push(b':');
    let message = message.strip_suffix(b"\n").unwrap_or(message);
    if message.first() != Some(&b' ') {
        line.push(b' ');
    }
    for &b in message {
        if b < 0x20 || b == 0x7f {
            line.extend_from_slice(&[b'#', b'0' + (b >> 6), b'0' + ((b >> 3) & 7), b'0' + (b & 7)]);
        } else {
            line.push(b);
        }
    }
    line.push(b'\n');
    Some(())
}

/// The keys LOGTOJSON SYSLOG writes, encoded once for `syslog_record`.
pub fn syslog_keys() -> Vec<Vec<u8>> {
    LogFormat::Syslog.fields().iter().map(|f| super::json::encode_key(f)).collect()
}

/// The `syslog` shape of an entry: LOGTOJSON SYSLOG of its rsyslog line ([`rsyslog_line`]), with
/// the `keys` of [`syslog_keys`]; `Step::Drop` when LOGTOJSON drops that line (or the entry has
/// no message). `scratch` holds the line.
pub(crate) fn syslog_record(
    e: &JournalEntry,
    offset: time::UtcOffset,
    layout: JsonLayout,
    keys: &[Vec<u8>],
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Step {
    if rsyslog_line(e, offset, scratch).is_none() {
        return Step::Drop;
    }
    super::logtojson::convert(scratch, LogFormat::Syslog, None, keys, layout, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &[u8])]) -> JournalEntry {
        JournalEntry::of(fields.iter().copied())
    }

    fn sshd() -> JournalEntry {
        entry(&[
            ("__CURSOR", b"s=abc;i=1"),
            ("__REALTIME_TIMESTAMP", b"1765094405123456"),
            ("__MONOTONIC_TIMESTAMP", b"12345"),
            ("_HOSTNAME", b"ip-10-0-0-1"),
            ("SYSLOG_IDENTIFIER", b"sshd"),
            ("_PID", b"812"),
            ("PRIORITY", b"6"),
            ("MESSAGE", b"Accepted publickey for ec2-user from 10.0.0.9 port 52110 ssh2"),
        ])
    }

    #[test]
    fn fields_are_written_in_journal_order_without_addresses_and_binary_as_base64() {
        let mut e = sshd();
        e.push("BLOB", &[0xff, 0x00, 0x01]);
        e.push("TAG", b"a");
        e.push("TAG", b"b");
        let mut out = Vec::new();
        fields_record(&e, JsonLayout::Compact, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"timestamp\":\"2025-12-07T08:00:05.123456Z\",\"_HOSTNAME\":\"ip-10-0-0-1\",\"SYSLOG_IDENTIFIER\":\"sshd\",\"_PID\":\"812\",\"PRIORITY\":\"6\",\"MESSAGE\":\"Accepted publickey for ec2-user from 10.0.0.9 port 52110 ssh2\",\"BLOB\":\"/wAB\",\"TAG\":[\"a\",\"b\"]}\n"
        );
    }

    #[test]
    fn the_syslog_shape_is_logtojson_syslog_of_rsyslogs_line() {
        let mut line = Vec::new();
        rsyslog_line(&sshd(), time::UtcOffset::UTC, &mut line).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&line),
            "Dec  7 08:00:05 ip-10-0-0-1 sshd[812]: Accepted publickey for ec2-user from 10.0.0.9 port 52110 ssh2\n"
        );
        let mut out = Vec::new();
        assert!(matches!(syslog_record(&sshd(), time::UtcOffset::UTC, JsonLayout::Compact, &syslog_keys(), &mut line, &mut out), Step::Ok));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"timestamp\":\"Dec  7 08:00:05\",\"hostname\":\"ip-10-0-0-1\",\"program\":\"sshd\",\"processid\":\"812\",\"message\":\"Accepted publickey for ec2-user from 10.0.0.9 port 52110 ssh2\"}\n"
        );
    }

    #[test]
    fn rsyslog_escapes_control_characters_takes_the_local_time_and_the_syslog_pid() {
        let e = entry(&[
            ("__REALTIME_TIMESTAMP", b"1765094405000000"),
            ("_HOSTNAME", b"h"),
            ("SYSLOG_IDENTIFIER", b"java"),
            ("SYSLOG_PID", b"7"),
            ("_PID", b"8"),
            ("MESSAGE", b"Exception\n\tat Main.main\n"),
        ]);
        let mut line = Vec::new();
        rsyslog_line(&e, time::UtcOffset::from_hms(-5, 0, 0).unwrap(), &mut line).unwrap();
        assert_eq!(String::from_utf8_lossy(&line), "Dec  7 03:00:05 h java[7]: Exception#012#011at Main.main\n");
    }

    #[test]
    fn an_entry_logtojson_would_drop_is_dropped() {
        // a program name LOGTOJSON SYSLOG does not take, and no message at all
        let e = entry(&[
            ("__REALTIME_TIMESTAMP", b"1765094405000000"),
            ("_HOSTNAME", b"h"),
            ("SYSLOG_IDENTIFIER", b"(sd-pam)"),
            ("MESSAGE", b"x"),
        ]);
        let (mut line, mut out) = (Vec::new(), Vec::new());
        assert!(matches!(syslog_record(&e, time::UtcOffset::UTC, JsonLayout::Compact, &syslog_keys(), &mut line, &mut out), Step::Drop));
        let e = entry(&[("__REALTIME_TIMESTAMP", b"1765094405000000")]);
        assert!(matches!(syslog_record(&e, time::UtcOffset::UTC, JsonLayout::Compact, &syslog_keys(), &mut line, &mut out), Step::Drop));
        assert!(out.is_empty());
    }
}
