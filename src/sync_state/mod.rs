//! Sync state: which payload MoEngage last accepted for each key, so a re-exported snapshot sends
//! only what changed (`SYNC_MODE` upsert / insert / update, `FULL_RESYNC`).
//!
//! Takes each keyed row's key and fingerprint; gives a verdict (send, or unchanged) and, once
//! MoEngage accepted a body, records its rows.
//!
//! ```text
//! first pass:     ResolvedMapping::identify → Fingerprinter::print_cells → PrintSpool → SyncState::prepare
//! decode thread:  encode row → carry_over, else classify_row → send or count unchanged
//! async loop:     batch accepted → SyncState::record_delivered(its prints) … end → SyncState::save
//! ```
//!
//! Per key the state keeps a 64-bit key hash and a 64-bit fingerprint of the row's mapped cells
//! (seeded with the mapping, so a mapping change makes every row "changed" once; states that hold
//! the encoded element's fingerprint instead are carried over, [`SyncState::carry_over`]): with the
//! user's `customer_id` (so mirror mode can name it), ~32 bytes at rest, in `2^shard_bits` shards
//! addressed by the key hash's top bits, under `{STATE_PREFIX}sync/{workspace}/{object_type}/`.
//! Shards load on first use; a save writes only what it changed, as a delta beside the shard's
//! base, with compare-and-swap, and rewrites the base every 64 deltas; see `docs/sync-state.md` for
//! the layout and the guarantees.
//!
//! The one promise everything here keeps: **an entry says "MoEngage accepted this payload for this
//! key" only if it did.** Entries change only through `record_delivered`; anything uncertain (a
//! concurrent writer delivering another payload for the same key, a corrupt shard, a save that
//! cannot win its compare-and-swap) drops or leaves out the entry, which costs one resend, never a
//! lost update.

pub mod codec;
mod fingerprint;
mod shard;
mod store;
pub mod verdicts;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::model::ElementKind;
use crate::model::{ObjectType, SyncMode};
use crate::state::{StateError, StateStore};

pub use codec::shard_of;
pub use fingerprint::{
    customer_id_of, customer_ids_in, mapping_fingerprint, Fingerprinter, RowPrint,
    UPDATE_EXISTING_ONLY_SUFFIX,
};
pub use shard::Verdict;
pub use store::{SaveReport, SyncLocation};

use codec::Entries;
use shard::Shard;
use verdicts::{Decisions, Spooled};

/// 256 shards: ~125 KB each at 1M keys, ~1.25 MB at 10M (12-character ids); a small export touches few of them.
pub const DEFAULT_SHARD_BITS: u8 = 8;
/// 65,536 shards: beyond that a shard's 32-byte frame outweighs small states.
pub const MAX_SHARD_BITS: u8 = 16;

/// How the state is used for one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncOptions {
    pub mode: SyncMode,
    /// `FULL_RESYNC`: every row is `New`; entries of keys this run sends are replaced by what is
    /// accepted (or forgotten when nothing is); keys the export does not hold keep their entries.
    pub full_resync: bool,
    /// Shards for a scope that has no manifest yet; an existing manifest's value wins.
    pub shard_bits: u8,
}

impl SyncOptions {
    pub fn new(mode: SyncMode, full_resync: bool) -> Self {
        SyncOptions {
            mode,
            full_resync,
            shard_bits: DEFAULT_SHARD_BITS,
        }
    }
}

/// What to do with one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The key already occurred in this object (count it; the last occurrence wins).
    pub duplicate: bool,
    /// Send the row; otherwise count it `rows_unchanged`.
    pub send: bool,
}

