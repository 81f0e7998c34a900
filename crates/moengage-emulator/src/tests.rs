//! Black-box tests of the MoEngage checks: a real emulator on 127.0.0.1:0 and a real client.

use serde_json::{json, Value};

use super::test_support::{basic, customer, transition, Answer, Harness};
use super::*;

const CUSTOMER: &str = "/v1/customer/WORKSPACE1";
const EVENT: &str = "/v1/event/WORKSPACE1";
const TRANSITION: &str = "/v1/transition/WORKSPACE1";

#[tokio::test]
async fn auth_failures_are_401_with_moengage_messages() {
    let h = Harness::start(EmulatorConfig::default()).await;
    let body = customer("u1", json!({})).to_string();
    let cases = [
        (None, "Authentication Header Required"),
        (
            Some("Bearer abc".to_owned()),
            "Authentication Header Required",
        ),
        (
            Some(basic("OTHER", DEFAULT_API_KEY)),
            "Invalid APP_ID used in Authentication Header",
        ),
        (
            Some(basic(DEFAULT_WORKSPACE_ID, "nope")),
            "App Secret key mismatch",
        ),
    ];
    for (auth, message) in cases {
        let mut req = h
            .client
            .post(h.url(CUSTOMER))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(auth) = &auth {
            req = req.header("authorization", auth);
        }
        let a = h.send(req).await;
        assert_eq!(a.status, 401, "{auth:?}");
        assert_eq!(a.body["status"], "fail");
        assert_eq!(a.body["error"]["type"], "Authentication required");
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(message),
            "{a:?}"
        );
        assert!(a.body["error"]["request_id"].is_string());
    }
    // The test-connection endpoint checks auth only.
    let ok = h
        .post("/v1/integrations/authentication", &Value::Null)
        .await;
    assert_eq!(ok.status, 200);
    let bad = h
        .send(h.client.post(h.url("/v1/integrations/authentication")))
        .await;
    assert_eq!(bad.status, 401);
    assert!(h.emu.state().users.is_empty());
    assert_eq!(h.emu.state().requests.len(), 6);
}

#[tokio::test]
async fn path_app_id_must_match_the_auth_username() {
    let h = Harness::start(EmulatorConfig::default()).await;
    let a = h
        .post("/v1/customer/SOMEONE_ELSE", &customer("u1", json!({})))
        .await;
    assert_eq!(a.status, 409);
    assert_eq!(
        a.body["error"]["message"],
        "App key mismatch in params and authentication"
    );
}

#[tokio::test]
async fn content_type_must_be_json() {
    let h = Harness::start(EmulatorConfig::default()).await;
    let auth = basic(DEFAULT_WORKSPACE_ID, DEFAULT_API_KEY);
    let body = customer("u1", json!({})).to_string();
    for content_type in [Some("text/plain"), None] {
        let mut req = h
            .client
            .post(h.url(CUSTOMER))
            .header("authorization", &auth)
            .body(body.clone());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let a = h.send(req).await;
        assert_eq!(
            (a.status, a.body["error"]["type"].as_str()),
            (415, Some("MediaTypeError"))
        );
    }
    let req = h
        .client
        .post(h.url(CUSTOMER))
        .header("authorization", &auth)
        .header("content-type", "Application/JSON; charset=utf-8");
    assert_eq!(h.send(req.body(body)).await.status, 200);
}

