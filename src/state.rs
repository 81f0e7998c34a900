//! State: small JSON documents under `STATE_BUCKET/STATE_PREFIX` — run reports now; run markers,
//! checkpoints and sync state build on the same capability.

pub mod cache;

use async_trait::async_trait;

use crate::aws::aws_error_text;

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

/// A document with the ETag it was read at, for compare-and-swap updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub body: Vec<u8>,
    pub etag: String,
}

/// An object a listing found, with the ETag it had then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub etag: String,
}

/// A listing longer than this is refused (~15 MB of keys and ETags): a shard's deltas are at most
/// a few hundred, and a scope's at most 64 per shard, so more is damage or hostile, and must not
/// exhaust memory.
pub const MAX_LISTED: usize = 100_000;

/// The condition of a compare-and-swap write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No object may exist yet (`If-None-Match: *`).
    Absent,
    /// The object must still have this ETag (`If-Match`).
    Etag(String),
}

/// What a conditional read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The object still has the ETag the caller knows (S3 answered 304).
    Unchanged,
    Missing,
    Changed(Versioned),
}

#[async_trait]
pub trait StateStore: Send + Sync {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Writes `body`; with `if_absent`, only when no object exists at `key` (`If-None-Match: *`).
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        if_absent: bool,
    ) -> Result<PutOutcome, StateError>;
    /// Reads a document with its ETag.
    async fn get_versioned(&self, bucket: &str, key: &str)
        -> Result<Option<Versioned>, StateError>;
    /// Writes only if `expect` holds; `Ok(None)` when it did not (someone else wrote first), else the
    /// new ETag.
    async fn put_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        expect: Expect,
    ) -> Result<Option<String>, StateError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StateError>;

    /// Every object under `prefix`, in key order; `None` when this store cannot list (the caller
    /// then finds objects by reading them one after another).
    async fn list(&self, _bucket: &str, _prefix: &str) -> Result<Option<Vec<Listed>>, StateError> {
        Ok(None)
    }

    /// Reads `key`, which a listing just gave with `etag`: a cache that holds that version serves
    /// it without a request. `None` when it is gone.
    async fn get_listed(
        &self,
        bucket: &str,
        key: &str,
        _etag: &str,
    ) -> Result<Option<Versioned>, StateError> {
        self.get_versioned(bucket, key).await
    }

    /// Reads `key` unless its ETag is still `known` (`If-None-Match`: nothing is downloaded
    /// then). A body over `max_bytes` is an error, not a download. Fakes get this for free.
    async fn get_if_changed(
        &self,
        bucket: &str,
        key: &str,
        known: Option<&str>,
        max_bytes: usize,
    ) -> Result<Fetched, StateError> {
        Ok(match self.get_versioned(bucket, key).await? {
            None => Fetched::Missing,
            Some(v) if known == Some(v.etag.as_str()) => Fetched::Unchanged,
            Some(v) if v.body.len() > max_bytes => {
                return Err(StateError {
                    bucket: bucket.into(),
                    key: key.into(),
                    reason: format!("{} bytes, more than the {max_bytes} accepted", v.body.len()),
                })
            }
            Some(v) => Fetched::Changed(v),
        })
    }
}

#[async_trait]
impl StateStore for aws_sdk_s3::Client {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.get_versioned(bucket, key).await?.map(|v| v.body))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        if_absent: bool,
    ) -> Result<PutOutcome, StateError> {
        let mut req = self
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(body.into());
        if if_absent {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e) if if_absent && e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => Err(StateError {
                bucket: bucket.into(),
                key: key.into(),
                reason: aws_error_text(&e),
            }),
        }
    }

    async fn get_versioned(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Versioned>, StateError> {
        let err = |reason: String| StateError {
            bucket: bucket.into(),
            key: key.into(),
            reason,
        };
        match self.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let bytes = out.body.collect().await.map_err(|e| err(e.to_string()))?;
                Ok(Some(Versioned {
                    body: bytes.into_bytes().to_vec(),
                    etag,
                }))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(err(aws_error_text(&e))),
        }
    }

    async fn put_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        expect: Expect,
    ) -> Result<Option<String>, StateError> {
        let mut req = self
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(body.into());
        req = match &expect {
            Expect::Absent => req.if_none_match("*"),
            Expect::Etag(etag) => req.if_match(etag),
        };
        match req.send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
            // 412: the condition failed; 409: a concurrent conditional write is in flight.
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) =>
            {
                Ok(None)
            }
            Err(e) => Err(StateError {
                bucket: bucket.into(),
                key: key.into(),
                reason: aws_error_text(&e),
            }),
        }
    }

    async fn get_if_changed(
        &self,
        bucket: &str,
        key: &str,
        known: Option<&str>,
        max_bytes: usize,
    ) -> Result<Fetched, StateError> {
        let err = |reason: String| StateError {
            bucket: bucket.into(),
            key: key.into(),
            reason,
        };
        let req = self
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_if_none_match(known.filter(|e| !e.is_empty()).map(str::to_string));
        match req.send().await {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let size = out.content_length().unwrap_or(0).max(0) as u64;
                if size > max_bytes as u64 {
                    return Err(err(format!(
                        "{size} bytes, more than the {max_bytes} accepted"
                    )));
                }
                let bytes = out.body.collect().await.map_err(|e| err(e.to_string()))?;
                Ok(Fetched::Changed(Versioned {
                    body: bytes.into_bytes().to_vec(),
                    etag,
                }))
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 304) => {
                Ok(Fetched::Unchanged)
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                Ok(Fetched::Missing)
            }
            Err(e) => Err(err(aws_error_text(&e))),
        }
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Option<Vec<Listed>>, StateError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| StateError {
                    bucket: bucket.into(),
                    key: prefix.into(),
                    reason: aws_error_text(&e),
                })?;
            out.extend(page.contents().iter().filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_string(),
                    etag: o.e_tag().unwrap_or_default().to_string(),
                })
            }));
            if out.len() > MAX_LISTED {
                return Err(StateError {
                    bucket: bucket.into(),
                    key: prefix.into(),
                    reason: format!("more than {MAX_LISTED} objects under this prefix"),
                });
            }
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(Some(out));
            }
        }
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StateError> {
        self.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StateError {
                bucket: bucket.into(),
                key: key.into(),
                reason: aws_error_text(&e),
            })
    }
}
