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

mod listing;
#[cfg(test)]
mod tests;

use crate::config::{PathRules, Source, SymlinkPolicy};
use crate::source::identity::FileKey;
use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use listing::Listing;
pub use listing::{Reuse, SETTLED};
use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

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
    /// (Shared: a file followed from this scan on keeps this allocation as its path.)
    pub path: Arc<Path>,
    pub key: FileKey,
    /// Its size now; `None` when the scan took it from the listing of a directory that did not
    /// change ([`Reuse`]): its growth is notified, and the next full scan looks.
    pub size: Option<u64>,
    /// For a symlink: the directory of the file it points to.
    pub target_dir: Option<Box<Path>>,
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
                    match self.look_at(&path, Entry::Unknown) {
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
                if let Some(l) = listings.get(&(pi, dir.clone())) {
                    found.fresh.extend(l.found_in(dir));
                }
            }
            // (each directory's files come sorted: few runs to merge)
            found.fresh.sort_by(|a, b| a.path.as_os_str().cmp(b.path.as_os_str()));
            // (a first scan of 100,000 files: room made once, not doubled to twice that)
            out.found.reserve(found.fresh.len());
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
    /// a regular file to tail, one refused, or nothing. (The one allocation of its path is the
    /// one a found file keeps.)
    fn look_at(&self, path: &Path, entry: Entry) -> Looked {
        if self.excluded(path) {
            return Looked::Nothing;
        }
        let Ok(meta) = std::fs::metadata(path) else { return Looked::Nothing };
        if !meta.is_file() {
            return Looked::Nothing;
        }
        let key = FileKey::of(&meta);
        if let Some(own) = self.own_file(path, key) {
            let why = format!("it is the agent's own {}", own.what);
            return Looked::Refused(path.to_path_buf(), why);
        }
        let target_dir = match entry {
            Entry::Link => std::fs::canonicalize(path).ok().and_then(|t| t.parent().map(Path::to_path_buf)),
            Entry::NotLink => None,
            Entry::Unknown => symlink_target_dir(path),
        };
        Looked::Found(Found { path: path.into(), key, size: Some(meta.len()), target_dir: target_dir.map(PathBuf::into_boxed_path) })
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
