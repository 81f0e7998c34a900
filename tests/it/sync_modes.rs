//! Sync modes with change detection: re-exported snapshots send only what changed; state never
//! claims a row was delivered when it wasn't.

use moengage_emulator::Faults;
use moengage_sync::account::report::Status;
use serde_json::json;

use crate::support::{gzip, Stack};

/// A users snapshot; `plan_of(i)` lets a test change some rows.
fn snapshot(ids: impl Iterator<Item = usize>, plan_of: impl Fn(usize) -> &'static str) -> Vec<u8> {
    let mut s = String::from("user_id,email,plan,internal_note\n");
    for i in ids {
        s.push_str(&format!(
            "user-{i:04},u{i}@example.com,{},note {i}\n",
            plan_of(i)
        ));
    }
    gzip(s.as_bytes())
}

const MAPPING: &str = r#"{"customer_id":"user_id","email":"email","plan":"plan"}"#;

async fn run(
    stack: &Stack,
    deps: &moengage_sync::app::Deps,
    key: &str,
    body: Vec<u8>,
) -> moengage_sync::account::report::ObjectSummary {
    stack.put(key, body).await;
    let mut summary = stack.invoke(deps, key).await;
    assert_eq!(summary.objects.len(), 1, "{summary:?}");
    summary.objects.remove(0)
}

