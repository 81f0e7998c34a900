//! Security: inputs that name a place (dead-letter messages, work items) cannot send the Data API
//! key or exported data anywhere but the configured MoEngage host, nor make the function read
//! outside its source bucket and prefix.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use moengage_emulator::Faults;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{users_csv, Stack, WORKSPACE};

/// A loopback listener standing in for an attacker's host: counts connections and answers each
/// with a convincing 200, so that a leak would be reported as a delivery.
struct Attacker {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Attacker {
    async fn start() -> Attacker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let _ = sock.read(&mut buf).await;
                    let body = r#"{"status":"success","message":"Your request has been accepted"}"#;
                    let _ = sock
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        Attacker {
            port,
            connections,
            task,
        }
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn transition_body(ids: &[&str]) -> Value {
    let elements: Vec<Value> = ids
        .iter()
        .map(|id| json!({"type":"customer","customer_id":id,"attributes":{"plan":"pro"}}))
        .collect();
    json!({"type":"transition","elements":elements})
}

/// A message in the project's own format, with `fields` overriding its defaults.
fn dead_letter(stack: &Stack, fields: Value) -> String {
    let mut m = json!({
        "source": {"bucket": stack.bucket, "key": "exports/users.csv", "etag": "e", "first_row": 1, "last_row": 2},
        "endpoint": format!("/v1/transition/{WORKSPACE}"),
        "payload": transition_body(&["forged-1", "forged-2"]),
        "records": 2,
        "error": {"status": 400, "reason": "HTTP 400"},
        "attempts": 1,
        "failed_at": "2026-11-30T00:00:00Z"
    });
    for (k, v) in fields.as_object().unwrap() {
        m[k] = v.clone();
    }
    m.to_string()
}

async fn send(stack: &Stack, body: String) -> String {
    stack
        .sqs
        .send_message()
        .queue_url(&stack.dlq_url)
        .message_body(body)
        .send()
        .await
        .expect("send to the dead-letter queue")
        .message_id
        .expect("message id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_dead_letters_are_refused_without_a_request_and_genuine_ones_still_redrive() {
    let stack = Stack::start().await;
    let attacker = Attacker::start().await;
    let port = attacker.port;
    stack
        .put("exports/users.csv", users_csv(120).into_bytes())
        .await;
    let deps = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;

    // A genuine dead letter, written by the function itself: rows 51-100 fail with a 400.
    stack.emulator.set_faults(Faults {
        fail_customer_id: Some("user-00060".into()),
        ..Faults::default()
    });
    let run = stack
        .invoke(&deps, "exports/users.csv")
        .await
        .objects
        .remove(0);
    assert_eq!(
        (run.rows_delivered, run.rows_dead_lettered),
        (70, 50),
        "{run:?}"
    );
    let genuine = stack.dlq_messages().await;
    assert_eq!(genuine.len(), 1);
    assert_eq!(genuine[0]["kind"], "transition");
    assert_eq!(genuine[0]["app_id"], WORKSPACE);
    stack.emulator.set_faults(Faults::default());
    let requests_before = stack.state().requests.len();

    // A message written before `kind` existed: its path alone, which this project wrote.
    let legacy = send(
        &stack,
        dead_letter(
            &stack,
            json!({"payload": transition_body(&["legacy-1"]), "records": 1}),
        ),
    )
    .await;

    // The attacks, each with the reason it must be refused for.
    let forged: Vec<(Value, &str)> = vec![
        (
            json!({"endpoint": format!("@127.0.0.1:{port}/steal")}),
            "is not one this project writes",
        ),
        (
            json!({"endpoint": format!("http://127.0.0.1:{port}/steal")}),
            "is not one this project writes",
        ),
        (
            json!({"endpoint": format!(".evil@127.0.0.1:{port}/v1/transition/{WORKSPACE}")}),
            "is not one this project writes",
        ),
        (
            json!({"payload": null, "payload_s3": format!("s3://{}/exports/users.csv", stack.bucket)}),
            "where this function stores payloads too large for SQS",
        ),
        (
            json!({"kind": "steal", "app_id": WORKSPACE}),
            "unknown endpoint kind",
        ),
        (
            json!({"endpoint": "/v1/transition/SOMEONE-ELSE"}),
            "not the configured MOENGAGE_APP_ID",
        ),
        (
            json!({"payload": {"hello": "world"}}),
            "not a transition body",
        ),
        (
            json!({"payload": transition_body(&["x"; 51]), "records": 51}),
            "over BATCH_MAX_RECORDS (50)",
        ),
    ];
    let mut expected = std::collections::HashMap::new();
    for (fields, why) in &forged {
        let id = send(&stack, dead_letter(&stack, fields.clone())).await;
        expected.insert(id, *why);
    }

    let redrive = stack
        .invoke_payload(&deps, json!({"redrive": {"max_messages": 20}}))
        .await
        .redrive
        .expect("redrive report");

    assert_eq!(
        attacker.connections.load(Ordering::SeqCst),
        0,
        "a connection reached the attacker's listener"
    );
    assert_eq!(redrive.replayed, 10, "{redrive:?}");
    assert_eq!(
        (redrive.delivered, redrive.rows_delivered, redrive.refused),
        (2, 51, 8),
        "only the genuine and the legacy message are delivered: {redrive:?}"
    );
    assert_eq!(redrive.still_failing.len(), 8, "{redrive:?}");
    for f in &redrive.still_failing {
        let why = expected
            .get(&f.message_id)
            .unwrap_or_else(|| panic!("{} was not forged: {}", f.message_id, f.reason));
        assert!(f.reason.starts_with("refused: "), "{}", f.reason);
        assert!(f.reason.contains(why), "{why:?} not in {}", f.reason);
    }
    assert!(!redrive.still_failing.iter().any(|f| f.message_id == legacy));
    // MoEngage saw exactly the two replays; none of the forged bodies.
    let state = stack.state();
    assert_eq!(state.requests.len() - requests_before, 2);
    assert!(state.users.contains_key("user-00060"));
    assert!(state.users.contains_key("legacy-1"));
    assert!(!state.users.contains_key("forged-1"));
    assert!(!state.users.contains_key("x"));
    // Refused messages stay in the queue for a person to look at; delivered ones are gone.
    assert_eq!(redrive.left_in_queue, Some(8), "{redrive:?}");
    let left = stack.dlq_messages().await;
    assert_eq!(left.len(), 8);
    assert!(
        left.iter().all(|m| m["records"] != 50 && m["records"] != 1),
        "the delivered messages were deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_items_outside_the_source_bucket_and_prefix_are_refused() {
    let stack = Stack::start().await;
    stack
        .s3
        .create_bucket()
        .bucket("someone-elses-bucket")
        .send()
        .await
        .unwrap();
    stack
        .s3
        .put_object()
        .bucket("someone-elses-bucket")
        .key("exports/users.csv")
        .body(users_csv(5).into_bytes().into())
        .send()
        .await
        .unwrap();
    stack
        .put("exports/users.csv", users_csv(5).into_bytes())
        .await;
    stack
        .put("moengage-sync/reports/x.csv", users_csv(5).into_bytes())
        .await;
    let deps = stack
        .deps(&[("PRIMARY_KEY", "user_id"), ("SOURCE_PREFIX", "exports/")])
        .await;

    for (bucket, key, why) in [
        (
            "someone-elses-bucket",
            "exports/users.csv",
            "not in the source bucket",
        ),
        (
            stack.bucket.as_str(),
            "moengage-sync/reports/x.csv",
            "outside SOURCE_PREFIX",
        ),
    ] {
        let summary = stack
            .invoke_payload(
                &deps,
                json!({"moengage_sync": {"bucket": bucket, "key": key}}),
            )
            .await;
        assert!(summary.objects.is_empty(), "{summary:?}");
        assert!(
            summary.notes.iter().any(|n| n.contains(why)),
            "{why:?} not in {:?}",
            summary.notes
        );
    }
    // The same through an S3 notification, as a forged SQS message could carry it.
    let summary = stack
        .invoke_payload(
            &deps,
            crate::support::s3_event("someone-elses-bucket", "exports/users.csv"),
        )
        .await;
    assert!(summary.objects.is_empty(), "{summary:?}");
    assert!(stack.state().requests.is_empty(), "nothing was sent");

    // The configured bucket and prefix still work.
    let ok = stack
        .invoke_payload(
            &deps,
            json!({"moengage_sync": {"bucket": stack.bucket, "key": "exports/users.csv"}}),
        )
        .await;
    assert_eq!(ok.objects.len(), 1);
    assert_eq!(ok.objects[0].rows_delivered, 5, "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads_ask_for_the_version_being_read() {
    use moengage_sync::source::ObjectSource;
    let stack = Stack::start().await;
    stack
        .put("exports/p.parquet", b"PAR1 first version".to_vec())
        .await;
    let meta = ObjectSource::head(&stack.s3, &stack.bucket, "exports/p.parquet")
        .await
        .unwrap();
    let bytes = ObjectSource::read_range_if(
        &stack.s3,
        &stack.bucket,
        "exports/p.parquet",
        0,
        4,
        Some(&meta.etag),
    )
    .await
    .unwrap();
    assert_eq!(&bytes[..], b"PAR1");
    // Overwritten mid-run: the next range of the old version fails, never mixes the two.
    stack
        .put("exports/p.parquet", b"PAR1 second version!".to_vec())
        .await;
    let err = ObjectSource::read_range_if(
        &stack.s3,
        &stack.bucket,
        "exports/p.parquet",
        5,
        10,
        Some(&meta.etag),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("overwritten while it was read"), "{err}");
}
