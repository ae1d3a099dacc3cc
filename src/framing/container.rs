//! Container logs as Kubernetes nodes keep them: the CRI format (`<time> <stream> <P|F> <log>`,
//! containerd and CRI-O) and Docker's json-file (`{"log":..,"stream":..,"time":..}`), with the
//! pod, namespace, container and pod uid taken from the file's path.
//!
//! Guarantees: partial lines (`P`, or a Docker `log` without its final newline) are merged per
//! stream until the full line, and a merged record never grows past its limit (it is sent in
//! pieces instead, nothing dropped); each record is one JSON object
//! `{"time","stream","log","kubernetes":{...}}` with `log` holding the message without its
//! newline; the checkpoint may pass a record only when no other stream still holds the start
//! of a partial line before it (the `end` a record reports is held back to that start), so a
//! restart re-reads a pending partial instead of losing it. A line that is not in the format is
//! kept whole as `log` with stream `unknown`. Not done: merging a partial line whose rest went
//! to the next file after a rotation (both parts are sent, as two records).

use serde_json::{json, Map, Value};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerFormat {
    Cri,
    Docker,
}

/// What a container log's path says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    pub container: Option<String>,
    pub container_id: Option<String>,
}

impl PodInfo {
    /// From `/var/log/containers/<pod>_<namespace>_<container>-<id>.log` and/or
    /// `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log[.<rotation>]` (a link in the
    /// first layout usually points into the second; both are read when given).
    pub fn from_paths(paths: &[&Path]) -> PodInfo {
        let mut info = PodInfo::default();
        for p in paths {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let parent = p.parent();
            if parent.and_then(|d| d.file_name()).and_then(|n| n.to_str()) == Some("containers") {
                // <pod>_<namespace>_<container>-<64 hex>.log
                let stem = name.strip_suffix(".log").unwrap_or(name);
                let mut parts = stem.splitn(3, '_');
                if let (Some(pod), Some(ns), Some(rest)) = (parts.next(), parts.next(), parts.next()) {
                    let (container, id) = match rest.rsplit_once('-') {
                        Some((c, id)) if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => (c, Some(id)),
                        _ => (rest, None),
                    };
                    info.pod.get_or_insert_with(|| pod.to_string());
                    info.namespace.get_or_insert_with(|| ns.to_string());
                    info.container.get_or_insert_with(|| container.to_string());
                    if let Some(id) = id {
                        info.container_id.get_or_insert_with(|| id.to_string());
                    }
                }
                continue;
            }
            // .../pods/<namespace>_<pod>_<uid>/<container>/<n>.log
            let container = parent.and_then(|d| d.file_name()).and_then(|n| n.to_str());
            let pod_dir = parent.and_then(Path::parent);
            let in_pods = pod_dir.and_then(Path::parent).and_then(|d| d.file_name()).and_then(|n| n.to_str()) == Some("pods");
            if let (true, Some(container), Some(dir)) = (in_pods, container, pod_dir.and_then(|d| d.file_name()).and_then(|n| n.to_str())) {
                let mut parts = dir.splitn(3, '_');
                if let (Some(ns), Some(pod), Some(uid)) = (parts.next(), parts.next(), parts.next()) {
                    info.namespace.get_or_insert_with(|| ns.to_string());
                    info.pod.get_or_insert_with(|| pod.to_string());
                    info.pod_uid.get_or_insert_with(|| uid.to_string());
                    info.container.get_or_insert_with(|| container.to_string());
                }
            }
        }
        info
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in [
            ("namespace", &self.namespace),
            ("pod", &self.pod),
            ("pod_uid", &self.pod_uid),
            ("container", &self.container),
            ("container_id", &self.container_id),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.clone()));
            }
        }
        Value::Object(m)
    }
}

/// One line of a container log.
#[derive(Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    /// More of this line comes in the next line of the same stream.
    pub partial: bool,
    pub message: Vec<u8>,
}

