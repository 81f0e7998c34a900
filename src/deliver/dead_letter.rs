//! Dead letters: request bodies that could not be delivered, sent to SQS with everything needed to
//! understand and replay them. Replaying sends `payload` again, byte for byte.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::aws::aws_error_text;
use crate::deliver::FailureDetail;
use crate::model::Endpoint;

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
    /// The request path, e.g. `/v1/transition/APPID` (POST, JSON), for people. Redrive never
    /// requests it: it reads the endpoint from `kind` and `app_id` (or, in messages written before
    /// those fields existed, parses this path strictly back into them).
    pub endpoint: String,
    /// The endpoint's name: `customer`, `event` or `transition`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
    /// The app id the body was sent for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub app_id: Option<String>,
    /// The exact request body that was sent, embedded as JSON (not re-encoded); `None` when it was
    /// too large for SQS and lives at `payload_s3` instead.
    pub payload: Option<Box<RawValue>>,
    /// `s3://bucket/key` of the payload when it is not inline.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub payload_s3: Option<String>,
    /// Number of records (elements) in `payload`.
    pub records: u64,
    pub error: FailureDetail,
    pub attempts: u32,
    /// RFC 3339, UTC.
    pub failed_at: String,
    /// The rows' sync-state entries, sealed: redrive records them once MoEngage accepts the body,
    /// so the next run does not send those rows again.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sync_state: Option<StateNote>,
}

/// Which sync-state entries a dead-lettered body stands for. Sealed with an HMAC keyed by the
/// Data API credentials over the scope, the prints and the exact body: a forged or edited message
/// cannot make the state claim rows MoEngage never received (they would never be sent again).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateNote {
    /// The bucket the sync state lives in.
    pub bucket: String,
    /// The sync-state scope (`sync_state::scope`, or a named sync's).
    pub scope: String,
    /// Key hash and fingerprint of each row, 32 hex digits per row.
    pub prints: String,
    /// HMAC-SHA256, hex.
    pub seal: String,
    /// A mirror-mode deletion's snapshot, `bucket/prefix/#id`: sealed too, so that redrive's
    /// "is this still the latest export" check cannot be pointed at another folder.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub snapshot: Option<String>,
}

/// Most rows one note may name: a body holds at most `BATCH_MAX_RECORDS` (≤ 100) elements.
const MAX_NOTE_PRINTS: usize = 1_000;

impl StateNote {
    const CONTEXT: &'static [u8] = b"moengage-sync dead-letter sync state v1";
    /// A note that names a snapshot (a deletion) is sealed in its own domain.
    const SNAPSHOT_CONTEXT: &'static [u8] = b"moengage-sync dead-letter deletion v1";

    pub fn new(
        client: &crate::deliver::client::MoEngageClient,
        bucket: &str,
        scope: &str,
        prints: &[crate::sync_state::RowPrint],
        body: &[u8],
    ) -> Self {
        Self::sealed(client, bucket, scope, prints, body, None)
    }

    /// A deletion's note: also seals the snapshot it belongs to.
    pub fn for_deletion(
        client: &crate::deliver::client::MoEngageClient,
        (bucket, scope): (&str, &str),
        prints: &[crate::sync_state::RowPrint],
        body: &[u8],
        snapshot: String,
    ) -> Self {
        Self::sealed(client, bucket, scope, prints, body, Some(snapshot))
    }

