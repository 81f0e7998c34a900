//! Dead letters: request bodies that could not be delivered, sent to SQS with everything needed to
//! understand and replay them. Replaying sends `payload` again, byte for byte.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::delivery::FailureDetail;
use crate::source::aws_error_text;

/// Where the rows of a dead-lettered body came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceRef {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version_id: Option<String>,
    /// Data row numbers (1-based, header not counted) of the first and last element.
    pub first_row: u64,
    pub last_row: u64,
}

/// The dead-letter message body, per DESIGN's contract.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeadLetterMessage {
    pub source: SourceRef,
    /// The request path, e.g. `/v1/transition/APPID` (POST, JSON).
    pub endpoint: String,
    /// The exact request body that was sent, embedded as JSON (not re-encoded).
    pub payload: Box<RawValue>,
    /// Number of records (elements) in `payload`.
    pub records: u64,
    pub error: FailureDetail,
    pub attempts: u32,
    /// RFC 3339, UTC.
    pub failed_at: String,
}

impl DeadLetterMessage {
    /// Builds a message around `body`; `body` is always JSON this project produced.
    pub fn new(source: SourceRef, endpoint: String, body: &[u8], records: u64, error: FailureDetail, attempts: u32) -> Result<Self, DeadLetterError> {
        let text = String::from_utf8(body.to_vec()).map_err(|e| DeadLetterError(format!("payload is not UTF-8: {e}")))?;
        let payload = RawValue::from_string(text).map_err(|e| DeadLetterError(format!("payload is not JSON: {e}")))?;
        Ok(DeadLetterMessage {
            source,
            endpoint,
            payload,
            records,
            error,
            attempts,
            failed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("dead-letter queue: {0}")]
pub struct DeadLetterError(pub String);

/// Writing dead letters. A failure here fails the invocation: a body that is neither delivered
/// nor dead-lettered would be lost.
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Sends one message; returns its message id.
    async fn send(&self, message: &DeadLetterMessage) -> Result<String, DeadLetterError>;
}

/// The SQS queue named by `DEAD_LETTER_QUEUE_URL`.
pub struct SqsDeadLetters {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

#[async_trait]
impl DeadLetterSink for SqsDeadLetters {
    async fn send(&self, message: &DeadLetterMessage) -> Result<String, DeadLetterError> {
        let body = serde_json::to_string(message).map_err(|e| DeadLetterError(e.to_string()))?;
        let out = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| DeadLetterError(format!("could not send to {}: {}", self.queue_url, aws_error_text(&e))))?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_embedded_byte_for_byte() {
        let body = br#"{"type":"transition","elements":[{"type":"customer","customer_id":"u 1","attributes":{"n":1.50}}]}"#;
        let src = SourceRef { bucket: "b".into(), key: "k".into(), etag: "e".into(), version_id: None, first_row: 1, last_row: 1 };
        let msg = DeadLetterMessage::new(src, "/v1/transition/A".into(), body, 1, FailureDetail::default(), 1).unwrap();
        let json = serde_json::to_string(&msg).unwrap();
        assert!(json.contains(std::str::from_utf8(body).unwrap()));
        let back: DeadLetterMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back.payload.get().as_bytes(), body);
    }
}
