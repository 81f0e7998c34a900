//! Source: the export objects in S3, streamed. The [`ObjectSource`] capability lets tests put a
//! failing reader in place of S3.
//!
//! Takes a bucket and key (and the version claimed); gives a byte stream of the object, or
//! byte ranges of it, with its ETag and size.

pub mod local;

use std::pin::Pin;

use async_trait::async_trait;

use crate::aws::aws_error_text;
use tokio::io::AsyncRead;

/// An object opened for reading; the body is a stream, never the whole object in memory.
pub struct SourceObject {
    /// The version identity used for run markers, checkpoints and dead-letter context.
    pub etag: String,
    pub version_id: Option<String>,
    pub content_encoding: Option<String>,
    pub size: Option<u64>,
    pub body: Pin<Box<dyn AsyncRead + Send>>,
}

/// One entry of a listing (for the scheduled sweep).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub etag: String,
    pub size: u64,
    /// S3's LastModified, epoch seconds (0 when unknown).
    pub last_modified: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("could not read s3://{bucket}/{key}: {reason}")]
pub struct SourceError {
    pub bucket: String,
    pub key: String,
    pub reason: String,
}

/// What a HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub etag: String,
    pub version_id: Option<String>,
    pub size: u64,
    pub content_encoding: Option<String>,
}

/// Reading exports.
#[async_trait]
pub trait ObjectSource: Send + Sync {
    async fn open(&self, bucket: &str, key: &str) -> Result<SourceObject, SourceError>;
    /// Opens exactly the version with ETag `etag` (fails if the object changed since).
    async fn open_if(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<SourceObject, SourceError> {
        let object = self.open(bucket, key).await?;
        match etag {
            Some(e) if normalize_etag(e) != object.etag => Err(SourceError {
                bucket: bucket.into(),
                key: key.into(),
                reason: format!(
                    "the object changed while it was being processed (ETag {} instead of {e})",
                    object.etag
                ),
            }),
            _ => Ok(object),
        }
    }
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, SourceError>;
    /// Bytes `start..end` (end exclusive) of the object — for formats read by ranges (Parquet).
    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, SourceError>;
    /// As [`ObjectSource::read_range`], of exactly the version with ETag `etag` (`If-Match`): an
    /// object overwritten mid-run must not be decoded with the old footer and the new bytes.
    /// Fakes without versions ignore `etag`.
    async fn read_range_if(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
        _etag: Option<&str>,
    ) -> Result<bytes::Bytes, SourceError> {
        self.read_range(bucket, key, start, end).await
    }
    /// Every object under `prefix` (paginated internally).
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, SourceError>;
}

/// Strips the quotes S3 puts around ETags, so events and HeadObject agree.
pub fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_string()
}

#[async_trait]
impl ObjectSource for aws_sdk_s3::Client {
    async fn open(&self, bucket: &str, key: &str) -> Result<SourceObject, SourceError> {
        self.open_if(bucket, key, None).await
    }

    async fn open_if(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<SourceObject, SourceError> {
        let err = |reason: String| SourceError {
            bucket: bucket.into(),
            key: key.into(),
            reason,
        };
        let mut req = self.get_object().bucket(bucket).key(key);
        if let Some(e) = etag {
            req = req.if_match(format!("\"{}\"", normalize_etag(e)));
        }
        let out = req.send().await.map_err(|e| {
            err(match e.as_service_error() {
                Some(s) if s.is_no_such_key() => "no such key (was it deleted or renamed after upload?)".into(),
                _ if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                    "the object was overwritten since this run began; the new version is processed on its own".into()
                }
                _ => aws_error_text(&e),
            })
        })?;
        Ok(SourceObject {
            etag: out.e_tag().map(normalize_etag).unwrap_or_default(),
            version_id: out.version_id().map(str::to_string),
            content_encoding: out.content_encoding().map(str::to_string),
            size: out.content_length().and_then(|l| u64::try_from(l).ok()),
            body: Box::pin(out.body.into_async_read()),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, SourceError> {
        let out = self
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| SourceError {
                bucket: bucket.into(),
                key: key.into(),
                reason: aws_error_text(&e),
            })?;
        Ok(ObjectMeta {
            etag: out.e_tag().map(normalize_etag).unwrap_or_default(),
            version_id: out.version_id().map(str::to_string),
            size: out
                .content_length()
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
            content_encoding: out.content_encoding().map(str::to_string),
        })
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, SourceError> {
        self.read_range_if(bucket, key, start, end, None).await
    }

    async fn read_range_if(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
        etag: Option<&str>,
    ) -> Result<bytes::Bytes, SourceError> {
        let err = |reason: String| SourceError {
            bucket: bucket.into(),
            key: key.into(),
            reason,
        };
        if end <= start {
            return Ok(bytes::Bytes::new());
        }
        let mut req = self
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes={start}-{}", end - 1));
        if let Some(e) = etag.filter(|e| !e.is_empty()) {
            req = req.if_match(format!("\"{}\"", normalize_etag(e)));
        }
        let out = req.send().await.map_err(|e| {
            if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) {
                err(format!(
                    "the object was overwritten while it was read (no longer ETag {}); the new version is processed by its own notification",
                    etag.map(normalize_etag).unwrap_or_default()
                ))
            } else {
                err(aws_error_text(&e))
            }
        })?;
        let data = out.body.collect().await.map_err(|e| err(e.to_string()))?;
        Ok(data.into_bytes())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, SourceError> {
        let mut pages = self
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| SourceError {
                bucket: bucket.into(),
                key: prefix.into(),
                reason: aws_error_text(&e),
            })?;
            for o in page.contents() {
                out.push(ListedObject {
                    key: o.key().unwrap_or_default().to_string(),
                    etag: o.e_tag().map(normalize_etag).unwrap_or_default(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    last_modified: o.last_modified().map_or(0, |t| t.secs()),
                });
            }
        }
        Ok(out)
    }
}