    fn sealed(
        client: &crate::deliver::client::MoEngageClient,
        bucket: &str,
        scope: &str,
        prints: &[crate::sync_state::RowPrint],
        body: &[u8],
        snapshot: Option<String>,
    ) -> Self {
        let prints: String = prints
            .iter()
            .map(|p| format!("{:016x}{:016x}", p.key, p.fingerprint))
            .collect();
        let mut note = StateNote {
            bucket: bucket.to_string(),
            scope: scope.to_string(),
            prints,
            seal: String::new(),
            snapshot,
        };
        note.seal = note
            .expected(client, body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        note
    }

    /// The seal this note's fields and `body` call for.
    fn expected(&self, client: &crate::deliver::client::MoEngageClient, body: &[u8]) -> Vec<u8> {
        let parts = [
            self.bucket.as_bytes(),
            self.scope.as_bytes(),
            self.prints.as_bytes(),
            body,
        ];
        match &self.snapshot {
            None => client.seal(&[Self::CONTEXT, parts[0], parts[1], parts[2], parts[3]]),
            Some(s) => client.seal(&[
                Self::SNAPSHOT_CONTEXT,
                parts[0],
                parts[1],
                parts[2],
                parts[3],
                s.as_bytes(),
            ]),
        }
        .to_vec()
    }

    /// The prints, when the seal matches `body` under this function's credentials.
    pub fn open(
        &self,
        client: &crate::deliver::client::MoEngageClient,
        body: &[u8],
    ) -> Result<Vec<crate::sync_state::RowPrint>, String> {
        let want = self.expected(client, body);
        // One encoding only: lowercase hex, as written (`from_str_radix` would also take `+f`, `0F`).
        let lower_hex = |t: &str| t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if self.seal.len() != 64 || !lower_hex(&self.seal) || !lower_hex(&self.prints) {
            return Err("the sync-state note is not lowercase hex".into());
        }
        let got: Vec<u8> = self
            .seal
            .as_bytes()
            .chunks(2)
            .map(|c| {
                std::str::from_utf8(c)
                    .ok()
                    .and_then(|t| u8::from_str_radix(t, 16).ok())
            })
            .collect::<Option<_>>()
            .ok_or_else(|| "the seal is not hex".to_string())?;
        // Constant time: the comparison must not tell a forger how much of the seal is right.
        if got.len() != want.len()
            || got
                .iter()
                .zip(want.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0
        {
            return Err(
                "the sync-state seal does not match (not written by this function for this body)"
                    .into(),
            );
        }
        if !self.prints.len().is_multiple_of(32) || self.prints.len() / 32 > MAX_NOTE_PRINTS {
            return Err("the sync-state prints are malformed".into());
        }
        self.prints
            .as_bytes()
            .chunks(32)
            .map(|c| {
                if !c.iter().all(u8::is_ascii_hexdigit) {
                    return Err("the sync-state prints are not hex".to_string());
                }
                let text = std::str::from_utf8(c)
                    .map_err(|_| "the sync-state prints are not hex".to_string())?;
                let key =
                    u64::from_str_radix(&text[..16], 16).map_err(|_| "not hex".to_string())?;
                let fingerprint =
                    u64::from_str_radix(&text[16..], 16).map_err(|_| "not hex".to_string())?;
                Ok(crate::sync_state::RowPrint { key, fingerprint })
            })
            .collect()
    }
}

impl DeadLetterMessage {
    /// Builds a message around `body`; `body` is always JSON this project produced.
    pub fn new(
        source: SourceRef,
        endpoint: Endpoint,
        app_id: &str,
        body: &[u8],
        records: u64,
        error: FailureDetail,
        attempts: u32,
    ) -> Result<Self, DeadLetterError> {
        let text = String::from_utf8(body.to_vec())
            .map_err(|e| DeadLetterError(format!("payload is not UTF-8: {e}")))?;
        let payload = RawValue::from_string(text)
            .map_err(|e| DeadLetterError(format!("payload is not JSON: {e}")))?;
        Ok(DeadLetterMessage {
            source,
            endpoint: endpoint.path(app_id),
            kind: Some(endpoint.name().to_string()),
            app_id: Some(app_id.to_string()),
            payload: Some(payload),
            payload_s3: None,
            records,
            error,
            attempts,
            failed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            sync_state: None,
        })
    }
}

/// Where payloads too large for SQS are stored, under the state bucket: one folder per source
/// object. Redrive reads `payload_s3` only from under this prefix of the message's own source.
pub fn payload_prefix(state_prefix: &str, bucket: &str, key: &str) -> String {
    format!("{state_prefix}dead-letters/{bucket}/{key}/")
}

/// SQS takes messages up to 256 KiB; beyond this the payload is stored in S3 instead.
pub const MAX_INLINE_MESSAGE_BYTES: usize = 250_000;

impl DeadLetterMessage {
    /// Size of the message body as sent to SQS.
    pub fn encoded_len(&self) -> usize {
        serde_json::to_vec(self)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
    }

    /// Replaces the inline payload by a pointer to where it was stored.
    pub fn move_payload_to(&mut self, uri: String) {
        self.payload = None;
        self.payload_s3 = Some(uri);
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

    /// Up to 10 messages for redrive, hidden from others for `hide_secs`: (message id, receipt, body).
    async fn receive(&self, _hide_secs: i32) -> Result<Vec<Received>, DeadLetterError> {
        Err(DeadLetterError(
            "this dead-letter sink cannot be read".into(),
        ))
    }
    /// Removes a replayed message.
    async fn delete(&self, _receipt: &str) -> Result<(), DeadLetterError> {
        Err(DeadLetterError(
            "this dead-letter sink cannot be read".into(),
        ))
    }
    /// Makes a message visible again at once (it stays for a later redrive).
    async fn release(&self, _receipt: &str) -> Result<(), DeadLetterError> {
        Ok(())
    }
    /// Approximately how many messages wait in the queue.
    async fn depth(&self) -> Result<u64, DeadLetterError> {
        Err(DeadLetterError(
            "this dead-letter sink cannot be read".into(),
        ))
    }
}

/// A message received for redrive.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
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
            .map_err(|e| {
                DeadLetterError(format!(
                    "could not send to {}: {}",
                    self.queue_url,
                    aws_error_text(&e)
                ))
            })?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }

    async fn receive(&self, hide_secs: i32) -> Result<Vec<Received>, DeadLetterError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(hide_secs)
            .send()
            .await
            .map_err(|e| {
                DeadLetterError(format!(
                    "could not read {}: {}",
                    self.queue_url,
                    aws_error_text(&e)
                ))
            })?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Received {
                message_id: m.message_id.unwrap_or_default(),
                receipt: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), DeadLetterError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                DeadLetterError(format!(
                    "could not delete from {}: {}",
                    self.queue_url,
                    aws_error_text(&e)
                ))
            })
    }

    async fn release(&self, receipt: &str) -> Result<(), DeadLetterError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DeadLetterError(aws_error_text(&e)))
    }

    async fn depth(&self) -> Result<u64, DeadLetterError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| DeadLetterError(aws_error_text(&e)))?;
        Ok(out
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_embedded_byte_for_byte() {
        let body = br#"{"type":"transition","elements":[{"type":"customer","customer_id":"u 1","attributes":{"n":1.50}}]}"#;
        let src = SourceRef {
            bucket: "b".into(),
            key: "k".into(),
            etag: "e".into(),
            version_id: None,
            first_row: 1,
            last_row: 1,
        };
        let msg = DeadLetterMessage::new(
            src,
            Endpoint::Transition,
            "A",
            body,
            1,
            FailureDetail::default(),
            1,
        )
        .unwrap();
        let json = serde_json::to_string(&msg).unwrap();
        assert!(json.contains(std::str::from_utf8(body).unwrap()));
        assert!(
            json.contains(r#""endpoint":"/v1/transition/A","kind":"transition","app_id":"A""#),
            "{json}"
        );
        let back: DeadLetterMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back.payload.unwrap().get().as_bytes(), body);
    }
}

