//! Pacing: one budget per workspace. Every request — retries included — waits for its slot here,
//! so a steady run never meets a 429 instead of firing and then backing off.
//!
//! A GCRA ("virtual scheduling") over `tokio::time`, written here rather than taken from governor
//! because governor keeps its own clock: tests can't pause it, and MoEngage's reset hints need a
//! "nothing before instant T" that governor doesn't offer.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Fraction of the configured budget actually used: a strict sliding-window limiter lets timer
/// jitter push the 101st request into the window when pacing at exactly 100 %.
pub const HEADROOM: f64 = 0.97;

/// Spaces requests at a fixed interval.
#[derive(Debug)]
pub struct Pacer {
    /// Time between two requests.
    interval: Duration,
    /// The earliest instant the next request may start (GCRA's theoretical arrival time).
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// Paces at `HEADROOM` × `per_minute` requests per minute.
    pub fn per_minute(per_minute: u32) -> Self {
        let rate = (per_minute.max(1) as f64) * HEADROOM;
        Pacer {
            interval: Duration::from_secs_f64(60.0 / rate),
            next: Mutex::new(None),
        }
    }

    /// No pacing at all (benchmarks with the limit lifted).
    pub fn unlimited() -> Self {
        Pacer {
            interval: Duration::ZERO,
            next: Mutex::new(None),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for this request's slot. Slots are handed out in call order.
    pub async fn acquire(&self) {
        self.acquire_n(1).await;
    }

    /// Waits for a slot worth `n` units (records, for a record budget): the caller goes at once if
    /// the budget allows and the next caller waits `n` intervals.
    pub async fn acquire_n(&self, n: u64) {
        if n == 0 {
            return;
        }
        let at = {
            // A poisoned lock only means another task panicked mid-update of an Instant; the value
            // is still a valid schedule, so keep using it.
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(
                at + self
                    .interval
                    .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)),
            );
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// MoEngage said to hold off (`Retry-After`, or no requests remaining until the window
    /// resets): no slot before `now + wait`.
    pub fn hold_off(&self, wait: Duration) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + wait;
        *next = Some(next.map_or(until, |n| n.max(until)));
    }
}

/// The workspace's budgets: requests per minute, and optionally records per minute by kind
/// (MoEngage counts Track User, Track Event and Bulk Import records per minute per workspace).
#[derive(Debug)]
pub struct Budget {
    /// `RATE_LIMIT_PER_MINUTE`.
    pub requests: Pacer,
    /// `USERS_PER_MINUTE`: customer records.
    pub users: Option<Pacer>,
    /// `EVENTS_PER_MINUTE`: event records.
    pub events: Option<Pacer>,
}

impl Budget {
    pub fn new(
        requests_per_minute: u32,
        users_per_minute: Option<u32>,
        events_per_minute: Option<u32>,
    ) -> Self {
        Budget {
            requests: Pacer::per_minute(requests_per_minute),
            users: users_per_minute.map(Pacer::per_minute),
            events: events_per_minute.map(Pacer::per_minute),
        }
    }

    /// Waits until one request carrying `users` customer and `events` event records may go.
    pub async fn acquire(&self, users: u64, events: u64) {
        self.requests.acquire().await;
        if let Some(p) = &self.users {
            p.acquire_n(users).await;
        }
        if let Some(p) = &self.events {
            p.acquire_n(events).await;
        }
    }

    /// MoEngage asked to hold off.
    pub fn hold_off(&self, wait: Duration) {
        self.requests.hold_off(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tokio's timer ticks in milliseconds; slots are absolute instants, so rounding never
    /// accumulates beyond one tick.
    fn assert_close(got: Duration, want: Duration) {
        assert!(
            got >= want && got - want <= Duration::from_millis(1),
            "got {got:?}, want {want:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn n_requests_at_rate_r_take_n_minus_one_intervals() {
        let pacer = Pacer::per_minute(100);
        let start = Instant::now();
        for _ in 0..50 {
            pacer.acquire().await;
        }
        assert_close(start.elapsed(), pacer.interval() * 49);
        // 60 / 97 s per request: 100 requests never fit in one minute.
        assert!(pacer.interval() * 99 > Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_budget() {
        let pacer = std::sync::Arc::new(Pacer::per_minute(60));
        let start = Instant::now();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let p = pacer.clone();
                tokio::spawn(async move { p.acquire().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_close(start.elapsed(), pacer.interval() * 9);
    }

    #[tokio::test(start_paused = true)]
    async fn record_budgets_pace_by_records_not_requests() {
        // 600 events/min at 97 % ≈ 9.7 records/s: bodies of 50 events go every ~5.15 s.
        let budget = Budget::new(1_000_000, None, Some(600));
        let start = Instant::now();
        for _ in 0..4 {
            budget.acquire(0, 50).await;
        }
        let per_record = Duration::from_secs_f64(60.0 / (600.0 * HEADROOM));
        assert_close(start.elapsed(), per_record * 150);
        // Customer records are not limited by the event budget.
        let start = Instant::now();
        budget.acquire(50, 0).await;
        budget.acquire(50, 0).await;
        assert!(start.elapsed() < Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn hold_off_delays_the_next_slot() {
        let pacer = Pacer::per_minute(6000);
        pacer.acquire().await;
        let start = Instant::now();
        pacer.hold_off(Duration::from_secs(30));
        pacer.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }
}
