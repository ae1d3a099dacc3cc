//! A directory's last listing, and what a scan may take from it instead of asking the file
//! system again ([`Reuse`]): a scan costs what changed, not what exists.
//!
//! Guarantees: a listing stands for its directory only while the directory is the same one
//! (device, inode, birth time) with the same modification and change times, and only when it was
//! taken at least [`SETTLED`] after the directory last changed; in a directory that changed, an
//! entry still at its name with its inode number is not looked at again; links are followed
//! afresh at every scan. Not guaranteed: that a file's size is current when its directory was
//! taken from its listing (its growth is notified; a full scan looks).

use super::{Discovery, Entry, Found, Looked, Scan};
use crate::source::identity::FileKey;
use globset::GlobMatcher;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What a scan may take from the previous one instead of asking the file system again.
#[derive(Debug, Clone, Copy)]
pub enum Reuse<'a> {
    /// Every directory listed and every file looked at.
    Nothing,
    /// A directory of these (watched: a write to its files is notified) whose modification and
    /// change times are those of its last listing, taken at least [`SETTLED`] after them, is not
    /// listed again: its files are as that listing found them (their sizes not looked at). In a
    /// directory that changed, an entry still at its name with its inode number (from the
    /// listing itself) is not looked at either. Symbolic links are always followed afresh.
    Unchanged { watched: &'a HashSet<PathBuf> },
}

/// How long after a directory last changed its listing may stand for it: a change within the
/// same tick of a coarse clock as a listing would leave the times as they were.
pub const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

/// A directory's listing as the last scan took it: what the scan found there and refused.
pub(super) struct Listing {
    stamp: DirStamp,
    /// Taken long enough after the directory last changed to stand for it.
    settled: bool,
    files: ListedFiles,
    refused: Vec<(PathBuf, String)>,
}

impl Listing {
    /// The files it found in `dir`, as a scan hands them out (their sizes not looked at).
    pub(super) fn found_in<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = Found> + 'a {
        // one buffer for every path (a name is one component), each found file's path allocated once
        let mut path = dir.join("_");
        self.files.iter().filter_map(move |(name, _, key)| {
            let key = key?;
            path.set_file_name(name);
            Some(Found { path: path.as_path().into(), key, size: None, target_dir: None })
        })
    }
}

/// A listing's regular files, by name (sorted): inode number, and the identity of what was found
/// (`None`: excluded, not a file, or the agent's own). Only names are kept, in one buffer: a path
/// is made when a scan hands it out (100,000 files kept 100,000 paths twice), and a name in a
/// buffer of its own took a 32-byte allocation and 24 bytes more to point at it.
#[derive(Default)]
struct ListedFiles {
    names: Vec<u8>,
    files: Vec<ListedFile>,
}

/// One of [`ListedFiles`]: where its name ends in the buffer (it starts where the one before
/// ends), its inode number and identity. 32 bytes.
struct ListedFile {
    name_end: u32,
    found: bool,
    ino: u64,
    key: FileKey,
}

impl ListedFiles {
    /// Adds a file after those added (by name, sorted); false when the names outgrow the buffer's
    /// 4 GiB (the listing then does not stand for its directory).
    fn push(&mut self, name: &OsStr, ino: u64, key: Option<FileKey>) -> bool {
        let Ok(name_end) = u32::try_from(self.names.len() + name.len()) else { return false };
        self.names.extend_from_slice(name.as_bytes());
        self.files.push(ListedFile { name_end, found: key.is_some(), ino, key: key.unwrap_or(FileKey { dev: 0, ino: 0 }) });
        true
    }

    fn iter(&self) -> impl Iterator<Item = (&OsStr, u64, Option<FileKey>)> {
        let mut start = 0;
        self.files.iter().map(move |f| {
            let end = f.name_end as usize;
            let name = OsStr::from_bytes(&self.names[start.min(end)..end]);
            start = end;
            (name, f.ino, f.found.then_some(f.key))
        })
    }

    /// Gives back the room its growth left unused (it is kept until the next listing).
    fn shrink(&mut self) {
        self.names.shrink_to_fit();
        self.files.shrink_to_fit();
    }
}

