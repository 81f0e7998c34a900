//! What is stored: compare-and-swap merges, shard bytes, layout, loading.

use super::super::shard::Shard;
use super::*;

#[test]
fn concurrent_writers_merge_and_a_contested_key_is_dropped_not_guessed() {
    // One shard, so the two runs are sure to collide.
    let one = opts(SyncMode::Upsert, false, 0);
    let h = Harness::new();
    h.run(
        one,
        MAPPING,
        &[("k1", "1"), ("k2", "1"), ("k3", "1"), ("k5", "1")],
        ALL,
    );
    let fp = Fingerprinter::with_mapping_fingerprint(MAPPING);
    let p = |k: &str, v: &str| fp.print(ElementKind::Customer, k.as_bytes(), &customer(k, v));

    let (a, b) = (h.open(one), h.open(one));
    let deliver = |s: &SyncState, rows: &[(&str, &str)]| {
        for (k, v) in rows {
            let print = p(k, v);
            assert!(s.classify(ElementKind::Customer, print).unwrap().send);
            s.record_delivered(&[print]);
        }
    };
    deliver(&a, &[("k1", "A"), ("k3", "A"), ("k5", "same")]);
    deliver(&b, &[("k2", "B"), ("k3", "B"), ("k4", "B"), ("k5", "same")]);
    assert_eq!(h.rt.block_on(b.save()).unwrap().cas_retries, 0);
    let report = h.rt.block_on(a.save()).unwrap();
    assert_eq!((report.cas_retries, report.conflicts_dropped), (1, 1));

    let stored = h.stored(0);
    assert_eq!(
        stored.get(&p("k1", "A").key),
        Some(&p("k1", "A").fingerprint),
        "only A touched k1"
    );
    assert_eq!(
        stored.get(&p("k2", "B").key),
        Some(&p("k2", "B").fingerprint),
        "only B touched k2"
    );
    assert_eq!(
        stored.get(&p("k4", "B").key),
        Some(&p("k4", "B").fingerprint),
        "B's new key survives A's save"
    );
    assert_eq!(
        stored.get(&p("k5", "same").key),
        Some(&p("k5", "same").fingerprint),
        "both agree"
    );
    assert!(
        !stored.contains_key(&p("k3", "A").key),
        "either A or B may be what MoEngage holds: neither is stored"
    );
    let ds = h.run(one, MAPPING, &[("k3", "A")], ALL);
    assert_eq!((ds[0].verdict, ds[0].send), (Verdict::New, true));
}

#[test]
fn merge_rules() {
    let c = |loaded, ours| Change {
        key: 7,
        loaded,
        ours,
        id: None,
        deleted: false,
    };
    let deleted = |loaded| Change {
        deleted: true,
        ..c(loaded, None)
    };
    #[rustfmt::skip]
    let table: [(Option<u64>, Change, Option<u64>, u64); 11] = [
        // theirs, our change, stored after, conflicts
        (Some(1), c(Some(1), Some(2)), Some(2), 0), // untouched by them: ours
        (None,    c(None, Some(2)),    Some(2), 0), // new key: ours
        (Some(3), c(Some(1), Some(3)), Some(3), 0), // both wrote the same
        (Some(3), c(Some(1), Some(2)), None,    1), // both wrote, differently: dropped
        (None,    c(Some(1), Some(2)), None,    1), // they forgot it, we wrote: dropped
        (Some(1), c(Some(1), None),    None,    0), // full resync forgets an unaccepted key
        (Some(3), c(Some(1), None),    Some(3), 0), // …unless someone delivered it meanwhile
        (Some(3), c(None, Some(2)),    None,    1), // we thought it new; they delivered another
        (Some(1), deleted(Some(1)),    None,    0), // mirror mode deleted the user: gone
        (Some(3), deleted(Some(1)),    None,    1), // …even if redelivered meanwhile (resent)
        (None,    deleted(Some(1)),    None,    0), // …or already gone
    ];
    for (theirs, change, want, conflicts) in table {
        let (tk, tf) = match theirs {
            Some(fp) => (vec![1, 7, 9], vec![10, fp, 90]),
            None => (vec![1, 9], vec![10, 90]),
        };
        let (merged, n) = merge(&Entries::unnamed(tk, tf), std::slice::from_ref(&change));
        let got: BTreeMap<u64, u64> = merged.keys.into_iter().zip(merged.fps).collect();
        assert_eq!(got.get(&7).copied(), want, "{theirs:?} {change:?}");
        assert_eq!(
            (got[&1], got[&9], n),
            (10, 90, conflicts),
            "{theirs:?} {change:?}"
        );
    }
}

