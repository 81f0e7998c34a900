//! The pipeline end to end without moto or a network: an in-memory export, state store and
//! dead-letter queue, and a fake [`Deliver`] that refuses one user's body and can run out of time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::*;
use crate::account::report::Status;
use crate::app::runs::tests::MemStore;
use crate::config::Config;
use crate::deliver::client::MoEngageClient;
use crate::deliver::dead_letter::{DeadLetterError, DeadLetterMessage, DeadLetterSink};
use crate::deliver::{Deliver, Delivery, FailureDetail};
use crate::model::{ApiKey, Endpoint};
use crate::source::{ListedObject, ObjectMeta, ObjectSource, SourceError, SourceObject};

struct MemSource(Vec<u8>);

#[async_trait]
impl ObjectSource for MemSource {
    async fn open(&self, _: &str, _: &str) -> Result<SourceObject, SourceError> {
        Ok(SourceObject {
            etag: "e1".into(),
            version_id: None,
            content_encoding: None,
            size: Some(self.0.len() as u64),
            body: Box::pin(std::io::Cursor::new(self.0.clone())),
        })
    }
    async fn head(&self, _: &str, _: &str) -> Result<ObjectMeta, SourceError> {
        unimplemented!("CSV is streamed, never read by ranges")
    }
    async fn read_range(&self, _: &str, _: &str, _: u64, _: u64) -> Result<Bytes, SourceError> {
        unimplemented!("CSV is streamed, never read by ranges")
    }
    async fn list(&self, _: &str, _: &str) -> Result<Vec<ListedObject>, SourceError> {
        Ok(Vec::new())
    }
}

#[derive(Default)]
struct MemQueue(Mutex<Vec<String>>);

#[async_trait]
impl DeadLetterSink for MemQueue {
    async fn send(&self, message: &DeadLetterMessage) -> Result<String, DeadLetterError> {
        let mut q = self.0.lock().unwrap();
        q.push(serde_json::to_string(message).unwrap());
        Ok(format!("m-{}", q.len()))
    }
}

/// Accepts every body except those naming `refuse`; after `budget` bodies it answers
/// `Interrupted`, as delivery does once the deadline passed.
struct FakeDelivery {
    refuse: &'static str,
    budget: usize,
    sent: Mutex<Vec<String>>,
}

#[async_trait]
impl Deliver for FakeDelivery {
    async fn deliver(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        _records: (u64, u64),
        _stop_at: Option<Instant>,
    ) -> Delivery {
        assert_eq!(endpoint, Endpoint::Transition);
        let text = String::from_utf8(body.to_vec()).unwrap();
        let mut sent = self.sent.lock().unwrap();
        let outcome = if sent.len() >= self.budget {
            Outcome::Interrupted
        } else if text.contains(self.refuse) {
            Outcome::Failed(FailureDetail {
                status: Some(400),
                reason: "HTTP 400: bad attribute".into(),
                ..FailureDetail::default()
            })
        } else {
            Outcome::Delivered { request_id: None }
        };
        sent.push(text);
        Delivery {
            outcome,
            attempts: 1,
            rate_limited: 0,
            latency: std::time::Duration::ZERO,
        }
    }
}

fn deps(csv: &str, deliver: Arc<FakeDelivery>) -> (Deps, Arc<MemQueue>) {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("MOENGAGE_DATA_CENTER", "DC-01"),
        ("MOENGAGE_WORKSPACE_ID", "WS1"),
        ("MOENGAGE_API_KEY", "k"),
        ("OBJECT_TYPE", "bulk_import"),
        ("PRIMARY_KEY", "user_id"),
        ("BATCH_MAX_RECORDS", "10"),
        ("DEAD_LETTER_QUEUE_URL", "http://127.0.0.1:1/q"),
        ("STATE_BUCKET", "state"),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap();
    let queue = Arc::new(MemQueue::default());
    let deps = Deps {
        shard_cache: None,
        source: Arc::new(MemSource(csv.as_bytes().to_vec())),
        state: Arc::new(MemStore::default()),
        dead_letters: queue.clone(),
        work_queue: None,
        moengage: MoEngageClient::new(&config.api_base_url, "WS1", "WS1", &ApiKey::new("k"))
            .unwrap(),
        deliver,
        syncs: crate::app::SyncsHandle::new(config.syncs.clone()),
        config,
    };
    (deps, queue)
}

