//! What the fake "stored": users, events, the customers Delete Users removed, and the record of
//! every API request and of every element it dropped, skipped or accepted. The admin endpoint
//! serializes this verbatim.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::validate::{Checked, ElementType};

/// Everything the emulator holds, as returned by `GET /_emulator/state` and
/// `RunningEmulator::state`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// customer_id → merged attributes (later values overwrite earlier ones).
    pub users: BTreeMap<String, Map<String, Value>>,
    /// One entry per stored action, in arrival order.
    pub events: Vec<StoredEvent>,
    /// Every API request (not admin ones), in arrival order; `request` fields below index it.
    pub requests: Vec<RequestRecord>,
    /// Bulk elements that broke a rule: answered 200 like MoEngage, but not stored.
    pub dropped: Vec<DroppedElement>,
    /// `update_existing_only` customers that did not exist, so were not created.
    pub skipped_not_existing: Vec<ElementRecord>,
    /// Every element that was applied, with its JSON exactly as sent.
    pub accepted: Vec<ElementRecord>,
    /// Things MoEngage would quietly alter in accepted elements (stored here unaltered).
    pub notes: Vec<ElementNote>,
    /// Customer ids removed by Delete Users, in order of acceptance (one per 200). The user
    /// is gone from `users` at once (MoEngage's 24-hour buffer is not modelled); its events
    /// stay in `events`. An id appears again if it was re-created and deleted again.
    #[serde(default)]
    pub deleted_customers: Vec<String>,
}

/// One stored event (one action of a Create Event object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Index into `requests` of the call that carried it.
    pub request: usize,
    /// Position of the element in the call (0 for the single-object endpoints).
    pub element_index: usize,
    /// The customer id as text.
    pub customer_id: String,
    /// Event name as sent.
    pub action: String,
    /// Event attributes (empty when absent).
    pub attributes: Map<String, Value>,
    /// `platform` as sent.
    pub platform: Option<String>,
    /// `user_time` as sent (string or number).
    pub user_time: Option<Value>,
    /// `current_time` as sent.
    pub current_time: Option<Value>,
    /// `user_timezone_offset` in seconds, as sent.
    pub user_timezone_offset: Option<i64>,
    /// `app_version` as sent.
    pub app_version: Option<Value>,
    /// The action object exactly as sent.
    pub raw: Value,
}

/// One API request as the emulator saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Always `POST` for routed API calls.
    pub method: String,
    /// Which API: `customer` (Track User), `event` (Create Event), `transition` (Bulk
    /// Import), `delete` (Delete Users) or `authentication` (test connection).
    pub endpoint: String,
    /// Request path without the query string, e.g. `/v1/transition/WORKSPACE1` or
    /// `/v1/customer/delete`.
    pub path: String,
    /// Status answered; `None` when the connection was reset instead.
    pub status: Option<u16>,
    /// Body length in bytes.
    pub bytes: usize,
    /// Bulk element count (when the body had an `elements` array), else 1.
    pub elements: usize,
    /// Customer ids the body carried (string or number ids, in order), as far as it parsed;
    /// for Delete Users, the `identity_value` when it is a string (whatever `identity_type`).
    pub customer_ids: Vec<String>,
    /// The `request_id` of the answer, when one was sent.
    pub request_id: Option<String>,
    /// Which injected fault decided the answer: `fail_first_n`, `fail_customer_id`,
    /// `fail_customer_ids`, `reset`.
    pub fault: Option<String>,
    /// When the request arrived.
    pub timestamp: DateTime<Utc>,
}

/// A bulk element that was answered 200 but silently not stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DroppedElement {
    /// Index into `requests`.
    pub request: usize,
    /// Position in `elements`.
    pub element_index: usize,
    /// The element's customer id as text, when it had a string or number one.
    pub customer_id: Option<String>,
    /// `MissingAttributeError` or `InvalidAttributeError`.
    pub error_type: String,
    /// The attribute at fault, e.g. `actions[0].platform`.
    pub attribute: String,
    /// Why it was dropped.
    pub reason: String,
    /// The element exactly as sent.
    pub element: Value,
}

/// An element that was accepted or skipped, with its JSON as sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElementRecord {
    /// Index into `requests`.
    pub request: usize,
    /// Position in `elements` (0 for the single-object endpoints).
    pub element_index: usize,
    /// The customer id as text.
    pub customer_id: String,
    /// The element exactly as sent.
    pub element: Value,
}