#[test]
fn a_save_that_never_wins_records_nothing_and_says_so() {
    let h = Harness::with_store(Arc::new(MemStore {
        always_conflict: true,
        ..MemStore::default()
    }));
    let state = h.open(upsert());
    let p = Fingerprinter::with_mapping_fingerprint(MAPPING).print(
        ElementKind::Customer,
        b"a",
        &customer("a", "1"),
    );
    assert!(state.classify(ElementKind::Customer, p).unwrap().send);
    state.record_delivered(&[p]);
    let err = h.rt.block_on(state.save()).unwrap_err();
    assert!(
        matches!(err, SyncStateError::Contended { attempts: 8, .. }),
        "{err}"
    );
    assert!(h.store.keys().iter().all(|k| !k.contains("/shards/")));
}

#[test]
fn checkpoint_saves_keep_duplicate_detection_and_later_deliveries() {
    let h = Harness::new();
    h.run(
        opts(SyncMode::Upsert, false, 2),
        MAPPING,
        &[("a", "0"), ("b", "0")],
        ALL,
    );
    // A full resync whose first checkpoint comes while b is still in flight: b's old entry goes,
    // and comes back with b's new payload once b is accepted.
    let state = h.open(opts(SyncMode::Upsert, true, 2));
    let fp = Fingerprinter::with_mapping_fingerprint(MAPPING);
    let p = |k: &str, v: &str| fp.print(ElementKind::Customer, k.as_bytes(), &customer(k, v));
    for k in ["a", "b"] {
        assert!(
            state
                .classify(ElementKind::Customer, p(k, "1"))
                .unwrap()
                .send
        );
    }
    state.record_delivered(&[p("a", "1")]);
    h.rt.block_on(state.save()).unwrap();
    let again = state.classify(ElementKind::Customer, p("a", "1")).unwrap();
    assert_eq!(
        (again.verdict, again.duplicate, again.send),
        (Verdict::Unchanged, true, false)
    );
    state.record_delivered(&[p("b", "1")]);
    h.rt.block_on(state.save()).unwrap();
    let stored = h.stored(2);
    assert_eq!(stored.len(), 2);
    assert_eq!(stored.get(&p("b", "1").key), Some(&p("b", "1").fingerprint));
    assert_eq!(
        h.rt.block_on(state.save()).unwrap(),
        SaveReport::default(),
        "nothing left to write"
    );
}

