//! The journal read through `sd_journal` from libsystemd, loaded at run time (`libsystemd.so.0`,
//! on every systemd host): no build dependency, and no `journalctl` formatting an export stream
//! that is then parsed again (that path cost twice Fluent Bit's CPU, docs/benchmarks.md).
//!
//! Guarantees:
//! - one thread owns the journal handle (sd_journal is not thread-safe) and hands the engine
//!   batches of entries through a bounded channel, so a busy engine holds the reader back;
//! - each entry carries `__CURSOR` and `__REALTIME_TIMESTAMP` as fields, as in the export format;
//! - a start at a saved cursor says whether the cursor's entry is still there (it is then not
//!   handed over again) or gone (a gap, with the time of the entry reading resumes at);
//! - a journal file that cannot be opened (damaged, cut short) is named once, and the others are
//!   read;
//! - a library or journal that cannot be opened ends the reader with the reason.
//!
//! Not done: matches inside libsystemd (the filters run on the entries handed over).

use crate::config::{JournalSource, JournalStart};
use crate::framing::journal::JournalEntry;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

type Handle = *mut c_void;

/// What the reader hands the engine.
pub enum Batch {
    Entries(Vec<JournalEntry>),
    /// The saved cursor's entry is gone: reading resumed at an entry written at this time (µs).
    Gap(Option<u64>),
    /// A journal file that cannot be read, skipped.
    Unreadable(String),
    /// The reader ended, and why.
    Ended(String),
}

/// The functions of libsystemd that are used.
struct Api {
    _lib: libloading::Library,
    open: unsafe extern "C" fn(*mut Handle, c_int) -> c_int,
    open_directory: unsafe extern "C" fn(*mut Handle, *const c_char, c_int) -> c_int,
    open_files: unsafe extern "C" fn(*mut Handle, *const *const c_char, c_int) -> c_int,
    close: unsafe extern "C" fn(Handle),
    next: unsafe extern "C" fn(Handle) -> c_int,
    previous: unsafe extern "C" fn(Handle) -> c_int,
    seek_head: unsafe extern "C" fn(Handle) -> c_int,
    seek_tail: unsafe extern "C" fn(Handle) -> c_int,
    seek_realtime_usec: unsafe extern "C" fn(Handle, u64) -> c_int,
    seek_cursor: unsafe extern "C" fn(Handle, *const c_char) -> c_int,
    test_cursor: unsafe extern "C" fn(Handle, *const c_char) -> c_int,
    get_cursor: unsafe extern "C" fn(Handle, *mut *mut c_char) -> c_int,
    get_realtime_usec: unsafe extern "C" fn(Handle, *mut u64) -> c_int,
    restart_data: unsafe extern "C" fn(Handle),
    enumerate_data: unsafe extern "C" fn(Handle, *mut *const c_void, *mut usize) -> c_int,
    wait: unsafe extern "C" fn(Handle, u64) -> c_int,
    set_data_threshold: unsafe extern "C" fn(Handle, usize) -> c_int,
    add_match: unsafe extern "C" fn(Handle, *const c_void, usize) -> c_int,
}

const SD_JOURNAL_SYSTEM: c_int = 4;

fn errno_text(r: c_int) -> String {
    std::io::Error::from_raw_os_error(-r).to_string()
}

impl Api {
    fn load() -> Result<Api, String> {
        // SAFETY: loading libsystemd runs no initialisation code that could break this process,
        // and each symbol is given the C signature libsystemd documents for it.
        unsafe {
            let lib = libloading::Library::new("libsystemd.so.0")
                .map_err(|e| format!("libsystemd.so.0 cannot be loaded ({e}): journald sources need systemd's library"))?;
            macro_rules! sym {
                ($name:literal) => {
                    *lib.get(concat!($name, "\0").as_bytes()).map_err(|e| format!("libsystemd has no {}: {e}", $name))?
                };
            }
            Ok(Api {
                open: sym!("sd_journal_open"),
                open_directory: sym!("sd_journal_open_directory"),
                open_files: sym!("sd_journal_open_files"),
                close: sym!("sd_journal_close"),
                next: sym!("sd_journal_next"),
                previous: sym!("sd_journal_previous"),
                seek_head: sym!("sd_journal_seek_head"),
                seek_tail: sym!("sd_journal_seek_tail"),
                seek_realtime_usec: sym!("sd_journal_seek_realtime_usec"),
                seek_cursor: sym!("sd_journal_seek_cursor"),
                test_cursor: sym!("sd_journal_test_cursor"),
                get_cursor: sym!("sd_journal_get_cursor"),
                get_realtime_usec: sym!("sd_journal_get_realtime_usec"),
                restart_data: sym!("sd_journal_restart_data"),
                enumerate_data: sym!("sd_journal_enumerate_data"),
                wait: sym!("sd_journal_wait"),
                set_data_threshold: sym!("sd_journal_set_data_threshold"),
                add_match: sym!("sd_journal_add_match"),
                _lib: lib,
            })
        }
    }
}