#[tokio::test]
async fn malformed_bodies_and_broken_rules_are_400_naming_the_attribute() {
    let h = Harness::start(EmulatorConfig::default()).await;
    for raw in ["", "{not json", "[1,"] {
        let req = h.client.post(h.url(CUSTOMER)).header(
            "authorization",
            basic(DEFAULT_WORKSPACE_ID, DEFAULT_API_KEY),
        );
        let a = h
            .send(req.header("content-type", "application/json").body(raw))
            .await;
        assert_eq!(
            (a.status, a.body["error"]["type"].as_str()),
            (400, Some("Malformed JSON")),
            "{raw:?}"
        );
    }
    let cases = [
        (
            CUSTOMER,
            json!({"type": "customer", "attributes": {}}),
            "MissingAttributeError",
            "customer_id",
        ),
        (
            CUSTOMER,
            json!({"type": "CUSTOMER", "customer_id": "u1"}),
            "InvalidAttributeError",
            "type",
        ),
        (
            CUSTOMER,
            json!({"type": "customer", "customer_id": "Guest"}),
            "InvalidAttributeError",
            "customer_id",
        ),
        (
            CUSTOMER,
            json!({"type": "event", "customer_id": "u1", "actions": [{"action": "a"}]}),
            "InvalidAttributeError",
            "type",
        ),
        (
            EVENT,
            json!({"type": "event", "customer_id": "u1", "actions": []}),
            "InvalidAttributeError",
            "actions",
        ),
        (
            EVENT,
            json!({"type": "event", "customer_id": "u1", "actions": [{"action": ""}]}),
            "InvalidAttributeError",
            "actions[0].action",
        ),
        (
            TRANSITION,
            json!({"elements": []}),
            "MissingAttributeError",
            "type",
        ),
        (
            TRANSITION,
            json!({"type": "Transition", "elements": []}),
            "InvalidAttributeError",
            "type",
        ),
        (
            TRANSITION,
            json!({"type": "transition", "elements": {}}),
            "InvalidAttributeError",
            "elements",
        ),
        (
            TRANSITION,
            json!({"type": "transition"}),
            "MissingAttributeError",
            "elements",
        ),
    ];
    for (path, body, error_type, attribute) in cases {
        let a = h.post(path, &body).await;
        assert_eq!(a.status, 400, "{body}");
        assert_eq!(a.body["error"]["type"], error_type, "{body}");
        assert_eq!(a.body["error"]["attribute"], attribute, "{body}");
    }
    let s = h.emu.state();
    assert!(s.users.is_empty() && s.events.is_empty() && s.dropped.is_empty());
}

#[tokio::test]
async fn oversized_bodies_are_413_with_per_endpoint_limits() {
    let h = Harness::start(EmulatorConfig::default()).await;
    let big = customer("u1", json!({"blob": "x".repeat(100_100)}));
    let a = h.post(TRANSITION, &transition(vec![big.clone()])).await;
    assert_eq!(
        (a.status, a.body["error"]["type"].as_str()),
        (413, Some("PayloadTooLarge"))
    );
    // The same ~100 KB is fine for Track User, whose cap is 128 KB.
    assert_eq!(h.post(CUSTOMER, &big).await.status, 200);
    let huge = customer("u1", json!({"blob": "x".repeat(128_001)}));
    assert_eq!(h.post(CUSTOMER, &huge).await.status, 413);
}

#[tokio::test]
async fn rate_window_answers_429_and_every_answer_has_headers() {
    let h = Harness::start(EmulatorConfig {
        rate_limit_per_minute: 3,
        ..EmulatorConfig::default()
    })
    .await;
    let header = |a: &Answer, name: &str| a.headers[name].to_str().unwrap().parse::<u64>().unwrap();
    for remaining in [2, 1, 0] {
        let a = h.post(CUSTOMER, &customer("u1", json!({}))).await;
        assert_eq!(a.status, 200);
        assert_eq!(header(&a, "x-ratelimit-limit"), 3);
        assert_eq!(header(&a, "x-ratelimit-remaining"), remaining);
        assert!((1..=60).contains(&header(&a, "x-ratelimit-reset")));
    }
    let a = h.post(CUSTOMER, &customer("u2", json!({}))).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.body["error"]["message"], "Rate Limits Exceeded");
    assert_eq!(header(&a, "x-ratelimit-remaining"), 0);
    assert!((1..=60).contains(&header(&a, "x-ratelimit-reset")));
    // Refused answers also carry the headers, and store nothing.
    let unauth = h.send(h.client.post(h.url(CUSTOMER))).await;
    assert_eq!(
        (unauth.status, header(&unauth, "x-ratelimit-remaining")),
        (401, 0)
    );
    assert!(!h.emu.state().users.contains_key("u2"));
}