#[test]
fn shard_bytes_round_trip_and_damage_is_detected() {
    let bits = 4;
    let index = 5;
    let base = (index as u64) << 60;
    let keys: Vec<u64> = (0..1000).map(|i| base + i * 7919).collect();
    let fps: Vec<u64> = (0..1000).map(|i| i * 31 + 1).collect();
    let mut entries = Entries::default();
    for (i, (k, f)) in keys.iter().zip(&fps).enumerate() {
        // Every third entry without an id (stored before ids were, or an event).
        let id = format!("user-{i}");
        entries.push(*k, *f, (i % 3 != 0).then_some(id.as_bytes()));
    }
    let id_bytes: usize = (0..1000)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("user-{i}").len())
        .sum();
    let bytes = codec::encode(bits, index, 0xfeed, &entries);
    assert_eq!(
        bytes.len(),
        codec::FRAME_BYTES + codec::ENTRY_BYTES * keys.len() + id_bytes
    );
    assert_eq!(
        codec::decode_base(&bytes, bits, index),
        Ok(codec::Base {
            entries: entries.clone(),
            generation: Some(0xfeed)
        })
    );
    assert_eq!(entries.ids.get(1), Some(&b"user-1"[..]));
    assert_eq!(entries.ids.get(3), None);
    assert_eq!(
        codec::decode(
            &codec::encode(bits, index, 1, &Entries::default()),
            bits,
            index
        ),
        Ok(Entries::default())
    );
    // A version-2 shard (no generation: no delta follows it) still reads.
    let mut v2 = bytes[..24].to_vec();
    v2[7] = 2;
    v2.extend_from_slice(&bytes[32..bytes.len() - 8]);
    let sum = xxhash_rust::xxh3::xxh3_64(&v2);
    v2.extend_from_slice(&sum.to_le_bytes());
    assert_eq!(
        codec::decode_base(&v2, bits, index),
        Ok(codec::Base {
            entries: entries.clone(),
            generation: None
        })
    );
    // A version-1 shard (no id columns) still reads, its entries without ids.
    let mut v1 = bytes[..24].to_vec();
    v1[7] = 1;
    for w in keys.iter().chain(&fps) {
        v1.extend_from_slice(&w.to_le_bytes());
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&v1);
    v1.extend_from_slice(&sum.to_le_bytes());
    assert_eq!(
        codec::decode(&v1, bits, index),
        Ok(Entries::unnamed(keys.clone(), fps.clone()))
    );
    // Id ends that point past the id bytes are damage.
    let mut bad_ends = bytes[..bytes.len() - 8].to_vec();
    let last_end = 32 + 16 * keys.len() + 4 * (keys.len() - 1);
    bad_ends[last_end..last_end + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&bad_ends);
    bad_ends.extend_from_slice(&sum.to_le_bytes());
    assert!(matches!(
        codec::decode(&bad_ends, bits, index),
        Err(DecodeError::Corrupt(_))
    ));

    let mut flipped = bytes.clone();
    flipped[100] ^= 1;
    assert!(matches!(
        codec::decode(&flipped, bits, index),
        Err(DecodeError::Corrupt(_))
    ));
    assert!(matches!(
        codec::decode(&bytes[..bytes.len() - 1], bits, index),
        Err(DecodeError::Corrupt(_))
    ));
    assert!(matches!(
        codec::decode(&bytes, bits, index + 1),
        Err(DecodeError::Corrupt(_))
    ));
    let mut newer = bytes.clone();
    newer[7] = codec::FORMAT_VERSION + 1;
    assert!(matches!(
        codec::decode(&newer, bits, index),
        Err(DecodeError::UnknownFormat(_))
    ));
    assert!(matches!(
        codec::decode(b"{}", bits, index),
        Err(DecodeError::Corrupt(_))
    ));
}

#[test]
fn a_corrupt_shard_is_resent_and_replaced_but_a_newer_format_is_left_alone() {
    let h = Harness::new();
    let one = opts(SyncMode::Upsert, false, 0);
    h.run(one, MAPPING, &[("a", "1")], ALL);
    let key = h.location.shard_key(0, 0);
    h.store.write(&key, b"MOESYNC\x01garbage".to_vec());
    let ds = h.run(one, MAPPING, &[("a", "1")], ALL);
    assert_eq!(ds[0].verdict, Verdict::New);
    assert_eq!(h.stored(0).len(), 1, "the save replaced the corrupt shard");

    h.store.write(&key, b"MOESYNC\x09whatever".to_vec());
    let state = h.open(one);
    let p = Fingerprinter::with_mapping_fingerprint(MAPPING).print(
        ElementKind::Customer,
        b"a",
        &customer("a", "1"),
    );
    assert!(matches!(
        state.classify(ElementKind::Customer, p),
        Err(SyncStateError::Unreadable { .. })
    ));
}

