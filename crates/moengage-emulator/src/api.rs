//! The `/v1` Data API: the checks MoEngage makes, in the order it makes them, then storing.
//!
//! Order per request: injected `fail_first_n` → injected reset → auth (401) → app id (409)
//! → Content-Type (415) → body size (413) → rate window (429) → JSON (400) → injected
//! `fail_customer_id` / `fail_customer_ids` → validation and storing.
//! `/v1/integrations/authentication` stops after auth.
//!
//! The app id is the `{app}` path segment, except for Delete Users
//! (`/v1/customer/delete?app_id=…`), where it is the `app_id` query parameter: a different
//! value is the same 409; a missing or empty one is a 400 `InvalidParams` at that step (MoEngage
//! documents 400 for missing required params of this API). Each API, Delete Users included,
//! has its own rate window.

use std::sync::Arc;
use std::time::Duration;

use axum::body::to_bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;

use crate::conn::ConnCtl;
use crate::delete::{self, DeleteRefusal};
use crate::rate::RateStatus;
use crate::reply::{request_id, Reply};
use crate::store::RequestRecord;
use crate::validate::{customer_id_text, ElementType};
use crate::{Emulator, Shared};

/// Bodies larger than this are not even read (the documented caps are ~100 KB; this only
/// keeps a runaway client from exhausting memory).
const MAX_READ_BYTES: usize = 64 * 1024 * 1024;

/// Which Data API endpoint a request hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Endpoint {
    Customer,
    Event,
    Transition,
    Authentication,
    Delete,
}

impl Endpoint {
    /// The name in the request log (`RequestRecord::endpoint`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Event => "event",
            Self::Transition => "transition",
            Self::Authentication => "authentication",
            Self::Delete => "delete",
        }
    }
}

/// One API request, read in full, as the synchronous pipeline sees it.
pub(crate) struct ApiRequest<'a> {
    /// Decides the body cap and what storing means.
    pub endpoint: Endpoint,
    /// The `{app}` path segment (Delete Users: the non-empty `app_id` query parameter),
    /// compared with the auth username (409); `None` when absent.
    pub app: Option<&'a str>,
    /// For the request log.
    pub path: &'a str,
    /// Authorization and Content-Type are checked.
    pub headers: &'a HeaderMap,
    /// The raw body, for the size cap and the log.
    pub body: &'a [u8],
    /// The body decoded as JSON, when it is JSON (decoded before taking the lock).
    pub json: Option<&'a Value>,
    /// Wall-clock arrival: the log timestamp and the "future-dated" reference.
    pub arrived: DateTime<Utc>,
    /// Monotonic arrival, for the rate window (pausable in tests).
    pub now: Instant,
}

/// What the async handler must do with a request: answer (after `delay`) or reset.
pub(crate) struct Decision {
    /// `None`: drop the connection without answering.
    pub reply: Option<Reply>,
    /// The `delay_ms` fault in force when the request was decided.
    pub delay: Duration,
}

pub(crate) async fn customer(
    s: State<Emulator>,
    c: Extension<Arc<ConnCtl>>,
    Path(app): Path<String>,
    r: Request,
) -> Response {
    serve(s, c, Endpoint::Customer, Some(app), r).await
}

pub(crate) async fn event(
    s: State<Emulator>,
    c: Extension<Arc<ConnCtl>>,
    Path(app): Path<String>,
    r: Request,
) -> Response {
    serve(s, c, Endpoint::Event, Some(app), r).await
}

pub(crate) async fn transition(
    s: State<Emulator>,
    c: Extension<Arc<ConnCtl>>,
    Path(app): Path<String>,
    r: Request,
) -> Response {
    serve(s, c, Endpoint::Transition, Some(app), r).await
}

pub(crate) async fn delete(s: State<Emulator>, c: Extension<Arc<ConnCtl>>, r: Request) -> Response {
    let app = query_app_id(r.uri());
    serve(s, c, Endpoint::Delete, app, r).await
}

/// The first `app_id` query parameter, unless empty (an empty one counts as missing).
fn query_app_id(uri: &axum::http::Uri) -> Option<String> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs
        .into_iter()
        .find(|(key, _)| key == "app_id")
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

pub(crate) async fn authentication(
    s: State<Emulator>,
    c: Extension<Arc<ConnCtl>>,
    r: Request,
) -> Response {
    serve(s, c, Endpoint::Authentication, None, r).await
}