/// An open journal; closed when dropped.
struct Journal<'a> {
    api: &'a Api,
    j: Handle,
}

impl Drop for Journal<'_> {
    fn drop(&mut self) {
        // SAFETY: `j` was opened by this api and is closed once.
        unsafe { (self.api.close)(self.j) }
    }
}

impl<'a> Journal<'a> {
    fn open(api: &'a Api, directory: Option<&Path>) -> Result<Journal<'a>, String> {
        let mut j: Handle = std::ptr::null_mut();
        let r = match directory {
            Some(d) => {
                let c = CString::new(d.as_os_str().as_encoded_bytes()).map_err(|_| format!("{} has a NUL byte", d.display()))?;
                // SAFETY: `c` outlives the call; `j` receives the handle.
                unsafe { (api.open_directory)(&mut j, c.as_ptr(), 0) }
            }
            // SAFETY: as above.
            None => unsafe { (api.open)(&mut j, SD_JOURNAL_SYSTEM) },
        };
        if r < 0 {
            let what = directory.map_or_else(|| "the system journal".to_string(), |d| d.display().to_string());
            return Err(format!("cannot open {what}: {}", errno_text(r)));
        }
        Ok(Journal { api, j })
    }

    fn cursor(&self) -> Option<String> {
        let mut c: *mut c_char = std::ptr::null_mut();
        // SAFETY: on success `c` is a NUL-terminated string libsystemd allocated with malloc,
        // copied here and freed once.
        unsafe {
            if (self.api.get_cursor)(self.j, &mut c) < 0 || c.is_null() {
                return None;
            }
            let s = CStr::from_ptr(c).to_string_lossy().into_owned();
            libc::free(c.cast());
            Some(s)
        }
    }

    /// The current entry: its data fields, then its cursor and time as export fields.
    fn entry(&self, max_value: usize) -> JournalEntry {
        let mut e = JournalEntry::default();
        if let Some(c) = self.cursor() {
            e.push("__CURSOR", c.as_bytes());
        }
        let mut t = 0u64;
        // SAFETY: the handle is positioned on an entry; `t` receives its time.
        if unsafe { (self.api.get_realtime_usec)(self.j, &mut t) } >= 0 {
            e.push("__REALTIME_TIMESTAMP", t.to_string().as_bytes());
        }
        // SAFETY: each (data, len) pair libsystemd gives stays valid until the next call on the
        // handle; it is copied before that.
        unsafe {
            (self.api.restart_data)(self.j);
            let (mut data, mut len): (*const c_void, usize) = (std::ptr::null(), 0);
            while (self.api.enumerate_data)(self.j, &mut data, &mut len) > 0 {
                let field = std::slice::from_raw_parts(data.cast::<u8>(), len);
                let Some(eq) = memchr::memchr(b'=', field) else { continue };
                let value = &field[eq + 1..];
                if value.len() > max_value {
                    e.truncated = true;
                }
                // a journal field name is upper-case ASCII: anything else is not taken
                let Ok(name) = std::str::from_utf8(&field[..eq]) else { continue };
                e.push(name, &value[..value.len().min(max_value)]);
            }
        }
        e
    }
}

/// The journal files of a directory and its machine-id subdirectories.
fn journal_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(journal_files_flat(&p));
        } else if is_journal_file(&p) {
            out.push(p);
        }
    }
    out
}

fn journal_files_flat(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).filter(|p| is_journal_file(p)).collect()).unwrap_or_default()
}

fn is_journal_file(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "journal" || e == "journal~")
}

