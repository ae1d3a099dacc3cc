//! Discovery against real directories in a temp dir: globs, excludes, symlinks, own files,
//! listing errors, and the reuse of a directory's last listing.

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
    for f in
        ["pods/ns_a_1/web/0.log", "pods/ns_a_1/web/0.log.20240101", "pods/ns_b_2/db/1.log", "pods/kube-system_x_3/c/0.log", "other/0.log"]
    {
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

#[test]
fn a_file_a_scan_finds_takes_64_bytes_beside_its_path() {
    // a first start lists every file at once: 100,000 of them were 8 MB at 80 bytes each
    assert!(std::mem::size_of::<Found>() <= 64, "{}", std::mem::size_of::<Found>());
}
