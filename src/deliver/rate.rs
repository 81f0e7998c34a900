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

use crate::model::Endpoint;

/// Fraction of the configured budget actually used: a strict sliding-window limiter lets timer
/// jitter push the 101st request into the window when pacing at exactly 100 %.
pub const HEADROOM: f64 = 0.97;

/// The request budget of one MoEngage API and, optionally, its record budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiBudget {
    pub requests_per_minute: u32,
    /// Customer records per minute (Track User, Bulk Import).
    pub users_per_minute: Option<u32>,
    /// Event records per minute (Create Event, Bulk Import).
    pub events_per_minute: Option<u32>,
}

/// One budget per MoEngage API, shared by every sync and object an instance processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiBudgets {
    /// `POST /v1/customer`.
    pub track_user: ApiBudget,
    /// `POST /v1/event`.
    pub create_event: ApiBudget,
    /// `POST /v1/transition`.
    pub bulk_import: ApiBudget,
    /// `POST /v1/customer/delete` (mirror mode): `DELETES_PER_MINUTE`.
    pub delete_users: ApiBudget,
}

impl ApiBudgets {
    /// Every API with the variables' budgets (`RATE_LIMIT_PER_MINUTE`, `USERS_PER_MINUTE`,
    /// `EVENTS_PER_MINUTE`); user records count only where users go, events where events go.
    pub fn from_variables(requests: u32, users: Option<u32>, events: Option<u32>) -> Self {
        let api = |users, events| ApiBudget {
            requests_per_minute: requests,
            users_per_minute: users,
            events_per_minute: events,
        };
        ApiBudgets {
            track_user: api(users, None),
            create_event: api(None, events),
            bulk_import: api(users, events),
            delete_users: api(None, None),
        }
    }

    /// The same, with `DELETES_PER_MINUTE` for Delete Users.
    pub fn with_deletes(mut self, requests_per_minute: u32) -> Self {
        self.delete_users.requests_per_minute = requests_per_minute;
        self
    }

    /// The budget `endpoint` spends; the connection check spends Track User's.
    pub fn get(&self, endpoint: Endpoint) -> &ApiBudget {
        match endpoint {
            Endpoint::Customer | Endpoint::Authentication => &self.track_user,
            Endpoint::Event => &self.create_event,
            Endpoint::Transition => &self.bulk_import,
            Endpoint::Delete => &self.delete_users,
        }
    }
}

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
        match per_minute {
            Some(p) => self.set_rate(p as f64),
            None => self.interval_ns.store(0, Ordering::Relaxed),
        }
    }

    /// Paces at `HEADROOM` × `per_minute` (at least one request a minute).
    pub fn set_rate(&self, per_minute: f64) {
        let rate = per_minute.max(1.0) * HEADROOM;
        self.interval_ns
            .store((60e9 / rate) as u64, Ordering::Relaxed);
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
        self.acquire_n_until(n, None).await;
    }

    /// As [`Pacer::acquire_n`], but a slot later than `deadline` is not taken (nor waited for):
    /// `false`, and the budget is left to others. Every wait counts against the deadline.
    pub async fn acquire_n_until(&self, n: u64, deadline: Option<Instant>) -> bool {
        let interval = self.interval();
        if n == 0 || interval.is_zero() {
            return true;
        }
        let at = {
            // A poisoned lock only means another task panicked mid-update of an Instant; the value
            // is still a valid schedule, so keep using it.
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            if deadline.is_some_and(|d| at > d) {
                return false;
            }
            *next = Some(at + interval.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)));
            at
        };
        tokio::time::sleep_until(at).await;
        true
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
    /// The request rate in force: at most the configured one, lowered by MoEngage's answers.
    control: Mutex<RateControl>,
}

/// Adaptive request rate (AIMD): never above what is configured nor above MoEngage's
/// `x-ratelimit-limit`; halved on a 429 (at most once a second, since a burst of answers to
/// requests already in flight tells nothing new); raised by 1 % of the ceiling per accepted
/// request until it is back at the ceiling.
#[derive(Debug, Clone)]
struct RateControl {
    configured: f64,
    server_limit: Option<f64>,
    current: f64,
    last_cut: Option<Instant>,
}

