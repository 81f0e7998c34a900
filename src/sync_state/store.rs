//! Where the state lives and how it is read and written: a manifest, and per shard a base and the
//! deltas saved since, written with compare-and-swap (`If-Match` / `If-None-Match: *`) and merged
//! on conflict.

use std::sync::atomic::Ordering;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use super::codec::{self, DecodeError, Entries};
use super::shard::{merge_into, Merged, Shard, Version};
use super::{SyncState, SyncStateError, MAX_SHARD_BITS};
use crate::state::{Expect, Fetched, Listed, StateStore};

/// Rounds of read-merge-write per shard before `save` gives up on it.
const CAS_ATTEMPTS: u32 = 8;
/// Shards written at once; S3 takes far more, this bounds the bodies held in memory.
const SAVE_CONCURRENCY: usize = 16;
/// Of those, how many may hold a whole stored shard at once (see `SyncState::whole_reads`).
pub(crate) const WHOLE_READS: usize = 2;

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

    /// `shards/{bits}/{index in hex}.bin`, the shard's base: the bit count is in the path so a
    /// re-sharded layout could live beside the old one.
    pub fn shard_key(&self, bits: u8, index: usize) -> String {
        let width = usize::from(bits).div_ceil(4).max(1);
        format!("{}shards/{bits}/{index:0width$x}.bin", self.root)
    }

    /// `deltas/{bits}/{index in hex}/{generation}/{seq}.bin`: save number `seq` after the base
    /// of `generation`.
    pub fn delta_key(&self, bits: u8, index: usize, generation: u64, seq: u64) -> String {
        format!(
            "{}{generation:016x}/{seq:06}.bin",
            self.delta_prefix(bits, index)
        )
    }

    /// Where shard `index`'s deltas are, of every generation.
    pub fn delta_prefix(&self, bits: u8, index: usize) -> String {
        let width = usize::from(bits).div_ceil(4).max(1);
        format!("{}{index:0width$x}/", self.deltas_root(bits))
    }

    /// Where every shard's deltas are.
    pub fn deltas_root(&self, bits: u8) -> String {
        format!("{}deltas/{bits}/", self.root)
    }
}

/// A save writes a delta while the shard has fewer than this many; the one that would reach it
/// rewrites the base instead (and so does one whose deltas would outweigh half the base). A cold
/// read costs a request per delta (8 at a time); a warm one serves them from `/tmp` unasked.
pub(crate) const MAX_DELTAS: u64 = 64;
/// A shard with more deltas than this was not written by this release's rules (which compact
/// at [`MAX_DELTAS`], give or take concurrent writers): it is treated as damaged, so a hostile
/// state cannot make a read take unbounded requests.
const MAX_DELTAS_READ: u64 = 256;
/// Listed deltas of one shard read at once (a cold read; a warm one serves them from `/tmp`).
const DELTA_READS: usize = 8;

/// A shard as stored now: base plus deltas.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub entries: Entries,
    pub version: Version,
}

/// Reads shard `index`: its base, then its deltas in order. A missing base is an empty shard; a
/// corrupt base or delta gives an empty, damaged view (its rows are sent again, and the next save
/// replaces exactly that base); another format version is an error, and is never overwritten.
///
/// The deltas are found by listing the shard's delta prefix **before** reading the base (or in
/// `listing`, a listing of every shard's deltas taken before, as the join does): the base then
/// comes with the deltas of its generation that existed at the listing, which is the shard as it
/// was at some moment (a delta written later follows them; a base written later has none
/// listed). A delta served from the warm cache costs no request. A listed delta that is gone was
/// folded by a compaction since: the shard is listed and read again.
///
/// A store that cannot list is probed: deltas are read one after another until one is missing.
/// A compaction deletes the deltas it folded in, so such a read may end early: it then checks the
/// base is still the one it read (a conditional read, 304 without a body) and reads again
/// otherwise. A read that ended at a generation's last delta needs neither: nothing follows it.
pub(crate) async fn read_view(
    store: &dyn StateStore,
    at: &SyncLocation,
    bits: u8,
    index: usize,
    listing: Option<&[Listed]>,
) -> Result<View, SyncStateError> {
    let key = at.shard_key(bits, index);
    for attempt in 0..CAS_ATTEMPTS {
        let listed_now;
        let listed = match listing.filter(|_| attempt == 0) {
            Some(listed) => Some(listed),
            None => {
                listed_now = store
                    .list(&at.bucket, &at.delta_prefix(bits, index))
                    .await?;
                listed_now.as_deref()
            }
        };
        match read_once(store, at, bits, index, listed).await? {
            Read::Done(view) => return Ok(view),
            Read::Recheck(view) => {
                if base_still(store, at, &key, view.version.base.as_deref()).await? {
                    return Ok(view);
                }
            }
            Read::Gone => {}
        }
    }
    Err(SyncStateError::Contended {
        bucket: at.bucket.clone(),
        key,
        attempts: CAS_ATTEMPTS,
    })
}

