//! The process's open-file limit and the share of it the tailed files may take.
//!
//! Guarantees: at start the soft `RLIMIT_NOFILE` is raised to the hard one (as daemons do); the
//! tailed files of all flows together never hold more than [`FileCap::cap`]: `max_open_files`, and
//! never more than the soft limit less [`RESERVE`] kept for what the agent itself opens (the
//! checkpoint database and the files SQLite keeps beside it, sinks' outputs and connections, the
//! HTTP endpoint and its clients, dead-letter files, inotify, journals, the Kubernetes API, and
//! the file opened for a moment to identify a new file or stage a closed file's checkpoint).
//!
//! Not done here: which files hold the descriptors ([`crate::source::tail`]).

/// Descriptors kept for the agent's own use (at most half the limit).
pub const RESERVE: usize = 128;

/// The open-file limit and the tailed files' share of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCap {
    /// The soft limit after raising it.
    pub limit: u64,
    /// What is kept for the agent's own use.
    pub reserve: usize,
    /// The descriptors the tailed files may hold, all flows together.
    pub cap: usize,
    /// `max_open_files` is more than the limit leaves.
    pub lowered: bool,
}

impl FileCap {
    /// The share of an open-file `limit` the tailed files may take with `max_open_files`.
    pub fn new(max_open_files: usize, limit: u64) -> FileCap {
        let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
        let reserve = RESERVE.min(limit_usize / 2);
        let room = limit_usize.saturating_sub(reserve).max(1);
        FileCap { limit, reserve, cap: max_open_files.min(room), lowered: max_open_files > room }
    }

    /// The warning to log when `max_open_files` is above what the limit leaves.
    pub fn warning(&self, max_open_files: usize) -> Option<String> {
        self.lowered.then(|| {
            format!(
                "max_open_files is {max_open_files} but the open-file limit (RLIMIT_NOFILE) is {}, of which {} are kept for the agent's own use: tailed files hold at most {} descriptors; raise the hard limit (LimitNOFILE= in the systemd unit, ulimit -n) to hold more",
                self.limit, self.reserve, self.cap
            )
        })
    }
}

/// Raises the soft open-file limit to the hard one; the soft limit now, and what it was when it
/// was raised.
pub fn raise_open_file_limit() -> std::io::Result<(u64, Option<u64>)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct it is given
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    // the kernel bounds the hard limit by fs.nr_open; an unbounded one is not a number to use
    let want = if lim.rlim_max == libc::RLIM_INFINITY { lim.rlim_cur.max(1 << 20) } else { lim.rlim_max };
    if want <= before {
        return Ok((before, None));
    }
    let raised = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max };
    // SAFETY: setrlimit reads the rlimit it is given
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Ok((before, None));
    }
    Ok((want, Some(before)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tailed_files_never_take_the_reserve() {
        let c = FileCap::new(256, 1024);
        assert_eq!((c.cap, c.reserve, c.lowered), (256, 128, false));
        let c = FileCap::new(100_000, 20_000);
        assert_eq!((c.cap, c.reserve, c.lowered), (19_872, 128, true));
        assert!(c.warning(100_000).expect("lowered").contains("hold at most 19872"));
        assert_eq!(FileCap::new(256, 1024).warning(256), None);
    }

    #[test]
    fn a_tiny_limit_keeps_half_for_the_agent() {
        let c = FileCap::new(256, 100);
        assert_eq!((c.cap, c.reserve), (50, 50));
        assert_eq!(FileCap::new(256, 1).cap, 1);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (now, _) = raise_open_file_limit().expect("getrlimit works");
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: as above
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, now);
        assert!(lim.rlim_max == libc::RLIM_INFINITY || lim.rlim_cur == lim.rlim_max);
    }
}
