//! Finding the files a flow tails.
//!
//! Guarantees:
//! - native rules: a glob (`*`, `?`, `[..]`, `{a,b}`) may stand in any path component
//!   (`/var/log/pods/*/*/*.log`); excludes match the full path when they contain `/`, the file
//!   name otherwise;
//! - Kinesis Agent rules (agent.json): only the last component is a glob, the directory is taken
//!   literally, and names ending in `.gz`, `.bz2` or `.zip` (any case) never match;
//! - a symlink met where a glob matched is followed only as the flow's [`SymlinkPolicy`] allows
//!   (by default: when the link belongs to root or to the owner of its target, so a user who can
//!   write into a watched directory cannot have the agent ship a file they cannot read); a
//!   followed link's file is identified by its target's device and inode and the target's
//!   directory is reported for watching, so `/var/log/containers` links into `/var/log/pods` are
//!   followed as the targets change; two paths to one file give one entry;
//! - the agent's own files (its checkpoint database and the files SQLite keeps beside it, its
//!   lock, dead-letter files, file-sink outputs, and their rotated copies) are never returned,
//!   whatever the patterns say: they are reported as refused;
//! - every directory listed is reported, so the caller can watch exactly those, and every
//!   directory that could not be listed (other than by not existing) is reported with its error.
//!
//! A scan lists directories and stats entries; it opens no file.

use crate::config::{PathRules, Source, SymlinkPolicy};
use crate::source::identity::FileKey;
use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

enum Part {
    Literal(OsString),
    Glob(GlobMatcher),
}

struct Pattern {
    base: PathBuf,
    parts: Vec<Part>,
}

/// A file of the agent's own that no flow may tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnFile {
    pub path: PathBuf,
    /// What it is, for messages ("checkpoint database", "dead-letter file of flow x", ...).
    pub what: String,
}

/// A flow's compiled sources.
pub struct Discovery {
    patterns: Vec<Pattern>,
    exclude_paths: GlobSet,
    exclude_names: GlobSet,
    rules: PathRules,
    symlinks: SymlinkPolicy,
    own: Vec<OwnFile>,
    /// Identities the own files had when seen, with their index in `own` (a rotated own file
    /// keeps its identity).
    own_keys: std::cell::RefCell<std::collections::HashMap<FileKey, usize>>,
    /// The last listing of each directory where the last part of a pattern is a glob.
    /// (Keyed by the pattern too: two globs in one directory list different files.)
    listings: std::cell::RefCell<std::collections::HashMap<(usize, PathBuf), Listing>>,
}

/// What a scan found for one pattern: files looked at now, and directories taken from their
/// last listing.
#[derive(Default)]
struct PatternFound {
    fresh: Vec<Found>,
    listed_before: Vec<PathBuf>,
}

/// A file found by a scan.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub key: FileKey,
    /// Its size now; `None` when the scan took it from the listing of a directory that did not
    /// change ([`Reuse`]): its growth is notified, and the next full scan looks.
    pub size: Option<u64>,
    /// For a symlink: the directory of the file it points to.
    pub target_dir: Option<PathBuf>,
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scan {
    pub found: Vec<Found>,
    /// Every directory listed (to watch).
    pub dirs: Vec<PathBuf>,
    /// Directories that could not be listed, and why.
    pub errors: Vec<(PathBuf, std::io::Error)>,
    /// Matching paths not returned, and why (a symlink the policy does not follow, an own file).
    pub refused: Vec<(PathBuf, String)>,
    /// Directories that are another directory than at their last listing (removed and made
    /// again): a watch on the old one tells nothing of the new.
    pub replaced: Vec<PathBuf>,
    /// Nothing changed since the previous scan: the same directories, each taken from its last
    /// listing ([`Reuse`]); `found` is then left empty (the files are those found before).
    pub unchanged: bool,
}

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
struct Listing {
    stamp: DirStamp,
    /// Taken long enough after the directory last changed to stand for it.
    settled: bool,
    /// Regular files, by name (sorted): inode number, and the identity of what was found
    /// (`None`: excluded, not a file, or the agent's own). Only names are kept: a path is made
    /// when a scan hands it out (100,000 files kept 100,000 paths twice).
    files: Vec<(OsString, u64, Option<FileKey>)>,
    refused: Vec<(PathBuf, String)>,
}

/// A directory's identity and its modification and change times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirStamp {
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

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn glob(s: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(s).literal_separator(true).build().map(|g| g.compile_matcher()).map_err(|e| format!("bad glob {s:?}: {e}"))
}