/// The listed deltas of shard `index` within a listing of every shard's (sorted by key).
pub(crate) fn listed_for<'a>(
    listing: &'a [Listed],
    at: &SyncLocation,
    bits: u8,
    index: usize,
) -> &'a [Listed] {
    let prefix = at.delta_prefix(bits, index);
    let start = listing.partition_point(|l| l.key.as_str() < prefix.as_str());
    let len = listing[start..]
        .iter()
        .take_while(|l| l.key.starts_with(&prefix))
        .count();
    &listing[start..start + len]
}

/// What one read of base and deltas found.
enum Read {
    Done(View),
    /// Probed (no listing), and ended at a missing delta, which a compaction may have deleted:
    /// good if the base still has the ETag the view was read at.
    Recheck(View),
    /// A listed delta is gone.
    Gone,
}

async fn read_once(
    store: &dyn StateStore,
    at: &SyncLocation,
    bits: u8,
    index: usize,
    listed: Option<&[Listed]>,
) -> Result<Read, SyncStateError> {
    let key = at.shard_key(bits, index);
    let Some(v) = store.get_versioned(&at.bucket, &key).await? else {
        return Ok(Read::Done(View::default()));
    };
    let mut version = Version {
        base: Some(v.etag),
        base_bytes: v.body.len() as u64,
        ..Version::default()
    };
    let unreadable = |key: String, reason: String| SyncStateError::Unreadable {
        bucket: at.bucket.clone(),
        key,
        reason,
    };
    let damaged = |mut version: Version, key: &str, reason: &str| {
        tracing::warn!(bucket = %at.bucket, %key, %reason, "sync-state shard is corrupt: its rows are treated as new, and the next save replaces it");
        version.damaged = true;
        version.generation = None;
        Read::Done(View {
            entries: Entries::default(),
            version,
        })
    };
    let base = match codec::decode_base(&v.body, bits, index) {
        Ok(base) => base,
        Err(DecodeError::Corrupt(reason)) => return Ok(damaged(version, &key, &reason)),
        Err(DecodeError::UnknownFormat(reason)) => return Err(unreadable(key, reason)),
    };
    drop(v.body);
    version.generation = base.generation;
    let Some(generation) = base.generation else {
        return Ok(Read::Done(View {
            entries: base.entries,
            version,
        }));
    };
    // Listed: the generation's deltas are known, and read a few at a time, in order.
    let mut prefetched = match listed {
        Some(listed) => {
            use futures_util::stream::{self, StreamExt, TryStreamExt};
            let wanted: Vec<(String, String)> = (0..=MAX_DELTAS_READ)
                .map_while(|seq| {
                    let key = at.delta_key(bits, index, generation, seq);
                    let i = listed.binary_search_by(|l| l.key.as_str().cmp(&key)).ok()?;
                    Some((key, listed[i].etag.clone()))
                })
                .collect();
            let bucket = at.bucket.as_str();
            let bodies: Vec<_> = stream::iter(wanted)
                .map(|(key, etag)| async move { store.get_listed(bucket, &key, &etag).await })
                .buffered(DELTA_READS)
                .try_collect()
                .await?;
            Some(bodies.into_iter())
        }
        None => None,
    };
    let mut changed: Option<Entries> = None;
    loop {
        let seq = version.deltas;
        let dkey = at.delta_key(bits, index, generation, seq);
        if seq >= MAX_DELTAS_READ {
            return Ok(damaged(
                version,
                &dkey,
                "more deltas than this release ever writes",
            ));
        }
        let found = match prefetched.as_mut() {
            Some(bodies) => match bodies.next() {
                Some(Some(d)) => Some(d),
                // Listed, and gone since: a compaction folded it.
                Some(None) => return Ok(Read::Gone),
                None => None,
            },
            None => store.get_versioned(&at.bucket, &dkey).await?,
        };
        let Some(d) = found else {
            break;
        };
        version.deltas += 1;
        version.delta_bytes += d.body.len() as u64;
        match codec::decode_delta(&d.body, bits, index, generation, seq) {
            Ok(delta) => {
                changed = Some(match changed {
                    None => delta.entries,
                    Some(older) => overlay(&older, &delta.entries, true),
                });
                if delta.last {
                    version.closed = true;
                    break;
                }
            }
            Err(DecodeError::Corrupt(reason)) => return Ok(damaged(version, &dkey, &reason)),
            Err(DecodeError::UnknownFormat(reason)) => return Err(unreadable(dkey, reason)),
        }
    }
    let entries = match changed {
        Some(changed) => overlay(&base.entries, &changed, false),
        None => base.entries,
    };
    let probed = listed.is_none() && !version.closed;
    let view = View { entries, version };
    Ok(if probed {
        Read::Recheck(view)
    } else {
        Read::Done(view)
    })
}