/// The journal files under the source's directories that libsystemd cannot open.
fn unreadable_files(api: &Api, src: &JournalSource) -> Vec<String> {
    let dirs: Vec<PathBuf> = match &src.directory {
        Some(d) => vec![d.clone()],
        None => vec!["/var/log/journal".into(), "/run/log/journal".into()],
    };
    let mut out = Vec::new();
    for f in dirs.iter().flat_map(|d| journal_files(d)) {
        let Ok(c) = CString::new(f.as_os_str().as_encoded_bytes()) else { continue };
        let paths = [c.as_ptr(), std::ptr::null()];
        let mut j: Handle = std::ptr::null_mut();
        // SAFETY: a NULL-terminated array of one path that outlives the call.
        let r = unsafe { (api.open_files)(&mut j, paths.as_ptr(), 0) };
        if r < 0 {
            out.push(format!("{}: {}", f.display(), errno_text(r)));
            continue;
        }
        let probe = Journal { api, j };
        // an opened file with no readable entry is damaged past its header
        // SAFETY: the handle is open.
        let first = unsafe { (api.seek_head)(probe.j) } >= 0 && unsafe { (api.next)(probe.j) } >= 0;
        if !first {
            out.push(format!("{}: damaged", f.display()));
        }
    }
    out
}

/// This machine's boot, as `_BOOT_ID` writes it.
fn current_boot() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().replace('-', ""))
}

/// Reads the journal on the calling thread until `stop` is set or the receiver goes: entries in
/// batches of at most `batch_entries`, waiting on the journal when there are none.
pub fn read(src: &JournalSource, cursor: Option<&str>, max_value: usize, stop: Arc<AtomicBool>, tx: SyncSender<Batch>, wake: &dyn Fn()) {
    let send = |b: Batch| {
        let ok = tx.send(b).is_ok();
        wake();
        ok
    };
    let api = match Api::load() {
        Ok(a) => a,
        Err(e) => {
            send(Batch::Ended(e));
            return;
        }
    };
    for f in unreadable_files(&api, src) {
        send(Batch::Unreadable(f));
    }
    let journal = match Journal::open(&api, src.directory.as_deref()) {
        Ok(j) => j,
        Err(e) => {
            send(Batch::Ended(e));
            return;
        }
    };
    let j = journal.j;
    // SAFETY (for every call below): `j` is open and used on this thread only.
    unsafe {
        (api.set_data_threshold)(j, max_value.saturating_add(64));
        if src.current_boot_only {
            if let Some(b) = current_boot() {
                let m = format!("_BOOT_ID={b}");
                (api.add_match)(j, m.as_ptr().cast(), m.len());
            }
        }
        let mut pending: Option<JournalEntry> = None;
        match (cursor, src.start_at) {
            (Some(c), _) => {
                let cs = CString::new(c).unwrap_or_default();
                (api.seek_cursor)(j, cs.as_ptr());
                // the entry at the cursor: the saved one (sent before: skipped), or the first one
                // after a gap
                if (api.next)(j) > 0 && (api.test_cursor)(j, cs.as_ptr()) <= 0 {
                    let mut t = 0u64;
                    let at = ((api.get_realtime_usec)(j, &mut t) >= 0).then_some(t);
                    let other_boot = src.current_boot_only && boot_of(c) != current_boot().as_deref();
                    if !other_boot && !send(Batch::Gap(at)) {
                        return;
                    }
                    pending = Some(journal.entry(max_value));
                }
            }
            (None, JournalStart::Head) => {
                (api.seek_head)(j);
            }
            (None, JournalStart::Tail) => {
                (api.seek_tail)(j);
                (api.previous)(j);
            }
            (None, JournalStart::Since(secs)) => {
                (api.seek_realtime_usec)(j, (secs.max(0) as u64).saturating_mul(1_000_000));
            }
        }
        const BATCH_ENTRIES: usize = 512;
        let mut batch: Vec<JournalEntry> = pending.into_iter().collect();
        while !stop.load(Ordering::Relaxed) {
            let r = (api.next)(j);
            if r > 0 {
                batch.push(journal.entry(max_value));
                if batch.len() < BATCH_ENTRIES {
                    continue;
                }
            } else if r < 0 {
                send(Batch::Ended(format!("reading the journal: {}", errno_text(r))));
                return;
            }
            if !batch.is_empty() && !send(Batch::Entries(std::mem::take(&mut batch))) {
                return;
            }
            if r == 0 {
                // nothing new: wait for the journal to change (new entries, a rotation)
                (api.wait)(j, 500_000);
            }
        }
    }
}

/// The boot id a cursor names (`b=`).
pub fn boot_of(cursor: &str) -> Option<&str> {
    cursor.split(';').find_map(|p| p.strip_prefix("b="))
}
