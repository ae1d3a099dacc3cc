//! Finding the files a flow tails.
//!
//! Guarantees:
//! - native rules: a glob (`*`, `?`, `[..]`, `{a,b}`) may stand in any path component
//!   (`/var/log/pods/*/*/*.log`); excludes match the full path when they contain `/`, the file
//!   name otherwise;
//! - Kinesis Agent rules (agent.json): only the last component is a glob, the directory is taken
//!   literally, and names ending in `.gz`, `.bz2` or `.zip` (any case) never match;
//! - symlinks are followed (a file is identified by its target's device and inode) and the
//!   target's directory is reported for watching, so `/var/log/containers` links into
//!   `/var/log/pods` are followed as the targets change; two paths to one file give one entry;
//! - every directory listed is reported, so the caller can watch exactly those.
//!
//! A scan lists directories and stats entries; it opens no file.

use crate::config::{PathRules, Source};
use crate::identity::FileKey;
use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::Metadata;
use std::path::{Component, Path, PathBuf};

enum Part {
    Literal(OsString),
    Glob(GlobMatcher),
}

struct Pattern {
    base: PathBuf,
    parts: Vec<Part>,
}

/// A flow's compiled sources.
pub struct Discovery {
    patterns: Vec<Pattern>,
    exclude_paths: GlobSet,
    exclude_names: GlobSet,
    rules: PathRules,
}

/// A file found by a scan.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub key: FileKey,
    pub size: u64,
    /// For a symlink: the directory of the file it points to.
    pub target_dir: Option<PathBuf>,
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn glob(s: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(s).literal_separator(true).build().map(|g| g.compile_matcher()).map_err(|e| format!("bad glob {s:?}: {e}"))
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
        })
    }

    fn excluded(&self, path: &Path) -> bool {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if self.rules == PathRules::KinesisAgent && (name.ends_with(".gz") || name.ends_with(".bz2") || name.ends_with(".zip")) {
            return true;
        }
        self.exclude_paths.is_match(path) || path.file_name().is_some_and(|n| self.exclude_names.is_match(n))
    }

    /// Lists the matching regular files; `dirs` receives every directory that was listed.
    pub fn scan(&self, found: &mut Vec<Found>, dirs: &mut Vec<PathBuf>) {
        let mut seen: HashSet<FileKey> = found.iter().map(|f| f.key).collect();
        for p in &self.patterns {
            let mut current = vec![p.base.clone()];
            if p.parts.is_empty() {
                // a plain path: its directory is what can change
                if let Some(parent) = p.base.parent() {
                    dirs.push(parent.to_path_buf());
                }
            }
            for (i, part) in p.parts.iter().enumerate() {
                let last = i + 1 == p.parts.len();
                let mut next = Vec::new();
                for dir in &current {
                    match part {
                        Part::Literal(name) => {
                            if last {
                                dirs.push(dir.clone());
                            }
                            next.push(dir.join(name))
                        }
                        Part::Glob(g) => {
                            let Ok(rd) = std::fs::read_dir(dir) else { continue };
                            dirs.push(dir.clone());
                            for e in rd.flatten() {
                                if g.is_match(e.file_name()) {
                                    next.push(e.path());
                                }
                            }
                        }
                    }
                }
                if !last {
                    next.retain(|d| d.is_dir());
                }
                current = next;
            }
            current.sort();
            for path in current {
                if self.excluded(&path) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                if !meta.is_file() {
                    continue;
                }
                let key = FileKey::of(&meta);
                if !seen.insert(key) {
                    continue;
                }
                let target_dir = symlink_target_dir(&path, &meta);
                found.push(Found { path, key, size: meta.len(), target_dir });
            }
        }
        dirs.sort();
        dirs.dedup();
    }
}

fn symlink_target_dir(path: &Path, _meta: &Metadata) -> Option<PathBuf> {
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
        let mut f = Vec::new();
        d.scan(&mut f, &mut Vec::new());
        let mut v: Vec<String> = f.iter().map(|x| x.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
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
        let mut f = Vec::new();
        let mut dirs = Vec::new();
        disc.scan(&mut f, &mut dirs);
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
        let mut f = Vec::new();
        disc.scan(&mut f, &mut Vec::new());
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].path.ends_with("containers/p_ns_c-1.log"));
        assert_eq!(f[0].target_dir.as_deref(), Some(d.path().join("pods/p/c").canonicalize().unwrap().as_path()));
    }
}
