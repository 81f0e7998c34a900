//! One shard in memory: the entries as last read or written (16 bytes per key, and its id), two bits per entry
//! for this run, and a table of the keys this run sent or delivered.
//!
//! Everything here is synchronous and pure; `SyncState` does the locking and the I/O.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::codec::{Entries, Ids};
use crate::state::Expect;

/// Whether a row differs from what MoEngage last accepted for its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The key was never delivered (or `FULL_RESYNC` set its entry aside).
    New,
    /// The key was delivered with another payload (or another mapping).
    Changed,
    /// Identical to what was delivered (or to what this run already sent for the key).
    Unchanged,
}

/// This run's knowledge of one key. Fingerprints are never 0, so 0 means "none".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunEntry {
    /// The fingerprint of the latest occurrence this run decided to send: what MoEngage will hold
    /// once the queue drains, so a later duplicate is compared with it.
    pub sent: u64,
    /// The fingerprint of the latest occurrence MoEngage accepted (in acceptance order).
    pub delivered: u64,
    /// The state held a trusted entry for the key when this run first sent it: a later
    /// occurrence with another payload is `Changed`, else still `New` (whatever a mid-run save
    /// stored meanwhile).
    pub known: bool,
    /// The user's `customer_id`, kept when the shard has none stored for the key: what a save
    /// writes beside the entry, so mirror mode can name the user again. A range of the shard's
    /// `run_ids` (no allocation per row); empty when none.
    pub id: IdRef,
}

/// Where a run entry's customer id is in its shard's `run_ids`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IdRef {
    at: u32,
    len: u32,
}

/// Keys are already uniform hashes, but all keys of a shard share their top bits, which
/// hashbrown uses for its control bytes: one multiply spreads them again.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type RunTable = HashMap<u64, RunEntry, BuildHasherDefault<KeyHasher>>;

/// A fixed-size bit set, one bit per base entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    pub fn new(len: usize, set: bool) -> Self {
        let mut words = vec![if set { u64::MAX } else { 0 }; len.div_ceil(64)];
        if set && !len.is_multiple_of(64) {
            if let Some(last) = words.last_mut() {
                *last = (1u64 << (len % 64)) - 1;
            }
        }
        Bits(words)
    }
    pub fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    /// Sets bit `i`, returning whether it was set before.
    pub fn test_and_set(&mut self, i: usize) -> bool {
        match self.0.get_mut(i / 64) {
            Some(w) => {
                let was = *w & (1 << (i % 64)) != 0;
                *w |= 1 << (i % 64);
                was
            }
            None => false,
        }
    }
    fn push_at(&mut self, i: usize, value: bool) {
        if value {
            self.test_and_set(i);
        }
    }
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * 8
    }
}

/// One key's pending write: what we loaded for it and what we want it to become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub key: u64,
    /// The entry as this run last read or wrote it; `None` when absent.
    pub loaded: Option<u64>,
    /// `Some(fp)`: MoEngage accepted `fp`. `None`: forget the key (`FULL_RESYNC` sent it and it has
    /// not been accepted).
    pub ours: Option<u64>,
    /// The key's `customer_id`, when this run knows it and the shard as loaded had none.
    pub id: Option<Box<[u8]>>,
    /// MoEngage deleted the user (mirror mode): the entry goes whatever is stored now. Had another
    /// writer delivered it meanwhile, MoEngage may have applied the deletion last, so keeping
    /// their entry could claim a user MoEngage no longer holds; dropping it costs a resend.
    pub deleted: bool,
}

