//! Where the state lives and how it is read and written: a manifest and one object per shard,
//! written with compare-and-swap (`If-Match` / `If-None-Match: *`) and merged on conflict.

use std::sync::atomic::Ordering;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use super::codec::{self, DecodeError, Entries};
use super::shard::{merge, merge_into, Shard};
use super::{SyncState, SyncStateError, MAX_SHARD_BITS};
use crate::state::{Expect, StateStore};

/// Rounds of read-merge-write per shard before `save` gives up on it.
const CAS_ATTEMPTS: u32 = 8;
/// Shards written at once; S3 takes far more, this bounds the bodies held in memory.
const SAVE_CONCURRENCY: usize = 16;

/// The S3 location of one scope's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncLocation {
    pub bucket: String,
    /// `{STATE_PREFIX}sync/{scope}/`.
    pub root: String,
}

impl SyncLocation {
    /// `state_prefix` as configured (empty or ending in `/`); `scope` e.g. [`super::scope`].
    pub fn new(bucket: impl Into<String>, state_prefix: &str, scope: &str) -> Self {
        SyncLocation {
            bucket: bucket.into(),
            root: format!("{state_prefix}sync/{}/", scope.trim_matches('/')),
        }
    }

    pub fn manifest_key(&self) -> String {
        format!("{}manifest.json", self.root)
    }

    /// `shards/{bits}/{index in hex}.bin`: the bit count is in the path so a re-sharded layout
    /// could live beside the old one.
    pub fn shard_key(&self, bits: u8, index: usize) -> String {
        let width = usize::from(bits).div_ceil(4).max(1);
        format!("{}shards/{bits}/{index:0width$x}.bin", self.root)
    }
}

/// The manifest's `format`: the layout (where shards are, how many). Each shard carries its own
/// encoding version ([`codec::FORMAT_VERSION`]).
const MANIFEST_FORMAT: u8 = 1;

/// `manifest.json`: written once per scope, before its first shard. Fixes the shard count for
/// every later writer, and says how to read the shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: u8,
    pub shard_bits: u8,
}

/// What `save` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveReport {
    pub shards_written: u64,
    pub bytes_written: u64,
    /// Keys stored (across written shards) after the save.
    pub keys_stored: u64,
    /// Compare-and-swap rounds lost to another writer (each followed by a re-read and merge).
    pub cas_retries: u64,
    /// Keys dropped because another writer delivered a different payload for them concurrently:
    /// they will be sent again by the next run.
    pub conflicts_dropped: u64,
}

pub(crate) async fn read_manifest(
    store: &dyn StateStore,
    at: &SyncLocation,
) -> Result<Option<Manifest>, SyncStateError> {
    let key = at.manifest_key();
    let Some(body) = store.get(&at.bucket, &key).await? else {
        return Ok(None);
    };
    let unreadable = |reason: String| SyncStateError::Unreadable {
        bucket: at.bucket.clone(),
        key: key.clone(),
        reason,
    };
    let m: Manifest = serde_json::from_slice(&body)
        .map_err(|e| unreadable(format!("not a sync-state manifest: {e}")))?;
    if m.format != MANIFEST_FORMAT {
        return Err(unreadable(format!(
            "format {} (this release reads {MANIFEST_FORMAT})",
            m.format
        )));
    }
    if m.shard_bits > MAX_SHARD_BITS {
        return Err(unreadable(format!(
            "shard_bits {} is over {MAX_SHARD_BITS}",
            m.shard_bits
        )));
    }
    Ok(Some(m))
}

