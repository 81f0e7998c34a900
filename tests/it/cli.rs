//! The binary's command-line mode, run as a user runs it (the real `moengage-sync` executable, with
//! environment variables pointing at this test's moto and MoEngage emulator).
//!
//! `preview` must show exactly what the function sends and send nothing; `check` must pass on a
//! good configuration and fail with one line saying what to fix on a bad one.

use std::collections::HashMap;

use moengage_sync::account::report::RowReport;
use moengage_sync::cli::indent_json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::support::{Stack, API_KEY};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/preview/users.csv"
);

/// Maps every column, one of them typed, so rows can be rejected (placeholder id, bad date) and
/// warned about (a long string).
const MAPPING: &str = r#"{"customer_id":"user_id","email":"email","first_name":"first_name","city":"city","signup_date":{"column":"signup_date","type":"date"},"bio":"bio"}"#;

/// Small batches, so the fixture's 12 rows make several requests.
const OVERRIDES: [(&str, &str); 2] = [("FIELD_MAPPING", MAPPING), ("BATCH_MAX_RECORDS", "4")];

/// What a run of the binary printed.
pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `moengage-sync <args>` with only the stack's configuration (plus `env`) in its
/// environment: nothing leaks in from the developer's shell.
pub(crate) async fn run(stack: &Stack, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut vars: HashMap<String, String> = stack.env();
    for (k, v) in OVERRIDES.iter().chain(env) {
        vars.insert(k.to_string(), v.to_string());
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_moengage-sync"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars)
        .env("AWS_ENDPOINT_URL", &stack.moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .expect("run moengage-sync");
    let output = Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !output.stdout.contains(API_KEY) && !output.stderr.contains(API_KEY),
        "the API key leaked"
    );
    output
}

/// `preview --json` of `source`, parsed, with the request bodies exactly as printed (a `Value`
/// would sort their keys).
async fn preview_json(stack: &Stack, source: &str) -> (Value, Vec<String>) {
    #[derive(Deserialize)]
    struct Doc {
        requests: Vec<Request>,
    }
    #[derive(Deserialize)]
    struct Request {
        body: Box<RawValue>,
    }
    let out = run(stack, &[], &["preview", source, "--rows", "100", "--json"]).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let doc = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("--json must print one JSON document ({e}): {}", out.stdout));
    let raw: Doc = serde_json::from_str(&out.stdout).expect("requests with bodies");
    (
        doc,
        raw.requests
            .into_iter()
            .map(|r| r.body.get().to_string())
            .collect(),
    )
}