#[derive(Debug)]
pub(crate) struct Shard {
    /// Sorted keys as last read from or written to the store.
    pub keys: Vec<u64>,
    /// `fps[i]` is the fingerprint last delivered for `keys[i]`.
    pub fps: Vec<u64>,
    /// `ids.get(i)` is `keys[i]`'s customer id, when stored.
    pub ids: Ids,
    /// Entry `i` was classified in this run (a later occurrence is a duplicate).
    seen: Bits,
    /// Entry `i` predates a `FULL_RESYNC` run: not trusted for verdicts, dropped unless re-delivered.
    /// Empty (all clear) outside full resyncs.
    stale: Bits,
    /// Keys sent or delivered in this run; sized by what the run sends, not by the state.
    pub run: RunTable,
    /// The stored version `keys`/`fps` came from (base ETag and deltas applied); the default
    /// when the shard did not exist.
    pub version: Version,
    /// A `FULL_RESYNC` run: no entry is trusted for a verdict, not even one stored during the run
    /// (by a mid-run save, or another writer), so every first occurrence is `New`.
    full_resync: bool,
    /// The customer ids of run entries, back to back (see [`IdRef`]).
    run_ids: Vec<u8>,
    /// Keys whose users MoEngage deleted (mirror mode): the next save drops their entries.
    removed: Vec<u64>,
}