/// Reads shard `index`; a missing shard is empty, a corrupt one is empty too (everything in it is
/// sent again, and the next save replaces exactly that version).
pub(crate) async fn load_shard(state: &SyncState, index: usize) -> Result<Shard, SyncStateError> {
    let (bucket, key) = (
        &state.location.bucket,
        state.location.shard_key(state.shard_bits, index),
    );
    let full = state.options.full_resync;
    let Some(v) = state.store.get_versioned(bucket, &key).await? else {
        return Ok(Shard::new(Entries::default(), None, full));
    };
    let c = &state.counters;
    c.shards_loaded.fetch_add(1, Ordering::Relaxed);
    c.bytes_loaded
        .fetch_add(v.body.len() as u64, Ordering::Relaxed);
    match codec::decode(&v.body, state.shard_bits, index) {
        Ok(entries) => {
            c.keys_loaded
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            Ok(Shard::new(entries, Some(v.etag), full))
        }
        Err(DecodeError::Corrupt(reason)) => {
            tracing::warn!(%bucket, %key, %reason, "sync-state shard is corrupt: its rows are treated as new");
            c.shards_discarded.fetch_add(1, Ordering::Relaxed);
            Ok(Shard::new(Entries::default(), Some(v.etag), full))
        }
        Err(DecodeError::UnknownFormat(reason)) => Err(SyncStateError::Unreadable {
            bucket: bucket.clone(),
            key,
            reason,
        }),
    }
}

