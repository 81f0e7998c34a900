//! Saves as deltas: what a save writes, compaction now and then, a compaction stopped half way,
//! and writers interleaved at every store operation.

use std::sync::atomic::{AtomicBool, AtomicUsize};

use super::super::store::MAX_DELTAS;
use super::*;

/// One shard holding `n` users `u0..`, each delivered once with payload "0"; returns each
/// user's payload.
fn stored_users(h: &Harness, n: usize) -> HashMap<String, String> {
    let rows: Vec<(String, String)> = (0..n).map(|i| (format!("u{i}"), "0".into())).collect();
    deliver(&h.rt, &h.store, &h.location, &rows);
    rows.into_iter().collect()
}

fn print(key: &str, value: &str) -> RowPrint {
    Fingerprinter::with_mapping_fingerprint(MAPPING).print(
        ElementKind::Customer,
        key.as_bytes(),
        &customer(key, value),
    )
}

/// Opens the state, delivers every row (all accepted), saves; a save lost to contention is
/// retried, as the next checkpoint would.
fn deliver(
    rt: &tokio::runtime::Runtime,
    store: &Arc<MemStore>,
    location: &SyncLocation,
    rows: &[(String, String)],
) -> SaveReport {
    let state = rt
        .block_on(SyncState::open(
            store.clone(),
            location.clone(),
            opts(SyncMode::Upsert, false, 0),
        ))
        .unwrap();
    for (k, v) in rows {
        let id = k.as_bytes();
        let p = print(k, v);
        let d = state
            .classify_row(ElementKind::Customer, 0, p, Some(id))
            .unwrap();
        if d.send {
            state.record_delivered(&[p]);
        }
    }
    let mut last = None;
    for _ in 0..20 {
        match rt.block_on(state.save()) {
            Ok(r) => return r,
            Err(e) => last = Some(e),
        }
    }
    panic!("never saved: {last:?}");
}

fn deltas_stored(store: &MemStore) -> usize {
    store
        .keys()
        .iter()
        .filter(|k| k.contains("/deltas/"))
        .count()
}

#[test]
fn saves_write_only_what_changed_and_compact_now_and_then() {
    let h = Harness::new();
    let mut expected = stored_users(&h, 2_000);
    let base_bytes = h.store.body(&h.location.shard_key(0, 0)).unwrap().len() as u64;
    let mut rng = fastrand::Rng::with_seed(14);
    let (mut compactions, mut delta_bytes) = (0, 0);
    let runs = 2 * MAX_DELTAS + 8;
    for run in 1..=runs {
        let rows: Vec<(String, String)> = (0..5)
            .map(|_| (format!("u{}", rng.usize(..2_000)), format!("r{run}")))
            .collect();
        let report = deliver(&h.rt, &h.store, &h.location, &rows);
        expected.extend(rows);
        assert_eq!(report.deltas_written, 1, "run {run}: {report:?}");
        if report.shards_written == 1 {
            compactions += 1;
            // A compaction closes the generation with its delta, then rewrites the base and
            // deletes what it folded in.
            assert_eq!(deltas_stored(&h.store), 0, "run {run}");
        } else {
            assert_eq!(report.shards_written, 0);
            // Five entries and the frame: a fraction of the shard.
            assert!(report.bytes_written < 400, "run {run}: {report:?}");
            delta_bytes += report.bytes_written;
        }
        let stored = h.stored(0);
        assert_eq!(stored.len(), 2_000);
        for (k, v) in &expected {
            assert_eq!(
                stored[&print(k, v).key],
                print(k, v).fingerprint,
                "run {run}: {k}"
            );
        }
    }
    // Every 16th save compacts: runs 16 and 32.
    assert_eq!(compactions, 2);
    assert_eq!(deltas_stored(&h.store), 8);
    assert!(
        delta_bytes < base_bytes,
        "{delta_bytes} vs a {base_bytes}-byte shard"
    );

    // A new run reads base + deltas: everything unchanged, nothing sent.
    let state = h.open(opts(SyncMode::Upsert, false, 0));
    for (k, v) in &expected {
        let d = state.classify(ElementKind::Customer, print(k, v)).unwrap();
        assert_eq!((d.verdict, d.send), (Verdict::Unchanged, false), "{k}");
    }
    // The ids came through the deltas too.
    let named = h.stored_named(0);
    assert!(named.values().all(|(_, id)| id.is_some()));
}

#[test]
fn a_compaction_stopped_half_way_is_finished_by_the_next_writer() {
    let h = Harness::new();
    let mut expected = stored_users(&h, 500);
    for run in 0..MAX_DELTAS - 1 {
        let rows = vec![(format!("u{run}"), format!("r{run}"))];
        assert_eq!(
            deliver(&h.rt, &h.store, &h.location, &rows).shards_written,
            0
        );
        expected.extend(rows);
    }
    let base = h.store.body(&h.location.shard_key(0, 0)).unwrap();
    // The 64th save closes the generation, then cannot write the base (S3 fails).
    h.store.fail_base_writes.store(true, Ordering::SeqCst);
    let state = h.open(opts(SyncMode::Upsert, false, 0));
    let p = print("u400", "A");
    assert!(state.classify(ElementKind::Customer, p).unwrap().send);
    state.record_delivered(&[p]);
    assert!(h.rt.block_on(state.save()).is_err());
    expected.insert("u400".into(), "A".into());
    h.store.fail_base_writes.store(false, Ordering::SeqCst);
    assert_eq!(h.store.body(&h.location.shard_key(0, 0)).unwrap(), base);
    assert_eq!(deltas_stored(&h.store), MAX_DELTAS as usize);
    // Its delta is stored all the same: a reader sees it.
    assert_eq!(h.stored(0)[&p.key], p.fingerprint);

    // The next writer finds the generation closed: it writes the base, with both.
    let rows = vec![("u401".to_string(), "B".to_string())];
    let report = deliver(&h.rt, &h.store, &h.location, &rows);
    assert_eq!((report.shards_written, report.deltas_written), (1, 0));
    expected.extend(rows);
    assert_eq!(deltas_stored(&h.store), 0);
    let stored = h.stored(0);
    for (k, v) in &expected {
        assert_eq!(stored[&print(k, v).key], print(k, v).fingerprint, "{k}");
    }
}