fn users(n: usize) -> String {
    let mut s = String::from("user_id,email\n");
    for i in 1..=n {
        // Every 7th row has no user id: rejected.
        let id = if i % 7 == 0 {
            String::new()
        } else {
            format!("u{i:03}")
        };
        s.push_str(&format!("{id},u{i}@example.com\n"));
    }
    s
}

fn object() -> ObjectRef {
    ObjectRef {
        bucket: "exports".into(),
        key: "users.csv".into(),
    }
}

#[tokio::test]
async fn every_row_is_delivered_rejected_or_dead_lettered_and_accounted() {
    let fake = Arc::new(FakeDelivery {
        refuse: "\"u015\"",
        budget: usize::MAX,
        sent: Mutex::default(),
    });
    let (deps, queue) = deps(&users(50), fake.clone());
    let out = process_object(&deps, &only_sync(&deps), &object(), &RunPlan::default()).await;
    let s = &out.report.summary;
    assert!(out.fatal.is_none());
    assert_eq!(s.status, Status::Complete);
    // 7 rows without id; of the other 43, the body holding u015 (rows 12-23, ten keyed rows) fails.
    assert_eq!(
        (
            s.rows_read,
            s.rows_delivered,
            s.rows_rejected,
            s.rows_dead_lettered
        ),
        (50, 33, 7, 10),
        "{s:?}"
    );
    assert!(out.report.accounting_balanced);
    assert_eq!(out.report.resume_after_row, 50);
    let dlq = queue.0.lock().unwrap();
    assert_eq!(dlq.len(), 1);
    let msg: serde_json::Value = serde_json::from_str(&dlq[0]).unwrap();
    assert_eq!(msg["kind"], "transition");
    assert_eq!(msg["payload"]["elements"].as_array().unwrap().len(), 10);
    let refused = &fake.sent.lock().unwrap()[1];
    assert!(
        dlq[0].contains(&format!("\"payload\":{refused}")),
        "the exact body that was refused, byte for byte"
    );
}

#[tokio::test]
async fn an_interrupted_body_checkpoints_before_it_and_the_next_run_sends_the_rest_once() {
    let fake = Arc::new(FakeDelivery {
        refuse: "nobody",
        budget: 2,
        sent: Mutex::default(),
    });
    let (deps, _) = deps(&users(50), fake.clone());
    let first = process_object(&deps, &only_sync(&deps), &object(), &RunPlan::default()).await;
    let s = &first.report.summary;
    assert_eq!(s.status, Status::Continued);
    assert!(first.report.accounting_balanced);
    assert_eq!(s.rows_delivered, 20, "{s:?}");
    let resume = first.report.resume_after_row;
    assert!(s.rows_pending > 0 && resume < 50, "{s:?}");

    let again = Arc::new(FakeDelivery {
        refuse: "nobody",
        budget: usize::MAX,
        sent: Mutex::default(),
    });
    let deps2 = deps_sharing(&deps, again.clone());
    let second = process_object(
        &deps2,
        &only_sync(&deps2),
        &object(),
        &RunPlan {
            resume_after_row: resume,
            ..RunPlan::default()
        },
    )
    .await;
    let t = &second.report.summary;
    assert_eq!(t.status, Status::Complete);
    assert!(second.report.accounting_balanced);
    // Across both runs, each row is counted once.
    assert_eq!(
        (s.rows_read - s.rows_pending) + t.rows_read,
        50,
        "{s:?} then {t:?}"
    );
    assert_eq!(s.rows_delivered + t.rows_delivered, 43);
}

/// The one sync the variables describe.
fn only_sync(deps: &Deps) -> Arc<crate::config::syncs::SyncSpec> {
    deps.config.syncs.syncs[0].clone()
}

/// The same export, state and queue as `first`, with another delivery.
fn deps_sharing(first: &Deps, deliver: Arc<FakeDelivery>) -> Deps {
    Deps {
        shard_cache: None,
        source: first.source.clone(),
        state: first.state.clone(),
        dead_letters: first.dead_letters.clone(),
        work_queue: None,
        moengage: first.moengage.clone(),
        deliver,
        syncs: crate::app::SyncsHandle::new(first.config.syncs.clone()),
        config: first.config.clone(),
    }
}

/// MoEngage answering after `latency`, behind a request budget: the real pacer, a fake network.
struct SlowMoEngage {
    budget: crate::deliver::rate::Budget,
    latency: std::time::Duration,
    cap: usize,
}