#[test]
fn layout_manifest_and_shard_count() {
    let h = Harness::new();
    h.run(
        opts(SyncMode::Upsert, false, 4),
        MAPPING,
        &[("a", "1")],
        ALL,
    );
    let keys = h.store.keys();
    assert_eq!(
        keys[0],
        "moengage-sync/sync/WS1/user_attributes/manifest.json"
    );
    assert!(
        keys[1].starts_with("moengage-sync/sync/WS1/user_attributes/shards/4/"),
        "{keys:?}"
    );
    assert_eq!(keys.len(), 2);
    let manifest: serde_json::Value =
        serde_json::from_slice(&h.store.body(&keys[0]).unwrap()).unwrap();
    assert_eq!(manifest, serde_json::json!({"format": 1, "shard_bits": 4}));
    // A later run asking for another shard count follows the manifest.
    let state = h.open(upsert());
    assert_eq!(state.shard_bits(), 4);

    assert_eq!(
        h.location.shard_key(8, 10),
        "moengage-sync/sync/WS1/user_attributes/shards/8/0a.bin"
    );
    assert_eq!(
        h.location.shard_key(12, 10),
        "moengage-sync/sync/WS1/user_attributes/shards/12/00a.bin"
    );
    assert_eq!(scope("ws/1 x", ObjectType::Events), "ws%2F1%20x/events");
    assert_eq!(
        SyncLocation::new("b", "", "s").manifest_key(),
        "sync/s/manifest.json"
    );
}

#[test]
fn prefetch_loads_every_stored_shard_once() {
    let h = Harness::new();
    let rows: Vec<(String, String)> = (0..300).map(|i| (format!("u{i}"), "1".into())).collect();
    let rows: Vec<(&str, &str)> = rows.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    h.run(opts(SyncMode::Upsert, false, 4), MAPPING, &rows, ALL);
    let state = h.open(upsert());
    h.rt.block_on(state.prefetch(4)).unwrap();
    assert_eq!(
        (state.stats().shards_loaded, state.stats().keys_loaded),
        (16, 300)
    );
    let fp = Fingerprinter::with_mapping_fingerprint(MAPPING);
    for (k, v) in &rows {
        let d = state
            .classify(
                ElementKind::Customer,
                fp.print(ElementKind::Customer, k.as_bytes(), &customer(k, v)),
            )
            .unwrap();
        assert!(!d.send);
    }
    assert_eq!(
        state.stats().shards_loaded,
        16,
        "classify found them loaded"
    );
    assert!(state.heap_bytes() >= 300 * 16);
}