/// The agent's own files under `cfg`: the checkpoint database family, each AWS flow's
/// dead-letter file, each file sink's output.
pub fn own_files(cfg: &crate::config::Config) -> Vec<OwnFile> {
    let mut out: Vec<OwnFile> = crate::checkpoint::database_files(&cfg.checkpoint_file)
        .into_iter()
        .map(|path| OwnFile { path, what: "checkpoint database".into() })
        .collect();
    for f in &cfg.flows {
        if let Some(path) = crate::sinks::facts(&f.destination).output {
            out.push(OwnFile { path, what: format!("output of flow {}", f.id) });
        }
        if let Some(aws) = f.destination.aws() {
            let path = crate::sinks::deadletter::for_flow(&cfg.checkpoint_file, &f.id, aws);
            out.push(OwnFile { path, what: format!("dead-letter file of flow {}", f.id) });
        }
    }
    out
}

/// One line for each of the agent's own files that a flow's patterns match (they are never
/// tailed, whatever the patterns say): for `check` and the start of `run`.
pub fn own_file_overlaps(cfg: &crate::config::Config) -> Vec<String> {
    let own = own_files(cfg);
    let mut out = Vec::new();
    for f in &cfg.flows {
        let Ok(d) = Discovery::new(&f.sources, f.path_rules) else { continue };
        for o in &own {
            if d.matches_name(&o.path) {
                out.push(format!(
                    "flow {}: its files include {}, the agent's own {}; it is never tailed (it would feed the agent its own output)",
                    f.id,
                    o.path.display(),
                    o.what
                ));
            }
        }
    }
    out
}

/// `path`, or a rotated copy of it (`path.1`, `path-20240101`, `path.1.gz`).
fn is_or_rotated_from(path: &Path, own: &Path) -> bool {
    let (p, o) = (path.as_os_str().as_encoded_bytes(), own.as_os_str().as_encoded_bytes());
    p == o || (p.len() > o.len() + 1 && p.starts_with(o) && matches!(p[o.len()], b'.' | b'-'))
}

impl Discovery {
    pub fn new(sources: &[Source], rules: PathRules) -> Result<Discovery, String> {
        let mut patterns = Vec::new();
        let mut paths = GlobSetBuilder::new();
        let mut names = GlobSetBuilder::new();
        for s in sources {
            let full = if Path::new(&s.include).is_absolute() {
                PathBuf::from(&s.include)
            } else {
                std::env::current_dir().map_err(|e| e.to_string())?.join(&s.include)
            };
            let mut base = PathBuf::new();
            let mut parts = Vec::new();
            let comps: Vec<Component> = full.components().collect();
            for (i, c) in comps.iter().enumerate() {
                let text = c.as_os_str().to_string_lossy();
                let last = i + 1 == comps.len();
                let globbed = is_glob(&text) && (rules == PathRules::Native || last);
                if parts.is_empty() && !globbed {
                    base.push(c.as_os_str());
                } else if globbed {
                    parts.push(Part::Glob(glob(&text)?));
                } else {
                    parts.push(Part::Literal(c.as_os_str().to_os_string()));
                }
            }
            patterns.push(Pattern { base, parts });
            for x in &s.exclude {
                let g = Glob::new(x).map_err(|e| format!("bad exclude glob {x:?}: {e}"))?;
                if x.contains('/') {
                    paths.add(g);
                } else {
                    names.add(g);
                }
            }
        }
        Ok(Discovery {
            patterns,
            exclude_paths: paths.build().map_err(|e| e.to_string())?,
            exclude_names: names.build().map_err(|e| e.to_string())?,
            rules,
            symlinks: SymlinkPolicy::default(),
            own: Vec::new(),
            own_keys: Default::default(),
            listings: Default::default(),
        })
    }

    /// Which symlinks met where a glob matched are followed.
    pub fn with_symlinks(mut self, policy: SymlinkPolicy) -> Self {
        self.symlinks = policy;
        self
    }

    /// Files never to return, whatever the patterns say.
    pub fn with_own_files(mut self, own: Vec<OwnFile>) -> Self {
        self.own = own;
        self
    }

    fn excluded(&self, path: &Path) -> bool {
        if self.rules == PathRules::KinesisAgent {
            let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            if name.ends_with(".gz") || name.ends_with(".bz2") || name.ends_with(".zip") {
                return true;
            }
        }
        self.exclude_paths.is_match(path) || path.file_name().is_some_and(|n| self.exclude_names.is_match(n))
    }

