//! Mirror mode end to end (moto + the emulator's Delete Users): users who leave a complete
//! snapshot are deleted — only users this sync delivered, only once the snapshot is complete, and
//! never more than the guard allows.

use moengage_emulator::Faults;
use moengage_sync::account::report::{ObjectSummary, RunReport, Status};
use moengage_sync::model::Endpoint;
use serde_json::{json, Value};

use crate::support::{gzip, Stack};

const MAPPING: &str = r#"{"customer_id":"user_id","email":"email"}"#;

fn users(ids: impl Iterator<Item = usize>) -> Vec<u8> {
    let mut s = String::from("user_id,email\n");
    for i in ids {
        s.push_str(&format!("user-{i:03},u{i}@example.com\n"));
    }
    gzip(s.as_bytes())
}

fn id(i: usize) -> String {
    format!("user-{i:03}")
}

async fn mirror_deps(stack: &Stack, more: &[(&str, &str)]) -> moengage_sync::app::Deps {
    let mut vars = vec![
        ("FIELD_MAPPING", MAPPING),
        ("OBJECT_TYPE", "user_attributes"),
        ("SYNC_MODE", "mirror"),
        ("RETRY_MAX_ATTEMPTS", "2"),
    ];
    vars.extend_from_slice(more);
    stack.deps(&vars).await
}

/// Puts `key` and invokes the handler for it; returns every summary line (the object's, then
/// the folder's deletion pass when it ran).
async fn land(
    stack: &Stack,
    deps: &moengage_sync::app::Deps,
    key: &str,
    body: Vec<u8>,
) -> Vec<ObjectSummary> {
    stack.put(key, body).await;
    stack.invoke(deps, key).await.objects
}

/// Puts the folder's `_SUCCESS` and invokes the handler for it.
async fn mark(stack: &Stack, deps: &moengage_sync::app::Deps, folder: &str) -> Vec<ObjectSummary> {
    land(stack, deps, &format!("{folder}_SUCCESS"), Vec::new()).await
}

/// What the deletion pass among `lines` did; it must have run.
fn deleted_by(lines: &[ObjectSummary]) -> Box<moengage_sync::account::report::MirrorSummary> {
    let line = pass(lines).unwrap_or_else(|| panic!("the pass ran: {lines:?}"));
    line.mirror.clone().unwrap_or_default()
}

/// The deletion pass's line among `lines`.
fn pass(lines: &[ObjectSummary]) -> Option<&ObjectSummary> {
    lines.iter().find(|l| l.mirror.is_some())
}

fn deleted(stack: &Stack) -> Vec<String> {
    let mut d = stack.state().deleted_customers;
    d.sort();
    d
}

fn delete_calls(stack: &Stack) -> usize {
    stack
        .state()
        .requests
        .iter()
        .filter(|r| r.endpoint == "delete")
        .count()
}

