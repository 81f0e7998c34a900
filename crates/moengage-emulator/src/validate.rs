//! The rules a Track User / Create Event object must pass (MOENGAGE_API.md, "Rules a row must
//! pass"). Pure functions: the single endpoints turn a [`Rejection`] into a 400, the bulk
//! endpoint into a silently dropped (but recorded) element.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

/// Customer ids MoEngage refuses, compared case-insensitively after trimming.
pub const FORBIDDEN_CUSTOMER_IDS: [&str; 20] = [
    "unknown",
    "guest",
    "null",
    "0",
    "1",
    "true",
    "false",
    "user_attribute_unique_id",
    "na",
    "n/a",
    "dummy_seller_code",
    "user_id",
    "id",
    "customer_id",
    "uid",
    "userid",
    "none",
    "-2",
    "-1",
    "2",
];

/// Accepted `platform` values, case-sensitive as documented.
pub const PLATFORMS: [&str; 5] = ["ANDROID", "iOS", "web", "TV", "unknown"];

/// `user_timezone_offset` bound in seconds (±15 h).
pub const MAX_TIMEZONE_OFFSET_SECS: i64 = 54_000;

/// Clock skew tolerated before a `user_time` counts as future-dated, in seconds.
pub const FUTURE_SKEW_SECS: i64 = 300;

/// Attribute names longer than this are truncated by MoEngage (recorded as a note).
const MAX_NAME_CHARS: usize = 200;
/// String values longer than this are truncated by MoEngage (recorded as a note).
const MAX_STRING_CHARS: usize = 512;

/// Which object an element is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementType {
    /// Track User (`"type":"customer"`).
    Customer,
    /// Create Event (`"type":"event"`).
    Event,
}

/// The MoEngage error family a rejection belongs to (the `error.type` of a 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionKind {
    /// A required attribute is absent or empty.
    Missing,
    /// An attribute is present with a value MoEngage refuses.
    Invalid,
}

impl RejectionKind {
    /// The `error.type` string MoEngage uses.
    pub fn error_type(self) -> &'static str {
        match self {
            Self::Missing => "MissingAttributeError",
            Self::Invalid => "InvalidAttributeError",
        }
    }
}

/// Why an element was refused, naming the attribute at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// Missing or invalid.
    pub kind: RejectionKind,
    /// The offending attribute, e.g. `customer_id` or `actions[0].platform`.
    pub attribute: String,
    /// Human-readable reason, recorded in `dropped[].reason`.
    pub message: String,
}

impl Rejection {
    /// A `MissingAttributeError` naming `attribute`.
    pub fn missing(attribute: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: RejectionKind::Missing,
            attribute: attribute.into(),
            message: message.into(),
        }
    }

    /// An `InvalidAttributeError` naming `attribute`.
    pub fn invalid(attribute: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: RejectionKind::Invalid,
            attribute: attribute.into(),
            message: message.into(),
        }
    }
}

/// What a valid element carries that storing it needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// Customer or event.
    pub kind: ElementType,
    /// The customer id as text (numbers are accepted and rendered as JSON renders them).
    pub customer_id: String,
    /// `update_existing_only: true` on a customer: never create the user.
    pub update_existing_only: bool,
    /// Things MoEngage would quietly alter (truncation, `.` in event names), for the record.
    pub notes: Vec<String>,
}

/// The customer id of a JSON object as text, if it is a string or a number.
pub fn customer_id_text(element: &Value) -> Option<String> {
    match element.get("customer_id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Checks one Track User / Create Event object as of `now`.
pub fn check_element(element: &Value, now: DateTime<Utc>) -> Result<Checked, Rejection> {
    let Some(obj) = element.as_object() else {
        return Err(Rejection::invalid(
            "element",
            "element is not a JSON object",
        ));
    };
    let kind = match obj.get("type") {
        None | Some(Value::Null) => {
            return Err(Rejection::missing(
                "type",
                "type is not found in the payload",
            ))
        }
        Some(Value::String(t)) if t == "customer" => ElementType::Customer,
        Some(Value::String(t)) if t == "event" => ElementType::Event,
        Some(other) => {
            return Err(Rejection::invalid(
                "type",
                format!("type must be \"customer\" or \"event\" (lowercase), got {other}"),
            ))
        }
    };
    let customer_id = check_customer_id(obj)?;
    let mut notes = Vec::new();
    let mut update_existing_only = false;
    match kind {
        ElementType::Customer => {
            update_existing_only = match obj.get("update_existing_only") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(Rejection::invalid(
                        "update_existing_only",
                        "update_existing_only must be a boolean",
                    ))
                }
            };
            check_attributes(obj.get("attributes"), "attributes", &mut notes)?;
        }
        ElementType::Event => check_actions(obj.get("actions"), now, &mut notes)?,
    }
    Ok(Checked {
        kind,
        customer_id,
        update_existing_only,
        notes,
    })
}