/// Whether a row with `verdict` is sent under `mode`.
///
/// | kind     | mode           | New            | Changed | Unchanged |
/// |----------|----------------|----------------|---------|-----------|
/// | customer | upsert, update | send           | send    | skip      |
/// | customer | insert         | send           | skip    | skip      |
/// | event    | any            | send once      | skip    | skip      |
///
/// `update` sends `New` too: a key this state never delivered may well exist in MoEngage, and
/// `update_existing_only` makes MoEngage ignore it if not. Events are append-only in MoEngage — a
/// resent event is a second event — so an event id is sent once, and a repeated event id within an
/// object is not sent again.
pub fn should_send(mode: SyncMode, kind: ElementKind, verdict: Verdict, duplicate: bool) -> bool {
    match (kind, verdict) {
        (_, Verdict::Unchanged) => false,
        (ElementKind::Event, Verdict::New) => !duplicate,
        (ElementKind::Event, Verdict::Changed) => false,
        (ElementKind::Customer, Verdict::New) => true,
        (ElementKind::Customer, Verdict::Changed) => mode != SyncMode::Insert,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncStateError {
    #[error(transparent)]
    Store(#[from] StateError),
    /// A manifest or shard this release cannot read safely; nothing is overwritten.
    #[error("sync state s3://{bucket}/{key}: {reason}")]
    Unreadable {
        bucket: String,
        key: String,
        reason: String,
    },
    /// Other writers kept winning the compare-and-swap; this run's deliveries to the shard stay
    /// unrecorded (sent again next run) and `save` may be called again.
    #[error("sync state s3://{bucket}/{key}: still changing under concurrent writers after {attempts} attempts")]
    Contended {
        bucket: String,
        key: String,
        attempts: u32,
    },
}

/// Counters for the run report and the benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub shards_loaded: u64,
    pub bytes_loaded: u64,
    pub keys_loaded: u64,
    /// Shards whose bytes failed verification and were treated as empty (everything in them resent).
    pub shards_discarded: u64,
    /// Prints passed to `record_delivered` for keys this state never classified as sent (ignored).
    pub prints_ignored: u64,
    /// Rows found unchanged by their element fingerprint, stored by a release before cell
    /// fingerprints, and recorded again under their cell fingerprint ([`SyncState::carry_over`]).
    pub carried_over: u64,
}

#[derive(Default)]
struct Counters {
    shards_loaded: AtomicU64,
    bytes_loaded: AtomicU64,
    keys_loaded: AtomicU64,
    shards_discarded: AtomicU64,
    prints_ignored: AtomicU64,
    carried_over: AtomicU64,
}

/// The sync state of one scope for one object's run. Share it as `Arc<SyncState>`: the decode
/// thread classifies, the async loop records and saves. Each shard has its own lock, held for
/// one lookup at a time and never across an await.
pub struct SyncState {
    /// Where shards are read and written (S3; a fake in tests).
    store: Arc<dyn StateStore>,
    location: SyncLocation,
    options: SyncOptions,
    /// From the manifest when it exists, else `options.shard_bits`.
    shard_bits: u8,
    /// `None` until the shard is first needed.
    shards: Box<[Mutex<Option<Shard>>]>,
    /// Runs lazy shard loads for `classify`, which is called from a blocking thread.
    runtime: tokio::runtime::Handle,
    /// The manifest exists in the store (read at open or written by the first save).
    manifest_stored: AtomicBool,
    /// Set by [`SyncState::prepare`]: every row's verdict, decided shard by shard. Shards then
    /// hold only what a save needs (the stored entries of keys this part may send).
    prepared: OnceLock<Decisions>,
    counters: Counters,
    /// Saves holding a whole shard beyond what the run holds (read to compact, or after a lost
    /// race): a few at a time, so that a large state's shards (12 MB each at 100M keys, three
    /// copies while merged and encoded) cannot pile up in memory, 16 saves at once.
    whole_reads: tokio::sync::Semaphore,
}

/// One shard's users that a snapshot no longer holds ([`SyncState::absent_users`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AbsentUsers {
    /// Entries with a customer id (users this state can name).
    pub named: u64,
    /// Entries without one that the snapshot lacks: events, or users stored before ids were.
    pub unnamed_absent: u64,
    /// Each named user the snapshot lacks.
    pub users: Vec<AbsentUser>,
}

/// A user in the state that a snapshot lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbsentUser {
    pub key: u64,
    /// Its entry's fingerprint (what a dead-lettered deletion's note seals).
    pub fingerprint: u64,
    /// Its customer id as it appears in the element (JSON-escaped, unquoted).
    pub id: Box<[u8]>,
}

/// What [`SyncState::prepare`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrepareStats {
    /// Keyed rows classified.
    pub rows: u64,
    /// Shards read (those holding at least one of the part's keys).
    pub shards_read: u64,
    /// Stored entries kept for the save (keys this part may send that the state holds).
    pub entries_kept: u64,
}

