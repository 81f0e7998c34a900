//! State: small JSON documents under `STATE_BUCKET/STATE_PREFIX` — run reports now; run markers,
//! checkpoints and sync state build on the same capability.

use async_trait::async_trait;

use crate::source::aws_error_text;

#[derive(Debug, thiserror::Error)]
#[error("state s3://{bucket}/{key}: {reason}")]
pub struct StateError {
    pub bucket: String,
    pub key: String,
    pub reason: String,
}

/// Whether a conditional write happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    /// `if_absent` was set and the key already existed.
    AlreadyExists,
}

#[async_trait]
pub trait StateStore: Send + Sync {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Writes `body`; with `if_absent`, only when no object exists at `key` (`If-None-Match: *`).
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, if_absent: bool) -> Result<PutOutcome, StateError>;
}

#[async_trait]
impl StateStore for aws_sdk_s3::Client {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let err = |reason: String| StateError { bucket: bucket.into(), key: key.into(), reason };
        match self.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => {
                let bytes = out.body.collect().await.map_err(|e| err(e.to_string()))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(err(aws_error_text(&e))),
        }
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, if_absent: bool) -> Result<PutOutcome, StateError> {
        let mut req = self.put_object().bucket(bucket).key(key).content_type("application/json").body(body.into());
        if if_absent {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e) if if_absent && e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(StateError { bucket: bucket.into(), key: key.into(), reason: aws_error_text(&e) }),
        }
    }
}
