//! A read-through cache of sync-state shards in a local directory (`/tmp` in Lambda), revalidated
//! by ETag on every read: a warm container re-reads a shard only when another writer changed it.
//!
//! With a reserved concurrency of 1, the parts of one snapshot run one after another in the same
//! container; without the cache each part downloads every shard again (about 100 × the state for
//! a 100-part snapshot). With it, each part asks S3 `If-None-Match: <etag>` per shard and gets a
//! 304 with no body; the bytes come from the local copy. Shards this function writes are cached
//! with the ETag S3 answered, so a part never re-downloads what the previous part saved.
//!
//! Only keys under a `/sync/` path and ending in `.bin` are cached (the shards; never markers,
//! reports or the manifest). The directory is bounded by `STATE_CACHE_MB`, least recently used
//! out first; memory holds only the index (one small entry per cached shard). Nothing here can
//! make a read stale: every read asks S3 whether the copy is still current.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::{Expect, Fetched, Listed, PutOutcome, StateError, StateStore, Versioned};

/// Counters for the run report and the benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Shard bytes downloaded from the store (cache misses and changed shards).
    pub bytes_downloaded: u64,
    /// Shard bytes served from the local copy after a 304.
    pub bytes_from_cache: u64,
    /// Conditional reads the store answered "unchanged".
    pub revalidated: u64,
    /// Bytes of shards written through to the store.
    pub bytes_written: u64,
}

struct Entry {
    etag: String,
    len: u64,
    /// Larger = used more recently.
    used: u64,
}

/// A [`StateStore`] that keeps shard bodies in `dir`, up to `max_bytes`.
pub struct ShardCache {
    inner: Arc<dyn StateStore>,
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    bytes_downloaded: AtomicU64,
    bytes_from_cache: AtomicU64,
    revalidated: AtomicU64,
    bytes_written: AtomicU64,
}

#[derive(Default)]
struct Index {
    entries: HashMap<String, Entry>,
    total: u64,
    clock: u64,
}

/// Name of the cache directories: `{DIR_PREFIX}{pid}-{instance}`.
const DIR_PREFIX: &str = "moengage-sync-shards-";

/// Largest shard body a conditional read accepts (a shard of 100M keys / 256 is ~6 MB).
const MAX_SHARD_BYTES: usize = 256 << 20;

