//! A local fake of MoEngage's Data API, faithful to `MOENGAGE_API.md`, that tests and
//! `make demo` run against: Basic auth (401), path/app mismatch (409), Content-Type (415),
//! body caps (413), a strict sliding-window rate limit (429 + `x-ratelimit-*`), attribute
//! errors (400), and Bulk Import's silent drop of invalid elements — which, unlike MoEngage,
//! it records, so tests can see exactly what the real service would have thrown away.
//! Delete Users (`/v1/customer/delete?app_id=…`) removes a stored user at once and lists it in
//! `deleted_customers`. Fault knobs inject 5xx/429 bursts, per-customer failures (one id or a
//! list), latency and TCP resets.
//!
//! A workspace member of its own so the Lambda binary links no HTTP server: moengage-sync's
//! integration tests use it as a library ([`spawn`]), `make demo` runs the `moengage-emulator`
//! binary.
//!
//! # Layout
//! - `config`: [`EmulatorConfig`] and the runtime [`Faults`] knobs.
//! - `validate`: the pure element rules (customer ids, types, actions, times, names).
//! - `store`: what was stored and logged — the [`StateSnapshot`].
//! - `rate`: the sliding one-minute request window.
//! - `reply`: MoEngage-shaped bodies and rate-limit headers.
//! - `conn`: a connection's reset switch (`ConnCtl`): `api` flips it, `server` acts on it; it
//!   imports neither, so imports between the two go one way (`server` → `api`).
//! - `api`: the `/v1` pipeline, checks in MoEngage's order.
//! - `ingest`: decoded bodies into storage (400 for single objects, silent drop in bulk).
//! - `delete`: Delete Users bodies checked and applied to storage (400 `Not Found` if unknown).
//! - `admin`: `/_emulator/{state,faults,reset}`.
//! - `server`: per-connection hyper serving (so a connection can be reset), [`spawn`],
//!   [`RunningEmulator`].

mod admin;
mod api;
mod config;
mod conn;
mod delete;
mod ingest;
mod rate;
mod reply;
mod server;
mod store;
mod validate;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_delete;
#[cfg(test)]
mod tests_faults;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use config::{
    EmulatorConfig, Faults, FaultsError, DEFAULT_API_KEY, DEFAULT_OTHER_MAX_BYTES,
    DEFAULT_RATE_LIMIT_PER_MINUTE, DEFAULT_TRANSITION_MAX_BYTES, DEFAULT_WORKSPACE_ID,
};
pub use server::{spawn, RunningEmulator};
pub use store::{
    DroppedElement, ElementNote, ElementRecord, RequestRecord, StateSnapshot, StoredEvent,
};

use config::FaultsPatch;
use rate::RateWindow;

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The listener handed to [`spawn`] could not report its address.
    #[error("cannot read the emulator listener's local address: {0}")]
    LocalAddr(#[source] std::io::Error),
}

/// Handle to the emulator's shared state; cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct Emulator {
    /// One lock for everything: requests are tiny and never hold it across an `.await`, and a
    /// single lock keeps the request log, storage and rate window consistent with each other.
    shared: Arc<Mutex<Shared>>,
}

/// The state behind the lock.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Credentials and limits fixed at start (its `faults` field is only the initial value).
    config: EmulatorConfig,
    /// Live fault knobs; `fail_first_n` counts down here.
    faults: Faults,
    /// Requests admitted in the last minute, per API (Track User, Create Event, Bulk Import,
    /// Delete Users…).
    windows: std::collections::BTreeMap<api::Endpoint, RateWindow>,
    /// Users, events and the request log.
    state: StateSnapshot,
    /// Makes every `request_id` of a run unique.
    request_seq: u64,
}

impl Emulator {
    /// A fresh emulator with empty storage and `config.faults` active.
    pub fn new(config: EmulatorConfig) -> Self {
        let shared = Shared {
            faults: config.faults.clone(),
            config,
            windows: Default::default(),
            state: StateSnapshot::default(),
            request_seq: 0,
        };
        Self {
            shared: Arc::new(Mutex::new(shared)),
        }
    }

    /// A copy of everything stored and logged so far.
    pub fn state(&self) -> StateSnapshot {
        self.lock().state.clone()
    }

    /// The current fault knobs (`fail_first_n` is what is left).
    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Replaces every fault knob at once (not validated: a bad status becomes 500).
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Applies a partial update atomically; nothing changes if it is invalid.
    pub(crate) fn patch_faults(&self, patch: FaultsPatch) -> Result<Faults, FaultsError> {
        let mut shared = self.lock();
        let next = patch.apply(&shared.faults)?;
        shared.faults = next.clone();
        Ok(next)
    }

    /// Clears storage, the request log, faults (to `Faults::default()`) and the rate window.
    pub fn reset(&self) {
        let mut shared = self.lock();
        shared.state = StateSnapshot::default();
        shared.faults = Faults::default();
        shared.windows.clear();
    }

    /// Locks the state. A panic while holding the lock cannot leave it half-updated in a way
    /// that matters to a test fake, so a poisoned lock is simply taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