#[async_trait]
impl Deliver for SlowMoEngage {
    async fn deliver(
        &self,
        _endpoint: Endpoint,
        _body: Bytes,
        records: (u64, u64),
        _stop_at: Option<Instant>,
    ) -> Delivery {
        self.budget.acquire(records.0, records.1).await;
        tokio::time::sleep(self.latency).await;
        Delivery {
            outcome: Outcome::Delivered { request_id: None },
            attempts: 1,
            rate_limited: 0,
            latency: self.latency,
        }
    }

    fn max_in_flight(&self) -> usize {
        let rate = 1.0 / self.budget.requests.interval().as_secs_f64();
        crate::deliver::in_flight_for(rate, Some(self.latency), self.cap)
    }
}

/// Seconds to deliver `rows` rows of single-user requests at 6,000 requests/min with a 100 ms
/// round trip, at most `cap` in flight.
async fn seconds_for(rows: usize, cap: usize) -> f64 {
    let slow = Arc::new(SlowMoEngage {
        budget: crate::deliver::rate::Budget::new(6_000, None, None),
        latency: std::time::Duration::from_millis(100),
        cap,
    });
    let (mut deps, _) = deps(
        &users(rows),
        Arc::new(FakeDelivery {
            refuse: "nobody",
            budget: usize::MAX,
            sent: Mutex::default(),
        }),
    );
    let mut users = (*deps.config.syncs).clone();
    let mut spec = (*users.syncs[0]).clone();
    spec.object_type = crate::model::ObjectType::UserAttributes;
    users.syncs[0] = Arc::new(spec);
    deps.config.syncs = Arc::new(users);
    deps.deliver = slow;
    let started = Instant::now();
    let out = process_object(&deps, &only_sync(&deps), &object(), &RunPlan::default()).await;
    assert_eq!(out.report.summary.status, Status::Complete);
    assert_eq!(
        out.report.summary.requests_sent,
        rows as u64 - rows as u64 / 7
    );
    assert!(out.report.accounting_balanced);
    started.elapsed().as_secs_f64()
}

// Real time, not paused: the producer is a blocking thread, and tokio does not auto-advance a
// paused clock while a blocking task runs. The margins are wide (x3 apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_requests_take_n_over_the_budget_not_n_times_the_latency() {
    // 35 rows, 5 without a user id: 30 requests. At 6,000/min (97/s with headroom) they need
    // ~0.3 s plus one round trip; one at a time at 100 ms each, 3 s.
    let serial = seconds_for(35, 1).await;
    let concurrent = seconds_for(35, 100).await;
    assert!(serial >= 3.0, "one in flight: {serial:.2} s");
    assert!(
        (0.29..1.0).contains(&concurrent),
        "in flight ≈ rate × latency: {concurrent:.2} s, want ≈ 30 / 97 + 0.1, never faster than the budget"
    );
}

#[tokio::test]
async fn rows_too_large_to_send_are_all_rejected_never_unchanged() {
    // The same oversized row 100 times: the first used to be rejected and the 99 others counted
    // unchanged, though MoEngage never received any of them.
    let big = "x".repeat(150_000);
    let mut csv = String::from("user_id,email\n");
    for _ in 0..100 {
        csv.push_str(&format!("u1,{big}\n"));
    }
    csv.push_str("u2,ok@example.com\n");
    let fake = Arc::new(FakeDelivery {
        refuse: "nobody",
        budget: usize::MAX,
        sent: Mutex::default(),
    });
    let (deps, _) = deps(&csv, fake.clone());
    let out = process_object(&deps, &only_sync(&deps), &object(), &RunPlan::default()).await;
    let s = &out.report.summary;
    assert_eq!(
        (
            s.rows_read,
            s.rows_rejected,
            s.rows_unchanged,
            s.rows_delivered
        ),
        (101, 100, 0, 1),
        "{s:?}"
    );
    assert!(out.report.accounting_balanced);
    assert!(out.report.rejected_rows[0].reason.contains("request limit"));
}

/// `n` users; `changed(i)` gives user `i` another email.
fn snapshot(n: usize, changed: impl Fn(usize) -> bool) -> String {
    let mut s = String::from("user_id,email\n");
    for i in 1..=n {
        let domain = if changed(i) {
            "new.example.com"
        } else {
            "example.com"
        };
        s.push_str(&format!("u{i:05},u{i}@{domain}\n"));
    }
    s
}