/// Reads the body, runs the pipeline under the lock, then answers, delays or resets.
async fn serve(
    State(emulator): State<Emulator>,
    Extension(conn): Extension<Arc<ConnCtl>>,
    endpoint: Endpoint,
    app: Option<String>,
    request: Request,
) -> Response {
    let (arrived, now) = (Utc::now(), Instant::now());
    let (parts, body) = request.into_parts();
    // Read the whole body before answering anything, so early answers (faults, 401) never
    // leave unread bytes that would break a keep-alive connection.
    let body = match to_bytes(body, MAX_READ_BYTES).await {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(%error, path = parts.uri.path(), "could not read request body");
            let reply = Reply::fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                "Payload could not be read",
                None,
                request_id(0),
                None,
            );
            return reply.into_response();
        }
    };
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let request = ApiRequest {
        endpoint,
        app: app.as_deref(),
        path: parts.uri.path(),
        headers: &parts.headers,
        body: &body,
        json: json.as_ref(),
        arrived,
        now,
    };
    let decision = emulator.lock().handle(&request);
    let Some(reply) = decision.reply else {
        conn.reset();
        // The connection task drops this future together with the socket.
        return std::future::pending::<Response>().await;
    };
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    reply.into_response()
}

impl Shared {
    /// Runs the pipeline for one request and records it in the request log.
    pub(crate) fn handle(&mut self, req: &ApiRequest<'_>) -> Decision {
        let mut record = RequestRecord {
            method: "POST".to_owned(),
            endpoint: req.endpoint.name().to_owned(),
            path: req.path.to_owned(),
            status: None,
            bytes: req.body.len(),
            elements: 1,
            customer_ids: Vec::new(),
            request_id: None,
            fault: None,
            timestamp: req.arrived,
        };
        if let Some(body) = req.json {
            if req.endpoint == Endpoint::Delete {
                record.customer_ids.extend(delete::identity_value(body));
            } else if let Some(elements) = body.get("elements").and_then(Value::as_array) {
                record.elements = elements.len();
                record.customer_ids = elements.iter().filter_map(customer_id_text).collect();
            } else {
                record.customer_ids.extend(customer_id_text(body));
            }
        }
        let delay = Duration::from_millis(self.faults.delay_ms);
        let reply = self.decide(req, &mut record);
        if let Some(reply) = &reply {
            record.status = Some(reply.status.as_u16());
            record.request_id = Some(reply.request_id.clone());
        }
        tracing::debug!(path = req.path, status = ?record.status, fault = ?record.fault, "api request");
        self.state.requests.push(record);
        Decision { reply, delay }
    }

