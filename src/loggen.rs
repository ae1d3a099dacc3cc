//! Deterministic synthetic log lines for tests and benchmarks.
//!
//! Each format mixes ordinary lines with the variants that break parsers in practice (IPv6 hosts,
//! `-` fields, escaped or empty quotes, CRLF, `[0]` pids, `<PRI>` prefixes, fractional seconds,
//! non-ASCII text, missing parts), so that a test over a few thousand generated lines covers both
//! sides of every rule. The same seed gives the same lines on every machine.

/// SplitMix64: small, fast and good enough to pick among test variants.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Common,
    Combined,
    ApacheError,
    Syslog,
    Rfc3339Syslog,
    Rfc5424,
}

impl Format {
    pub const ALL: [Format; 6] =
        [Format::Common, Format::Combined, Format::ApacheError, Format::Syslog, Format::Rfc3339Syslog, Format::Rfc5424];

    pub fn from_name(s: &str) -> Option<Format> {
        Some(match s {
            "common" | "clf" => Format::Common,
            "combined" => Format::Combined,
            "apache-error" => Format::ApacheError,
            "syslog" => Format::Syslog,
            "rfc3339-syslog" => Format::Rfc3339Syslog,
            "rfc5424" => Format::Rfc5424,
            _ => return None,
        })
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const HOSTS: [&str; 8] =
    ["192.168.1.20", "10.0.0.7", "www.example.com", "host-7.internal.", "::1", "2001:db8::42", "crawl_66.bot.net", "..1"];
const PATHS: [&str; 6] = ["/", "/index.html", "/api/v1/items?id=42&sort=desc", "/static/app.js", "/search?q=caf%C3%A9", "/wp-login.php"];
const AGENTS: [&str; 5] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "curl/8.5.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "-",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Mobile/15E148 Safari/604.1",
];
const PROGRAMS: [&str; 6] = ["sshd", "CRON", "kernel", "systemd-logind", "postfix/smtpd", "app.worker"];
const MESSAGES: [&str; 6] = [
    "Accepted publickey for deploy from 10.0.0.5 port 52722 ssh2",
    "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "connect from unknown[203.0.113.9]",
    "Out of memory: Killed process 4242 (java) total-vm:8123456kB",
    "caf\u{e9} d\u{e9}j\u{e0} vu \u{2014} ok",
    "value=\"quoted\" path=C:\\temp",
];

/// Appends one line (with its `\n`) of `format` to `out`.
pub fn line(rng: &mut Rng, format: Format, out: &mut Vec<u8>) {
    let s = match format {
        Format::Common | Format::Combined => access(rng, format == Format::Combined),
        Format::ApacheError => apache_error(rng),
        Format::Syslog => syslog(rng, false),
        Format::Rfc3339Syslog => syslog(rng, true),
        Format::Rfc5424 => rfc5424(rng),
    };
    out.extend_from_slice(s.as_bytes());
    if rng.chance(3) {
        out.push(b'\r');
    }
    out.push(b'\n');
}

fn time(rng: &mut Rng) -> String {
    let h = rng.below(24);
    let frac = match rng.below(10) {
        0 => format!(".{}", rng.below(1_000_000)),
        1 => format!(",{:03}", rng.below(1000)),
        _ => String::new(),
    };
    if rng.chance(5) {
        format!("{h}:{:02}:{:02}{frac}", rng.below(60), rng.below(61))
    } else {
        format!("{h:02}:{:02}:{:02}{frac}", rng.below(60), rng.below(60))
    }
}

fn access(rng: &mut Rng, combined: bool) -> String {
    let host = if rng.chance(80) {
        format!("{}.{}.{}.{}", rng.below(256), rng.below(256), rng.below(256), rng.below(256))
    } else {
        rng.pick(&HOSTS).to_string()
    };
    let ident = if rng.chance(95) { "-" } else { "ident_1" };
    let user = *rng.pick(&["-", "-", "-", "frank", "alice.b", "bob@example.com", "x y"]);
    let tz = *rng.pick(&["+0000", "-0700", "+0530", "-0000"]);
    let date = format!("{:02}/{}/{}:{} {tz}", rng.below(28) + 1, rng.pick(&MONTHS), 2000 + rng.below(30), time(rng));
    let method = *rng.pick(&["GET", "GET", "GET", "POST", "HEAD", "OPTIONS"]);
    let request = match rng.below(30) {
        0 => "-".to_string(),
        1 => String::new(),
        2 => format!("{method} /a\\\"b HTTP/1.1"),
        3 => format!("{method} /x?cmd=ls -al&y=1"),
        _ => format!("{method} {} HTTP/1.{}", rng.pick(&PATHS), rng.below(2)),
    };
    let status = *rng.pick(&["200", "200", "200", "304", "404", "500", "408", "-"]);
    let size = match rng.below(10) {
        0 => "-".to_string(),
        1 => "0".to_string(),
        _ => rng.below(500_000).to_string(),
    };
    let mut l = format!("{host} {ident} {user} [{date}] \"{request}\" {status} {size}");
    if combined {
        let referer = match rng.below(4) {
            0 => "-".to_string(),
            1 => String::new(),
            _ => format!("https://example.com{}", rng.pick(&PATHS)),
        };
        let agent = if rng.chance(3) { String::new() } else { rng.pick(&AGENTS).to_string() };
        l.push_str(&format!(" \"{referer}\" \"{agent}\""));
        if rng.chance(5) {
            l.push_str(" \"-\" rt=0.042");
        }
    } else if rng.chance(5) {
        l.push_str(" trailing");
    }
    l
}

fn apache_error(rng: &mut Rng) -> String {
    let ts = format!("{} {} {:02} {} {}", rng.pick(&DAYS), rng.pick(&MONTHS), rng.below(28) + 1, time(rng), 2000 + rng.below(30));
    let level = *rng.pick(&["error", "warn", "notice", "crit"]);
    let module =
        if rng.chance(70) { format!("{}:{level}", rng.pick(&["core", "ssl", "proxy_fcgi", "mpm_event"])) } else { level.to_string() };
    let pid = if rng.chance(70) {
        format!("[pid {}:tid {}] ", rng.below(99_999), rng.below(1 << 40))
    } else if rng.chance(80) {
        format!("[pid {}] ", rng.below(99_999))
    } else {
        String::new()
    };
    let client = match rng.below(10) {
        0 => String::new(),
        1 => "[client ::1:58424] ".to_string(),
        2 => "[client www.example.com] ".to_string(),
        _ => format!("[client {}.{}.{}.{}:{}] ", rng.below(256), rng.below(256), rng.below(256), rng.below(256), rng.below(65535) + 1),
    };
    let msg = *rng.pick(&[
        "AH00128: File does not exist: /var/www/html/favicon.ico",
        "AH01630: client denied by server configuration",
        "-",
        "",
        "caf\u{e9} \u{2028} separator",
    ]);
    format!("[{ts}] [{module}] {pid}{client}{msg}")
}

fn syslog(rng: &mut Rng, rfc3339: bool) -> String {
    let ts = if rfc3339 {
        let frac = if rng.chance(50) { format!(".{:06}", rng.below(1_000_000)) } else { String::new() };
        let tz = *rng.pick(&["Z", "+00:00", "-05:00", "+0530"]);
        format!(
            "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}{tz}",
            rng.below(30),
            rng.below(12) + 1,
            rng.below(28) + 1,
            rng.below(24),
            rng.below(60),
            rng.below(60)
        )
    } else {
        let day = rng.below(31) + 1;
        if rng.chance(80) {
            format!("{} {day:>2} {}", rng.pick(&MONTHS), time(rng))
        } else {
            format!("{} {day}\t{}", rng.pick(&["Sept", "Jun", "June", "Mar"]), time(rng))
        }
    };
    let pri = match rng.below(10) {
        0 => "<13> ".to_string(),
        1 => format!("<{}> ", 100 + rng.below(91)),
        2 => "<1.5> ".to_string(),
        _ => String::new(),
    };
    let host = *rng.pick(&["web-1", "db.internal", "-", "host_2", "ip-10-0-0-7"]);
    let prog = rng.pick(&PROGRAMS).to_string();
    let pid = match rng.below(6) {
        0 => String::new(),
        1 => "[0]".to_string(),
        _ => format!("[{}]", rng.below(65535) + 1),
    };
    let sep = if rng.chance(95) { ": " } else { " " };
    let msg = if rng.chance(3) { "last message repeated 3 times".to_string() } else { rng.pick(&MESSAGES).to_string() };
    format!("{ts} {pri}{host} {prog}{pid}{sep}{msg}")
}

fn rfc5424(rng: &mut Rng) -> String {
    let pri = rng.below(200);
    let ts = if rng.chance(10) {
        "-".to_string()
    } else {
        format!("2024-0{}-1{}T0{}:30:00.{:03}Z", rng.below(9) + 1, rng.below(10), rng.below(10), rng.below(1000))
    };
    let sd = match rng.below(4) {
        0 => "-".to_string(),
        1 => "[exampleSDID@32473 iut=\"3\" eventSource=\"App\\\"lication\" eventID=\"1011\"]".to_string(),
        2 => "[a@1 x=\"\\]\"][b@2]".to_string(),
        _ => "[origin ip=\"10.0.0.1\"]".to_string(),
    };
    let msg = match rng.below(4) {
        0 => String::new(),
        1 => " \u{feff}BOM message".to_string(),
        _ => format!(" {}", rng.pick(&MESSAGES)),
    };
    format!(
        "<{pri}>1 {ts} {} {} {} {} {sd}{msg}",
        rng.pick(&["host", "-"]),
        rng.pick(&["app", "-"]),
        rng.pick(&["1234", "-", "abc"]),
        rng.pick(&["ID47", "-"])
    )
}

/// A combined-format line padded (in the query string) to exactly `len` bytes with its `\n`,
/// for throughput benchmarks.
pub fn combined_line_of_len(rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    let start = out.len();
    let ip = format!("{}.{}.{}.{}", rng.below(256), rng.below(256), rng.below(256), rng.below(256));
    out.extend_from_slice(
        format!(
            "{ip} - - [{:02}/{}/2024:{:02}:{:02}:{:02} +0000] \"GET /item?id={}&pad=",
            rng.below(28) + 1,
            MONTHS[rng.below(12) as usize],
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1_000_000)
        )
        .as_bytes(),
    );
    let tail = format!(" HTTP/1.1\" 200 {} \"-\" \"{}\"\n", rng.below(100_000), AGENTS[rng.below(3) as usize]);
    let used = out.len() - start + tail.len();
    for _ in used..len {
        out.push(b'x');
    }
    out.extend_from_slice(tail.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_lines() {
        let gen = |seed| {
            let mut r = Rng::new(seed);
            let mut out = Vec::new();
            for f in Format::ALL {
                for _ in 0..50 {
                    line(&mut r, f, &mut out);
                }
            }
            out
        };
        assert_eq!(gen(7), gen(7));
        assert_ne!(gen(7), gen(8));
    }

    #[test]
    fn padded_lines_have_the_asked_length() {
        let mut r = Rng::new(1);
        let mut out = Vec::new();
        combined_line_of_len(&mut r, 200, &mut out);
        assert_eq!(out.len(), 200);
        assert!(out.ends_with(b"\n"));
    }
}
