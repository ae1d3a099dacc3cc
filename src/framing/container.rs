//! Container logs as Kubernetes nodes keep them: the CRI format (`<time> <stream> <P|F> <log>`,
//! containerd and CRI-O) and Docker's json-file (`{"log":..,"stream":..,"time":..}`), with the
//! pod, namespace, container and pod uid taken from the file's path.
//!
//! Guarantees: partial lines (`P`, or a Docker `log` without its final newline) are merged per
//! stream until the full line, and a merged record never grows past its limit (it is sent in
//! pieces instead, nothing dropped); with a multi-line rule ([`super::multiline`]) each
//! stream's merged lines are then grouped into records of their own stream only, joined by
//! `\n`, a stream's waiting record sent when a line of that stream ends it or when that stream
//! got no line for the flush timeout (another stream's lines do not keep it waiting); each
//! record is one JSON object `{"time","stream","log","kubernetes":{...}}` with `log` holding
//! the message without its newline and `time` the time of its first part; the checkpoint may
//! pass a record only when no other stream still holds the start of a partial line or of a
//! multi-line record before it (the `end` a record reports is held back to that start), so a
//! restart re-reads whatever waited instead of losing it. A line that is not in the format is
//! kept whole as `log` with stream `unknown`. Not done: merging a partial line whose rest went
//! to the next file after a rotation (both parts are sent, as two records).

use super::multiline::{GroupState, MultiLineRule, Step};
pub use super::pod_info::PodInfo;
use super::pod_link::PodLink;
use crate::source::kubernetes::PodMetadata;
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerFormat {
    Cri,
    Docker,
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
        // an empty name would be taken for "every stream" when the checkpoint is held back
        stream: v.get("stream").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("unknown").to_string(),
        partial,
        message: message.as_bytes().to_vec(),
    })
}

/// The parts of a line merged so far, waiting for its end.
#[derive(Debug)]
struct Part {
    time: String,
    start: u64,
    message: Vec<u8>,
}

/// A multi-line record waiting for its next line.
#[derive(Debug)]
struct Group {
    time: String,
    start: u64,
    message: Vec<u8>,
    state: GroupState,
}

/// What one stream (`stdout`, `stderr`) of the file holds back.
#[derive(Debug)]
struct Stream {
    name: String,
    line: Option<Part>,
    group: Option<Group>,
    /// When a line of this stream last came.
    since: Instant,
}

impl Stream {
    /// Where the earliest byte it holds starts.
    fn first_start(&self) -> Option<u64> {
        match (&self.group, &self.line) {
            (Some(g), _) => Some(g.start),
            (None, Some(p)) => Some(p.start),
            (None, None) => None,
        }
    }

    fn holds(&self) -> bool {
        self.line.is_some() || self.group.is_some()
    }
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
    /// What records carry under `kubernetes`: the path's fields and the API's, serialised.
    pod_json: Vec<u8>,
    meta: Option<PodLink>,
    limit: usize,
    rule: Option<MultiLineRule>,
    /// Streams holding a partial line or a multi-line record (no others are kept).
    streams: Vec<Stream>,
    now: Instant,
}

impl ContainerAssembler {
    /// `rule` groups each stream's merged lines into multi-line records; `now` is the time the
    /// first lines are pushed at (see [`ContainerAssembler::set_clock`]).
    pub fn new(format: ContainerFormat, pod: &PodInfo, limit: usize, rule: Option<MultiLineRule>, now: Instant) -> Self {
        ContainerAssembler {
            format,
            pod_json: serde_json::to_vec(&pod.to_json()).expect("a JSON value serialises"),
            meta: None,
            limit: limit.max(1),
            rule,
            streams: Vec::new(),
            now,
        }
    }

    /// Records also carry what the API says of the pod (see [`PodLink`]), once it is known;
    /// until then, they carry what the path says, counted as misses.
    pub fn with_metadata(mut self, handle: &PodMetadata, pod: &PodInfo) -> Self {
        if let Some((link, pod_json)) = PodLink::new(handle, pod, self.now) {
            self.meta = Some(link);
            self.pod_json = pod_json;
        }
        self
    }

