//! All three object types end to end (CSV, gzip CSV, NDJSON): what MoEngage stores equals the
//! expected payloads field by field, nothing is silently dropped; and an export full of malformed
//! rows has exactly those rows rejected, each with the right reason.

use moengage_sync::account::report::Status;
use serde_json::{json, Map, Value};

use crate::support::{gzip, Stack};

const USERS_MAPPING: &str = r#"{"customer_id":"user_id","email":"email","first_name":"first_name",
  "signup":{"column":"signup_ts","type":"datetime"},"age":{"column":"age","type":"integer"},
  "vip":{"column":"vip","type":"boolean"},"tags":{"column":"tags","type":"array"}}"#;

const EVENTS_MAPPING: &str = r#"{"customer_id":"user_id","action":"event","platform":"platform",
  "user_time":{"column":"ts","type":"datetime"},"amount":{"column":"amount","type":"number"},"sku":"sku"}"#;

fn users_csv() -> String {
    let mut s = String::from("user_id,email,first_name,signup_ts,age,vip,tags\n");
    for i in 1..=20 {
        let vip = if i % 2 == 0 { "yes" } else { "F" };
        // Every third user has no first name: the attribute is left out, not blanked.
        let first = if i % 3 == 0 {
            String::new()
        } else {
            format!("Ann {i}")
        };
        s.push_str(&format!("u-{i},u{i}@example.com,{first},2026-0{}-0{} 08:30:00.000 +0200,{},{vip},\"red,blue\"\n", 1 + i % 9, 1 + i % 9, 20 + i));
    }
    s
}

fn users_ndjson() -> String {
    (1..=20)
        .map(|i| {
            let mut v = json!({"user_id": format!("u-{i}"), "email": format!("u{i}@example.com"),
                "signup_ts": format!("2026-0{}-0{}T06:30:00Z", 1 + i % 9, 1 + i % 9), "age": 20 + i, "vip": i % 2 == 0, "tags": ["red", "blue"]});
            if i % 3 != 0 {
                v["first_name"] = json!(format!("Ann {i}"));
            } else {
                v["first_name"] = Value::Null;
            }
            v.to_string() + "\n"
        })
        .collect()
}

fn expected_user(i: usize) -> Value {
    let mut m = Map::new();
    m.insert("email".into(), json!(format!("u{i}@example.com")));
    if !i.is_multiple_of(3) {
        m.insert("first_name".into(), json!(format!("Ann {i}")));
    }
    m.insert(
        "signup".into(),
        json!(format!("2026-0{}-0{}T06:30:00Z", 1 + i % 9, 1 + i % 9)),
    );
    m.insert("age".into(), json!(20 + i));
    m.insert("vip".into(), json!(i.is_multiple_of(2)));
    m.insert("tags".into(), json!(["red", "blue"]));
    Value::Object(m)
}

fn events_csv() -> String {
    let mut s = String::from("user_id,event,platform,ts,amount,sku\n");
    for i in 1..=20 {
        let platform = ["android", "IOS", "Web", "tv"][i % 4];
        s.push_str(&format!(
            "u-{i},purchase_{},{platform},{},{}.5,SKU-{i}\n",
            i % 3,
            1_793_527_200 + i * 60,
            i
        ));
    }
    s
}

fn events_ndjson() -> String {
    (1..=20)
        .map(|i| {
            let platform = ["android", "IOS", "Web", "tv"][i % 4];
            json!({"user_id": format!("u-{i}"), "event": format!("purchase_{}", i % 3), "platform": platform,
                   "ts": 1_793_527_200 + i * 60, "amount": i as f64 + 0.5, "sku": format!("SKU-{i}")})
            .to_string()
                + "\n"
        })
        .collect()
}

