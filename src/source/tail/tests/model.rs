//! The model-based property test: random sequences of writes, rotations, truncations,
//! deletions, scans, ticks, acknowledgements, restarts and kills, every line checked against
//! what was written.

use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
pub(super) enum Op {
    /// Lines to the current file (created when missing); `partial` leaves the last one open.
    Write {
        lines: u8,
        partial: bool,
    },
    /// logrotate `create`: app.log becomes app.log.1 (the old app.log.1 is deleted).
    Rename,
    /// A slow writer appends to the file it opened before the rename.
    LateWrite {
        lines: u8,
    },
    /// logrotate `copytruncate`: app.log is copied to app.log.1, then truncated.
    CopyTruncate,
    /// Truncated in place with nothing kept.
    Truncate,
    Delete,
    Scan,
    Tick {
        ms: u16,
    },
    Ack {
        n: u8,
        reverse: bool,
    },
    /// Stopped cleanly: everything handed over is acknowledged and saved.
    Restart,
    /// SIGKILL: what was handed over and not acknowledged is lost; saved positions stay.
    Kill,
    /// Descriptors of files read to their end are closed (idle at once, or over the limit).
    CloseIdle,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..6, any::<bool>()).prop_map(|(lines, partial)| Op::Write { lines, partial }),
        2 => Just(Op::Rename),
        1 => (1u8..4).prop_map(|lines| Op::LateWrite { lines }),
        2 => Just(Op::CopyTruncate),
        1 => Just(Op::Truncate),
        1 => Just(Op::Delete),
        3 => Just(Op::Scan),
        5 => (0u16..4000).prop_map(|ms| Op::Tick { ms }),
        4 => (0u8..12, any::<bool>()).prop_map(|(n, reverse)| Op::Ack { n, reverse }),
        1 => Just(Op::Restart),
        1 => Just(Op::Kill),
        2 => Just(Op::CloseIdle),
    ]
}

/// What was written, and what the agent may be excused for not delivering.
#[derive(Default)]
struct Oracle {
    /// Lines by text, with how often they were delivered.
    delivered: HashMap<Vec<u8>, u32>,
    /// Every complete line written.
    written: Vec<Vec<u8>>,
    /// Lines lost through no fault of the agent: truncated before they were read, deleted
    /// before it opened the file, in deleted files when it was killed.
    excused: HashSet<Vec<u8>>,
    /// Each inode's lines (text, end offset).
    lines: HashMap<u64, Vec<(Vec<u8>, u64)>>,
    /// The agent was restarted or killed: a line may come twice.
    restarted: bool,
    next_line: u32,
}

impl Oracle {
    fn undelivered_in(&self, ino: u64) -> Vec<Vec<u8>> {
        let lines = self.lines.get(&ino).map(Vec::as_slice).unwrap_or(&[]);
        lines.iter().filter(|(l, _)| !self.delivered.contains_key(l)).map(|(l, _)| l.clone()).collect()
    }

    /// Lines no file the glob finds holds any more.
    fn unreachable(&self, fs: &MemFs, candidates: Vec<Vec<u8>>, rotated: bool) -> Vec<Vec<u8>> {
        let named: HashSet<u64> = fs.0.borrow().names.iter().filter(|(p, _)| matches(p, rotated)).map(|(_, i)| *i).collect();
        candidates
            .into_iter()
            .filter(|l| !named.iter().any(|i| self.lines.get(i).is_some_and(|ls| ls.iter().any(|(x, _)| x == l))))
            .collect()
    }
}

pub(super) struct Model {
    fs: MemFs,
    agent: Agent,
    oracle: Oracle,
    /// The file the writer holds open, and the one it held before the last rename.
    writer: Option<u64>,
    previous_writer: Option<u64>,
    /// A line begun and not finished, in the writer's file.
    open_line: Option<Vec<u8>>,
    budget: u64,
    rotated: bool,
    /// When each file was last written.
    last_write: HashMap<u64, Instant>,
    /// The descriptors the agent may hold.
    file_limit: usize,
}

