//! Notifications of changes in the directories the agent reads, from the kernel (inotify).
//!
//! Guarantees:
//! - The kernel is asked only for what changes what the agent reads: a file written, made,
//!   removed or renamed in a watched directory, and the directory itself removed or moved. Not
//!   for opens, reads, closes or attribute changes, so the agent's own opening and reading of
//!   files notifies nothing: a first start visiting 100,000 files, or files at rest visited in
//!   turn, would otherwise queue a notification of itself for every open. (The `notify` crate
//!   asks for opens with no way to leave them out.)
//! - Every notification is handed on in the kernel's order, from one thread.
//! - A kernel queue that overflowed, or a read that failed, is handed on as [`DirNotice::Lost`]:
//!   the caller then looks at every file.
//! - Dropping the watcher stops its thread and closes its descriptors.
//!
//! Does not: watch recursively; follow a watched directory that is renamed (a scan finds the
//! directory again by its path and watches it anew); coalesce repeated writes (the receiver
//! marks a file dirty, which is idempotent).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

/// What happened in the watched directories.
#[derive(Debug, PartialEq, Eq)]
pub enum DirNotice {
    /// A file in a watched directory was written to.
    Written(PathBuf),
    /// A file in a watched directory (or the directory itself) was made, removed or renamed:
    /// the directories are to be listed again.
    Changed,
    /// Notifications were lost (the kernel's queue overflowed, or reading it failed): every file
    /// is to be looked at.
    Lost(String),
}

type Dirs = Arc<Mutex<HashMap<WatchDescriptor, PathBuf>>>;

/// Watches directories and hands what happens in them to a callback, from its own thread.
pub struct DirWatcher {
    watches: Watches,
    dirs: Dirs,
    /// Written to stop the thread (an eventfd).
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

const MASK: WatchMask = WatchMask::MODIFY
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

impl DirWatcher {
    /// Starts the watcher; `on` receives every notice, in order, on the watcher's thread.
    pub fn start(on: impl Fn(DirNotice) + Send + 'static) -> io::Result<DirWatcher> {
        let inotify = Inotify::init()?;
        // SAFETY: eventfd returns a new descriptor or -1; the descriptor is owned from here on
        let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if stop < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just returned by eventfd, owned by nothing else
        let stop = unsafe { OwnedFd::from_raw_fd(stop) };
        let watches = inotify.watches();
        let dirs: Dirs = Arc::default();
        let (thread_dirs, stop_fd) = (dirs.clone(), stop.as_raw_fd());
        let thread =
            std::thread::Builder::new().name("logferry-watch".into()).spawn(move || read_notices(inotify, stop_fd, &thread_dirs, &on))?;
        Ok(DirWatcher { watches, dirs, stop, thread: Some(thread) })
    }

