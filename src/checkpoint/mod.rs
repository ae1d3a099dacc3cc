//! The checkpoint store: one SQLite database (WAL), one row per flow and file identity.
//!
//! Guarantees:
//! - a row holds the flow, the file's device and inode, its last path, the committed offset, the
//!   fingerprint of its first bytes, a hash of the bytes just before the offset, and the time;
//! - writes are staged in memory and committed together ([`Store::commit`]), so the database sees
//!   one transaction per commit interval, not one per record; a failed commit keeps the staged
//!   rows for the next attempt;
//! - the schema version lives in `user_version`; [`Store::open`] migrates older versions and
//!   refuses newer ones;
//! - every error names the database, what was being done and the likely cause (damaged, locked,
//!   read-only, disk full);
//! - an agent holds an exclusive lock on `<database>.lock` (with its pid inside) for as long as the
//!   store is open: a second agent on the same database is refused and told who holds it; a
//!   database that cannot be written is refused at open, not discovered at the first commit.
//!
//! It does not decide offsets: callers stage what the acknowledgement order allows.

use crate::source::identity::{FileKey, Fingerprint};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
pub mod acks;
pub mod committer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

const SCHEMA_VERSION: i64 = 1;

/// One file's position in one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub flow: String,
    pub key: FileKey,
    pub path: String,
    pub offset: u64,
    pub fingerprint: Fingerprint,
    /// Length and hash of the bytes just before `offset`.
    pub tail: (u64, u64),
    /// Seconds since the Unix epoch.
    pub updated_at: i64,
}

/// A database operation that failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint database {}: {action} failed: {source}{}", path.display(), hint(source))]
    Sqlite {
        path: PathBuf,
        action: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("checkpoint database {}: {action} failed: {source}{}", path.display(), io_hint(source))]
    Io {
        path: PathBuf,
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint database {}: its schema version {found} is newer than this logferry's {supported}: run the newer logferry (or move the file aside to start again without positions)", path.display())]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    #[error("checkpoint database {}: another logferry ({holder}) is using it; two agents on one database would ship every line twice. Stop the other one, or give this one its own checkpoint_file", path.display())]
    InUse { path: PathBuf, holder: String },
    #[error("checkpoint database {}: it can only be read, not written, so no position would ever be saved: check the file's and its directory's ownership and permissions and that the file system is writable", path.display())]
    ReadOnly { path: PathBuf },
}

fn hint(e: &rusqlite::Error) -> &'static str {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            "; the file is damaged: move it aside and start again (files without a position then start at initialPosition)"
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "; another process holds it: is another logferry running on the same database?"
        }
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            "; the agent cannot write it: check the directory's ownership and permissions and that the file system is writable"
        }
        Some(ErrorCode::DiskFull) => "; the disk is full",
        _ => "",
    }
}

fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            "; the agent cannot write there: check the directory's ownership and permissions and that the file system is writable"
        }
        std::io::ErrorKind::StorageFull => "; the disk is full",
        _ => "",
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    staged: HashMap<(String, FileKey), Row>,
    deleted: Vec<(String, FileKey)>,
    /// Metadata written with the next commit (journal cursors).
    staged_meta: HashMap<String, String>,
    /// The exclusive lock on `<database>.lock`, held while the store is open for the agent.
    _lock: Option<std::fs::File>,
    /// A commit of a large stage failed: the next is left to the committer ([`Store::commit_if_large`]).
    large_commit_failed: bool,
}

/// Rows staged past which they are committed at once ([`Store::commit_if_large`]).
pub const STAGE_COMMIT_AT: usize = 2048;

fn i(v: u64) -> i64 {
    v as i64
}

fn u(v: i64) -> u64 {
    v as u64
}

/// The lock file beside a checkpoint database.
/// Seconds since 1970, for `updated_at` and pruning.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Every file SQLite and the lock keep for the database `db`: the database, its WAL, its shared
/// memory index, its rollback journal and the lock file.
pub fn database_files(db: &Path) -> Vec<PathBuf> {
    let mut out = vec![db.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal", ".lock"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        out.push(PathBuf::from(p));
    }
    out
}

