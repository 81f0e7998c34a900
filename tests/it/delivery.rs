//! Delivery guarantees end to end: every row read is delivered, rejected, dead-lettered with its
//! exact payload, or pending in a continuation — whatever MoEngage, S3, SQS or Lambda do.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moengage_emulator::Faults;
use moengage_sync::account::report::Status;
use moengage_sync::app::{handler, Invocation};
use moengage_sync::deliver::dead_letter::{DeadLetterError, DeadLetterMessage, DeadLetterSink};
use moengage_sync::source::{ListedObject, ObjectMeta, ObjectSource, SourceError, SourceObject};
use serde_json::{json, Value};
use tokio::io::AsyncRead;

use crate::support::{gzip, s3_event, users_csv, Stack};

const ROWS: usize = 300;

fn users_key() -> &'static str {
    "exports/users.csv.gz"
}

async fn stack_with_users() -> Stack {
    let stack = Stack::start().await;
    stack
        .put(users_key(), gzip(users_csv(ROWS).as_bytes()))
        .await;
    stack
}

/// Every user delivered exactly once, across all the runs so far.
fn assert_each_delivered_once(stack: &Stack) {
    let per = stack.deliveries_per_customer();
    assert_eq!(per.len(), ROWS, "distinct users delivered");
    let repeats: Vec<_> = per.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeats.is_empty(), "delivered more than once: {repeats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_5xx_and_connection_resets_are_retried_until_every_row_arrives() {
    let stack = stack_with_users().await;
    stack.emulator.set_faults(Faults {
        fail_first_n: 3,
        fail_status: 500,
        reset_probability: 0.05,
        ..Faults::default()
    });
    let deps = stack
        .deps(&[("PRIMARY_KEY", "user_id"), ("RETRY_MAX_ATTEMPTS", "10")])
        .await;

    let obj = stack.invoke(&deps, users_key()).await.objects.remove(0);

    assert_eq!(
        (obj.status, obj.rows_delivered, obj.rows_dead_lettered),
        (Status::Complete, ROWS as u64, 0),
        "{obj:?}"
    );
    assert!(
        obj.requests_sent >= 6 + 3,
        "3 injected 500s must have been retried: {obj:?}"
    );
    assert!(stack.dlq_messages().await.is_empty());
    assert_eq!(stack.state().users.len(), ROWS);
    assert_each_delivered_once(&stack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_is_backed_off_and_retries_stay_within_the_pace() {
    let stack = stack_with_users().await;
    stack.emulator.set_faults(Faults {
        fail_first_n: 5,
        fail_status: 429,
        ..Faults::default()
    });
    // 600 requests/min → one every ~103 ms, retries included.
    let deps = stack
        .deps(&[
            ("PRIMARY_KEY", "user_id"),
            ("RATE_LIMIT_PER_MINUTE", "600"),
            ("RETRY_MAX_ATTEMPTS", "8"),
        ])
        .await;

    let summary = stack.invoke(&deps, users_key()).await;

    let obj = &summary.objects[0];
    assert_eq!(
        (obj.status, obj.rows_delivered),
        (Status::Complete, ROWS as u64),
        "{obj:?}"
    );
    let report = stack.get_json(obj.report.as_deref().unwrap()).await;
    assert_eq!(report["rate_limited"], 5);
    assert_eq!(report["retries"], 5);
    let requests = stack.state().requests;
    assert_eq!(requests.len(), 6 + 5);
    // No request jumped the pacer, retries included: an unpaced retry would follow within the
    // 10 ms backoff. Arrival times jitter by a few ms, so the span is checked as a whole.
    let interval = Duration::from_secs_f64(60.0 / (600.0 * 0.97));
    for pair in requests.windows(2) {
        let gap = (pair[1].timestamp - pair[0].timestamp)
            .to_std()
            .unwrap_or_default();
        assert!(
            gap >= interval - Duration::from_millis(25),
            "requests {gap:?} apart: over budget"
        );
    }
    let span = (requests[requests.len() - 1].timestamp - requests[0].timestamp)
        .to_std()
        .unwrap_or_default();
    assert!(
        span >= interval * (requests.len() as u32 - 1) - Duration::from_millis(25),
        "{span:?}"
    );
    assert!(stack.dlq_messages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_400_dead_letters_that_exact_body_and_redrive_delivers_it() {
    let stack = stack_with_users().await;
    stack.emulator.set_faults(Faults {
        fail_customer_id: Some("user-00123".into()),
        fail_customer_status: 400,
        ..Faults::default()
    });
    let deps = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;

    let obj = stack.invoke(&deps, users_key()).await.objects.remove(0);

    // Rows 101–150 travel together; only that body fails.
    assert_eq!(
        (obj.rows_delivered, obj.rows_dead_lettered, obj.rows_read),
        (250, 50, 300),
        "{obj:?}"
    );
    assert!(obj.balanced());
    let dlq = stack.dlq_messages().await;
    assert_eq!(dlq.len(), 1);
    let m = &dlq[0];
    assert_eq!(
        (
            m["source"]["first_row"].as_u64(),
            m["source"]["last_row"].as_u64()
        ),
        (Some(101), Some(150))
    );
    assert_eq!(m["source"]["key"], users_key());
    assert_eq!(m["endpoint"], "/v1/transition/WORKSPACE1");
    assert_eq!(m["error"]["status"], 400);
    assert_eq!(m["records"], 50);
    let elements = m["payload"]["elements"]
        .as_array()
        .expect("payload is the Transition body");
    assert_eq!(elements.len(), 50);
    assert_eq!(
        elements[22],
        json!({"type":"customer","customer_id":"user-00123","attributes":{"email":"user123@example.com","first_name":"Name 123","city":"City, 4","plan":"free"}})
    );
    // The payload's bytes are what went on the wire: same length as the failed request.
    let failed = stack
        .state()
        .requests
        .into_iter()
        .find(|r| r.status == Some(400))
        .expect("the failed request");
    assert_eq!(
        serde_json::to_vec(&m["payload"]).unwrap().len(),
        failed.bytes
    );
    assert!(!stack.state().users.contains_key("user-00123"));

    // The cause is fixed; redrive replays it and empties the queue.
    stack.emulator.set_faults(Faults::default());
    let redrive_event: Value =
        serde_json::from_str(include_str!("../../events/redrive.json")).unwrap();
    let summary = stack.invoke_payload(&deps, redrive_event).await;
    let redrive = summary.redrive.expect("redrive report");
    assert_eq!(
        (redrive.replayed, redrive.delivered, redrive.rows_delivered),
        (1, 1, 50),
        "{redrive:?}"
    );
    assert!(redrive.still_failing.is_empty());
    assert_eq!(stack.state().users.len(), ROWS, "{redrive:?}");
    assert!(stack.state().users.contains_key("user-00123"));
    assert_eq!(redrive.left_in_queue, Some(0), "{redrive:?}");
    // Redrive recorded what it delivered in the sync state: the same snapshot exported again
    // sends nothing, not even the 50 redriven rows.
    assert_eq!(redrive.rows_recorded, 50, "{redrive:?}");
    let requests_before = stack.state().requests.len();
    stack
        .put(
            "exports/users-again.csv.gz",
            gzip(users_csv(ROWS).as_bytes()),
        )
        .await;
    let again = stack
        .invoke(&deps, "exports/users-again.csv.gz")
        .await
        .objects
        .remove(0);
    assert_eq!(
        (
            again.rows_unchanged,
            again.rows_delivered,
            again.requests_sent
        ),
        (ROWS as u64, 0, 0),
        "{again:?}"
    );
    assert_eq!(stack.state().requests.len(), requests_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_fails_then_fixed_config_and_the_sweep_deliver_everything_once() {
    let stack = stack_with_users().await;
    let bad = stack
        .deps(&[("PRIMARY_KEY", "user_id"), ("MOENGAGE_API_KEY", "wrong")])
        .await;
    let obj = stack.invoke(&bad, users_key()).await.objects.remove(0);
    assert_eq!((obj.status, obj.rows_delivered), (Status::Failed, 0));
    assert!(obj
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("Data API key"));
    assert!(
        stack.dlq_messages().await.is_empty(),
        "a configuration failure is not a data failure"
    );

    let good = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;
    let scheduled: Value =
        serde_json::from_str(include_str!("../../events/scheduled.json")).unwrap();
    let summary = stack.invoke_payload(&good, scheduled.clone()).await;
    assert_eq!(summary.objects.len(), 1, "{:?}", summary.notes);
    assert_eq!(
        (summary.objects[0].status, summary.objects[0].rows_delivered),
        (Status::Complete, ROWS as u64)
    );
    assert_each_delivered_once(&stack);

    // A second sweep finds nothing left to do.
    let again = stack.invoke_payload(&good, scheduled).await;
    assert!(again.objects.is_empty(), "{again:?}");
    assert!(
        again.notes.iter().any(|n| n.contains("1 already complete")),
        "{:?}",
        again.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_mid_object_checkpoints_and_the_continuation_finishes_exactly() {
    let stack = stack_with_users().await;
    stack.emulator.set_faults(Faults {
        delay_ms: 150,
        ..Faults::default()
    });
    let deps = stack
        .deps(&[
            ("PRIMARY_KEY", "user_id"),
            ("BATCH_MAX_RECORDS", "20"),
            ("DEADLINE_MARGIN_SECS", "0"),
            // One request at a time, so that the deadline falls mid-object at a known pace
            // (concurrency.rs covers deadlines with many in flight).
            ("MAX_IN_FLIGHT", "1"),
        ])
        .await;

    // A short deadline through the test seam: a few 150 ms requests fit, 15 do not.
    let inv = Invocation {
        deadline: Some(tokio::time::Instant::now() + Duration::from_millis(700)),
        ..Invocation::unbounded()
    };
    let first = handler::handle(&deps, s3_event(&stack.bucket, users_key()), &inv)
        .await
        .unwrap()
        .objects
        .remove(0);
    assert_eq!(first.status, Status::Continued, "{first:?}");
    assert!(
        first.rows_delivered > 0 && first.rows_delivered < ROWS as u64,
        "{first:?}"
    );
    assert!(first.balanced());

    // The continuation went to the work queue; the next invocation resumes from the checkpoint.
    stack.emulator.set_faults(Faults::default());
    let work = stack.work_queue_as_sqs_event().await;
    assert_eq!(work["Records"].as_array().unwrap().len(), 1);
    let second = stack.invoke_payload(&deps, work).await;
    let obj = &second.objects[0];
    assert_eq!(obj.status, Status::Complete, "{second:?}");
    assert_eq!(first.rows_delivered + obj.rows_delivered, ROWS as u64);
    assert_each_delivered_once(&stack);
    assert!(second.batch_item_failures.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_an_overwritten_version_is_not_resumed_blindly() {
    let stack = stack_with_users().await;
    stack.emulator.set_faults(Faults {
        delay_ms: 150,
        ..Faults::default()
    });
    let deps = stack
        .deps(&[
            ("PRIMARY_KEY", "user_id"),
            ("BATCH_MAX_RECORDS", "20"),
            ("DEADLINE_MARGIN_SECS", "0"),
            // One request at a time, so that the deadline falls mid-object at a known pace
            // (concurrency.rs covers deadlines with many in flight).
            ("MAX_IN_FLIGHT", "1"),
        ])
        .await;
    let inv = Invocation {
        deadline: Some(tokio::time::Instant::now() + Duration::from_millis(500)),
        ..Invocation::unbounded()
    };
    let first = handler::handle(&deps, s3_event(&stack.bucket, users_key()), &inv)
        .await
        .unwrap()
        .objects
        .remove(0);
    assert_eq!(first.status, Status::Continued);

    // The export is rewritten (40 rows, every name changed) before the continuation runs.
    stack.emulator.set_faults(Faults::default());
    stack
        .put(
            users_key(),
            gzip(users_csv(40).replace("Name ", "Renamed ").as_bytes()),
        )
        .await;
    let second = stack
        .invoke_payload(&deps, stack.work_queue_as_sqs_event().await)
        .await;
    let obj = &second.objects[0];
    assert_eq!(
        (obj.status, obj.rows_read, obj.rows_delivered),
        (Status::Complete, 40, 40),
        "{second:?}"
    );
    assert!(
        second
            .notes
            .iter()
            .any(|n| n.contains("overwritten since its checkpoint")),
        "{:?}",
        second.notes
    );
    assert_eq!(
        stack.state().users["user-00001"]["first_name"],
        "Renamed 1",
        "row 1 is read again: from the start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_concurrent_notifications_result_in_one_delivery() {
    let stack = stack_with_users().await;
    stack.emulator.set_faults(Faults {
        delay_ms: 20,
        ..Faults::default()
    });
    let deps = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;
    let inv = Invocation::unbounded();
    let event = s3_event(&stack.bucket, users_key());

    let (a, b) = tokio::join!(
        handler::handle(&deps, event.clone(), &inv),
        handler::handle(&deps, event.clone(), &inv)
    );
    let third = handler::handle(&deps, event, &inv).await.unwrap();

    let runs: Vec<_> = a
        .unwrap()
        .objects
        .into_iter()
        .chain(b.unwrap().objects)
        .chain(third.objects.clone())
        .collect();
    assert_eq!(runs.len(), 1, "exactly one run: {runs:?}");
    assert!(
        third.notes.iter().any(|n| n.contains("already processed")),
        "{:?}",
        third.notes
    );
    assert_each_delivered_once(&stack);
}

/// An S3 source whose body fails after `fail_after` bytes.
struct FailingSource {
    inner: aws_sdk_s3::Client,
    fail_after: usize,
}

struct FailingReader {
    inner: std::pin::Pin<Box<dyn AsyncRead + Send>>,
    left: usize,
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "S3 stream reset by peer",
            )));
        }
        let mut tmp = vec![0u8; self.left.min(buf.remaining())];
        let mut limited = tokio::io::ReadBuf::new(&mut tmp);
        let res = self.inner.as_mut().poll_read(cx, &mut limited);
        let n = limited.filled().len();
        buf.put_slice(&tmp[..n]);
        self.left -= n;
        res
    }
}

#[async_trait]
impl ObjectSource for FailingSource {
    async fn open(&self, bucket: &str, key: &str) -> Result<SourceObject, SourceError> {
        let mut o = self.inner.open(bucket, key).await?;
        o.body = Box::pin(FailingReader {
            inner: o.body,
            left: self.fail_after,
        });
        Ok(o)
    }
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, SourceError> {
        self.inner.head(bucket, key).await
    }
    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, SourceError> {
        self.inner.read_range(bucket, key, start, end).await
    }
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, SourceError> {
        self.inner.list(bucket, prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failing_mid_stream_reports_only_what_was_delivered() {
    let stack = Stack::start().await;
    // Uncompressed, so the failure lands mid-file at a known byte.
    let csv = users_csv(2000);
    stack.put("exports/big.csv", csv.clone().into_bytes()).await;
    let mut deps = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;
    deps.source = Arc::new(FailingSource {
        inner: stack.s3.clone(),
        fail_after: csv.len() / 2,
    });

    let obj = stack
        .invoke(&deps, "exports/big.csv")
        .await
        .objects
        .remove(0);

    assert_eq!(obj.status, Status::Failed, "{obj:?}");
    assert!(
        obj.error
            .as_deref()
            .unwrap_or_default()
            .contains("reset by peer"),
        "{obj:?}"
    );
    assert_eq!(
        obj.rows_delivered as usize,
        stack.state().users.len(),
        "reported delivered = what MoEngage holds"
    );
    assert!(obj.rows_delivered > 0 && obj.rows_delivered < 2000);
    assert!(obj.balanced(), "{obj:?}");
}

/// A dead-letter queue that cannot be written.
struct BrokenQueue;

#[async_trait]
impl DeadLetterSink for BrokenQueue {
    async fn send(&self, _m: &DeadLetterMessage) -> Result<String, DeadLetterError> {
        Err(DeadLetterError(
            "AccessDenied: not authorized to perform sqs:SendMessage".into(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_dead_letter_queue_fails_the_invocation_and_the_retry_resumes() {
    let stack = stack_with_users().await;
    stack.emulator.set_faults(Faults {
        fail_customer_id: Some("user-00123".into()),
        fail_customer_status: 400,
        ..Faults::default()
    });
    // One at a time: no body after the failing one is in flight when it fails, so exactly the
    // rows before it are delivered (with more in flight, later bodies may land and are resent).
    let mut deps = stack
        .deps(&[("PRIMARY_KEY", "user_id"), ("MAX_IN_FLIGHT", "1")])
        .await;
    deps.dead_letters = Arc::new(BrokenQueue);

    let err = handler::handle(
        &deps,
        s3_event(&stack.bucket, users_key()),
        &Invocation::unbounded(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("rows 101-150"), "{err}");
    assert_eq!(
        stack.state().users.len(),
        100,
        "rows before the failing body were delivered, nothing after"
    );

    // Lambda retries the invocation once the queue works: it resumes at row 101.
    stack.emulator.set_faults(Faults::default());
    let deps = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;
    let retry = stack.invoke(&deps, users_key()).await.objects.remove(0);
    assert_eq!(
        (retry.status, retry.rows_read, retry.rows_delivered),
        (Status::Complete, 200, 200),
        "{retry:?}"
    );
    assert_each_delivered_once(&stack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_sqs_keeps_its_payload_in_s3_and_redrive_uses_it() {
    use moengage_emulator::EmulatorConfig;
    // A workspace allowed 1 MB bodies, batches of 400 KB: one failed body exceeds SQS's 256 KiB.
    let stack = Stack::start_with(EmulatorConfig {
        rate_limit_per_minute: 0,
        transition_max_bytes: 1_000_000,
        ..crate::support::emulator_config()
    })
    .await;
    let mut csv = String::from("user_id,bio\n");
    for i in 0..120 {
        csv.push_str(&format!("user-{i:05},{}\n", "b".repeat(3000)));
    }
    stack.put("exports/big.csv", csv.into_bytes()).await;
    stack.emulator.set_faults(Faults {
        fail_customer_id: Some("user-00007".into()),
        fail_customer_status: 400,
        ..Faults::default()
    });
    let deps = stack
        .deps(&[
            ("PRIMARY_KEY", "user_id"),
            ("BATCH_MAX_BYTES", "400000"),
            ("BATCH_MAX_RECORDS", "200"),
        ])
        .await;

    let obj = stack
        .invoke(&deps, "exports/big.csv")
        .await
        .objects
        .remove(0);

    assert_eq!(
        (obj.rows_dead_lettered, obj.rows_delivered),
        (120, 0),
        "{obj:?}"
    );
    let dlq = stack.dlq_messages().await;
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0]["payload"].is_null());
    let uri = dlq[0]["payload_s3"].as_str().expect("payload_s3");
    let stored = stack.get_json(uri).await;
    assert_eq!(stored["elements"].as_array().map(Vec::len), Some(120));
    assert_eq!(
        serde_json::to_vec(&stored).unwrap().len(),
        stack.state().requests[0].bytes,
        "the exact body, byte for byte"
    );

    stack.emulator.set_faults(Faults::default());
    let redrive = stack
        .invoke_payload(&deps, json!({"redrive": {}}))
        .await
        .redrive
        .unwrap();
    assert_eq!(
        (
            redrive.delivered,
            redrive.rows_delivered,
            redrive.left_in_queue
        ),
        (1, 120, Some(0)),
        "{redrive:?}"
    );
    assert_eq!(stack.state().users.len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_during_a_live_lease_comes_back_later_and_is_then_processed() {
    use moengage_sync::app::runs::{Claim, Markers};
    let stack = stack_with_users().await;
    let deps = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;
    let etag = stack
        .s3
        .head_object()
        .bucket(&stack.bucket)
        .key(users_key())
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .trim_matches('"')
        .to_string();
    // An invocation that died mid-run still holds the lease.
    let markers = Markers {
        store: &*deps.state,
        state_bucket: &stack.bucket,
        prefix: &deps.config.state_prefix,
    };
    let claim = markers
        .claim(&stack.bucket, users_key(), &etag, 2)
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Claimed { .. }));
    let sqs_event = |id: &str| {
        json!({"Records":[{"messageId": id, "receiptHandle": "r", "eventSource": "aws:sqs",
            "body": s3_event(&stack.bucket, users_key()).to_string()}]})
    };

    // SQS retries the notification while the lease is live: not acknowledged and dropped.
    let during = stack.invoke_payload(&deps, sqs_event("m-1")).await;
    assert!(during.objects.is_empty(), "{during:?}");
    let failures = during.batch_item_failures.expect("an SQS response");
    assert_eq!(
        failures.len(),
        1,
        "the message comes back for a later retry"
    );
    assert_eq!(failures[0].item_identifier, "m-1");
    assert!(stack.state().requests.is_empty());

    // Once the lease has expired, the retry takes the object over and delivers it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = stack.invoke_payload(&deps, sqs_event("m-1")).await;
    assert_eq!(after.batch_item_failures.map(|f| f.len()), Some(0));
    assert_eq!(after.objects.len(), 1, "{:?}", after.notes);
    assert_eq!(after.objects[0].rows_delivered, ROWS as u64);
    assert_each_delivered_once(&stack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_takes_new_objects_before_failed_ones() {
    let stack = Stack::start().await;
    let deps = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;
    // 20 objects that fail (no user_id column), listed before the new one.
    for i in 0..20 {
        let key = format!("exports/a-broken-{i:02}.csv");
        stack.put(&key, b"email\nx@example.com\n".to_vec()).await;
        let obj = stack.invoke(&deps, &key).await.objects.remove(0);
        assert_eq!(obj.status, Status::Failed, "{obj:?}");
    }
    stack
        .put("exports/z-new.csv", users_csv(5).into_bytes())
        .await;

    let sweep: Value = serde_json::from_str(include_str!("../../events/scheduled.json")).unwrap();
    let summary = stack.invoke_payload(&deps, sweep).await;

    // SWEEP_MAX_OBJECTS is 10: the new object goes first, then 9 of the failed ones.
    assert_eq!(summary.objects.len(), 10, "{:?}", summary.notes);
    assert_eq!(summary.objects[0].key, "exports/z-new.csv");
    assert_eq!(summary.objects[0].rows_delivered, 5);
    assert!(summary.objects[1..]
        .iter()
        .all(|o| o.status == Status::Failed && o.key.contains("broken")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_whose_runs_keep_dying_is_poisoned_not_retried_forever() {
    let stack = stack_with_users().await;
    let deps = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;
    let etag = stack
        .s3
        .head_object()
        .bucket(&stack.bucket)
        .key(users_key())
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap()
        .trim_matches('"')
        .to_string();
    // Two runs already died at row 0, and a third one's lease just ran out (as a function killed
    // by a timeout or out of memory leaves it).
    let marker_key = format!(
        "moengage-sync/runs/{}/{}/{etag}.json",
        stack.bucket,
        users_key()
    );
    let dead = json!({
        "status": "running", "bucket": stack.bucket, "key": users_key(), "etag": etag,
        "resume_after_row": 0, "runs": 3, "lease_until": 0,
        "updated_at": "2026-11-30T10:00:00Z", "deaths": 2, "claimed_at_row": 0
    });
    stack
        .put(&marker_key, serde_json::to_vec(&dead).unwrap())
        .await;

    let summary = stack.invoke(&deps, users_key()).await;
    let obj = &summary.objects[0];
    assert_eq!(obj.status, Status::Failed, "{summary:?}");
    let error = obj.error.as_deref().unwrap();
    assert!(
        error.contains("its last 3 runs died")
            && error.contains("not retried until this marker is deleted")
            && error.contains(&format!("delete s3://{}/{marker_key}", stack.bucket)),
        "{error}"
    );
    assert!(stack.state().requests.is_empty(), "nothing sent");
    // The sweep leaves it alone and says so.
    let scheduled: Value =
        serde_json::from_str(include_str!("../../events/scheduled.json")).unwrap();
    let sweep = stack.invoke_payload(&deps, scheduled).await;
    assert!(sweep.objects.is_empty(), "{sweep:?}");
    assert!(
        sweep
            .notes
            .iter()
            .any(|n| n.contains("1 poisoned objects are not retried")),
        "{:?}",
        sweep.notes
    );
    // Deleting the marker (after fixing the cause) retries it.
    stack
        .s3
        .delete_object()
        .bucket(&stack.bucket)
        .key(&marker_key)
        .send()
        .await
        .unwrap();
    let again = stack.invoke(&deps, users_key()).await;
    assert_eq!(again.objects[0].status, Status::Complete);
    assert_each_delivered_once(&stack);
}