impl SyncState {
    /// Opens the state at `location`: reads the manifest (one GET), no shard yet. Call from async
    /// code: the runtime it runs on serves the lazy loads of `classify`.
    ///
    /// Without a manifest the scope has no shard either (a save writes the manifest first), so every
    /// shard starts empty and nothing is fetched. Should another run create the state meanwhile,
    /// this run sends more than needed and its save merges (`If-None-Match: *` fails, re-read, merge).
    pub async fn open(
        store: Arc<dyn StateStore>,
        location: SyncLocation,
        options: SyncOptions,
    ) -> Result<Self, SyncStateError> {
        let manifest = store::read_manifest(store.as_ref(), &location).await?;
        let shard_bits = manifest.map_or(options.shard_bits.min(MAX_SHARD_BITS), |m| m.shard_bits);
        let empty = || {
            Shard::new(
                Entries::default(),
                shard::Version::default(),
                options.full_resync,
            )
        };
        let shards = (0..1usize << shard_bits)
            .map(|_| Mutex::new(manifest.is_none().then(empty)))
            .collect();
        Ok(SyncState {
            store,
            location,
            options,
            shard_bits,
            shards,
            runtime: tokio::runtime::Handle::current(),
            manifest_stored: AtomicBool::new(manifest.is_some()),
            prepared: OnceLock::new(),
            counters: Counters::default(),
            whole_reads: tokio::sync::Semaphore::new(store::WHOLE_READS),
        })
    }

    pub fn location(&self) -> &SyncLocation {
        &self.location
    }

    pub fn shard_bits(&self) -> u8 {
        self.shard_bits
    }

    /// Whether this scope has any stored state (a manifest); without it there is no shard to load.
    pub fn has_stored_state(&self) -> bool {
        self.manifest_stored.load(Ordering::Acquire)
    }

