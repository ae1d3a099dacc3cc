//! Civil date-times and their conversion to UTC, for the typed parsers' timestamps.
//!
//! Guarantees: [`write_utc`] writes RFC 3339 in UTC exactly as the `time` crate would, and says
//! when a date-time names no instant (a day the month lacks, an hour past 23, an offset beyond
//! ±25:59, a UTC year outside 0..=9999); no allocation, no clock. Not done here: reading the
//! date-time from a line (the parsers).

use super::scan::Span;
#[cfg(test)]
use std::io::Write;

/// A civil date-time plus the UTC offset it was written in.
pub(super) struct Civil {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub frac: Option<Span>,
    pub offset_minutes: i32,
}

/// Writes `c` converted to UTC as RFC 3339 into `ts`; false when it names no real instant.
/// Integer arithmetic on days since 1970 (Howard Hinnant's `days_from_civil`): no allocation,
/// no formatting machinery; [`write_utc_reference`] (the `time` crate) is what tests hold it to.
pub(super) fn write_utc(ts: &mut Vec<u8>, line: &[u8], c: &Civil) -> bool {
    ts.clear();
    let valid = (1..=12).contains(&c.month)
        && c.day >= 1
        && c.day <= days_in_month(c.year, c.month)
        && c.hour < 24
        && c.minute < 60
        && c.second < 60
        && c.offset_minutes.abs() * 60 <= 93_599
        && (-9999..=9999).contains(&c.year);
    if !valid {
        return false;
    }
    let local = c.hour as i64 * 3600 + c.minute as i64 * 60 + c.second as i64 - c.offset_minutes as i64 * 60;
    // most lines' UTC time falls on the day they name: the calendar is needed only when not
    let (year, month, day, in_day) = if (0..86_400).contains(&local) {
        (c.year as i64, c.month as i64, c.day as i64, local)
    } else {
        let seconds = days_from_civil(c.year as i64, c.month as i64, c.day as i64) * 86_400 + local;
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        (year, month, day, seconds.rem_euclid(86_400))
    };
    // RFC 3339 has four-digit years: year 0 at +23:59 is in year -1 in UTC, year 9999 at
    // -23:59 in year 10000; such a line keeps its timestamp as written
    if !(0..=9999).contains(&year) {
        return false;
    }
    // each number followed by its separator: `YYYY-MM-DDTHH:MM:SS`
    for (n, width, sep) in
        [(year, 4, b'-'), (month, 2, b'-'), (day, 2, b'T'), (in_day / 3600, 2, b':'), (in_day / 60 % 60, 2, b':'), (in_day % 60, 2, 0)]
    {
        let mut buf = [b'0'; 4];
        let mut n = n;
        for slot in buf[..width].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        ts.extend_from_slice(&buf[..width]);
        if sep != 0 {
            ts.push(sep);
        }
    }
    if let Some((a, b)) = c.frac {
        ts.push(b'.');
        ts.extend_from_slice(&line[a..b.min(a + 9)]);
    }
    ts.push(b'Z');
    true
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The conversion as the `time` crate does it, which [`write_utc`] must match.
#[cfg(test)]
fn write_utc_reference(ts: &mut Vec<u8>, line: &[u8], c: &Civil) -> bool {
    ts.clear();
    let Ok(month) = time::Month::try_from(c.month) else {
        return false;
    };
    let Ok(date) = time::Date::from_calendar_date(c.year, month, c.day) else {
        return false;
    };
    let Ok(t) = time::Time::from_hms(c.hour, c.minute, c.second) else {
        return false;
    };
    let Ok(off) = time::UtcOffset::from_whole_seconds(c.offset_minutes * 60) else {
        return false;
    };
    let Some(utc) = time::PrimitiveDateTime::new(date, t).assume_offset(off).checked_to_offset(time::UtcOffset::UTC) else {
        return false;
    };
    if !(0..=9999).contains(&utc.year()) {
        return false;
    }
    let _ =
        write!(ts, "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", utc.year(), utc.month() as u8, utc.day(), utc.hour(), utc.minute(), utc.second());
    if let Some((a, b)) = c.frac {
        ts.push(b'.');
        ts.extend_from_slice(&line[a..b.min(a + 9)]);
    }
    ts.push(b'Z');
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_conversion_agrees_with_the_time_crate_on_every_kind_of_date() {
        // a deterministic walk over years, months, days (valid and not), times and offsets
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let line = b"0123456789";
        let (mut fast, mut reference) = (Vec::new(), Vec::new());
        for i in 0..200_000u32 {
            let year = match i % 4 {
                0 => 1970 + next(80) as i32,
                1 => next(10_000) as i32,
                2 => [0, 1, 1600, 1900, 2000, 2100, 2400, 9998, 9999][next(9) as usize],
                _ => next(20_000) as i32 - 10_000,
            };
            let c = Civil {
                year,
                month: next(14) as u8,
                day: next(33) as u8,
                hour: next(25) as u8,
                minute: next(61) as u8,
                second: next(61) as u8,
                frac: (next(2) == 0).then_some((0, 1 + next(9) as usize)),
                offset_minutes: next(1600 * 2 + 1) as i32 - 1600,
            };
            let (a, b) = (write_utc(&mut fast, line, &c), write_utc_reference(&mut reference, line, &c));
            assert_eq!(
                (a, String::from_utf8_lossy(&fast)),
                (b, String::from_utf8_lossy(&reference)),
                "{}-{}-{} {}:{}:{} {:+}",
                c.year,
                c.month,
                c.day,
                c.hour,
                c.minute,
                c.second,
                c.offset_minutes
            );
        }
    }
}
