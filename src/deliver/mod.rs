//! Delivery: takes one request body and its endpoint; gives one of three outcomes — delivered,
//! failed (dead-letter it), or misconfigured (stop the object) — after pacing under the API's
//! budget ([`rate`]) and retrying with capped exponential backoff and full jitter through the
//! HTTP client ([`client`]). Bodies that fail go to [`dead_letter`].

pub mod client;
pub mod dead_letter;
pub mod rate;

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::deliver::client::{classify, MoEngageClient, RetryAction};
use crate::deliver::rate::ApiBudgets;
use crate::deliver::rate::{Budget, Budgets};
use crate::model::Endpoint;

/// How hard to try one body before giving up on it.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// `RETRY_MAX_ATTEMPTS`: attempts per body including the first, default 6.
    pub max_attempts: u32,
    /// `RETRY_BASE_DELAY_MS`: backoff before the 2nd attempt is up to this; doubles each time.
    pub base_delay: Duration,
    /// `RETRY_MAX_DELAY_SECS`: cap of one backoff, default 60 s.
    pub max_delay: Duration,
    /// `RETRY_MAX_ELAPSED_SECS`: no new attempt starts after this much time on one body, default 300 s.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Full jitter (AWS's recommendation): uniform in [0, min(cap, base·2^(n−1))] before retry n.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let ceiling = exp.min(self.max_delay);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Why a body could not be delivered; goes into the dead-letter message as is.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailureDetail {
    /// HTTP status of the last answer, if there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Body of the last answer (MoEngage's error JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Transport error of the last attempt when no answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// One line for people: what happened.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        request_id: Option<String>,
    },
    /// Permanent failure or retries exhausted: dead-letter the body.
    Failed(FailureDetail),
    /// 401/403/409: the configuration is wrong; no body will get through.
    Misconfigured(FailureDetail),
    /// Not delivered yet, and the run's deadline came first: leave it to the continuation.
    Interrupted,
}

/// The outcome plus what it took.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub outcome: Outcome,
    /// Requests sent for this body (1 + retries).
    pub attempts: u32,
    /// How many answers were 429.
    pub rate_limited: u32,
    /// Time spent waiting for MoEngage's answers (not pacing or backoff).
    pub latency: Duration,
}

/// The capability the pipeline and redrive need: send one body to one endpoint until it is
/// delivered, fails permanently, is refused for configuration, or `stop_at` comes. What vector's
/// `Service` is to its sinks: [`MoEngageDelivery`] is the real one; tests fake it without moto.
#[async_trait::async_trait]
pub trait Deliver: Send + Sync {
    async fn deliver(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        records: (u64, u64),
        stop_at: Option<Instant>,
    ) -> Delivery;

    /// How many bodies may be in flight at once now. One by default: strictly in order.
    fn max_in_flight(&self) -> usize {
        1
    }

    /// New budgets (a reloaded `SYNC_CONFIG`), from the next request on.
    fn set_budgets(&self, _budgets: &ApiBudgets) {}

    /// Requests per minute in force for `endpoint` (configured, lowered by MoEngage's answers);
    /// `None` when not paced (fakes).
    fn effective_rate(&self, _endpoint: Endpoint) -> Option<f64> {
        None
    }
}

/// MoEngage's Data API: paced under each API's budgets and retried by the policy.
pub struct MoEngageDelivery {
    pub client: MoEngageClient,
    /// One per API, shared by every sync and object this instance processes.
    pub budgets: Budgets,
    pub policy: RetryPolicy,
    /// `MAX_IN_FLIGHT`: the most requests in flight at once.
    pub max_in_flight: usize,
    /// Round-trip time of MoEngage's answers, smoothed (EWMA), in microseconds; 0 until the first.
    pub latency_us: std::sync::atomic::AtomicU64,
}

