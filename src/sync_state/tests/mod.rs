//! Unit tests against an in-memory `StateStore` with S3's ETag semantics. The decode thread's side
//! (`classify`, which may block on a shard load) runs on the test thread; saves run on a runtime.

// What a row is sent for: the mode table, duplicates, FULL_RESYNC, mappings, fingerprints.
mod verdicts;
// What is stored and how: compare-and-swap merges, shard bytes, layout, loading.
mod persistence;
// The bounded-memory path (prepare, then classify_row) against the in-memory one.
mod prepared;
// Saves as deltas, compaction, and writers racing through both.
mod deltas;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::codec::{self, DecodeError};
use super::shard::{merge, Change};
use super::*;
use crate::map::FieldMapping;
use crate::model::ElementKind;
use crate::model::{ObjectType, SyncMode};
use crate::state::{Expect, PutOutcome, StateError, StateStore, Versioned};

const BUCKET: &str = "state-bucket";
const MAPPING: u64 = 0x5eed;

/// S3 in a HashMap: ETags change on every write; `put_if` honours `Absent` / `Etag`.
#[derive(Default)]
struct MemStore {
    objects: Mutex<HashMap<String, (Vec<u8>, String)>>,
    writes: AtomicU64,
    /// Reads of shards (`get_versioned`), to check what loads lazily and what never loads.
    shard_reads: AtomicU64,
    /// Every conditional write to a key containing `/shards/` fails, as under endless contention.
    always_conflict: bool,
    /// `list` answers "cannot list", as a store without listings: deltas are probed.
    no_listing: std::sync::atomic::AtomicBool,
    /// Writes of a shard's base fail (S3 errors), while deltas go through.
    fail_base_writes: std::sync::atomic::AtomicBool,
    /// Called with the operation and key before every read, write and delete: lets a test run
    /// another writer in the middle of a save.
    hook: Mutex<Option<Hook>>,
}

type Hook = Arc<dyn Fn(&str, &str) + Send + Sync>;

impl MemStore {
    fn shared() -> Arc<MemStore> {
        Arc::new(MemStore::default())
    }
    fn write(&self, key: &str, body: Vec<u8>) -> String {
        let etag = format!("\"{}\"", self.writes.fetch_add(1, Ordering::SeqCst) + 1);
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_string(), (body, etag.clone()));
        etag
    }
    fn body(&self, key: &str) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(b, _)| b.clone())
    }
    fn before(&self, op: &str, key: &str) {
        let hook = self.hook.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook(op, key);
        }
    }
    fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.objects.lock().unwrap().keys().cloned().collect();
        k.sort();
        k
    }
}

#[async_trait]
impl StateStore for MemStore {
    async fn get(&self, _: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.body(key))
    }
    async fn put(
        &self,
        _: &str,
        key: &str,
        body: Vec<u8>,
        if_absent: bool,
    ) -> Result<PutOutcome, StateError> {
        if if_absent && self.body(key).is_some() {
            return Ok(PutOutcome::AlreadyExists);
        }
        self.write(key, body);
        Ok(PutOutcome::Written)
    }
    async fn get_versioned(&self, _: &str, key: &str) -> Result<Option<Versioned>, StateError> {
        self.before("get", key);
        if key.contains("/shards/") {
            self.shard_reads.fetch_add(1, Ordering::SeqCst);
        }
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(body, etag)| Versioned {
                body: body.clone(),
                etag: etag.clone(),
            }))
    }
    async fn put_if(
        &self,
        _: &str,
        key: &str,
        body: Vec<u8>,
        expect: Expect,
    ) -> Result<Option<String>, StateError> {
        self.before("put", key);
        if self.always_conflict && key.contains("/shards/") {
            return Ok(None);
        }
        if self.fail_base_writes.load(Ordering::SeqCst) && key.contains("/shards/") {
            return Err(StateError {
                bucket: BUCKET.into(),
                key: key.into(),
                reason: "injected failure".into(),
            });
        }
        let current = self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(_, e)| e.clone());
        let holds = match (&expect, &current) {
            (Expect::Absent, None) => true,
            (Expect::Etag(want), Some(have)) => want == have,
            _ => false,
        };
        Ok(holds.then(|| self.write(key, body)))
    }
    async fn list(
        &self,
        _: &str,
        prefix: &str,
    ) -> Result<Option<Vec<crate::state::Listed>>, StateError> {
        self.before("list", prefix);
        if self.no_listing.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let objects = self.objects.lock().unwrap();
        let mut out: Vec<crate::state::Listed> = objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (_, etag))| crate::state::Listed {
                key: k.clone(),
                etag: etag.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Some(out))
    }
    /// A conditional read (`If-None-Match`), not counted as a shard read: a 304 has no body.
    async fn get_if_changed(
        &self,
        _: &str,
        key: &str,
        known: Option<&str>,
        _: usize,
    ) -> Result<crate::state::Fetched, StateError> {
        use crate::state::Fetched;
        self.before("get", key);
        Ok(match self.objects.lock().unwrap().get(key) {
            None => Fetched::Missing,
            Some((_, etag)) if known == Some(etag.as_str()) => Fetched::Unchanged,
            Some((body, etag)) => Fetched::Changed(Versioned {
                body: body.clone(),
                etag: etag.clone(),
            }),
        })
    }
    async fn delete(&self, _: &str, key: &str) -> Result<(), StateError> {
        self.before("delete", key);
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    store: Arc<MemStore>,
    location: SyncLocation,
}