    /// Whether `path` fits one of the patterns and none of the excludes, by name alone (no file
    /// system access): for `check`, to name the agent's own files a pattern would take.
    pub fn matches_name(&self, path: &Path) -> bool {
        if self.excluded(path) {
            return false;
        }
        self.patterns.iter().any(|p| {
            let Ok(rest) = path.strip_prefix(&p.base) else { return false };
            let comps: Vec<&std::ffi::OsStr> = rest.components().map(|c| c.as_os_str()).collect();
            if p.parts.is_empty() {
                return comps.is_empty();
            }
            comps.len() == p.parts.len()
                && p.parts.iter().zip(&comps).all(|(part, c)| match part {
                    Part::Literal(name) => name == c,
                    Part::Glob(g) => g.is_match(c),
                })
        })
    }

    /// Which of the agent's own files `path` (of identity `key`) is, if it is one.
    fn own_file(&self, path: &Path, key: FileKey) -> Option<&OwnFile> {
        self.own.iter().find(|o| is_or_rotated_from(path, &o.path)).or_else(|| {
            // an own file rotated under another name keeps its identity
            self.own_keys.borrow().get(&key).map(|&i| &self.own[i])
        })
    }

    /// Whether the link at `path` may be followed; the reason when not.
    fn follow(&self, path: &Path, lmeta: &std::fs::Metadata) -> Result<(), String> {
        let target = || std::fs::canonicalize(path).map_err(|e| format!("its target cannot be resolved: {e}"));
        match &self.symlinks {
            SymlinkPolicy::All => Ok(()),
            SymlinkPolicy::Never => Err("it is a symlink and the flow follows none (follow_symlinks: false)".into()),
            SymlinkPolicy::Under(prefixes) => {
                let t = target()?;
                if prefixes.iter().any(|p| t.starts_with(p)) {
                    Ok(())
                } else {
                    Err(format!("it is a symlink to {}, outside the flow's follow_symlinks prefixes", t.display()))
                }
            }
            SymlinkPolicy::SameOwner => {
                let t = target()?;
                let tmeta = std::fs::metadata(&t).map_err(|e| format!("its target {} cannot be read: {e}", t.display()))?;
                if lmeta.uid() == 0 || lmeta.uid() == tmeta.uid() {
                    Ok(())
                } else {
                    Err(format!(
                        "it is a symlink owned by uid {} to {}, owned by uid {}: a link is followed when it belongs to root or to its target's owner (set follow_symlinks to allow it)",
                        lmeta.uid(),
                        t.display(),
                        tmeta.uid()
                    ))
                }
            }
        }
    }

    /// Lists the matching regular files, every directory afresh.
    pub fn scan(&self, out: &mut Scan) {
        self.scan_with(out, Reuse::Nothing)
    }