/// Removes the directories under `parent` named `{prefix}{pid}-…` whose process is gone (a
/// crashed or timed-out run's: Lambda keeps `/tmp` across restarts of a warm instance).
pub(crate) fn remove_stale_dirs(parent: &std::path::Path, prefix: &str) {
    let pid = std::process::id();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| p != pid && !std::path::Path::new(&format!("/proc/{p}")).exists());
        if stale {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl ShardCache {
    /// Caches shards of `inner` in a directory of its own under `parent` (the system's temporary
    /// directory in Lambda: `/tmp`), up to `max_bytes`. Directories left by processes that are
    /// gone (a crashed container's) are removed first; this one is removed when dropped.
    pub fn new(
        inner: Arc<dyn StateStore>,
        parent: &std::path::Path,
        max_bytes: u64,
    ) -> std::io::Result<Self> {
        static INSTANCE: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id();
        remove_stale_dirs(parent, DIR_PREFIX);
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("{DIR_PREFIX}{pid}-{n}"));
        std::fs::create_dir_all(&dir)?;
        Ok(ShardCache {
            inner,
            dir,
            max_bytes,
            index: Mutex::new(Index::default()),
            bytes_downloaded: AtomicU64::new(0),
            bytes_from_cache: AtomicU64::new(0),
            revalidated: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            bytes_downloaded: self.bytes_downloaded.load(Ordering::Relaxed),
            bytes_from_cache: self.bytes_from_cache.load(Ordering::Relaxed),
            revalidated: self.revalidated.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
        }
    }

    fn cacheable(key: &str) -> bool {
        key.contains("/sync/") && key.ends_with(".bin")
    }

    fn id(bucket: &str, key: &str) -> String {
        format!("{bucket}/{key}")
    }

    fn path(&self, id: &str) -> PathBuf {
        let h = xxhash_rust::xxh3::xxh3_128(id.as_bytes());
        self.dir.join(format!("{h:032x}.bin"))
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached ETag of `id`, marking it used.
    fn known(&self, id: &str) -> Option<String> {
        let mut index = self.index();
        index.clock += 1;
        let clock = index.clock;
        index.entries.get_mut(id).map(|e| {
            e.used = clock;
            e.etag.clone()
        })
    }

    fn forget(&self, id: &str) {
        let mut index = self.index();
        if let Some(e) = index.entries.remove(id) {
            index.total -= e.len;
            let _ = std::fs::remove_file(self.path(id));
        }
    }

    /// Keeps `body` as `id` at `etag`, evicting the least recently used beyond the budget. A
    /// body larger than the whole budget, or a write that fails, is simply not cached.
    fn keep(&self, id: &str, etag: &str, body: &[u8]) {
        self.forget(id);
        let len = body.len() as u64;
        if len > self.max_bytes || std::fs::write(self.path(id), body).is_err() {
            return;
        }
        let mut index = self.index();
        index.clock += 1;
        let used = index.clock;
        index.entries.insert(
            id.to_string(),
            Entry {
                etag: etag.to_string(),
                len,
                used,
            },
        );
        index.total += len;
        while index.total > self.max_bytes {
            let Some(oldest) = index
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = index.entries.remove(&oldest) {
                index.total -= e.len;
                let _ = std::fs::remove_file(self.path(&oldest));
            }
        }
    }
}

impl Drop for ShardCache {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[async_trait]
impl StateStore for ShardCache {
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
        if Self::cacheable(key) {
            // No ETag comes back from a plain put: the next read downloads.
            self.forget(&Self::id(bucket, key));
        }
        self.inner.put(bucket, key, body, if_absent).await
    }

    async fn get_versioned(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Versioned>, StateError> {
        if !Self::cacheable(key) {
            return self.inner.get_versioned(bucket, key).await;
        }
        let id = Self::id(bucket, key);
        let known = self.known(&id);
        match self
            .inner
            .get_if_changed(bucket, key, known.as_deref(), MAX_SHARD_BYTES)
            .await?
        {
            Fetched::Missing => {
                self.forget(&id);
                Ok(None)
            }
            Fetched::Changed(v) => {
                self.bytes_downloaded
                    .fetch_add(v.body.len() as u64, Ordering::Relaxed);
                self.keep(&id, &v.etag, &v.body);
                Ok(Some(v))
            }
            Fetched::Unchanged => {
                let etag = known.unwrap_or_default();
                match std::fs::read(self.path(&id)) {
                    Ok(body) => {
                        self.revalidated.fetch_add(1, Ordering::Relaxed);
                        self.bytes_from_cache
                            .fetch_add(body.len() as u64, Ordering::Relaxed);
                        Ok(Some(Versioned { body, etag }))
                    }
                    Err(_) => {
                        // The local copy is gone (evicted meanwhile): read it whole.
                        self.forget(&id);
                        let v = self.inner.get_versioned(bucket, key).await?;
                        if let Some(v) = &v {
                            self.bytes_downloaded
                                .fetch_add(v.body.len() as u64, Ordering::Relaxed);
                            self.keep(&id, &v.etag, &v.body);
                        }
                        Ok(v)
                    }
                }
            }
        }
    }

    async fn put_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        expect: Expect,
    ) -> Result<Option<String>, StateError> {
        if !Self::cacheable(key) {
            return self.inner.put_if(bucket, key, body, expect).await;
        }
        let id = Self::id(bucket, key);
        let copy = body.clone();
        let written = self.inner.put_if(bucket, key, body, expect).await?;
        match &written {
            Some(etag) => {
                self.bytes_written
                    .fetch_add(copy.len() as u64, Ordering::Relaxed);
                self.keep(&id, etag, &copy);
            }
            // Someone else wrote first: the caller re-reads, which downloads theirs.
            None => self.forget(&id),
        }
        Ok(written)
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StateError> {
        if Self::cacheable(key) {
            self.forget(&Self::id(bucket, key));
        }
        self.inner.delete(bucket, key).await
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Option<Vec<Listed>>, StateError> {
        self.inner.list(bucket, prefix).await
    }

    /// The local copy when it is the version listed: no request at all.
    async fn get_listed(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<Option<Versioned>, StateError> {
        if Self::cacheable(key) {
            let id = Self::id(bucket, key);
            if self.known(&id).as_deref() == Some(etag) {
                if let Ok(body) = std::fs::read(self.path(&id)) {
                    self.bytes_from_cache
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                    let etag = etag.to_string();
                    return Ok(Some(Versioned { body, etag }));
                }
            }
        }
        self.get_versioned(bucket, key).await
    }

    async fn get_if_changed(
        &self,
        bucket: &str,
        key: &str,
        known: Option<&str>,
        max_bytes: usize,
    ) -> Result<Fetched, StateError> {
        self.inner
            .get_if_changed(bucket, key, known, max_bytes)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory store that counts body bytes it returns.
    #[derive(Default)]
    struct Counting {
        docs: Mutex<HashMap<String, (Vec<u8>, u64)>>,
        served: AtomicU64,
    }

    #[async_trait]
    impl StateStore for Counting {
        async fn get(&self, b: &str, k: &str) -> Result<Option<Vec<u8>>, StateError> {
            Ok(self.get_versioned(b, k).await?.map(|v| v.body))
        }
        async fn put(
            &self,
            b: &str,
            k: &str,
            body: Vec<u8>,
            _: bool,
        ) -> Result<PutOutcome, StateError> {
            self.put_if(b, k, body, Expect::Absent).await?;
            Ok(PutOutcome::Written)
        }
        async fn get_versioned(&self, b: &str, k: &str) -> Result<Option<Versioned>, StateError> {
            let docs = self.docs.lock().unwrap();
            Ok(docs.get(&format!("{b}/{k}")).map(|(body, v)| {
                self.served.fetch_add(body.len() as u64, Ordering::Relaxed);
                Versioned {
                    body: body.clone(),
                    etag: format!("v{v}"),
                }
            }))
        }
        async fn put_if(
            &self,
            b: &str,
            k: &str,
            body: Vec<u8>,
            expect: Expect,
        ) -> Result<Option<String>, StateError> {
            let mut docs = self.docs.lock().unwrap();
            let id = format!("{b}/{k}");
            let current = docs.get(&id).map(|(_, v)| format!("v{v}"));
            let ok = match expect {
                Expect::Absent => current.is_none(),
                Expect::Etag(e) => current.as_deref() == Some(e.as_str()),
            };
            if !ok {
                return Ok(None);
            }
            let v = docs.get(&id).map_or(1, |(_, v)| v + 1);
            docs.insert(id, (body, v));
            Ok(Some(format!("v{v}")))
        }
        async fn delete(&self, b: &str, k: &str) -> Result<(), StateError> {
            self.docs.lock().unwrap().remove(&format!("{b}/{k}"));
            Ok(())
        }
        async fn get_if_changed(
            &self,
            b: &str,
            k: &str,
            known: Option<&str>,
            _: usize,
        ) -> Result<Fetched, StateError> {
            let docs = self.docs.lock().unwrap();
            Ok(match docs.get(&format!("{b}/{k}")) {
                None => Fetched::Missing,
                Some((_, v)) if known == Some(format!("v{v}").as_str()) => Fetched::Unchanged,
                Some((body, v)) => {
                    self.served.fetch_add(body.len() as u64, Ordering::Relaxed);
                    Fetched::Changed(Versioned {
                        body: body.clone(),
                        etag: format!("v{v}"),
                    })
                }
            })
        }
    }

    #[tokio::test]
    async fn shards_are_downloaded_once_and_revalidated_after() {
        let inner = Arc::new(Counting::default());
        let cache = ShardCache::new(inner.clone(), &std::env::temp_dir(), 1 << 20).unwrap();
        let dir = cache.dir.clone();
        let key = "p/sync/ws/user_attributes/shards/8/00.bin";
        inner
            .put_if("b", key, vec![1; 1000], Expect::Absent)
            .await
            .unwrap();

        for _ in 0..5 {
            let v = cache.get_versioned("b", key).await.unwrap().unwrap();
            assert_eq!((v.body.len(), v.etag.as_str()), (1000, "v1"));
        }
        assert_eq!(
            inner.served.load(Ordering::Relaxed),
            1000,
            "downloaded once"
        );
        assert_eq!(cache.stats().revalidated, 4);

        // Another writer changes it: the next read downloads the new version.
        inner
            .put_if("b", key, vec![2; 500], Expect::Etag("v1".into()))
            .await
            .unwrap();
        let v = cache.get_versioned("b", key).await.unwrap().unwrap();
        assert_eq!((v.body, v.etag.as_str()), (vec![2; 500], "v2"));

        // What this process writes is cached with the ETag the store answered.
        let e = cache
            .put_if("b", key, vec![3; 200], Expect::Etag("v2".into()))
            .await
            .unwrap();
        assert_eq!(e.as_deref(), Some("v3"));
        let before = inner.served.load(Ordering::Relaxed);
        let v = cache.get_versioned("b", key).await.unwrap().unwrap();
        assert_eq!((v.body, v.etag.as_str()), (vec![3; 200], "v3"));
        assert_eq!(inner.served.load(Ordering::Relaxed), before, "no download");

        // Deleted elsewhere: missing, and forgotten.
        inner.delete("b", key).await.unwrap();
        assert!(cache.get_versioned("b", key).await.unwrap().is_none());

        // Beyond the budget, the least recently used goes.
        for i in 0..3 {
            let k = format!("p/sync/ws/user_attributes/shards/8/{i:02}.bin");
            inner
                .put_if("b", &k, vec![0; 400 << 10], Expect::Absent)
                .await
                .unwrap();
            cache.get_versioned("b", &k).await.unwrap();
        }
        assert!(cache.index().total <= 1 << 20);
        assert_eq!(cache.index().entries.len(), 2);
        // Markers and reports pass through, uncached.
        inner
            .put_if("b", "p/runs/x.json", b"{}".to_vec(), Expect::Absent)
            .await
            .unwrap();
        cache.get_versioned("b", "p/runs/x.json").await.unwrap();
        assert_eq!(cache.index().entries.len(), 2);
        drop(cache);
        assert!(!dir.exists(), "removed with the cache");
    }
}