impl Model {
    pub(super) fn new(budget: u64, rotated: bool, file_limit: usize) -> Model {
        let fs = MemFs::default();
        let mut agent = Agent::start(&fs, MemStore::default(), Instant::now(), budget, rotated);
        agent.tails.set_file_limit(file_limit);
        let oracle = Oracle::default();
        Model {
            fs,
            agent,
            oracle,
            writer: None,
            previous_writer: None,
            open_line: None,
            budget,
            rotated,
            last_write: HashMap::new(),
            file_limit,
        }
    }

    fn line(&mut self) -> Vec<u8> {
        self.oracle.next_line += 1;
        let n = self.oracle.next_line;
        // lengths vary so that reads end in the middle of lines
        format!("line {n:05} {}", "x".repeat((n as usize * 37) % 150)).into_bytes()
    }

    fn write_lines(&mut self, ino: u64, lines: u8, partial: bool) {
        if let Some(rest) = self.open_line.take() {
            self.finish_line(ino, rest);
        }
        for k in 0..lines {
            let line = self.line();
            if partial && k + 1 == lines {
                let cut = line.len() / 2;
                self.fs.append(ino, &line[..cut]);
                self.open_line = Some(line);
            } else {
                self.fs.append(ino, &line);
                self.fs.append(ino, b"\n");
                self.record_line(ino, line);
            }
        }
        self.last_write.insert(ino, self.agent.now);
        self.agent.notify(ino);
    }

    fn finish_line(&mut self, ino: u64, line: Vec<u8>) {
        let cut = line.len() / 2;
        self.fs.append(ino, &line[cut..]);
        self.fs.append(ino, b"\n");
        self.record_line(ino, line);
    }

    fn record_line(&mut self, ino: u64, line: Vec<u8>) {
        let end = self.fs.len(ino) as u64;
        self.oracle.lines.entry(ino).or_default().push((line.clone(), end));
        self.oracle.written.push(line);
    }

    /// Rotations and truncations happen between lines.
    fn close_line(&mut self) {
        if let (Some(line), Some(ino)) = (self.open_line.take(), self.writer) {
            self.finish_line(ino, line);
            self.agent.notify(ino);
        }
    }

    fn deliver(&mut self, records: Vec<Vec<u8>>) {
        for r in records {
            *self.oracle.delivered.entry(r).or_default() += 1;
        }
    }

    /// A file loses its last name the glob finds: if the agent does not hold it open, what it
    /// did not deliver of it is gone (unless a copy holds it).
    fn out_of_reach(&mut self, ino: u64) {
        let globbed = self.fs.0.borrow().names.iter().any(|(p, i)| *i == ino && matches(p, self.rotated));
        if !globbed && !self.fs.is_open(ino) {
            let lost = self.oracle.unreachable(&self.fs, self.oracle.undelivered_in(ino), self.rotated);
            self.oracle.excused.extend(lost);
        }
    }

