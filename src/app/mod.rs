//! The Lambda shell, the only part of the crate that knows about Lambda: the dependencies built once
//! per instance ([`Deps`]), start-up, invocation payloads, the handler, run markers, the work queue,
//! redrive, and the response. Takes an invocation; gives a [`summary::Summary`].

pub mod handler;
pub mod invocation;
pub mod mirror;
pub mod redrive;
pub mod runs;
pub mod startup;
pub mod summary;
pub mod work;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::app::work::WorkQueue;
use crate::config::syncs::{self, Syncs};
use crate::config::{Config, ConfigError};
use crate::deliver::client::MoEngageClient;
use crate::deliver::dead_letter::DeadLetterSink;
use crate::deliver::Deliver;
use crate::source::ObjectSource;
use crate::state::StateStore;

/// Everything an invocation needs, built once per Lambda instance and borrowed by every invocation.
pub struct Deps {
    pub config: Config,
    /// Where exports are read from (S3; a fake in tests).
    pub source: Arc<dyn ObjectSource>,
    /// Run reports, run markers and dead-letter payloads too large for SQS (S3).
    pub state: Arc<dyn StateStore>,
    /// Where undeliverable bodies go (SQS).
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// Where continuations go (`WORK_QUEUE_URL`); without it the sweep resumes continued objects.
    pub work_queue: Option<Arc<dyn WorkQueue>>,
    /// The Data API client (the connection check uses it directly).
    pub moengage: MoEngageClient,
    /// Sends bodies: the client paced under each API's budgets (shared by every sync and object
    /// this instance processes) and retried; a fake in tests.
    pub deliver: Arc<dyn Deliver>,
    /// The syncs in force; a warm instance re-reads `SYNC_CONFIG` when it changes.
    pub syncs: SyncsHandle,
    /// The local copy of sync-state shards behind `state` (`STATE_CACHE_MB`), for its counters;
    /// `None` when the cache is off.
    pub shard_cache: Option<Arc<crate::state::cache::ShardCache>>,
}

/// The syncs in force, and when `SYNC_CONFIG` was last checked for a change.
pub struct SyncsHandle {
    current: std::sync::Mutex<(Arc<Syncs>, Instant)>,
}

impl SyncsHandle {
    pub fn new(syncs: Arc<Syncs>) -> Self {
        SyncsHandle {
            current: std::sync::Mutex::new((syncs, Instant::now())),
        }
    }

    fn get(&self) -> (Arc<Syncs>, Instant) {
        let guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (guard.0.clone(), guard.1)
    }

    fn set(&self, syncs: Arc<Syncs>, checked: Instant) {
        let mut guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *guard = (syncs, checked);
    }
}

impl Deps {
    /// The syncs for this invocation. With `SYNC_CONFIG`, at most once per
    /// `SYNC_CONFIG_RELOAD_SECS` a conditional GET asks whether the file changed; a new version
    /// takes effect now, budgets included. A new version that is not valid fails the invocation
    /// with its one-line reason (it is retried) rather than run half of what the file says.
    pub async fn current_syncs(&self) -> Result<Arc<Syncs>, ConfigError> {
        let (current, checked) = self.syncs.get();
        let Some(location) = &self.config.sync_config else {
            return Ok(current);
        };
        let due = checked.elapsed() >= Duration::from_secs(self.config.sync_config_reload_secs)
            || current.syncs.is_empty();
        if !due {
            return Ok(current);
        }
        let known = current.file_etag().filter(|e| !e.is_empty());
        match syncs::reload(location, &self.config.sync_defaults, known, &*self.state).await {
            Ok(None) => {
                self.syncs.set(current.clone(), Instant::now());
                Ok(current)
            }
            Ok(Some(new)) => {
                tracing::info!(
                    sync_config = %location,
                    etag = new.file_etag().unwrap_or_default(),
                    syncs = new.syncs.len(),
                    "SYNC_CONFIG changed; its new version applies from this invocation"
                );
                self.deliver.set_budgets(&new.budgets);
                let new = Arc::new(new);
                self.syncs.set(new.clone(), Instant::now());
                Ok(new)
            }
            Err(message) => Err(ConfigError::SyncConfig {
                location: location.to_string(),
                message,
            }),
        }
    }
}

/// Facts about this invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// When Lambda stops the function; `None` = no limit (tests, CLI).
    pub deadline: Option<Instant>,
    /// Stop at the next batch boundary when cancelled (Ctrl-C in the terminal `sync`), exactly as
    /// at a deadline: the checkpoint is recorded and the object reported `continued`.
    pub cancel: Option<tokio_util::sync::CancellationToken>,
    /// Live counters of the object being processed (the terminal's progress bar).
    pub progress: Option<Arc<crate::account::progress::Progress>>,
    /// Whether a continued object is handed to `WORK_QUEUE_URL` (the Lambda); the terminal
    /// `sync` resumes by running the same command again instead.
    pub enqueue_continuations: bool,
}

impl Invocation {
    /// From Lambda's deadline (epoch milliseconds). A deadline already past or more than 15 min
    /// away is not believed — `cargo lambda watch` sends a relative 600000 — and the configured
    /// `MAX_RUN_SECS` is used instead.
    pub fn from_deadline_ms(deadline_ms: u64, config: &Config) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let left_ms = deadline_ms.saturating_sub(now_ms);
        let believable = deadline_ms > now_ms && left_ms <= 16 * 60 * 1000;
        let left = if believable {
            Duration::from_millis(left_ms)
        } else {
            tracing::warn!(
                deadline_ms,
                now_ms,
                max_run_secs = config.max_run_secs,
                "the invocation deadline is not believable; using MAX_RUN_SECS"
            );
            Duration::from_secs(config.max_run_secs)
        };
        Invocation {
            deadline: Some(Instant::now() + left),
            ..Invocation::unbounded()
        }
    }

    /// No deadline.
    pub fn unbounded() -> Self {
        Invocation {
            deadline: None,
            cancel: None,
            progress: None,
            enqueue_continuations: true,
        }
    }

    /// When to stop starting new work: the deadline less `DEADLINE_MARGIN_SECS`.
    pub(crate) fn stop_at(&self, config: &Config) -> Option<Instant> {
        self.deadline.map(|d| {
            d.checked_sub(Duration::from_secs(config.deadline_margin_secs))
                .unwrap_or(d)
        })
    }

    /// Seconds a run marker's lease must last: past the deadline, so that only a dead invocation's
    /// marker is ever taken over.
    pub(crate) fn lease_secs(&self) -> u64 {
        self.deadline.map_or(16 * 60, |d| {
            d.saturating_duration_since(Instant::now()).as_secs() + 60
        })
    }
}

/// What running one object (or a snapshot's mirror pass) did.
pub enum Processed {
    /// It ran (or failed to start): its summary line.
    Line(crate::account::report::ObjectSummary),
    /// Nothing to do (already complete, not data, …); a note says why.
    Nothing,
    /// Another invocation holds a live lease on it: try again later, never drop it.
    Busy,
}