    /// Watches `dir` (again: a directory removed and made again is a new watch).
    pub fn watch(&mut self, dir: &Path) -> io::Result<()> {
        // held while adding, so that the thread resolves a first notice of the new watch
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let wd = self.watches.add(dir, MASK)?;
        dirs.insert(wd, dir.to_path_buf());
        Ok(())
    }
}

impl Drop for DirWatcher {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the eventfd this watcher owns
        unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The watcher's thread: waits for notifications or the stop, and hands them on.
fn read_notices(mut inotify: Inotify, stop: i32, dirs: &Dirs, on: &dyn Fn(DirNotice)) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match wait(&[inotify.as_raw_fd(), stop], -1) {
            Err(e) => {
                on(DirNotice::Lost(format!("waiting for file notifications failed: {e}")));
                return;
            }
            Ok(ready) if ready[1] => return,
            Ok(_) => {}
        }
        match inotify.read_events(&mut buf) {
            Ok(events) => {
                let mut dirs = dirs.lock().unwrap_or_else(|e| e.into_inner());
                for e in events {
                    if let Some(n) = notice(e.mask, &e.wd, e.name, &mut dirs) {
                        on(n);
                    }
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(e) => {
                on(DirNotice::Lost(format!("reading file notifications failed: {e}")));
                // a lasting failure is not spun on (the caller's scans go on meanwhile); the
                // stop is still heard at once
                if !matches!(wait(&[stop], 1000), Ok([false])) {
                    return;
                }
            }
        }
    }
}

/// Waits up to `timeout_ms` (-1: without end) for the descriptors `fds` to be readable; which
/// are. An interrupted wait is waited again.
fn wait<const N: usize>(fds: &[i32; N], timeout_ms: i32) -> io::Result<[bool; N]> {
    let mut polled = fds.map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
    loop {
        // SAFETY: polls N live descriptors through a pointer to an array of N pollfds
        let r = unsafe { libc::poll(polled.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
        if r >= 0 {
            return Ok(polled.map(|p| p.revents != 0));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// What one kernel event means (a pure function of it and the watched directories).
fn notice(mask: EventMask, wd: &WatchDescriptor, name: Option<&OsStr>, dirs: &mut HashMap<WatchDescriptor, PathBuf>) -> Option<DirNotice> {
    if mask.contains(EventMask::Q_OVERFLOW) {
        return Some(DirNotice::Lost("the kernel's queue of file notifications overflowed".into()));
    }
    if mask.contains(EventMask::IGNORED) {
        // the watch is gone (its directory removed, or unmounted): DELETE_SELF told it
        dirs.remove(wd);
        return None;
    }
    if mask.contains(EventMask::MODIFY) && !mask.contains(EventMask::ISDIR) {
        if let (Some(dir), Some(name)) = (dirs.get(wd), name) {
            return Some(DirNotice::Written(dir.join(name)));
        }
    }
    Some(DirNotice::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn next(rx: &mpsc::Receiver<DirNotice>) -> DirNotice {
        rx.recv_timeout(Duration::from_secs(5)).expect("a notice within 5 s")
    }

    #[test]
    fn writes_are_told_by_path_and_the_agents_own_opening_and_reading_tells_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.log");
        std::fs::write(&file, "one\n").unwrap();
        let (tx, rx) = mpsc::channel();
        let mut w = DirWatcher::start(move |n| {
            let _ = tx.send(n);
        })
        .unwrap();
        w.watch(dir.path()).unwrap();
        // opened, read, closed, its attributes changed: nothing
        for _ in 0..3 {
            let _ = std::fs::read(&file).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "no notice for opening, reading or attributes");
        std::fs::OpenOptions::new().append(true).open(&file).unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "no notice for opening to write");
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(next(&rx), DirNotice::Written(file.clone()));
    }

    #[test]
    fn files_made_renamed_and_removed_and_the_directory_removed_ask_for_a_listing() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).unwrap();
        let (tx, rx) = mpsc::channel();
        let mut w = DirWatcher::start(move |n| {
            let _ = tx.send(n);
        })
        .unwrap();
        w.watch(&sub).unwrap();
        std::fs::write(sub.join("a.log"), "").unwrap();
        assert_eq!(next(&rx), DirNotice::Changed, "made");
        std::fs::rename(sub.join("a.log"), sub.join("a.log.1")).unwrap();
        assert_eq!(next(&rx), DirNotice::Changed, "renamed from");
        assert_eq!(next(&rx), DirNotice::Changed, "renamed to");
        std::fs::remove_file(sub.join("a.log.1")).unwrap();
        assert_eq!(next(&rx), DirNotice::Changed, "removed");
        std::fs::remove_dir(&sub).unwrap();
        assert_eq!(next(&rx), DirNotice::Changed, "the directory removed");
        // made again: watched anew by its path, and its writes told
        std::fs::create_dir(&sub).unwrap();
        w.watch(&sub).unwrap();
        std::fs::write(sub.join("b.log"), "x").unwrap();
        assert_eq!(next(&rx), DirNotice::Changed);
        assert_eq!(next(&rx), DirNotice::Written(sub.join("b.log")));
    }

    #[test]
    fn an_overflowed_queue_is_told_as_lost_notifications() {
        let mut dirs = HashMap::new();
        let inotify = Inotify::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let wd = inotify.watches().add(dir.path(), MASK).unwrap();
        dirs.insert(wd.clone(), dir.path().to_path_buf());
        assert!(matches!(notice(EventMask::Q_OVERFLOW, &wd, None, &mut dirs), Some(DirNotice::Lost(_))));
        assert_eq!(notice(EventMask::MODIFY, &wd, Some(OsStr::new("x")), &mut dirs), Some(DirNotice::Written(dir.path().join("x"))));
        assert_eq!(notice(EventMask::IGNORED, &wd, None, &mut dirs), None);
        assert!(dirs.is_empty(), "a watch gone is forgotten");
        assert_eq!(
            notice(EventMask::MODIFY, &wd, Some(OsStr::new("x")), &mut dirs),
            Some(DirNotice::Changed),
            "a write in an unknown directory asks for a listing"
        );
    }

    #[test]
    fn dropping_the_watcher_stops_its_thread() {
        let (tx, rx) = mpsc::channel::<DirNotice>();
        let w = DirWatcher::start(move |n| {
            let _ = tx.send(n);
        })
        .unwrap();
        drop(w);
        // the callback (holding the sender) is dropped with the thread
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Err(mpsc::RecvTimeoutError::Disconnected));
    }
}
