//! The file system as the tailing code sees it: open a path, stat and read an open file by
//! offset, find a file by identity in a directory. [`RealFs`] is the host's; a test gives the
//! tailing code an in-memory one and drives rotation without touching a disk or a clock.
//!
//! Guarantees: reads are positional and never move a file's position. Not guaranteed: that a
//! path still names the file it named when it was listed (callers check identity).

use super::identity::FileKey;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Positional reads.
pub trait ReadAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Reads into `buf` from `offset` until it is full or the file ends; the bytes read.
    fn read_full_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.read_at(&mut buf[n..], offset + n as u64)? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

/// What a stat of an open file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub key: FileKey,
    pub len: u64,
    /// Names the file has; 0 once it is deleted (it is still readable through the descriptor).
    pub links: u64,
}

/// An open file.
pub trait OpenFile: ReadAt {
    fn stat(&self) -> io::Result<Stat>;
}

/// Where files are opened.
pub trait FileSystem {
    type File: OpenFile;
    fn open(&self, path: &Path) -> io::Result<Self::File>;
    /// The files of directory `dir` and their identities (links followed).
    fn keys_in(&self, dir: &Path) -> Vec<(PathBuf, FileKey)>;
    /// A file with identity `key` in the directory of `path` (a sibling it was rotated to).
    fn find_by_key(&self, path: &Path, key: FileKey) -> Option<PathBuf> {
        self.keys_in(path.parent()?).into_iter().find(|(_, k)| *k == key).map(|(p, _)| p)
    }
    /// The file a symbolic link leads to.
    fn canonicalize(&self, path: &Path) -> Option<PathBuf>;
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
}

impl OpenFile for File {
    fn stat(&self) -> io::Result<Stat> {
        let m = self.metadata()?;
        Ok(Stat { key: FileKey::of(&m), len: m.len(), links: m.nlink() })
    }
}

/// The host's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl FileSystem for RealFs {
    type File = File;

    fn open(&self, path: &Path) -> io::Result<File> {
        File::open(path)
    }

    fn keys_in(&self, dir: &Path) -> Vec<(PathBuf, FileKey)> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        entries.flatten().map(|e| e.path()).filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, FileKey::of(&m)))).collect()
    }

    fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }
}

/// Whether inotify tells of every write to the files of directory `dir`: not on a network file
/// system (NFS, SMB/CIFS, Ceph, 9P, AFS) or FUSE, whose other writers (other hosts, the daemon
/// behind FUSE) the kernel does not see. When in doubt (the file system cannot be asked): no.
pub fn writes_notified(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const NOT_NOTIFIED: [i64; 9] = [
        0x6969,      // NFS
        0x517b,      // SMB
        0xff53_4d42, // CIFS
        0xfe53_4d42, // SMB2
        0x0102_1997, // 9P (V9FS)
        0x00c3_6400, // Ceph
        0x6573_5546, // FUSE
        0x5346_414f, // AFS
        0x0bd0_0bd0, // Lustre
    ];
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: statfs reads the NUL-terminated path and writes one statfs into the struct given
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)]
    let kind = st.f_type as i64;
    !NOT_NOTIFIED.contains(&kind)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_local_directory_tells_its_writes_and_an_unreadable_path_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(super::writes_notified(dir.path()));
        assert!(!super::writes_notified(std::path::Path::new("/nonexistent/logferry")));
    }
}