    pub(super) fn apply(&mut self, op: &Op) {
        let current = Path::new(CURRENT);
        let rotated = Path::new(ROTATED);
        match *op {
            Op::Write { lines, partial } => {
                let ino = match self.writer.filter(|i| self.fs.links(*i) > 0 && self.fs.ino(current) == Some(*i)) {
                    Some(i) => i,
                    None => {
                        self.open_line = None;
                        let i = self.fs.create(current);
                        self.writer = Some(i);
                        i
                    }
                };
                self.write_lines(ino, lines, partial);
            }
            Op::Rename => {
                self.close_line();
                let old = self.fs.ino(rotated);
                if self.fs.ino(current).is_some() {
                    self.fs.rename(current, rotated);
                    self.previous_writer = self.writer.take();
                    if let Some(o) = old {
                        self.out_of_reach(o);
                    }
                    if let Some(moved) = self.previous_writer {
                        self.out_of_reach(moved);
                    }
                }
            }
            Op::LateWrite { lines } => {
                // a slow writer writes within the grace period (what comes later is not promised)
                let within_grace =
                    |i: &u64| self.last_write.get(i).is_some_and(|t| self.agent.now < *t + Duration::from_millis(GRACE_MS - 500));
                if let Some(ino) = self.previous_writer.filter(|i| self.fs.links(*i) > 0 && within_grace(i)) {
                    if self.open_line.is_some() {
                        return;
                    }
                    self.write_lines(ino, lines, false);
                    self.out_of_reach(ino);
                }
            }
            Op::CopyTruncate => {
                self.close_line();
                let Some(ino) = self.fs.ino(current) else { return };
                if !self.rotated {
                    // the copy is not tailed: what was not read of the original is not shipped
                    let handed: HashSet<Vec<u8>> = self.agent.pipe.pending.iter().map(|p| p.2.clone()).collect();
                    let lost: Vec<Vec<u8>> = self.oracle.undelivered_in(ino).into_iter().filter(|l| !handed.contains(l)).collect();
                    self.oracle.excused.extend(lost);
                }
                let old = self.fs.ino(rotated);
                let copy = self.fs.create(rotated);
                let data = self.fs.0.borrow().inodes[&ino].data.clone();
                self.fs.append(copy, &data);
                let lines = self.oracle.lines.get(&ino).cloned().unwrap_or_default();
                self.oracle.lines.insert(copy, lines);
                if let Some(o) = old {
                    self.out_of_reach(o);
                }
                self.fs.truncate(ino);
                self.oracle.lines.insert(ino, Vec::new());
                self.agent.notify(copy);
                self.agent.notify(ino);
            }
            Op::Truncate => {
                self.close_line();
                let Some(ino) = self.fs.ino(current) else { return };
                // what the agent had not read is gone: lines neither delivered nor handed over
                let handed: HashSet<Vec<u8>> = self.agent.pipe.pending.iter().map(|p| p.2.clone()).collect();
                let lost: Vec<Vec<u8>> = self.oracle.undelivered_in(ino).into_iter().filter(|l| !handed.contains(l)).collect();
                let lost = self.oracle.unreachable_except(&self.fs, lost, ino, self.rotated);
                self.oracle.excused.extend(lost);
                self.fs.truncate(ino);
                self.oracle.lines.insert(ino, Vec::new());
                self.agent.notify(ino);
            }
            Op::Delete => {
                self.close_line();
                if let Some(ino) = self.fs.unlink(current) {
                    self.writer = None;
                    self.out_of_reach(ino);
                }
            }
            Op::Scan => self.agent.scan(),
            Op::Tick { ms } => {
                self.agent.now += Duration::from_millis(ms as u64);
                if self.agent.tails.scan_due(self.agent.now) {
                    self.agent.scan();
                }
                self.agent.step();
            }
            Op::Ack { n, reverse } => {
                let done = self.agent.ack(n as usize, reverse);
                self.deliver(done);
            }
            Op::Restart => {
                self.agent.tails.flush_orphans(&mut self.agent.pipe);
                let done = self.agent.ack(usize::MAX, false);
                self.deliver(done);
                self.restart();
            }
            Op::Kill => self.restart(),
            Op::CloseIdle => self.agent.tails.close_idle(self.agent.now, Duration::ZERO),
        }
        self.agent.step();
        let open = self.fs.open_count();
        assert!(open <= self.file_limit, "{open} descriptors open, more than the limit of {}", self.file_limit);
        assert_eq!(open, self.agent.tails.open_files(), "descriptors open and counted differ");
        assert!(self.agent.tails.paths_lead_to_known_files(), "a path still leads to a file let go");
        self.check_checkpoints();
    }

    fn restart(&mut self) {
        self.oracle.restarted = true;
        let now = self.agent.now + Duration::from_millis(100);
        let store = std::mem::take(&mut self.agent.store);
        let fs = self.fs.clone();
        // the old agent's descriptors close with it
        self.agent = Agent::start(&fs, store, now, self.budget, self.rotated);
        self.agent.tails.set_file_limit(self.file_limit);
        if !self.rotated {
            // the new agent does not know the rotated file: a slow writer's lines there are not
            // promised
            self.previous_writer = None;
        }
        let candidates: Vec<Vec<u8>> = self.oracle.written.iter().filter(|l| !self.oracle.delivered.contains_key(*l)).cloned().collect();
        let lost = self.oracle.unreachable(&self.fs, candidates, self.rotated);
        self.oracle.excused.extend(lost);
        self.agent.scan();
    }