impl RateControl {
    fn ceiling(&self) -> f64 {
        self.server_limit
            .map_or(self.configured, |s| s.min(self.configured))
    }
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
            control: Mutex::new(RateControl {
                configured: requests_per_minute as f64,
                server_limit: None,
                current: requests_per_minute as f64,
                last_cut: None,
            }),
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
        let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
        c.configured = b.requests_per_minute as f64;
        c.current = c.ceiling();
        self.requests.set_rate(c.current);
        self.users.set_per_minute(b.users_per_minute);
        self.events.set_per_minute(b.events_per_minute);
    }

    /// Waits until one request carrying `users` customer and `events` event records may go.
    pub async fn acquire(&self, users: u64, events: u64) {
        self.acquire_until(users, events, None).await;
    }

    /// As [`Budget::acquire`], unless the slot would come after `deadline`: then `false`, at once.
    pub async fn acquire_until(&self, users: u64, events: u64, deadline: Option<Instant>) -> bool {
        self.requests.acquire_n_until(1, deadline).await
            && self.users.acquire_n_until(users, deadline).await
            && self.events.acquire_n_until(events, deadline).await
    }

    /// Learns from one answer: `x-ratelimit-limit` caps the rate (following it down and back up,
    /// never above the configured budget); a 429 halves it; an accepted request raises it.
    pub fn observe(&self, status: u16, limit: Option<u64>) {
        let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = limit {
            c.server_limit = Some(l as f64);
        }
        let ceiling = c.ceiling();
        if status == 429 {
            let now = Instant::now();
            if c.last_cut
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                c.current = (c.current * 0.5).max(1.0);
                c.last_cut = Some(now);
            }
        } else if (200..300).contains(&status) {
            c.current += ceiling * 0.01;
        }
        c.current = c.current.min(ceiling).max(1.0);
        self.requests.set_rate(c.current);
    }

    /// Requests per minute in force now (before the pacer's 97 % headroom).
    pub fn effective_per_minute(&self) -> f64 {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .current
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
    delete_users: Budget,
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
            delete_users: one(&b.delete_users),
        }
    }

    /// The budget `endpoint`'s requests spend (the connection check spends Track User's).
    pub fn get(&self, endpoint: Endpoint) -> &Budget {
        match endpoint {
            Endpoint::Customer | Endpoint::Authentication => &self.track_user,
            Endpoint::Event => &self.create_event,
            Endpoint::Transition => &self.bulk_import,
            Endpoint::Delete => &self.delete_users,
        }
    }

    /// New rates for every API (a reloaded `SYNC_CONFIG`).
    pub fn set(&self, b: &ApiBudgets) {
        self.track_user.set(&b.track_user);
        self.create_event.set(&b.create_event);
        self.bulk_import.set(&b.bulk_import);
        self.delete_users.set(&b.delete_users);
    }

    /// The request rate in force for `endpoint`'s API, per minute.
    pub fn effective_per_minute(&self, endpoint: Endpoint) -> f64 {
        self.get(endpoint).effective_per_minute()
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

    #[tokio::test(start_paused = true)]
    async fn n_requests_with_latency_l_take_n_over_r_not_n_times_l() {
        // 600/min and a 500 ms round trip: one at a time would take 200 × 0.5 s = 100 s.
        let budget = std::sync::Arc::new(Budget::new(600, None, None));
        let latency = Duration::from_millis(500);
        let window = crate::deliver::in_flight_for(10.0, Some(latency), 256);
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(window));
        let start = Instant::now();
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (budget, slots) = (budget.clone(), slots.clone());
                tokio::spawn(async move {
                    let _permit = slots.acquire_owned().await.unwrap();
                    budget.acquire(1, 0).await;
                    tokio::time::sleep(latency).await;
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let n_over_r = budget.requests.interval() * 199 + latency;
        let took = start.elapsed();
        assert!(
            took <= n_over_r + Duration::from_millis(5),
            "{took:?} for 200 requests; the budget allows {n_over_r:?}"
        );
        assert!(
            took >= budget.requests.interval() * 199,
            "{took:?}: over budget"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shrinking_rate_limit_header_is_followed_and_the_rate_recovers_but_never_above_config(
    ) {
        let budget = Budget::new(600, None, None);
        assert_eq!(budget.effective_per_minute(), 600.0);
        budget.observe(200, Some(120));
        assert_eq!(budget.effective_per_minute(), 120.0);
        let per_120 = Duration::from_secs_f64(60.0 / (120.0 * HEADROOM));
        assert!(budget.requests.interval().abs_diff(per_120) < Duration::from_micros(1));
        // The limit returns: the rate climbs back by 1 % of the ceiling per accepted request…
        budget.observe(200, Some(600));
        assert!(budget.effective_per_minute() < 600.0);
        for _ in 0..100 {
            budget.observe(200, Some(6000));
        }
        // …and never above what is configured, whatever MoEngage announces.
        assert_eq!(budget.effective_per_minute(), 600.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_rate_once_per_second_then_it_recovers_gradually() {
        let budget = Budget::new(1000, None, None);
        budget.observe(429, None);
        assert_eq!(budget.effective_per_minute(), 500.0);
        // The other answers of the same burst do not cut again.
        for _ in 0..20 {
            budget.observe(429, None);
        }
        assert_eq!(budget.effective_per_minute(), 500.0);
        tokio::time::advance(Duration::from_secs(1)).await;
        budget.observe(429, None);
        assert_eq!(budget.effective_per_minute(), 250.0);
        budget.observe(200, None);
        assert_eq!(budget.effective_per_minute(), 260.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_past_the_deadline_is_neither_waited_for_nor_taken() {
        let pacer = Pacer::per_minute(60);
        assert!(pacer.acquire_n_until(1, None).await);
        let start = Instant::now();
        // The next slot is ~1.03 s away.
        let deadline = Some(start + Duration::from_millis(500));
        assert!(!pacer.acquire_n_until(1, deadline).await);
        assert_eq!(start.elapsed(), Duration::ZERO, "no wait");
        // The slot is still there for a caller with time.
        assert!(
            pacer
                .acquire_n_until(1, Some(start + Duration::from_secs(2)))
                .await
        );
        assert_close(start.elapsed(), pacer.interval());
        // A hold-off past the deadline counts the same.
        pacer.hold_off(Duration::from_secs(30));
        assert!(
            !pacer
                .acquire_n_until(1, Some(Instant::now() + Duration::from_secs(10)))
                .await
        );
    }
}