    /// Lists the matching regular files, taking from the previous scan what `reuse` allows.
    pub fn scan_with(&self, out: &mut Scan, reuse: Reuse<'_>) {
        let mut seen: HashSet<FileKey> = out.found.iter().map(|f| f.key).collect();
        {
            let mut keys = self.own_keys.borrow_mut();
            for (i, o) in self.own.iter().enumerate() {
                if let Ok(m) = std::fs::metadata(&o.path) {
                    keys.insert(FileKey::of(&m), i);
                }
            }
        }
        let now = std::time::SystemTime::now();
        let mut listings = self.listings.borrow_mut();
        let mut visited: HashSet<(usize, PathBuf)> = HashSet::new();
        let mut per_pattern: Vec<PatternFound> = Vec::new();
        let errors_before = out.errors.len();
        // a directory listed afresh (or gone), or a path looked at: the scan says what it found
        let mut any_fresh = false;
        for (pi, p) in self.patterns.iter().enumerate() {
            let mut current = vec![p.base.clone()];
            let mut found = PatternFound::default();
            if p.parts.is_empty() {
                // a plain path: its directory is what can change
                if let Some(parent) = p.base.parent() {
                    out.dirs.push(parent.to_path_buf());
                }
            }
            for (i, part) in p.parts.iter().enumerate() {
                let last = i + 1 == p.parts.len();
                let mut next = Vec::new();
                for dir in &current {
                    match part {
                        Part::Literal(name) => {
                            if last {
                                out.dirs.push(dir.clone());
                            }
                            next.push(dir.join(name))
                        }
                        Part::Glob(g) if last => {
                            visited.insert((pi, dir.clone()));
                            if self.list_files((pi, dir), g, reuse, now, &mut listings, out, &mut found.fresh) {
                                found.listed_before.push(dir.clone());
                            } else {
                                any_fresh = true;
                            }
                        }
                        Part::Glob(g) => {
                            let rd = match std::fs::read_dir(dir) {
                                Ok(rd) => rd,
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                                Err(e) => {
                                    out.errors.push((dir.clone(), e));
                                    continue;
                                }
                            };
                            out.dirs.push(dir.clone());
                            for e in rd {
                                let e = match e {
                                    Ok(e) => e,
                                    Err(err) => {
                                        out.errors.push((dir.clone(), err));
                                        break;
                                    }
                                };
                                if !g.is_match(e.file_name()) {
                                    continue;
                                }
                                let path = e.path();
                                if e.file_type().is_ok_and(|t| t.is_symlink()) {
                                    if let Err(why) = self.may_follow(&path) {
                                        out.refused.extend(why.map(|why| (path, why)));
                                        continue;
                                    }
                                }
                                next.push(path);
                            }
                        }
                    }
                }
                if !last {
                    next.retain(|d| d.is_dir());
                    // directories in order: their sorted files then come sorted as a whole
                    next.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
                }
                current = next;
            }
            // a pattern whose last part is a literal name: the paths it leads to
            if !matches!(p.parts.last(), Some(Part::Glob(_))) {
                any_fresh = true;
                for path in current {
                    match self.look_at(path, Entry::Unknown) {
                        Looked::Found(f) => found.fresh.push(f),
                        Looked::Refused(path, why) => out.refused.push((path, why)),
                        Looked::Nothing => {}
                    }
                }
            }
            per_pattern.push(found);
        }
        // directories no pattern leads to any more (a pod's, gone) are forgotten
        let same_dirs = listings.len() == visited.len() && listings.keys().all(|d| visited.contains(d));
        listings.retain(|dir, _| visited.contains(dir));
        out.dirs.sort();
        out.dirs.dedup();
        out.unchanged = matches!(reuse, Reuse::Unchanged { .. }) && same_dirs && out.errors.len() == errors_before && !any_fresh;
        if out.unchanged {
            return;
        }
        for (pi, mut found) in per_pattern.into_iter().enumerate() {
            for dir in &found.listed_before {
                let files = listings.get(&(pi, dir.clone())).map(|l| l.files.as_slice()).unwrap_or_default();
                found.fresh.extend(
                    files
                        .iter()
                        .filter_map(|(name, _, key)| Some(Found { path: dir.join(name), key: (*key)?, size: None, target_dir: None })),
                );
            }
            // (each directory's files come sorted: few runs to merge)
            found.fresh.sort_by(|a, b| a.path.as_os_str().cmp(b.path.as_os_str()));
            out.found.extend(found.fresh.into_iter().filter(|f| seen.insert(f.key)));
        }
    }

    /// Whether a link a glob matched at `path` may be followed: `Err(Some(why))` when the policy
    /// refuses it, `Err(None)` when it leads nowhere (nothing to read, nothing to say).
    fn may_follow(&self, path: &Path) -> Result<(), Option<String>> {
        let allowed = std::fs::symlink_metadata(path).map_err(|e| e.to_string()).and_then(|m| self.follow(path, &m));
        allowed.map_err(|why| std::fs::metadata(path).is_ok().then_some(why))
    }

    /// What is at `path` (`entry`: what its directory's listing said it is, if that was asked):
    /// a regular file to tail, one refused, or nothing.
    fn look_at(&self, path: PathBuf, entry: Entry) -> Looked {
        if self.excluded(&path) {
            return Looked::Nothing;
        }
        let Ok(meta) = std::fs::metadata(&path) else { return Looked::Nothing };
        if !meta.is_file() {
            return Looked::Nothing;
        }
        let key = FileKey::of(&meta);
        if let Some(own) = self.own_file(&path, key) {
            let why = format!("it is the agent's own {}", own.what);
            return Looked::Refused(path, why);
        }
        let target_dir = match entry {
            Entry::Link => std::fs::canonicalize(&path).ok().and_then(|t| t.parent().map(Path::to_path_buf)),
            Entry::NotLink => None,
            Entry::Unknown => symlink_target_dir(&path),
        };
        Looked::Found(Found { path, key, size: Some(meta.len()), target_dir })
    }

