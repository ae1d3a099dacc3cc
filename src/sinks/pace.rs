//! How fast one flow sends to an AWS record service, decided from the answers alone: the window
//! of requests in flight and the backoff. [`Pace`] reads no clock (the instant is passed in), so a
//! test drives it in microseconds.
//!
//! Guarantees:
//! - the backoff follows progress: an answer that accepted or rejected for good any record
//!   clears it; only an answer that moved nothing grows it (from the initial backoff, doubling up
//!   to the maximum), and every wait it imposes has jitter;
//! - throttling narrows the window (multiplicative decrease: halved when most of a request's
//!   records, or the whole call, were throttled) and progress without such throttling widens it
//!   again (additive increase: one request per window's worth of answers), between one request
//!   and the flow's `max_in_flight_requests`, as TCP and the KPL's rate limiting do: the send
//!   rate follows what the destination takes instead of stopping;
//! - answers to requests sent before the last narrowing or growth (the same congestion, seen by
//!   several requests in flight) narrow and grow it once, not once each.
//!
//! Not done here: sending, and which records a request carries (the sink's queue).

use std::time::{Duration, Instant};

/// The window of requests in flight and the backoff of one flow.
#[derive(Debug, Clone)]
pub struct Pace {
    window: f64,
    max_window: usize,
    initial: Duration,
    max_backoff: Duration,
    /// The backoff of the last answer that moved nothing; zero once one did.
    backoff: Duration,
    /// No request starts before this.
    not_before: Option<Instant>,
    /// Counts narrowings and growths: a request carries the epoch it was sent in.
    epoch: u64,
}

/// What one answer was, as the pace sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    /// The epoch the request was sent in ([`Pace::epoch`]).
    pub epoch: u64,
    /// A record was accepted or rejected for good.
    pub progress: bool,
    /// The share of the request's records the service throttled (1 for a whole call throttled).
    pub throttled_share: f64,
}

impl Pace {
    /// A flow that may have `max_window` requests in flight (it starts with all of them) and backs
    /// off from `initial` to `max_backoff`.
    pub fn new(max_window: usize, initial: Duration, max_backoff: Duration) -> Pace {
        let max_window = max_window.max(1);
        Pace { window: max_window as f64, max_window, initial, max_backoff, backoff: Duration::ZERO, not_before: None, epoch: 0 }
    }

    /// Requests that may be in flight now.
    pub fn window(&self) -> usize {
        (self.window as usize).clamp(1, self.max_window)
    }

    /// The epoch a request sent now carries.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// When the next request may start, if not now.
    pub fn not_before(&self, now: Instant) -> Option<Instant> {
        self.not_before.filter(|t| *t > now)
    }

    /// The backoff in force (zero while answers make progress).
    #[cfg(test)]
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// Takes an answer received at `now`; `jitter` spreads a wait (see [`crate::sinks::aws::jitter`]).
    pub fn answered(&mut self, now: Instant, a: Answer, jitter: impl Fn(Duration) -> Duration) {
        let current = a.epoch == self.epoch;
        if a.throttled_share > 0.5 {
            if current {
                self.window = (self.window / 2.0).max(1.0);
                self.epoch += 1;
            }
        } else if a.progress {
            self.window = (self.window + 1.0 / self.window).min(self.max_window as f64);
        }
        if a.progress {
            self.backoff = Duration::ZERO;
            self.not_before = None;
        } else if current || self.backoff.is_zero() {
            self.backoff = if self.backoff.is_zero() { self.initial } else { (self.backoff * 2).min(self.max_backoff) };
            self.not_before = Some(now + jitter(self.backoff));
            if a.throttled_share <= 0.5 {
                self.epoch += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn answer(p: &Pace, progress: bool, throttled_share: f64) -> Answer {
        Answer { epoch: p.epoch(), progress, throttled_share }
    }

    #[test]
    fn the_backoff_grows_only_after_answers_that_moved_nothing_and_progress_clears_it() {
        let t0 = Instant::now();
        let mut p = Pace::new(4, 100 * MS, 1000 * MS);
        let same = |d| d;
        for (k, expected) in [100u32, 200, 400, 800, 1000, 1000].into_iter().enumerate() {
            let now = t0 + MS * k as u32;
            p.answered(now, answer(&p, false, 0.0), same);
            assert_eq!(p.backoff(), expected * MS);
            assert_eq!(p.not_before(now), Some(now + expected * MS));
        }
        // a partial success: 70 % accepted, 30 % throttled
        p.answered(t0, answer(&p, true, 0.3), same);
        assert_eq!((p.backoff(), p.not_before(t0)), (Duration::ZERO, None));
        p.answered(t0, answer(&p, false, 0.0), same);
        assert_eq!(p.backoff(), 100 * MS, "from the start again");
        // the wait has the jitter it is given
        p.answered(t0, answer(&p, false, 0.0), |d| d * 13 / 10);
        assert_eq!(p.not_before(t0), Some(t0 + 260 * MS));
    }

    #[test]
    fn throttling_halves_the_window_and_progress_widens_it_again_one_request_at_a_time() {
        let now = Instant::now();
        let mut p = Pace::new(8, MS, MS);
        assert_eq!(p.window(), 8);
        // 30 % of the records throttled, the rest accepted: not congestion, the window holds
        for _ in 0..100 {
            p.answered(now, answer(&p, true, 0.3), |d| d);
        }
        assert_eq!(p.window(), 8);
        p.answered(now, answer(&p, false, 1.0), |d| d);
        assert_eq!(p.window(), 4);
        p.answered(now, answer(&p, true, 0.9), |d| d);
        assert_eq!(p.window(), 2, "most records throttled narrows though some went");
        p.answered(now, answer(&p, false, 1.0), |d| d);
        p.answered(now, answer(&p, false, 1.0), |d| d);
        assert_eq!(p.window(), 1, "never below one request");
        // additive increase: about w answers to widen by one
        let mut answers = 0;
        while p.window() < 8 {
            p.answered(now, answer(&p, true, 0.0), |d| d);
            answers += 1;
        }
        assert!((20..=40).contains(&answers), "{answers} answers from 1 to 8");
    }

    #[test]
    fn answers_to_requests_sent_before_a_narrowing_count_once() {
        let now = Instant::now();
        let mut p = Pace::new(8, 100 * MS, 10_000 * MS);
        // eight requests in flight meet one outage: all sent in the same epoch
        let sent = p.epoch();
        for _ in 0..8 {
            p.answered(now, Answer { epoch: sent, progress: false, throttled_share: 1.0 }, |d| d);
        }
        assert_eq!((p.window(), p.backoff()), (4, 100 * MS), "halved once, backed off once");
        let sent = p.epoch();
        for _ in 0..8 {
            p.answered(now, Answer { epoch: sent, progress: false, throttled_share: 0.0 }, |d| d);
        }
        assert_eq!((p.window(), p.backoff()), (4, 200 * MS));
    }
}