/// Takes the exclusive lock of the database `db`, writing this process's id into the lock file;
/// when another process holds it, says which.
fn lock(db: &Path) -> Result<std::fs::File, CheckpointError> {
    use std::io::{Read, Seek, Write};
    let path = lock_path(db);
    let io = |action: &str| {
        let path = db.to_path_buf();
        let action = format!("{action} {}", lock_path(&path).display());
        move |source| CheckpointError::Io { path, action, source }
    };
    let mut f =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io("opening the lock file"))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let holder = match pid.trim() {
                "" => "a process that did not write its id".to_string(),
                p => format!("pid {p}"),
            };
            return Err(CheckpointError::InUse { path: db.to_path_buf(), holder });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io("locking")(e)),
    }
    f.set_len(0).and_then(|()| f.rewind()).and_then(|()| writeln!(f, "{}", std::process::id())).map_err(io("writing the lock file"))?;
    Ok(f)
}

impl Store {
    /// Opens the database for the agent: takes its exclusive lock (a second agent on the same
    /// database is refused with the holder's pid), creates the directory and the database when
    /// needed, migrates the schema and proves that it can write.
    pub fn open(path: &Path) -> Result<Store, CheckpointError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
                path: path.to_path_buf(),
                action: format!("creating the directory {}", dir.display()),
                source,
            })?;
        }
        let lock = lock(path)?;
        // SQLite says "read-only" in several places (the file, its -shm, its directory): one
        // error, with what to check
        let read_only = |e: CheckpointError| match &e {
            CheckpointError::Sqlite { source, .. } if source.sqlite_error_code() == Some(ErrorCode::ReadOnly) => {
                CheckpointError::ReadOnly { path: path.to_path_buf() }
            }
            _ => e,
        };
        let mut store = Store::open_unlocked(path).map_err(read_only)?;
        store._lock = Some(lock);
        if store.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(CheckpointError::ReadOnly { path: path.to_path_buf() });
        }
        // a database the agent can open but not write would save no position, ever
        store.set_meta("opened_at", &now_secs().to_string()).map_err(read_only)?;
        Ok(store)
    }

    /// Opens the database without taking its lock, to read positions (`logferry checkpoints`)
    /// while an agent may be running.
    pub fn open_unlocked(path: &Path) -> Result<Store, CheckpointError> {
        let err = |action: &str| {
            let path = path.to_path_buf();
            let action = action.to_string();
            move |source| CheckpointError::Sqlite { path, action, source }
        };
        let conn = Connection::open(path).map_err(err("opening"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err("configuring"))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err("reading the schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(CheckpointError::NewerSchema { path: path.to_path_buf(), found: version, supported: SCHEMA_VERSION });
        }
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).map_err(err("enabling WAL"))?;
        // a page cache of 512 KiB, not SQLite's 2 MB: rows are written in batches and read at
        // start only, and the operating system caches the file too (100,000 files' rows are 10 MB)
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA cache_size=-512;").map_err(err("configuring"))?;
        if version < 1 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS logferry_checkpoints (
                    flow TEXT NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
                    path TEXT NOT NULL, offset INTEGER NOT NULL,
                    fp_len INTEGER NOT NULL, fp_hash INTEGER NOT NULL,
                    tail_len INTEGER NOT NULL, tail_hash INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    PRIMARY KEY (flow, dev, ino));
                 CREATE TABLE IF NOT EXISTS logferry_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 PRAGMA user_version = 1;
                 COMMIT;",
            )
            .map_err(err("creating the schema"))?;
        }
        conn.query_row("SELECT count(*) FROM logferry_checkpoints", [], |_| Ok(())).map_err(err("reading checkpoints"))?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            staged: HashMap::new(),
            deleted: Vec::new(),
            staged_meta: HashMap::new(),
            _lock: None,
            large_commit_failed: false,
        })
    }

    /// How long a write waits for a lock held by another process before it fails.
    pub fn set_lock_wait(&self, wait: std::time::Duration) -> Result<(), CheckpointError> {
        self.conn.busy_timeout(wait).map_err(self.error("configuring"))
    }

    fn error(&self, action: &str) -> impl FnOnce(rusqlite::Error) -> CheckpointError + '_ {
        let action = action.to_string();
        move |source| CheckpointError::Sqlite { path: self.path.clone(), action, source }
    }

    /// Every committed row, optionally of one flow.
    pub fn rows(&self, flow: Option<&str>) -> Result<Vec<Row>, CheckpointError> {
        let mut stmt = self
            .conn
            .prepare("SELECT flow, dev, ino, path, offset, fp_len, fp_hash, tail_len, tail_hash, updated_at FROM logferry_checkpoints WHERE ?1 IS NULL OR flow = ?1 ORDER BY flow, path")
            .map_err(self.error("reading checkpoints"))?;
        let rows = stmt
            .query_map(params![flow], |r| {
                Ok(Row {
                    flow: r.get(0)?,
                    key: FileKey { dev: u(r.get(1)?), ino: u(r.get(2)?) },
                    path: r.get(3)?,
                    offset: u(r.get(4)?),
                    fingerprint: Fingerprint { len: u(r.get(5)?), hash: u(r.get(6)?) },
                    tail: (u(r.get(7)?), u(r.get(8)?)),
                    updated_at: r.get(9)?,
                })
            })
            .map_err(self.error("reading checkpoints"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.error("reading checkpoints"))
    }

    /// Stages a row; the latest staged row of a file wins.
    pub fn stage(&mut self, row: Row) {
        let k = (row.flow.clone(), row.key);
        self.deleted.retain(|d| d != &k);
        self.staged.insert(k, row);
    }

    /// Commits at once when [`STAGE_COMMIT_AT`] rows or more are staged: a first scan of 100,000
    /// files stages a row for each, and the stage stays small (a commit sooner is as true). A
    /// failure is left to the committer, which retries, logs and counts it; none is tried here
    /// again before a commit succeeds.
    pub fn commit_if_large(&mut self) {
        if self.staged.len() < STAGE_COMMIT_AT || self.large_commit_failed {
            return;
        }
        if self.commit().is_err() {
            self.large_commit_failed = true;
        }
    }

    pub fn stage_delete(&mut self, flow: &str, key: FileKey) {
        let k = (flow.to_string(), key);
        self.staged.remove(&k);
        self.deleted.push(k);
    }

    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty() || !self.deleted.is_empty() || !self.staged_meta.is_empty()
    }

    /// Stages a metadata value (a journal source's cursor) for the next commit.
    pub fn stage_meta(&mut self, key: &str, value: &str) {
        self.staged_meta.insert(key.to_string(), value.to_string());
    }

    /// Writes everything staged in one transaction; on failure nothing is lost from the stage.
    pub fn commit(&mut self) -> Result<usize, CheckpointError> {
        if !self.has_staged() {
            return Ok(0);
        }
        let n = self.staged.len() + self.deleted.len() + self.staged_meta.len();
        let tx = self.conn.transaction().map_err(|source| CheckpointError::Sqlite {
            path: self.path.clone(),
            action: "writing checkpoints".into(),
            source,
        })?;
        let result = (|| {
            {
                let mut put = tx.prepare_cached(
                    "INSERT OR REPLACE INTO logferry_checkpoints (flow, dev, ino, path, offset, fp_len, fp_hash, tail_len, tail_hash, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for r in self.staged.values() {
                    put.execute(params![
                        r.flow,
                        i(r.key.dev),
                        i(r.key.ino),
                        r.path,
                        i(r.offset),
                        i(r.fingerprint.len),
                        i(r.fingerprint.hash),
                        i(r.tail.0),
                        i(r.tail.1),
                        r.updated_at
                    ])?;
                }
                let mut del = tx.prepare_cached("DELETE FROM logferry_checkpoints WHERE flow = ?1 AND dev = ?2 AND ino = ?3")?;
                for (flow, key) in &self.deleted {
                    del.execute(params![flow, i(key.dev), i(key.ino)])?;
                }
                let mut meta = tx.prepare_cached("INSERT OR REPLACE INTO logferry_meta (key, value) VALUES (?1, ?2)")?;
                for (k, v) in &self.staged_meta {
                    meta.execute(params![k, v])?;
                }
            }
            tx.commit()
        })();
        match result {
            Ok(()) => {
                self.large_commit_failed = false;
                // the room a start staging every file's row took is given back
                self.staged = HashMap::new();
                self.deleted = Vec::new();
                self.staged_meta.clear();
                Ok(n)
            }
            Err(source) => Err(CheckpointError::Sqlite { path: self.path.clone(), action: "writing checkpoints".into(), source }),
        }
    }

    /// Removes rows not updated for `days` days; returns how many.
    /// Forgets the rows not updated for `days`, except those whose file is `still_there` (a file
    /// that was simply not written to keeps its position: forgetting it would send it again).
    pub fn prune(&mut self, days: u32, now: i64, still_there: impl Fn(&Row) -> bool) -> Result<usize, CheckpointError> {
        let cutoff = now - i64::from(days) * 86_400;
        let old: Vec<Row> = self.rows(None)?.into_iter().filter(|r| r.updated_at < cutoff && !still_there(r)).collect();
        for r in &old {
            self.stage_delete(&r.flow, r.key);
        }
        self.commit()?;
        Ok(old.len())
    }

    /// Forgets a flow's rows, or one file's.
    pub fn reset(&mut self, flow: &str, path: Option<&str>) -> Result<usize, CheckpointError> {
        self.conn
            .execute("DELETE FROM logferry_checkpoints WHERE flow = ?1 AND (?2 IS NULL OR path = ?2)", params![flow, path])
            .map_err(self.error("removing checkpoints"))
    }

    /// A metadata value, staged or committed.
    pub fn meta(&self, key: &str) -> Result<Option<String>, CheckpointError> {
        if let Some(v) = self.staged_meta.get(key) {
            return Ok(Some(v.clone()));
        }
        self.conn
            .query_row("SELECT value FROM logferry_meta WHERE key = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(self.error("reading metadata"))
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), CheckpointError> {
        self.conn
            .execute("INSERT OR REPLACE INTO logferry_meta (key, value) VALUES (?1, ?2)", params![key, value])
            .map(|_| ())
            .map_err(self.error("writing metadata"))
    }
}

