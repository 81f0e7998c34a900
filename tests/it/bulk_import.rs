//! Bulk Import end to end: gzip CSV in moto's S3 → real handler → the emulator's Transition API.

use moengage_sync::account::report::Status;
use serde_json::{json, Value};

use crate::support::{gzip, users_csv, Stack};

const MAPPING: &str = r#"{"customer_id":"user_id","email":"email","first_name":"first_name","city":"city","plan":"plan"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_csv_of_1000_rows_arrives_whole_in_batches_within_limits() {
    let stack = Stack::start().await;
    let deps = stack.deps(&[("FIELD_MAPPING", MAPPING)]).await;
    // A key with a space: S3 sends it URL-encoded and the handler must decode it.
    let key = "exports/users/users sample.csv.gz";
    stack.put(key, gzip(users_csv(1000).as_bytes())).await;

    let summary = stack.invoke(&deps, key).await;

    let obj = &summary.objects[0];
    assert_eq!(obj.status, Status::Complete, "{obj:?}");
    assert_eq!(
        (
            obj.rows_read,
            obj.rows_delivered,
            obj.rows_rejected,
            obj.rows_dead_lettered,
            obj.rows_pending
        ),
        (1000, 1000, 0, 0, 0)
    );
    assert!(obj.balanced());
    let state = stack.state();
    assert!(
        state.dropped.is_empty(),
        "MoEngage would have silently dropped: {:?}",
        state.dropped
    );
    assert_eq!(state.users.len(), 1000);
    assert_eq!(
        Value::Object(state.users["user-00007"].clone()),
        json!({"email":"user7@example.com","first_name":"Name 7","city":"City, 0","plan":"free"})
    );
    assert_eq!(state.requests.len(), 20, "1000 rows / 50 per request");
    assert_eq!(obj.requests_sent, 20);
    for r in &state.requests {
        assert_eq!(r.path, "/v1/transition/WORKSPACE1");
        assert!(r.elements <= 50 && r.bytes <= 100_000, "{r:?}");
    }
    // The run report is stored and agrees with the summary.
    let report = stack
        .get_json(obj.report.as_deref().expect("report location"))
        .await;
    assert_eq!(report["rows_delivered"], 1000);
    assert_eq!(report["accounting_balanced"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_3kb_fill_batches_to_the_byte_limit() {
    let stack = Stack::start().await;
    let deps = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;
    let mut csv = String::from("user_id,bio\n");
    let rows = 400;
    for i in 0..rows {
        csv.push_str(&format!("user-{i:05},{}\n", "b".repeat(3000)));
    }
    stack.put("exports/big.csv", csv.into_bytes()).await;

    let summary = stack.invoke(&deps, "exports/big.csv").await;

    let obj = &summary.objects[0];
    assert_eq!(
        (obj.rows_delivered, obj.rows_rejected),
        (rows, 0),
        "{obj:?}"
    );
    let state = stack.state();
    let total: usize = state.requests.iter().map(|r| r.bytes).sum();
    let minimum = total.div_ceil(100_000);
    assert!(
        state.requests.len() <= minimum + 1,
        "{} requests for {total} bytes: batches are not filled",
        state.requests.len()
    );
    assert!(state.requests.iter().all(|r| r.bytes <= 100_000));
    // Every full request is within one element of the limit.
    let element = total / rows as usize;
    // All but the last batch are full; requests go concurrently, so the last may arrive early.
    let mut sizes: Vec<usize> = state.requests.iter().map(|r| r.bytes).collect();
    sizes.sort_unstable();
    for bytes in &sizes[1..] {
        assert!(
            bytes + element > 100_000,
            "request of {bytes} bytes could have held another {element}-byte element"
        );
    }
    assert_eq!(state.users["user-00123"]["bio"], json!("b".repeat(3000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_api_key_fails_the_object_and_says_what_to_check() {
    let stack = Stack::start().await;
    let deps = stack
        .deps(&[
            ("MOENGAGE_API_KEY", "not-the-key"),
            ("MOENGAGE_DATA_CENTER", "DC-02"),
            ("PRIMARY_KEY", "user_id"),
            // One at a time, so "at once" is exactly one request (with more in flight, the
            // bodies already sent when the 401 arrives are answered 401 too, and nothing after).
            ("MAX_IN_FLIGHT", "1"),
        ])
        .await;
    stack
        .put("exports/u.csv.gz", gzip(users_csv(300).as_bytes()))
        .await;

    let summary = stack.invoke(&deps, "exports/u.csv.gz").await;

    let obj = &summary.objects[0];
    assert_eq!(obj.status, Status::Failed);
    assert_eq!(obj.rows_delivered, 0);
    assert!(obj.balanced(), "{obj:?}");
    let error = obj.error.as_deref().unwrap_or_default();
    for needle in [
        "DC-02",
        "dashboard-02.moengage.com",
        "Workspace ID",
        "WORKSPACE1",
        "Data API key",
    ] {
        assert!(
            error.contains(needle),
            "error should name {needle}: {error}"
        );
    }
    assert!(!error.contains("not-the-key"), "the key leaked: {error}");
    // It stopped at once: one request, nothing stored, nothing dead-lettered (the object reruns whole).
    assert_eq!(stack.state().requests.len(), 1);
    assert!(stack.state().users.is_empty());
    assert!(stack.dlq_messages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_wrapped_notification_is_processed_and_failures_are_reported_per_message() {
    let stack = Stack::start().await;
    let deps = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;
    stack.put("exports/a.csv", users_csv(10).into_bytes()).await;
    let event = json!({"Records":[
        {"messageId":"m-1","eventSource":"aws:sqs","body": crate::support::s3_event(&stack.bucket, "exports/a.csv").to_string()},
        {"messageId":"m-2","eventSource":"aws:sqs","body": crate::support::s3_event(&stack.bucket, "exports/missing.csv").to_string()},
        {"messageId":"m-3","eventSource":"aws:sqs","body": r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#}
    ]});

    let summary = stack.invoke_payload(&deps, event).await;

    assert_eq!(summary.objects.len(), 2);
    assert_eq!(summary.objects[0].rows_delivered, 10);
    assert_eq!(summary.objects[1].status, Status::Failed);
    assert!(summary.objects[1]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("exports/missing.csv"));
    let failures: Vec<_> = summary
        .batch_item_failures
        .unwrap()
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(failures, ["m-2"]);
    assert_eq!(stack.state().users.len(), 10);
}