    /// Until when the file waits before it is read: its pod's metadata is fetched for the
    /// first time ([`PodLink::wait`]).
    pub fn metadata_wait(&self, now: Instant) -> Option<Instant> {
        self.meta.as_ref()?.wait(now)
    }

    fn refresh_meta(&mut self) {
        if let Some(json) = self.meta.as_mut().and_then(|l| l.refresh(self.now)) {
            self.pod_json = json;
        }
    }

    /// The time the next lines are pushed at.
    pub fn set_clock(&mut self, now: Instant) {
        self.now = now;
        self.refresh_meta();
    }

    /// Bytes of memory held by partial lines and multi-line records waiting.
    pub fn held_bytes(&self) -> usize {
        self.streams
            .iter()
            .map(|s| s.line.as_ref().map_or(0, |p| p.message.capacity()) + s.group.as_ref().map_or(0, |g| g.message.capacity()))
            .sum()
    }

    /// Whether a partial line or a multi-line record waits.
    pub fn has_pending(&self) -> bool {
        !self.streams.is_empty()
    }

    /// When the stream that has waited longest reaches `after` without a new line.
    pub fn next_flush(&self, after: Duration) -> Option<Instant> {
        self.streams.iter().map(|s| s.since + after).min()
    }

    fn record(&self, time: &str, stream: &str, message: &[u8]) -> Vec<u8> {
        if let Some(link) = &self.meta {
            link.count_if_unknown();
        }
        // written as serde_json writes the object {"time","stream","log","kubernetes"}, without
        // building it: the pod's part is serialised once, when it changes
        let log = String::from_utf8_lossy(message);
        let mut out = Vec::with_capacity(48 + time.len() + stream.len() + log.len() + self.pod_json.len());
        let field = |out: &mut Vec<u8>, key: &str, value: &str| {
            out.extend_from_slice(key.as_bytes());
            serde_json::to_writer(&mut *out, value).expect("a string serialises");
        };
        field(&mut out, "{\"time\":", time);
        field(&mut out, ",\"stream\":", stream);
        field(&mut out, ",\"log\":", &log);
        out.extend_from_slice(b",\"kubernetes\":");
        out.extend_from_slice(&self.pod_json);
        out.extend_from_slice(b"}\n");
        out
    }

    /// The earliest start of what streams other than `stream` hold.
    fn held_back(&self, stream: &str) -> Option<u64> {
        self.streams.iter().filter(|s| s.name != stream).filter_map(Stream::first_start).min()
    }

    /// `end`, held back to the start of what other streams than `stream` hold.
    fn clip(&self, stream: &str, end: u64) -> u64 {
        self.held_back(stream).map_or(end, |h| h.min(end))
    }

    /// Takes the line at `start..end` and calls `emit` with the records it finishes.
    pub fn push_line(&mut self, start: u64, end: u64, line: &[u8], mut emit: impl FnMut(Finished)) {
        let parsed = match self.format {
            ContainerFormat::Cri => parse_cri(line).map(|l| (l.time.to_string(), l.stream.to_string(), l.partial, l.message)),
            ContainerFormat::Docker => parse_docker(line).map(|l| (l.time, l.stream, l.partial, l.message)),
        };
        let Some((time, stream, partial, message)) = parsed else {
            let raw = line.strip_suffix(b"\n").unwrap_or(line);
            let end = self.clip("", end);
            emit(Finished { json: self.record("", "unknown", raw), start, end, cut: false });
            return;
        };
        let i = match self.streams.iter().position(|s| s.name == stream) {
            Some(i) => i,
            None => {
                self.streams.push(Stream { name: stream.clone(), line: None, group: None, since: self.now });
                self.streams.len() - 1
            }
        };
        self.streams[i].since = self.now;
        if self.streams[i].line.as_ref().is_some_and(|p| p.message.len() + message.len() > self.limit) {
            // too long to keep merging: what waits goes now, the line goes on in the next piece
            if let Some(g) = self.streams[i].group.take() {
                let part_start = self.streams[i].line.as_ref().map_or(start, |p| p.start);
                let end = self.clip(&stream, part_start);
                emit(Finished { json: self.record(&g.time, &stream, &g.message), start: g.start, end, cut: false });
            }
            let p = self.streams[i].line.take().expect("a part waits");
            // the checkpoint may not pass another stream's pending part, even for this piece
            let end = self.clip(&stream, start);
            emit(Finished { json: self.record(&p.time, &stream, &p.message), start: p.start, end, cut: true });
            self.streams[i].line = Some(Part { time: time.clone(), start, message: Vec::new() });
        }
        match &mut self.streams[i].line {
            Some(p) => p.message.extend_from_slice(&message),
            None => self.streams[i].line = Some(Part { time, start, message }),
        }
        if !partial {
            let p = self.streams[i].line.take().expect("the line was just kept");
            self.complete_line(i, p, end, &mut emit);
        }
        if !self.streams[i].holds() {
            self.streams.swap_remove(i);
        }
    }

