//! Table tests for the element rules.

use super::*;
use serde_json::json;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn event(action: Value) -> Value {
    json!({"type": "event", "customer_id": "u1", "actions": [action]})
}

#[test]
fn valid_elements_pass() {
    let cases = [
        json!({"type": "customer", "customer_id": "u1", "attributes": {"email": "a@b.c"}}),
        json!({"type": "customer", "customer_id": 42, "update_existing_only": true}),
        event(
            json!({"action": "purchase", "platform": "web", "user_time": "2026-11-01T10:00:00Z"}),
        ),
        event(json!({"action": "x", "user_time": 1_793_000_000, "user_timezone_offset": -54000})),
        event(json!({"action": "x", "user_time": "2026-11-01", "current_time": "1793000000"})),
        event(json!({"action": "x", "user_time": "2026-11-01T12:04:00Z"})), // within skew
        event(json!({"action": "x", "platform": "iOS", "attributes": {"amount": 1}})),
    ];
    for case in cases {
        assert!(check_element(&case, now()).is_ok(), "{case}");
    }
}

#[test]
fn invalid_elements_name_the_attribute() {
    use RejectionKind::{Invalid, Missing};
    let cases = [
        (json!([1]), Invalid, "element"),
        (json!({"customer_id": "u1"}), Missing, "type"),
        (
            json!({"type": "Customer", "customer_id": "u1"}),
            Invalid,
            "type",
        ),
        (
            json!({"type": "transition", "customer_id": "u1"}),
            Invalid,
            "type",
        ),
        (json!({"type": "customer"}), Missing, "customer_id"),
        (
            json!({"type": "customer", "customer_id": null}),
            Missing,
            "customer_id",
        ),
        (
            json!({"type": "customer", "customer_id": "  "}),
            Missing,
            "customer_id",
        ),
        (
            json!({"type": "customer", "customer_id": " NULL "}),
            Invalid,
            "customer_id",
        ),
        (
            json!({"type": "customer", "customer_id": "N/A"}),
            Invalid,
            "customer_id",
        ),
        (
            json!({"type": "customer", "customer_id": 0}),
            Invalid,
            "customer_id",
        ),
        (
            json!({"type": "customer", "customer_id": -1}),
            Invalid,
            "customer_id",
        ),
        (
            json!({"type": "customer", "customer_id": true}),
            Invalid,
            "customer_id",
        ),
        (
            json!({"type": "customer", "customer_id": ["u1"]}),
            Invalid,
            "customer_id",
        ),
        (
            json!({"type": "customer", "customer_id": "u1", "attributes": {"id": 1}}),
            Invalid,
            "attributes.id",
        ),
        (
            json!({"type": "customer", "customer_id": "u1", "attributes": {"_id": 1}}),
            Invalid,
            "attributes._id",
        ),
        (
            json!({"type": "customer", "customer_id": "u1", "attributes": {"": 1}}),
            Invalid,
            "attributes.",
        ),
        (
            json!({"type": "customer", "customer_id": "u1", "attributes": [1]}),
            Invalid,
            "attributes",
        ),
        (
            json!({"type": "customer", "customer_id": "u1", "update_existing_only": "yes"}),
            Invalid,
            "update_existing_only",
        ),
        (
            json!({"type": "event", "customer_id": "u1"}),
            Missing,
            "actions",
        ),
        (
            json!({"type": "event", "customer_id": "u1", "actions": []}),
            Invalid,
            "actions",
        ),
        (
            event(json!({"attributes": {}})),
            Missing,
            "actions[0].action",
        ),
        (event(json!({"action": " "})), Invalid, "actions[0].action"),
        (
            event(json!({"action": "x", "platform": "android"})),
            Invalid,
            "actions[0].platform",
        ),
        (
            event(json!({"action": "x", "platform": "IOS"})),
            Invalid,
            "actions[0].platform",
        ),
        (
            event(json!({"action": "x", "user_time": "2026-11-01T12:06:00Z"})),
            Invalid,
            "actions[0].user_time",
        ),
        (
            event(json!({"action": "x", "user_time": 1_793_000_000_000_i64})),
            Invalid,
            "actions[0].user_time",
        ),
        (
            event(json!({"action": "x", "user_time": "yesterday"})),
            Invalid,
            "actions[0].user_time",
        ),
        (
            event(json!({"action": "x", "user_time": "2026-11-01 10:00:00.000 +0000"})),
            Invalid,
            "actions[0].user_time",
        ),
        (
            event(json!({"action": "x", "current_time": "soon"})),
            Invalid,
            "actions[0].current_time",
        ),
        (
            event(json!({"action": "x", "user_timezone_offset": 54001})),
            Invalid,
            "actions[0].user_timezone_offset",
        ),
        (
            event(json!({"action": "x", "user_timezone_offset": "3600"})),
            Invalid,
            "actions[0].user_timezone_offset",
        ),
        (
            event(json!({"action": "x", "attributes": {"id": 1}})),
            Invalid,
            "actions[0].attributes.id",
        ),
    ];
    for (case, kind, attribute) in cases {
        let err = check_element(&case, now()).expect_err(&case.to_string());
        assert_eq!(
            (err.kind, err.attribute.as_str()),
            (kind, attribute),
            "{case}: {err}"
        );
    }
}

#[test]
fn every_forbidden_id_is_refused_in_any_case() {
    for id in FORBIDDEN_CUSTOMER_IDS {
        let el = json!({"type": "customer", "customer_id": format!(" {} ", id.to_uppercase())});
        assert!(check_element(&el, now()).is_err(), "{id}");
    }
}

#[test]
fn quiet_alterations_become_notes() {
    let long = "x".repeat(513);
    let el = event(json!({"action": "cart.add", "attributes": {"note": long}}));
    let checked = check_element(&el, now()).unwrap();
    assert_eq!(checked.notes.len(), 2, "{:?}", checked.notes);
}

#[test]
fn numeric_customer_ids_become_text() {
    let checked = check_element(&json!({"type": "customer", "customer_id": 1234}), now()).unwrap();
    assert_eq!(checked.customer_id, "1234");
    assert_eq!(checked.kind, ElementType::Customer);
}
