//! The bounded-memory path ([`SyncState::prepare`], then `classify_row`) against the in-memory
//! one (`classify`, shards loaded whole), on randomized parts: the same verdicts, the same rows
//! sent, and the same state stored, with duplicates, events, every mode, `FULL_RESYNC`, mid-run
//! saves and another writer saving in between.

use super::*;
use crate::sync_state::verdicts::PrintSpool;

/// A copy of everything `from` holds.
fn twin(from: &MemStore) -> Arc<MemStore> {
    let copy = MemStore::shared();
    for (k, (body, _)) in from.objects.lock().unwrap().iter() {
        copy.write(k, body.clone());
    }
    copy
}

struct Row {
    kind: ElementKind,
    print: RowPrint,
    /// A user row's customer id, stored with its entry.
    id: Option<String>,
    accepted: bool,
}

fn random_rows(rng: &mut fastrand::Rng, fp: &Fingerprinter, pool: usize, max: usize) -> Vec<Row> {
    let n = rng.usize(0..max);
    (0..n)
        .map(|_| {
            let key = format!("u{}", rng.usize(..pool));
            let kind = if rng.u8(..10) == 0 {
                ElementKind::Event
            } else {
                ElementKind::Customer
            };
            let payload = format!("v{}", rng.u8(..3));
            Row {
                kind,
                print: fp.print(kind, key.as_bytes(), &customer(&key, &payload)),
                id: (kind == ElementKind::Customer).then_some(key),
                accepted: rng.u8(..10) != 0,
            }
        })
        .collect()
}

/// Classifies `rows` (prepared first when `prepared`), records the accepted sent rows, saves at
/// row `checkpoint` and at the end, and lets `other` write between the two saves.
fn run_part(
    h: &Harness,
    options: SyncOptions,
    rows: &[Row],
    prepared: Option<usize>,
    checkpoint: usize,
    other: &dyn Fn(&Harness),
) -> Vec<Decision> {
    let state = h.open(options);
    if let Some(concurrency) = prepared {
        let mut spool = PrintSpool::new(state.shard_bits(), 0, &std::env::temp_dir());
        for (i, r) in rows.iter().enumerate() {
            spool.push(i as u64 + 1, r.kind, r.print).unwrap();
        }
        let spooled = spool.finish();
        h.rt.block_on(state.prepare(&spooled, concurrency)).unwrap();
    } else {
        // Every shard as it is now, as prepare reads them (not when a row first needs one).
        h.rt.block_on(state.prefetch(4)).unwrap();
    }
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if i == checkpoint {
            h.rt.block_on(state.save()).unwrap();
            other(h);
        }
        let id = r.id.as_deref().map(str::as_bytes);
        let d = state
            .classify_row(r.kind, i as u64 + 1, r.print, id)
            .unwrap();
        if d.send && r.accepted {
            state.record_delivered(&[r.print]);
        }
        out.push(d);
    }
    h.rt.block_on(state.save()).unwrap();
    out
}

#[test]
fn prepared_verdicts_and_saves_match_the_in_memory_path() {
    let mut rng = fastrand::Rng::with_seed(0x005e_ed14);
    let fp = Fingerprinter::with_mapping_fingerprint(MAPPING);
    for trial in 0..150 {
        let bits = [0u8, 1, 3, 8][rng.usize(..4)];
        let pool = rng.usize(1..80);
        // The stored state: an earlier run of the in-memory path.
        let base = Harness::new();
        let earlier = random_rows(&mut rng, &fp, pool, 120);
        run_part(
            &base,
            opts(SyncMode::Upsert, false, bits),
            &earlier,
            None,
            0,
            &|_| {},
        );
        let mode = [SyncMode::Upsert, SyncMode::Insert, SyncMode::Update][rng.usize(..3)];
        let options = opts(mode, rng.u8(..5) == 0, bits);
        let rows = random_rows(&mut rng, &fp, pool, 300);
        let checkpoint = rng.usize(0..=rows.len());
        // Another writer, saving between this run's two saves.
        let theirs = random_rows(&mut rng, &fp, pool, 20);
        let other = |h: &Harness| {
            run_part(
                h,
                opts(SyncMode::Upsert, false, bits),
                &theirs,
                None,
                0,
                &|_| {},
            );
        };
        let lazy = Harness::with_store(twin(&base.store));
        let streamed = Harness::with_store(twin(&base.store));
        let expected = run_part(&lazy, options, &rows, None, checkpoint, &other);
        let concurrency = rng.usize(1..5);
        let got = run_part(
            &streamed,
            options,
            &rows,
            Some(concurrency),
            checkpoint,
            &other,
        );
        if let Some(i) = (0..rows.len()).find(|&i| got[i] != expected[i]) {
            panic!(
                "trial {trial}, row {i} of {} (checkpoint {checkpoint}), {options:?}: prepared {:?}, in memory {:?}",
                rows.len(),
                got[i],
                expected[i]
            );
        }
        let (a, b) = (streamed.stored(bits), lazy.stored(bits));
        for k in a.keys().chain(b.keys()) {
            if a.get(k) != b.get(k) {
                let show = |name: &str, rs: &[Row]| {
                    for (i, r) in rs.iter().enumerate().filter(|(_, r)| r.print.key == *k) {
                        eprintln!(
                            "{name} row {i}: fp {} kind {:?} accepted {}",
                            r.print.fingerprint, r.kind, r.accepted
                        );
                    }
                };
                show("earlier", &earlier);
                show("part", &rows);
                show("theirs", &theirs);
                eprintln!(
                    "base {:?} prepared {:?} lazy {:?} checkpoint {checkpoint}",
                    base.stored(bits).get(k),
                    a.get(k),
                    b.get(k)
                );
            }
        }
        assert_eq!(
            streamed.stored_named(bits),
            lazy.stored_named(bits),
            "trial {trial}: stored state ({options:?})"
        );
        // Every user key is stored with the id it hashes from; event ids are not kept.
        for (key, (_, id)) in streamed.stored_named(bits) {
            let user = |id: &str| Fingerprinter::key(ElementKind::Customer, id.as_bytes()) == key;
            match id {
                Some(id) => assert!(user(&id), "trial {trial}: {id} is not key {key:x}'s id"),
                None => assert!(
                    (0..pool).all(|u| !user(&format!("u{u}"))),
                    "trial {trial}: user key {key:x} stored without its id"
                ),
            }
        }
    }
}

