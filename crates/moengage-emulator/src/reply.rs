//! MoEngage-shaped response bodies and headers (shapes from MoEngage's OpenAPI `data.yaml`).

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::rate::RateStatus;

/// The message MoEngage sends with every accepted call.
pub const SUCCESS_MESSAGE: &str = "Your request has been accepted and will be processed soon.";

/// An API answer before it becomes an HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body.
    pub body: Value,
    /// The `request_id` in the body, for the request log.
    pub request_id: String,
    /// Rate-limit headers to attach; `None` when limiting is disabled.
    pub rate: Option<RateStatus>,
}

impl Reply {
    /// `200 {"status":"success",…}`.
    pub fn success(request_id: String, rate: Option<RateStatus>) -> Self {
        let body =
            json!({"status": "success", "message": SUCCESS_MESSAGE, "request_id": request_id});
        Self {
            status: StatusCode::OK,
            body,
            request_id,
            rate,
        }
    }

    /// `{"status":"fail","error":{…}}` with the given status; `attribute` only for the
    /// attribute errors MoEngage names one in.
    pub fn fail(
        status: StatusCode,
        error_type: &str,
        message: &str,
        attribute: Option<&str>,
        request_id: String,
        rate: Option<RateStatus>,
    ) -> Self {
        let mut error = json!({"type": error_type, "message": message, "request_id": request_id});
        if let (Some(attribute), Some(map)) = (attribute, error.as_object_mut()) {
            map.insert("attribute".to_owned(), Value::from(attribute));
        }
        let body = json!({"status": "fail", "error": error});
        Self {
            status,
            body,
            request_id,
            rate,
        }
    }

    /// A failure with the error type and message MoEngage uses for `status`, for injected
    /// faults where no real check produced one.
    pub fn injected(status: StatusCode, request_id: String, rate: Option<RateStatus>) -> Self {
        let (error_type, message) = match status.as_u16() {
            400 => (
                "InvalidAttributeError",
                "Injected failure: the request was rejected",
            ),
            401 => ("Authentication required", "Authentication Header Required"),
            403 => (
                "BlockedClient",
                "Your account is blocked. Please contact MoEngage team.",
            ),
            409 => (
                "AppKeyMismatch",
                "App key mismatch in params and authentication",
            ),
            413 => ("PayloadTooLarge", "Payload size exceeds the limit"),
            415 => ("MediaTypeError", "Unsupported Media Type"),
            429 => ("RateLimitError", "Rate Limits Exceeded"),
            500..=599 => (
                "ServerError",
                status.canonical_reason().unwrap_or("Internal Server Error"),
            ),
            _ => ("Error", "Injected failure"),
        };
        Self::fail(status, error_type, message, None, request_id, rate)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(rate) = self.rate {
            let headers = response.headers_mut();
            for (name, value) in [
                ("x-ratelimit-limit", u64::from(rate.limit)),
                ("x-ratelimit-remaining", u64::from(rate.remaining)),
                ("x-ratelimit-reset", rate.reset_secs),
            ] {
                headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
            }
        }
        response
    }
}

/// A request id shaped like MoEngage's (8 letters), made unique within a run by `seq`.
pub fn request_id(seq: u64) -> String {
    let letters: String = std::iter::repeat_with(fastrand::alphabetic)
        .take(8)
        .collect();
    format!("{letters}{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_body_names_the_attribute_only_when_given() {
        let r = Reply::fail(
            StatusCode::BAD_REQUEST,
            "MissingAttributeError",
            "m",
            Some("customer_id"),
            "r1".into(),
            None,
        );
        assert_eq!(
            r.body,
            json!({"status":"fail","error":{"type":"MissingAttributeError","message":"m","request_id":"r1","attribute":"customer_id"}})
        );
        let r = Reply::injected(StatusCode::TOO_MANY_REQUESTS, "r2".into(), None);
        assert_eq!(r.body["error"]["message"], "Rate Limits Exceeded");
        assert!(r.body["error"].get("attribute").is_none());
    }

    #[test]
    fn rate_headers_are_attached() {
        let rate = RateStatus {
            limit: 100,
            remaining: 3,
            reset_secs: 42,
        };
        let response = Reply::success("r".into(), Some(rate)).into_response();
        let h = response.headers();
        assert_eq!(h["x-ratelimit-limit"], "100");
        assert_eq!(h["x-ratelimit-remaining"], "3");
        assert_eq!(h["x-ratelimit-reset"], "42");
    }

    #[test]
    fn request_ids_are_unique_per_sequence_number() {
        assert_ne!(request_id(1), request_id(2));
        assert!(request_id(7).starts_with(|c: char| c.is_ascii_alphabetic()));
    }
}