impl Shard {
    pub fn new(entries: Entries, version: Version, full_resync: bool) -> Self {
        let Entries { keys, fps, ids } = entries;
        let n = keys.len();
        Shard {
            seen: Bits::new(n, false),
            stale: if full_resync {
                Bits::new(n, true)
            } else {
                Bits::default()
            },
            keys,
            fps,
            ids,
            run: RunTable::default(),
            version,
            full_resync,
            run_ids: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// MoEngage deleted `key`'s user: the next save drops the entry as loaded.
    pub fn forget(&mut self, key: u64) {
        if self.position(key).is_some() {
            self.removed.push(key);
        }
    }

    /// Where `key` is in `keys`. Keys are uniform hashes, so interpolation lands within ~√n/2 of
    /// the spot; a gallop from there brackets it in a few neighbouring cache lines, where a plain
    /// binary search over a 10M-key state takes ~16 scattered (cache-missing) probes.
    pub fn position(&self, key: u64) -> Option<usize> {
        let keys = &self.keys;
        let (Some(&lo), Some(&hi)) = (keys.first(), keys.last()) else {
            return None;
        };
        if key < lo || key > hi {
            return None;
        }
        if keys.len() < 32 {
            return keys.binary_search(&key).ok();
        }
        let last = keys.len() - 1;
        // In range and lo < hi (keys are unique and there are ≥ 32), so the guess is in 0..=last.
        let guess = ((u128::from(key - lo) * last as u128) / u128::from(hi - lo)) as usize;
        let (mut from, mut to) = (guess, guess);
        let mut step = 1;
        if keys[guess] < key {
            while to < last && keys[to] < key {
                from = to;
                to = (to + step).min(last);
                step *= 2;
            }
        } else {
            while from > 0 && keys[from] > key {
                to = from;
                from = from.saturating_sub(step);
                step *= 2;
            }
        }
        keys[from..=to].binary_search(&key).ok().map(|i| from + i)
    }

    /// The verdict for `(key, fp)` and whether the key already occurred in this run; records the
    /// occurrence, and records `fp` as sent (with the user's `id`, if the shard lacks it) when
    /// `send(verdict, duplicate)` says so.
    pub fn classify(
        &mut self,
        key: u64,
        fp: u64,
        id: Option<&[u8]>,
        send: impl FnOnce(Verdict, bool) -> bool,
    ) -> (Verdict, bool, bool) {
        let (duplicate, known, reference) = match self.position(key) {
            Some(i) => {
                let duplicate = self.seen.test_and_set(i);
                let known = !self.full_resync && !self.stale.get(i);
                let in_run = if duplicate {
                    self.run.get(&key).filter(|e| e.sent != 0)
                } else {
                    None
                };
                match in_run {
                    // Compared with what this run queued; new or changed as the key was when the
                    // run first met it (a mid-run save may have stored it since).
                    Some(e) => (duplicate, e.known, Some(e.sent)),
                    None => (duplicate, known, known.then_some(self.fps[i])),
                }
            }
            None => match self.run.get(&key) {
                Some(e) => (true, e.known, Some(e.sent).filter(|s| *s != 0)),
                None => (false, false, None),
            },
        };
        let verdict = match reference {
            None => Verdict::New,
            Some(r) if r == fp => Verdict::Unchanged,
            // Delivered before this run: a change. Only sent earlier in this run: still new.
            Some(_) if known => Verdict::Changed,
            Some(_) => Verdict::New,
        };
        let sent = send(verdict, duplicate);
        if sent {
            self.sent(key, fp, id, known);
        }
        (verdict, duplicate, sent)
    }

    /// Notes `fp` as sent for `key`, keeping `id` when the shard has none for the key.
    fn sent(&mut self, key: u64, fp: u64, id: Option<&[u8]>, known: bool) {
        let stored_id = self
            .position(key)
            .is_some_and(|i| self.ids.get(i).is_some());
        let e = self.run.entry(key).or_insert(RunEntry {
            known,
            ..RunEntry::default()
        });
        e.sent = fp;
        let id = id.filter(|id| !id.is_empty() && id.len() <= super::codec::MAX_ID_BYTES);
        if let (0, false, Some(id)) = (e.id.len, stored_id, id) {
            if let Ok(at) = u32::try_from(self.run_ids.len()) {
                self.run_ids.extend_from_slice(id);
                e.id = IdRef {
                    at,
                    len: id.len() as u32,
                };
            }
        }
    }

    /// A run entry's customer id.
    fn run_id(&self, id: IdRef) -> Option<&[u8]> {
        let start = id.at as usize;
        (id.len > 0)
            .then(|| self.run_ids.get(start..start + id.len as usize))
            .flatten()
    }

    /// MoEngage accepted `fp` for `key`. `false` when this run never sent the key (a caller bug:
    /// the print is ignored rather than trusted).
    /// Notes a row whose verdict was decided elsewhere ([`super::SyncState::prepare`]): as
    /// `classify` does after deciding, it marks the key seen and, if sent, what was sent.
    pub fn note(&mut self, key: u64, fp: u64, id: Option<&[u8]>, sent: bool) {
        if let Some(i) = self.position(key) {
            self.seen.test_and_set(i);
        }
        if sent {
            self.sent(key, fp, id, false);
        }
    }

    pub fn record(&mut self, key: u64, fp: u64) -> bool {
        match self.run.get_mut(&key) {
            Some(e) if e.sent != 0 => {
                e.delivered = fp;
                true
            }
            _ => false,
        }
    }

    /// Whether a row of `key` was sent in this run.
    pub fn sent_in_run(&self, key: u64) -> bool {
        self.run.get(&key).is_some_and(|e| e.sent != 0)
    }

    /// Carries a state written with element fingerprints over to cell fingerprints: when `key`'s
    /// stored entry is `legacy`, the element fingerprint of the row now read, MoEngage already
    /// holds exactly that element. The row is then recorded under `fp`, its cell fingerprint, as if
    /// delivered now, and `true` says it need not be sent. Only for a key's first occurrence in
    /// the run, and never in a `FULL_RESYNC` (which trusts no stored entry).
    pub fn carry_over(&mut self, key: u64, fp: u64, legacy: u64, id: Option<&[u8]>) -> bool {
        if self.full_resync || fp == legacy || self.run.contains_key(&key) {
            return false;
        }
        let Some(i) = self.position(key) else {
            return false;
        };
        if self.seen.get(i) || self.stale.get(i) || self.fps[i] != legacy {
            return false;
        }
        self.seen.test_and_set(i);
        self.accept(key, fp, id);
        true
    }

    /// MoEngage accepted `fp` for `key` outside a run's classification (a redriven dead letter):
    /// recorded as if this run had sent and delivered it.
    pub fn accept(&mut self, key: u64, fp: u64, id: Option<&[u8]>) {
        self.sent(key, fp, id, false);
        if let Some(e) = self.run.get_mut(&key) {
            e.delivered = fp;
        }
    }

    /// What a save must write, sorted by key; empty when nothing changed.
    pub fn changes(&self) -> Vec<Change> {
        let mut out: Vec<Change> = self
            .run
            .iter()
            .filter(|(_, e)| e.delivered != 0)
            .map(|(&key, e)| Change {
                key,
                loaded: self.position(key).map(|i| self.fps[i]),
                ours: Some(e.delivered),
                id: self.run_id(e.id).map(Box::from),
                deleted: false,
            })
            .collect();
        // FULL_RESYNC: an old entry that this run sent again and MoEngage has not (yet) accepted is
        // forgotten, so the next run sends it again instead of trusting the old entry.
        for (i, &key) in self.keys.iter().enumerate() {
            if self.stale.get(i)
                && self.seen.get(i)
                && self.run.get(&key).is_none_or(|e| e.delivered == 0)
            {
                out.push(Change {
                    key,
                    loaded: Some(self.fps[i]),
                    ours: None,
                    id: None,
                    deleted: false,
                });
            }
        }
        for &key in &self.removed {
            if let Some(i) = self.position(key) {
                out.push(Change {
                    key,
                    loaded: Some(self.fps[i]),
                    ours: None,
                    id: None,
                    deleted: true,
                });
            }
        }
        out.sort_unstable_by_key(|c| c.key);
        out.dedup_by_key(|c| c.key);
        out
    }

    /// Adopts `keys`/`fps` as stored at `version`, carrying this run's bits over and clearing
    /// the deliveries that are now stored.
    pub fn commit(&mut self, entries: Entries, version: Version, changes: &[Change]) {
        let Entries { keys, fps, ids } = entries;
        let mut seen = Bits::new(keys.len(), false);
        let mut stale = if self.stale.0.is_empty() {
            Bits::default()
        } else {
            Bits::new(keys.len(), false)
        };
        let (mut old, mut ch) = (0, 0);
        for (i, &key) in keys.iter().enumerate() {
            while old < self.keys.len() && self.keys[old] < key {
                old += 1;
            }
            while ch < changes.len() && changes[ch].key < key {
                ch += 1;
            }
            let was = (old < self.keys.len() && self.keys[old] == key).then_some(old);
            let changed = ch < changes.len() && changes[ch].key == key;
            seen.push_at(
                i,
                was.is_some_and(|o| self.seen.get(o)) || self.run.contains_key(&key),
            );
            // Still stale only if nobody rewrote it: not us (a change) and not another writer.
            stale.push_at(
                i,
                was.is_some_and(|o| self.stale.get(o) && self.fps[o] == fps[i]) && !changed,
            );
        }
        for c in changes {
            if let (Some(fp), Some(e)) = (c.ours, self.run.get_mut(&c.key)) {
                if e.delivered == fp {
                    e.delivered = 0;
                }
            }
        }
        self.removed.clear();
        (self.keys, self.fps, self.ids) = (keys, fps, ids);
        (self.version, self.seen, self.stale) = (version, seen, stale);
    }

    /// Bytes this shard holds on the heap (for the peak-memory figures).
    pub fn heap_bytes(&self) -> usize {
        (self.keys.capacity() + self.fps.capacity()) * 8
            + self.ids.heap_bytes()
            + self.seen.heap_bytes()
            + self.stale.heap_bytes()
            + self.run.capacity() * (std::mem::size_of::<(u64, RunEntry)>() + 1)
            + self.run_ids.capacity()
    }
}

/// Applies `changes` to the entries `theirs` (sorted) and returns the merged entries and how many
/// keys were dropped as conflicts.
///
/// Per changed key, with `loaded` what we last read, `ours` what we want, `theirs` what is stored:
/// - `theirs == loaded`: nobody else touched it → ours.
/// - `theirs == ours`: both agree → keep.
/// - we forget it (`ours == None`) and another writer stored something new → theirs (they
///   delivered it after we read; our own send is unaccepted).
/// - otherwise both delivered different payloads concurrently and either may be the last one
///   MoEngage applied → drop the key: the next run sends it again. Keeping either could claim a
///   payload MoEngage does not hold.
#[cfg(test)]
pub(crate) fn merge(theirs: &Entries, changes: &[Change]) -> (Entries, u64) {
    let m = merge_into(&theirs.keys, &theirs.fps, &theirs.ids, changes);
    (m.entries, m.conflicts)
}

/// What [`merge_into`] made of a shard.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Merged {
    /// Every entry after the merge.
    pub entries: Entries,
    /// Only the entries the merge changed, as they are after it (fingerprint 0: removed): what a
    /// save writes as a delta.
    pub delta: Entries,
    /// Keys dropped because another writer stored another payload for them.
    pub conflicts: u64,
}

/// [`merge`] over a shard's columns as they are held, also giving what it changed.
pub(crate) fn merge_into(keys: &[u64], fps: &[u64], ids: &Ids, changes: &[Change]) -> Merged {
    let theirs = Columns { keys, fps, ids };
    let mut out = Entries::with_capacity(theirs.keys.len() + changes.len());
    let mut delta = Entries::default();
    let mut conflicts = 0;
    let (mut t, mut c) = (0, 0);
    while t < theirs.keys.len() || c < changes.len() {
        let tk = theirs.keys.get(t).copied();
        match (tk, changes.get(c)) {
            (Some(k), next) if next.is_none_or(|ch| k < ch.key) => {
                out.push(k, theirs.fps[t], theirs.ids.get(t));
                t += 1;
            }
            (_, Some(ch)) => {
                let at = (tk == Some(ch.key)).then_some(t);
                let theirs_fp = at.map(|t| theirs.fps[t]);
                let theirs_id = at.and_then(|t| theirs.ids.get(t));
                if at.is_some() {
                    t += 1;
                }
                c += 1;
                let keep = if ch.deleted {
                    if theirs_fp.is_some() && theirs_fp != ch.loaded {
                        conflicts += 1;
                    }
                    None
                } else if theirs_fp == ch.loaded {
                    ch.ours
                } else if theirs_fp == ch.ours || ch.ours.is_none() {
                    theirs_fp
                } else {
                    conflicts += 1;
                    None
                };
                match keep {
                    Some(fp) => {
                        // An id is the key's preimage, so any writer's id for it is the same id.
                        let id = theirs_id.or(ch.id.as_deref());
                        out.push(ch.key, fp, id);
                        if theirs_fp != Some(fp) || theirs_id.is_none() && id.is_some() {
                            delta.push(ch.key, fp, id);
                        }
                    }
                    None if theirs_fp.is_some() => delta.push(ch.key, 0, None),
                    None => {}
                }
            }
            _ => break,
        }
    }
    Merged {
        entries: out,
        delta,
        conflicts,
    }
}

struct Columns<'a> {
    keys: &'a [u64],
    fps: &'a [u64],
    ids: &'a Ids,
}

/// Which stored version of a shard a view is: its base and the deltas applied on top.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Version {
    /// The base's ETag; `None` when the shard has no base.
    pub base: Option<String>,
    /// The generation whose deltas follow the base; `None` for a base of format 1 or 2 (which
    /// no delta follows), no base, or a damaged one.
    pub generation: Option<u64>,
    /// Deltas applied: numbers `0..deltas`. The next save writes number `deltas`.
    pub deltas: u64,
    pub base_bytes: u64,
    pub delta_bytes: u64,
    /// The last delta read closes the generation: a compaction started (and may have stopped
    /// half way). The next save finishes it: it writes the base.
    pub closed: bool,
    /// The base or a delta could not be verified: the view is empty (its rows are sent again)
    /// and the next save rewrites the base, under a new generation.
    pub damaged: bool,
}

impl Version {
    /// The condition that replaces exactly this base.
    pub fn condition(&self) -> Expect {
        self.base.clone().map_or(Expect::Absent, Expect::Etag)
    }
}
