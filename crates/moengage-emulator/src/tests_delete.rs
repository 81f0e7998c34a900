//! Black-box tests of Delete Users (`POST /v1/customer/delete?app_id=…`).

use serde_json::{json, Value};

use super::test_support::{basic, customer, delete_customer, Answer, Harness};
use super::*;

const CUSTOMER: &str = "/v1/customer/WORKSPACE1";
const EVENT: &str = "/v1/event/WORKSPACE1";
const DELETE: &str = "/v1/customer/delete?app_id=WORKSPACE1";

/// A harness with users `ids` already stored through Track User.
async fn with_users(config: EmulatorConfig, ids: &[&str]) -> Harness {
    let h = Harness::start(config).await;
    for id in ids {
        let a = h.post(CUSTOMER, &customer(id, json!({"v": 1}))).await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    h
}

/// A delete request with good credentials and `content_type` (none when `None`).
async fn raw_delete(h: &Harness, path: &str, content_type: Option<&str>, body: &str) -> Answer {
    let mut req = h.client.post(h.url(path)).header(
        "authorization",
        basic(DEFAULT_WORKSPACE_ID, DEFAULT_API_KEY),
    );
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    h.send(req.body(body.to_owned())).await
}

#[tokio::test]
async fn deleting_a_stored_user_removes_it_at_once_and_lists_it() {
    let h = with_users(EmulatorConfig::default(), &["u1", "u2"]).await;
    let event = json!({"type": "event", "customer_id": "u1", "actions": [{"action": "open"}]});
    assert_eq!(h.post(EVENT, &event).await.status, 200);

    let a = h.post(DELETE, &delete_customer("u1")).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["status"], "success");
    assert_eq!(a.body["message"], reply::SUCCESS_MESSAGE);
    assert!(a.body["request_id"].is_string());
    assert!(a.headers.contains_key("x-ratelimit-remaining"));

    let s = h.emu.state();
    assert_eq!(s.users.keys().collect::<Vec<_>>(), ["u2"]);
    assert_eq!(s.deleted_customers, ["u1"]);
    assert_eq!(s.events.len(), 1, "events of a deleted user are kept");
    let last = s.requests.last().unwrap();
    assert_eq!(
        (
            last.endpoint.as_str(),
            last.path.as_str(),
            last.status,
            last.customer_ids.clone()
        ),
        (
            "delete",
            "/v1/customer/delete",
            Some(200),
            vec!["u1".to_owned()]
        )
    );
    assert_eq!(last.request_id.as_deref(), a.body["request_id"].as_str());

    // The admin endpoint shows the same thing.
    let raw = h.send(h.client.get(h.url("/_emulator/state"))).await.body;
    assert_eq!(raw["deleted_customers"], json!(["u1"]));
    assert!(raw["users"].get("u1").is_none());
    assert_eq!(raw["requests"][3]["endpoint"], "delete");

    // A user created again with the same id is a new user; deleting it lists the id again.
    let again = h.post(CUSTOMER, &customer("u1", json!({"w": 2}))).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        Value::Object(h.emu.state().users["u1"].clone()),
        json!({"w": 2})
    );
    assert_eq!(h.post(DELETE, &delete_customer("u1")).await.status, 200);
    assert_eq!(h.emu.state().deleted_customers, ["u1", "u1"]);

    // Reset clears the deletes too.
    h.emu.emulator().reset();
    assert!(h.emu.state().deleted_customers.is_empty());
}