#[tokio::test]
async fn bulk_import_answers_200_and_records_what_it_silently_dropped() {
    let h = Harness::start(EmulatorConfig::default()).await;
    let good_event = json!({"type": "event", "customer_id": "u1", "actions": [
        {"action": "purchase", "attributes": {"amount": 9.5}, "platform": "web", "user_time": "2026-01-01T00:00:00Z"}]});
    let elements = vec![
        customer("u1", json!({"email": "a@b.c"})),
        customer("null", json!({"email": "x@y.z"})),
        json!({"type": "event", "customer_id": "u1", "actions": [{"action": "a", "platform": "Android"}]}),
        good_event.clone(),
        json!({"type": "Customer", "customer_id": "u3"}),
        json!({"type": "event", "customer_id": "u1", "actions": [{"action": "a", "user_time": "2999-01-01T00:00:00Z"}]}),
    ];
    let a = h.post(TRANSITION, &transition(elements.clone())).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["status"], "success");
    assert_eq!(a.body["message"], reply::SUCCESS_MESSAGE);

    let s = h.emu.state();
    assert_eq!(s.users.len(), 1);
    assert_eq!(s.users["u1"]["email"], "a@b.c");
    assert_eq!(s.events.len(), 1);
    assert_eq!(s.events[0].raw, good_event["actions"][0]);
    assert_eq!(s.events[0].platform.as_deref(), Some("web"));
    let dropped: Vec<_> = s
        .dropped
        .iter()
        .map(|d| (d.element_index, d.attribute.as_str()))
        .collect();
    assert_eq!(
        dropped,
        [
            (1, "customer_id"),
            (2, "actions[0].platform"),
            (4, "type"),
            (5, "actions[0].user_time")
        ]
    );
    assert!(s
        .dropped
        .iter()
        .all(|d| d.request == 0 && !d.reason.is_empty()));
    assert_eq!(s.dropped[0].element, elements[1]);
    assert_eq!(
        s.accepted
            .iter()
            .map(|e| e.element_index)
            .collect::<Vec<_>>(),
        [0, 3]
    );
    assert_eq!(s.requests[0].elements, 6);
    assert_eq!(
        s.requests[0].customer_ids,
        ["u1", "null", "u1", "u1", "u3", "u1"]
    );
    assert_eq!(s.requests[0].status, Some(200));
}

#[tokio::test]
async fn update_existing_only_never_creates_users() {
    let h = Harness::start(EmulatorConfig::default()).await;
    let only = |id: &str, v: i32| json!({"type": "customer", "customer_id": id, "update_existing_only": true, "attributes": {"v": v}});
    assert_eq!(h.post(CUSTOMER, &only("ghost", 1)).await.status, 200);
    let batch = transition(vec![
        customer("u1", json!({"v": 1, "w": 1})),
        only("u1", 2),
        only("ghost2", 3),
    ]);
    assert_eq!(h.post(TRANSITION, &batch).await.status, 200);
    let s = h.emu.state();
    assert_eq!(s.users.keys().collect::<Vec<_>>(), ["u1"]);
    assert_eq!(
        Value::Object(s.users["u1"].clone()),
        json!({"v": 2, "w": 1})
    );
    let skipped: Vec<_> = s
        .skipped_not_existing
        .iter()
        .map(|e| (e.request, e.customer_id.as_str()))
        .collect();
    assert_eq!(skipped, [(0, "ghost"), (1, "ghost2")]);
}

#[tokio::test]
async fn state_endpoint_matches_the_typed_snapshot_and_reset_clears_it() {
    let h = Harness::start(EmulatorConfig::default()).await;
    h.post(EVENT, &json!({"type": "event", "customer_id": 77, "actions": [{"action": "open", "app_version": "2.0"}]})).await;
    h.post(TRANSITION, &transition(vec![customer("", json!({}))]))
        .await;
    let raw = h
        .client
        .get(h.url("/_emulator/state"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let over_http: StateSnapshot = serde_json::from_str(&raw).unwrap();
    assert_eq!(over_http, h.emu.state());
    let raw: Value = serde_json::from_str(&raw).unwrap();
    for key in [
        "users",
        "events",
        "requests",
        "dropped",
        "skipped_not_existing",
        "accepted",
        "notes",
        "deleted_customers",
    ] {
        assert!(raw.get(key).is_some(), "{key}");
    }
    assert_eq!(raw["events"][0]["customer_id"], "77");
    assert_eq!(raw["dropped"][0]["request"], 1);
    assert_eq!(raw["dropped"][0]["element"], customer("", json!({})));
    assert_eq!(raw["requests"][1]["path"], TRANSITION);
    assert_eq!(raw["requests"][0]["endpoint"], "event");
    assert_eq!(raw["requests"][1]["endpoint"], "transition");

    let reset = h
        .client
        .post(h.url("/_emulator/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(h.emu.state(), StateSnapshot::default());
    let missing = h.client.get(h.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