/// A quiet alteration MoEngage would make to an accepted element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElementNote {
    /// Index into `requests`.
    pub request: usize,
    /// Position in `elements`.
    pub element_index: usize,
    /// The customer id as text.
    pub customer_id: String,
    /// What would change.
    pub note: String,
}

impl StateSnapshot {
    /// Stores a checked element of request `request`: merges a customer's attributes (unless
    /// `update_existing_only` and unknown) or appends each action of an event.
    pub(crate) fn apply(
        &mut self,
        request: usize,
        element_index: usize,
        element: &Value,
        checked: Checked,
    ) {
        let Checked {
            kind,
            customer_id,
            update_existing_only,
            notes,
        } = checked;
        let record = ElementRecord {
            request,
            element_index,
            customer_id: customer_id.clone(),
            element: element.clone(),
        };
        match kind {
            ElementType::Customer => {
                if update_existing_only && !self.users.contains_key(&customer_id) {
                    self.skipped_not_existing.push(record);
                    return;
                }
                let user = self.users.entry(customer_id.clone()).or_default();
                if let Some(attrs) = element.get("attributes").and_then(Value::as_object) {
                    user.extend(attrs.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            ElementType::Event => {
                let actions = element.get("actions").and_then(Value::as_array);
                for raw in actions.into_iter().flatten() {
                    self.events.push(StoredEvent::from_action(
                        request,
                        element_index,
                        &customer_id,
                        raw,
                    ));
                }
            }
        }
        self.notes.extend(notes.into_iter().map(|note| ElementNote {
            request,
            element_index,
            customer_id: customer_id.clone(),
            note,
        }));
        self.accepted.push(record);
    }
}

impl StoredEvent {
    /// Builds the stored form of one already-validated action object.
    fn from_action(request: usize, element_index: usize, customer_id: &str, raw: &Value) -> Self {
        let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_owned);
        let value = |key: &str| raw.get(key).filter(|v| !v.is_null()).cloned();
        Self {
            request,
            element_index,
            customer_id: customer_id.to_owned(),
            action: text("action").unwrap_or_default(),
            attributes: raw
                .get("attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            platform: text("platform"),
            user_time: value("user_time"),
            current_time: value("current_time"),
            user_timezone_offset: raw.get("user_timezone_offset").and_then(Value::as_i64),
            app_version: value("app_version"),
            raw: raw.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate::check_element;
    use super::*;
    use serde_json::json;

    fn apply(state: &mut StateSnapshot, el: Value) {
        let checked = check_element(&el, Utc::now()).unwrap();
        state.apply(0, 0, &el, checked);
    }

    #[test]
    fn later_attributes_overwrite_and_update_existing_only_never_creates() {
        let mut s = StateSnapshot::default();
        apply(
            &mut s,
            json!({"type":"customer","customer_id":"u2","update_existing_only":true,"attributes":{"a":1}}),
        );
        assert!(s.users.is_empty());
        assert_eq!(s.skipped_not_existing.len(), 1);

        apply(
            &mut s,
            json!({"type":"customer","customer_id":"u2","attributes":{"a":1,"b":1}}),
        );
        apply(
            &mut s,
            json!({"type":"customer","customer_id":"u2","update_existing_only":true,"attributes":{"b":2}}),
        );
        assert_eq!(Value::Object(s.users["u2"].clone()), json!({"a":1,"b":2}));
        assert_eq!(s.accepted.len(), 2);
    }

    #[test]
    fn each_action_is_one_stored_event() {
        let mut s = StateSnapshot::default();
        apply(
            &mut s,
            json!({"type":"event","customer_id":7,"actions":[
            {"action":"a","platform":"web","user_timezone_offset":3600},
            {"action":"b","attributes":{"n":1},"app_version":"1.2"}]}),
        );
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.events[0].customer_id, "7");
        assert_eq!(s.events[0].platform.as_deref(), Some("web"));
        assert_eq!(s.events[0].user_timezone_offset, Some(3600));
        assert_eq!(s.events[1].attributes["n"], 1);
        assert_eq!(s.events[1].app_version, Some(json!("1.2")));
        assert!(s.users.is_empty(), "events do not create users");
    }
}
