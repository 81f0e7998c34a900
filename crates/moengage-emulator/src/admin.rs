//! `/_emulator/*`: unauthenticated JSON endpoints for tests and the demo to inspect what was
//! stored and to turn fault knobs at runtime. Never counted, logged, delayed or faulted.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::FaultsPatch;
use crate::Emulator;

/// `GET /_emulator/state`: the full [`crate::StateSnapshot`].
pub(crate) async fn state(State(emulator): State<Emulator>) -> Response {
    Json(emulator.state()).into_response()
}

/// `GET /_emulator/faults`: the current [`crate::Faults`] (`fail_first_n` is what is left).
pub(crate) async fn faults(State(emulator): State<Emulator>) -> Response {
    Json(emulator.faults()).into_response()
}

/// `POST /_emulator/faults`: applies any subset of the knobs; answers the resulting faults,
/// or 400 `{"error": …}` for an unknown knob or a bad value (nothing changes then).
pub(crate) async fn set_faults(State(emulator): State<Emulator>, body: Bytes) -> Response {
    let result = FaultsPatch::parse(&body).and_then(|patch| emulator.patch_faults(patch));
    match result {
        Ok(faults) => Json(faults).into_response(),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}

/// `POST /_emulator/reset`: clears storage, the request log, faults and the rate window.
pub(crate) async fn reset(State(emulator): State<Emulator>) -> Response {
    emulator.reset();
    Json(json!({"status": "reset"})).into_response()
}

/// Anything else: a MoEngage-looking 404 so a wrong path in the client is obvious.
pub(crate) async fn not_found() -> Response {
    let body =
        json!({"status": "fail", "error": {"type": "NotFound", "message": "No such endpoint"}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
