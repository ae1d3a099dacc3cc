//! `logferry top`: a live view of a running agent, read from its `/status` endpoint.
//!
//! Guarantees: read-only (it only GETs `/status`); rates are computed between two readings, so
//! the first table appears after one interval; `--once` prints one plain table and exits, for
//! scripts. Not done: keys (Ctrl-C ends the live view).

use std::fmt::Write as _;
use std::time::Duration;

/// GETs `path` from `base` (`http://host:port`) and parses the JSON answer.
pub fn fetch(base: &str, path: &str) -> Result<serde_json::Value, String> {
    let authority = base.trim_start_matches("http://").trim_end_matches('/').to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        use http_body_util::BodyExt;
        let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&authority))
            .await
            .map_err(|_| format!("{base} does not answer"))?
            .map_err(|e| format!("cannot connect to {base}: {e} (is the agent running with `http.listen` or `--listen`?)"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, &authority)
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
            .await
            .map_err(|_| format!("{base} does not answer"))?
            .map_err(|e| e.to_string())?;
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("{base}{path} is not the agent's status: {e}"))
    })
}

fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The table for two readings `secs` apart.
pub fn render(before: &serde_json::Value, now: &serde_json::Value, secs: f64) -> String {
    let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "logferry — up {} s, {} open files, in flight {} of {}",
        num(now, "uptime_seconds"),
        num(now, "open_files"),
        human_bytes(num(now, "in_flight_bytes")),
        human_bytes(num(now, "in_flight_budget_bytes"))
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<20} {:<32} {:>10} {:>10} {:>12} {:>6} {:>9} {:>9}  LAST ERROR",
        "FLOW", "DESTINATION", "LINES/S", "SENT/S", "BEHIND", "FILES", "RETRIES", "DEAD"
    );
    let empty = Vec::new();
    let old_flows = before["flows"].as_array().unwrap_or(&empty);
    for f in now["flows"].as_array().unwrap_or(&empty) {
        let id = f["flow"].as_str().unwrap_or("");
        let old = old_flows.iter().find(|o| o["flow"].as_str() == Some(id)).unwrap_or(f);
        let rate = |k: &str| ((num(f, k) - num(old, k)).max(0.0) / secs.max(0.001)).round();
        let last_error = match &f["last_error"] {
            serde_json::Value::Null => "-".to_string(),
            e => format!("{}s ago {}: {}", e["seconds_ago"], e["code"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")),
        };
        let _ = writeln!(
            out,
            "{:<20} {:<32} {:>10} {:>10} {:>12} {:>6} {:>9} {:>9}  {}",
            truncate(id, 20),
            truncate(f["destination"].as_str().unwrap_or(""), 32),
            rate("records_parsed"),
            rate("records_sent"),
            human_bytes(num(f, "bytes_behind")),
            num(f, "files_behind"),
            num(f, "record_send_errors"),
            num(f, "records_dead_lettered"),
            truncate(&last_error, 80)
        );
        for file in f["files"].as_array().unwrap_or(&empty) {
            let _ = writeln!(
                out,
                "  {:<52} {:>33}",
                truncate(file["file"].as_str().unwrap_or(""), 52),
                format!("{} behind", human_bytes(num(file, "bytes_behind")))
            );
        }
    }
    out
}

/// At most `n` characters: the beginning and the end, with `…` between.
fn truncate(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= n {
        return s.to_string();
    }
    let head = (n - 1) / 2;
    let tail = n - 1 - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Runs the live view (or one table with `once`).
pub fn run(base: &str, interval: Duration, once: bool) -> Result<(), String> {
    let mut before = fetch(base, "/status")?;
    loop {
        std::thread::sleep(interval);
        let now = fetch(base, "/status")?;
        let table = render(&before, &now, interval.as_secs_f64());
        if once {
            print!("{table}");
            return Ok(());
        }
        // clear the screen and draw from the top
        print!("\x1b[2J\x1b[H{table}\n(Ctrl-C to quit; every {} s)\n", interval.as_secs_f64());
        let _ = std::io::Write::flush(&mut std::io::stdout());
        before = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_two_readings() {
        let before = serde_json::json!({"flows": [{"flow": "web", "destination": "DeliveryStream:logs", "records_parsed": 100, "records_sent": 50, "files": []}]});
        let now = serde_json::json!({"uptime_seconds": 3, "open_files": 1, "in_flight_bytes": 2048, "in_flight_budget_bytes": 8388608,
            "flows": [{"flow": "web", "destination": "DeliveryStream:logs", "records_parsed": 300, "records_sent": 250, "bytes_behind": 1536,
                       "files_behind": 1, "record_send_errors": 2, "records_dead_lettered": 0,
                       "last_error": {"seconds_ago": 4, "code": "ThrottlingException", "message": "slow down"},
                       "files": [{"file": "/var/log/app.log", "bytes_behind": 1536}]}]});
        let t = render(&before, &now, 2.0);
        assert!(t.contains("in flight 2.0 KiB of 8.0 MiB"), "{t}");
        let row = t.lines().find(|l| l.starts_with("web")).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cols[..4], ["web", "DeliveryStream:logs", "100", "100"], "{row}");
        assert!(row.contains("1.5 KiB") && row.contains("ThrottlingException: slow down"), "{row}");
        assert!(t.contains("/var/log/app.log") && t.contains("1.5 KiB behind"), "{t}");
    }
}