#[tokio::test]
async fn a_first_pass_cut_short_continues_where_it_stopped_and_sends_exactly_the_changes() {
    let n = 25_000;
    let fake = Arc::new(FakeDelivery {
        refuse: "nobody",
        budget: usize::MAX,
        sent: Mutex::default(),
    });
    let (deps, _) = deps(&snapshot(n, |_| false), fake);
    let first = process_object(&deps, &only_sync(&deps), &object(), &RunPlan::default()).await;
    assert_eq!(first.report.summary.rows_delivered, n as u64);

    // The snapshot again with 1 % changed, classified at most 10,000 rows a run (the least the
    // first pass covers; STATE_MEMORY_MB cannot go this low outside tests) and spilled to /tmp
    // every 1,024 prints.
    let again = Arc::new(FakeDelivery {
        refuse: "nobody",
        budget: usize::MAX,
        sent: Mutex::default(),
    });
    let mut deps2 = deps_sharing(&deps, again.clone());
    deps2.source = Arc::new(MemSource(
        snapshot(n, |i| i.is_multiple_of(100)).into_bytes(),
    ));
    deps2.config.state_memory_mb = 0;
    let (mut resume, mut runs) = (0, Vec::new());
    loop {
        let plan = RunPlan {
            resume_after_row: resume,
            ..RunPlan::default()
        };
        let out = process_object(&deps2, &only_sync(&deps2), &object(), &plan).await;
        let r = out.report;
        assert!(r.accounting_balanced, "{:?}", r.summary);
        assert_eq!(r.summary.rows_pending, 0, "{:?}", r.summary);
        runs.push((r.summary.status, r.resume_after_row));
        resume = r.resume_after_row;
        let s = r.summary;
        assert_eq!(s.rows_delivered + s.rows_unchanged, s.rows_read, "{s:?}");
        if s.status != Status::Continued || runs.len() > 5 {
            break;
        }
    }
    assert_eq!(
        runs,
        [
            (Status::Continued, 10_000),
            (Status::Continued, 20_000),
            (Status::Complete, n as u64)
        ]
    );
    let sent = again.sent.lock().unwrap().join("");
    let mut ids: Vec<usize> = sent
        .match_indices("\"customer_id\":\"u")
        .map(|(at, m)| sent[at + m.len()..at + m.len() + 5].parse().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (100..=n).step_by(100).collect::<Vec<_>>());
}

/// Counts the streams opened on the export.
struct CountingSource(MemSource, std::sync::atomic::AtomicUsize);

#[async_trait]
impl ObjectSource for CountingSource {
    async fn open(&self, b: &str, k: &str) -> Result<SourceObject, SourceError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.open(b, k).await
    }
    async fn head(&self, b: &str, k: &str) -> Result<ObjectMeta, SourceError> {
        self.0.head(b, k).await
    }
    async fn read_range(&self, b: &str, k: &str, s: u64, e: u64) -> Result<Bytes, SourceError> {
        self.0.read_range(b, k, s, e).await
    }
    async fn list(&self, b: &str, p: &str) -> Result<Vec<ListedObject>, SourceError> {
        self.0.list(b, p).await
    }
}

#[tokio::test]
async fn an_unchanged_snapshot_is_read_once_and_a_changed_one_twice() {
    let fake = Arc::new(FakeDelivery {
        refuse: "nobody",
        budget: usize::MAX,
        sent: Mutex::default(),
    });
    let (deps, _) = deps(&snapshot(3_000, |_| false), fake.clone());
    let first = process_object(&deps, &only_sync(&deps), &object(), &RunPlan::default()).await;
    assert_eq!(first.report.summary.rows_delivered, 3_000);
    let rerun = |changed: fn(usize) -> bool, resume: u64| {
        let mut d = deps_sharing(&deps, fake.clone());
        let source = Arc::new(CountingSource(
            MemSource(snapshot(3_000, changed).into_bytes()),
            Default::default(),
        ));
        d.source = source.clone();
        async move {
            let plan = RunPlan {
                resume_after_row: resume,
                ..RunPlan::default()
            };
            let out = process_object(&d, &only_sync(&d), &object(), &plan).await;
            (
                out.report,
                source.1.load(std::sync::atomic::Ordering::SeqCst),
            )
        }
    };
    // All unchanged: the first pass's verdicts are the whole answer.
    let (r, opens) = rerun(|_| false, 0).await;
    let s = &r.summary;
    assert_eq!(
        (
            s.status,
            s.rows_read,
            s.rows_unchanged,
            s.requests_sent,
            opens
        ),
        (Status::Complete, 3_000, 3_000, 0, 1),
        "{s:?}"
    );
    assert!(r.accounting_balanced);
    assert_eq!(r.resume_after_row, 3_000);
    // The same from a checkpoint: only the rest is counted.
    let (r, opens) = rerun(|_| false, 1_000).await;
    assert_eq!(
        (r.summary.rows_read, r.summary.rows_unchanged, opens),
        (2_000, 2_000, 1)
    );
    // One row changed: the sending pass reads it again and sends exactly that row.
    let before = fake.sent.lock().unwrap().len();
    let (r, opens) = rerun(|i| i == 1_234, 0).await;
    let s = &r.summary;
    assert_eq!(
        (s.rows_read, s.rows_unchanged, s.rows_delivered, opens),
        (3_000, 2_999, 1, 2),
        "{s:?}"
    );
    let sent = fake.sent.lock().unwrap()[before..].join("");
    assert!(
        sent.contains(r#""customer_id":"u01234","attributes":{"email":"u1234@new.example.com"}"#),
        "{sent}"
    );
}

/// A row of text cells, as CSV gives them.
struct TextRow(Vec<String>);

impl crate::map::Row for TextRow {
    fn cell(&self, index: usize) -> Result<crate::map::convert::Cell<'_>, String> {
        Ok(self
            .0
            .get(index)
            .map_or(crate::map::convert::Cell::Null, |s| {
                crate::map::convert::Cell::Str(s)
            }))
    }
}