    /// A whole line of stream `i` (`line.start..end`): a record, or part of one.
    fn complete_line(&mut self, i: usize, line: Part, end: u64, emit: &mut impl FnMut(Finished)) {
        let name = self.streams[i].name.clone();
        let Some(rule) = &self.rule else {
            let end = self.clip(&name, end);
            emit(Finished { json: self.record(&line.time, &name, &line.message), start: line.start, end, cut: false });
            return;
        };
        let group = &self.streams[i].group;
        let mut step = rule.step(group.as_ref().map(|g| g.state), &String::from_utf8_lossy(&line.message));
        if let (Step::Join(s), Some(g)) = (step, group) {
            if g.message.len() + 1 + line.message.len() > self.limit {
                step = Step::Begin(s);
            }
        }
        if let Step::Join(s) = step {
            let g = self.streams[i].group.as_mut().expect("a join has a record to join");
            g.message.push(b'\n');
            g.message.extend_from_slice(&line.message);
            g.state = s;
            return;
        }
        if let Some(g) = self.streams[i].group.take() {
            let end = self.clip(&name, line.start);
            emit(Finished { json: self.record(&g.time, &name, &g.message), start: g.start, end, cut: false });
        }
        match step {
            Step::Begin(state) => {
                self.streams[i].group = Some(Group { time: line.time, start: line.start, message: line.message, state });
            }
            _ => {
                let end = self.clip(&name, end);
                emit(Finished { json: self.record(&line.time, &name, &line.message), start: line.start, end, cut: false });
            }
        }
    }

    /// The file is finished (or the flow stops): everything waiting goes as it is. `end` is
    /// where the last line pushed ends.
    pub fn flush(&mut self, end: u64, emit: impl FnMut(Finished)) {
        let streams = std::mem::take(&mut self.streams);
        self.send_held(streams, end, emit);
    }

    /// Sends what the streams that got no line for `after` hold, as they are.
    pub fn flush_stale(&mut self, now: Instant, after: Duration, end: u64, emit: impl FnMut(Finished)) {
        let (stale, fresh): (Vec<Stream>, Vec<Stream>) =
            std::mem::take(&mut self.streams).into_iter().partition(|s| s.since + after <= now);
        self.streams = fresh;
        self.send_held(stale, end, emit);
    }