impl MoEngageDelivery {
    pub fn new(
        client: MoEngageClient,
        budgets: Budgets,
        policy: RetryPolicy,
        max_in_flight: usize,
    ) -> Self {
        MoEngageDelivery {
            client,
            budgets,
            policy,
            max_in_flight: max_in_flight.max(1),
            latency_us: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn observe(&self, round_trip: Duration, attempts: u32) {
        use std::sync::atomic::Ordering::Relaxed;
        if attempts == 0 {
            return;
        }
        let sample = (round_trip / attempts).as_micros() as u64;
        let old = self.latency_us.load(Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.latency_us.store(new, Relaxed);
    }
}

/// Before the first answer, the round trip assumed: the middle of what MoEngage's docs lead one to
/// expect from a Lambda (50–300 ms). Too low only delays the ramp by one round trip; the pacer, not
/// the window, keeps the rate within the budget.
pub const ASSUMED_LATENCY: Duration = Duration::from_millis(250);

/// Little's law: requests in flight ≈ rate × round-trip time, with room for the latency's spread.
/// Before the first answer, [`ASSUMED_LATENCY`].
pub fn in_flight_for(requests_per_sec: f64, latency: Option<Duration>, cap: usize) -> usize {
    let l = latency.unwrap_or(ASSUMED_LATENCY);
    let wanted = (requests_per_sec * l.as_secs_f64() * 1.5).ceil() + 1.0;
    if wanted.is_finite() {
        (wanted as usize).clamp(1, cap.max(1))
    } else {
        cap.max(1)
    }
}

#[async_trait::async_trait]
impl Deliver for MoEngageDelivery {
    async fn deliver(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        records: (u64, u64),
        stop_at: Option<Instant>,
    ) -> Delivery {
        let d = deliver(
            &self.client,
            self.budgets.get(endpoint),
            &self.policy,
            endpoint,
            body,
            records,
            stop_at,
        )
        .await;
        self.observe(d.latency, d.attempts);
        d
    }

    fn max_in_flight(&self) -> usize {
        let us = self.latency_us.load(std::sync::atomic::Ordering::Relaxed);
        let rate = self.budgets.max_requests_per_sec();
        in_flight_for(
            rate,
            (us > 0).then(|| Duration::from_micros(us)),
            self.max_in_flight,
        )
    }

    fn set_budgets(&self, budgets: &ApiBudgets) {
        self.budgets.set(budgets);
    }

    fn effective_rate(&self, endpoint: Endpoint) -> Option<f64> {
        Some(self.budgets.effective_per_minute(endpoint))
    }
}

/// Sends `body` (carrying `records` = (customers, events)) to `endpoint` until it is accepted, fails
/// permanently, or the policy gives up. No new attempt starts after `stop_at`: the body is then
/// `Interrupted`, not failed.
pub async fn deliver(
    client: &MoEngageClient,
    budget: &Budget,
    policy: &RetryPolicy,
    endpoint: Endpoint,
    body: Bytes,
    records: (u64, u64),
    stop_at: Option<Instant>,
) -> Delivery {
    let started = Instant::now();
    let mut attempts = 0;
    let mut rate_limited = 0;
    let mut latency = Duration::ZERO;
    loop {
        // Every attempt takes a slot, retries too: retries must not overrun the budget. A slot
        // (or a hold-off MoEngage asked for) past `stop_at` is not waited for: the wait would
        // run into Lambda's timeout, and the body is returned for the continuation instead.
        let in_time = budget.acquire_until(records.0, records.1, stop_at).await;
        if !in_time || attempts > 0 && stop_at.is_some_and(|t| Instant::now() >= t) {
            return Delivery {
                outcome: Outcome::Interrupted,
                attempts,
                rate_limited,
                latency,
            };
        }
        attempts += 1;
        let sent = Instant::now();
        let result = client.post(endpoint, body.clone()).await;
        latency += sent.elapsed();
        let (action, detail) = match result {
            Ok(resp) => {
                budget.observe(resp.status, resp.rate_limit.limit);
                if let Some(wait) = resp.rate_limit.retry_after {
                    budget.hold_off(wait);
                } else if resp.rate_limit.remaining == Some(0) || resp.status == 429 {
                    if let Some(wait) = resp.rate_limit.reset_after {
                        budget.hold_off(wait);
                    }
                }
                if resp.status == 429 {
                    rate_limited += 1;
                }
                let action = classify(resp.status, &resp.body);
                let reason = match &action {
                    RetryAction::Retry(r)
                    | RetryAction::DontRetry(r)
                    | RetryAction::Misconfigured(r) => r.clone(),
                    RetryAction::Successful { .. } => String::new(),
                };
                (
                    action,
                    FailureDetail {
                        status: Some(resp.status),
                        body: Some(resp.body),
                        transport: None,
                        reason,
                    },
                )
            }
            Err(e) => {
                let reason = format!("no answer from MoEngage ({e})");
                (
                    RetryAction::Retry(reason.clone()),
                    FailureDetail {
                        transport: Some(e.to_string()),
                        reason,
                        ..Default::default()
                    },
                )
            }
        };
        let outcome = match action {
            RetryAction::Successful { request_id } => Outcome::Delivered { request_id },
            RetryAction::Misconfigured(_) => Outcome::Misconfigured(detail),
            RetryAction::DontRetry(_) => Outcome::Failed(detail),
            RetryAction::Retry(reason) => {
                let wait = policy.backoff(attempts);
                if stop_at.is_some_and(|t| Instant::now() + wait >= t) {
                    Outcome::Interrupted
                } else if attempts >= policy.max_attempts
                    || started.elapsed() + wait > policy.max_elapsed
                {
                    let reason = format!(
                        "gave up after {attempts} attempts over {:.1}s; last: {reason}",
                        started.elapsed().as_secs_f64()
                    );
                    Outcome::Failed(FailureDetail { reason, ..detail })
                } else {
                    tracing::warn!(endpoint = endpoint.name(), attempt = attempts, wait_ms = wait.as_millis() as u64, %reason, "transient failure, retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
        };
        return Delivery {
            outcome,
            attempts,
            rate_limited,
            latency,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_full_jitter() {
        let p = RetryPolicy {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            ..Default::default()
        };
        for retry in 1..30 {
            let ceiling = Duration::from_secs(1u64 << (retry - 1).min(3));
            for _ in 0..50 {
                assert!(p.backoff(retry) <= ceiling, "retry {retry}");
            }
        }
    }
}
