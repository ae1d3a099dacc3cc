//! The agent's health as `/health`, `/live` and `/ready` read it: the engine's heartbeat,
//! readiness, checkpoint commits that fail, the dead-letter limit, the held flows, and the
//! problems that make the agent unhealthy.
//!
//! Guarantees: reading it takes only the metrics' own locks, never the engine's. Not here: the
//! counters and series (the parent module).

use super::{now_ms, Metrics};
use std::sync::atomic::Ordering;

impl Metrics {
    /// Milliseconds since the engine's last pass.
    pub fn heartbeat_age_ms(&self) -> u64 {
        now_ms().saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed))
    }

    pub fn heartbeat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The flows held back, not started (id and why), as the running configuration has them.
    pub fn set_held(&self, held: Vec<(String, String)>) {
        self.flows_held.set(held.len() as i64);
        if let Ok(mut h) = self.held.lock() {
            *h = held;
        }
    }

    /// The flows held back, not started: id and why.
    pub fn held(&self) -> Vec<(String, String)> {
        self.held.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// A flow is unhealthy once it dead-letters `n` records within the failing time.
    pub fn set_unhealthy_dead_letters(&self, n: u64) {
        self.unhealthy_dead_letters.store(n, Ordering::Relaxed);
    }

    /// A checkpoint commit failed with `error`.
    pub fn checkpoint_commit_failed(&self, error: &str) {
        self.checkpoint_commit_failures.inc();
        let _ = self.checkpoint_failing_since_ms.compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
        if let Ok(mut e) = self.checkpoint_last_error.lock() {
            *e = error.chars().take(300).collect();
        }
    }

    /// A checkpoint commit succeeded.
    pub fn checkpoint_committed(&self) {
        self.checkpoint_failing_since_ms.store(0, Ordering::Relaxed);
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn uptime_ms(&self) -> u64 {
        now_ms().saturating_sub(self.started_ms)
    }

    /// What is wrong, if anything: the engine has not made a pass for `wedged_after_ms`; a sink
    /// has failed (other than by throttling) for `failing_after_ms` without a success, or, at once,
    /// its destination refuses whole requests as invalid (a configuration error); the checkpoints
    /// have not been saved for `failing_after_ms`; at once, a configured flow is held back.
    pub fn health_problems(&self, wedged_after_ms: u64, failing_after_ms: u64) -> Vec<String> {
        let now = now_ms();
        let mut out = Vec::new();
        for (id, reason) in self.held() {
            out.push(format!("flow {id} is not started: {reason} (its files wait unread; fix the flow and reload)"));
        }
        let beat = self.heartbeat_ms.load(Ordering::Relaxed);
        if now.saturating_sub(beat) > wedged_after_ms {
            out.push(format!("the tailing engine has not made progress for {} s", (now - beat) / 1000));
        }
        let since = self.checkpoint_failing_since_ms.load(Ordering::Relaxed);
        if since > 0 && now.saturating_sub(since) >= failing_after_ms {
            let e = self.checkpoint_last_error.lock().map(|e| e.clone()).unwrap_or_default();
            out.push(format!(
                "checkpoints have not been saved for {} s (a restart would send again what was shipped since): {e}",
                (now - since) / 1000
            ));
        }
        let dead_letter_limit = self.unhealthy_dead_letters.load(Ordering::Relaxed);
        for f in self.flows() {
            let recent = f.dead_letters_since(now.saturating_sub(failing_after_ms));
            if recent >= dead_letter_limit {
                out.push(format!(
                    "flow {}: {recent} records were rejected as invalid and dead-lettered in the last {} s (the limit is {dead_letter_limit}): the records or the stream need a look",
                    f.id,
                    failing_after_ms / 1000
                ));
            }
            if let Some((code, message)) = f.refusal.lock().ok().and_then(|r| r.clone()) {
                let last = format!(": {code}: {message}");
                out.push(format!(
                    "flow {}: {} refuses every request as invalid{last} (a configuration error: fix the stream or the flow; the records wait in the log files)",
                    f.id, f.destination
                ));
                continue;
            }
            let since = f.failing_since_ms.load(Ordering::Relaxed);
            if since > 0 && now.saturating_sub(since) >= failing_after_ms {
                let last = f.last_error().map(|(_, code, message)| format!(": {code}: {message}")).unwrap_or_default();
                out.push(format!("flow {}: sending to {} has failed for {} s{last}", f.id, f.destination, (now - since) / 1000));
            } else {
                let stalled = f.stalled_since_ms.load(Ordering::Relaxed);
                if stalled > 0 && now.saturating_sub(stalled) >= failing_after_ms {
                    out.push(format!(
                        "flow {}: {} has acknowledged nothing for {} s while batches wait (its files are not read meanwhile; other flows go on)",
                        f.id,
                        f.destination,
                        (now - stalled) / 1000
                    ));
                }
            }
        }
        out
    }
}