/// Whether the base at `key` still has ETag `etag`: a conditional read, a 304 without a body.
async fn base_still(
    store: &dyn StateStore,
    at: &SyncLocation,
    key: &str,
    etag: Option<&str>,
) -> Result<bool, SyncStateError> {
    let now = store
        .get_if_changed(&at.bucket, key, etag, usize::MAX)
        .await?;
    Ok(etag.is_some() && now == Fetched::Unchanged)
}

/// `lower` with `upper`'s entries over it (both sorted). A fingerprint 0 in `upper` removes the
/// key; with `keep_removed` the removal is kept as an entry (deltas folded into one).
fn overlay(lower: &Entries, upper: &Entries, keep_removed: bool) -> Entries {
    let mut out = Entries::with_capacity(lower.len() + upper.len());
    let (mut l, mut u) = (0, 0);
    while l < lower.len() || u < upper.len() {
        let (lk, uk) = (lower.keys.get(l), upper.keys.get(u));
        match (lk, uk) {
            (Some(a), b) if b.is_none_or(|b| a < b) => {
                out.push(*a, lower.fps[l], lower.ids.get(l));
                l += 1;
            }
            (a, Some(b)) => {
                // An id is its key's preimage: keep whichever side has it.
                let lower_id = (a == Some(b)).then(|| lower.ids.get(l)).flatten();
                if a == Some(b) {
                    l += 1;
                }
                let fp = upper.fps[u];
                if fp != 0 {
                    out.push(*b, fp, upper.ids.get(u).or(lower_id));
                } else if keep_removed {
                    out.push(*b, 0, None);
                }
                u += 1;
            }
            _ => break,
        }
    }
    out
}

/// A fresh generation for a rewritten base: random, so that no delta left behind by an earlier
/// base (a delete that failed, a writer that lost a race) can ever be read as following it.
fn new_generation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.finish()
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
    /// Bases written (whole shards: a shard's first save, or a compaction).
    pub shards_written: u64,
    /// Deltas written (only the entries a save changed).
    pub deltas_written: u64,
    /// Bytes of bases and deltas written.
    pub bytes_written: u64,
    /// Keys stored after the save, across the shards it read whole (a prepared run's delta does
    /// not read the shard whole, and is not counted).
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