#[tokio::test]
async fn unknown_users_are_400_not_found() {
    let h = with_users(EmulatorConfig::default(), &["u1"]).await;
    let a = h.post(DELETE, &delete_customer("ghost")).await;
    assert_eq!(a.status, 400);
    let request_id = a.body["error"]["request_id"].clone();
    assert!(request_id.is_string());
    assert_eq!(
        a.body,
        json!({"status": "fail", "error": {
            "type": "Not Found",
            "message": "User doesn't exists with customer id ghost",
            "request_id": request_id,
        }})
    );
    // Deleted at once, so a repeated delete finds nobody either.
    assert_eq!(h.post(DELETE, &delete_customer("u1")).await.status, 200);
    let twice = h.post(DELETE, &delete_customer("u1")).await;
    assert_eq!(
        (twice.status, twice.body["error"]["type"].as_str()),
        (400, Some("Not Found"))
    );
    // The emulator has no MoEngage ids: a moengage_id delete never finds a user.
    let by_moe_id = json!({"identity_type": "moengage_id", "identity_value": "u1"});
    let m = h.post(DELETE, &by_moe_id).await;
    assert_eq!(m.status, 400);
    assert_eq!(
        m.body["error"]["message"],
        "User doesn't exists with moengage id u1"
    );
    assert_eq!(h.emu.state().deleted_customers, ["u1"]);
}

#[tokio::test]
async fn app_id_comes_from_the_query_and_must_match_the_auth_username() {
    let h = with_users(EmulatorConfig::default(), &["u1"]).await;
    let body = delete_customer("u1");
    let mismatch = h
        .post("/v1/customer/delete?app_id=SOMEONE_ELSE", &body)
        .await;
    assert_eq!(mismatch.status, 409);
    assert_eq!(
        mismatch.body["error"]["message"],
        "App key mismatch in params and authentication"
    );
    for path in ["/v1/customer/delete", "/v1/customer/delete?app_id="] {
        let missing = h.post(path, &body).await;
        assert_eq!(
            (missing.status, missing.body["error"]["type"].as_str()),
            (400, Some("InvalidParams")),
            "{path}"
        );
    }
    // Auth is checked before the app id.
    let unauth = h
        .send(
            h.client
                .post(h.url("/v1/customer/delete"))
                .body(body.to_string()),
        )
        .await;
    assert_eq!(unauth.status, 401);
    assert!(h.emu.state().users.contains_key("u1"));
    // Other parameters around app_id are fine.
    let ok = h
        .post("/v1/customer/delete?x=1&app_id=WORKSPACE1", &body)
        .await;
    assert_eq!(ok.status, 200);
    let log: Vec<_> = h.emu.state().requests[1..]
        .iter()
        .map(|r| (r.endpoint.clone(), r.status))
        .collect();
    let delete = |status| ("delete".to_owned(), Some(status));
    assert_eq!(
        log,
        [
            delete(409),
            delete(400),
            delete(400),
            delete(401),
            delete(200)
        ]
    );
}

#[tokio::test]
async fn content_type_must_be_json() {
    let h = with_users(EmulatorConfig::default(), &["u1"]).await;
    let body = delete_customer("u1").to_string();
    for content_type in [None, Some("text/plain")] {
        let a = raw_delete(&h, DELETE, content_type, &body).await;
        assert_eq!(
            (a.status, a.body["error"]["type"].as_str()),
            (415, Some("MediaTypeError")),
            "{content_type:?}"
        );
    }
    assert!(h.emu.state().users.contains_key("u1"));
    assert!(h.emu.state().deleted_customers.is_empty());
}

#[tokio::test]
async fn bad_bodies_are_400() {
    let h = with_users(EmulatorConfig::default(), &["u1"]).await;
    for raw in ["", "{not json"] {
        let a = raw_delete(&h, DELETE, Some("application/json"), raw).await;
        assert_eq!(
            (a.status, a.body["error"]["type"].as_str()),
            (400, Some("Malformed JSON")),
            "{raw:?}"
        );
    }
    let cases = [
        (
            json!({"identity_value": "u1"}),
            "MissingAttributeError",
            "identity_type",
        ),
        (
            json!({"identity_type": "email", "identity_value": "u1"}),
            "InvalidAttributeError",
            "identity_type",
        ),
        (
            json!({"identity_type": "customer_id"}),
            "MissingAttributeError",
            "identity_value",
        ),
        (
            json!({"identity_type": "customer_id", "identity_value": ""}),
            "MissingAttributeError",
            "identity_value",
        ),
        (
            json!({"identity_type": "customer_id", "identity_value": 1}),
            "InvalidAttributeError",
            "identity_value",
        ),
        (json!(["u1"]), "InvalidAttributeError", "body"),
    ];
    for (body, error_type, attribute) in cases {
        let a = h.post(DELETE, &body).await;
        assert_eq!(a.status, 400, "{body}");
        assert_eq!(a.body["status"], "fail", "{body}");
        assert_eq!(a.body["error"]["type"], error_type, "{body}");
        assert_eq!(a.body["error"]["attribute"], attribute, "{body}");
    }
    let huge =
        json!({"identity_type": "customer_id", "identity_value": "u1", "pad": "x".repeat(128_001)});
    assert_eq!(h.post(DELETE, &huge).await.status, 413);
    let s = h.emu.state();
    assert!(s.users.contains_key("u1") && s.deleted_customers.is_empty());
}