/// A writer with users of its own, and what it delivered last for each.
struct Writer {
    rt: tokio::runtime::Runtime,
    users: Vec<String>,
    last: Mutex<HashMap<String, String>>,
    busy: AtomicBool,
}

/// Writers with disjoint users, each run of one interleaved with whole runs of the others at
/// random store operations (listings, reads, delta and base writes, deletes of folded deltas),
/// across many compactions, with deltas found by listing (even seeds) or by probing (odd seeds).
/// Whatever the interleaving, every writer's last delivery is what is stored: no delta is lost to
/// a compaction, to a race for a delta number, or to a deleted number reused.
#[test]
fn interleaved_writers_lose_nothing_across_compactions() {
    for seed in 0..12u64 {
        let store = MemStore::shared();
        store.no_listing.store(seed % 2 == 1, Ordering::SeqCst);
        let location = Harness::new().location;
        let writers: Arc<Vec<Writer>> = Arc::new(
            (0..3)
                .map(|w| Writer {
                    rt: tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .enable_all()
                        .build()
                        .unwrap(),
                    users: (0..300).map(|i| format!("w{w}-{i}")).collect(),
                    last: Mutex::new(HashMap::new()),
                    busy: AtomicBool::new(false),
                })
                .collect(),
        );
        let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(seed)));
        let round = Arc::new(AtomicUsize::new(0));
        // One run of writer `w`: a few of its users get a new payload.
        let run = {
            let (store, location, writers, rng, round) = (
                store.clone(),
                location.clone(),
                writers.clone(),
                rng.clone(),
                round.clone(),
            );
            move |w: usize, all: bool| {
                let writer = &writers[w];
                let r = round.fetch_add(1, Ordering::SeqCst);
                let rows: Vec<(String, String)> = if all {
                    writer
                        .users
                        .iter()
                        .map(|u| (u.clone(), "0".into()))
                        .collect()
                } else {
                    let mut rng = rng.lock().unwrap();
                    // Now and then a large change, whose delta alone may call for a compaction
                    // while a small one beside it does not.
                    let n = if rng.u8(..4) == 0 {
                        rng.usize(50..300)
                    } else {
                        rng.usize(1..12)
                    };
                    (0..n)
                        .map(|_| (writer.users[rng.usize(..300)].clone(), format!("r{r}")))
                        .collect()
                };
                deliver(&writer.rt, &store, &location, &rows);
                writer.last.lock().unwrap().extend(rows);
            }
        };
        let nested = Arc::new(AtomicUsize::new(0));
        let hook: Hook = {
            let (writers, rng, run, nested) =
                (writers.clone(), rng.clone(), run.clone(), nested.clone());
            Arc::new(move |op: &str, key: &str| {
                if !key.contains("/shards/") && !key.contains("/deltas/") {
                    return;
                }
                // Listing and reading are two steps: another writer may come between them.
                // Most often just before a write: between a writer's read and its write.
                let odds = if op == "put" { 3 } else { 8 };
                let pick = {
                    let mut rng = rng.lock().unwrap();
                    (rng.u8(..odds) == 0).then(|| rng.usize(..writers.len()))
                };
                let Some(w) = pick else { return };
                if nested.load(Ordering::SeqCst) >= 2
                    || writers[w].busy.swap(true, Ordering::SeqCst)
                {
                    return;
                }
                nested.fetch_add(1, Ordering::SeqCst);
                let run = run.clone();
                // Its own thread: this one is inside another writer's runtime.
                std::thread::spawn(move || run(w, false)).join().unwrap();
                nested.fetch_sub(1, Ordering::SeqCst);
                writers[w].busy.store(false, Ordering::SeqCst);
            })
        };
        for w in 0..writers.len() {
            run(w, true);
        }
        *store.hook.lock().unwrap() = Some(hook);
        for _ in 0..80 {
            let w = rng.lock().unwrap().usize(..writers.len());
            if writers[w].busy.swap(true, Ordering::SeqCst) {
                continue;
            }
            run(w, false);
            writers[w].busy.store(false, Ordering::SeqCst);
        }
        *store.hook.lock().unwrap() = None;

        let h = Harness::with_store(store.clone());
        let stored = h.stored(0);
        let mut users = 0;
        for writer in writers.iter() {
            for (k, v) in writer.last.lock().unwrap().iter() {
                let p = print(k, v);
                assert_eq!(
                    stored.get(&p.key),
                    Some(&p.fingerprint),
                    "seed {seed}: {k} = {v}"
                );
                users += 1;
            }
        }
        assert_eq!((stored.len(), users), (900, 900), "seed {seed}");
        assert!(
            round.load(Ordering::SeqCst) > 63,
            "seed {seed}: nested runs happened"
        );
    }
}
