//! The sliding one-minute request window of one API behind 429 and the `x-ratelimit-*`
//! headers. Strict on purpose: the 101st request inside any 60 s span is refused, so a client
//! pacing at exactly the limit finds out here rather than in production.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Length of the window MoEngage counts requests in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// What the `x-ratelimit-*` headers report after a request was (or was not) admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateStatus {
    /// `x-ratelimit-limit`: requests allowed per window.
    pub limit: u32,
    /// `x-ratelimit-remaining`: requests still allowed in the current window.
    pub remaining: u32,
    /// `x-ratelimit-reset`: whole seconds (rounded up) until the window frees another slot
    /// — when the oldest counted request, or the one whose expiry brings the count under
    /// the limit, leaves the window; 0 when nothing is counted.
    pub reset_secs: u64,
}

/// Admission times of the requests counted in the last [`WINDOW`], oldest first.
#[derive(Debug, Default)]
pub struct RateWindow {
    /// Instants of admitted requests; refused requests are not counted, like MoEngage's
    /// limiter, so a client that backs off is not punished for its 429s.
    hits: VecDeque<Instant>,
}

impl RateWindow {
    /// Counts a request at `now` if the window has room; `Err` carries the status for the 429.
    pub fn admit(&mut self, limit: u32, now: Instant) -> Result<RateStatus, RateStatus> {
        self.expire(now);
        if self.hits.len() >= limit as usize {
            return Err(self.status(limit, now));
        }
        self.hits.push_back(now);
        Ok(self.status(limit, now))
    }

    /// The header values at `now` without counting anything (for answers that are not rate
    /// counted, such as 401 or injected faults).
    pub fn peek(&mut self, limit: u32, now: Instant) -> RateStatus {
        self.expire(now);
        self.status(limit, now)
    }

    fn expire(&mut self, now: Instant) {
        while self
            .hits
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= WINDOW)
        {
            self.hits.pop_front();
        }
    }

    fn status(&self, limit: u32, now: Instant) -> RateStatus {
        let counted = self.hits.len();
        let remaining = (limit as usize).saturating_sub(counted);
        // The hit whose expiry brings the count below the limit; the oldest one if under it
        // already (the limit may have been lowered at runtime, leaving more hits than slots).
        let pivot = counted.saturating_sub(limit as usize);
        let reset_secs = self.hits.get(pivot).map_or(0, |&t| {
            let left = (t + WINDOW).saturating_duration_since(now);
            u64::try_from(left.as_millis().div_ceil(1000)).unwrap_or(u64::MAX)
        });
        RateStatus {
            limit,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_then_refuses_until_the_oldest_expires() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        let limit = 3;
        let seen: Vec<_> = (0..3u64)
            .map(|i| w.admit(limit, t0 + Duration::from_secs(i * 10)).unwrap())
            .collect();
        assert_eq!(
            seen.iter().map(|s| s.remaining).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        assert_eq!(seen[0].reset_secs, 60);

        // At t=25 s the first hit (t=0) frees its slot at t=60: 35 s away.
        let refused = w.admit(limit, t0 + Duration::from_secs(25)).unwrap_err();
        assert_eq!(
            refused,
            RateStatus {
                limit: 3,
                remaining: 0,
                reset_secs: 35
            }
        );

        // Exactly 60 s after the first hit its slot is free again.
        let again = w.admit(limit, t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(again.remaining, 0);
    }

    #[test]
    fn reset_rounds_up_partial_seconds() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        w.admit(1, t0).unwrap();
        let s = w.peek(1, t0 + Duration::from_millis(59_001));
        assert_eq!(s.reset_secs, 1);
        assert_eq!(w.peek(1, t0 + WINDOW).remaining, 1);
    }

    #[test]
    fn lowering_the_limit_points_reset_at_the_slot_that_frees_room() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        for i in 0..4u64 {
            w.admit(10, t0 + Duration::from_secs(i)).unwrap();
        }
        // Limit lowered to 2 with 4 counted: room appears when the 3rd-oldest (t=2) expires.
        let s = w.admit(2, t0 + Duration::from_secs(5)).unwrap_err();
        assert_eq!(s.reset_secs, 57);
        assert_eq!(s.remaining, 0);
    }

    #[test]
    fn empty_window_reports_zero_reset() {
        let mut w = RateWindow::default();
        assert_eq!(
            w.peek(5, Instant::now()),
            RateStatus {
                limit: 5,
                remaining: 5,
                reset_secs: 0
            }
        );
    }
}