impl Harness {
    fn new() -> Self {
        Self::with_store(MemStore::shared())
    }
    fn with_store(store: Arc<MemStore>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Harness {
            rt,
            store,
            location: SyncLocation::new(
                BUCKET,
                "moengage-sync/",
                &scope("WS1", ObjectType::UserAttributes),
            ),
        }
    }
    fn open(&self, options: SyncOptions) -> SyncState {
        self.rt
            .block_on(SyncState::open(
                self.store.clone(),
                self.location.clone(),
                options,
            ))
            .unwrap()
    }
    /// One object's run: classify every row, deliver the sent rows `accept` lets through (one
    /// request per row), save. Returns the decisions.
    fn run(
        &self,
        options: SyncOptions,
        mapping: u64,
        rows: &[(&str, &str)],
        accept: impl Fn(usize) -> bool,
    ) -> Vec<Decision> {
        let state = self.open(options);
        let fp = Fingerprinter::with_mapping_fingerprint(mapping);
        let mut out = Vec::new();
        for (i, (key, payload)) in rows.iter().enumerate() {
            let p = fp.print(
                ElementKind::Customer,
                key.as_bytes(),
                &customer(key, payload),
            );
            let d = state.classify(ElementKind::Customer, p).unwrap();
            if d.send && accept(i) {
                state.record_delivered(&[p]);
            }
            out.push(d);
        }
        self.rt.block_on(state.save()).unwrap();
        out
    }
    /// Shard `i` as stored: its base with its deltas applied.
    fn view(&self, bits: u8, i: usize) -> codec::Entries {
        let view = self
            .rt
            .block_on(store::read_view(
                self.store.as_ref(),
                &self.location,
                bits,
                i,
                None,
            ))
            .unwrap();
        assert!(!view.version.damaged, "shard {i} is damaged");
        view.entries
    }
    /// Everything stored, shard by shard: key hash → (fingerprint, customer id).
    fn stored_named(&self, bits: u8) -> BTreeMap<u64, (u64, Option<String>)> {
        let mut all = BTreeMap::new();
        for i in 0..1usize << bits {
            {
                let e = self.view(bits, i);
                for (j, (k, f)) in e.keys.iter().zip(&e.fps).enumerate() {
                    let id = e
                        .ids
                        .get(j)
                        .map(|b| String::from_utf8_lossy(b).into_owned());
                    all.insert(*k, (*f, id));
                }
            }
        }
        all
    }
    /// Everything stored, shard by shard: key hash → fingerprint.
    fn stored(&self, bits: u8) -> BTreeMap<u64, u64> {
        let mut all = BTreeMap::new();
        for i in 0..1usize << bits {
            {
                let e = self.view(bits, i);
                all.extend(e.keys.into_iter().zip(e.fps));
            }
        }
        all
    }
}

fn customer(key: &str, payload: &str) -> Vec<u8> {
    format!(r#"{{"type":"customer","customer_id":"{key}","attributes":{{"p":"{payload}"}}}}"#)
        .into_bytes()
}

fn upsert() -> SyncOptions {
    SyncOptions::new(SyncMode::Upsert, false)
}

fn opts(mode: SyncMode, full_resync: bool, shard_bits: u8) -> SyncOptions {
    SyncOptions {
        mode,
        full_resync,
        shard_bits,
    }
}

fn sends(ds: &[Decision]) -> Vec<bool> {
    ds.iter().map(|d| d.send).collect()
}

fn verdicts(ds: &[Decision]) -> Vec<Verdict> {
    ds.iter().map(|d| d.verdict).collect()
}

const ALL: fn(usize) -> bool = |_| true;
