//! Sync-state benchmarks: classify throughput on one core, shard encode/decode speed, bytes per key
//! at rest, and peak memory (VmHWM) per scenario, each in a child process of its own.
//!
//! `cargo bench --bench sync_state` runs everything; `… -- quick` uses 100k rows instead of 1M/10M.
//! Internally, `… -- child <first|resync> <keys> <dir>` is one memory measurement.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moengage_sync::model::ElementKind;
use moengage_sync::model::SyncMode;
use moengage_sync::state::{Expect, PutOutcome, StateError, StateStore, Versioned};
use moengage_sync::sync_state::{
    codec, customer_id_of, Fingerprinter, RowPrint, SyncLocation, SyncOptions, SyncState,
};
use xxhash_rust::xxh3::xxh3_64;

const BUCKET: &str = "bench";
const MAPPING: u64 = 0x6d61_7070;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["child", scenario, keys, dir] => child(scenario, keys.parse().expect("key count"), Path::new(dir)),
        ["quick"] => run_all(100_000, &[100_000]),
        [] => run_all(1_000_000, &[1_000_000, 10_000_000]),
        other => panic!("unknown arguments {other:?}; expected none, `quick`, or `child <first|resync> <keys> <dir>`"),
    }
}

fn run_all(rows: usize, memory_keys: &[usize]) {
    println!(
        "# sync_state bench ({} rows, release build, one core for classify)",
        rows
    );
    throughput(rows);
    codec_speed();
    memory(memory_keys);
}

/// A user row as `ResolvedMapping::encode` writes it for the demo export (~140 bytes).
fn element(i: usize, version: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let plan = if (i + version).is_multiple_of(2) {
        "pro"
    } else {
        "free"
    };
    let _ = write!(
        out,
        r#"{{"type":"customer","customer_id":"user-{i:08}","attributes":{{"email":"user{i}@example.com","first_name":"Name {i}","city":"City, {}","plan":"{plan}","v":{version}}}}}"#,
        i % 7
    );
}

/// `rows` encoded elements back to back, with their end offsets.
fn corpus(rows: usize, changed_every: Option<usize>) -> (Vec<u8>, Vec<usize>) {
    let (mut all, mut ends, mut e) = (
        Vec::with_capacity(rows * 150),
        Vec::with_capacity(rows),
        Vec::new(),
    );
    for i in 0..rows {
        let version = usize::from(changed_every.is_some_and(|n| i % n == 0));
        element(i, version, &mut e);
        all.extend_from_slice(&e);
        ends.push(all.len());
    }
    (all, ends)
}

fn each<'a>(all: &'a [u8], ends: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    ends.iter().scan(0, move |start, &end| {
        let e = &all[*start..end];
        *start = end;
        Some(e)
    })
}

fn print(fp: &Fingerprinter, e: &[u8]) -> RowPrint {
    fp.print(
        ElementKind::Customer,
        customer_id_of(e).expect("customer element"),
        e,
    )
}