/// Snapshot 1 (users 1–100) delivered and marked complete: its pass deletes nothing.
async fn snapshot_one(stack: &Stack, deps: &moengage_sync::app::Deps) {
    let lines = land(
        stack,
        deps,
        "exports/users/dt=1/part-0.csv.gz",
        users(1..=100),
    )
    .await;
    assert_eq!(lines[0].rows_delivered, 100, "{lines:?}");
    let lines = mark(stack, deps, "exports/users/dt=1/").await;
    let m = deleted_by(&lines);
    assert_eq!((m.users_to_delete, m.users_in_state), (0, 100), "{lines:?}");
    assert_eq!(delete_calls(stack), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_who_leave_a_complete_snapshot_are_deleted_and_forgotten() {
    let stack = Stack::start().await;
    let deps = mirror_deps(&stack, &[]).await;
    snapshot_one(&stack, &deps).await;

    // Snapshot 2: 96 of them (1–4 left) and 3 new users.
    let lines = land(
        &stack,
        &deps,
        "exports/users/dt=2/part-0.csv.gz",
        users((5..=100).chain(101..=103)),
    )
    .await;
    assert_eq!((lines[0].rows_delivered, lines[0].rows_unchanged), (3, 96));
    assert!(pass(&lines).is_none(), "no marker yet: {lines:?}");
    assert_eq!(delete_calls(&stack), 0);

    let lines = mark(&stack, &deps, "exports/users/dt=2/").await;
    let line = pass(&lines).expect("the pass ran");
    assert_eq!(line.status, Status::Complete, "{line:?}");
    assert_eq!(line.key, "exports/users/dt=2/");
    let m = line.mirror.clone().unwrap();
    assert_eq!(
        (
            m.users_to_delete,
            m.users_deleted,
            m.deletes_dead_lettered,
            m.deletes_pending
        ),
        (4, 4, 0, 0),
        "{m:?}"
    );
    assert!(m.balanced());
    assert_eq!(delete_calls(&stack), 4);
    assert_eq!(deleted(&stack), (1..=4).map(id).collect::<Vec<_>>());
    let state = stack.state();
    for i in 101..=103 {
        assert!(state.users.contains_key(&id(i)), "user {i} created");
    }
    assert_eq!(state.users.len(), 99);
    // The exact body MoEngage documents.
    let body = state
        .requests
        .iter()
        .find(|r| r.endpoint == "delete")
        .map(|r| r.customer_ids.clone())
        .unwrap();
    assert_eq!(body.len(), 1);
    // The report stored in S3 says the same.
    let report: RunReport =
        serde_json::from_value(stack.get_json(line.report.as_deref().unwrap()).await).unwrap();
    assert_eq!(report.summary.mirror, line.mirror);

    // The four left the sync state: an identical snapshot 3 deletes no one and asks nothing.
    land(
        &stack,
        &deps,
        "exports/users/dt=3/part-0.csv.gz",
        users((5..=100).chain(101..=103)),
    )
    .await;
    let lines = mark(&stack, &deps, "exports/users/dt=3/").await;
    let m = deleted_by(&lines);
    assert_eq!((m.users_to_delete, m.users_in_state), (0, 99), "{m:?}");
    assert_eq!(delete_calls(&stack), 4);

    // The same marker again: the pass ran already, nothing more happens.
    let again = stack.invoke(&deps, "exports/users/dt=3/_SUCCESS").await;
    assert!(pass(&again.objects).is_none(), "{again:?}");
    assert_eq!(delete_calls(&stack), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_before_the_last_part_waits_for_it_then_deletes_once() {
    let stack = Stack::start().await;
    let deps = mirror_deps(&stack, &[]).await;
    snapshot_one(&stack, &deps).await;

    // Snapshot 2 in two parts; users 1–3 left. Its marker lands before part 1 is processed.
    land(
        &stack,
        &deps,
        "exports/users/dt=2/part-0.csv.gz",
        users(4..=50),
    )
    .await;
    stack
        .put("exports/users/dt=2/part-1.csv.gz", users(51..=100))
        .await;
    stack.put("exports/users/dt=2/_SUCCESS", Vec::new()).await;
    let early = stack.invoke(&deps, "exports/users/dt=2/_SUCCESS").await;
    assert!(pass(&early.objects).is_none(), "{early:?}");
    assert!(
        early.notes.iter().any(|n| n.contains("waits for 1 of 2")),
        "{:?}",
        early.notes
    );
    assert_eq!(delete_calls(&stack), 0);

    // Part 1's run completes the snapshot: the pass runs right after it.
    let lines = stack
        .invoke(&deps, "exports/users/dt=2/part-1.csv.gz")
        .await
        .objects;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let m = deleted_by(&lines);
    assert_eq!((m.users_to_delete, m.users_deleted), (3, 3), "{m:?}");
    assert_eq!(deleted(&stack), (1..=3).map(id).collect::<Vec<_>>());

    // Part 0's notification delivered again, and the marker again: once is all.
    stack
        .invoke(&deps, "exports/users/dt=2/part-0.csv.gz")
        .await;
    stack.invoke(&deps, "exports/users/dt=2/_SUCCESS").await;
    assert_eq!(delete_calls(&stack), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_empty_snapshot_is_refused_until_a_reviewed_work_item_lets_it_through() {
    let stack = Stack::start().await;
    let deps = mirror_deps(&stack, &[]).await;
    snapshot_one(&stack, &deps).await;

    land(
        &stack,
        &deps,
        "exports/users/dt=3/part-0.csv.gz",
        users(51..=100),
    )
    .await;
    let lines = mark(&stack, &deps, "exports/users/dt=3/").await;
    let line = pass(&lines).expect("the pass ran");
    let m = line.mirror.clone().unwrap();
    assert!(m.mirror_refused, "{line:?}");
    assert_eq!(line.status, Status::Failed);
    assert_eq!(
        (
            m.users_to_delete,
            m.users_deleted,
            m.deletes_pending,
            m.users_in_state
        ),
        (50, 0, 50, 100)
    );
    assert!(m.balanced());
    assert_eq!(m.first_ids.len(), 20);
    assert_eq!(
        m.first_ids
            .iter()
            .filter(|i| i.as_str() <= "user-050")
            .count(),
        20
    );
    let error = line.error.clone().unwrap();
    assert!(error.contains("MIRROR_MAX_DELETE_PERCENT"), "{error}");
    assert!(error.contains("max_delete_percent"), "{error}");
    assert_eq!(delete_calls(&stack), 0);
    // The metric (and its alarm) say so.
    let report: RunReport =
        serde_json::from_value(stack.get_json(line.report.as_deref().unwrap()).await).unwrap();
    let emf = moengage_sync::account::metrics::emf(&report, "user_attributes", "f");
    assert_eq!(emf["MirrorRefused"], 1);
    assert_eq!(emf["UsersDeleted"], 0);

    // Reviewed: a work item raises the limit for this snapshot.
    let item = json!({"mirror": {"bucket": stack.bucket, "prefix": "exports/users/dt=3/", "max_delete_percent": 60}});
    let summary = stack.invoke_payload(&deps, item).await;
    let m = pass(&summary.objects)
        .expect("the pass ran")
        .mirror
        .clone()
        .unwrap();
    assert_eq!(
        (m.users_to_delete, m.users_deleted, m.mirror_refused),
        (50, 50, false),
        "{summary:?}"
    );
    assert_eq!(deleted(&stack), (1..=50).map(id).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_this_sync_never_delivered_is_never_deleted() {
    let stack = Stack::start().await;
    let deps = mirror_deps(&stack, &[]).await;
    // Someone else (the SDK, another tool) creates a user this sync never sent.
    let other = deps
        .moengage
        .post(
            Endpoint::Customer,
            bytes::Bytes::from_static(
                br#"{"type":"customer","customer_id":"app-user-1","attributes":{"email":"a@b.c"}}"#,
            ),
        )
        .await
        .unwrap();
    assert_eq!(other.status, 200);
    snapshot_one(&stack, &deps).await;
    land(
        &stack,
        &deps,
        "exports/users/dt=2/part-0.csv.gz",
        users(2..=100),
    )
    .await;
    let lines = mark(&stack, &deps, "exports/users/dt=2/").await;
    let m = deleted_by(&lines);
    assert_eq!((m.users_to_delete, m.users_deleted), (1, 1));
    assert_eq!(deleted(&stack), vec![id(1)]);
    assert!(stack.state().users.contains_key("app-user-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_unknown_deletes_are_all_accounted_for_and_redrive_finishes_them() {
    let stack = Stack::start().await;
    let deps = mirror_deps(&stack, &[("MIRROR_MAX_DELETE_PERCENT", "10")]).await;
    snapshot_one(&stack, &deps).await;
    // user-001 is already gone from MoEngage (deleted by hand): its delete gets 400 Not Found.
    let gone = deps
        .moengage
        .post(
            Endpoint::Delete,
            moengage_sync::app::mirror::delete_body(b"user-001"),
        )
        .await
        .unwrap();
    assert_eq!(gone.status, 200);
    // MoEngage fails two deletes every time.
    stack.emulator.set_faults(Faults {
        fail_customer_ids: vec![id(3), id(5)],
        fail_customer_status: 500,
        ..Faults::default()
    });
    land(
        &stack,
        &deps,
        "exports/users/dt=2/part-0.csv.gz",
        users(7..=100),
    )
    .await;
    let lines = mark(&stack, &deps, "exports/users/dt=2/").await;
    let line = pass(&lines).expect("the pass ran");
    let m = line.mirror.clone().unwrap();
    assert_eq!(
        (
            m.users_to_delete,
            m.users_deleted,
            m.deletes_dead_lettered,
            m.deletes_pending
        ),
        (6, 4, 2, 0),
        "{line:?}"
    );
    assert!(m.balanced());
    assert_eq!(line.status, Status::Complete);
    // 1 counts as deleted (it was already gone), 2, 4 and 6 were deleted now.
    assert_eq!(deleted(&stack), vec![id(1), id(2), id(4), id(6)]);
    // The two failures are in the dead-letter queue with their exact bodies.
    let dlq = stack.dlq_messages().await;
    let mut failed: Vec<Value> = dlq.iter().map(|m| m["payload"].clone()).collect();
    failed.sort_by_key(|p| p.to_string());
    assert_eq!(
        failed,
        vec![
            json!({"identity_type":"customer_id","identity_value":"user-003"}),
            json!({"identity_type":"customer_id","identity_value":"user-005"}),
        ]
    );
    assert!(dlq
        .iter()
        .all(|m| m["kind"] == "delete" && m["error"]["status"] == 500));

    // user-003's cause is fixed, user-005's not yet: redrive replays what it can.
    stack.emulator.set_faults(Faults {
        fail_customer_ids: vec![id(5)],
        fail_customer_status: 500,
        ..Faults::default()
    });
    let redrive: Value = serde_json::from_str(include_str!("../../events/redrive.json")).unwrap();
    let summary = stack.invoke_payload(&deps, redrive.clone()).await;
    let r = summary.redrive.expect("redrive report");
    assert_eq!((r.replayed, r.delivered), (2, 1), "{r:?}");
    assert_eq!(r.still_failing.len(), 1, "{r:?}");
    assert_eq!(deleted(&stack), [1, 2, 3, 4, 6].map(id).to_vec());

    // Meanwhile the next export lands, and user-005 is back in it (a new email): delivered again.
    stack.emulator.set_faults(Faults::default());
    next_second().await;
    let mut back = String::from("user_id,email\n");
    for i in std::iter::once(5).chain(7..=100) {
        let email = if i == 5 {
            "new5@example.com".to_string()
        } else {
            format!("u{i}@example.com")
        };
        back.push_str(&format!("user-{i:03},{email}\n"));
    }
    let lines = land(
        &stack,
        &deps,
        "exports/users/dt=3/part-0.csv.gz",
        gzip(back.as_bytes()),
    )
    .await;
    assert_eq!(lines[0].rows_delivered, 1, "{lines:?}");

    // Now user-005's old deletion is obsolete: redrive drops it rather than delete a user who is
    // back in the warehouse.
    let summary = stack.invoke_payload(&deps, redrive).await;
    let r = summary.redrive.expect("redrive report");
    assert_eq!((r.replayed, r.delivered, r.obsolete), (1, 0, 1), "{r:?}");
    assert_eq!(r.left_in_queue, Some(0), "{r:?}");
    assert_eq!(deleted(&stack), [1, 2, 3, 4, 6].map(id).to_vec());
    assert_eq!(stack.state().users[&id(5)]["email"], "new5@example.com");

    // user-003 left the sync state with its redriven deletion: snapshot 3's pass finds no one
    // to delete among the 95 users it holds.
    let lines = mark(&stack, &deps, "exports/users/dt=3/").await;
    let m = deleted_by(&lines);
    assert_eq!((m.users_to_delete, m.users_in_state), (0, 95), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_deletes_agrees_with_the_pass_and_changes_nothing() {
    let stack = Stack::start().await;
    let deps = mirror_deps(&stack, &[]).await;
    snapshot_one(&stack, &deps).await;
    land(
        &stack,
        &deps,
        "exports/users/dt=2/part-0.csv.gz",
        users((1..=100).filter(|i| i % 10 != 0)),
    )
    .await;
    let requests = stack.state().requests.len();
    let syncs = deps.config.syncs.clone();
    let p = moengage_sync::app::mirror::preview(
        &deps,
        &syncs,
        &stack.bucket,
        "exports/users/dt=2/",
        None,
    )
    .await
    .unwrap();
    assert_eq!((p.users_to_delete, p.users_in_state), (10, 100));
    assert!(p.refused.is_some(), "10 % is over the default 5 %: {p:?}");
    let mut want: Vec<String> = (1..=10).map(|k| id(k * 10)).collect();
    let mut got = p.first_ids.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    let allowed = moengage_sync::app::mirror::preview(
        &deps,
        &syncs,
        &stack.bucket,
        "exports/users/dt=2/",
        Some(10),
    )
    .await
    .unwrap();
    assert!(allowed.refused.is_none(), "{allowed:?}");
    // The command people run says the same.
    let env = [
        ("FIELD_MAPPING", MAPPING),
        ("OBJECT_TYPE", "user_attributes"),
        ("SYNC_MODE", "mirror"),
    ];
    let folder = format!("s3://{}/exports/users/dt=2/", stack.bucket);
    let text = crate::cli::run(&stack, &env, &["preview", "--deletes", &folder]).await;
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert!(
        text.stdout.contains("10 of the 100 users") && text.stdout.contains("REFUSE"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("user-100"), "{}", text.stdout);
    let json = crate::cli::run(
        &stack,
        &env,
        &[
            "preview",
            "--deletes",
            &folder,
            "--json",
            "--max-delete-percent",
            "10",
        ],
    )
    .await;
    let doc: Value = serde_json::from_str(&json.stdout).expect(&json.stderr);
    assert_eq!(
        (doc["users_to_delete"].as_u64(), doc["refused"].is_null()),
        (Some(10), true)
    );
    assert_eq!(
        stack.state().requests.len(),
        requests,
        "the preview sent nothing"
    );

    // The pass does what the preview said: refused, then through with the same limit.
    let lines = mark(&stack, &deps, "exports/users/dt=2/").await;
    assert!(
        pass(&lines)
            .unwrap()
            .mirror
            .as_ref()
            .unwrap()
            .mirror_refused
    );
    let item = json!({"mirror": {"bucket": stack.bucket, "prefix": "exports/users/dt=2/", "max_delete_percent": 10}});
    let summary = stack.invoke_payload(&deps, item).await;
    let m = pass(&summary.objects).unwrap().mirror.clone().unwrap();
    assert_eq!(m.users_deleted, p.users_to_delete);
    assert_eq!(deleted(&stack), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_is_a_configuration_error_for_events() {
    let stack = Stack::start().await;
    let mut env = stack.env();
    env.insert("OBJECT_TYPE".into(), "events".into());
    env.insert("SYNC_MODE".into(), "mirror".into());
    env.insert(
        "FIELD_MAPPING".into(),
        r#"{"customer_id":"user_id","action":"event"}"#.into(),
    );
    let err = moengage_sync::config::Config::from_lookup(|k| env.get(k).cloned())
        .expect_err("mirror with events");
    let text = err.to_string();
    assert!(
        text.contains("SYNC_MODE") && text.contains("events"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_cut_by_the_deadline_continues_where_it_stopped() {
    let stack = Stack::start().await;
    let deps = mirror_deps(
        &stack,
        &[
            ("MIRROR_MAX_DELETE_PERCENT", "30"),
            ("DEADLINE_MARGIN_SECS", "0"),
        ],
    )
    .await;
    snapshot_one(&stack, &deps).await;
    land(
        &stack,
        &deps,
        "exports/users/dt=2/part-0.csv.gz",
        users(21..=100),
    )
    .await;
    // Each delete takes 300 ms: a 2.5 s invocation (reading the snapshot and the state first)
    // does at most a few of the 20.
    stack.emulator.set_faults(Faults {
        delay_ms: 300,
        ..Faults::default()
    });
    stack.put("exports/users/dt=2/_SUCCESS", Vec::new()).await;
    let inv = moengage_sync::app::Invocation {
        deadline: Some(tokio::time::Instant::now() + std::time::Duration::from_millis(2_500)),
        ..moengage_sync::app::Invocation::unbounded()
    };
    let first = moengage_sync::app::handler::handle(
        &deps,
        crate::support::s3_event(&stack.bucket, "exports/users/dt=2/_SUCCESS"),
        &inv,
    )
    .await
    .unwrap();
    let line = pass(&first.objects).expect("the pass ran");
    assert_eq!(line.status, Status::Continued, "{line:?}");
    let m1 = line.mirror.clone().unwrap();
    assert!(m1.balanced(), "{m1:?}");
    assert_eq!(m1.users_to_delete, 20);
    // How many fit depends on the machine: none, under load.
    assert!(m1.users_deleted < 20, "{m1:?}");
    assert_eq!(m1.deletes_pending, 20 - m1.users_deleted);

    // The continuation is a work item; it deletes the rest, each user once.
    stack.emulator.set_faults(Faults::default());
    let work = stack.work_queue_as_sqs_event().await;
    assert_eq!(work["Records"].as_array().unwrap().len(), 1, "{work}");
    let second = stack.invoke_payload(&deps, work).await;
    let line = pass(&second.objects).expect("the pass continued");
    assert_eq!(line.status, Status::Complete, "{second:?}");
    let m2 = line.mirror.clone().unwrap();
    assert!(m2.balanced());
    assert_eq!(m2.users_to_delete, m1.deletes_pending, "{m2:?}");
    assert_eq!(m1.users_deleted + m2.users_deleted, 20);
    let d = stack.state().deleted_customers;
    assert_eq!(d.len(), 20, "each deleted once: {d:?}");
    assert_eq!(deleted(&stack), (1..=20).map(id).collect::<Vec<_>>());
}

/// S3 times are whole seconds: what must be newer lands in a later second.
async fn next_second() {
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_snapshot_never_deletes_what_a_newer_export_delivered() {
    let stack = Stack::start().await;
    let deps = mirror_deps(&stack, &[]).await;
    land(
        &stack,
        &deps,
        "exports/users/dt=1/part-0.csv.gz",
        users(1..=100),
    )
    .await;
    next_second().await;
    // The next day's export lands (and is synced) before the first one's marker arrives.
    land(
        &stack,
        &deps,
        "exports/users/dt=2/part-0.csv.gz",
        users(1..=103),
    )
    .await;
    let lines = mark(&stack, &deps, "exports/users/dt=1/").await;
    assert!(pass(&lines).is_none(), "{lines:?}");
    assert_eq!(delete_calls(&stack), 0);
    assert_eq!(stack.state().users.len(), 103);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_file_named_manifest_is_data_and_a_stale_marker_completes_nothing() {
    let stack = Stack::start().await;
    let deps = mirror_deps(&stack, &[("MIRROR_MAX_DELETE_PERCENT", "50")]).await;
    // A reused folder: parts and a marker.
    land(
        &stack,
        &deps,
        "exports/users/latest/part-0.csv.gz",
        users(1..=50),
    )
    .await;
    let lines = land(
        &stack,
        &deps,
        "exports/users/latest/vip_manifest_users.csv.gz",
        users(51..=100),
    )
    .await;
    assert_eq!(
        lines[0].rows_delivered, 50,
        "a data file, synced: {lines:?}"
    );
    let lines = mark(&stack, &deps, "exports/users/latest/").await;
    let m = deleted_by(&lines);
    assert_eq!((m.users_to_delete, m.users_in_state), (0, 100), "{m:?}");

    // The next day rewrites part-0 first (users 3–52); yesterday's _SUCCESS is still there and
    // the other file is yesterday's. Not complete: nobody is deleted (1 and 2 are in the new
    // export's other file, which has not landed yet).
    next_second().await;
    let lines = land(
        &stack,
        &deps,
        "exports/users/latest/part-0.csv.gz",
        users(3..=52),
    )
    .await;
    assert!(pass(&lines).is_none(), "{lines:?}");
    assert_eq!(delete_calls(&stack), 0);
    // Its own marker then lands: now the folder is a complete snapshot, and 1 and 2 left it.
    let lines = mark(&stack, &deps, "exports/users/latest/").await;
    let m = deleted_by(&lines);
    assert_eq!((m.users_to_delete, m.users_deleted), (2, 2), "{m:?}");
    assert_eq!(deleted(&stack), vec![id(1), id(2)]);
}
