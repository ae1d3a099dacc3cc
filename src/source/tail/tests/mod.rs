//! The tail set driven in process: an in-memory file system, an instant the test moves, a
//! pipeline that records what it is handed and acknowledges when told. A model-based property
//! test applies random writes, rotations (rename and copytruncate), truncations, deletions,
//! scans, ticks, restarts and kills, and checks every line against what was written; table tests
//! pin each rule of the rotation table in ARCHITECTURE.md.

use super::*;

mod model;
mod table;
use crate::source::discover::{Found, Scan};
use crate::source::fs::{ReadAt, Stat};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

// ---- an in-memory file system -------------------------------------------------------------

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    links: u64,
    /// Descriptors open on it.
    open: usize,
}

#[derive(Default)]
struct Disk {
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    next_ino: u64,
}

#[derive(Clone, Default)]
struct MemFs(Rc<RefCell<Disk>>);

struct MemFile {
    disk: Rc<RefCell<Disk>>,
    ino: u64,
}

impl Drop for MemFile {
    fn drop(&mut self) {
        if let Some(i) = self.disk.borrow_mut().inodes.get_mut(&self.ino) {
            i.open -= 1;
        }
    }
}

fn key(ino: u64) -> FileKey {
    FileKey { dev: 1, ino }
}

impl ReadAt for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let disk = self.disk.borrow();
        let data = &disk.inodes[&self.ino].data;
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
}

impl OpenFile for MemFile {
    fn stat(&self) -> std::io::Result<Stat> {
        let disk = self.disk.borrow();
        let i = &disk.inodes[&self.ino];
        Ok(Stat { key: key(self.ino), len: i.data.len() as u64, links: i.links })
    }
}

impl FileSystem for MemFs {
    type File = MemFile;

    fn open(&self, path: &Path) -> std::io::Result<MemFile> {
        let mut disk = self.0.borrow_mut();
        let ino = *disk.names.get(path).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        disk.inodes.get_mut(&ino).expect("named inode").open += 1;
        Ok(MemFile { disk: self.0.clone(), ino })
    }

    fn keys_in(&self, dir: &Path) -> Vec<(PathBuf, FileKey)> {
        let disk = self.0.borrow();
        disk.names.iter().filter(|(p, _)| p.parent() == Some(dir)).map(|(p, ino)| (p.clone(), key(*ino))).collect()
    }

    fn canonicalize(&self, _: &Path) -> Option<PathBuf> {
        None
    }
}

impl MemFs {
    fn create(&self, path: &Path) -> u64 {
        let mut disk = self.0.borrow_mut();
        disk.next_ino += 1;
        let ino = disk.next_ino;
        disk.inodes.insert(ino, Inode { links: 1, ..Default::default() });
        if let Some(old) = disk.names.insert(path.to_path_buf(), ino) {
            disk.inodes.get_mut(&old).expect("named inode").links -= 1;
        }
        ino
    }

    fn ino(&self, path: &Path) -> Option<u64> {
        self.0.borrow().names.get(path).copied()
    }

    fn append(&self, ino: u64, bytes: &[u8]) {
        self.0.borrow_mut().inodes.get_mut(&ino).expect("inode").data.extend_from_slice(bytes);
    }

    fn len(&self, ino: u64) -> usize {
        self.0.borrow().inodes[&ino].data.len()
    }

    /// `from` takes the name `to` (the file there loses its name).
    fn rename(&self, from: &Path, to: &Path) {
        let mut disk = self.0.borrow_mut();
        let Some(ino) = disk.names.remove(from) else { return };
        if let Some(old) = disk.names.insert(to.to_path_buf(), ino) {
            disk.inodes.get_mut(&old).expect("named inode").links -= 1;
        }
    }

    fn unlink(&self, path: &Path) -> Option<u64> {
        let mut disk = self.0.borrow_mut();
        let ino = disk.names.remove(path)?;
        disk.inodes.get_mut(&ino).expect("named inode").links -= 1;
        Some(ino)
    }