/// Parses one CRI line (with or without its newline); `None` when it is not in the format.
pub fn parse_cri(line: &[u8]) -> Option<LogLine<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut it = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(it.next()?).ok()?;
    let stream = std::str::from_utf8(it.next()?).ok()?;
    let tag = it.next()?;
    let message = it.next().unwrap_or_default().to_vec();
    // the tag may carry more after ':' (CRI keeps room for it)
    let partial = match tag.split(|&b| b == b':').next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    (time.contains('T') && !stream.is_empty()).then_some(LogLine { time, stream, partial, message })
}

/// A Docker json-file line, owned.
#[derive(Debug, PartialEq, Eq)]
pub struct DockerLine {
    pub time: String,
    pub stream: String,
    pub partial: bool,
    pub message: Vec<u8>,
}

pub fn parse_docker(line: &[u8]) -> Option<DockerLine> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let log = v.get("log")?.as_str()?;
    let (message, partial) = match log.strip_suffix('\n') {
        Some(m) => (m, false),
        None => (log, true),
    };
    Some(DockerLine {
        time: v.get("time").and_then(Value::as_str).unwrap_or_default().to_string(),
        stream: v.get("stream").and_then(Value::as_str).unwrap_or("unknown").to_string(),
        partial,
        message: message.as_bytes().to_vec(),
    })
}

/// A partial line waiting for its end.
#[derive(Debug)]
struct Pending {
    stream: String,
    time: String,
    start: u64,
    message: Vec<u8>,
}

/// A finished container record: its JSON, where its first line starts, and how far the
/// checkpoint may go once it is acknowledged.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished {
    pub json: Vec<u8>,
    pub start: u64,
    pub end: u64,
    /// Sent in pieces because the line outgrew the limit.
    pub cut: bool,
}

/// Merges one file's container log lines into records.
#[derive(Debug)]
pub struct ContainerAssembler {
    format: ContainerFormat,
    pod: Value,
    limit: usize,
    pending: Vec<Pending>,
}

impl ContainerAssembler {
    pub fn new(format: ContainerFormat, pod: &PodInfo, limit: usize) -> Self {
        ContainerAssembler { format, pod: pod.to_json(), limit: limit.max(1), pending: Vec::new() }
    }

    /// Bytes of memory held by partial lines waiting for their end.
    pub fn held_bytes(&self) -> usize {
        self.pending.iter().map(|p| p.message.capacity()).sum()
    }