fn check_customer_id(obj: &Map<String, Value>) -> Result<String, Rejection> {
    let text = match obj.get("customer_id") {
        None | Some(Value::Null) => {
            return Err(Rejection::missing(
                "customer_id",
                "customer_id is not found in the payload",
            ))
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(Rejection::invalid(
                "customer_id",
                "customer_id must be a string or a number",
            ))
        }
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        // MoEngage files an empty id under MissingAttributeError, with this wording.
        return Err(Rejection::missing(
            "customer_id",
            "customer_id can not be empty Unicode String",
        ));
    }
    if FORBIDDEN_CUSTOMER_IDS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(trimmed))
    {
        return Err(Rejection::invalid(
            "customer_id",
            format!("customer_id {text:?} is a reserved placeholder value and is not accepted"),
        ));
    }
    Ok(text)
}

fn check_actions(
    actions: Option<&Value>,
    now: DateTime<Utc>,
    notes: &mut Vec<String>,
) -> Result<(), Rejection> {
    let actions = match actions {
        None | Some(Value::Null) => {
            return Err(Rejection::missing(
                "actions",
                "actions is not found in the payload",
            ))
        }
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(_) => {
            return Err(Rejection::invalid(
                "actions",
                "actions must be a non-empty array",
            ))
        }
    };
    for (i, action) in actions.iter().enumerate() {
        let at = |field: &str| format!("actions[{i}].{field}");
        let Some(action) = action.as_object() else {
            return Err(Rejection::invalid(
                format!("actions[{i}]"),
                "each action must be a JSON object",
            ));
        };
        match action.get("action") {
            None | Some(Value::Null) => {
                return Err(Rejection::missing(
                    at("action"),
                    "action is not found in the payload",
                ))
            }
            Some(Value::String(name)) if !name.trim().is_empty() => {
                if name.contains('.') {
                    notes.push(format!(
                        "{}: '.' in event name {name:?} becomes a space",
                        at("action")
                    ));
                }
                if name.chars().count() > MAX_NAME_CHARS {
                    notes.push(format!(
                        "{}: event name truncated to {MAX_NAME_CHARS} characters",
                        at("action")
                    ));
                }
            }
            Some(_) => {
                return Err(Rejection::invalid(
                    at("action"),
                    "action must be a non-empty string",
                ))
            }
        }
        if let Some(p) = action.get("platform").filter(|p| !p.is_null()) {
            if !p.as_str().is_some_and(|p| PLATFORMS.contains(&p)) {
                return Err(Rejection::invalid(
                    at("platform"),
                    format!("platform must be one of {PLATFORMS:?}, got {p}"),
                ));
            }
        }
        if let Some(t) = action.get("user_time").filter(|t| !t.is_null()) {
            let Some(when) = parse_time(t) else {
                return Err(Rejection::invalid(
                    at("user_time"),
                    format!("user_time {t} is not ISO 8601 or epoch seconds"),
                ));
            };
            if when > now + TimeDelta::seconds(FUTURE_SKEW_SECS) {
                return Err(Rejection::invalid(
                    at("user_time"),
                    format!("user_time {t} is in the future; future-dated events are not accepted"),
                ));
            }
        }
        if let Some(t) = action.get("current_time").filter(|t| !t.is_null()) {
            if parse_time(t).is_none() {
                return Err(Rejection::invalid(
                    at("current_time"),
                    format!("current_time {t} is not ISO 8601 or epoch seconds"),
                ));
            }
        }
        if let Some(o) = action.get("user_timezone_offset").filter(|o| !o.is_null()) {
            let range = -MAX_TIMEZONE_OFFSET_SECS..=MAX_TIMEZONE_OFFSET_SECS;
            if o.as_i64().is_none_or(|o| !range.contains(&o)) {
                return Err(Rejection::invalid(
                    at("user_timezone_offset"),
                    format!("user_timezone_offset must be whole seconds within ±{MAX_TIMEZONE_OFFSET_SECS}, got {o}"),
                ));
            }
        }
        check_attributes(action.get("attributes"), &at("attributes"), notes)?;
    }
    Ok(())
}

/// Attribute maps are optional; when present they must be objects without reserved names.
fn check_attributes(
    attrs: Option<&Value>,
    path: &str,
    notes: &mut Vec<String>,
) -> Result<(), Rejection> {
    let attrs = match attrs {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(Rejection::invalid(
                path,
                format!("{path} must be a JSON object"),
            ))
        }
    };
    for (name, value) in attrs {
        let trimmed = name.trim();
        if trimmed.is_empty() || trimmed == "id" || trimmed == "_id" {
            return Err(Rejection::invalid(
                format!("{path}.{name}"),
                format!("attribute name {name:?} is not allowed (empty, id and _id are reserved)"),
            ));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            notes.push(format!(
                "{path}.{name}: name truncated to {MAX_NAME_CHARS} characters"
            ));
        }
        if value
            .as_str()
            .is_some_and(|s| s.chars().count() > MAX_STRING_CHARS)
        {
            notes.push(format!(
                "{path}.{name}: string value truncated to {MAX_STRING_CHARS} characters"
            ));
        }
    }
    Ok(())
}

/// Parses a `user_time`/`current_time`: epoch seconds (number or digit string) or ISO 8601
/// (`2026-11-01T10:00:00Z`, with offset, without zone = UTC, or a bare date).
pub fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => {
            let secs = n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f.trunc() as i64))?;
            DateTime::from_timestamp(secs, 0)
        }
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return DateTime::from_timestamp(s.parse().ok()?, 0);
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.with_timezone(&Utc));
            }
            for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
                    return Some(t.and_utc());
                }
            }
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