/// Reads shard `index` for this run (see [`read_view`]; `listing`, when given, lists every
/// shard's deltas), counting what was read.
pub(crate) async fn load_shard(
    state: &SyncState,
    index: usize,
    listing: Option<&[Listed]>,
) -> Result<Shard, SyncStateError> {
    let (at, bits) = (&state.location, state.shard_bits);
    let listed = listing.map(|l| listed_for(l, at, bits, index));
    let view = read_view(state.store.as_ref(), at, bits, index, listed).await?;
    let c = &state.counters;
    let v = &view.version;
    if v.base.is_some() {
        c.shards_loaded.fetch_add(1, Ordering::Relaxed);
        c.bytes_loaded
            .fetch_add(v.base_bytes + v.delta_bytes, Ordering::Relaxed);
        c.keys_loaded
            .fetch_add(view.entries.len() as u64, Ordering::Relaxed);
    }
    if v.damaged {
        c.shards_discarded.fetch_add(1, Ordering::Relaxed);
    }
    Ok(Shard::new(
        view.entries,
        view.version,
        state.options.full_resync,
    ))
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
                report.deltas_written += r.deltas_written;
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

/// Merges this run's changes into one shard and stores what changed, until the compare-and-swap
/// holds.
///
/// What is stored is usually a **delta**: only the entries the merge changed, created
/// `If-None-Match: *` as the shard's next delta number, so a save costs what the run changed, not
/// the shard's size. Two writers racing for one number: one wins, the other reads the winner's
/// delta, merges again with the same rules, and tries the next number.
///
/// Every [`MAX_DELTAS`] deltas (or once they would outweigh half the base) the save **compacts**
/// instead, in two steps:
/// 1. it writes its delta as the **last** of the generation (the same race for the number): no
///    delta can follow it, so the deltas are now fixed and every writer that comes later knows a
///    compaction started;
/// 2. it writes the whole merged shard as a new base, `If-Match` the base it read, under a new
///    random generation, then deletes the folded deltas.
///
/// A writer that finds the generation closed does step 2 itself (the compaction may have stopped
/// half way); two doing it race on the base's ETag, and both fold the same fixed deltas. A
/// shard's first save, and one over a format 1/2 or damaged base, writes a base directly.
///
/// Deletion of folded deltas means a writer holding an older base could create a delta number
/// that was just deleted, which nobody reads. So after writing a delta the save checks that the
/// base is still the one the delta follows (a conditional read, 304 without a body), and
/// otherwise reads the shard again and merges again (a no-op if its delta was folded in).
///
/// The first attempt merges into the shard as this run holds it, at the version it was read or
/// last saved at. A prepared shard holds only the stored entries of the keys the part may send:
/// enough for a delta (which only concerns those keys), so a prepared run's save reads nothing
/// unless it loses a race or must compact; then it reads the whole shard (from the warm cache
/// when unchanged) and merges into that. With the entries kept as `loaded`, the merge rules are
/// the same either way.
async fn save_shard(state: &SyncState, index: usize) -> Result<SaveReport, SyncStateError> {
    let (at, bits) = (&state.location, state.shard_bits);
    let base_key = at.shard_key(bits, index);
    let mut report = SaveReport::default();
    // Snapshot under the lock; the classify thread may go on while we write. A prepared shard
    // holds the stored entries of the keys this part may send, as of the join: enough to say
    // what a delta must hold (it only concerns those keys), not to rewrite the whole shard.
    let (changes, mut merged, mut version) = {
        let slot = state.lock(index);
        let Some(shard) = slot.as_ref() else {
            return Ok(report);
        };
        let changes = shard.changes();
        let merged = merge_into(&shard.keys, &shard.fps, &shard.ids, &changes);
        (changes, merged, shard.version.clone())
    };
    // `fresh`: the merge is against the shard as just read, not as loaded earlier in the run.
    // `whole`: the merge holds every stored entry (a compaction may write it as the base).
    let (mut fresh, mut whole) = (false, !state.is_prepared());
    let mut permit = None;
    for _ in 0..CAS_ATTEMPTS {
        report.conflicts_dropped = merged.conflicts;
        if merged.delta.is_empty() {
            if fresh {
                // Nothing to store: the shard already holds what this run delivered.
                commit(state, index, merged.entries, version, &changes);
                return Ok(report);
            }
            // Nothing to write against what was loaded (the run delivered what was stored):
            // still checked against what is stored now, since another writer may have replaced
            // those entries meanwhile and the merge rules then drop them.
        } else {
            match store(state, index, &merged, &version, whole, &mut report).await? {
                Stored::At(stored) => {
                    commit(state, index, merged.entries, stored, &changes);
                    return Ok(report);
                }
                Stored::Lost => report.cas_retries += 1,
                Stored::NeedsWhole => {}
            }
        }
        if permit.is_none() {
            // Closed only when the state is dropped, which cannot happen during its own save.
            permit = state.whole_reads.acquire().await.ok();
        }
        let view = read_view(state.store.as_ref(), at, bits, index, None).await?;
        merged = merge_into(
            &view.entries.keys,
            &view.entries.fps,
            &view.entries.ids,
            &changes,
        );
        (version, fresh, whole) = (view.version, true, true);
    }
    Err(SyncStateError::Contended {
        bucket: at.bucket.clone(),
        key: base_key,
        attempts: CAS_ATTEMPTS,
    })
}

/// What one attempt at storing a merge did.
enum Stored {
    /// Stored: the shard is now at this version.
    At(Version),
    /// Another writer got there first: read again, merge again.
    Lost,
    /// The shard needs a new base, which a merge over part of the entries cannot give: read the
    /// whole shard and merge again.
    NeedsWhole,
}

/// One attempt at storing `merged` over the shard at `version`: a delta, or (with `whole`, the
/// merge holding every stored entry) a new base.
async fn store(
    state: &SyncState,
    index: usize,
    merged: &Merged,
    version: &Version,
    whole: bool,
    report: &mut SaveReport,
) -> Result<Stored, SyncStateError> {
    let (at, bits, store) = (&state.location, state.shard_bits, state.store.as_ref());
    let base_key = at.shard_key(bits, index);
    // A generation still open: the next delta number can be raced for.
    let open = version
        .generation
        .filter(|_| !version.damaged && !version.closed);
    let mut folded = version.deltas;
    if open.is_none() && !whole {
        return Ok(Stored::NeedsWhole);
    }
    if let Some(generation) = open {
        let seq = version.deltas;
        let delta = |last| codec::encode_delta(bits, index, generation, seq, last, &merged.delta);
        let body = delta(false);
        let outweighs = 2 * (version.delta_bytes + body.len() as u64) > version.base_bytes;
        let last = seq + 1 >= MAX_DELTAS || outweighs;
        if last && !whole {
            return Ok(Stored::NeedsWhole);
        }
        let body = if last { delta(true) } else { body };
        let len = body.len() as u64;
        let key = at.delta_key(bits, index, generation, seq);
        if store
            .put_if(&at.bucket, &key, body, Expect::Absent)
            .await?
            .is_none()
        {
            return Ok(Stored::Lost);
        }
        report.deltas_written += 1;
        report.bytes_written += len;
        if !last {
            // Written; but if the base was replaced meanwhile, the compaction that replaced it
            // may not have folded this delta in, and nobody reads it now.
            if !base_still(store, at, &base_key, version.base.as_deref()).await? {
                return Ok(Stored::Lost);
            }
            if whole {
                report.keys_stored = merged.entries.len() as u64;
            }
            return Ok(Stored::At(Version {
                deltas: seq + 1,
                delta_bytes: version.delta_bytes + len,
                ..version.clone()
            }));
        }
        // Closed with our delta in it: on to the base.
        folded = seq + 1;
    }
    let generation = new_generation();
    let body = codec::encode(bits, index, generation, &merged.entries);
    let len = body.len() as u64;
    let Some(etag) = store
        .put_if(&at.bucket, &base_key, body, version.condition())
        .await?
    else {
        // Another writer finished the compaction first (with our last delta, if we wrote one).
        return Ok(Stored::Lost);
    };
    report.shards_written += 1;
    report.bytes_written += len;
    report.keys_stored = merged.entries.len() as u64;
    // The deltas folded in are read by nobody now: remove them (one left behind is harmless,
    // no base of another generation reads it).
    if let (Some(old), false) = (version.generation, version.damaged) {
        let deletes = (0..folded).map(|seq| {
            let key = at.delta_key(bits, index, old, seq);
            async move {
                if let Err(e) = store.delete(&at.bucket, &key).await {
                    tracing::debug!(%key, error = %e, "a folded sync-state delta was not deleted");
                }
            }
        });
        futures_util::future::join_all(deletes).await;
    }
    Ok(Stored::At(Version {
        base: Some(etag),
        generation: Some(generation),
        base_bytes: len,
        ..Version::default()
    }))
}

/// Adopts what was stored. A prepared shard keeps its part of it: the entries of the keys it
/// held or changed, as now stored (a key dropped in a conflict is gone), without their ids.
fn commit(
    state: &SyncState,
    index: usize,
    stored: Entries,
    version: Version,
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
        shard.commit(Entries::unnamed(kept_keys, kept_fps), version, changes);
    } else {
        shard.commit(stored, version, changes);
    }
}