    fn decide(&mut self, req: &ApiRequest<'_>, record: &mut RequestRecord) -> Option<Reply> {
        let limit = self
            .faults
            .rate_limit_per_minute
            .unwrap_or(self.config.rate_limit_per_minute);
        // MoEngage limits each API on its own ("~100 requests per minute for each API").
        let peek = |s: &mut Self| {
            (limit > 0).then(|| {
                s.windows
                    .entry(req.endpoint)
                    .or_default()
                    .peek(limit, req.now)
            })
        };

        if self.faults.fail_first_n > 0 {
            self.faults.fail_first_n -= 1;
            record.fault = Some("fail_first_n".to_owned());
            let status = status_or_500(self.faults.fail_status);
            let rate = peek(self);
            let mut reply = Reply::injected(status, self.next_request_id(), rate);
            if let Some(body) = &self.faults.fail_body {
                reply.body = body.clone();
            }
            return Some(reply);
        }
        if self.faults.reset_probability > 0.0 && fastrand::f64() < self.faults.reset_probability {
            record.fault = Some("reset".to_owned());
            return None;
        }
        if let Err(message) =
            check_auth(req.headers, &self.config.workspace_id, &self.config.api_key)
        {
            let rate = peek(self);
            return Some(self.fail(
                StatusCode::UNAUTHORIZED,
                "Authentication required",
                message,
                None,
                rate,
            ));
        }
        if req.endpoint == Endpoint::Authentication {
            let rate = peek(self);
            return Some(Reply::success(self.next_request_id(), rate));
        }
        if req.endpoint == Endpoint::Delete && req.app.is_none() {
            let rate = peek(self);
            let message = "app_id is missing in the request params";
            return Some(self.fail(
                StatusCode::BAD_REQUEST,
                "InvalidParams",
                message,
                None,
                rate,
            ));
        }
        if req.app != Some(self.config.workspace_id.as_str()) {
            let rate = peek(self);
            let message = "App key mismatch in params and authentication";
            return Some(self.fail(StatusCode::CONFLICT, "AppKeyMismatch", message, None, rate));
        }
        if !is_json(req.headers) {
            let rate = peek(self);
            return Some(self.fail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "MediaTypeError",
                "Unsupported Media Type",
                None,
                rate,
            ));
        }
        let max_bytes = match req.endpoint {
            Endpoint::Transition => self.config.transition_max_bytes,
            _ => self.config.other_max_bytes,
        };
        if req.body.len() > max_bytes {
            let rate = peek(self);
            let message = format!(
                "Payload size exceeds {} KB ({} bytes, limit {max_bytes})",
                max_bytes / 1000,
                req.body.len()
            );
            return Some(self.fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                &message,
                None,
                rate,
            ));
        }
        let rate = match limit {
            0 => None,
            _ => match self
                .windows
                .entry(req.endpoint)
                .or_default()
                .admit(limit, req.now)
            {
                Ok(status) => Some(status),
                Err(status) => {
                    return Some(self.fail(
                        StatusCode::TOO_MANY_REQUESTS,
                        "RateLimitError",
                        "Rate Limits Exceeded",
                        None,
                        Some(status),
                    ))
                }
            },
        };
        let Some(body) = req.json else {
            let message = if req.body.iter().all(u8::is_ascii_whitespace) {
                "Request body is empty"
            } else {
                "Could not decode the request body. The JSON was incorrect or not encoded as UTF-8."
            };
            return Some(self.fail(
                StatusCode::BAD_REQUEST,
                "Malformed JSON",
                message,
                None,
                rate,
            ));
        };
        if let Some(knob) = self.faults.failing_customer(&record.customer_ids) {
            record.fault = Some(knob.to_owned());
            let status = status_or_500(self.faults.fail_customer_status);
            return Some(Reply::injected(status, self.next_request_id(), rate));
        }
        let request = self.state.requests.len();
        let outcome = match req.endpoint {
            Endpoint::Customer => {
                self.state
                    .ingest_single(request, body, ElementType::Customer, req.arrived)
            }
            Endpoint::Event => {
                self.state
                    .ingest_single(request, body, ElementType::Event, req.arrived)
            }
            Endpoint::Transition => self.state.ingest_bulk(request, body, req.arrived),
            Endpoint::Delete => return Some(self.delete(body, rate)),
            Endpoint::Authentication => Ok(()),
        };
        Some(match outcome {
            Ok(()) => Reply::success(self.next_request_id(), rate),
            Err(r) => self.fail(
                StatusCode::BAD_REQUEST,
                r.kind.error_type(),
                &r.message,
                Some(&r.attribute),
                rate,
            ),
        })
    }

    /// Delete Users after the common checks: 200, or 400 `Not Found` / an attribute error.
    fn delete(&mut self, body: &Value, rate: Option<RateStatus>) -> Reply {
        match self.state.delete_user(body) {
            Ok(()) => Reply::success(self.next_request_id(), rate),
            Err(DeleteRefusal::NotFound(message)) => {
                self.fail(StatusCode::BAD_REQUEST, "Not Found", &message, None, rate)
            }
            Err(DeleteRefusal::Rejected(r)) => self.fail(
                StatusCode::BAD_REQUEST,
                r.kind.error_type(),
                &r.message,
                Some(&r.attribute),
                rate,
            ),
        }
    }

    fn fail(
        &mut self,
        status: StatusCode,
        error_type: &str,
        message: &str,
        attribute: Option<&str>,
        rate: Option<RateStatus>,
    ) -> Reply {
        Reply::fail(
            status,
            error_type,
            message,
            attribute,
            self.next_request_id(),
            rate,
        )
    }

    fn next_request_id(&mut self) -> String {
        self.request_seq += 1;
        request_id(self.request_seq)
    }
}

/// Checks `Authorization: Basic base64(workspace_id:api_key)`; `Err` is MoEngage's message.
fn check_auth(headers: &HeaderMap, workspace_id: &str, api_key: &str) -> Result<(), &'static str> {
    const REQUIRED: &str = "Authentication Header Required";
    let value = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(REQUIRED)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(REQUIRED)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(REQUIRED);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| REQUIRED)?;
    let decoded = String::from_utf8(decoded).map_err(|_| REQUIRED)?;
    let (user, key) = decoded.split_once(':').ok_or(REQUIRED)?;
    if user != workspace_id {
        return Err("Invalid APP_ID used in Authentication Header");
    }
    if key != api_key {
        return Err("App Secret key mismatch. Please login to the dashboard to verify key");
    }
    Ok(())
}

/// `application/json`, optionally with parameters such as `; charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Fault statuses are checked to be 100–599 when set; this keeps a bad one from panicking.
fn status_or_500(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
