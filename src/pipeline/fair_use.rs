//! MoEngage's fair use per end user: at most 5,000 requests a minute for one `customer_id`, across
//! all server sources; a breach blocks that user's data for hours. Counted here per run, in fixed
//! one-minute windows of half the limit each, so that no sliding minute can ever hold more than
//! the limit (two adjacent windows at most). Memory: one entry per user seen in the current
//! window, which the request budgets bound (60,000 records a minute at most).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// MoEngage's documented limit.
pub const FAIR_USE_PER_MINUTE: u32 = 5_000;

const WINDOW: Duration = Duration::from_secs(60);

pub(super) struct FairUse {
    /// Requests per user per window: half of the per-minute limit.
    per_window: u32,
    started: Instant,
    counts: HashMap<u64, u32>,
}

impl FairUse {
    pub(super) fn new(per_minute: u32, now: Instant) -> Self {
        FairUse {
            per_window: (per_minute / 2).max(1),
            started: now,
            counts: HashMap::new(),
        }
    }

    /// Whether one more request for each of `customers` (hashes of their `customer_id`) may go
    /// now; if so, it is counted.
    pub(super) fn admit(&mut self, customers: &[u64], now: Instant) -> bool {
        if now >= self.started + WINDOW {
            self.started = now;
            self.counts.clear();
        }
        if customers
            .iter()
            .any(|c| self.counts.get(c).is_some_and(|n| *n >= self.per_window))
        {
            return false;
        }
        for c in customers {
            *self.counts.entry(*c).or_insert(0) += 1;
        }
        true
    }

    /// When the current window ends (and a held body may be tried again).
    pub(super) fn window_ends(&self) -> Instant {
        self.started + WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_sliding_minute_holds_more_than_the_limit_for_one_user() {
        let t0 = Instant::now();
        let mut fair = FairUse::new(10, t0);
        let mut sent = Vec::new();
        // One user asks every 100 ms for 5 minutes; another user is never held.
        for i in 0..3_000u64 {
            let now = t0 + Duration::from_millis(100 * i);
            if fair.admit(&[7], now) {
                sent.push(now);
            }
            assert!(fair.admit(&[1_000 + i], now), "other users go");
        }
        for (i, t) in sent.iter().enumerate() {
            let in_minute = sent[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(60))
                .count();
            assert!(
                in_minute <= 10,
                "{in_minute} requests within a minute of {t:?}"
            );
        }
        // It is held, not dropped: 5 per window, 5 windows.
        assert_eq!(sent.len(), 25);
    }

    #[test]
    fn a_body_with_one_user_over_the_limit_waits_whole_and_counts_nothing() {
        let t0 = Instant::now();
        let mut fair = FairUse::new(4, t0);
        assert!(fair.admit(&[1, 2], t0));
        assert!(fair.admit(&[1], t0));
        assert!(!fair.admit(&[1, 3], t0), "user 1 is at 2 of 2");
        assert!(
            fair.admit(&[3], t0),
            "user 3 was not counted by the refused body"
        );
        assert!(fair.admit(&[1, 3], fair.window_ends()));
    }
}
