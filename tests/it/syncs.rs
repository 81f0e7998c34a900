//! Many syncs in one deployment (`SYNC_CONFIG` in S3): each object routed to its sync by prefix
//! and delivered with that sync's mapping, objects outside every prefix skipped, sync states and
//! reports kept apart, one budget per MoEngage API shared by the syncs, and a changed file taking
//! effect in a warm instance.

use moengage_emulator::EmulatorConfig;
use moengage_sync::account::report::Status;
use moengage_sync::app::{handler, Invocation};
use moengage_sync::config::Config;

use crate::support::{emulator_config, s3_event, users_csv, Stack, WORKSPACE};

const CONFIG_KEY: &str = "config/syncs.yaml";

const SYNCS: &str = r#"
syncs:
  - name: users
    prefix: exports/users/
    object_type: bulk_import
    field_mapping: { customer_id: user_id, email: email, city: city }
  - name: scores
    prefix: exports/scores/
    object_type: bulk_import
    field_mapping: { customer_id: user_id, plan: plan }
  - name: purchases
    prefix: exports/events/
    object_type: events
    field_mapping:
      customer_id: user_id
      action: event
      amount: { column: amount, type: number }
"#;

fn purchases_csv(n: usize) -> String {
    let mut s = String::from("user_id,event,amount\n");
    for i in 1..=n {
        s.push_str(&format!("user-{i:05},purchase,{i}.5\n"));
    }
    s
}

impl Stack {
    async fn put_config(&self, text: &str) -> String {
        self.put(CONFIG_KEY, text.as_bytes().to_vec()).await;
        self.s3
            .head_object()
            .bucket(&self.bucket)
            .key(CONFIG_KEY)
            .send()
            .await
            .expect("head config")
            .e_tag
            .expect("etag")
    }

    async fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list")
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.key)
            .collect()
    }
}

