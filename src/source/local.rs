//! Local files for the terminal `sync`, behind the same [`ObjectSource`] as S3: the bucket
//! [`LOCAL_BUCKET`] names the local file system, the key a file's absolute path without its
//! leading `/`. Any other bucket goes to S3. Run markers, reports, dead-letter payloads and the
//! sync state of local files live in `STATE_BUCKET` like those of S3 objects.
//!
//! A file's "ETag" is its size and modification time: a file rewritten between two runs is a new
//! version, processed from its start, as an overwritten S3 object is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{ListedObject, ObjectMeta, ObjectSource, SourceError, SourceObject};

/// The bucket name that stands for the local file system.
pub const LOCAL_BUCKET: &str = "local-file";

/// Local files under [`LOCAL_BUCKET`], S3 for every other bucket.
pub struct LocalOrS3 {
    pub s3: Arc<dyn ObjectSource>,
}

/// The key of a local file: its absolute path without the leading `/`.
pub fn key_of(path: &Path) -> std::io::Result<String> {
    let absolute = std::fs::canonicalize(path)?;
    Ok(absolute
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string())
}

fn path_of(key: &str) -> PathBuf {
    PathBuf::from(format!("/{key}"))
}

fn meta(key: &str) -> Result<ObjectMeta, SourceError> {
    let m = std::fs::metadata(path_of(key)).map_err(|e| SourceError {
        bucket: LOCAL_BUCKET.into(),
        key: key.into(),
        reason: e.to_string(),
    })?;
    let modified = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(ObjectMeta {
        etag: format!("{:x}-{modified:x}", m.len()),
        version_id: None,
        size: m.len(),
        content_encoding: None,
    })
}

#[async_trait]
impl ObjectSource for LocalOrS3 {
    async fn open(&self, bucket: &str, key: &str) -> Result<SourceObject, SourceError> {
        if bucket != LOCAL_BUCKET {
            return self.s3.open(bucket, key).await;
        }
        let m = meta(key)?;
        let file = tokio::fs::File::open(path_of(key))
            .await
            .map_err(|e| SourceError {
                bucket: bucket.into(),
                key: key.into(),
                reason: e.to_string(),
            })?;
        Ok(SourceObject {
            etag: m.etag,
            version_id: None,
            content_encoding: None,
            size: Some(m.size),
            body: Box::pin(file),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, SourceError> {
        if bucket != LOCAL_BUCKET {
            return self.s3.head(bucket, key).await;
        }
        meta(key)
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, SourceError> {
        if bucket != LOCAL_BUCKET {
            return self.s3.read_range(bucket, key, start, end).await;
        }
        let path = path_of(key);
        let read = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let file = std::fs::File::open(path)?;
            let mut buf = vec![0; end.saturating_sub(start) as usize];
            file.read_exact_at(&mut buf, start)?;
            Ok::<_, std::io::Error>(bytes::Bytes::from(buf))
        })
        .await;
        match read {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(SourceError {
                bucket: bucket.into(),
                key: key.into(),
                reason: e.to_string(),
            }),
            Err(e) => Err(SourceError {
                bucket: bucket.into(),
                key: key.into(),
                reason: e.to_string(),
            }),
        }
    }

    async fn read_range_if(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
        etag: Option<&str>,
    ) -> Result<bytes::Bytes, SourceError> {
        if bucket != LOCAL_BUCKET {
            return self.s3.read_range_if(bucket, key, start, end, etag).await;
        }
        self.read_range(bucket, key, start, end).await
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, SourceError> {
        if bucket != LOCAL_BUCKET {
            return self.s3.list(bucket, prefix).await;
        }
        Err(SourceError {
            bucket: bucket.into(),
            key: prefix.into(),
            reason: "local directories are not listed; name the files".into(),
        })
    }
}