/// A directory's identity and its modification and change times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DirStamp {
    dev: u64,
    ino: u64,
    /// When it was made, where the file system tells (an inode number is soon used again).
    born: Option<std::time::SystemTime>,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl DirStamp {
    fn of(m: &std::fs::Metadata) -> DirStamp {
        DirStamp {
            dev: m.dev(),
            ino: m.ino(),
            born: m.created().ok(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Whether it is the directory `other` was taken of.
    fn same_dir(&self, other: &DirStamp) -> bool {
        (self.dev, self.ino, self.born) == (other.dev, other.ino, other.born)
    }

    /// Whether its entries last changed at least [`SETTLED`] before `now`.
    fn settled(&self, now: std::time::SystemTime) -> bool {
        let (secs, nanos) = self.mtime;
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32);
        now.duration_since(at).is_ok_and(|d| d >= SETTLED)
    }
}

impl Discovery {
    /// The files in `dir` whose names match `g`, the last part of a pattern, into `found`; from
    /// its last listing as far as `reuse` allows. True when that listing stands for the
    /// directory (its files are not in `found`: they are as that listing found them).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn list_files(
        &self,
        (pattern, dir): (usize, &Path),
        g: &GlobMatcher,
        reuse: Reuse<'_>,
        now: std::time::SystemTime,
        listings: &mut std::collections::HashMap<(usize, PathBuf), Listing>,
        out: &mut Scan,
        found: &mut Vec<Found>,
    ) -> bool {
        let watched = match reuse {
            Reuse::Unchanged { watched } => watched.contains(dir),
            Reuse::Nothing => false,
        };
        let key = (pattern, dir.to_path_buf());
        let stamp = match std::fs::metadata(dir) {
            Ok(m) => DirStamp::of(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // gone: a watch on it tells nothing of a directory made again at its path
                if listings.remove(&key).is_some() {
                    out.replaced.push(dir.to_path_buf());
                }
                return false;
            }
            Err(e) => {
                out.errors.push((dir.to_path_buf(), e));
                return false;
            }
        };
        if watched {
            if let Some(l) = listings.get(&key).filter(|l| l.settled && l.stamp == stamp) {
                out.dirs.push(dir.to_path_buf());
                out.refused.extend(l.refused.iter().cloned());
                return true;
            }
        }
        let previous = listings.remove(&key).filter(|p| {
            let same_dir = p.stamp.same_dir(&stamp);
            if !same_dir {
                out.replaced.push(dir.to_path_buf());
            }
            same_dir
        });
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(e) => {
                out.errors.push((dir.to_path_buf(), e));
                return false;
            }
        };
        out.dirs.push(dir.to_path_buf());
        let mut listing = Listing { stamp, settled: stamp.settled(now), files: ListedFiles::default(), refused: Vec::new() };
        // the matching entries by name: each directory's files come sorted, and are walked beside
        // the last listing's (sorted too) without a search
        let mut entries: Vec<(OsString, u64, bool)> = Vec::new();
        for e in rd {
            let e = match e {
                Ok(e) => e,
                Err(err) => {
                    out.errors.push((dir.to_path_buf(), err));
                    // an incomplete listing stands for nothing
                    listing.settled = false;
                    break;
                }
            };
            let name = e.file_name();
            if g.is_match(&name) {
                entries.push((name, e.ino(), e.file_type().is_ok_and(|t| t.is_symlink())));
            }
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let before_files = previous.as_ref().map(|p| &p.files);
        let mut before = before_files.into_iter().flat_map(|f| f.iter()).peekable();
        // one buffer for every entry's path (a name is one component): a found file's path is
        // allocated once, as it keeps it
        let mut path = dir.join("_");
        for (name, ino, is_link) in entries {
            path.set_file_name(&name);
            if is_link {
                // a link leads to a file elsewhere that may change while this directory does
                // not: links are followed afresh at every scan, and their directory listed again
                listing.settled = false;
                if let Err(why) = self.may_follow(&path) {
                    out.refused.extend(why.map(|why| (path.clone(), why)));
                    continue;
                }
                match self.look_at(&path, Entry::Link) {
                    Looked::Found(f) => found.push(f),
                    Looked::Refused(path, why) => out.refused.push((path, why)),
                    Looked::Nothing => {}
                }
                continue;
            }
            while before.next_if(|(n, _, _)| *n < name.as_os_str()).is_some() {}
            let was = before.next_if(|(n, _, _)| *n == name.as_os_str()).filter(|(_, i, _)| *i == ino).map(|(_, _, was)| was);
            // the same inode at the same name: as the last listing found it (its size looked at
            // only where a write to it is not notified, or at a full scan)
            if let Some(was) = was {
                let size = match was {
                    Some(key) if !watched => std::fs::metadata(&path).ok().filter(|m| FileKey::of(m) == key).map(|m| Some(m.len())),
                    _ => Some(None),
                };
                if let Some(size) = size {
                    if let Some(key) = was {
                        found.push(Found { path: path.as_path().into(), key, size, target_dir: None });
                    }
                    listing.settled &= listing.files.push(&name, ino, was);
                    continue;
                }
            }
            let was = match self.look_at(&path, Entry::NotLink) {
                Looked::Found(f) => {
                    let key = f.key;
                    found.push(f);
                    Some(key)
                }
                Looked::Refused(path, why) => {
                    listing.refused.push((path.clone(), why.clone()));
                    out.refused.push((path, why));
                    None
                }
                Looked::Nothing => None,
            };
            // a file whose identity could not be read is looked at again next time
            if was.is_some() || std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
                listing.settled &= listing.files.push(&name, ino, was);
            } else {
                listing.settled = false;
            }
        }
        listing.files.shrink();
        listings.insert(key, listing);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_files_give_back_each_name_inode_and_identity_in_order_from_one_buffer_at_32_bytes_each() {
        assert!(std::mem::size_of::<ListedFile>() <= 32, "{} bytes", std::mem::size_of::<ListedFile>());
        let mut l = ListedFiles::default();
        let key = FileKey { dev: 3, ino: 7 };
        assert!(l.push(OsStr::new("a.log"), 7, Some(key)));
        assert!(l.push(OsStr::new("b"), 8, None));
        assert!(l.push(OsStr::from_bytes(b"c\xff.log"), 9, Some(FileKey { dev: 0, ino: 0 })));
        l.shrink();
        let got: Vec<_> = l.iter().collect();
        assert_eq!(
            got,
            [
                (OsStr::new("a.log"), 7, Some(key)),
                (OsStr::new("b"), 8, None),
                (OsStr::from_bytes(b"c\xff.log"), 9, Some(FileKey { dev: 0, ino: 0 }))
            ]
        );
        assert_eq!(l.names.len(), 12, "names kept once, side by side");
    }
}
