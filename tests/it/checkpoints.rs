//! Mid-run checkpoints (`CHECKPOINT_SECS`) and deadlines under concurrency.
//!
//! - The real `moengage-sync` binary runs as a Lambda function (against a minimal Lambda Runtime
//!   API served here), is killed with SIGKILL mid-object, and the retry finishes it: no row lost,
//!   and the rows sent twice stay within the bound the README states (what was in flight plus one
//!   checkpoint interval of requests), far fewer than the whole object.
//! - A deadline during a long hold-off (MoEngage's `x-ratelimit-reset`): the run checkpoints and
//!   continues before Lambda's timeout instead of sleeping through it.

use std::time::Duration;

use crate::support::{s3_event, Function, Stack};
use moengage_emulator::Faults;
use moengage_sync::account::report::Status;
use moengage_sync::app::{handler, Invocation};

fn users(n: usize) -> String {
    let mut s = String::from("user_id,email\n");
    for i in 1..=n {
        s.push_str(&format!("u-{i:05},u{i}@example.com\n"));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_object_resends_at_most_one_checkpoint_interval() {
    let stack = Stack::start().await;
    stack.emulator.set_faults(Faults {
        delay_ms: 50,
        ..Faults::default()
    });
    let rows = 2_000;
    stack.put("exports/big.csv", users(rows).into_bytes()).await;
    // 1,200 requests a minute (20 a second) of 10 rows: the object takes ~10 s.
    let overrides = [
        (
            "FIELD_MAPPING",
            r#"{"customer_id":"user_id","email":"email"}"#,
        ),
        ("BATCH_MAX_RECORDS", "10"),
        ("RATE_LIMIT_PER_MINUTE", "1200"),
        ("MAX_IN_FLIGHT", "8"),
        ("CHECKPOINT_SECS", "1"),
    ];
    let function = Function::start(
        &stack,
        &overrides,
        s3_event(&stack.bucket, "exports/big.csv"),
    )
    .await;

    // Kill it once about a third of the object has reached MoEngage.
    let started = std::time::Instant::now();
    while stack.deliveries_per_customer().len() < rows / 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the function did not get going"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    function.kill().await;
    let before = stack.deliveries_per_customer();
    assert!(before.len() < rows, "killed mid-object");

    // The marker says where the dead run got to; its lease runs out (here: at once).
    let marker_uri = {
        let etag = stack
            .s3
            .head_object()
            .bucket(&stack.bucket)
            .key("exports/big.csv")
            .send()
            .await
            .unwrap()
            .e_tag
            .unwrap();
        format!(
            "s3://{}/moengage-sync/runs/{}/exports/big.csv/{}.json",
            stack.bucket,
            stack.bucket,
            etag.trim_matches('"')
        )
    };
    let mut marker = stack.get_json(&marker_uri).await;
    let checkpoint = marker["resume_after_row"].as_u64().unwrap();
    assert_eq!(marker["status"], "running");
    assert!(
        checkpoint > 0,
        "a mid-run checkpoint was recorded: {marker}"
    );
    // SQS redelivers the notification while the dead run's lease is still live: the message is
    // not acknowledged and dropped, it comes back for a later retry.
    let deps = stack.deps(&overrides).await;
    let sqs_event = serde_json::json!({"Records": [{"messageId": "m-1", "receiptHandle": "r",
        "eventSource": "aws:sqs", "body": s3_event(&stack.bucket, "exports/big.csv").to_string()}]});
    let during = handler::handle(&deps, sqs_event, &Invocation::unbounded())
        .await
        .unwrap();
    assert!(during.objects.is_empty(), "{during:?}");
    assert_eq!(
        during.batch_item_failures.map(|f| f.len()),
        Some(1),
        "the redelivery comes back later"
    );

    marker["lease_until"] = 0.into();
    stack
        .put(
            marker_uri.split_once("exports-bucket/").unwrap().1,
            serde_json::to_vec(&marker).unwrap(),
        )
        .await;

    // The retry (SQS redelivers the notification) resumes from the checkpoint.
    let retry = handler::handle(
        &deps,
        s3_event(&stack.bucket, "exports/big.csv"),
        &Invocation::unbounded(),
    )
    .await
    .unwrap();
    let obj = &retry.objects[0];
    assert_eq!(obj.status, Status::Complete, "{retry:?}");
    assert!(obj.balanced(), "{obj:?}");
    assert_eq!(obj.rows_read, (rows as u64) - checkpoint, "{obj:?}");

    // No row lost; the rows sent twice are those after the checkpoint that had already landed.
    let after = stack.deliveries_per_customer();
    assert_eq!(after.len(), rows, "every row delivered");
    let twice = after.values().filter(|n| **n > 1).count();
    assert!(after.values().all(|n| *n <= 2));
    // README's bound: in flight (8 bodies) plus one interval of requests (20 a second × 1 s),
    // 10 rows each.
    let bound = (8 + 20) * 10;
    eprintln!(
        "killed: {} delivered, checkpoint {checkpoint}, {twice} sent twice",
        before.len()
    );
    assert!(
        twice <= bound,
        "{twice} rows sent twice; the bound is {bound} (checkpoint at row {checkpoint}, {} delivered before the kill)",
        before.len()
    );
    assert!(
        (twice as u64) < checkpoint,
        "far fewer than restarting from the top"
    );

    // The sync state ends up holding what MoEngage accepted, crash or not: the same snapshot
    // again sends nothing, and a copy with one email changed sends exactly that row.
    stack
        .put("exports/big-again.csv", users(rows).into_bytes())
        .await;
    let again = handler::handle(
        &deps,
        s3_event(&stack.bucket, "exports/big-again.csv"),
        &Invocation::unbounded(),
    )
    .await
    .unwrap();
    let obj = &again.objects[0];
    assert_eq!(
        (obj.rows_unchanged, obj.rows_delivered, obj.requests_sent),
        (rows as u64, 0, 0),
        "{obj:?}"
    );
    let changed = users(rows).replace("u1500@example.com", "u1500@changed.example.com");
    stack
        .put("exports/big-changed.csv", changed.into_bytes())
        .await;
    let once = handler::handle(
        &deps,
        s3_event(&stack.bucket, "exports/big-changed.csv"),
        &Invocation::unbounded(),
    )
    .await
    .unwrap();
    let obj = &once.objects[0];
    assert_eq!(
        (obj.rows_unchanged, obj.rows_delivered),
        (rows as u64 - 1, 1),
        "{obj:?}"
    );
    assert_eq!(
        stack.deliveries_per_customer()["u-01500"],
        after["u-01500"] + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_during_a_long_hold_off_checkpoints_and_continues_in_time() {
    let stack = Stack::start().await;
    stack.put("exports/u.csv", users(200).into_bytes()).await;
    let deps = stack
        .deps(&[
            ("PRIMARY_KEY", "user_id"),
            ("BATCH_MAX_RECORDS", "10"),
            ("DEADLINE_MARGIN_SECS", "0"),
        ])
        .await;
    // After the first requests, MoEngage says the window is spent for the next 40 s.
    stack.emulator.set_faults(Faults {
        rate_limit_per_minute: Some(3),
        ..Faults::default()
    });
    let inv = Invocation {
        deadline: Some(tokio::time::Instant::now() + Duration::from_secs(3)),
        ..Invocation::unbounded()
    };
    let started = std::time::Instant::now();
    let first = handler::handle(&deps, s3_event(&stack.bucket, "exports/u.csv"), &inv)
        .await
        .unwrap();
    let took = started.elapsed();
    let obj = &first.objects[0];
    assert_eq!(obj.status, Status::Continued, "{first:?}");
    assert!(obj.balanced(), "{obj:?}");
    assert!(obj.rows_pending > 0 && obj.rows_delivered > 0, "{obj:?}");
    // It did not sleep through the hold-off past the deadline.
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        first
            .notes
            .iter()
            .any(|n| n.contains("continues after row")),
        "{:?}",
        first.notes
    );
}
