//! Sink workers under watch: a worker that panics, or returns while its flow still sends it
//! batches (a runtime that failed to start, say), is reported to the engine instead of leaving
//! its flow's batches unanswered and their bytes counted in flight for ever.
//!
//! Guarantees: exactly one report per worker that ends while its channel is open, carrying the
//! panic's message; none for a worker that ends because its flow closed the channel. Not done
//! here: what the engine does about it (it restarts the flow from its saved positions).

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why a sink worker ended before its flow was done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerDied {
    /// The flow's index in the engine.
    pub flow: usize,
    pub reason: String,
}

/// Runs `body` (a worker's loop over its batches) and reports through `report` if it panics, or
/// returns while `still_open()` says batches may still come.
pub fn run_watched(flow: usize, body: impl FnOnce(), still_open: impl FnOnce() -> bool, report: impl FnOnce(WorkerDied)) {
    let reason = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(()) if !still_open() => return,
        Ok(()) => "the sink worker stopped while its flow still sends it batches".to_string(),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            format!("the sink worker panicked: {message}")
        }
    };
    report(WorkerDied { flow, reason });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn watched(body: impl FnOnce(), open: bool) -> Vec<WorkerDied> {
        let got = RefCell::new(Vec::new());
        run_watched(3, body, || open, |d| got.borrow_mut().push(d));
        got.into_inner()
    }

    #[test]
    fn a_worker_that_panics_is_reported_once_with_its_message() {
        let got = watched(|| panic!("index out of bounds: the len is 0"), true);
        assert_eq!(got, vec![WorkerDied { flow: 3, reason: "the sink worker panicked: index out of bounds: the len is 0".into() }]);
        let n = 7;
        let got = watched(move || panic!("formatted {n}"), true);
        assert_eq!(got[0].reason, "the sink worker panicked: formatted 7");
    }

    #[test]
    fn a_worker_that_returns_while_batches_may_come_is_reported() {
        let got = watched(|| {}, true);
        assert_eq!(got.len(), 1);
        assert!(got[0].reason.contains("stopped while its flow still sends it batches"));
    }

    #[test]
    fn a_worker_that_ends_because_its_flow_closed_the_channel_is_not_reported() {
        assert!(watched(|| {}, false).is_empty());
    }
}