#[tokio::test]
async fn fail_customer_ids_fails_only_the_listed_ids() {
    let h = with_users(EmulatorConfig::default(), &["u1", "u2", "u3", "u4"]).await;
    let patch = json!({"fail_customer_ids": ["u2", "u4"], "fail_customer_status": 500});
    let set = h
        .client
        .post(h.url("/_emulator/faults"))
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(h.emu.faults().fail_customer_ids, ["u2", "u4"]);

    let mut statuses = Vec::new();
    for id in ["u1", "u2", "u3", "u4"] {
        let a = h.post(DELETE, &delete_customer(id)).await;
        if a.status == 500 {
            assert_eq!(a.body["error"]["type"], "ServerError");
        }
        statuses.push(a.status);
    }
    assert_eq!(statuses, [200, 500, 200, 500]);
    // The list applies to the other APIs too.
    assert_eq!(
        h.post(CUSTOMER, &customer("u4", json!({}))).await.status,
        500
    );

    let s = h.emu.state();
    assert_eq!(s.deleted_customers, ["u1", "u3"]);
    assert_eq!(s.users.keys().collect::<Vec<_>>(), ["u2", "u4"]);
    let faults: Vec<_> = s.requests[4..].iter().map(|r| r.fault.as_deref()).collect();
    assert_eq!(
        faults,
        [
            None,
            Some("fail_customer_ids"),
            None,
            Some("fail_customer_ids"),
            Some("fail_customer_ids")
        ]
    );

    // null clears the list; the single-id knob applies to deletes as well.
    let clear = json!({"fail_customer_ids": null, "fail_customer_id": "u2"});
    h.client
        .post(h.url("/_emulator/faults"))
        .body(clear.to_string())
        .send()
        .await
        .unwrap();
    assert!(h.emu.faults().fail_customer_ids.is_empty());
    let single = h.post(DELETE, &delete_customer("u2")).await;
    assert_eq!(single.status, 500);
    assert_eq!(
        h.emu.state().requests.last().unwrap().fault.as_deref(),
        Some("fail_customer_id")
    );
    assert_eq!(h.post(DELETE, &delete_customer("u4")).await.status, 200);
}

#[tokio::test]
async fn delete_users_has_its_own_rate_window() {
    let h = with_users(
        EmulatorConfig {
            rate_limit_per_minute: 2,
            ..EmulatorConfig::default()
        },
        &["u1", "u2"],
    )
    .await;
    // Track User's window is full; Delete Users' is not.
    assert_eq!(
        h.post(CUSTOMER, &customer("u3", json!({}))).await.status,
        429
    );
    let first = h.post(DELETE, &delete_customer("u1")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["x-ratelimit-remaining"], "1");
    assert_eq!(h.post(DELETE, &delete_customer("u2")).await.status, 200);
    let limited = h.post(DELETE, &delete_customer("u2")).await;
    assert_eq!(
        (limited.status, limited.body["error"]["message"].as_str()),
        (429, Some("Rate Limits Exceeded"))
    );
    assert_eq!(h.emu.state().deleted_customers, ["u1", "u2"]);
}
