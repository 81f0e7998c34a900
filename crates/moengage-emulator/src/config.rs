//! What the emulator is configured with at start, and the fault knobs tests turn at runtime.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Default workspace id; the Basic-auth username and the `{app}` path segment must equal it.
pub const DEFAULT_WORKSPACE_ID: &str = "WORKSPACE1";
/// Default Data API key; the Basic-auth password must equal it.
pub const DEFAULT_API_KEY: &str = "secret-key";
/// The seed's ~100 requests per minute per API.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 100;
/// MoEngage's documented body cap for Bulk Import (`/v1/transition`).
pub const DEFAULT_TRANSITION_MAX_BYTES: usize = 100_000;
/// MoEngage's documented body cap for the other Data API endpoints.
pub const DEFAULT_OTHER_MAX_BYTES: usize = 128_000;

/// Everything the emulator needs to start; tests build it with struct-update syntax over
/// `Default`.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// The one workspace this fake knows; any other Basic-auth username gets 401
    /// "Invalid APP_ID…". Default `WORKSPACE1`.
    pub workspace_id: String,
    /// The Data API key of that workspace; a different password gets 401 "App Secret key
    /// mismatch…". Default `secret-key`.
    pub api_key: String,
    /// Requests admitted per sliding 60-second window, per API (Delete Users has its own
    /// window too, with this same limit — MoEngage documents 5,000/min for it, the seed ~100
    /// for each API); 0 disables limiting and the `x-ratelimit-*` headers. Default 100.
    pub rate_limit_per_minute: u32,
    /// Largest accepted `/v1/transition` body in bytes; larger gets 413. Default 100,000.
    pub transition_max_bytes: usize,
    /// Largest accepted body for `/v1/customer`, `/v1/event` and `/v1/customer/delete`, in
    /// bytes. Default 128,000.
    pub other_max_bytes: usize,
    /// Faults active from the first request (the CLI flags land here).
    pub faults: Faults,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            workspace_id: DEFAULT_WORKSPACE_ID.to_owned(),
            api_key: DEFAULT_API_KEY.to_owned(),
            rate_limit_per_minute: DEFAULT_RATE_LIMIT_PER_MINUTE,
            transition_max_bytes: DEFAULT_TRANSITION_MAX_BYTES,
            other_max_bytes: DEFAULT_OTHER_MAX_BYTES,
            faults: Faults::default(),
        }
    }
}

/// Injected misbehaviour, so tests can drive the client's retry, dead-letter and pacing paths.
/// Serialized as-is by `GET /_emulator/faults`; `fail_first_n` there is what is *left*.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The next N API requests answer `fail_status` before any other processing (not rate
    /// counted, nothing stored). Counts down as it fires.
    pub fail_first_n: u32,
    /// Status for `fail_first_n` answers, e.g. 500, 503 or 429. Default 500.
    pub fail_status: u16,
    /// Replaces the MoEngage-style body of `fail_first_n` answers when set.
    pub fail_body: Option<Value>,
    /// Any API request carrying this customer id (top level, in a bulk element, or as the
    /// `identity_value` of a Delete Users body) answers `fail_customer_status` and stores
    /// nothing — fails one specific batch on purpose. Checked after the JSON is decoded (so
    /// after auth, 409, 415, 413 and the rate window) and before validation.
    pub fail_customer_id: Option<String>,
    /// Like `fail_customer_id` for several ids at once: a request carrying any of them answers
    /// `fail_customer_status` (logged with fault `fail_customer_ids`). Empty (the default)
    /// fails nothing; `null` in an admin patch clears it.
    pub fail_customer_ids: Vec<String>,
    /// Status for `fail_customer_id` and `fail_customer_ids` answers. Default 400 (a
    /// permanent rejection).
    pub fail_customer_status: u16,
    /// Fraction (0.0–1.0) of API requests whose connection is reset after the request was
    /// read, with no response and nothing stored.
    pub reset_probability: f64,
    /// Added latency, in milliseconds, before every API response is sent (after processing).
    pub delay_ms: u64,
    /// Overrides `EmulatorConfig::rate_limit_per_minute` while set (0 = unlimited).
    pub rate_limit_per_minute: Option<u32>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fail_first_n: 0,
            fail_status: 500,
            fail_body: None,
            fail_customer_id: None,
            fail_customer_ids: Vec::new(),
            fail_customer_status: 400,
            reset_probability: 0.0,
            delay_ms: 0,
            rate_limit_per_minute: None,
        }
    }
}

/// Why a `POST /_emulator/faults` body was refused.
#[derive(Debug, thiserror::Error)]
pub enum FaultsError {
    /// Not JSON, an unknown knob, or a value of the wrong type.
    #[error("invalid faults body: {0}")]
    Json(#[from] serde_json::Error),
    /// A status outside 100–599 would make hyper refuse to send the response.
    #[error("{knob} must be an HTTP status between 100 and 599, got {value}")]
    Status { knob: &'static str, value: u16 },
    /// A probability outside 0.0–1.0 has no meaning.
    #[error("reset_probability must be between 0.0 and 1.0, got {0}")]
    Probability(f64),
}

/// A partial update of [`Faults`]: absent keys keep their value, `null` clears an optional knob.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FaultsPatch {
    fail_first_n: Option<u32>,
    fail_status: Option<u16>,
    #[serde(deserialize_with = "present")]
    fail_body: Option<Option<Value>>,
    #[serde(deserialize_with = "present")]
    fail_customer_id: Option<Option<String>>,
    #[serde(deserialize_with = "present")]
    fail_customer_ids: Option<Option<Vec<String>>>,
    fail_customer_status: Option<u16>,
    reset_probability: Option<f64>,
    delay_ms: Option<u64>,
    #[serde(deserialize_with = "present")]
    rate_limit_per_minute: Option<Option<u32>>,
}

/// Marks a key as present even when its value is `null`, so `null` can mean "clear".
fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl FaultsPatch {
    /// Parses an admin request body; an empty body is an empty patch.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, FaultsError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        Ok(serde_json::from_slice(body)?)
    }

