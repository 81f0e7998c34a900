//! The MoEngage Data API client: one POST per request body, Basic auth, and a pure
//! [`classify`] of each answer into what to do next.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};

use crate::model::{shorten, ApiKey, Endpoint};

/// Per-request timeout: MoEngage answers in well under a second; a stuck connection must not eat
/// the Lambda's 15 minutes.
pub const REQUEST_TIMEOUT_SECS: u64 = 30;

/// Talks to one workspace's Data API.
#[derive(Clone)]
pub struct MoEngageClient {
    http: reqwest::Client,
    /// `https://api-NN.moengage.com` or the `MOENGAGE_API_URL` override (scheme, host, port).
    base_url: reqwest::Url,
    /// The id in request paths (`MOENGAGE_APP_ID`, default the Workspace ID).
    app_id: String,
    /// `Basic base64(workspace:key)`, marked sensitive so hyper never logs it.
    auth: HeaderValue,
}

/// What came back from one request.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub body: String,
    pub rate_limit: RateLimitInfo,
}

/// MoEngage's rate-limit hints; every field optional because the docs disagree on them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// `x-ratelimit-limit`: requests MoEngage allows per window now (it may be lower than
    /// configured, and change).
    pub limit: Option<u64>,
    /// `x-ratelimit-remaining`: requests left in the current window.
    pub remaining: Option<u64>,
    /// `x-ratelimit-reset`, normalised: time until the window resets (the header may be seconds
    /// remaining or epoch seconds).
    pub reset_after: Option<Duration>,
    /// `Retry-After` (seconds), honoured though MoEngage does not document it.
    pub retry_after: Option<Duration>,
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct TransportError {
    pub kind: &'static str,
    pub message: String,
}

/// What to do with an answer — data, so it can be table-tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAction {
    /// Accepted (MoEngage processes asynchronously; 200 means accepted).
    Successful { request_id: Option<String> },
    /// Transient: try again after backoff.
    Retry(String),
    /// Permanent for this body: dead-letter it.
    DontRetry(String),
    /// The configuration is wrong (401/403/409): no request will succeed; stop the object.
    Misconfigured(String),
}

/// Classifies an HTTP answer. A `"status":"fail"` body is a failure even on 2xx.
pub fn classify(status: u16, body: &str) -> RetryAction {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| {
                v.get(name)
                    .or_else(|| v.get("error").and_then(|e| e.get(name)))
            })
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let message = field("message").unwrap_or_else(|| shorten(body, 300));
    match status {
        200..=299 => match parsed
            .as_ref()
            .and_then(|v| v.get("status"))
            .and_then(|s| s.as_str())
        {
            Some(s) if s.eq_ignore_ascii_case("fail") => {
                RetryAction::DontRetry(format!("HTTP {status} with status \"fail\": {message}"))
            }
            _ => RetryAction::Successful {
                request_id: field("request_id"),
            },
        },
        401 | 403 | 409 => RetryAction::Misconfigured(format!("HTTP {status}: {message}")),
        408 | 429 | 500..=599 => RetryAction::Retry(format!("HTTP {status}: {message}")),
        _ => RetryAction::DontRetry(format!("HTTP {status}: {message}")),
    }
}

/// Reads the rate-limit headers; `now_epoch` decides whether a reset value is epoch seconds.
pub fn rate_limit_info(headers: &HeaderMap, now_epoch: u64) -> RateLimitInfo {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|f| f.is_finite() && *f >= 0.0)
    };
    let reset_after = num("x-ratelimit-reset").map(|r| {
        // An epoch timestamp is far larger than any window length (a day is 86,400 s).
        let secs = if r > 1.0e9 {
            (r - now_epoch as f64).max(0.0)
        } else {
            r
        };
        Duration::from_secs_f64(secs.min(3600.0))
    });
    RateLimitInfo {
        limit: num("x-ratelimit-limit")
            .map(|f| f as u64)
            .filter(|l| *l > 0),
        remaining: num("x-ratelimit-remaining").map(|f| f as u64),
        reset_after,
        retry_after: num("retry-after").map(|s| Duration::from_secs_f64(s.min(3600.0))),
    }
}