    fn truncate(&self, ino: u64) {
        self.0.borrow_mut().inodes.get_mut(&ino).expect("inode").data.clear();
    }

    /// Descriptors open, on every file.
    fn open_count(&self) -> usize {
        self.0.borrow().inodes.values().map(|i| i.open).sum()
    }

    fn is_open(&self, ino: u64) -> bool {
        self.0.borrow().inodes[&ino].open > 0
    }

    fn links(&self, ino: u64) -> u64 {
        self.0.borrow().inodes[&ino].links
    }

    /// What a scan of the directory finds: `app.log`, and `app.log.1` when `rotated` matches.
    fn scan(&self, rotated: bool) -> Scan {
        let disk = self.0.borrow();
        let found = disk
            .names
            .iter()
            .filter(|(p, _)| matches(p, rotated))
            .map(|(p, ino)| Found {
                path: p.as_path().into(),
                key: key(*ino),
                size: Some(disk.inodes[ino].data.len() as u64),
                target_dir: None,
            })
            .collect();
        Scan { found, ..Default::default() }
    }
}

/// Whether the flow's glob matches `path`.
fn matches(path: &Path, rotated: bool) -> bool {
    path == Path::new(CURRENT) || (rotated && path == Path::new(ROTATED))
}

// ---- a pipeline that records, and a checkpoint store that commits at once -------------------

#[derive(Default)]
struct Recorder {
    /// Records handed over and not yet acknowledged: tail, piece, bytes, cost.
    pending: Vec<(u64, u64, Vec<u8>, u64)>,
    in_flight: u64,
    budget: u64,
    bytes_read: u64,
}

impl Pipeline for Recorder {
    fn piece(&mut self, acks: &mut AckTracker, tail: u64, _: &Path, piece: Piece<'_>) {
        match piece {
            Piece::Skipped { end, .. } => {
                acks.push(end, true);
            }
            Piece::Record(r) => {
                let seq = acks.push(r.end, false);
                let cost = r.end.saturating_sub(r.start).max(1);
                self.in_flight += cost;
                // the line without its newline
                self.pending.push((tail, seq, r.bytes.strip_suffix(b"\n").unwrap_or(r.bytes).to_vec(), cost));
            }
        }
    }

    fn room(&self) -> Room {
        Room {
            in_flight: self.in_flight,
            others_held: 0,
            budget: self.budget,
            share: self.budget,
            flow_in_flight: self.in_flight,
            backed_up: false,
        }
    }

    fn bytes_read(&mut self, n: u64) {
        self.bytes_read += n;
    }

    fn lines_split(&mut self, _: u64) {}
}

#[derive(Default)]
struct MemStore {
    rows: HashMap<FileKey, Row>,
    staged: Vec<Row>,
}

impl Checkpoints for MemStore {
    fn stage(&mut self, row: Row) {
        self.staged.push(row.clone());
        self.rows.insert(row.key, row);
    }

    fn delete(&mut self, _: &str, key: FileKey) {
        self.rows.remove(&key);
    }
}

fn flow(grace_ms: u64, rotated: bool) -> Flow {
    let glob = if rotated { "/logs/app.log*" } else { "/logs/app.log" };
    let yaml = format!(
        "checkpoint_file: /nonexistent/cp.db\nflows:\n  - id: m\n    path: {glob}\n    rotated_file_grace_ms: {grace_ms}\n    sink: {{type: stdout}}\n"
    );
    let mut cfg = crate::config::native::load(Path::new("/nonexistent/logferry.yaml"), &yaml).expect("the model's configuration loads");
    cfg.flows.remove(0)
}

const GRACE_MS: u64 = 3_000;
const BUF: usize = 4096;