fn sent_ids(stack: &Stack, since_request: usize) -> Vec<String> {
    stack.state().requests[since_request..]
        .iter()
        .filter(|r| r.status == Some(200))
        .flat_map(|r| r.customer_ids.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_sends_all_then_nothing_then_only_the_changed_rows() {
    let stack = Stack::start().await;
    let deps = stack.deps(&[("FIELD_MAPPING", MAPPING)]).await;

    let first = run(
        &stack,
        &deps,
        "exports/day1/users.csv.gz",
        snapshot(1..=500, |_| "free"),
    )
    .await;
    assert_eq!((first.rows_delivered, first.rows_unchanged), (500, 0));

    // The identical snapshot under a new key: 0 requests.
    let before = stack.state().requests.len();
    let same = run(
        &stack,
        &deps,
        "exports/day2/users.csv.gz",
        snapshot(1..=500, |_| "free"),
    )
    .await;
    assert_eq!(
        (
            same.status,
            same.rows_unchanged,
            same.rows_delivered,
            same.requests_sent
        ),
        (Status::Complete, 500, 0, 0),
        "{same:?}"
    );
    assert!(same.balanced());
    assert_eq!(stack.state().requests.len(), before);

    // 10 plans changed, and an unmapped column changed everywhere: exactly those 10 are sent.
    let before = stack.state().requests.len();
    let changed = |i: usize| if i.is_multiple_of(50) { "pro" } else { "free" };
    let mut body = String::from("user_id,email,plan,internal_note\n");
    for i in 1..=500 {
        body.push_str(&format!(
            "user-{i:04},u{i}@example.com,{},rewritten {i}\n",
            changed(i)
        ));
    }
    let third = run(
        &stack,
        &deps,
        "exports/day3/users.csv.gz",
        gzip(body.as_bytes()),
    )
    .await;
    assert_eq!(
        (third.rows_delivered, third.rows_unchanged),
        (10, 490),
        "{third:?}"
    );
    let mut sent = sent_ids(&stack, before);
    sent.sort();
    let want: Vec<String> = (1..=10).map(|k| format!("user-{:04}", k * 50)).collect();
    assert_eq!(sent, want);
    assert_eq!(stack.state().users["user-0050"]["plan"], "pro");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_sends_only_keys_never_delivered() {
    let stack = Stack::start().await;
    let deps = stack
        .deps(&[("FIELD_MAPPING", MAPPING), ("SYNC_MODE", "insert")])
        .await;
    run(
        &stack,
        &deps,
        "exports/a.csv.gz",
        snapshot(1..=20, |_| "free"),
    )
    .await;

    // 20 old rows (some changed — insert ignores changes) and 5 new ones.
    let before = stack.state().requests.len();
    let obj = run(
        &stack,
        &deps,
        "exports/b.csv.gz",
        snapshot(1..=25, |i| if i % 2 == 0 { "pro" } else { "free" }),
    )
    .await;
    assert_eq!((obj.rows_delivered, obj.rows_unchanged), (5, 20), "{obj:?}");
    let mut sent = sent_ids(&stack, before);
    sent.sort();
    assert_eq!(
        sent,
        (21..=25)
            .map(|i| format!("user-{i:04}"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_a_permanently_failed_request_are_sent_again_next_run() {
    let stack = Stack::start().await;
    stack.emulator.set_faults(Faults {
        fail_customer_id: Some("user-0075".into()),
        fail_customer_status: 400,
        ..Faults::default()
    });
    let deps = stack.deps(&[("FIELD_MAPPING", MAPPING)]).await;
    let first = run(
        &stack,
        &deps,
        "exports/1.csv.gz",
        snapshot(1..=200, |_| "free"),
    )
    .await;
    assert_eq!((first.rows_delivered, first.rows_dead_lettered), (150, 50));

    stack.emulator.set_faults(Faults::default());
    let before = stack.state().requests.len();
    let second = run(
        &stack,
        &deps,
        "exports/2.csv.gz",
        snapshot(1..=200, |_| "free"),
    )
    .await;
    assert_eq!(
        (second.rows_delivered, second.rows_unchanged),
        (50, 150),
        "the dead-lettered rows were never recorded: {second:?}"
    );
    let sent = sent_ids(&stack, before);
    assert!(sent.contains(&"user-0075".to_string()) && sent.len() == 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_change_resends_everything_once_then_goes_quiet() {
    let stack = Stack::start().await;
    let deps = stack.deps(&[("FIELD_MAPPING", MAPPING)]).await;
    run(
        &stack,
        &deps,
        "exports/1.csv.gz",
        snapshot(1..=100, |_| "free"),
    )
    .await;

    let remapped = stack
        .deps(&[(
            "FIELD_MAPPING",
            r#"{"customer_id":"user_id","email":"email","tier":"plan"}"#,
        )])
        .await;
    let second = run(
        &stack,
        &remapped,
        "exports/2.csv.gz",
        snapshot(1..=100, |_| "free"),
    )
    .await;
    assert_eq!(
        (second.rows_delivered, second.rows_unchanged),
        (100, 0),
        "{second:?}"
    );
    assert_eq!(stack.state().users["user-0001"]["tier"], "free");
    let third = run(
        &stack,
        &remapped,
        "exports/3.csv.gz",
        snapshot(1..=100, |_| "free"),
    )
    .await;
    assert_eq!(
        (
            third.rows_delivered,
            third.rows_unchanged,
            third.requests_sent
        ),
        (0, 100, 0),
        "{third:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_mode_never_creates_users() {
    let stack = Stack::start().await;
    let upsert = stack.deps(&[("FIELD_MAPPING", MAPPING)]).await;
    run(
        &stack,
        &upsert,
        "exports/seed.csv.gz",
        snapshot(1..=10, |_| "free"),
    )
    .await;

    let update = stack
        .deps(&[("FIELD_MAPPING", MAPPING), ("SYNC_MODE", "update")])
        .await;
    let obj = run(
        &stack,
        &update,
        "exports/upd.csv.gz",
        snapshot(1..=15, |_| "pro"),
    )
    .await;
    assert_eq!(obj.rows_delivered, 15, "{obj:?}");
    let state = stack.state();
    // Request 0 seeded 10 users; request 1 is the update run: every element carries the flag.
    let update_run: Vec<_> = state
        .accepted
        .iter()
        .chain(&state.skipped_not_existing)
        .filter(|e| e.request == 1)
        .collect();
    assert_eq!(update_run.len(), 15);
    assert!(
        update_run
            .iter()
            .all(|e| e.element["update_existing_only"] == json!(true)),
        "{update_run:?}"
    );
    assert_eq!(
        state.users.len(),
        10,
        "users 11–15 did not exist and must not be created"
    );
    assert_eq!(state.users["user-0003"]["plan"], "pro");
    assert_eq!(state.skipped_not_existing.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_files_of_one_snapshot_behave_as_one_snapshot() {
    let stack = Stack::start().await;
    let deps = stack.deps(&[("FIELD_MAPPING", MAPPING)]).await;
    // Snowflake-style parts, then the next day's parts with the rows shuffled between parts.
    let a = run(
        &stack,
        &deps,
        "exports/d1/data_0_0_0.csv.gz",
        snapshot(1..=150, |_| "free"),
    )
    .await;
    let b = run(
        &stack,
        &deps,
        "exports/d1/data_0_0_1.csv.gz",
        snapshot(151..=300, |_| "free"),
    )
    .await;
    assert_eq!(a.rows_delivered + b.rows_delivered, 300);
    let c = run(
        &stack,
        &deps,
        "exports/d2/data_0_0_0.csv.gz",
        snapshot((1..=300).filter(|i| i % 2 == 0), |_| "free"),
    )
    .await;
    let d = run(
        &stack,
        &deps,
        "exports/d2/data_0_0_1.csv.gz",
        snapshot((1..=300).filter(|i| i % 2 == 1), |i| {
            if i == 7 {
                "pro"
            } else {
                "free"
            }
        }),
    )
    .await;
    assert_eq!(
        (
            c.rows_delivered + d.rows_delivered,
            c.rows_unchanged + d.rows_unchanged
        ),
        (1, 299)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_resync_ignores_the_state_once_and_a_repeated_key_is_reported() {
    let stack = Stack::start().await;
    let deps = stack.deps(&[("FIELD_MAPPING", MAPPING)]).await;
    run(
        &stack,
        &deps,
        "exports/1.csv.gz",
        snapshot(1..=50, |_| "free"),
    )
    .await;

    let full = stack
        .deps(&[("FIELD_MAPPING", MAPPING), ("FULL_RESYNC", "true")])
        .await;
    let obj = run(
        &stack,
        &full,
        "exports/2.csv.gz",
        snapshot(1..=50, |_| "free"),
    )
    .await;
    assert_eq!((obj.rows_delivered, obj.rows_unchanged), (50, 0));
    let quiet = run(
        &stack,
        &deps,
        "exports/3.csv.gz",
        snapshot(1..=50, |_| "free"),
    )
    .await;
    assert_eq!(quiet.rows_unchanged, 50, "the rebuilt state is used again");

    // user-0001 twice with different plans: reported, and the last occurrence wins.
    let mut s = String::from("user_id,email,plan,internal_note\n");
    s.push_str("user-0900,a@example.com,free,x\nuser-0900,a@example.com,pro,x\n");
    let dup = run(&stack, &deps, "exports/dup.csv", s.into_bytes()).await;
    let report = stack.get_json(dup.report.as_deref().unwrap()).await;
    assert_eq!(report["duplicate_keys"], 1);
    assert!(
        report["warnings"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("occurred earlier"),
        "{report}"
    );
    assert_eq!(stack.state().users["user-0900"]["plan"], "pro");
}

/// A one-shard sync state straight on moto's S3, for tests of its writers: the store, where the
/// state lives, its options, and a user row's print (key, payload).
fn one_shard_state(
    stack: &Stack,
) -> (
    std::sync::Arc<dyn moengage_sync::state::StateStore>,
    moengage_sync::sync_state::SyncLocation,
    moengage_sync::sync_state::SyncOptions,
    impl Fn(&str, &str) -> moengage_sync::sync_state::RowPrint + Copy + Send + 'static,
) {
    use moengage_sync::model::{ElementKind, ObjectType, SyncMode};
    use moengage_sync::sync_state::{self, Fingerprinter, SyncLocation, SyncOptions};
    let location = SyncLocation::new(
        stack.bucket.clone(),
        "moengage-sync/",
        &sync_state::scope("WS", ObjectType::UserAttributes),
    );
    let options = SyncOptions {
        shard_bits: 0,
        ..SyncOptions::new(SyncMode::Upsert, false)
    };
    let fp = Fingerprinter::with_mapping_fingerprint(7);
    let print = move |key: &str, payload: &str| {
        fp.print(ElementKind::Customer, key.as_bytes(), payload.as_bytes())
    };
    (
        std::sync::Arc::new(stack.s3.clone()),
        location,
        options,
        print,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_merge_through_s3_compare_and_swap_without_false_deliveries() {
    use moengage_sync::model::ElementKind;
    use moengage_sync::sync_state::{SyncState, Verdict};

    let stack = Stack::start().await;
    // One shard, so the writers contend for the same S3 objects.
    let (store, location, options, print) = one_shard_state(&stack);

    let a = SyncState::open(store.clone(), location.clone(), options)
        .await
        .unwrap();
    let b = SyncState::open(store.clone(), location.clone(), options)
        .await
        .unwrap();
    // A delivers k1=A, k3=A; B delivers k2=B, k3=B (a different payload for k3), k4=B.
    let deliver = |s: SyncState, rows: Vec<(&'static str, &'static str)>| {
        tokio::task::spawn_blocking(move || {
            let prints: Vec<_> = rows.iter().map(|(k, p)| print(k, p)).collect();
            for p in &prints {
                assert!(s.classify(ElementKind::Customer, *p).unwrap().send);
            }
            s.record_delivered(&prints);
            s
        })
    };
    let a = deliver(a, vec![("k1", "A"), ("k3", "A")]).await.unwrap();
    let b = deliver(b, vec![("k2", "B"), ("k3", "B"), ("k4", "B")])
        .await
        .unwrap();
    b.save().await.unwrap();
    let report = a.save().await.unwrap();
    assert_eq!(
        (report.cas_retries, report.conflicts_dropped),
        (1, 1),
        "{report:?}"
    );

    // What MoEngage holds for k3 is uncertain (both were sent): the state must not claim either.
    let c = SyncState::open(store, location, options).await.unwrap();
    let verdicts = tokio::task::spawn_blocking(move || {
        [("k1", "A"), ("k2", "B"), ("k4", "B"), ("k3", "A")].map(|(k, p)| {
            c.classify(ElementKind::Customer, print(k, p))
                .unwrap()
                .verdict
        })
    })
    .await
    .unwrap();
    assert_eq!(
        verdicts,
        [
            Verdict::Unchanged,
            Verdict::Unchanged,
            Verdict::Unchanged,
            Verdict::New
        ]
    );
}

/// Saves as deltas against moto's real conditional writes: two writers race for one delta
/// number, the loser merges and takes the next; later saves write a delta each, and the 64th
/// compacts (a new base, the folded deltas deleted). A fresh reader sees exactly what was
/// delivered, and nothing contested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_race_merge_and_compact_through_s3_conditional_writes() {
    use moengage_sync::model::ElementKind;
    use moengage_sync::sync_state::{RowPrint, SyncState, Verdict};

    let stack = Stack::start().await;
    // One shard, so the writers contend for the same S3 objects.
    let (store, location, options, print) = one_shard_state(&stack);
    let open = || SyncState::open(store.clone(), location.clone(), options);
    let deliver = |s: SyncState, rows: Vec<(String, String)>| {
        tokio::task::spawn_blocking(move || {
            let prints: Vec<RowPrint> = rows.iter().map(|(k, p)| print(k, p)).collect();
            for p in &prints {
                assert!(s.classify(ElementKind::Customer, *p).unwrap().send);
            }
            s.record_delivered(&prints);
            s
        })
    };
    let rows = |keys: &[&str], payload: &str| -> Vec<(String, String)> {
        keys.iter()
            .map(|k| (k.to_string(), payload.to_string()))
            .collect()
    };
    let deltas_in_s3 = || async {
        stack
            .s3
            .list_objects_v2()
            .bucket(&stack.bucket)
            .prefix("moengage-sync/sync/")
            .send()
            .await
            .unwrap()
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.key.as_deref().is_some_and(|k| k.contains("/deltas/")))
            .count()
    };
    let mut expected: Vec<(String, String)> =
        (0..500).map(|i| (format!("u{i}"), "0".into())).collect();
    let first = deliver(open().await.unwrap(), expected.clone())
        .await
        .unwrap();
    let saved = first.save().await.unwrap();
    assert_eq!((saved.shards_written, saved.deltas_written), (1, 0));

    // A and B read the same version; B saves delta 0 first, A's delta 0 loses (412), A merges
    // with B's and writes delta 1; k3 went both ways, so it is dropped.
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    let a = deliver(a, [rows(&["k1", "k3"], "A"), rows(&["u1"], "A")].concat())
        .await
        .unwrap();
    let b = deliver(
        b,
        [rows(&["k2", "k3", "k4"], "B"), rows(&["u2"], "B")].concat(),
    )
    .await
    .unwrap();
    let saved = b.save().await.unwrap();
    assert_eq!(
        (
            saved.shards_written,
            saved.deltas_written,
            saved.cas_retries
        ),
        (0, 1, 0)
    );
    let saved = a.save().await.unwrap();
    assert_eq!(
        (
            saved.shards_written,
            saved.deltas_written,
            saved.cas_retries,
            saved.conflicts_dropped
        ),
        (0, 1, 1, 1),
        "{saved:?}"
    );
    assert!(saved.bytes_written < 300, "a delta of 3 entries: {saved:?}");
    assert_eq!(deltas_in_s3().await, 2);
    expected.retain(|(k, _)| k != "u1" && k != "u2");
    expected.extend([rows(&["k1", "u1"], "A"), rows(&["k2", "k4", "u2"], "B")].concat());

    // Saves 3..=63 write deltas; the 64th closes the generation and rewrites the base.
    for run in 3..=64 {
        let key = format!("u{}", 100 + run);
        let s = deliver(open().await.unwrap(), rows(&[&key], &format!("r{run}")))
            .await
            .unwrap();
        let saved = s.save().await.unwrap();
        expected.retain(|(k, _)| *k != key);
        expected.push((key, format!("r{run}")));
        let compacted = run == 64;
        assert_eq!(
            (saved.shards_written, saved.deltas_written),
            (u64::from(compacted), 1),
            "save {run}: {saved:?}"
        );
        if [3, 63, 64].contains(&run) {
            let want = if compacted { 0 } else { run };
            assert_eq!(deltas_in_s3().await, want as usize, "save {run}");
        }
    }

    let c = open().await.unwrap();
    let verdicts = tokio::task::spawn_blocking(move || {
        let mut out: Vec<(String, Verdict)> = expected
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    c.classify(ElementKind::Customer, print(k, p))
                        .unwrap()
                        .verdict,
                )
            })
            .collect();
        out.push((
            "k3".into(),
            c.classify(ElementKind::Customer, print("k3", "A"))
                .unwrap()
                .verdict,
        ));
        out
    })
    .await
    .unwrap();
    let (k3, rest) = verdicts.split_last().unwrap();
    assert_eq!(k3.1, Verdict::New, "k3 was contested");
    assert!(
        rest.iter().all(|(_, v)| *v == Verdict::Unchanged),
        "{:?}",
        rest.iter().find(|(_, v)| *v != Verdict::Unchanged)
    );
    assert_eq!(rest.len(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_reads_each_shard_from_s3_once_and_again_only_when_another_writer_changed_it(
) {
    let stack = Stack::start().await;
    let warm = stack.deps(&[("FIELD_MAPPING", MAPPING)]).await;
    let cache = warm
        .shard_cache
        .clone()
        .expect("STATE_CACHE_MB defaults on");
    for (part, ids) in [(0, 1..=200), (1, 201..=400)] {
        let o = run(
            &stack,
            &warm,
            &format!("exports/d1/part-{part}.csv.gz"),
            snapshot(ids, |_| "free"),
        )
        .await;
        assert_eq!(o.rows_delivered, 200, "{o:?}");
    }
    // The next day's snapshot, in the same warm instance: what the first day's parts saved is
    // still current, so no shard is downloaded again.
    let before = cache.stats();
    for (part, ids) in [(0, 1..=200), (1, 201..=400)] {
        let o = run(
            &stack,
            &warm,
            &format!("exports/d2/part-{part}.csv.gz"),
            snapshot(ids, |_| "free"),
        )
        .await;
        assert_eq!((o.rows_unchanged, o.rows_delivered), (200, 0), "{o:?}");
    }
    let after = cache.stats();
    assert_eq!(
        after.bytes_downloaded, before.bytes_downloaded,
        "{before:?} → {after:?}"
    );
    assert!(after.revalidated > before.revalidated, "{after:?}");

    // Another instance (a cold one) changes users 1-10: the warm instance downloads the shards
    // that changed, and its verdicts follow them.
    let other = stack.deps(&[("FIELD_MAPPING", MAPPING)]).await;
    let o = run(
        &stack,
        &other,
        "exports/d3/part-0.csv.gz",
        snapshot(1..=200, |i| if i <= 10 { "pro" } else { "free" }),
    )
    .await;
    assert_eq!(o.rows_delivered, 10, "{o:?}");
    let before = cache.stats();
    let o = run(
        &stack,
        &warm,
        "exports/d4/part-0.csv.gz",
        snapshot(1..=200, |i| if i <= 10 { "pro" } else { "free" }),
    )
    .await;
    assert_eq!((o.rows_unchanged, o.rows_delivered), (200, 0), "{o:?}");
    assert!(cache.stats().bytes_downloaded > before.bytes_downloaded);
}