    /// Loads every shard not loaded yet, `concurrency` at a time. Optional: it trades memory (the
    /// whole state) for not waiting on one GET per shard on the decode thread.
    pub async fn prefetch(&self, concurrency: usize) -> Result<(), SyncStateError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let missing: Vec<usize> = (0..self.shards.len())
            .filter(|&i| self.lock(i).is_none())
            .collect();
        stream::iter(missing)
            .map(|i| async move {
                let shard = self.load(i).await?;
                self.lock(i).get_or_insert(shard);
                Ok::<_, SyncStateError>(())
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    /// Classifies a whole part in bounded memory, before its rows are sent: `spooled` holds the
    /// prints of its keyed rows (the first pass), joined here with the stored state one shard at a
    /// time, `concurrency` shards read at once. Afterwards [`SyncState::classify_row`] answers from
    /// the verdicts kept (4 bits a row) and each shard keeps only the stored entries of keys the
    /// part may send, which is what a save merges against; memory no longer grows with the
    /// state. Call once, before the first `classify`, from async code.
    pub async fn prepare(
        &self,
        spooled: &Spooled,
        concurrency: usize,
    ) -> Result<PrepareStats, SyncStateError> {
        use futures_util::stream::{self, StreamExt};
        let mut stats = PrepareStats::default();
        let Some((first, last)) = spooled.row_range() else {
            let _ = self.prepared.set(Decisions::default());
            for i in 0..self.shards.len() {
                self.lock(i).get_or_insert_with(|| self.empty_shard());
            }
            return Ok(stats);
        };
        if spooled.shard_bits() != self.shard_bits {
            return Err(SyncStateError::Unreadable {
                bucket: self.location.bucket.clone(),
                key: self.location.manifest_key(),
                reason: format!(
                    "the prints were spooled for {} shard bits, the state has {}",
                    spooled.shard_bits(),
                    self.shard_bits
                ),
            });
        }
        let mut decisions = Decisions::new(first, last);
        let (mode, full) = (self.options.mode, self.options.full_resync);
        let spool_error = |e: std::io::Error| SyncStateError::Unreadable {
            bucket: self.location.bucket.clone(),
            key: self.location.root.clone(),
            reason: format!("the part's spooled prints could not be read back from /tmp: {e}"),
        };
        // Every shard's deltas in one listing (a few requests), so that each shard's read is its
        // base, and only the deltas the warm cache lacks. Should it fail (over `MAX_LISTED`: a
        // state of 2^11 shards or more), each shard read lists its own; a real S3 error then
        // shows there, with its key.
        let listing = self
            .store
            .list(
                &self.location.bucket,
                &self.location.deltas_root(self.shard_bits),
            )
            .await
            .ok()
            .flatten();
        let listing = listing.as_deref();
        // Shards in order, `concurrency` reads ahead; each is joined and dropped before the next.
        let mut joined = stream::iter(0..self.shards.len())
            .map(|i| async move {
                let entries = spooled.shard(i).map_err(spool_error)?;
                let resident = self.lock(i).take();
                let shard = match resident {
                    Some(resident) => resident,
                    None if entries.is_empty() => self.empty_shard(),
                    None => store::load_shard(self, i, listing).await?,
                };
                Ok::<_, SyncStateError>((i, shard, entries))
            })
            .buffered(concurrency.max(1));
        while let Some(next) = joined.next().await {
            let (i, mut shard, entries) = next?;
            if !entries.is_empty() {
                stats.shards_read += 1;
            }
            // In row order, as the in-memory path meets them: a key's first occurrence first.
            let mut kept = Vec::new();
            for e in &entries {
                let kind = e.kind();
                let policy = |verdict, duplicate| should_send(mode, kind, verdict, duplicate);
                let (verdict, duplicate, send) = shard.classify(e.key, e.fingerprint, None, policy);
                decisions.set(e.row(), verdict, duplicate);
                stats.rows += 1;
                if send {
                    if let Some(p) = shard.position(e.key) {
                        kept.push((e.key, shard.fps[p]));
                    }
                }
            }
            kept.sort_unstable_by_key(|&(key, _)| key);
            kept.dedup_by_key(|&mut (key, _)| key);
            stats.entries_kept += kept.len() as u64;
            let kept = Entries::unnamed(
                kept.iter().map(|&(key, _)| key).collect(),
                kept.iter().map(|&(_, fp)| fp).collect(),
            );
            *self.lock(i) = Some(Shard::new(kept, std::mem::take(&mut shard.version), full));
        }
        let _ = self.prepared.set(decisions);
        Ok(stats)
    }

    /// Decides what to do with one keyed row (row number `row` of the object) and notes the
    /// occurrence. After [`SyncState::prepare`] the verdict is the one decided there. Otherwise
    /// it is looked up, which is blocking: on a shard's first use it waits for the shard's GET, so
    /// call it from the decode thread (a blocking thread), never from async code. Rows without a
    /// key (events without an event id) skip `classify` and are always sent.
    ///
    /// `id` is a user row's `customer_id` as it appears in the element: stored beside the entry
    /// once MoEngage accepts the row, so mirror mode can delete the user by name.
    pub fn classify_row(
        &self,
        kind: ElementKind,
        row: u64,
        print: RowPrint,
        id: Option<&[u8]>,
    ) -> Result<Decision, SyncStateError> {
        let (mode, full) = (self.options.mode, self.options.full_resync);
        let decided = self.prepared.get().and_then(|d| d.get(row));
        self.with_shard(shard_of(print.key, self.shard_bits), |shard| {
            let policy = |verdict, duplicate| should_send(mode, kind, verdict, duplicate);
            let (verdict, duplicate, send) = match decided {
                Some((verdict, duplicate)) => {
                    // The first pass keys rows without mapping them, so an event id's earlier
                    // occurrence may be a row the sending pass rejected. None of them sent: this
                    // one is the first, and is sent (events are sent once, the first valid time).
                    let duplicate = duplicate
                        && !(kind == ElementKind::Event
                            && verdict == Verdict::New
                            && !shard.sent_in_run(print.key));
                    let send = policy(verdict, duplicate);
                    shard.note(print.key, print.fingerprint, id, send);
                    (verdict, duplicate, send)
                }
                // Unprepared, or a row the first pass did not see keyed: looked up (against a
                // prepared shard's kept entries, a key it lacks is new: sent, never skipped).
                None => shard.classify(print.key, print.fingerprint, id, policy),
            };
            debug_assert!(
                !full || verdict != Verdict::Changed,
                "a full resync trusts no entry"
            );
            Decision {
                verdict,
                duplicate,
                send,
            }
        })
    }

    /// For a row [`SyncState::classify_row`] would call changed or new: `true` when the state was
    /// written before cell fingerprints and holds `legacy`, the element fingerprint of the row
    /// now read, for its key. MoEngage then already has exactly this element: the row is not
    /// sent, and its cell fingerprint `print` is recorded in place of the old one (written at the
    /// next save), so that the next run recognises it in its first pass. Call it before
    /// `classify_row`, from the decode thread (it may load a shard); `id` as there.
    pub fn carry_over(
        &self,
        row: u64,
        print: RowPrint,
        legacy: u64,
        id: Option<&[u8]>,
    ) -> Result<bool, SyncStateError> {
        // A scope with nothing stored (a first run) has nothing to carry: no lookup per row.
        if !self.has_stored_state() {
            return Ok(false);
        }
        let decided = self.prepared.get().and_then(|d| d.get(row));
        if self.options.full_resync || !matches!(decided, None | Some((Verdict::Changed, false))) {
            return Ok(false);
        }
        let carried = self.with_shard(shard_of(print.key, self.shard_bits), |shard| {
            shard.carry_over(print.key, print.fingerprint, legacy, id)
        })?;
        if carried {
            self.counters.carried_over.fetch_add(1, Ordering::Relaxed);
        }
        Ok(carried)
    }

    /// Whether [`SyncState::prepare`] found row `row` unchanged, and not a repeat of a key: such
    /// a row is counted without being mapped again (the first pass mapped it; nothing of it is
    /// sent, recorded or warned about).
    pub fn prepared_unchanged(&self, row: u64) -> bool {
        self.prepared
            .get()
            .and_then(|d| d.get(row))
            .is_some_and(|(verdict, duplicate)| verdict == Verdict::Unchanged && !duplicate)
    }

    /// Whether [`SyncState::prepare`] found every row of `first..=last` unchanged, and none a
    /// repeat of a key (a row it did not see keyed counts as not unchanged).
    pub fn prepared_all_unchanged(&self, first: u64, last: u64) -> bool {
        (first..=last).all(|row| self.prepared_unchanged(row))
    }

    /// [`SyncState::classify_row`] for a row the state was not prepared for (preview, tests):
    /// always looked up.
    pub fn classify(&self, kind: ElementKind, print: RowPrint) -> Result<Decision, SyncStateError> {
        self.classify_row(kind, 0, print, None)
    }

    /// Whether [`SyncState::prepare`] ran: shards then hold only part of what is stored.
    pub(crate) fn is_prepared(&self) -> bool {
        self.prepared.get().is_some()
    }

    fn empty_shard(&self) -> Shard {
        Shard::new(
            Entries::default(),
            shard::Version::default(),
            self.options.full_resync,
        )
    }

    /// Records that MoEngage accepted the rows behind `prints` (one accepted request body's rows, in
    /// the order it accepted them). Only rows this state classified as `send` are recorded;
    /// anything else is counted in `SyncStats::prints_ignored` and ignored.
    pub fn record_delivered(&self, prints: &[RowPrint]) {
        for p in prints {
            let recorded = self
                .lock(shard_of(p.key, self.shard_bits))
                .as_mut()
                .is_some_and(|s| s.record(p.key, p.fingerprint));
            if !recorded {
                self.counters.prints_ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records that MoEngage accepted the rows behind `prints` outside a run (a redriven dead
    /// letter), loading the shards they fall in; `save` then writes them like any delivery.
    /// `id_of(key)` names the user behind a key, when known.
    pub async fn accept(
        &self,
        prints: &[RowPrint],
        id_of: impl Fn(u64) -> Option<Vec<u8>>,
    ) -> Result<(), SyncStateError> {
        for p in prints {
            let index = shard_of(p.key, self.shard_bits);
            if self.lock(index).is_none() {
                let loaded = self.load(index).await?;
                self.lock(index).get_or_insert(loaded);
            }
            if let Some(shard) = self.lock(index).as_mut() {
                shard.accept(p.key, p.fingerprint, id_of(p.key).as_deref());
            }
        }
        Ok(())
    }

    /// Mirror mode: shard `index` as stored now, and which of its users `members` (the sorted keys
    /// a snapshot holds in this shard) lacks. The shard stays loaded for [`SyncState::forget`] and
    /// `save` until [`SyncState::release`].
    pub async fn absent_users(
        &self,
        index: usize,
        members: &[u64],
    ) -> Result<AbsentUsers, SyncStateError> {
        let shard = self.load(index).await?;
        let mut absent = AbsentUsers::default();
        let mut m = 0;
        for (i, &key) in shard.keys.iter().enumerate() {
            while m < members.len() && members[m] < key {
                m += 1;
            }
            let present = members.get(m) == Some(&key);
            match shard.ids.get(i) {
                Some(id) => {
                    absent.named += 1;
                    if !present {
                        absent.users.push(AbsentUser {
                            key,
                            fingerprint: shard.fps[i],
                            id: Box::from(id),
                        });
                    }
                }
                None if !present => absent.unnamed_absent += 1,
                None => {}
            }
        }
        *self.lock(index) = Some(shard);
        Ok(absent)
    }

    /// MoEngage accepted the deletion of `key`'s user: the next save drops its entry, even if
    /// another writer delivered the key again since (MoEngage may have applied the deletion
    /// last; the next run sends the user again).
    pub fn forget(&self, key: u64) {
        if let Some(shard) = self.lock(shard_of(key, self.shard_bits)).as_mut() {
            shard.forget(key);
        }
    }

    /// Whether the state holds every key of `prints` with exactly that fingerprint (loading the
    /// shards they fall in): a dead-lettered deletion is replayed only while the user is still
    /// what it was when the deletion failed, never after the user was delivered again.
    pub async fn holds(&self, prints: &[RowPrint]) -> Result<bool, SyncStateError> {
        for p in prints {
            let index = shard_of(p.key, self.shard_bits);
            if self.lock(index).is_none() {
                let loaded = self.load(index).await?;
                self.lock(index).get_or_insert(loaded);
            }
            let held = self
                .lock(index)
                .as_ref()
                .is_some_and(|s| s.position(p.key).is_some_and(|i| s.fps[i] == p.fingerprint));
            if !held {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// MoEngage accepted the deletion of the users behind `prints` outside a pass (a redriven
    /// dead letter): each entry still holding that fingerprint is dropped by the next save.
    pub async fn forget_deleted(&self, prints: &[RowPrint]) -> Result<(), SyncStateError> {
        if self.holds(prints).await? {
            for p in prints {
                self.forget(p.key);
            }
        }
        Ok(())
    }

    /// Drops shard `index` from memory (a mirror pass goes one shard at a time).
    pub fn release(&self, index: usize) {
        *self.lock(index) = None;
    }

    /// Writes every shard with recorded deliveries (compare-and-swap, merging with concurrent
    /// writers). Safe to call repeatedly (at checkpoints, then at the end). On `Err` some shards may
    /// be saved; the rest keep their deliveries in memory for the next call.
    pub async fn save(&self) -> Result<SaveReport, SyncStateError> {
        store::save_all(self).await
    }

    pub fn stats(&self) -> SyncStats {
        let c = &self.counters;
        SyncStats {
            shards_loaded: c.shards_loaded.load(Ordering::Relaxed),
            bytes_loaded: c.bytes_loaded.load(Ordering::Relaxed),
            keys_loaded: c.keys_loaded.load(Ordering::Relaxed),
            shards_discarded: c.shards_discarded.load(Ordering::Relaxed),
            prints_ignored: c.prints_ignored.load(Ordering::Relaxed),
            carried_over: c.carried_over.load(Ordering::Relaxed),
        }
    }

    /// Heap bytes held by loaded shards (entries, run bits, run table) and prepared verdicts.
    pub fn heap_bytes(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).as_ref().map_or(0, Shard::heap_bytes))
            .sum::<usize>()
            + self.prepared.get().map_or(0, Decisions::heap_bytes)
    }

    fn with_shard<T>(
        &self,
        index: usize,
        f: impl FnOnce(&mut Shard) -> T,
    ) -> Result<T, SyncStateError> {
        let mut slot = self.lock(index);
        loop {
            if let Some(shard) = slot.as_mut() {
                return Ok(f(shard));
            }
            // Not across the GET: other shards stay usable, and a racing loader simply loses.
            drop(slot);
            let loaded = self.runtime.block_on(self.load(index))?;
            slot = self.lock(index);
            slot.get_or_insert(loaded);
        }
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Option<Shard>> {
        // Poisoning would mean a panic inside one of the short sections above, none of which leaves
        // a shard half-updated (each update is a single assignment), so the data is still usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn load(&self, index: usize) -> Result<Shard, SyncStateError> {
        store::load_shard(self, index, None).await
    }
}

impl std::fmt::Debug for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncState")
            .field("location", &self.location)
            .field("options", &self.options)
            .field("shard_bits", &self.shard_bits)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The state's scope for a workspace and object type: `{workspace}/{object_type}`.
pub fn scope(workspace_id: &str, object_type: ObjectType) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    const SAFE: percent_encoding::AsciiSet =
        NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');
    format!(
        "{}/{}",
        utf8_percent_encode(workspace_id, &SAFE),
        object_type.as_str()
    )
}

#[cfg(test)]
mod tests;