    /// Every staged position is at the end of a line, and every line before it was delivered
    /// (or is excused).
    fn check_checkpoints(&mut self) {
        for row in std::mem::take(&mut self.agent.store.staged) {
            let lines = self.oracle.lines.get(&row.key.ino).map(Vec::as_slice).unwrap_or(&[]);
            for (line, end) in lines.iter().filter(|(_, end)| *end <= row.offset) {
                assert!(
                    self.oracle.delivered.contains_key(line) || self.oracle.excused.contains(line),
                    "the checkpoint of inode {} moved to {} past {:?} (ending at {end}), never delivered",
                    row.key.ino,
                    row.offset,
                    String::from_utf8_lossy(line)
                );
            }
        }
    }

    /// The writer stops; time passes, scans run and every record is acknowledged until nothing
    /// is left to read.
    pub(super) fn drain(&mut self) {
        self.close_line();
        let second = |m: &mut Model| {
            m.agent.now += Duration::from_millis(1_000);
            m.agent.scan();
            m.agent.step();
            let done = m.agent.ack(usize::MAX, false);
            m.deliver(done);
            m.check_checkpoints();
        };
        (0..40).for_each(|_| second(self));
        // past every copy wait and grace period
        self.agent.now += Duration::from_millis(GRACE_MS * 3 + COPY_WAIT.as_millis() as u64);
        (0..10).for_each(|_| second(self));
    }

    pub(super) fn verify(&self, ops: &[Op]) -> Result<(), TestCaseError> {
        let written: HashSet<&Vec<u8>> = self.oracle.written.iter().collect();
        for (line, n) in &self.oracle.delivered {
            // the start of a line whose end was lost (written after what was read, in a copy
            // deleted unseen) is what the file held: sent as its unterminated last line
            let start_of_lost = || self.oracle.excused.iter().any(|l| l.len() > line.len() && l.starts_with(line));
            prop_assert!(
                written.contains(line) || start_of_lost(),
                "delivered something never written (a cut or merged line): {:?}\n{ops:?}",
                String::from_utf8_lossy(line)
            );
            prop_assert!(
                *n == 1 || self.oracle.restarted,
                "delivered {n} times without a restart: {:?}\n{ops:?}",
                String::from_utf8_lossy(line)
            );
        }
        for line in &self.oracle.written {
            prop_assert!(
                self.oracle.delivered.contains_key(line) || self.oracle.excused.contains(line),
                "never delivered: {:?}\n{ops:?}",
                String::from_utf8_lossy(line)
            );
        }
        Ok(())
    }
}

impl Oracle {
    /// Like [`Oracle::unreachable`], not counting inode `except` (about to lose them).
    fn unreachable_except(&self, fs: &MemFs, candidates: Vec<Vec<u8>>, except: u64, rotated: bool) -> Vec<Vec<u8>> {
        let named: HashSet<u64> =
            fs.0.borrow().names.iter().filter(|(p, i)| matches(p, rotated) && **i != except).map(|(_, i)| *i).collect();
        candidates
            .into_iter()
            .filter(|l| !named.iter().any(|i| self.lines.get(i).is_some_and(|ls| ls.iter().any(|(x, _)| x == l))))
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// Random writes, rotations, truncations, deletions, scans, ticks, acknowledgements,
    /// restarts and kills: every line written is delivered, once unless the agent was
    /// restarted, nothing is delivered that was not written, and no checkpoint passes a line
    /// that was not delivered. Lines the agent could not have read are excused: truncated
    /// before it read them, deleted before it opened the file, in deleted files when it stopped.
    #[test]
    fn every_line_survives_rotation_truncation_and_restarts_once_and_whole(
        ops in proptest::collection::vec(op(), 1..60),
        budget in prop_oneof![Just(1u64 << 30), 256u64..4096],
        rotated in any::<bool>(),
        file_limit in prop_oneof![Just(usize::MAX), 1usize..3],
    ) {
        let mut m = Model::new(budget, rotated, file_limit);
        for op in &ops {
            m.apply(op);
        }
        m.drain();
        m.verify(&ops)?;
    }
}
