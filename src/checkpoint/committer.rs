//! When staged checkpoints are committed: soon after an acknowledgement moved them (one
//! transaction for everything acknowledged meanwhile, so a crash re-sends little), and after a
//! failed commit not before a retry delay, while shipping goes on and positions stay in memory.
//!
//! Guarantees: the decisions read only the instant passed in; a failure is logged at most once a
//! minute and counted every time; recovery is logged once. Not done here: staging (the tails).

use super::Store;
use crate::ops::metrics::Metrics;
use std::time::{Duration, Instant};

/// Checkpoints are committed this soon after an acknowledgement moves them.
pub const COMMIT_EVERY: Duration = Duration::from_millis(100);
/// After a failed commit, the next attempt waits this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);
/// A commit failure is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Committer {
    last: Instant,
    retry_at: Instant,
    failing_since: Option<Instant>,
    logged: Option<Instant>,
}

impl Committer {
    pub fn new(now: Instant) -> Self {
        Committer { last: now, retry_at: now, failing_since: None, logged: None }
    }

    /// When the next commit is due, when something is staged.
    pub fn next_due(&self, staged: bool) -> Option<Instant> {
        staged.then(|| (self.last + COMMIT_EVERY).max(self.retry_at))
    }

    /// Whether a commit is due at `now`.
    pub fn is_due(&self, now: Instant, staged: bool) -> bool {
        self.next_due(staged).is_some_and(|at| now >= at)
    }

    /// Commits what `store` staged, now; the metrics and the log say how it went.
    pub fn commit(&mut self, now: Instant, store: &mut Store, metrics: &Metrics) {
        match store.commit() {
            Ok(_) => {
                metrics.checkpoint_committed();
                self.committed(now);
            }
            Err(e) => {
                metrics.checkpoint_commit_failed(&e.to_string());
                if self.failed(now) {
                    tracing::error!("{e}; shipping continues and positions are kept in memory until a write succeeds");
                }
            }
        }
    }

    fn committed(&mut self, now: Instant) {
        self.last = now;
        if let Some(since) = self.failing_since.take() {
            tracing::info!("checkpoint database writable again after {:?}; positions saved", now.saturating_duration_since(since));
        }
    }

    /// Records a failure at `now`; whether to log it.
    fn failed(&mut self, now: Instant) -> bool {
        self.last = now;
        self.retry_at = now + RETRY_AFTER;
        self.failing_since.get_or_insert(now);
        let log = self.logged.is_none_or(|t| now >= t + LOG_EVERY);
        if log {
            self.logged = Some(now);
        }
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_follow_acknowledgements_closely_and_wait_after_a_failure_logged_once_a_minute() {
        let t0 = Instant::now();
        let mut c = Committer::new(t0);
        assert_eq!(c.next_due(false), None, "nothing staged, nothing due");
        assert_eq!(c.next_due(true), Some(t0 + COMMIT_EVERY));
        assert!(!c.is_due(t0 + COMMIT_EVERY / 2, true));
        assert!(c.is_due(t0 + COMMIT_EVERY, true));
        let t1 = t0 + Duration::from_secs(1);
        assert!(c.failed(t1), "the first failure is logged");
        assert_eq!(c.next_due(true), Some(t1 + RETRY_AFTER));
        assert!(!c.failed(t1 + RETRY_AFTER), "the next ones within a minute are not");
        assert!(c.failed(t1 + LOG_EVERY), "a minute later it is logged again");
        let t2 = t1 + LOG_EVERY + RETRY_AFTER;
        c.committed(t2);
        assert_eq!(c.failing_since, None);
        assert_eq!(c.next_due(true), Some(t2 + COMMIT_EVERY), "back to committing soon after acknowledgements");
    }
}