/// One position recorded by the Kinesis Agent (`FILE_CHECKPOINTS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisAgentPosition {
    pub flow: String,
    pub path: String,
    pub key: FileKey,
    pub offset: u64,
}

/// Reads the Kinesis Agent's checkpoint table, if the database exists and has one.
pub fn read_kinesis_agent_checkpoints(path: &Path) -> Result<Vec<KinesisAgentPosition>, CheckpointError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let err = |action: &str| {
        let path = path.to_path_buf();
        let action = action.to_string();
        move |source| CheckpointError::Sqlite { path, action, source }
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(err("opening the Kinesis Agent's checkpoints"))?;
    let has: Option<String> = conn
        .query_row("SELECT name FROM sqlite_master WHERE type='table' AND name='FILE_CHECKPOINTS'", [], |r| r.get(0))
        .optional()
        .map_err(err("reading the Kinesis Agent's checkpoints"))?;
    if has.is_none() {
        return Ok(Vec::new());
    }
    let mut stmt =
        conn.prepare("SELECT flow, path, fileId, offset FROM FILE_CHECKPOINTS").map_err(err("reading the Kinesis Agent's checkpoints"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?)))
        .map_err(err("reading the Kinesis Agent's checkpoints"))?;
    let mut out = Vec::new();
    for r in rows {
        let (flow, path, id, offset) = r.map_err(err("reading the Kinesis Agent's checkpoints"))?;
        if let Some(key) = FileKey::parse_kinesis_agent_id(&id) {
            out.push(KinesisAgentPosition { flow, path, key, offset: offset.max(0) as u64 });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_stage_is_committed_as_it_fills_so_a_first_scan_of_many_files_stays_small() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cp.db");
        let mut s = Store::open(&p).unwrap();
        for ino in 0..STAGE_COMMIT_AT as u64 - 1 {
            s.stage(row("f", ino, 1));
            s.commit_if_large();
        }
        assert!(s.has_staged(), "below the mark: left to the committer");
        s.stage(row("f", u64::MAX, 1));
        s.commit_if_large();
        assert!(!s.has_staged());
        assert_eq!(s.rows(Some("f")).unwrap().len(), STAGE_COMMIT_AT);
    }

    fn row(flow: &str, ino: u64, offset: u64) -> Row {
        Row {
            flow: flow.into(),
            key: FileKey { dev: 1, ino },
            path: format!("/var/log/{ino}.log"),
            offset,
            fingerprint: Fingerprint { len: 10, hash: u64::MAX - 1 },
            tail: (4, 77),
            updated_at: 1000,
        }
    }

    #[test]
    fn staged_rows_are_committed_together_and_survive_reopen() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/dir/cp.db");
        let mut s = Store::open(&p).unwrap();
        s.stage(row("f", 1, 10));
        s.stage(row("f", 1, 20));
        s.stage(row("f", 2, 5));
        s.stage(row("g", 1, 7));
        assert_eq!(s.commit().unwrap(), 3);
        assert_eq!(s.commit().unwrap(), 0);
        drop(s);
        let mut s = Store::open(&p).unwrap();
        let rows = s.rows(Some("f")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], row("f", 1, 20), "u64 values survive the i64 columns");
        s.stage_delete("f", FileKey { dev: 1, ino: 2 });
        s.commit().unwrap();
        assert_eq!(s.rows(None).unwrap().len(), 2);
        let version: i64 = s.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 1);
        let mode: String = s.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn prune_and_reset() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(&d.path().join("cp.db")).unwrap();
        s.stage(row("f", 1, 10));
        let mut fresh = row("f", 2, 10);
        fresh.updated_at = 1_000_000;
        s.stage(fresh);
        s.stage(row("g", 3, 10));
        s.commit().unwrap();
        // an old row whose file is still there stays
        assert_eq!(s.prune(7, 1_000_000, |r| r.flow == "g").unwrap(), 1);
        assert_eq!(s.rows(None).unwrap().len(), 2);
        assert_eq!(s.prune(7, 1_000_000, |_| false).unwrap(), 1);
        assert_eq!(s.rows(None).unwrap().len(), 1);
        assert_eq!(s.reset("f", Some("/var/log/2.log")).unwrap(), 1);
    }

    #[test]
    fn damaged_and_newer_databases_are_refused_with_the_cause() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cp.db");
        std::fs::write(&p, vec![b'x'; 8192]).unwrap();
        let e = Store::open(&p).err().unwrap().to_string();
        assert!(e.contains(&p.display().to_string()) && e.contains("damaged"), "{e}");
        let p2 = d.path().join("new.db");
        Connection::open(&p2).unwrap().execute_batch("PRAGMA user_version = 9").unwrap();
        let e = Store::open(&p2).err().unwrap().to_string();
        assert!(e.contains("schema version 9 is newer") && !e.contains("read-only"), "{e}");
    }

    #[test]
    fn kinesis_agent_positions_are_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("checkpoints");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(
            "CREATE TABLE FILE_CHECKPOINTS(flow TEXT, path TEXT, fileId TEXT, lastModifiedTime INTEGER, size INTEGER, offset INTEGER, lastUpdated TEXT, PRIMARY KEY(flow, path));
             INSERT INTO FILE_CHECKPOINTS VALUES ('fh:s:/var/log/a.log', '/var/log/a.log', '(dev=ca01,ino=42)', 0, 100, 64, '2024-01-01');",
        )
        .unwrap();
        let got = read_kinesis_agent_checkpoints(&p).unwrap();
        assert_eq!(
            got,
            vec![KinesisAgentPosition {
                flow: "fh:s:/var/log/a.log".into(),
                path: "/var/log/a.log".into(),
                key: FileKey { dev: 0xca01, ino: 42 },
                offset: 64
            }]
        );
        assert!(read_kinesis_agent_checkpoints(&d.path().join("none")).unwrap().is_empty());
    }
}