fn rate(label: &str, rows: usize, took: Duration) {
    let per_sec = rows as f64 / took.as_secs_f64();
    println!(
        "{label:<58} {:>7.2} M rows/s  {:>6.0} ns/row",
        per_sec / 1e6,
        took.as_nanos() as f64 / rows as f64
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn throughput(rows: usize) {
    println!("\n## classify throughput");
    let rt = runtime();
    let store = Arc::new(MemStore::default());
    let location = SyncLocation::new(BUCKET, "moengage-sync/", "WS/user_attributes");
    let open = |mode| {
        rt.block_on(SyncState::open(
            store.clone(),
            location.clone(),
            SyncOptions::new(mode, false),
        ))
        .expect("open")
    };
    let fp = Fingerprinter::with_mapping_fingerprint(MAPPING);
    let (all, ends) = corpus(rows, None);
    println!(
        "corpus: {rows} elements, {} bytes each on average",
        all.len() / rows
    );

    let t = Instant::now();
    let prints: Vec<RowPrint> = each(&all, &ends).map(|e| print(&fp, e)).collect();
    rate(
        "fingerprint (customer_id_of + key + payload hash)",
        rows,
        t.elapsed(),
    );

    // First run: every row New, then every row accepted (50 per request) and saved.
    let state = open(SyncMode::Upsert);
    let t = Instant::now();
    let sent = each(&all, &ends)
        .filter(|e| {
            state
                .classify(ElementKind::Customer, print(&fp, e))
                .expect("classify")
                .send
        })
        .count();
    rate(
        "first run: fingerprint + classify (all New)",
        rows,
        t.elapsed(),
    );
    assert_eq!(sent, rows);
    let t = Instant::now();
    for chunk in prints.chunks(50) {
        state.record_delivered(chunk);
    }
    rate(
        "first run: record_delivered (50 per call)",
        rows,
        t.elapsed(),
    );
    let t = Instant::now();
    let saved = rt.block_on(state.save()).expect("save");
    println!(
        "first run: save                                            {:>7.0} ms  ({} shards, {} bytes, {} keys)",
        t.elapsed().as_secs_f64() * 1e3,
        saved.shards_written,
        saved.bytes_written,
        saved.keys_stored
    );
    let at_rest = store.total_bytes();
    println!(
        "state at rest: {at_rest} bytes for {rows} keys = {:.3} bytes/key (manifest + 32-byte frame per shard)",
        at_rest as f64 / rows as f64
    );
    drop(state);

    // Unchanged re-sync, shards loaded lazily from the (in-memory) store on first use.
    let state = open(SyncMode::Upsert);
    let t = Instant::now();
    let sent = each(&all, &ends)
        .filter(|e| {
            state
                .classify(ElementKind::Customer, print(&fp, e))
                .expect("classify")
                .send
        })
        .count();
    rate(
        "unchanged re-sync: fingerprint + classify, lazy loads",
        rows,
        t.elapsed(),
    );
    assert_eq!(sent, 0);
    drop(state);

    // Same with the shards prefetched: classify alone.
    let state = open(SyncMode::Upsert);
    rt.block_on(state.prefetch(16)).expect("prefetch");
    let t = Instant::now();
    let sent = prints
        .iter()
        .filter(|p| {
            state
                .classify(ElementKind::Customer, **p)
                .expect("classify")
                .send
        })
        .count();
    rate(
        "unchanged re-sync: classify only (prefetched, prints ready)",
        rows,
        t.elapsed(),
    );
    assert_eq!(sent, 0);
    drop(state);

    // 1% changed.
    let (all, ends) = corpus(rows, Some(100));
    let state = open(SyncMode::Upsert);
    let t = Instant::now();
    let sent = each(&all, &ends)
        .filter(|e| {
            state
                .classify(ElementKind::Customer, print(&fp, e))
                .expect("classify")
                .send
        })
        .count();
    rate(
        "1% changed: fingerprint + classify, lazy loads",
        rows,
        t.elapsed(),
    );
    assert_eq!(sent, rows.div_ceil(100));
}

fn codec_speed() {
    println!(
        "\n## shard encode / decode (format v{})",
        codec::FORMAT_VERSION
    );
    // 1M and 10M keys over 256 shards.
    for keys in [3_906u64, 39_062] {
        let step = (1u64 << 56) / keys;
        let ks: Vec<u64> = (0..keys).map(|i| (7 << 56) + i * step).collect();
        let fs: Vec<u64> = ks.iter().map(|k| k.rotate_left(17) | 1).collect();
        // With a 12-byte customer id each, as "user-1234567".
        let mut entries = codec::Entries::default();
        for (i, (k, f)) in ks.iter().zip(&fs).enumerate() {
            entries.push(*k, *f, Some(format!("user-{i:07}").as_bytes()));
        }
        let rounds = (400_000_000 / (keys * 32)) as usize;
        let t = Instant::now();
        let mut bytes = Vec::new();
        for _ in 0..rounds {
            bytes = black_box(codec::encode(8, 7, 1, black_box(&entries)));
        }
        let encode = t.elapsed();
        let t = Instant::now();
        for _ in 0..rounds {
            black_box(codec::decode(black_box(&bytes), 8, 7).expect("decode"));
        }
        let decode = t.elapsed();
        let mbps = |d: Duration| (bytes.len() * rounds) as f64 / d.as_secs_f64() / 1e6;
        let us = |d: Duration| d.as_secs_f64() * 1e6 / rounds as f64;
        println!(
            "{keys:>6} keys, {:>7} bytes: encode {:>6.0} µs ({:>5.0} MB/s), decode + verify {:>6.0} µs ({:>5.0} MB/s)",
            bytes.len(),
            us(encode),
            mbps(encode),
            us(decode),
            mbps(decode)
        );
    }
}

fn memory(key_counts: &[usize]) {
    println!(
        "\n## peak memory (VmHWM of one child process per scenario; rows generated on the fly)"
    );
    println!(
        "{:<8} {:>10} {:>11} {:>13} {:>10} {:>13} {:>9}",
        "scenario", "keys", "VmHWM MiB", "over idle MiB", "B/key", "state heap MiB", "seconds"
    );
    let exe = std::env::current_exe().expect("current exe");
    for &keys in key_counts {
        let dir =
            std::env::temp_dir().join(format!("sync-state-bench-{}-{keys}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut idle_kib = 0;
        for scenario in ["idle", "first", "resync"] {
            let out = Command::new(&exe)
                .args(["child", scenario, &keys.to_string()])
                .arg(&dir)
                .output()
                .expect("run child");
            assert!(
                out.status.success(),
                "child {scenario} {keys}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let field = |name: &str| -> f64 {
                text.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
                    .expect("child output")
            };
            let (hwm, heap, secs) = (
                field("hwm_kib=") as u64,
                field("heap_bytes="),
                field("secs="),
            );
            if scenario == "idle" {
                idle_kib = hwm;
            }
            let over = hwm.saturating_sub(idle_kib);
            println!(
                "{scenario:<8} {keys:>10} {:>11.1} {:>13.1} {:>10.1} {:>13.1} {secs:>9.2}",
                hwm as f64 / 1024.0,
                over as f64 / 1024.0,
                over as f64 * 1024.0 / keys as f64,
                heap / f64::from(1 << 20),
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("first: classify N new keys, accept all (50 per request), save. resync: the same rows again, all unchanged.");
}

/// One measurement in a fresh process: `idle` does nothing (the process's own floor); `first`
/// classifies `keys` new rows, records them all and saves into `dir`; `resync` classifies the same
/// rows against that state (all unchanged, shards loaded lazily) and saves (nothing to write).
fn child(scenario: &str, keys: usize, dir: &Path) {
    let rt = runtime();
    let store = Arc::new(DirStore {
        root: dir.to_path_buf(),
    });
    let location = SyncLocation::new(BUCKET, "", "WS/user_attributes");
    let fp = Fingerprinter::with_mapping_fingerprint(MAPPING);
    let t = Instant::now();
    let mut heap = 0usize;
    if scenario != "idle" {
        let state = rt
            .block_on(SyncState::open(
                store,
                location,
                SyncOptions::new(SyncMode::Upsert, false),
            ))
            .expect("open");
        let (mut e, mut batch) = (Vec::new(), Vec::with_capacity(50));
        for i in 0..keys {
            element(i, 0, &mut e);
            let p = print(&fp, &e);
            if state
                .classify(ElementKind::Customer, p)
                .expect("classify")
                .send
            {
                batch.push(p);
                if batch.len() == 50 {
                    state.record_delivered(&batch);
                    batch.clear();
                }
            }
        }
        state.record_delivered(&batch);
        heap = state.heap_bytes();
        rt.block_on(state.save()).expect("save");
    }
    println!(
        "hwm_kib={} heap_bytes={heap} secs={}",
        vm_hwm_kib(),
        t.elapsed().as_secs_f64()
    );
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// An in-memory store with ETags (content hashes), for the throughput runs.
#[derive(Default)]
struct MemStore {
    objects: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
}

impl MemStore {
    fn total_bytes(&self) -> usize {
        self.objects
            .lock()
            .expect("lock")
            .values()
            .map(Vec::len)
            .sum()
    }
}

fn etag(body: &[u8]) -> String {
    format!("\"{:016x}\"", xxh3_64(body))
}

fn holds(current: Option<&[u8]>, expect: &Expect) -> bool {
    match (expect, current) {
        (Expect::Absent, None) => true,
        (Expect::Etag(e), Some(body)) => *e == etag(body),
        _ => false,
    }
}

#[async_trait]
impl StateStore for MemStore {
    async fn get(&self, _: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.objects.lock().expect("lock").get(key).cloned())
    }
    async fn put(
        &self,
        _: &str,
        key: &str,
        body: Vec<u8>,
        _: bool,
    ) -> Result<PutOutcome, StateError> {
        self.objects.lock().expect("lock").insert(key.into(), body);
        Ok(PutOutcome::Written)
    }
    async fn get_versioned(&self, _: &str, key: &str) -> Result<Option<Versioned>, StateError> {
        Ok(self
            .objects
            .lock()
            .expect("lock")
            .get(key)
            .map(|b| Versioned {
                etag: etag(b),
                body: b.clone(),
            }))
    }
    async fn put_if(
        &self,
        _: &str,
        key: &str,
        body: Vec<u8>,
        expect: Expect,
    ) -> Result<Option<String>, StateError> {
        let mut objects = self.objects.lock().expect("lock");
        if !holds(objects.get(key).map(Vec::as_slice), &expect) {
            return Ok(None);
        }
        let tag = etag(&body);
        objects.insert(key.into(), body);
        Ok(Some(tag))
    }
    async fn delete(&self, _: &str, key: &str) -> Result<(), StateError> {
        self.objects.lock().expect("lock").remove(key);
        Ok(())
    }
}

/// Files under a directory, so a memory measurement does not count the stored state itself.
struct DirStore {
    root: PathBuf,
}

impl DirStore {
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
    fn read(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(key)).ok()
    }
    fn write(&self, key: &str, body: &[u8]) -> Result<(), StateError> {
        let path = self.path(key);
        let err = |e: std::io::Error| StateError {
            bucket: BUCKET.into(),
            key: key.into(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(path.parent().unwrap_or(&self.root)).map_err(err)?;
        std::fs::write(&path, body).map_err(err)
    }
}

#[async_trait]
impl StateStore for DirStore {
    async fn get(&self, _: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.read(key))
    }
    async fn put(
        &self,
        _: &str,
        key: &str,
        body: Vec<u8>,
        _: bool,
    ) -> Result<PutOutcome, StateError> {
        self.write(key, &body).map(|_| PutOutcome::Written)
    }
    async fn get_versioned(&self, _: &str, key: &str) -> Result<Option<Versioned>, StateError> {
        Ok(self.read(key).map(|body| Versioned {
            etag: etag(&body),
            body,
        }))
    }
    async fn put_if(
        &self,
        _: &str,
        key: &str,
        body: Vec<u8>,
        expect: Expect,
    ) -> Result<Option<String>, StateError> {
        // One process writes at a time here; the check-then-write is not atomic and need not be.
        if !holds(self.read(key).as_deref(), &expect) {
            return Ok(None);
        }
        self.write(key, &body)?;
        Ok(Some(etag(&body)))
    }
    async fn delete(&self, _: &str, key: &str) -> Result<(), StateError> {
        let _ = std::fs::remove_file(self.path(key));
        Ok(())
    }
}