/// One agent over the model file system, with the clock the test moves.
struct Agent {
    fs: MemFs,
    tails: TailSet<MemFs>,
    pipe: Recorder,
    store: MemStore,
    now: Instant,
    buf: Vec<u8>,
    /// The glob matches the rotated name too.
    rotated: bool,
}

impl Agent {
    fn start(fs: &MemFs, store: MemStore, now: Instant, budget: u64, rotated: bool) -> Agent {
        let saved: Vec<Row> = store.rows.values().cloned().collect();
        let first_start = saved.is_empty();
        let tails = TailSet::new(fs.clone(), flow(GRACE_MS, rotated), saved, HashMap::new(), first_start, now);
        Agent { fs: fs.clone(), tails, pipe: Recorder { budget, ..Default::default() }, store, now, buf: vec![0; BUF], rotated }
    }

    fn scan(&mut self) {
        let scan = self.fs.scan(self.rotated);
        self.tails.on_scan(self.now, &scan, &mut self.store);
    }

    fn step(&mut self) {
        self.tails.read(self.now, &mut self.buf, &mut self.pipe, &mut self.store);
        self.tails.tick(self.now, &mut self.pipe, &mut self.store);
    }

    /// Acknowledges the first `n` pending records (in any order the sink answers them, the
    /// checkpoint waits for the earlier ones); the delivered records.
    fn ack(&mut self, n: usize, reverse: bool) -> Vec<Vec<u8>> {
        let n = n.min(self.pipe.pending.len());
        let mut done: Vec<_> = self.pipe.pending.drain(..n).collect();
        if reverse {
            done.reverse();
        }
        let mut out = Vec::new();
        for (tail, seq, bytes, cost) in done {
            self.pipe.in_flight -= cost;
            self.tails.ack(tail, [seq], &mut self.store);
            out.push(bytes);
        }
        out
    }

    fn notify(&mut self, ino: u64) {
        let names: Vec<PathBuf> = self.fs.0.borrow().names.iter().filter(|(_, i)| **i == ino).map(|(p, _)| p.clone()).collect();
        for p in names {
            self.tails.changed(&p);
        }
    }
}

const CURRENT: &str = "/logs/app.log";
const ROTATED: &str = "/logs/app.log.1";

fn flow_with(grace_ms: u64, rotated: bool, extra: &str) -> Flow {
    let glob = if rotated { "/logs/app.log*" } else { "/logs/app.log" };
    let yaml = format!(
        "checkpoint_file: /nonexistent/cp.db\nflows:\n  - id: m\n    path: {glob}\n    rotated_file_grace_ms: {grace_ms}\n{extra}    sink: {{type: stdout}}\n"
    );
    let mut cfg = crate::config::native::load(Path::new("/nonexistent/logferry.yaml"), &yaml).expect("the configuration loads");
    cfg.flows.remove(0)
}

impl Agent {
    fn with_flow(fs: &MemFs, flow: Flow, store: MemStore, now: Instant) -> Agent {
        let saved: Vec<Row> = store.rows.values().cloned().collect();
        let first_start = saved.is_empty();
        let rotated = flow.sources.iter().any(|s| format!("{s:?}").contains("app.log*"));
        let tails = TailSet::new(fs.clone(), flow, saved, HashMap::new(), first_start, now);
        Agent { fs: fs.clone(), tails, pipe: Recorder { budget: 1 << 30, ..Default::default() }, store, now, buf: vec![0; BUF], rotated }
    }

    /// Scans, reads, runs the timers and acknowledges everything: the lines delivered.
    fn pass(&mut self) -> Vec<String> {
        self.scan();
        self.step();
        self.ack(usize::MAX, false).into_iter().map(|b| String::from_utf8_lossy(&b).into_owned()).collect()
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }
}

fn write(fs: &MemFs, path: &str, text: &str) -> u64 {
    let ino = fs.ino(Path::new(path)).unwrap_or_else(|| fs.create(Path::new(path)));
    fs.append(ino, text.as_bytes());
    ino
}