    /// Sends `streams`' held records (no longer in `self.streams`) in file order; each lets the
    /// checkpoint reach the next one's start, the last `end`, held back to what other streams
    /// still hold.
    fn send_held(&self, streams: Vec<Stream>, end: u64, mut emit: impl FnMut(Finished)) {
        let mut held: Vec<(u64, String, Vec<u8>, String)> = Vec::new();
        for s in streams {
            let mut group = s.group;
            if let Some(p) = s.line {
                // the line is as whole as it will get: it joins the record waiting if the rule says so
                let joins = match (&self.rule, &group) {
                    (Some(rule), Some(g)) => {
                        g.message.len() + 1 + p.message.len() <= self.limit
                            && matches!(rule.step(Some(g.state), &String::from_utf8_lossy(&p.message)), Step::Join(_))
                    }
                    _ => false,
                };
                match &mut group {
                    Some(g) if joins => {
                        g.message.push(b'\n');
                        g.message.extend_from_slice(&p.message);
                    }
                    _ => held.push((p.start, p.time, p.message, s.name.clone())),
                }
            }
            if let Some(g) = group {
                held.push((g.start, g.time, g.message, s.name));
            }
        }
        held.sort_by_key(|h| h.0);
        let limit = self.clip("", end);
        for k in 0..held.len() {
            let to = held.get(k + 1).map_or(limit, |next| next.0.min(limit));
            let (start, time, message, stream) = &held[k];
            emit(Finished { json: self.record(time, stream, message), start: *start, end: to, cut: false });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(format: ContainerFormat, lines: &[&str], limit: usize) -> Vec<(Value, u64, u64)> {
        run_with(format, lines, limit, None)
    }

    fn run_with(format: ContainerFormat, lines: &[&str], limit: usize, rule: Option<MultiLineRule>) -> Vec<(Value, u64, u64)> {
        let mut a =
            ContainerAssembler::new(format, &PodInfo { namespace: Some("ns".into()), ..PodInfo::default() }, limit, rule, Instant::now());
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

    #[test]
    fn a_java_trace_cut_into_partial_lines_and_interleaved_with_stdout_is_one_record() {
        let got = run_with(
            ContainerFormat::Cri,
            &[
                "2024-01-01T00:00:00.1Z stderr F java.lang.IllegalStateException: bo",
                "2024-01-01T00:00:00.2Z stdout F GET /a 200",
                "2024-01-01T00:00:00.3Z stderr P \tat com.example.App.ru",
                "2024-01-01T00:00:00.4Z stdout P GET /b",
                "2024-01-01T00:00:00.5Z stderr F n(App.java:10)",
                "2024-01-01T00:00:00.6Z stdout F  200",
                "2024-01-01T00:00:00.7Z stderr F Caused by: java.io.IOException: disk",
                "2024-01-01T00:00:00.8Z stderr F \t... 3 more",
                "2024-01-01T00:00:00.9Z stderr F INFO recovered",
            ],
            10_000,
            Some(MultiLineRule::Presets(vec![super::super::multiline::Preset::Java])),
        );
        let logs: Vec<(&str, &str)> = got.iter().map(|(v, _, _)| (v["stream"].as_str().unwrap(), v["log"].as_str().unwrap())).collect();
        assert_eq!(
            logs,
            [
                ("stdout", "GET /a 200"),
                ("stdout", "GET /b 200"),
                ("stderr", "java.lang.IllegalStateException: bo\n\tat com.example.App.run(App.java:10)\nCaused by: java.io.IOException: disk\n\t... 3 more"),
                ("stderr", "INFO recovered"),
            ]
        );
        assert_eq!((got[0].2, got[1].2), (0, 0), "stdout's records may not move the checkpoint past stderr's waiting trace");
        assert_eq!(got[2].0["time"], "2024-01-01T00:00:00.1Z", "a multi-line record has its first line's time");
        assert_eq!(got[2].1, 0);
    }

    #[test]
    fn a_quiet_stream_sends_its_waiting_record_at_its_own_timeout_while_another_stays_busy() {
        let t0 = Instant::now();
        let rule = MultiLineRule::Presets(vec![super::super::multiline::Preset::Indented]);
        let mut a = ContainerAssembler::new(ContainerFormat::Cri, &PodInfo::default(), 10_000, Some(rule), t0);
        let mut out: Vec<(String, u64, u64)> = Vec::new();
        let mut off = 0u64;
        let after = Duration::from_millis(1000);
        let mut push = |a: &mut ContainerAssembler, out: &mut Vec<(String, u64, u64)>, ms: u64, line: &str| {
            a.set_clock(t0 + Duration::from_millis(ms));
            let line = format!("{line}\n");
            let end = off + line.len() as u64;
            a.push_line(off, end, line.as_bytes(), |f| {
                let v: Value = serde_json::from_slice(&f.json).unwrap();
                out.push((v["log"].as_str().unwrap().to_string(), f.start, f.end))
            });
            off = end;
            a.flush_stale(t0 + Duration::from_millis(ms), after, end, |f| {
                let v: Value = serde_json::from_slice(&f.json).unwrap();
                out.push((v["log"].as_str().unwrap().to_string(), f.start, f.end))
            });
        };
        push(&mut a, &mut out, 0, "2024-01-01T00:00:00Z stderr F trace");
        push(&mut a, &mut out, 10, "2024-01-01T00:00:00Z stderr F   frame");
        for ms in (100..2000).step_by(300) {
            push(&mut a, &mut out, ms, "2024-01-01T00:00:00Z stdout F x");
        }
        let trace = out.iter().position(|(l, _, _)| l == "trace\n  frame").expect("the trace went at its timeout");
        assert!(trace < out.len() - 1, "stdout's lines did not keep it waiting: {out:?}");
        assert_eq!(a.next_flush(after), Some(t0 + Duration::from_millis(1900) + after), "only stdout's last line waits now");
    }

    proptest! {
        /// A record's bytes are what serde_json writes for the object, whatever the message
        /// holds (quotes, control characters, invalid UTF-8, non-ASCII).
        #[test]
        fn records_are_written_as_serde_json_writes_them(message in prop::collection::vec(any::<u8>(), 0..64), time in "[0-9TZ:\\\".-]{0,12}") {
            let pod = PodInfo { namespace: Some("ns\"1".into()), pod: Some("p".into()), ..PodInfo::default() };
            let a = ContainerAssembler::new(ContainerFormat::Cri, &pod, 1000, None, Instant::now());
            let mut want = serde_json::to_vec(&serde_json::json!({
                "time": time, "stream": "stderr", "log": String::from_utf8_lossy(&message), "kubernetes": pod.to_json(),
            })).unwrap();
            want.push(b'\n');
            prop_assert_eq!(a.record(&time, "stderr", &message), want);
        }
    }

    proptest! {
        /// With a multi-line rule, each stream's merged lines are grouped as the rule groups
        /// that stream alone, whatever the other stream does in between; ends stay safe.
        #[test]
        fn multi_line_records_group_each_stream_alone(parts in prop::collection::vec((0usize..2, any::<bool>(), any::<bool>(), "[a-z]{0,5}"), 1..40)) {
            let rule = MultiLineRule::Presets(vec![super::super::multiline::Preset::Indented]);
            let mut lines = Vec::new();
            let mut merged: [Vec<String>; 2] = [Vec::new(), Vec::new()];
            let mut current = [String::new(), String::new()];
            for (s, partial, indent, text) in &parts {
                let stream = ["stdout", "stderr"][*s];
                // an indented first part makes the merged line a continuation
                let text = if *indent && current[*s].is_empty() { format!(" {text}") } else { text.clone() };
                lines.push(format!("2024-01-01T00:00:00Z {stream} {} {text}", if *partial { "P" } else { "F" }));
                current[*s].push_str(&text);
                if !partial {
                    merged[*s].push(std::mem::take(&mut current[*s]));
                }
            }
            for (s, _) in ["stdout", "stderr"].iter().enumerate() {
                if parts.iter().rev().find(|(x, _, _, _)| *x == s).is_some_and(|(_, p, _, _)| *p) {
                    merged[s].push(current[s].clone());
                }
            }
            let got = run_with(ContainerFormat::Cri, &lines.iter().map(String::as_str).collect::<Vec<_>>(), 10_000, Some(rule));
            for (s, stream) in ["stdout", "stderr"].iter().enumerate() {
                let mut want: Vec<String> = Vec::new();
                for l in &merged[s] {
                    match want.last_mut() {
                        Some(last) if l.starts_with([' ', '\t']) => {
                            last.push('\n');
                            last.push_str(l);
                        }
                        _ => want.push(l.clone()),
                    }
                }
                let have: Vec<String> = got.iter().filter(|(v, _, _)| v["stream"] == *stream).map(|(v, _, _)| v["log"].as_str().unwrap().to_string()).collect();
                prop_assert_eq!(have, want);
            }
            let mut last = 0;
            for (k, (_, _, end)) in got.iter().enumerate() {
                prop_assert!(*end >= last, "ends never go back: {} after {}", end, last);
                last = *end;
                for (_, later_start, _) in &got[k + 1..] {
                    prop_assert!(later_start >= end, "an end of {} passes a later record starting at {}", end, later_start);
                }
            }
        }
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