    /// Whether a partial line waits for its end.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn record(&self, time: &str, stream: &str, message: &[u8]) -> Vec<u8> {
        let mut out = serde_json::to_vec(&json!({
            "time": time,
            "stream": stream,
            "log": String::from_utf8_lossy(message),
            "kubernetes": self.pod,
        }))
        .expect("a JSON value serialises");
        out.push(b'\n');
        out
    }

    /// The earliest start of a partial line other than `stream`'s.
    fn held_back(&self, stream: &str) -> Option<u64> {
        self.pending.iter().filter(|p| p.stream != stream).map(|p| p.start).min()
    }

    /// Takes the line at `start..end` and calls `emit` with the records it finishes.
    pub fn push_line(&mut self, start: u64, end: u64, line: &[u8], mut emit: impl FnMut(Finished)) {
        let parsed = match self.format {
            ContainerFormat::Cri => parse_cri(line).map(|l| (l.time.to_string(), l.stream.to_string(), l.partial, l.message)),
            ContainerFormat::Docker => parse_docker(line).map(|l| (l.time, l.stream, l.partial, l.message)),
        };
        let Some((time, stream, partial, message)) = parsed else {
            let raw = line.strip_suffix(b"\n").unwrap_or(line);
            let end = self.held_back("").map_or(end, |h| h.min(end));
            emit(Finished { json: self.record("", "unknown", raw), start, end, cut: false });
            return;
        };
        let i = self.pending.iter().position(|p| p.stream == stream);
        if let Some(i) = i {
            if self.pending[i].message.len() + message.len() > self.limit {
                // too long to keep merging: what waits goes now, the line goes on in the next piece
                let p = self.pending.remove(i);
                let hold = self.held_back(&stream).unwrap_or(u64::MAX).min(start);
                // the checkpoint may not pass another stream's pending part, even for this piece
                emit(Finished { json: self.record(&p.time, &p.stream, &p.message), start: p.start, end: hold, cut: true });
                self.pending.push(Pending { stream: stream.clone(), time: time.clone(), start, message: Vec::new() });
            }
        }
        let i = match self.pending.iter().position(|p| p.stream == stream) {
            Some(i) => i,
            None if partial => {
                self.pending.push(Pending { stream, time, start, message });
                return;
            }
            None => {
                let end = self.held_back(&stream).map_or(end, |h| h.min(end));
                emit(Finished { json: self.record(&time, &stream, &message), start, end, cut: false });
                return;
            }
        };
        self.pending[i].message.extend_from_slice(&message);
        if !partial {
            let p = self.pending.remove(i);
            let end = self.held_back(&p.stream).map_or(end, |h| h.min(end));
            emit(Finished { json: self.record(&p.time, &p.stream, &p.message), start: p.start, end, cut: false });
        }
    }

    /// The file is finished (or its flush timeout passed): partial lines go as they are.
    pub fn flush(&mut self, end: u64, mut emit: impl FnMut(Finished)) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|p| p.start);
        let n = pending.len();
        for (k, p) in pending.into_iter().enumerate() {
            // the last one lets the checkpoint reach the end
            let json = self.record(&p.time, &p.stream, &p.message);
            emit(Finished { json, start: p.start, end: if k + 1 == n { end } else { p.start }, cut: false });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pod_info_from_both_layouts() {
        let id = "a".repeat(64);
        let link = format!("/var/log/containers/web-7d9f_shop_nginx-{id}.log");
        let target = "/var/log/pods/shop_web-7d9f_0b6a2c1e-1111-2222-3333-444455556666/nginx/0.log";
        let info = PodInfo::from_paths(&[Path::new(&link), Path::new(target)]);
        assert_eq!(info.namespace.as_deref(), Some("shop"));
        assert_eq!(info.pod.as_deref(), Some("web-7d9f"));
        assert_eq!(info.container.as_deref(), Some("nginx"));
        assert_eq!(info.container_id.as_deref(), Some(id.as_str()));
        assert_eq!(info.pod_uid.as_deref(), Some("0b6a2c1e-1111-2222-3333-444455556666"));
        let rotated = PodInfo::from_paths(&[Path::new("/var/log/pods/kube-system_dns-1_u-1/coredns/0.log.20240101-000000")]);
        assert_eq!((rotated.namespace.as_deref(), rotated.container.as_deref()), (Some("kube-system"), Some("coredns")));
        assert_eq!(PodInfo::from_paths(&[Path::new("/var/log/syslog")]), PodInfo::default());
    }

    fn run(format: ContainerFormat, lines: &[&str], limit: usize) -> Vec<(Value, u64, u64)> {
        let mut a = ContainerAssembler::new(format, &PodInfo { namespace: Some("ns".into()), ..PodInfo::default() }, limit);
        let mut out = Vec::new();
        let mut off = 0u64;
        for l in lines {
            let line = format!("{l}\n");
            let end = off + line.len() as u64;
            a.push_line(off, end, line.as_bytes(), |f| out.push((serde_json::from_slice::<Value>(&f.json).unwrap(), f.start, f.end)));
            off = end;
        }
        a.flush(off, |f| out.push((serde_json::from_slice::<Value>(&f.json).unwrap(), f.start, f.end)));
        out
    }

    #[test]
    fn cri_partials_merge_per_stream_and_hold_the_checkpoint_back() {
        let got = run(
            ContainerFormat::Cri,
            &[
                "2024-01-01T00:00:00.1Z stdout P hello ",
                "2024-01-01T00:00:00.2Z stderr F oops",
                "2024-01-01T00:00:00.3Z stdout F world",
                "2024-01-01T00:00:00.4Z stdout F ",
                "not a cri line",
            ],
            1000,
        );
        let logs: Vec<&str> = got.iter().map(|(v, _, _)| v["log"].as_str().unwrap()).collect();
        assert_eq!(logs, ["oops", "hello world", "", "not a cri line"]);
        assert_eq!(got[0].0["stream"], "stderr");
        assert_eq!(got[0].2, 0, "stderr's record may not move the checkpoint past stdout's pending part");
        assert_eq!((got[1].1, got[1].0["time"].as_str()), (0, Some("2024-01-01T00:00:00.1Z")), "the time of the first part");
        assert_eq!(got[3].0["stream"], "unknown");
        assert_eq!(got[1].0["kubernetes"]["namespace"], "ns");
    }

    #[test]
    fn docker_json_file_lines_merge_until_the_newline() {
        let got = run(
            ContainerFormat::Docker,
            &[
                r#"{"log":"par","stream":"stdout","time":"t1"}"#,
                r#"{"log":"tial\n","stream":"stdout","time":"t2"}"#,
                r#"{"log":"x\n","stream":"stderr","time":"t3"}"#,
            ],
            1000,
        );
        let logs: Vec<&str> = got.iter().map(|(v, _, _)| v["log"].as_str().unwrap()).collect();
        assert_eq!(logs, ["partial", "x"]);
        assert_eq!(got[0].0["time"], "t1");
    }

    #[test]
    fn a_partial_line_past_the_limit_is_sent_in_pieces() {
        let got = run(ContainerFormat::Cri, &["t1T stdout P aaaa", "t2T stdout P bbbb", "t3T stdout P cccc", "t4T stdout F d"], 8);
        let logs: Vec<&str> = got.iter().map(|(v, _, _)| v["log"].as_str().unwrap()).collect();
        assert_eq!(logs.concat(), "aaaabbbbccccd");
        assert!(logs.iter().all(|l| l.len() <= 8), "{logs:?}");
    }

    proptest! {
        /// Whatever the interleaving of partial lines of two streams, every message arrives
        /// whole, once, and the ends reported never go backwards nor pass a pending part.
        #[test]
        fn merged_messages_are_complete_and_checkpoints_safe(parts in prop::collection::vec((0usize..2, any::<bool>(), "[a-z]{0,6}"), 1..40), limit in prop::sample::select(vec![4usize, 10_000])) {
            let mut lines = Vec::new();
            let mut expected: [Vec<String>; 2] = [Vec::new(), Vec::new()];
            let mut current = [String::new(), String::new()];
            for (s, partial, text) in &parts {
                let stream = ["stdout", "stderr"][*s];
                lines.push(format!("2024-01-01T00:00:00Z {stream} {} {text}", if *partial { "P" } else { "F" }));
                current[*s].push_str(text);
                if !partial {
                    expected[*s].push(std::mem::take(&mut current[*s]));
                }
            }
            let got = run(ContainerFormat::Cri, &lines.iter().map(String::as_str).collect::<Vec<_>>(), limit);
            for (s, stream) in ["stdout", "stderr"].iter().enumerate() {
                let mut want = expected[s].clone();
                if !current[s].is_empty() || parts.iter().rev().find(|(x, _, _)| *x == s).is_some_and(|(_, p, _)| *p) {
                    want.push(current[s].clone());
                }
                let have: Vec<String> = got.iter().filter(|(v, _, _)| v["stream"] == *stream).map(|(v, _, _)| v["log"].as_str().unwrap().to_string()).collect();
                if limit == 10_000 {
                    prop_assert_eq!(have, want);
                } else {
                    // long lines come in pieces: nothing lost, nothing repeated, in order
                    prop_assert_eq!(have.concat(), want.concat());
                }
            }
            // a reported end never passes the start of a record sent later: that record's first
            // part was still waiting when the checkpoint could have moved
            for (k, (_, _, end)) in got.iter().enumerate() {
                for (_, later_start, _) in &got[k + 1..] {
                    prop_assert!(later_start >= end, "an end of {} passes a later record starting at {}", end, later_start);
                }
            }
            let mut last = 0;
            for (_, start, end) in &got {
                prop_assert!(*end >= last, "ends never go back: {} after {}", end, last);
                let _ = start;
                last = *end;
            }
        }
    }
}
