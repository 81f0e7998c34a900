//! Test harness: a real emulator on 127.0.0.1:0 and a real HTTP client.

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::*;

/// A started emulator plus a client and default credentials.
pub(crate) struct Harness {
    pub emu: RunningEmulator,
    pub client: reqwest::Client,
}

/// What came back, decoded.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub(crate) fn basic(user: &str, key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{key}"))
    )
}

pub(crate) fn customer(id: &str, attrs: Value) -> Value {
    json!({"type": "customer", "customer_id": id, "attributes": attrs})
}

/// A Delete Users body for a customer id.
pub(crate) fn delete_customer(id: &str) -> Value {
    json!({"identity_type": "customer_id", "identity_value": id})
}

pub(crate) fn transition(elements: Vec<Value>) -> Value {
    json!({"type": "transition", "elements": elements})
}

impl Harness {
    pub async fn start(config: EmulatorConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let emu = spawn(config, listener).await.unwrap();
        Self {
            emu,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emu.base_url())
    }

    /// POSTs with good credentials and `application/json`.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(
            self.client
                .post(self.url(path))
                .header(
                    "authorization",
                    basic(DEFAULT_WORKSPACE_ID, DEFAULT_API_KEY),
                )
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }
}