/// A state the release before cell fingerprints wrote holds each row's element fingerprint.
/// The first run after the upgrade cannot tell an unchanged row in its first pass, so it maps
/// every row in its second, sends only the changed one, and stores the others' cell
/// fingerprints: the run after that reads the export once and sends nothing.
#[tokio::test]
async fn a_state_of_element_fingerprints_is_carried_over_without_a_resend() {
    use crate::sync_state::{customer_id_of, Fingerprinter};
    let n = 300;
    let fake = Arc::new(FakeDelivery {
        refuse: "nobody",
        budget: usize::MAX,
        sent: Mutex::default(),
    });
    let (deps, _) = deps(&snapshot(n, |_| false), fake.clone());
    let spec = only_sync(&deps);
    {
        // What the release before stored for this export, as if it had delivered every row.
        let state = open_sync_state(&deps, &spec, &object(), false)
            .await
            .unwrap();
        let header = vec!["user_id".to_string(), "email".to_string()];
        let mapping = spec.field_mapping.resolve(&header, spec.sync_mode).unwrap();
        let fp = Fingerprinter::new(spec.object_type, &mapping);
        let (mut prints, mut ids) = (Vec::new(), HashMap::new());
        let mut element = Vec::new();
        for line in snapshot(n, |_| false).lines().skip(1) {
            let row = TextRow(line.split(',').map(str::to_string).collect());
            let (kind, _) = mapping
                .encode(&row, &mut element, chrono::Utc::now())
                .unwrap();
            let id = customer_id_of(&element).unwrap().to_vec();
            let print = fp.print(kind, &id, &element);
            ids.insert(print.key, id);
            prints.push(print);
        }
        state
            .accept(&prints, |k| ids.get(&k).cloned())
            .await
            .unwrap();
        state.save().await.unwrap();
    }
    let rerun = |changed: fn(usize) -> bool| {
        let mut d = deps_sharing(&deps, fake.clone());
        let source = Arc::new(CountingSource(
            MemSource(snapshot(n, changed).into_bytes()),
            Default::default(),
        ));
        d.source = source.clone();
        async move {
            let out = process_object(&d, &only_sync(&d), &object(), &RunPlan::default()).await;
            let opens = source.1.load(std::sync::atomic::Ordering::SeqCst);
            (out.report, opens)
        }
    };
    let (r, opens) = rerun(|i| i == 7).await;
    let s = &r.summary;
    assert_eq!(
        (s.rows_read, s.rows_unchanged, s.rows_delivered, opens),
        (n as u64, n as u64 - 1, 1, 2),
        "{s:?}"
    );
    assert!(r.accounting_balanced);
    let sent = fake.sent.lock().unwrap().join("");
    assert!(
        sent.contains(r#""customer_id":"u00007","attributes":{"email":"u7@new.example.com"}"#),
        "{sent}"
    );
    assert_eq!(sent.matches("customer_id").count(), 1, "{sent}");
    // Carried over: the next re-sync's first pass recognises every row.
    let (r, opens) = rerun(|i| i == 7).await;
    let s = &r.summary;
    assert_eq!(
        (s.rows_unchanged, s.requests_sent, opens),
        (n as u64, 0, 1),
        "{s:?}"
    );
}