fn expected_event(i: usize) -> Value {
    let platform = ["ANDROID", "iOS", "web", "TV"][i % 4];
    let t = chrono::DateTime::from_timestamp((1_793_527_200 + i * 60) as i64, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    json!({"action": format!("purchase_{}", i % 3), "attributes": {"amount": i as f64 + 0.5, "sku": format!("SKU-{i}")},
           "platform": platform, "user_time": t})
}

/// (key, bytes) of the same rows as CSV, gzip CSV and NDJSON.
fn variants(csv: String, ndjson: String, name: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        (format!("exports/{name}.csv"), csv.clone().into_bytes()),
        (format!("exports/{name}.csv.gz"), gzip(csv.as_bytes())),
        (format!("exports/{name}.ndjson"), ndjson.into_bytes()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_attributes_go_one_by_one_to_track_user_with_typed_values() {
    for (key, bytes) in variants(users_csv(), users_ndjson(), "users") {
        let stack = Stack::start().await;
        let deps = stack
            .deps(&[
                ("OBJECT_TYPE", "user_attributes"),
                ("FIELD_MAPPING", USERS_MAPPING),
            ])
            .await;
        stack.put(&key, bytes).await;

        let obj = stack.invoke(&deps, &key).await.objects.remove(0);

        assert_eq!(
            (obj.status, obj.rows_delivered, obj.rows_rejected),
            (Status::Complete, 20, 0),
            "{key}: {obj:?}"
        );
        let state = stack.state();
        assert!(state.dropped.is_empty(), "{key}: {:?}", state.dropped);
        assert_eq!(
            state.requests.len(),
            20,
            "{key}: one Track User call per row"
        );
        assert!(state
            .requests
            .iter()
            .all(|r| r.path == "/v1/customer/WORKSPACE1"));
        for i in 1..=20 {
            assert_eq!(
                Value::Object(state.users[&format!("u-{i}")].clone()),
                expected_user(i),
                "{key}: user {i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_one_by_one_to_create_event_with_action_fields_on_the_action() {
    for (key, bytes) in variants(events_csv(), events_ndjson(), "events") {
        let stack = Stack::start().await;
        let deps = stack
            .deps(&[("OBJECT_TYPE", "events"), ("FIELD_MAPPING", EVENTS_MAPPING)])
            .await;
        stack.put(&key, bytes).await;

        let obj = stack.invoke(&deps, &key).await.objects.remove(0);

        assert_eq!(
            (obj.status, obj.rows_delivered, obj.rows_rejected),
            (Status::Complete, 20, 0),
            "{key}: {obj:?}"
        );
        assert_eq!(
            obj.rows_warned, 0,
            "{key}: known platforms in any case are normalised silently"
        );
        let state = stack.state();
        assert!(state.dropped.is_empty(), "{key}: {:?}", state.dropped);
        assert!(state
            .requests
            .iter()
            .all(|r| r.path == "/v1/event/WORKSPACE1"));
        assert_eq!(state.events.len(), 20);
        // Events of different users may arrive in any order (requests go concurrently).
        let mut events: Vec<_> = state.events.iter().collect();
        events.sort_by_key(|e| e.customer_id[2..].parse::<usize>().unwrap_or(0));
        for (i, e) in (1..=20).zip(events) {
            assert_eq!(e.customer_id, format!("u-{i}"));
            assert_eq!(e.raw, expected_event(i), "{key}: event {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_mixes_users_and_events_in_transition_calls() {
    let mut csv = events_csv();
    // Rows without an action become customer elements in the same export.
    csv.push_str("u-100,,web,,,SKU-X\n");
    let stack = Stack::start().await;
    let deps = stack
        .deps(&[
            ("OBJECT_TYPE", "bulk_import"),
            ("FIELD_MAPPING", EVENTS_MAPPING),
        ])
        .await;
    stack
        .put("exports/mixed.csv.gz", gzip(csv.as_bytes()))
        .await;

    let obj = stack
        .invoke(&deps, "exports/mixed.csv.gz")
        .await
        .objects
        .remove(0);

    assert_eq!(
        (obj.rows_delivered, obj.rows_rejected, obj.requests_sent),
        (21, 0, 1),
        "{obj:?}"
    );
    let state = stack.state();
    assert!(state.dropped.is_empty(), "{:?}", state.dropped);
    assert_eq!(state.requests[0].path, "/v1/transition/WORKSPACE1");
    for (i, e) in (1..=20).zip(&state.events) {
        assert_eq!(e.raw, expected_event(i));
    }
    assert_eq!(
        Value::Object(state.users["u-100"].clone()),
        json!({"sku": "SKU-X"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_malformed_row_is_rejected_with_its_reason_and_the_rest_arrive() {
    let future = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let huge = "x".repeat(130_000);
    // (row content, column, reason fragment); `None` marks a good row.
    let rows: Vec<(String, Option<(&str, &str)>)> = vec![
        (
            "u-1,open,web,2026-11-01T10:00:00Z,1.5,30,yes,0,S".into(),
            None,
        ),
        (
            ",open,web,,1,30,yes,0,S".into(),
            Some(("user_id", "customer_id is empty")),
        ),
        (
            "   ,open,web,,1,30,yes,0,S".into(),
            Some(("user_id", "customer_id is empty")),
        ),
        (
            "guest,open,web,,1,30,yes,0,S".into(),
            Some(("user_id", "placeholder")),
        ),
        (
            "NULL,open,web,,1,30,yes,0,S".into(),
            Some(("user_id", "placeholder")),
        ),
        (
            "-1,open,web,,1,30,yes,0,S".into(),
            Some(("user_id", "placeholder")),
        ),
        (
            "u-2,,web,,1,30,yes,0,S".into(),
            Some(("event", "action is empty")),
        ),
        (
            "u-3,open,web,2026-11-01T10:00:00Z,1,30,yes,0,S".into(),
            None,
        ),
        (
            format!("u-4,open,web,{future},1,30,yes,0,S"),
            Some(("ts", "in the future")),
        ),
        (
            "u-5,open,web,last tuesday,1,30,yes,0,S".into(),
            Some(("ts", "not a datetime")),
        ),
        (
            "u-6,open,web,,abc,30,yes,0,S".into(),
            Some(("amount", "not a number")),
        ),
        (
            "u-7,open,web,,1,1.5,yes,0,S".into(),
            Some(("age", "not an integer")),
        ),
        (
            "u-8,open,web,,1,30,maybe,0,S".into(),
            Some(("vip", "not a boolean")),
        ),
        (
            "u-9,open,web,,1,30,yes,99999,S".into(),
            Some(("tz", "outside -54000..54000")),
        ),
        (
            "u-10,open,web,,1,30".into(),
            Some(("", "has 6 fields, the header has 9")),
        ),
        (
            "u-11,open,web,,1,30,yes,0,S,extra".into(),
            Some(("", "has 10 fields, the header has 9")),
        ),
        ("u-12,open,web,,1,30,yes,0,S".into(), None),
        (
            format!("u-13,open,web,,1,30,yes,0,{huge}"),
            Some(("", "over the 128000-byte request limit")),
        ),
        ("u-14,open,web,,1,30,yes,0,S".into(), None),
    ];
    // Two more kinds: invalid UTF-8 in a mapped cell, and an unclosed quote that would swallow the
    // lines after it (they look like records, so it is caught and reported as one bad row).
    let mut body = b"user_id,event,platform,ts,amount,age,vip,tz,sku\n".to_vec();
    for (row, _) in &rows {
        body.extend_from_slice(row.as_bytes());
        body.push(b'\n');
    }
    body.extend_from_slice(b"u-15,open,web,,1,30,yes,0,S\xff\xfeS\n");
    body.extend_from_slice(b"u-16,\"open,web,,1,30,yes,0,S\nu-17,open,web,,1,30,yes,0,S\nu-18,open,web,,1,30,yes,0,S\n");

    let stack = Stack::start().await;
    let mapping = r#"{"customer_id":"user_id","action":"event","platform":"platform","user_time":"ts",
      "amount":{"column":"amount","type":"number"},"age":{"column":"age","type":"integer"},
      "vip":{"column":"vip","type":"boolean"},"user_timezone_offset":"tz","sku":"sku"}"#;
    let deps = stack
        .deps(&[("OBJECT_TYPE", "events"), ("FIELD_MAPPING", mapping)])
        .await;
    stack.put("exports/messy.csv", body).await;

    let summary = stack.invoke(&deps, "exports/messy.csv").await;

    let obj = &summary.objects[0];
    let expected_bad = rows.iter().filter(|(_, bad)| bad.is_some()).count() + 2;
    assert_eq!(
        obj.status,
        Status::Complete,
        "a bad row never fails the object: {obj:?}"
    );
    assert_eq!(obj.rows_rejected as usize, expected_bad, "{obj:?}");
    assert_eq!(obj.rows_delivered, 4);
    assert!(obj.balanced());
    let report = stack.get_json(obj.report.as_deref().unwrap()).await;
    let rejected = report["rejected_rows"].as_array().unwrap();
    let mut want: Vec<(u64, &str, &str)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, (_, bad))| bad.map(|(col, reason)| (i as u64 + 1, col, reason)))
        .collect();
    let n = rows.len() as u64;
    want.push((n + 1, "sku", "not valid UTF-8"));
    want.push((n + 2, "", "unclosed quote"));
    assert_eq!(rejected.len(), want.len());
    for (got, (row, column, reason)) in rejected.iter().zip(&want) {
        assert_eq!(got["row"].as_u64(), Some(*row), "{got}");
        assert_eq!(got["column"], *column, "{got}");
        assert!(
            got["reason"].as_str().unwrap().contains(reason),
            "row {row}: want {reason:?}, got {got}"
        );
    }
    let state = stack.state();
    let mut delivered: Vec<&str> = state
        .events
        .iter()
        .map(|e| e.customer_id.as_str())
        .collect();
    delivered.sort_by_key(|id| id[2..].parse::<usize>().unwrap_or(0));
    assert_eq!(delivered, ["u-1", "u-3", "u-12", "u-14"]);
    assert!(state.dropped.is_empty());
}