pub(crate) async fn save_all(state: &SyncState) -> Result<SaveReport, SyncStateError> {
    let pending: Vec<usize> = (0..state.shards.len())
        .filter(|&i| {
            state
                .lock(i)
                .as_ref()
                .is_some_and(|s| !s.changes().is_empty())
        })
        .collect();
    let mut report = SaveReport::default();
    if pending.is_empty() {
        return Ok(report);
    }
    ensure_manifest(state).await?;
    let mut first_error = None;
    let mut results = stream::iter(pending)
        .map(|i| save_shard(state, i))
        .buffer_unordered(SAVE_CONCURRENCY);
    while let Some(result) = results.next().await {
        match result {
            Ok(r) => {
                report.shards_written += r.shards_written;
                report.bytes_written += r.bytes_written;
                report.keys_stored += r.keys_stored;
                report.cas_retries += r.cas_retries;
                report.conflicts_dropped += r.conflicts_dropped;
            }
            Err(e) => {
                tracing::warn!(error = %e, "sync-state shard not saved: its deliveries will be sent again");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Creates the manifest if absent; if another writer created it first, it must agree.
async fn ensure_manifest(state: &SyncState) -> Result<(), SyncStateError> {
    if state.manifest_stored.load(Ordering::Acquire) {
        return Ok(());
    }
    let at = &state.location;
    let ours = Manifest {
        format: MANIFEST_FORMAT,
        shard_bits: state.shard_bits,
    };
    // Serialising two small integers cannot fail.
    let body = serde_json::to_vec_pretty(&ours).unwrap_or_default();
    if state
        .store
        .put_if(&at.bucket, &at.manifest_key(), body, Expect::Absent)
        .await?
        .is_none()
    {
        let theirs = read_manifest(state.store.as_ref(), at).await?;
        if theirs.is_some_and(|t| t != ours) {
            return Err(SyncStateError::Unreadable {
                bucket: at.bucket.clone(),
                key: at.manifest_key(),
                reason: format!(
                    "created concurrently with other settings ({theirs:?}, this run uses {ours:?})"
                ),
            });
        }
    }
    state.manifest_stored.store(true, Ordering::Release);
    Ok(())
}

/// Read-merge-write of one shard until the compare-and-swap holds.
///
/// A shard as loaded is merged into directly, and written `If-Match` the ETag it was read at.
/// A prepared shard holds only some of the stored entries (those of keys the part may send), so
/// the stored shard is read first (from the warm cache when unchanged) and the changes are merged
/// into it: with the entries kept as `loaded`, the merge rules are the same either way.
async fn save_shard(state: &SyncState, index: usize) -> Result<SaveReport, SyncStateError> {
    let (bucket, key, bits) = (
        &state.location.bucket,
        state.location.shard_key(state.shard_bits, index),
        state.shard_bits,
    );
    let mut report = SaveReport::default();
    let partial = state.is_prepared();
    // Snapshot under the lock; the classify thread may go on while we write.
    let (changes, loaded) = {
        let slot = state.lock(index);
        let Some(shard) = slot.as_ref() else {
            return Ok(report);
        };
        let changes = shard.changes();
        let loaded = (!partial).then(|| {
            let (merged, _) = merge_into(&shard.keys, &shard.fps, &shard.ids, &changes);
            let unchanged = shard.holds(&merged);
            (merged, shard.etag.clone(), unchanged)
        });
        (changes, loaded)
    };
    let (mut entries, mut expect) = match loaded {
        Some((merged, etag, false)) => (merged, etag.map_or(Expect::Absent, Expect::Etag)),
        // Nothing to write against what was loaded (the run delivered what was stored, or
        // forgot nothing): still checked against what is stored now, since another writer may
        // have replaced those entries meanwhile and the merge rules then drop them.
        _ => {
            let (theirs, expect) = read_stored(state, index).await?;
            let (merged, conflicts) = merge(&theirs, &changes);
            report.conflicts_dropped = conflicts;
            if merged == theirs {
                let etag = match expect {
                    Expect::Etag(etag) => Some(etag),
                    Expect::Absent => None,
                };
                commit(state, index, merged, etag, &changes);
                return Ok(report);
            }
            (merged, expect)
        }
    };
    for _ in 0..CAS_ATTEMPTS {
        let body = codec::encode(bits, index, &entries);
        let len = body.len() as u64;
        if let Some(new_etag) = state.store.put_if(bucket, &key, body, expect).await? {
            report.shards_written = 1;
            report.bytes_written = len;
            report.keys_stored = entries.len() as u64;
            commit(state, index, entries, Some(new_etag), &changes);
            return Ok(report);
        }
        // Someone wrote since we read: merge our changes into what is there now.
        report.cas_retries += 1;
        let (theirs, now) = read_stored(state, index).await?;
        let (merged, conflicts) = merge(&theirs, &changes);
        (entries, expect) = (merged, now);
        // Only the merge that is finally written counts.
        report.conflicts_dropped = conflicts;
    }
    Err(SyncStateError::Contended {
        bucket: bucket.clone(),
        key,
        attempts: CAS_ATTEMPTS,
    })
}

/// The stored shard now (a corrupt one counts as empty and is replaced), and the condition that
/// replaces exactly that version.
async fn read_stored(state: &SyncState, index: usize) -> Result<(Entries, Expect), SyncStateError> {
    let (bucket, key, bits) = (
        &state.location.bucket,
        state.location.shard_key(state.shard_bits, index),
        state.shard_bits,
    );
    match state.store.get_versioned(bucket, &key).await? {
        None => Ok((Entries::default(), Expect::Absent)),
        Some(v) => match codec::decode(&v.body, bits, index) {
            Ok(entries) => Ok((entries, Expect::Etag(v.etag))),
            Err(DecodeError::Corrupt(reason)) => {
                tracing::warn!(%bucket, %key, %reason, "sync-state shard is corrupt: replacing it");
                Ok((Entries::default(), Expect::Etag(v.etag)))
            }
            Err(DecodeError::UnknownFormat(reason)) => Err(SyncStateError::Unreadable {
                bucket: bucket.clone(),
                key,
                reason,
            }),
        },
    }
}

/// Adopts what was stored. A prepared shard keeps its part of it: the entries of the keys it
/// held or changed, as now stored (a key dropped in a conflict is gone), without their ids.
fn commit(
    state: &SyncState,
    index: usize,
    stored: Entries,
    etag: Option<String>,
    changes: &[super::shard::Change],
) {
    let mut slot = state.lock(index);
    let Some(shard) = slot.as_mut() else {
        return;
    };
    if state.is_prepared() {
        let mut wanted: Vec<u64> = shard.keys.clone();
        wanted.extend(changes.iter().map(|c| c.key));
        wanted.sort_unstable();
        wanted.dedup();
        let (mut kept_keys, mut kept_fps) = (Vec::new(), Vec::new());
        for k in wanted {
            if let Ok(i) = stored.keys.binary_search(&k) {
                kept_keys.push(k);
                kept_fps.push(stored.fps[i]);
            }
        }
        shard.commit(Entries::unnamed(kept_keys, kept_fps), etag, changes);
    } else {
        shard.commit(stored, etag, changes);
    }
}