impl MoEngageClient {
    /// A client for one workspace: `base_url` is the checked base (scheme, host, port), `app_id`
    /// the id in request paths, `workspace_id` and `api_key` the Basic-auth pair.
    pub fn new(
        base_url: &reqwest::Url,
        app_id: &str,
        workspace_id: &str,
        api_key: &ApiKey,
    ) -> Result<Self, TransportError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS))
            .connect_timeout(Duration::from_secs(10))
            // The Data API never redirects; following one would carry the key and the body to
            // wherever a Location header points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("moengage-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError {
                kind: "client",
                message: e.to_string(),
            })?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            workspace_id,
            api_key.expose()
        ));
        let mut auth =
            HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| TransportError {
                kind: "client",
                message: "the Workspace ID contains characters not allowed in a header".into(),
            })?;
        auth.set_sensitive(true);
        Ok(MoEngageClient {
            http,
            base_url: base_url.clone(),
            app_id: app_id.to_string(),
            auth,
        })
    }

    /// The path (`/v1/…/{app_id}`) a body for `endpoint` is posted to, for people and dead letters.
    pub fn path(&self, endpoint: Endpoint) -> String {
        endpoint.path(&self.app_id)
    }

    /// POSTs `body` to `endpoint`. Only the closed set of endpoints can be requested: the URL is
    /// built from the configured base and app id, never from a caller's string.
    pub async fn post(
        &self,
        endpoint: Endpoint,
        body: bytes::Bytes,
    ) -> Result<ApiResponse, TransportError> {
        let url = endpoint.url(&self.base_url, &self.app_id);
        let response = self
            .http
            .post(url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            // Older MoEngage docs require it; current ones ignore it.
            .header("MOE-APPKEY", self.app_id.as_str())
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let rate_limit = rate_limit_info(response.headers(), now);
        let body = response.text().await.map_err(transport_error)?;
        Ok(ApiResponse {
            status,
            body,
            rate_limit,
        })
    }

    /// HMAC-SHA256 of `parts` (each length-prefixed), keyed by the Basic-auth credentials: what
    /// this function writes into a dead letter and trusts back in redrive, unforgeable without
    /// the Data API key.
    pub fn seal(&self, parts: &[&[u8]]) -> [u8; 32] {
        use hmac::{KeyInit, Mac};
        use sha2::Digest;
        // HMAC pads a key shorter than the hash's 64-byte block with zeros; the key here is the
        // SHA-256 of the credentials so padded, which needs no fallible length check.
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(&sha2::Sha256::digest(self.auth.as_bytes()));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new(&key.into());
        for p in parts {
            mac.update(&(p.len() as u64).to_le_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// Checks the credentials and data center without sending data
    /// (`POST /v1/integrations/authentication`).
    pub async fn check_auth(&self) -> Result<ApiResponse, TransportError> {
        self.post(Endpoint::Authentication, bytes::Bytes::from_static(b"{}"))
            .await
    }
}

fn transport_error(e: reqwest::Error) -> TransportError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "transport"
    };
    // reqwest's Display names the URL but never headers, so the key cannot leak here.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    TransportError { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let ok =
            r#"{"status":"success","message":"Your request has been accepted","request_id":"r-1"}"#;
        let fail = r#"{"status":"fail","error":{"type":"MissingAttributeError","attribute":"customer_id","message":"customer_id missing","request_id":"r-2"}}"#;
        let table: &[(u16, &str, &str)] = &[
            (200, ok, "ok"),
            (200, "", "ok"),
            (202, ok, "ok"),
            (200, fail, "dont"),
            (400, fail, "dont"),
            (413, "{}", "dont"),
            (415, "", "dont"),
            (404, "", "dont"),
            (401, "", "misconfigured"),
            (403, "", "misconfigured"),
            (409, "", "misconfigured"),
            (408, "", "retry"),
            (429, "", "retry"),
            (500, "", "retry"),
            (502, "", "retry"),
            (503, "", "retry"),
            (504, "", "retry"),
        ];
        for (status, body, want) in table {
            let got = match classify(*status, body) {
                RetryAction::Successful { .. } => "ok",
                RetryAction::Retry(_) => "retry",
                RetryAction::DontRetry(_) => "dont",
                RetryAction::Misconfigured(_) => "misconfigured",
            };
            assert_eq!(got, *want, "status {status} body {body}");
        }
        assert_eq!(
            classify(200, ok),
            RetryAction::Successful {
                request_id: Some("r-1".into())
            }
        );
        match classify(400, fail) {
            RetryAction::DontRetry(m) => assert!(m.contains("customer_id missing"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rate_limit_reset_accepts_seconds_and_epoch() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("42"));
        let info = rate_limit_info(&h, 1_800_000_000);
        assert_eq!(info.remaining, Some(0));
        assert_eq!(info.reset_after, Some(Duration::from_secs(42)));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1800000030"));
        h.insert("retry-after", HeaderValue::from_static("7"));
        let info = rate_limit_info(&h, 1_800_000_000);
        assert_eq!(info.reset_after, Some(Duration::from_secs(30)));
        assert_eq!(info.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(
            rate_limit_info(&HeaderMap::new(), 0),
            RateLimitInfo::default()
        );
    }
}