fn sync_config(stack: &Stack) -> String {
    format!("s3://{}/{CONFIG_KEY}", stack.bucket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deployment_routes_each_prefix_to_its_own_sync() {
    let stack = Stack::start().await;
    let etag = stack.put_config(SYNCS).await;
    let location = sync_config(&stack);
    let deps = stack.deps(&[("SYNC_CONFIG", &location)]).await;

    stack
        .put("exports/users/day1.csv", users_csv(30).into_bytes())
        .await;
    stack
        .put("exports/events/p1.csv", purchases_csv(10).into_bytes())
        .await;
    stack
        .put("elsewhere/x.csv", users_csv(3).into_bytes())
        .await;

    let users = stack.invoke(&deps, "exports/users/day1.csv").await;
    let u = &users.objects[0];
    assert_eq!(
        (u.sync.as_str(), u.status, u.rows_delivered),
        ("users", Status::Complete, 30),
        "{u:?}"
    );
    let events = stack.invoke(&deps, "exports/events/p1.csv").await;
    let e = &events.objects[0];
    assert_eq!(
        (e.sync.as_str(), e.status, e.rows_delivered),
        ("purchases", Status::Complete, 10),
        "{e:?}"
    );

    // Each with its own mapping, to its own API.
    let state = stack.state();
    assert_eq!(state.users.len(), 30);
    let first = &state.users["user-00001"];
    assert_eq!(first["email"], "user1@example.com");
    assert_eq!(first["city"], "City, 1");
    assert!(
        !first.contains_key("plan") && !first.contains_key("first_name"),
        "only the users sync's mapping: {first:?}"
    );
    assert_eq!(state.events.len(), 10);
    assert!(state
        .events
        .iter()
        .all(|e| e.action == "purchase" && e.attributes["amount"].is_number()));
    let paths: std::collections::BTreeSet<&str> =
        state.requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("/v1/event/{WORKSPACE}").as_str(),
            format!("/v1/transition/{WORKSPACE}").as_str()
        ]
        .into()
    );

    // Outside every prefix: skipped with a note naming the key and the prefixes; nothing claimed.
    let sent = stack.state().requests.len();
    let skipped = stack.invoke(&deps, "elsewhere/x.csv").await;
    assert!(skipped.objects.is_empty(), "{skipped:?}");
    let note = skipped.notes.join("\n");
    assert!(
        note.contains("elsewhere/x.csv")
            && note.contains("matches no sync's prefix")
            && note.contains("\"exports/users/\" (users)")
            && note.contains("\"exports/events/\" (purchases)"),
        "{note}"
    );
    assert!(stack
        .keys_under("moengage-sync/runs/exports-bucket/elsewhere/")
        .await
        .is_empty());
    assert!(stack.dlq_messages().await.is_empty());
    assert_eq!(stack.state().requests.len(), sent, "nothing sent for it");

    // Reports apart, each naming its sync and the file version it ran with.
    let report_uri = u.report.clone().expect("report stored");
    assert!(
        report_uri.starts_with("s3://exports-bucket/moengage-sync/syncs/users/reports/"),
        "{report_uri}"
    );
    let report = stack.get_json(&report_uri).await;
    assert_eq!(report["sync"], "users", "{report}");
    assert_eq!(report["sync_config_etag"], etag.as_str());
    assert!(e
        .report
        .as_deref()
        .unwrap()
        .starts_with("s3://exports-bucket/moengage-sync/syncs/purchases/reports/"));

    // Sync states apart: a second user dataset does not overwrite the first one's fingerprints.
    let users_state = format!("moengage-sync/sync/{WORKSPACE}/syncs/users/bulk_import/");
    assert!(!stack.keys_under(&users_state).await.is_empty());
    stack
        .put("exports/scores/s1.csv", users_csv(30).into_bytes())
        .await;
    let scores = stack.invoke(&deps, "exports/scores/s1.csv").await;
    assert_eq!(scores.objects[0].rows_delivered, 30, "{scores:?}");
    assert!(!stack
        .keys_under(&format!("moengage-sync/sync/{WORKSPACE}/syncs/scores/"))
        .await
        .is_empty());
    stack
        .put("exports/users/day2.csv", users_csv(30).into_bytes())
        .await;
    let again = stack.invoke(&deps, "exports/users/day2.csv").await;
    let a = &again.objects[0];
    assert_eq!(
        (a.rows_unchanged, a.rows_delivered),
        (30, 0),
        "the users sync still knows what it delivered: {a:?}"
    );
    // Nothing in the scope the variables' default sync uses.
    assert!(stack
        .keys_under(&format!("moengage-sync/sync/{WORKSPACE}/bulk_import/"))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_on_one_api_share_its_budget() {
    // MoEngage's strict window at 600 requests/min for Bulk Import; the file gives the same
    // budget. Two syncs, each 20 single-element requests, run at the same time.
    let stack = Stack::start_with(EmulatorConfig {
        rate_limit_per_minute: 600,
        ..emulator_config()
    })
    .await;
    stack
        .put_config(
            "budgets:\n  bulk_import: { requests_per_minute: 600 }\nsyncs:\n  \
             - {name: a, prefix: a/, object_type: bulk_import, primary_key: user_id}\n  \
             - {name: b, prefix: b/, object_type: bulk_import, primary_key: user_id}\n",
        )
        .await;
    let location = sync_config(&stack);
    let deps = stack
        .deps(&[("SYNC_CONFIG", &location), ("BATCH_MAX_RECORDS", "1")])
        .await;
    stack.put("a/x.csv", users_csv(20).into_bytes()).await;
    let mut other = String::from("user_id,email\n");
    for i in 1..=20 {
        other.push_str(&format!("b-{i},b{i}@example.com\n"));
    }
    stack.put("b/y.csv", other.into_bytes()).await;

    let (a, b) = tokio::join!(
        stack.invoke(&deps, "a/x.csv"),
        stack.invoke(&deps, "b/y.csv")
    );
    assert_eq!(a.objects[0].rows_delivered, 20, "{a:?}");
    assert_eq!(b.objects[0].rows_delivered, 20, "{b:?}");

    let state = stack.state();
    assert!(
        state.requests.iter().all(|r| r.status == Some(200)),
        "no 429: {:?}",
        state
            .requests
            .iter()
            .filter(|r| r.status != Some(200))
            .count()
    );
    // One budget of 600/min (paced at 97 %) spaces the 40 requests of both syncs 103 ms apart:
    // the last goes at least 39 intervals after the first, ~4 s, whatever the scheduling (the
    // slots are absolute instants; a stall can only delay them). Two budgets of 600 would finish
    // in about half that.
    let mut times: Vec<_> = state.requests.iter().map(|r| r.timestamp).collect();
    times.sort();
    let span = (times[times.len() - 1] - times[0]).num_milliseconds() as f64 / 1000.0;
    let interval = 60.0 / (600.0 * 0.97);
    assert!(
        span >= 0.9 * 39.0 * interval,
        "40 requests in {span:.2} s: faster than one budget of 600/min allows ({:.2} s)",
        39.0 * interval
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_takes_effect_in_a_warm_instance() {
    let stack = Stack::start().await;
    let first = stack
        .put_config(
            "syncs:\n  - {name: users, prefix: exports/, object_type: bulk_import, \
             field_mapping: {customer_id: user_id, city: city}}\n",
        )
        .await;
    let location = sync_config(&stack);
    let deps = stack
        .deps(&[("SYNC_CONFIG", &location), ("SYNC_CONFIG_RELOAD_SECS", "0")])
        .await;
    stack.put("exports/1.csv", users_csv(5).into_bytes()).await;
    let one = stack.invoke(&deps, "exports/1.csv").await;
    assert_eq!(one.objects[0].rows_delivered, 5);
    assert!(!stack.state().users["user-00001"].contains_key("plan"));

    // The same instance, a new file: the next invocation maps `plan` too.
    let second = stack
        .put_config(
            "syncs:\n  - {name: users, prefix: exports/, object_type: bulk_import, \
             field_mapping: {customer_id: user_id, city: city, plan: plan}}\n",
        )
        .await;
    assert_ne!(first, second);
    stack.put("exports/2.csv", users_csv(5).into_bytes()).await;
    let two = stack.invoke(&deps, "exports/2.csv").await;
    assert_eq!(two.objects[0].rows_delivered, 5, "{two:?}");
    assert_eq!(stack.state().users["user-00001"]["plan"], "free");
    let report = stack
        .get_json(two.objects[0].report.as_deref().unwrap())
        .await;
    assert_eq!(report["sync_config_etag"], second.as_str());

    // A broken new version stops the invocation with one line, and nothing runs half-configured.
    stack
        .put_config("syncs:\n  - {name: users, prefix: exports/, object_type: people}\n")
        .await;
    stack.put("exports/3.csv", users_csv(5).into_bytes()).await;
    let requests_before = stack.state().requests.len();
    let err = handler::handle(
        &deps,
        s3_event(&stack.bucket, "exports/3.csv"),
        &Invocation::unbounded(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!(
            "SYNC_CONFIG {location}: sync \"users\": object_type: \"people\""
        )),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    assert_eq!(stack.state().requests.len(), requests_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_broken_file_stops_start_up_with_one_line() {
    let stack = Stack::start().await;
    let location = sync_config(&stack);
    let mut env = stack.env();
    env.insert("SYNC_CONFIG".into(), location.clone());
    let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let err = moengage_sync::app::startup::connect_with(config.clone(), &stack.aws)
        .await
        .err()
        .expect("no file, no start")
        .to_string();
    assert!(
        err.starts_with(&format!("SYNC_CONFIG {location}: no such object")),
        "{err}"
    );
    stack
        .put_config("syncs:\n  - {name: u, prefix: a/, object_type: events, colour: red}\n")
        .await;
    let err = moengage_sync::app::startup::connect_with(config, &stack.aws)
        .await
        .err()
        .expect("bad file, no start")
        .to_string();
    assert!(err.contains("sync \"u\": unknown field `colour`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_column_typed_mapping_from_the_file_delivers_typed_values() {
    // 100 typed columns: far beyond what fits in Lambda's 4 KB of variables.
    let types = ["string", "integer", "number", "boolean"];
    let mut yaml = String::from(
        "syncs:\n  - name: wide\n    prefix: exports/\n    object_type: bulk_import\n    \
         field_mapping:\n      customer_id: id\n",
    );
    let mut header = String::from("id");
    let row = |i: usize| {
        let mut line = format!("u-{i}");
        for c in 0..100 {
            line.push(',');
            line.push_str(&match c % 4 {
                0 => format!("text {i}-{c}"),
                1 => format!("{}", i * 1000 + c),
                2 => format!("{i}.{c}"),
                _ => (if (i + c).is_multiple_of(2) {
                    "true"
                } else {
                    "false"
                })
                .to_string(),
            });
        }
        line
    };
    for c in 0..100 {
        header.push_str(&format!(",col_{c:03}"));
        yaml.push_str(&format!(
            "      attr_{c:03}: {{ column: col_{c:03}, type: {} }}\n",
            types[c % 4]
        ));
    }
    assert!(yaml.len() > 4096, "{} bytes", yaml.len());
    let mut csv = format!("{header}\n");
    for i in 1..=3 {
        csv.push_str(&row(i));
        csv.push('\n');
    }
    let stack = Stack::start().await;
    stack.put_config(&yaml).await;
    let location = sync_config(&stack);
    let deps = stack.deps(&[("SYNC_CONFIG", &location)]).await;
    stack.put("exports/wide.csv", csv.into_bytes()).await;

    let out = stack.invoke(&deps, "exports/wide.csv").await;
    let o = &out.objects[0];
    assert_eq!(
        (o.status, o.rows_delivered, o.rows_rejected),
        (Status::Complete, 3, 0),
        "{o:?}"
    );
    let user = &stack.state().users["u-2"];
    assert_eq!(user["attr_000"], "text 2-0");
    assert_eq!(user["attr_001"], 2001);
    assert_eq!(user["attr_002"], 2.2);
    assert_eq!(user["attr_003"], false);
    assert_eq!(stack.state().users["u-1"]["attr_099"], true);
    assert_eq!(user.keys().filter(|k| k.starts_with("attr_")).count(), 100);
}