#[cfg(test)]
mod note_tests {
    use super::*;
    use crate::deliver::client::MoEngageClient;
    use crate::model::ApiKey;
    use crate::sync_state::RowPrint;

    fn client(key: &str) -> MoEngageClient {
        let url = reqwest::Url::parse("https://api-01.moengage.com").unwrap();
        MoEngageClient::new(&url, "APP", "WS", &ApiKey::new(key)).unwrap()
    }

    #[test]
    fn a_state_note_opens_only_for_its_body_under_the_same_credentials() {
        let prints = [
            RowPrint {
                key: 1,
                fingerprint: u64::MAX,
            },
            RowPrint {
                key: 0xdead_beef,
                fingerprint: 7,
            },
        ];
        let body = br#"{"elements":[]}"#;
        let ours = client("key-1");
        let note = StateNote::new(&ours, "state", "WS/user_attributes", &prints, body);
        assert_eq!(note.open(&ours, body).unwrap(), prints);
        // Another body, another key, an edited scope or edited prints: refused.
        assert!(note.open(&ours, br#"{"elements":[1]}"#).is_err());
        assert!(note.open(&client("key-2"), body).is_err());
        let mut edited = note.clone();
        edited.bucket = "elsewhere".into();
        assert!(edited.open(&ours, body).is_err());
        let mut edited = note.clone();
        edited.scope = "WS/events".into();
        assert!(edited.open(&ours, body).is_err());
        let mut edited = note.clone();
        edited.prints.replace_range(0..1, "f");
        assert!(edited.open(&ours, body).is_err());
        let mut edited = note.clone();
        edited.seal = "zz".into();
        assert!(edited.open(&ours, body).is_err());
        // The same bytes spelt another way are not accepted either.
        let mut edited = note.clone();
        edited.seal = edited.seal.to_uppercase();
        assert!(edited.open(&ours, body).is_err());

        // A deletion's note seals its snapshot: retargeting it, or dropping it, breaks the seal.
        let deletion = StateNote::for_deletion(
            &ours,
            ("state", "WS/user_attributes"),
            &prints,
            body,
            "b/exports/dt=2/#mirror-0123456789abcdef".into(),
        );
        assert_eq!(deletion.open(&ours, body).unwrap(), prints);
        assert_ne!(deletion.seal, note.seal);
        let mut edited = deletion.clone();
        edited.snapshot = Some("b/exports/dt=3/#mirror-0123456789abcdef".into());
        assert!(edited.open(&ours, body).is_err());
        let mut edited = deletion;
        edited.snapshot = None;
        assert!(edited.open(&ours, body).is_err());
    }
}
