//! Pacing: one budget per MoEngage API (Track User, Create Event, Bulk Import), shared by every
//! sync and object of the instance. Every request — retries included — waits for its slot here,
//! so a steady run never meets a 429 instead of firing and then backing off.
//!
//! A GCRA ("virtual scheduling") over `tokio::time`, written here rather than taken from governor
//! because governor keeps its own clock: tests can't pause it, and MoEngage's reset hints need a
//! "nothing before instant T" that governor doesn't offer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::syncs::{ApiBudget, ApiBudgets};
use crate::model::Endpoint;

/// Fraction of the configured budget actually used: a strict sliding-window limiter lets timer
/// jitter push the 101st request into the window when pacing at exactly 100 %.
pub const HEADROOM: f64 = 0.97;

/// Spaces requests at a fixed interval (which a reloaded configuration may change).
#[derive(Debug)]
pub struct Pacer {
    /// Time between two requests, in nanoseconds; 0 = no pacing.
    interval_ns: AtomicU64,
    /// The earliest instant the next request may start (GCRA's theoretical arrival time).
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// Paces at `HEADROOM` × `per_minute` requests per minute.
    pub fn per_minute(per_minute: u32) -> Self {
        let pacer = Pacer::unlimited();
        pacer.set_per_minute(Some(per_minute));
        pacer
    }

    /// No pacing at all (benchmarks with the limit lifted; an unset record budget).
    pub fn unlimited() -> Self {
        Pacer {
            interval_ns: AtomicU64::new(0),
            next: Mutex::new(None),
        }
    }

    /// Paces at `HEADROOM` × `per_minute` from the next slot on; `None` lifts the limit.
    pub fn set_per_minute(&self, per_minute: Option<u32>) {
        let ns = per_minute.map_or(0, |p| {
            let rate = (p.max(1) as f64) * HEADROOM;
            (60e9 / rate) as u64
        });
        self.interval_ns.store(ns, Ordering::Relaxed);
    }

    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns.load(Ordering::Relaxed))
    }

    /// Waits for this request's slot. Slots are handed out in call order.
    pub async fn acquire(&self) {
        self.acquire_n(1).await;
    }

    /// Waits for a slot worth `n` units (records, for a record budget): the caller goes at once if
    /// the budget allows and the next caller waits `n` intervals.
    pub async fn acquire_n(&self, n: u64) {
        let interval = self.interval();
        if n == 0 || interval.is_zero() {
            return;
        }
        let at = {
            // A poisoned lock only means another task panicked mid-update of an Instant; the value
            // is still a valid schedule, so keep using it.
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + interval.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)));
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

/// One API's budgets: requests per minute, and optionally records per minute by kind (MoEngage
/// counts Track User, Track Event and Bulk Import records per minute per workspace).
#[derive(Debug)]
pub struct Budget {
    /// `requests_per_minute`, else `RATE_LIMIT_PER_MINUTE`.
    pub requests: Pacer,
    /// `users_per_minute`, else `USERS_PER_MINUTE`: customer records (unlimited when unset).
    pub users: Pacer,
    /// `events_per_minute`, else `EVENTS_PER_MINUTE`: event records (unlimited when unset).
    pub events: Pacer,
}

impl Budget {
    pub fn new(
        requests_per_minute: u32,
        users_per_minute: Option<u32>,
        events_per_minute: Option<u32>,
    ) -> Self {
        let budget = Budget {
            requests: Pacer::unlimited(),
            users: Pacer::unlimited(),
            events: Pacer::unlimited(),
        };
        budget.set(&ApiBudget {
            requests_per_minute,
            users_per_minute,
            events_per_minute,
        });
        budget
    }

    /// New rates from the next slot on (a reloaded `SYNC_CONFIG`).
    pub fn set(&self, b: &ApiBudget) {
        self.requests.set_per_minute(Some(b.requests_per_minute));
        self.users.set_per_minute(b.users_per_minute);
        self.events.set_per_minute(b.events_per_minute);
    }

    /// Waits until one request carrying `users` customer and `events` event records may go.
    pub async fn acquire(&self, users: u64, events: u64) {
        self.requests.acquire().await;
        self.users.acquire_n(users).await;
        self.events.acquire_n(events).await;
    }

    /// MoEngage asked to hold off.
    pub fn hold_off(&self, wait: Duration) {
        self.requests.hold_off(wait);
    }
}

/// One [`Budget`] per MoEngage API. Two syncs that send to the same API share its budget.
#[derive(Debug)]
pub struct Budgets {
    track_user: Budget,
    create_event: Budget,
    bulk_import: Budget,
}

impl Budgets {
    pub fn new(b: &ApiBudgets) -> Self {
        let one = |a: &ApiBudget| {
            Budget::new(
                a.requests_per_minute,
                a.users_per_minute,
                a.events_per_minute,
            )
        };
        Budgets {
            track_user: one(&b.track_user),
            create_event: one(&b.create_event),
            bulk_import: one(&b.bulk_import),
        }
    }

    /// The budget `endpoint`'s requests spend (the connection check spends Track User's).
    pub fn get(&self, endpoint: Endpoint) -> &Budget {
        match endpoint {
            Endpoint::Customer | Endpoint::Authentication => &self.track_user,
            Endpoint::Event => &self.create_event,
            Endpoint::Transition => &self.bulk_import,
        }
    }

    /// New rates for every API (a reloaded `SYNC_CONFIG`).
    pub fn set(&self, b: &ApiBudgets) {
        self.track_user.set(&b.track_user);
        self.create_event.set(&b.create_event);
        self.bulk_import.set(&b.bulk_import);
    }

    /// The highest request rate of any API, per second (sizes the in-flight window).
    pub fn max_requests_per_sec(&self) -> f64 {
        [&self.track_user, &self.create_event, &self.bulk_import]
            .iter()
            .map(|b| {
                let i = b.requests.interval().as_secs_f64();
                if i > 0.0 {
                    1.0 / i
                } else {
                    f64::INFINITY
                }
            })
            .fold(0.0, f64::max)
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