fn customer_ids(body: &Value) -> Vec<String> {
    body["elements"]
        .as_array()
        .expect("elements")
        .iter()
        .map(|e| e["customer_id"].as_str().expect("customer_id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_shows_the_exact_bodies_the_function_sends_and_sends_nothing() {
    let stack = Stack::start().await;

    let (doc, bodies) = preview_json(&stack, FIXTURE).await;
    assert!(
        stack.state().requests.is_empty(),
        "preview sent requests: {:?}",
        stack.state().requests
    );

    // The same file through the real handler, via moto's S3, to the emulator.
    stack
        .put(
            "exports/users.csv",
            std::fs::read(FIXTURE).expect("fixture"),
        )
        .await;
    let deps = stack.deps(&OVERRIDES).await;
    let summary = stack.invoke(&deps, "exports/users.csv").await;
    let obj = &summary.objects[0];
    let state = stack.state();

    let requests = doc["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 3, "12 rows, 2 rejected, 4 per request");
    assert_eq!(requests.len(), state.requests.len(), "request count");
    // Requests go concurrently: pair each previewed body with the request that carried its users.
    for (i, previewed) in requests.iter().enumerate() {
        let body = &previewed["body"];
        let (at, received) = state
            .requests
            .iter()
            .enumerate()
            .find(|(_, r)| r.customer_ids == customer_ids(body))
            .unwrap_or_else(|| panic!("request {i} was not received"));
        assert_eq!(
            previewed["path"],
            received.path.as_str(),
            "request {i} path"
        );
        assert_eq!(
            previewed["url"].as_str(),
            Some(format!("{}{}", stack.emulator.base_url(), received.path).as_str())
        );
        // Same length and same content, element by element: the same bytes.
        assert_eq!(
            previewed["bytes"].as_u64(),
            Some(received.bytes as u64),
            "request {i} length"
        );
        assert_eq!(
            bodies[i].len(),
            received.bytes,
            "request {i}: the embedded body is the wire body"
        );
        assert_eq!(
            customer_ids(body),
            received.customer_ids,
            "request {i} customer ids"
        );
        let stored: Vec<&Value> = state
            .accepted
            .iter()
            .filter(|a| a.request == at)
            .map(|a| &a.element)
            .collect();
        let sent: Vec<&Value> = body["elements"]
            .as_array()
            .expect("elements")
            .iter()
            .collect();
        assert_eq!(sent, stored, "request {i} elements");
    }
    assert!(
        state.dropped.is_empty(),
        "MoEngage would drop: {:?}",
        state.dropped
    );

    // Totals and rejections agree with the run.
    let totals = &doc["totals"];
    assert_eq!(totals["rows"], obj.rows_read);
    assert_eq!(totals["would_send"], obj.rows_delivered);
    assert_eq!(totals["rejected"], obj.rows_rejected);
    assert_eq!(totals["requests"], obj.requests_sent);
    assert_eq!(totals["rows_warned"], obj.rows_warned);
    // A local file without STATE_BUCKET: the sync state is not read.
    assert_eq!(totals["unchanged"], Value::Null);
    assert!(totals["unchanged_note"]
        .as_str()
        .unwrap_or_default()
        .contains("sync state not read"));
    let report = stack.get_json(obj.report.as_deref().expect("report")).await;
    let previewed: Vec<RowReport> =
        serde_json::from_value(doc["rejected"].clone()).expect("rejected rows");
    let reported: Vec<RowReport> =
        serde_json::from_value(report["rejected_rows"].clone()).expect("run report rejected_rows");
    assert_eq!(previewed, reported);
    assert_eq!(
        previewed
            .iter()
            .map(|r| (r.row, r.column.as_str()))
            .collect::<Vec<_>>(),
        [(3, "user_id"), (4, "signup_date")]
    );
    assert_eq!(doc["warnings"], report["warnings"]);
    assert!(
        doc["warnings"]
            .to_string()
            .contains("MoEngage truncates values over 512"),
        "{}",
        doc["warnings"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_text_lists_bodies_rejections_warnings_and_totals() {
    let stack = Stack::start().await;
    let (_, bodies) = preview_json(&stack, FIXTURE).await;

    let out = run(&stack, &[], &["preview", FIXTURE]).await;

    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let text = &out.stdout;
    // Default: the first 10 rows — 8 sent (2 rejected) in requests of 4.
    assert!(text.contains("first 10 rows"), "{text}");
    assert!(
        text.contains("rows: 10  would send: 8 in 2 requests  rejected: 2  with warnings: 1"),
        "{text}"
    );
    assert!(
        text.contains("unchanged: n/a (sync state not read"),
        "{text}"
    );
    // Bodies are shown indented, byte for byte otherwise.
    for raw in bodies.iter().take(2) {
        assert!(
            text.contains(&indent_json(raw)),
            "body missing from the text output:\n{text}"
        );
    }
    assert!(text.contains("row 3 (line 4), column user_id: customer_id \"null\" is a placeholder MoEngage refuses"), "{text}");
    assert!(
        text.contains("row 4 (line 5), column signup_date:"),
        "{text}"
    );
    assert!(
        text.contains("row 5 (line 6), column bio: bio: string of"),
        "{text}"
    );
    assert!(stack.state().requests.is_empty(), "preview sent requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_of_an_s3_object_matches_the_local_file() {
    let stack = Stack::start().await;
    stack
        .put(
            "exports/users.csv",
            std::fs::read(FIXTURE).expect("fixture"),
        )
        .await;

    let (from_s3, s3_bodies) =
        preview_json(&stack, &format!("s3://{}/exports/users.csv", stack.bucket)).await;
    let (local, local_bodies) = preview_json(&stack, FIXTURE).await;

    assert_eq!(s3_bodies, local_bodies);
    // The S3 preview reads the (empty) sync state; the local one cannot: compare the rest.
    let without_unchanged = |t: &Value| {
        let mut t = t.clone();
        t.as_object_mut().map(|m| {
            m.remove("unchanged");
            m.remove("unchanged_note")
        });
        t
    };
    assert_eq!(
        without_unchanged(&from_s3["totals"]),
        without_unchanged(&local["totals"])
    );
    assert_eq!(from_s3["totals"]["unchanged"], 0);
    assert_eq!(from_s3["rejected"], local["rejected"]);
    assert!(stack.state().requests.is_empty());

    let missing = run(
        &stack,
        &[],
        &[
            "preview",
            &format!("s3://{}/exports/nope.csv", stack.bucket),
        ],
    )
    .await;
    assert_eq!(missing.code, Some(2));
    assert!(
        missing.stderr.contains("exports/nope.csv") && missing.stderr.contains("no such key"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_counts_rows_the_sync_state_already_has_and_leaves_it_untouched() {
    let stack = Stack::start().await;
    stack
        .put(
            "exports/users.csv",
            std::fs::read(FIXTURE).expect("fixture"),
        )
        .await;
    let deps = stack.deps(&OVERRIDES).await;
    let delivered = stack.invoke(&deps, "exports/users.csv").await.objects[0].rows_delivered;
    assert!(delivered > 0);
    let requests_before = stack.state().requests.len();

    let uri = format!("s3://{}/exports/users.csv", stack.bucket);
    let (doc, bodies) = preview_json(&stack, &uri).await;
    assert_eq!(doc["totals"]["unchanged"], delivered, "{}", doc["totals"]);
    assert_eq!(doc["totals"]["would_send"], 0);
    assert!(bodies.is_empty());
    assert_eq!(
        stack.state().requests.len(),
        requests_before,
        "preview sends nothing"
    );
    // Preview only reads the state: a second preview sees the same.
    let (again, _) = preview_json(&stack, &uri).await;
    assert_eq!(again["totals"], doc["totals"]);
}

/// The `check` lines, one per check, each starting with ✓, ✗ or –.
fn check_lines(out: &Output) -> Vec<&str> {
    let lines: Vec<&str> = out.stdout.lines().collect();
    for l in &lines {
        assert!(
            l.starts_with("✓ ") || l.starts_with("✗ ") || l.starts_with("– "),
            "not a check line: {l:?}"
        );
    }
    lines
}

fn line<'a>(lines: &[&'a str], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| {
            l[l.char_indices().nth(2).map_or(0, |(i, _)| i)..].starts_with(&format!("{name}: "))
        })
        .copied()
        .unwrap_or_else(|| panic!("no {name} line in {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_with_good_credentials() {
    let stack = Stack::start().await;

    let out = run(&stack, &[], &["check", "--bucket", &stack.bucket]).await;

    let lines = check_lines(&out);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    for name in [
        "configuration",
        "Data API key",
        "DNS",
        "credentials",
        "App ID",
        "bucket",
        "dead-letter queue",
    ] {
        assert!(line(&lines, name).starts_with('✓'), "{name}: {lines:#?}");
    }
    assert!(
        line(&lines, "dead-letter queue").ends_with("0 messages waiting"),
        "{lines:#?}"
    );
    // Checking sends no data: only the authentication call and the empty App ID probe.
    let state = stack.state();
    assert_eq!(state.requests.len(), 2, "{:?}", state.requests);
    assert!(state.users.is_empty() && state.events.is_empty() && state.accepted.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_with_one_line_saying_what_to_fix() {
    let stack = Stack::start().await;
    let host = stack
        .emulator
        .base_url()
        .trim_start_matches("http://")
        .to_string();
    let bucket = ["--bucket", stack.bucket.as_str()];

    // Wrong key: 401, and the App ID is not probed with credentials that do not work.
    let out = run(
        &stack,
        &[("MOENGAGE_API_KEY", "not-the-key")],
        &["check", bucket[0], bucket[1]],
    )
    .await;
    let lines = check_lines(&out);
    assert_eq!(out.code, Some(1));
    let credentials = line(&lines, "credentials");
    assert!(
        credentials.starts_with(&format!(
            "✗ credentials: 401 from {host}: the Workspace ID/Data API key pair is not valid on DC-01 — your dashboard URL dashboard-NN.moengage.com tells your data center"
        )),
        "{credentials}"
    );
    assert!(
        line(&lines, "App ID").starts_with("– App ID: not checked"),
        "{lines:#?}"
    );
    assert!(
        line(&lines, "bucket").starts_with('✓')
            && line(&lines, "dead-letter queue").starts_with('✓')
    );
    assert!(
        !out.stdout.contains("not-the-key"),
        "the key leaked: {}",
        out.stdout
    );

    // Wrong App ID: the credentials pass (authentication carries no App ID), the path probe gets 409.
    let out = run(
        &stack,
        &[("MOENGAGE_APP_ID", "SOME_OTHER_APP")],
        &["check", bucket[0], bucket[1]],
    )
    .await;
    let lines = check_lines(&out);
    assert_eq!(out.code, Some(1));
    assert!(line(&lines, "credentials").starts_with('✓'), "{lines:#?}");
    let app = line(&lines, "App ID");
    assert!(
        app.starts_with(&format!(
            "✗ App ID: 409 from {host}: the App ID in the request path (SOME_OTHER_APP) is not the Workspace ID (WORKSPACE1) — unset MOENGAGE_APP_ID"
        )),
        "{app}"
    );

    // Unreachable API: DNS is fine (loopback), the connection is refused.
    let out = run(
        &stack,
        &[("MOENGAGE_API_URL", "http://127.0.0.1:1")],
        &["check", bucket[0], bucket[1]],
    )
    .await;
    let lines = check_lines(&out);
    assert_eq!(out.code, Some(1));
    assert!(
        line(&lines, "DNS").starts_with("✓ DNS: 127.0.0.1 resolves"),
        "{lines:#?}"
    );
    let credentials = line(&lines, "credentials");
    assert!(
        credentials.starts_with(
            "✗ credentials: cannot reach http://127.0.0.1:1/v1/integrations/authentication: "
        ),
        "{credentials}"
    );

    // A bucket that does not exist, and no bucket at all.
    let out = run(&stack, &[], &["check", "--bucket", "no-such-bucket"]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        line(&check_lines(&out), "bucket")
            .starts_with("✗ bucket: s3://no-such-bucket does not exist"),
        "{}",
        out.stdout
    );
    let out = run(&stack, &[], &["check"]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        line(&check_lines(&out), "bucket").contains("pass --bucket <name> or set STATE_BUCKET"),
        "{}",
        out.stdout
    );

    // A configuration error is the first and only line.
    let out = run(&stack, &[("MOENGAGE_DATA_CENTER", "DC-09")], &["check"]).await;
    assert_eq!(out.code, Some(1));
    assert_eq!(check_lines(&out).len(), 1);
    assert!(
        out.stdout
            .starts_with("✗ configuration: MOENGAGE_DATA_CENTER=\"DC-09\" is not valid"),
        "{}",
        out.stdout
    );

    // None of this stored anything.
    assert!(stack.state().accepted.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_sync_of_a_sync_config_and_preview_uses_the_one_named() {
    let stack = Stack::start().await;
    let dir = std::env::temp_dir().join(format!("moengage-cli-syncs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("syncs.yaml");
    std::fs::write(
        &file,
        "budgets:\n  create_event: { requests_per_minute: 600 }\nsyncs:\n\
         - {name: users, prefix: exports/users/, object_type: bulk_import, \
            field_mapping: {customer_id: user_id, city: city}}\n\
         - {name: clicks, prefix: exports/events/, object_type: events, \
            field_mapping: {customer_id: user_id, action: first_name}}\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let env = [("SYNC_CONFIG", path.as_str())];

    let out = run(&stack, &env, &["check", "--bucket", &stack.bucket]).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let lines = check_lines(&out);
    assert!(
        line(&lines, "configuration").contains("2 syncs from SYNC_CONFIG"),
        "{lines:#?}"
    );
    let syncs: Vec<&&str> = lines.iter().filter(|l| l.starts_with("✓ sync: ")).collect();
    assert_eq!(syncs.len(), 2, "{lines:#?}");
    assert!(
        syncs[0]
            .contains("users: keys under exports/users/ → bulk_import (upsert, 2 mapped fields)")
            && syncs[0].contains("/v1/transition/"),
        "{}",
        syncs[0]
    );
    assert!(
        syncs[1].contains("clicks: keys under exports/events/ → events")
            && syncs[1].contains("budget 600 requests/min"),
        "{}",
        syncs[1]
    );

    // preview --sync: that sync's mapping and endpoint.
    let out = run(
        &stack,
        &env,
        &[
            "preview", FIXTURE, "--rows", "2", "--json", "--sync", "clicks",
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["sync"], "clicks");
    assert_eq!(doc["object_type"], "events");
    assert_eq!(doc["requests"][0]["body"]["actions"][0]["action"], "Ann");
    // Without --sync, a local file that routes nowhere cannot pick between two syncs.
    let out = run(&stack, &env, &["preview", FIXTURE]).await;
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("--sync NAME") && out.stderr.contains("users, clicks"),
        "{}",
        out.stderr
    );
    // A broken file: one line naming the sync and the field, and check fails.
    std::fs::write(
        &file,
        "syncs:\n- {name: users, prefix: x/, object_type: users}\n",
    )
    .unwrap();
    let out = run(&stack, &env, &["check"]).await;
    assert_eq!(out.code, Some(1));
    let lines = check_lines(&out);
    assert!(
        line(&lines, "configuration").contains(&format!(
            "SYNC_CONFIG {path}: sync \"users\": object_type: \"users\" is not valid"
        )),
        "{lines:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stack's variables plus `STATE_BUCKET`, for `sync` and `runs`.
fn with_state<'a>(stack: &'a Stack, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("STATE_BUCKET", stack.bucket.as_str())];
    env.extend_from_slice(extra);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_of_a_prefix_delivers_each_object_reports_it_and_runs_lists_it() {
    let stack = Stack::start().await;
    let users = |from: usize, n: usize| {
        let mut s = String::from("user_id,email,first_name,city,signup_date,bio\n");
        for i in from..from + n {
            s.push_str(&format!(
                "u-{i},u{i}@example.com,N{i},City,2026-01-02,bio\n"
            ));
        }
        s
    };
    stack.put("exports/a.csv", users(1, 10).into_bytes()).await;
    let mut bad = users(11, 10);
    bad.push_str(
        "u-99,x@example.com,X,City,not-a-date,bio\nnull,y@example.com,Y,City,2026-01-02,bio\n",
    );
    stack.put("exports/b.csv", bad.into_bytes()).await;
    stack.put("exports/c.csv", users(21, 10).into_bytes()).await;
    stack.put("exports/_SUCCESS", Vec::new()).await;
    let prefix = format!("s3://{}/exports/", stack.bucket);

    let out = run(&stack, &with_state(&stack, &[]), &["sync", &prefix]).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    for key in ["a.csv", "b.csv", "c.csv"] {
        assert!(
            out.stdout
                .contains(&format!("✓ s3://{}/exports/{key} (default)", stack.bucket)),
            "{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("_SUCCESS"), "{}", out.stdout);
    assert!(
        out.stdout.contains("3 objects (0 failed): 32 rows read, 30 delivered, 0 unchanged, 2 rejected, 0 dead-lettered, 0 pending"),
        "{}",
        out.stdout
    );
    // Off a TTY: progress as plain lines on stderr.
    assert!(
        out.stderr.contains(&format!(
            "sync: s3://{}/exports/b.csv: 12 rows read",
            stack.bucket
        )),
        "{}",
        out.stderr
    );
    assert_eq!(stack.state().users.len(), 30);
    assert!(out.stdout.contains("report: s3://"), "{}", out.stdout);

    // The same command again: each version is complete, nothing is sent twice.
    let again = run(&stack, &with_state(&stack, &[]), &["sync", &prefix]).await;
    assert_eq!(again.code, Some(0), "{}{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains("already processed completely"),
        "{}",
        again.stdout
    );
    assert!(stack.deliveries_per_customer().values().all(|n| *n == 1));

    // A Lambda run of another object, then `runs` lists all four from the run log.
    stack.put("exports/d.csv", users(31, 5).into_bytes()).await;
    let deps = stack.deps(&[("FIELD_MAPPING", MAPPING)]).await;
    let lambda = stack.invoke(&deps, "exports/d.csv").await;
    assert_eq!(lambda.objects[0].rows_delivered, 5);
    let runs = run(&stack, &with_state(&stack, &[]), &["runs", "--json"]).await;
    assert_eq!(runs.code, Some(0), "{}", runs.stderr);
    let records: Vec<Value> = runs
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<&str> = records.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    for k in [
        "exports/a.csv",
        "exports/b.csv",
        "exports/c.csv",
        "exports/d.csv",
    ] {
        assert!(keys.contains(&k), "{keys:?}");
    }
    let b = records
        .iter()
        .find(|r| r["key"] == "exports/b.csv")
        .unwrap();
    assert_eq!(b["rows_rejected"], 2);
    assert_eq!(b["rejections"].as_array().unwrap().len(), 2, "{b}");
    let table = run(
        &stack,
        &with_state(&stack, &[]),
        &["runs", "--status", "failed"],
    )
    .await;
    assert!(table.stdout.contains("no runs"), "{}", table.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_dry_run_of_a_local_file_needs_no_aws_and_sends_nothing() {
    let stack = Stack::start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_moengage-sync"))
        .args(["sync", "--dry-run", "--json", FIXTURE])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OBJECT_TYPE", "bulk_import")
        .env("FIELD_MAPPING", MAPPING)
        .env("BATCH_MAX_RECORDS", "4")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["totals"]["rows_read"], 12);
    assert_eq!(doc["totals"]["rows_rejected"], 2);
    assert_eq!(
        doc["totals"]["requests"], 3,
        "12 rows, 2 rejected, 4 per request"
    );
    let rejected = doc["objects"][0]["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert!(rejected
        .iter()
        .all(|r| r["row"].as_u64().unwrap() > 0 && r["reason"].is_string()));
    assert!(stack.state().requests.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_at_a_batch_boundary_and_the_same_command_resumes_exactly_once() {
    let stack = Stack::start().await;
    stack.emulator.set_faults(moengage_emulator::Faults {
        delay_ms: 50,
        ..Default::default()
    });
    let rows = 1_000;
    let mut csv = String::from("user_id,email,first_name,city,signup_date,bio\n");
    for i in 1..=rows {
        csv.push_str(&format!("u-{i},u{i}@example.com,N,City,2026-01-02,bio\n"));
    }
    stack.put("exports/big.csv", csv.into_bytes()).await;
    let source = format!("s3://{}/exports/big.csv", stack.bucket);
    let env = with_state(
        &stack,
        &[
            ("RATE_LIMIT_PER_MINUTE", "1200"),
            ("BATCH_MAX_RECORDS", "10"),
        ],
    );

    let mut vars: HashMap<String, String> = stack.env();
    for (k, v) in OVERRIDES.iter().chain(&env) {
        vars.insert(k.to_string(), v.to_string());
    }
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_moengage-sync"))
        .args(["sync", &source])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&vars)
        .env("AWS_ENDPOINT_URL", &stack.moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while stack.deliveries_per_customer().len() < rows / 4 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("run the same command again to resume"),
        "{stdout}"
    );
    let first = stack.deliveries_per_customer().len();
    assert!(first < rows, "stopped mid-object ({first} delivered)");

    let again = run(&stack, &env, &["sync", &source]).await;
    assert_eq!(again.code, Some(0), "{}{}", again.stdout, again.stderr);
    let per = stack.deliveries_per_customer();
    assert_eq!(per.len(), rows, "every row delivered");
    assert!(
        per.values().all(|n| *n == 1),
        "exactly once: {:?}",
        per.iter()
            .filter(|(_, n)| **n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
}
