//! Delete Users (`POST /v1/customer/delete?app_id=…`, MOENGAGE_API.md "Delete Users"): the body
//! names one user by `identity_type` and `identity_value`; a known customer is removed from
//! `users` at once and its id appended to `deleted_customers`.
//!
//! Where the emulator simplifies MoEngage:
//! - MoEngage keeps a deleted user active for a 24-hour buffer before the hard delete; the
//!   emulator deletes at once, so a second delete of the same id is a 400 "Not Found" (for a
//!   sync: already gone) and a later Track User of that id creates a new, empty user.
//! - Events already recorded for the user are kept, as MoEngage keeps them.
//! - The emulator assigns no MoEngage ids, so `identity_type: "moengage_id"` is well-formed but
//!   never finds a user: 400 "Not Found" ("User doesn't exists with moengage id …").

use serde_json::Value;

use crate::store::StateSnapshot;
use crate::validate::Rejection;

/// `identity_type` values MoEngage accepts.
pub const IDENTITY_TYPES: [&str; 2] = ["customer_id", "moengage_id"];

/// Why a well-formed JSON delete request was refused (always a 400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteRefusal {
    /// The body broke a rule: `MissingAttributeError` / `InvalidAttributeError` naming it.
    Rejected(Rejection),
    /// No such user: MoEngage's `{"type":"Not Found","message":"User doesn't exists with …"}`.
    NotFound(String),
}

/// The user a delete request names, once its body passed the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity<'a> {
    /// `customer_id` or `moengage_id`.
    kind: &'a str,
    /// The id, exactly as sent.
    value: &'a str,
}

/// The `identity_value` of a delete body when it is a string (for the request log and the
/// per-customer fault knobs), whatever its `identity_type`.
pub fn identity_value(body: &Value) -> Option<String> {
    body.get("identity_value")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Checks a delete body: an object whose `identity_type` is one of [`IDENTITY_TYPES`] and
/// whose `identity_value` is a non-blank string.
fn check(body: &Value) -> Result<Identity<'_>, Rejection> {
    let Some(obj) = body.as_object() else {
        return Err(Rejection::invalid("body", "body must be a JSON object"));
    };
    let text = |key: &'static str| -> Result<&str, Rejection> {
        match obj.get(key) {
            None | Some(Value::Null) => Err(Rejection::missing(
                key,
                format!("{key} is not found in the payload"),
            )),
            Some(Value::String(s)) if s.trim().is_empty() => Err(Rejection::missing(
                key,
                format!("{key} can not be empty Unicode String"),
            )),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Rejection::invalid(key, format!("{key} must be a string"))),
        }
    };
    let kind = text("identity_type")?;
    if !IDENTITY_TYPES.contains(&kind) {
        return Err(Rejection::invalid(
            "identity_type",
            "identity_type must be one of \"customer_id\", \"moengage_id\"",
        ));
    }
    let value = text("identity_value")?;
    Ok(Identity { kind, value })
}

impl StateSnapshot {
    /// Delete Users: removes the named customer from `users` and records the id in
    /// `deleted_customers`; events stay.
    pub(crate) fn delete_user(&mut self, body: &Value) -> Result<(), DeleteRefusal> {
        let identity = check(body).map_err(DeleteRefusal::Rejected)?;
        let not_found = |label: &str| {
            DeleteRefusal::NotFound(format!(
                "User doesn't exists with {label} {}",
                identity.value
            ))
        };
        if identity.kind != "customer_id" {
            return Err(not_found("moengage id"));
        }
        if self.users.remove(identity.value).is_none() {
            return Err(not_found("customer id"));
        }
        self.deleted_customers.push(identity.value.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::RejectionKind;
    use serde_json::{json, Map};

    fn with_user(id: &str) -> StateSnapshot {
        let mut s = StateSnapshot::default();
        s.users.insert(id.to_owned(), Map::new());
        s
    }

    #[test]
    fn deleting_a_known_customer_removes_it_and_records_the_id() {
        let mut s = with_user("u1");
        s.users.insert("u2".into(), Map::new());
        let body = json!({"identity_type": "customer_id", "identity_value": "u1"});
        assert_eq!(s.delete_user(&body), Ok(()));
        assert_eq!(s.users.keys().collect::<Vec<_>>(), ["u2"]);
        assert_eq!(s.deleted_customers, ["u1"]);
        // Deleted at once: a second delete finds nobody.
        assert_eq!(
            s.delete_user(&body),
            Err(DeleteRefusal::NotFound(
                "User doesn't exists with customer id u1".into()
            ))
        );
    }

    #[test]
    fn moengage_ids_never_match_a_user() {
        let mut s = with_user("u1");
        let body = json!({"identity_type": "moengage_id", "identity_value": "u1"});
        assert_eq!(
            s.delete_user(&body),
            Err(DeleteRefusal::NotFound(
                "User doesn't exists with moengage id u1".into()
            ))
        );
        assert!(s.users.contains_key("u1") && s.deleted_customers.is_empty());
    }

    #[test]
    fn bad_bodies_name_the_attribute() {
        let cases = [
            (json!([]), RejectionKind::Invalid, "body"),
            (
                json!({"identity_value": "u1"}),
                RejectionKind::Missing,
                "identity_type",
            ),
            (
                json!({"identity_type": null, "identity_value": "u1"}),
                RejectionKind::Missing,
                "identity_type",
            ),
            (
                json!({"identity_type": "email", "identity_value": "u1"}),
                RejectionKind::Invalid,
                "identity_type",
            ),
            (
                json!({"identity_type": 1, "identity_value": "u1"}),
                RejectionKind::Invalid,
                "identity_type",
            ),
            (
                json!({"identity_type": "customer_id"}),
                RejectionKind::Missing,
                "identity_value",
            ),
            (
                json!({"identity_type": "customer_id", "identity_value": " "}),
                RejectionKind::Missing,
                "identity_value",
            ),
            (
                json!({"identity_type": "customer_id", "identity_value": 7}),
                RejectionKind::Invalid,
                "identity_value",
            ),
        ];
        for (body, kind, attribute) in cases {
            let mut s = with_user("u1");
            match s.delete_user(&body) {
                Err(DeleteRefusal::Rejected(r)) => {
                    assert_eq!((r.kind, r.attribute.as_str()), (kind, attribute), "{body}");
                }
                other => panic!("{body}: {other:?}"),
            }
            assert!(s.users.contains_key("u1"));
        }
    }

    #[test]
    fn identity_value_is_read_whatever_the_type() {
        let body = json!({"identity_type": "moengage_id", "identity_value": "m1"});
        assert_eq!(identity_value(&body).as_deref(), Some("m1"));
        assert_eq!(identity_value(&json!({"identity_value": 5})), None);
    }
}