#[test]
fn the_state_can_be_shared_between_the_decode_thread_and_the_async_loop() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<SyncState>();
    let h = Harness::new();
    let state = h.open(upsert());
    send(&state.save());
    send(&state.prefetch(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_on_a_blocking_thread_loads_shards_through_the_runtime() {
    let store = MemStore::shared();
    let location = SyncLocation::new(BUCKET, "p/", "s");
    let fp = Fingerprinter::with_mapping_fingerprint(MAPPING);
    let prints: Vec<RowPrint> = (0..1000)
        .map(|i| fp.print(ElementKind::Customer, format!("u{i}").as_bytes(), b"{}"))
        .collect();
    for round in 0..2 {
        let state = Arc::new(
            SyncState::open(store.clone(), location.clone(), upsert())
                .await
                .unwrap(),
        );
        let (decoder, ps) = (state.clone(), prints.clone());
        // The pipeline's shape: the decode thread classifies, the async side records and saves.
        let sent = tokio::task::spawn_blocking(move || {
            ps.iter()
                .filter(|p| decoder.classify(ElementKind::Customer, **p).unwrap().send)
                .copied()
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        assert_eq!(sent.len(), if round == 0 { 1000 } else { 0 });
        for chunk in sent.chunks(50) {
            state.record_delivered(chunk);
        }
        state.save().await.unwrap();
    }
}

#[test]
fn interpolated_lookup_finds_exactly_what_binary_search_finds() {
    let mut rng = fastrand::Rng::with_seed(7);
    for n in [0usize, 1, 2, 31, 32, 33, 1000, 40_000] {
        // Uniform keys, plus a clustered run that defeats interpolation.
        let mut keys: Vec<u64> = (0..n).map(|_| rng.u64(..)).collect();
        keys.extend((0..n.min(500) as u64).map(|i| 1_000 + i));
        keys.sort_unstable();
        keys.dedup();
        let entries = Entries::unnamed(keys.clone(), vec![1; keys.len()]);
        let shard = Shard::new(entries, Default::default(), false);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(shard.position(*k), Some(i), "n={n}");
        }
        for probe in (0..2000)
            .map(|_| rng.u64(..))
            .chain([0, u64::MAX, 999, 1_000 + 500])
        {
            assert_eq!(
                shard.position(probe),
                keys.binary_search(&probe).ok(),
                "n={n} probe={probe}"
            );
        }
    }
}

#[test]
fn a_scope_without_a_manifest_reads_no_shard_and_a_stored_one_loads_only_what_rows_touch() {
    let h = Harness::new();
    let bits = DEFAULT_SHARD_BITS;
    h.run(
        opts(SyncMode::Upsert, false, bits),
        MAPPING,
        &[("a", "1"), ("b", "1"), ("c", "1")],
        ALL,
    );
    assert_eq!(
        h.store.shard_reads.load(Ordering::SeqCst),
        0,
        "a first run has nothing to read"
    );

    let state = h.open(upsert());
    let p = Fingerprinter::with_mapping_fingerprint(MAPPING).print(
        ElementKind::Customer,
        b"a",
        &customer("a", "1"),
    );
    assert!(!state.classify(ElementKind::Customer, p).unwrap().send);
    assert_eq!(
        h.store.shard_reads.load(Ordering::SeqCst),
        1,
        "one row, one shard"
    );
    assert!(state.has_stored_state());
}

/// The seeds of the `shard` fuzz target (`fuzz/seeds/shard`) are valid bases and deltas, so that
/// the fuzzer starts past the checksum. `WRITE_FUZZ_SEEDS=1` writes them again.
#[test]
fn the_shard_fuzz_seeds_decode() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/shard");
    let (bits, index) = (4, 5);
    let key = |i: u64| ((index as u64) << 60) + i * 7919;
    let mut entries = Entries::default();
    for i in 0..6 {
        let id = format!("user-{i}");
        entries.push(key(i), i * 31 + 1, (i % 2 == 0).then_some(id.as_bytes()));
    }
    let mut delta = Entries::default();
    delta.push(key(1), 0, None);
    delta.push(key(7), 99, Some(b"user-7"));
    let seeds = [
        ("base-v3.bin", codec::encode(bits, index, 0x5eed, &entries)),
        (
            "base-empty.bin",
            codec::encode(0, 0, 1, &Entries::default()),
        ),
        (
            "delta.bin",
            codec::encode_delta(bits, index, 0x5eed, 3, false, &delta),
        ),
        (
            "delta-last.bin",
            codec::encode_delta(bits, index, 0x5eed, 4, true, &delta),
        ),
    ];
    if std::env::var_os("WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in &seeds {
        let stored = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(
            &stored, bytes,
            "{name} is stale: WRITE_FUZZ_SEEDS=1 writes it again"
        );
    }
    assert!(codec::decode_base(&seeds[0].1, bits, index).is_ok());
    assert!(codec::decode_delta(&seeds[3].1, bits, index, 0x5eed, 4).is_ok_and(|d| d.last));
}