    /// The files in `dir` whose names match `g`, the last part of a pattern, into `found`; from
    /// its last listing as far as `reuse` allows. True when that listing stands for the
    /// directory (its files are not in `found`: they are as that listing found them).
    #[allow(clippy::too_many_arguments)]
    fn list_files(
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
        let mut listing = Listing { stamp, settled: stamp.settled(now), files: Vec::new(), refused: Vec::new() };
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
        let mut before = previous.as_ref().map(|p| p.files.as_slice()).unwrap_or_default().iter().peekable();
        for (name, ino, is_link) in entries {
            let path = dir.join(&name);
            if is_link {
                // a link leads to a file elsewhere that may change while this directory does
                // not: links are followed afresh at every scan, and their directory listed again
                listing.settled = false;
                if let Err(why) = self.may_follow(&path) {
                    out.refused.extend(why.map(|why| (path, why)));
                    continue;
                }
                match self.look_at(path, Entry::Link) {
                    Looked::Found(f) => found.push(f),
                    Looked::Refused(path, why) => out.refused.push((path, why)),
                    Looked::Nothing => {}
                }
                continue;
            }
            while before.next_if(|(n, _, _)| *n < name).is_some() {}
            let was = before.next_if(|(n, _, _)| *n == name).filter(|(_, i, _)| *i == ino).map(|(_, _, was)| was);
            // the same inode at the same name: as the last listing found it (its size looked at
            // only where a write to it is not notified, or at a full scan)
            if let Some(&was) = was {
                let size = match was {
                    Some(key) if !watched => std::fs::metadata(&path).ok().filter(|m| FileKey::of(m) == key).map(|m| Some(m.len())),
                    _ => Some(None),
                };
                if let Some(size) = size {
                    if let Some(key) = was {
                        found.push(Found { path, key, size, target_dir: None });
                    }
                    listing.files.push((name, ino, was));
                    continue;
                }
            }
            let was = match self.look_at(path.clone(), Entry::NotLink) {
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
                listing.files.push((name, ino, was));
            } else {
                listing.settled = false;
            }
        }
        listings.insert(key, listing);
        false
    }
}

/// What a directory's listing said a path is.
#[derive(Clone, Copy)]
enum Entry {
    Link,
    NotLink,
    /// Not listed (a literal part of a pattern).
    Unknown,
}

/// What a scan makes of a path.
enum Looked {
    Found(Found),
    Refused(PathBuf, String),
    Nothing,
}

