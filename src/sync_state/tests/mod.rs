//! Unit tests against an in-memory `StateStore` with S3's ETag semantics. The decode thread's side
//! (`classify`, which may block on a shard load) runs on the test thread; saves run on a runtime.

// What a row is sent for: the mode table, duplicates, FULL_RESYNC, mappings, fingerprints.
mod verdicts;
// What is stored and how: compare-and-swap merges, shard bytes, layout, loading.
mod persistence;
// The bounded-memory path (prepare, then classify_row) against the in-memory one.
mod prepared;

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
}

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
        if self.always_conflict && key.contains("/shards/") {
            return Ok(None);
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
    async fn delete(&self, _: &str, key: &str) -> Result<(), StateError> {
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
    /// Everything stored, shard by shard: key hash → (fingerprint, customer id).
    fn stored_named(&self, bits: u8) -> BTreeMap<u64, (u64, Option<String>)> {
        let mut all = BTreeMap::new();
        for i in 0..1usize << bits {
            if let Some(body) = self.store.body(&self.location.shard_key(bits, i)) {
                let e = codec::decode(&body, bits, i).unwrap();
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
            if let Some(body) = self.store.body(&self.location.shard_key(bits, i)) {
                let e = codec::decode(&body, bits, i).unwrap();
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