    /// Applies the patch to a copy of `faults`, refusing values that cannot be honoured.
    pub(crate) fn apply(self, faults: &Faults) -> Result<Faults, FaultsError> {
        let mut next = faults.clone();
        if let Some(v) = self.fail_first_n {
            next.fail_first_n = v;
        }
        if let Some(v) = self.fail_status {
            next.fail_status = v;
        }
        if let Some(v) = self.fail_body {
            next.fail_body = v;
        }
        if let Some(v) = self.fail_customer_id {
            next.fail_customer_id = v;
        }
        if let Some(v) = self.fail_customer_ids {
            next.fail_customer_ids = v.unwrap_or_default();
        }
        if let Some(v) = self.fail_customer_status {
            next.fail_customer_status = v;
        }
        if let Some(v) = self.reset_probability {
            next.reset_probability = v;
        }
        if let Some(v) = self.delay_ms {
            next.delay_ms = v;
        }
        if let Some(v) = self.rate_limit_per_minute {
            next.rate_limit_per_minute = v;
        }
        next.check()?;
        Ok(next)
    }
}

impl Faults {
    /// The per-customer knob a request carrying `customer_ids` trips, if any:
    /// `fail_customer_id` first, then `fail_customer_ids` (the name is logged as the fault).
    pub(crate) fn failing_customer(&self, customer_ids: &[String]) -> Option<&'static str> {
        if let Some(id) = &self.fail_customer_id {
            if customer_ids.contains(id) {
                return Some("fail_customer_id");
            }
        }
        customer_ids
            .iter()
            .any(|id| self.fail_customer_ids.contains(id))
            .then_some("fail_customer_ids")
    }

    /// Rejects knob values the server could not act on (used for CLI flags and admin patches).
    pub fn check(&self) -> Result<(), FaultsError> {
        for (knob, value) in [
            ("fail_status", self.fail_status),
            ("fail_customer_status", self.fail_customer_status),
        ] {
            if !(100..=599).contains(&value) {
                return Err(FaultsError::Status { knob, value });
            }
        }
        if !(0.0..=1.0).contains(&self.reset_probability) {
            return Err(FaultsError::Probability(self.reset_probability));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_keeps_absent_knobs_and_clears_null_ones() {
        let start = Faults {
            fail_customer_id: Some("u1".into()),
            delay_ms: 7,
            ..Faults::default()
        };
        let patch = FaultsPatch::parse(br#"{"fail_customer_id":null,"fail_first_n":2}"#).unwrap();
        let next = patch.apply(&start).unwrap();
        assert_eq!(next.fail_customer_id, None);
        assert_eq!(next.fail_first_n, 2);
        assert_eq!(next.delay_ms, 7);
    }

    #[test]
    fn patch_rejects_unknown_knobs_and_bad_values() {
        assert!(FaultsPatch::parse(br#"{"fail_frist_n":2}"#).is_err());
        for body in [
            json!({"fail_status": 42}),
            json!({"reset_probability": 1.5}),
        ] {
            let patch = FaultsPatch::parse(body.to_string().as_bytes()).unwrap();
            assert!(patch.apply(&Faults::default()).is_err(), "{body}");
        }
    }

    #[test]
    fn fail_customer_ids_is_set_by_a_list_and_cleared_by_null() {
        let set = FaultsPatch::parse(br#"{"fail_customer_ids":["a","b"]}"#).unwrap();
        let next = set.apply(&Faults::default()).unwrap();
        assert_eq!(next.fail_customer_ids, ["a", "b"]);
        assert_eq!(
            next.failing_customer(&["x".into(), "b".into()]),
            Some("fail_customer_ids")
        );
        assert_eq!(next.failing_customer(&["x".into()]), None);
        let cleared = FaultsPatch::parse(br#"{"fail_customer_ids":null}"#).unwrap();
        assert!(cleared.apply(&next).unwrap().fail_customer_ids.is_empty());
        assert!(FaultsPatch::parse(br#"{"fail_customer_ids":"a"}"#).is_err());
        // The single-id knob wins the fault name when both match.
        let both = Faults {
            fail_customer_id: Some("b".into()),
            ..next
        };
        assert_eq!(
            both.failing_customer(&["b".into()]),
            Some("fail_customer_id")
        );
    }

    #[test]
    fn empty_patch_body_changes_nothing() {
        let next = FaultsPatch::parse(b"  ")
            .unwrap()
            .apply(&Faults::default())
            .unwrap();
        assert_eq!(next, Faults::default());
    }
}