fn symlink_target_dir(path: &Path) -> Option<PathBuf> {
    let lmeta = std::fs::symlink_metadata(path).ok()?;
    if !lmeta.file_type().is_symlink() {
        return None;
    }
    std::fs::canonicalize(path).ok()?.parent().map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(d: &Discovery) -> Vec<String> {
        let mut scan = Scan::default();
        d.scan(&mut scan);
        let mut v: Vec<String> = scan.found.iter().map(|x| x.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn src(p: &Path, pattern: &str, exclude: &[&str]) -> Vec<Source> {
        vec![Source { include: p.join(pattern).display().to_string(), exclude: exclude.iter().map(|s| s.to_string()).collect() }]
    }

    #[test]
    fn native_globs_in_directories_with_excludes() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "pods/ns_a_1/web/0.log",
            "pods/ns_a_1/web/0.log.20240101",
            "pods/ns_b_2/db/1.log",
            "pods/kube-system_x_3/c/0.log",
            "other/0.log",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x\n").unwrap();
        }
        let disc = Discovery::new(&src(d.path(), "pods/*/*/*.log", &["*/kube-system_*/*/*"]), PathRules::Native).unwrap();
        let mut scan = Scan::default();
        disc.scan(&mut scan);
        let (f, dirs) = (scan.found, scan.dirs);
        let mut paths: Vec<String> = f.iter().map(|x| x.path.strip_prefix(d.path()).unwrap().display().to_string()).collect();
        paths.sort();
        assert_eq!(paths, ["pods/ns_a_1/web/0.log", "pods/ns_b_2/db/1.log"]);
        assert!(dirs.contains(&d.path().join("pods")) && dirs.contains(&d.path().join("pods/ns_a_1/web")), "{dirs:?}");
        let disc = Discovery::new(&src(d.path(), "pods/ns_{a,b}_?/*/[01].log", &["1.log"]), PathRules::Native).unwrap();
        assert_eq!(names(&disc), ["0.log"]);
    }

    #[test]
    fn kinesis_agent_rules_glob_only_the_name_and_skip_archives() {
        let d = tempfile::tempdir().unwrap();
        for f in ["app.log", "app.log.1", "app.log.2.gz", "app.log.3.ZIP", "app.log.4.bz2"] {
            std::fs::write(d.path().join(f), "x\n").unwrap();
        }
        std::fs::create_dir_all(d.path().join("a*")).unwrap();
        std::fs::write(d.path().join("a*/app.log"), "x\n").unwrap();
        let disc = Discovery::new(&src(d.path(), "app.log*", &[]), PathRules::KinesisAgent).unwrap();
        assert_eq!(names(&disc), ["app.log", "app.log.1"]);
        let disc = Discovery::new(&src(d.path(), "a*/app.log", &[]), PathRules::KinesisAgent).unwrap();
        assert_eq!(names(&disc), ["app.log"], "the directory part is literal in agent.json");
    }

    #[test]
    fn symlinks_are_followed_and_deduplicated() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("pods/p/c")).unwrap();
        std::fs::create_dir_all(d.path().join("containers")).unwrap();
        std::fs::write(d.path().join("pods/p/c/0.log"), "x\n").unwrap();
        std::os::unix::fs::symlink(d.path().join("pods/p/c/0.log"), d.path().join("containers/p_ns_c-1.log")).unwrap();
        std::os::unix::fs::symlink(d.path().join("missing"), d.path().join("containers/dangling.log")).unwrap();
        let sources = vec![
            Source { include: d.path().join("containers/*.log").display().to_string(), exclude: vec![] },
            Source { include: d.path().join("pods/*/*/*.log").display().to_string(), exclude: vec![] },
        ];
        let disc = Discovery::new(&sources, PathRules::Native).unwrap();
        let mut scan = Scan::default();
        disc.scan(&mut scan);
        let f = scan.found;
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].path.ends_with("containers/p_ns_c-1.log"));
        assert_eq!(f[0].target_dir.as_deref(), Some(d.path().join("pods/p/c").canonicalize().unwrap().as_path()));
    }

    #[test]
    fn a_symlink_is_followed_only_as_the_policy_allows() {
        use std::os::unix::fs::{lchown, symlink};
        let d = tempfile::tempdir().unwrap();
        let logs = d.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(d.path().join("secret"), "root only\n").unwrap();
        std::fs::write(logs.join("real.log"), "x\n").unwrap();
        symlink(d.path().join("secret"), logs.join("evil.log")).unwrap();
        symlink(logs.join("real.log"), logs.join("alias.log")).unwrap();
        let me = std::fs::metadata(d.path()).unwrap().uid();
        // the link to the secret belongs to someone else than the secret's owner
        let other = if me == 0 { 65534 } else { me };
        let can_chown = lchown(logs.join("evil.log"), Some(other), None).is_ok() && other != me;
        let policy = |p: SymlinkPolicy| {
            let disc = Discovery::new(&src(&logs, "*.log", &[]), PathRules::Native).unwrap().with_symlinks(p);
            let mut scan = Scan::default();
            disc.scan(&mut scan);
            let mut found: Vec<String> = scan.found.iter().map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
            found.sort();
            let refused: Vec<String> = scan.refused.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
            (found, refused)
        };
        if can_chown {
            let (found, refused) = policy(SymlinkPolicy::SameOwner);
            assert_eq!(found, ["alias.log"], "the same file twice is one entry; the foreign link is not followed");
            assert_eq!(refused, ["evil.log"]);
        }
        let (found, refused) = policy(SymlinkPolicy::Never);
        assert_eq!((found, refused.len()), (vec!["real.log".to_string()], 2));
        let (found, _) = policy(SymlinkPolicy::All);
        assert_eq!(found.len(), 2, "{found:?}");
        let (found, refused) = policy(SymlinkPolicy::Under(vec![logs.canonicalize().unwrap()]));
        assert_eq!((found.len(), refused), (1, vec!["evil.log".to_string()]));
    }

    #[test]
    fn the_agents_own_files_and_their_rotated_copies_are_refused() {
        let d = tempfile::tempdir().unwrap();
        for f in ["app.log", "cp.db", "cp.db-wal", "cp.db.lock", "out.log", "out.log.1", "dl.jsonl"] {
            std::fs::write(d.path().join(f), "x\n").unwrap();
        }
        let own = ["cp.db", "out.log", "dl.jsonl"].iter().map(|n| OwnFile { path: d.path().join(n), what: format!("file {n}") }).collect();
        let disc = Discovery::new(&src(d.path(), "*", &[]), PathRules::Native).unwrap().with_own_files(own);
        assert_eq!(names(&disc), ["app.log"]);
        // a rotated own file keeps its identity whatever its new name
        std::fs::rename(d.path().join("dl.jsonl"), d.path().join("old-letters")).unwrap();
        assert_eq!(names(&disc), ["app.log"]);
        assert!(disc.matches_name(&d.path().join("cp.db")) && !disc.matches_name(&d.path().join("sub/cp.db")));
    }

    /// Sets a directory's modification time an hour back (its entries settled long ago).
    fn settle(dir: &Path) {
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::open(dir).unwrap().set_times(std::fs::FileTimes::new().set_modified(hour_ago)).unwrap();
    }

    /// What a scan found, by name and size; `None` when nothing changed (no file is listed).
    fn sizes(d: &Discovery, reuse: Reuse<'_>) -> Option<Vec<(String, Option<u64>)>> {
        let mut scan = Scan::default();
        d.scan_with(&mut scan, reuse);
        let found = scan.found.iter().map(|f| (f.path.file_name().unwrap().to_string_lossy().into_owned(), f.size)).collect();
        (!scan.unchanged).then_some(found)
    }

    fn listed(files: &[(&str, Option<u64>)]) -> Option<Vec<(String, Option<u64>)>> {
        Some(files.iter().map(|(n, s)| (n.to_string(), *s)).collect())
    }

    #[test]
    fn a_watched_directory_that_did_not_change_is_taken_from_its_last_listing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("a.log"), "12345\n").unwrap();
        std::fs::write(p.join("z.txt"), "not matched\n").unwrap();
        settle(p);
        let d = Discovery::new(&src(p, "*.log", &[]), PathRules::Native).unwrap();
        let watched: HashSet<PathBuf> = [p.to_path_buf()].into();
        let reuse = Reuse::Unchanged { watched: &watched };
        assert_eq!(sizes(&d, reuse), listed(&[("a.log", Some(6))]), "the first listing looks at every file");
        assert_eq!(sizes(&d, reuse), None, "nothing changed: nothing listed, nothing looked at");
        // a write does not change the directory: notified, not scanned
        std::fs::write(p.join("a.log"), "12345\n678\n").unwrap();
        assert_eq!(sizes(&d, reuse), None);
        assert_eq!(sizes(&d, Reuse::Nothing), listed(&[("a.log", Some(10))]), "a full scan looks at every file");
        // a new file changes the directory: listed again, the known file not looked at again
        std::fs::write(p.join("b.log"), "b\n").unwrap();
        assert_eq!(sizes(&d, reuse), listed(&[("a.log", None), ("b.log", Some(2))]));
        // just changed: not taken as settled until it is
        assert_eq!(sizes(&d, reuse), listed(&[("a.log", None), ("b.log", None)]));
        // a rename rotation: another inode at a known name is looked at
        std::fs::rename(p.join("a.log"), p.join("a.log.1")).unwrap();
        std::fs::write(p.join("a.log"), "new\n").unwrap();
        settle(p);
        assert_eq!(sizes(&d, reuse), listed(&[("a.log", Some(4)), ("b.log", None)]));
        assert_eq!(sizes(&d, reuse), None);
        // a file deleted: listed again, and it is gone
        std::fs::remove_file(p.join("b.log")).unwrap();
        settle(p);
        assert_eq!(sizes(&d, reuse), listed(&[("a.log", None)]));
        // a directory not watched is always listed and looked at
        assert_eq!(sizes(&d, Reuse::Unchanged { watched: &HashSet::new() }), listed(&[("a.log", Some(4))]));
    }

    #[test]
    fn two_globs_in_one_directory_keep_their_own_listings() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("a.log"), "a\n").unwrap();
        std::fs::write(p.join("a.err"), "e\n").unwrap();
        settle(p);
        let sources = [src(p, "*.log", &[]), src(p, "*.err", &[])].concat();
        let d = Discovery::new(&sources, PathRules::Native).unwrap();
        let watched: HashSet<PathBuf> = [p.to_path_buf()].into();
        let reuse = Reuse::Unchanged { watched: &watched };
        let both = listed(&[("a.log", Some(2)), ("a.err", Some(2))]);
        assert_eq!(sizes(&d, reuse), both);
        // a new file: each glob lists the directory again; the next scan reuses each its own
        std::fs::write(p.join("b.log"), "b\n").unwrap();
        settle(p);
        assert_eq!(sizes(&d, reuse), listed(&[("a.log", None), ("b.log", Some(2)), ("a.err", None)]));
        assert_eq!(sizes(&d, Reuse::Nothing), listed(&[("a.log", Some(2)), ("b.log", Some(2)), ("a.err", Some(2))]));
        assert_eq!(sizes(&d, reuse), None);
    }

    /// A watched directory `logs` with one file, its discovery, and the first scan's result.
    fn one_watched_directory() -> (tempfile::TempDir, PathBuf, Discovery, HashSet<PathBuf>, Scan) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("logs");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("a.log"), "a\n").unwrap();
        let d = Discovery::new(&src(&p, "*.log", &[]), PathRules::Native).unwrap();
        let watched: HashSet<PathBuf> = [p.clone()].into();
        let mut scan = Scan::default();
        d.scan_with(&mut scan, Reuse::Unchanged { watched: &watched });
        (dir, p, d, watched, scan)
    }

    #[test]
    fn a_directory_that_goes_away_is_reported_so_that_it_is_watched_again() {
        let (_dir, p, d, watched, _) = one_watched_directory();
        std::fs::remove_dir_all(&p).unwrap();
        let mut scan = Scan::default();
        d.scan_with(&mut scan, Reuse::Unchanged { watched: &watched });
        assert_eq!(scan.replaced, std::slice::from_ref(&p));
        assert!(!scan.unchanged && scan.found.is_empty());
    }

    #[test]
    fn a_directory_that_goes_away_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let pods = dir.path().join("pods");
        std::fs::create_dir_all(pods.join("a")).unwrap();
        std::fs::create_dir_all(pods.join("b")).unwrap();
        std::fs::write(pods.join("a/0.log"), "a\n").unwrap();
        std::fs::write(pods.join("b/0.log"), "b\n").unwrap();
        settle(&pods.join("a"));
        settle(&pods.join("b"));
        let d = Discovery::new(&src(&pods, "*/*.log", &[]), PathRules::Native).unwrap();
        let watched: HashSet<PathBuf> = [pods.join("a"), pods.join("b")].into();
        let reuse = Reuse::Unchanged { watched: &watched };
        assert_eq!(sizes(&d, reuse).map(|f| f.len()), Some(2));
        assert_eq!(sizes(&d, reuse), None);
        std::fs::remove_dir_all(pods.join("b")).unwrap();
        assert_eq!(sizes(&d, reuse), listed(&[("0.log", None)]), "the pod gone, its file is not found");
    }

    #[test]
    fn links_are_followed_afresh_at_every_scan() {
        let dir = tempfile::tempdir().unwrap();
        let (links, pods) = (dir.path().join("containers"), dir.path().join("pods"));
        std::fs::create_dir_all(&links).unwrap();
        std::fs::create_dir_all(&pods).unwrap();
        std::fs::write(pods.join("0.log"), "first\n").unwrap();
        std::os::unix::fs::symlink(pods.join("0.log"), links.join("app.log")).unwrap();
        settle(&links);
        let d = Discovery::new(&src(&links, "*.log", &[]), PathRules::Native).unwrap().with_symlinks(SymlinkPolicy::All);
        let watched: HashSet<PathBuf> = [links.clone()].into();
        let reuse = Reuse::Unchanged { watched: &watched };
        let key = |d: &Discovery| {
            let mut scan = Scan::default();
            d.scan_with(&mut scan, reuse);
            (scan.found[0].key, scan.found[0].size)
        };
        let first = key(&d);
        // the runtime rotates the file the link leads to: the links' directory does not change
        std::fs::rename(pods.join("0.log"), pods.join("0.log.1")).unwrap();
        std::fs::write(pods.join("0.log"), "second file\n").unwrap();
        settle(&links);
        let second = key(&d);
        assert_ne!(first.0, second.0, "the link's new target is found");
        assert_eq!(second.1, Some(12));
    }

    #[test]
    fn a_directory_made_again_is_reported_as_replaced() {
        let (_dir, p, d, watched, scan) = one_watched_directory();
        assert!(scan.replaced.is_empty());
        std::fs::remove_dir_all(&p).unwrap();
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("a.log"), "a\n").unwrap();
        settle(&p);
        let mut scan = Scan::default();
        d.scan_with(&mut scan, Reuse::Unchanged { watched: &watched });
        assert_eq!(scan.replaced, std::slice::from_ref(&p));
        assert_eq!(scan.found[0].size, Some(2), "its files are looked at");
    }

    #[test]
    fn a_directory_that_cannot_be_listed_is_reported() {
        let d = tempfile::tempdir().unwrap();
        // a file where the pattern expects a directory cannot be listed
        std::fs::write(d.path().join("notadir"), "").unwrap();
        let disc = Discovery::new(&src(d.path(), "notadir/*.log", &[]), PathRules::Native).unwrap();
        let mut scan = Scan::default();
        disc.scan(&mut scan);
        assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
        assert_eq!(scan.errors[0].0, d.path().join("notadir"));
        // a directory that does not exist (yet) is not an error
        let disc = Discovery::new(&src(d.path(), "missing/*.log", &[]), PathRules::Native).unwrap();
        let mut scan = Scan::default();
        disc.scan(&mut scan);
        assert!(scan.errors.is_empty());
    }
}