#[test]
fn a_prepared_state_holds_only_what_the_part_may_send() {
    let h = Harness::new();
    let fp = Fingerprinter::with_mapping_fingerprint(MAPPING);
    let print = |k: usize, v: &str| {
        let key = format!("u{k}");
        fp.print(ElementKind::Customer, key.as_bytes(), &customer(&key, v))
    };
    // 5,000 keys stored.
    let state = h.open(opts(SyncMode::Upsert, false, 4));
    for k in 0..5_000 {
        let p = print(k, "a");
        assert!(state.classify(ElementKind::Customer, p).unwrap().send);
        state.record_delivered(&[p]);
    }
    h.rt.block_on(state.save()).unwrap();
    // A part of the same 5,000 with 10 changed: only those 10 entries stay in memory.
    let state = h.open(opts(SyncMode::Upsert, false, 4));
    let mut spool = PrintSpool::new(4, 0, &std::env::temp_dir());
    let rows: Vec<RowPrint> = (0..5_000)
        .map(|k| print(k, if k % 500 == 0 { "b" } else { "a" }))
        .collect();
    for (i, p) in rows.iter().enumerate() {
        spool.push(i as u64 + 1, ElementKind::Customer, *p).unwrap();
    }
    let stats = h.rt.block_on(state.prepare(&spool.finish(), 2)).unwrap();
    assert_eq!(
        (stats.rows, stats.shards_read, stats.entries_kept),
        (5_000, 16, 10)
    );
    assert!(state.heap_bytes() < 8 * 1024, "{}", state.heap_bytes());
    let sent: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            let d = state
                .classify_row(ElementKind::Customer, *i as u64 + 1, **p, None)
                .unwrap();
            if d.send {
                state.record_delivered(&[**p]);
            }
            d.send
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(sent, (0..5_000).step_by(500).collect::<Vec<_>>());
    let saved = h.rt.block_on(state.save()).unwrap();
    let mut touched: Vec<usize> = sent.iter().map(|&i| shard_of(rows[i].key, 4)).collect();
    touched.sort_unstable();
    touched.dedup();
    // Each touched shard gets a delta of its changed entries; no shard is rewritten.
    assert_eq!(
        (saved.shards_written, saved.deltas_written),
        (0, touched.len() as u64)
    );
    assert!(
        saved.bytes_written
            <= (touched.len() * codec::DELTA_FRAME_BYTES + sent.len() * (codec::ENTRY_BYTES + 8))
                as u64,
        "{saved:?}"
    );
    let stored = h.stored(4);
    assert_eq!(stored.len(), 5_000);
    assert!(sent
        .iter()
        .all(|&i| stored[&rows[i].key] == rows[i].fingerprint));
}

/// The first pass keys rows without mapping them, so it counts a row the sending pass then
/// rejects as an occurrence of its key. An event id whose first row is rejected must still be
/// sent once, from its next valid row, as the in-memory path does (it never classifies a
/// rejected row).
#[test]
fn an_event_whose_first_row_is_rejected_is_sent_from_the_next() {
    let fp = Fingerprinter::with_mapping_fingerprint(MAPPING);
    let e = |v: &str| fp.print(ElementKind::Event, b"evt-1", v.as_bytes());
    for first_rejected in [true, false] {
        let h = Harness::new();
        let state = h.open(upsert());
        let mut spool = PrintSpool::new(state.shard_bits(), 0, &std::env::temp_dir());
        spool.push(1, ElementKind::Event, e("future")).unwrap();
        spool.push(2, ElementKind::Event, e("valid")).unwrap();
        spool.push(3, ElementKind::Event, e("again")).unwrap();
        h.rt.block_on(state.prepare(&spool.finish(), 1)).unwrap();
        if !first_rejected {
            assert!(
                state
                    .classify_row(ElementKind::Event, 1, e("future"), None)
                    .unwrap()
                    .send
            );
        }
        let second = state
            .classify_row(ElementKind::Event, 2, e("valid"), None)
            .unwrap();
        assert_eq!(
            (second.send, second.duplicate),
            (first_rejected, !first_rejected),
            "first row rejected: {first_rejected}"
        );
        let third = state
            .classify_row(ElementKind::Event, 3, e("again"), None)
            .unwrap();
        assert!(!third.send && third.duplicate, "an event id is sent once");
    }
}
