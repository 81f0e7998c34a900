//! Field mapping: `FIELD_MAPPING` / `PRIMARY_KEY` parsed into a [`FieldMapping`], resolved against an
//! export's header into a [`ResolvedMapping`], which encodes each row as one MoEngage element
//! (a Track User object or a Create Event object) straight into bytes.
//!
//! Validation of what MoEngage would silently drop lives here too (forbidden `customer_id`s, empty
//! `action`, future `user_time`…), because the Bulk API answers 200 even for elements it drops:
//! checking before sending is the only per-row feedback a user will ever get.
//!
//! Takes decoded rows; gives encoded elements, or a rejection naming the row, column and reason.
//! [`convert`] turns one cell into the JSON value MoEngage gets, by declared type.

pub mod convert;

use std::collections::HashMap;

use serde_json::Value;

use crate::map::convert::{Cell, FieldType, ValueWarning};
use crate::model::{shorten, ElementKind, ObjectType, SyncMode};

/// Fields that sit on an event's action object rather than in its `attributes`.
pub const ACTION_FIELDS: [&str; 6] = [
    "action",
    "platform",
    "user_time",
    "current_time",
    "user_timezone_offset",
    "app_version",
];

/// `customer_id` values MoEngage refuses (compared trimmed, case-insensitively).
pub const FORBIDDEN_CUSTOMER_IDS: [&str; 21] = [
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
    "",
];

/// The platforms MoEngage accepts, in its spelling.
pub const PLATFORMS: [&str; 5] = ["ANDROID", "iOS", "web", "TV", "unknown"];

/// One mapping entry: MoEngage field ← source column, optionally typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub field: String,
    pub column: String,
    pub field_type: Option<FieldType>,
}

/// The mapping as configured, before an export's header is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldMapping {
    /// Explicit entries in configuration order; empty means identity (every column as itself).
    pub fields: Vec<FieldSpec>,
    /// `PRIMARY_KEY`: the column injected as `customer_id` when `customer_id` isn't mapped.
    pub primary_key: Option<String>,
    pub object_type: ObjectType,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("not a JSON object: {reason}")]
    Json { value: String, reason: String },
    #[error("field {field:?} must map to a column name or {{\"column\":…,\"type\":…}}; type is one of {accepted}", accepted = FieldType::ACCEPTED)]
    BadEntry { field: String },
    #[error("FIELD_MAPPING maps no customer_id and PRIMARY_KEY is not set; map customer_id to your user id column or set PRIMARY_KEY")]
    NoCustomerId,
    #[error("OBJECT_TYPE=events needs an action: map the field \"action\" to the column holding the event name")]
    NoAction,
    #[error("column {column} (for MoEngage field {field}) is not in the export's header; the header has: {header}")]
    MissingColumn {
        field: String,
        column: String,
        header: String,
    },
    #[error(
        "FIELD_MAPPING maps the MoEngage field {field} more than once; keep one entry per field"
    )]
    DuplicateField { field: String },
    #[error("the export's header names column {column} twice (columns {first} and {again}, after trimming spaces); rename one of them so that each MoEngage field reads one column")]
    RepeatedColumn {
        column: String,
        first: usize,
        again: usize,
    },
}

impl FieldMapping {
    /// Parses `FIELD_MAPPING` (JSON object) for `object_type`. `None`/`{}` means identity.
    pub fn parse(
        raw: Option<&str>,
        primary_key: Option<String>,
        object_type: ObjectType,
    ) -> Result<Self, MappingError> {
        let mut fields = Vec::new();
        if let Some(raw) = raw {
            let Entries(mut obj) = serde_json::from_str(raw).map_err(|e| MappingError::Json {
                value: raw.to_string(),
                reason: e.to_string(),
            })?;
            // JSON objects may repeat a key, and a map would keep only the last: refuse instead.
            // Then the order a map gives (by field name), as before.
            obj.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some(pair) = obj.windows(2).find(|p| p[0].0 == p[1].0) {
                return Err(MappingError::DuplicateField {
                    field: quote(&pair[0].0),
                });
            }
            for (field, spec) in obj {
                let bad = || MappingError::BadEntry {
                    field: field.clone(),
                };
                let (column, field_type) = match &spec {
                    Value::String(c) if !c.trim().is_empty() => (c.clone(), None),
                    Value::Object(o) => {
                        let column = o
                            .get("column")
                            .and_then(Value::as_str)
                            .filter(|c| !c.trim().is_empty())
                            .ok_or_else(bad)?;
                        let ty = match o.get("type") {
                            None | Some(Value::Null) => None,
                            Some(Value::String(t)) => Some(FieldType::parse(t).ok_or_else(bad)?),
                            Some(_) => return Err(bad()),
                        };
                        (column.to_string(), ty)
                    }
                    _ => return Err(bad()),
                };
                if field.trim().is_empty() {
                    return Err(bad());
                }
                fields.push(FieldSpec {
                    field,
                    column,
                    field_type,
                });
            }
        }
        let mapping = FieldMapping {
            fields,
            primary_key,
            object_type,
        };
        if !mapping.fields.is_empty() {
            if !mapping.has_field("customer_id") && mapping.primary_key.is_none() {
                return Err(MappingError::NoCustomerId);
            }
            if object_type == ObjectType::Events && !mapping.has_field("action") {
                return Err(MappingError::NoAction);
            }
        }
        Ok(mapping)
    }

    fn has_field(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.field == name)
    }

    /// Binds the mapping to an export's columns. Fails before any row is sent when a mapped column
    /// or a required field is missing.
    pub fn resolve(
        &self,
        header: &[String],
        sync_mode: SyncMode,
    ) -> Result<ResolvedMapping, MappingError> {
        // Column name → first position, built once: resolving is linear in the column count
        // (a 200k-column header must not take minutes).
        let mut positions: HashMap<&str, usize> = HashMap::with_capacity(header.len());
        let mut repeated: HashMap<&str, usize> = HashMap::new();
        for (i, h) in header.iter().enumerate() {
            if let Some(&first) = positions.get(h.as_str()) {
                repeated.entry(h.as_str()).or_insert(first);
            } else {
                positions.insert(h.as_str(), i);
            }
        }
        let has_customer_id = positions.contains_key("customer_id");
        let specs: Vec<FieldSpec> = if self.fields.is_empty() {
            header
                .iter()
                .filter(|c| !c.is_empty())
                // Under identity mapping the primary-key column is the customer_id, not an attribute.
                .filter(|c| self.primary_key.as_deref() != Some(c.as_str()) || has_customer_id)
                // A repeated name becomes two specs; `index_of` refuses it with both positions.
                .map(|c| FieldSpec {
                    field: c.clone(),
                    column: c.clone(),
                    field_type: None,
                })
                .collect()
        } else {
            self.fields.clone()
        };
        let index_of = |field: &str, column: &str| {
            if let Some(&first) = repeated.get(column) {
                let again = header
                    .iter()
                    .enumerate()
                    .skip(first + 1)
                    .find(|(_, h)| h.as_str() == column)
                    .map_or(first, |(i, _)| i);
                return Err(MappingError::RepeatedColumn {
                    column: quote(column),
                    first: first + 1,
                    again: again + 1,
                });
            }
            positions
                .get(column)
                .copied()
                .ok_or_else(|| MappingError::MissingColumn {
                    field: quote(field),
                    column: quote(column),
                    header: header_preview(header),
                })
        };
        let customer_id = match specs.iter().find(|s| s.field == "customer_id") {
            Some(s) => Bound::new(
                &s.field,
                &s.column,
                index_of(&s.field, &s.column)?,
                s.field_type,
            ),
            None => match &self.primary_key {
                Some(pk) => Bound::new("customer_id", pk, index_of("customer_id", pk)?, None),
                None => return Err(MappingError::NoCustomerId),
            },
        };
        let mut action = None;
        let mut action_fields = Vec::new();
        let mut attributes = Vec::new();
        for s in specs.iter().filter(|s| s.field != "customer_id") {
            let bound = Bound::new(
                &s.field,
                &s.column,
                index_of(&s.field, &s.column)?,
                s.field_type,
            );
            let on_action = self.object_type != ObjectType::UserAttributes
                && ACTION_FIELDS.contains(&s.field.as_str());
            if s.field == "action" && on_action {
                action = Some(bound);
            } else if on_action {
                action_fields.push(bound);
            } else {
                attributes.push(bound);
            }
        }
        if self.object_type == ObjectType::Events && action.is_none() {
            return Err(MappingError::NoAction);
        }
        // An event's identity for change detection: the PRIMARY_KEY column when it is not already
        // the customer_id (then it names the event, e.g. an event id); without one, no identity.
        let event_key = match &self.primary_key {
            Some(pk) if *pk != customer_id.column => positions.get(pk.as_str()).copied(),
            _ => None,
        };
        Ok(ResolvedMapping {
            event_key,
            object_type: self.object_type,
            update_existing_only: sync_mode == SyncMode::Update,
            customer_id,
            action,
            action_fields,
            attributes,
        })
    }
}

/// A JSON object's entries in document order, repeated keys included.
struct Entries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Longest name quoted in an error: a hostile header must not make a megabyte-long message.
const QUOTE_MAX: usize = 200;

fn cut(s: &str) -> String {
    shorten(s, QUOTE_MAX)
}

/// `"name"`, cut to about [`QUOTE_MAX`] bytes (after escaping too).
fn quote(s: &str) -> String {
    crate::model::quoted(s)
}

/// The header for an error message: its first columns, then how many more.
fn header_preview(header: &[String]) -> String {
    const SHOWN: usize = 30;
    let mut out = header
        .iter()
        .take(SHOWN)
        .map(|h| cut(h))
        .collect::<Vec<_>>()
        .join(", ");
    if header.len() > SHOWN {
        out.push_str(&format!(" … and {} more columns", header.len() - SHOWN));
    }
    out
}

/// A MoEngage field bound to a column position.
#[derive(Clone, Debug)]
pub struct Bound {
    pub field: String,
    pub column: String,
    pub index: usize,
    pub field_type: Option<FieldType>,
    /// `,"field":` as JSON, escaped once here instead of on every row (the first attribute of an
    /// object skips the comma).
    key_json: Box<[u8]>,
}

impl Bound {
    fn new(field: &str, column: &str, index: usize, field_type: Option<FieldType>) -> Self {
        let mut key_json = Vec::with_capacity(field.len() + 4);
        key_json.push(b',');
        convert::write_raw_str(field, &mut key_json);
        key_json.push(b':');
        Bound {
            field: field.to_string(),
            column: column.to_string(),
            index,
            field_type,
            key_json: key_json.into_boxed_slice(),
        }
    }
}

/// Why a row was not sent: the column it concerns and a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowIssue {
    pub column: String,
    pub reason: String,
}

/// The mapping bound to one export's header; encodes rows.
#[derive(Clone, Debug)]
pub struct ResolvedMapping {
    object_type: ObjectType,
    /// `SYNC_MODE=update`: customer objects carry `update_existing_only: true`.
    update_existing_only: bool,
    customer_id: Bound,
    /// `None` for user_attributes; required for events; optional per row for bulk_import.
    action: Option<Bound>,
    /// platform, user_time, … — on the action object.
    action_fields: Vec<Bound>,
    attributes: Vec<Bound>,
    /// Header position of the PRIMARY_KEY column when it identifies events (not the customer_id).
    event_key: Option<usize>,
}

/// A row as a decoder hands it over: a cell per header column.
pub trait Row {
    /// The cell at header position `index`; `Err` carries why it cannot be read (e.g. invalid UTF-8).
    fn cell(&self, index: usize) -> Result<Cell<'_>, String>;

    /// Appends the cell at `index` in [canonical form](Cell::write_canonical); `false` when it
    /// cannot be read. A decoder may write it straight from its buffer, byte for byte as
    /// `cell(index)?.write_canonical(out)` would.
    fn write_canonical(&self, index: usize, out: &mut Vec<u8>) -> bool {
        match self.cell(index) {
            Ok(cell) => {
                cell.write_canonical(out);
                true
            }
            Err(_) => false,
        }
    }
}

/// The outcome of encoding one row.
#[derive(Debug, Default)]
pub struct Encoded {
    /// Things MoEngage would quietly alter; the row is still sent.
    pub warnings: Vec<RowIssue>,
}

impl ResolvedMapping {
    /// The event id of `row` (its PRIMARY_KEY cell) when the mapping has one and it is not empty.
    pub fn event_key<R: Row + ?Sized>(&self, row: &R) -> Option<String> {
        let cell = row.cell(self.event_key?).ok()?;
        cell.as_text()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// The columns this mapping reads, for decoders that can skip the rest.
    pub fn columns(&self) -> impl Iterator<Item = &Bound> {
        std::iter::once(&self.customer_id)
            .chain(self.action.iter())
            .chain(&self.action_fields)
            .chain(&self.attributes)
    }

    /// The row's `customer_id` as [`ResolvedMapping::encode`] writes it into the element (trimmed,
    /// JSON-escaped, without its quotes) into `out` (cleared first), whatever the row's other
    /// cells hold; `false` when the row has no usable customer id. Mirror mode counts a user as
    /// present in a snapshot by this, so that a row rejected for another column never gets its
    /// user deleted.
    pub fn customer_id_json<R: Row + ?Sized>(&self, row: &R, out: &mut Vec<u8>) -> bool {
        out.clear();
        let Ok(cell) = row.cell(self.customer_id.index) else {
            return false;
        };
        let Some(text) = cell.as_text() else {
            return false;
        };
        let cid = convert::trim(&text);
        if cid.is_empty() || convert::check_nul(cid).is_err() {
            return false;
        }
        convert::write_raw_str(cid, out);
        // Strip the quotes `write_raw_str` puts around it.
        out.pop();
        if !out.is_empty() {
            out.remove(0);
        }
        true
    }

    /// What the sync state knows `row` by, without encoding it: the kind of element
    /// [`ResolvedMapping::encode`] would make, with its key written into `key` (a user's
    /// `customer_id` as `encode` writes it, JSON-escaped; an event's id) and every mapped cell,
    /// in [canonical form](Cell::write_canonical), into `cells`. Both are cleared first. `None`
    /// when the row would have no key: no usable `customer_id`, an event without a name or
    /// without an event id, or a cell that cannot be read.
    ///
    /// A row keyed here may still be rejected by `encode` (a bad value in another column). Rows
    /// with the same cells encode alike, so one whose cells match a row MoEngage accepted is
    /// valid now too; any other row is mapped (and rejected, if it must be) before it is sent.
    pub fn identify<R: Row + ?Sized>(
        &self,
        row: &R,
        key: &mut Vec<u8>,
        cells: &mut Vec<u8>,
    ) -> Option<ElementKind> {
        cells.clear();
        for b in self.columns() {
            if !row.write_canonical(b.index, cells) {
                return None;
            }
        }
        let named = match &self.action {
            Some(b) => row
                .cell(b.index)
                .ok()?
                .as_text()
                .is_some_and(|t| !t.trim().is_empty()),
            None => false,
        };
        match (self.object_type, named) {
            (ObjectType::Events, false) => None,
            (ObjectType::UserAttributes, _) | (ObjectType::BulkImport, false) => self
                .customer_id_json(row, key)
                .then_some(ElementKind::Customer),
            (_, true) => {
                key.clear();
                key.extend_from_slice(self.event_key(row)?.as_bytes());
                Some(ElementKind::Event)
            }
        }
    }

    /// Encodes `row` as one element into `out` (cleared first). On `Err`, the row is rejected and
    /// `out` must be ignored. `now` bounds `user_time` (MoEngage refuses future-dated events).
    pub fn encode<R: Row + ?Sized>(
        &self,
        row: &R,
        out: &mut Vec<u8>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(ElementKind, Encoded), RowIssue> {
        out.clear();
        let mut encoded = Encoded::default();
        let issue = |b: &Bound, reason: String| RowIssue {
            column: b.column.clone(),
            reason,
        };

        let cid_cell = row
            .cell(self.customer_id.index)
            .map_err(|r| issue(&self.customer_id, r))?;
        let cid_text = cid_cell.as_text();
        let cid = cid_text.as_deref().map(convert::trim).ok_or_else(|| {
            issue(
                &self.customer_id,
                "customer_id is missing (every record needs one)".into(),
            )
        })?;
        if cid.is_empty() {
            return Err(issue(
                &self.customer_id,
                "customer_id is empty (every record needs one)".into(),
            ));
        }
        if let Err(e) = convert::check_nul(cid) {
            return Err(issue(&self.customer_id, format!("customer_id {e}")));
        }
        if FORBIDDEN_CUSTOMER_IDS
            .iter()
            .any(|f| f.eq_ignore_ascii_case(cid))
        {
            return Err(issue(
                &self.customer_id,
                format!(
                    "customer_id {} is a placeholder MoEngage refuses",
                    crate::model::quoted(cid)
                ),
            ));
        }

        let action_name = match &self.action {
            Some(b) => {
                let cell = row.cell(b.index).map_err(|r| issue(b, r))?;
                let name = cell
                    .as_text()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty());
                if let Some(Err(e)) = name.as_deref().map(convert::check_nul) {
                    return Err(issue(b, format!("the event name {e}")));
                }
                name
            }
            None => None,
        };
        let kind = match (self.object_type, &action_name) {
            (ObjectType::Events, None) => {
                let b = self.action.as_ref().unwrap_or(&self.customer_id);
                return Err(issue(
                    b,
                    "action is empty: every event needs an event name".into(),
                ));
            }
            (ObjectType::UserAttributes, _) | (ObjectType::BulkImport, None) => {
                ElementKind::Customer
            }
            (_, Some(_)) => ElementKind::Event,
        };

        match kind {
            ElementKind::Customer => {
                out.extend_from_slice(b"{\"type\":\"customer\",\"customer_id\":");
                convert::write_raw_str(cid, out);
                out.extend_from_slice(b",\"attributes\":");
                self.write_attributes(row, out, &mut encoded)?;
                if self.update_existing_only {
                    out.extend_from_slice(b",\"update_existing_only\":true");
                }
                out.push(b'}');
            }
            ElementKind::Event => {
                let name = action_name.unwrap_or_default();
                if name.contains('.') {
                    let b = self.action.as_ref().unwrap_or(&self.customer_id);
                    encoded.warnings.push(issue(b, format!("event name {} contains '.', which MoEngage turns into a space; prefer '_'", crate::model::quoted(&name))));
                }
                out.extend_from_slice(b"{\"type\":\"event\",\"customer_id\":");
                convert::write_raw_str(cid, out);
                out.extend_from_slice(b",\"actions\":[{\"action\":");
                convert::write_raw_str(&name, out);
                out.extend_from_slice(b",\"attributes\":");
                self.write_attributes(row, out, &mut encoded)?;
                for b in &self.action_fields {
                    self.write_action_field(b, row, out, &mut encoded, now)?;
                }
                out.extend_from_slice(b"}]}");
            }
        }
        Ok((kind, encoded))
    }

    fn write_attributes<R: Row + ?Sized>(
        &self,
        row: &R,
        out: &mut Vec<u8>,
        encoded: &mut Encoded,
    ) -> Result<(), RowIssue> {
        out.push(b'{');
        let mut first = true;
        let mut warnings = Vec::new();
        for b in &self.attributes {
            let cell = row.cell(b.index).map_err(|r| RowIssue {
                column: b.column.clone(),
                reason: r,
            })?;
            if cell.is_empty() {
                continue;
            }
            let mark = out.len();
            out.extend_from_slice(if first { &b.key_json[1..] } else { &b.key_json });
            warnings.clear();
            match convert::write_present(cell, b.field_type, out, &mut warnings) {
                Ok(true) => first = false,
                Ok(false) => out.truncate(mark),
                Err(e) => {
                    return Err(RowIssue {
                        column: b.column.clone(),
                        reason: format!("{}: {}", b.field, e.0),
                    })
                }
            }
            for w in &warnings {
                encoded.warnings.push(value_warning(b, w));
            }
        }
        out.push(b'}');
        Ok(())
    }

    fn write_action_field<R: Row + ?Sized>(
        &self,
        b: &Bound,
        row: &R,
        out: &mut Vec<u8>,
        encoded: &mut Encoded,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), RowIssue> {
        let issue = |reason: String| RowIssue {
            column: b.column.clone(),
            reason,
        };
        let cell = row.cell(b.index).map_err(issue)?;
        if cell.is_empty() {
            return Ok(());
        }
        out.extend_from_slice(&b.key_json);
        match b.field.as_str() {
            "platform" => {
                let raw = cell
                    .as_text()
                    .map(|t| t.trim().to_string())
                    .unwrap_or_default();
                let known = PLATFORMS.iter().find(|p| p.eq_ignore_ascii_case(&raw));
                if known.is_none() {
                    encoded.warnings.push(issue(format!(
                        "platform {} is not one of ANDROID, iOS, web, TV; sent as \"unknown\"",
                        crate::model::quoted(&raw)
                    )));
                }
                convert::write_raw_str(known.copied().unwrap_or("unknown"), out);
            }
            "user_time" | "current_time" => {
                let dt = match cell {
                    Cell::Json(Value::Number(n)) => n
                        .as_f64()
                        .and_then(|f| convert::parse_datetime(&f.to_string())),
                    _ => cell.as_text().and_then(|t| convert::parse_datetime(&t)),
                }
                .ok_or_else(|| {
                    issue(format!(
                        "{} {} is not a datetime (ISO 8601, YYYY-MM-DD HH:MM:SS[ ±ZZZZ] or epoch)",
                        b.field,
                        crate::model::quoted(&cell.as_text().unwrap_or_default())
                    ))
                })?;
                if b.field == "user_time" && dt > now + chrono::Duration::minutes(5) {
                    return Err(issue(format!("user_time {} is in the future; MoEngage does not accept future-dated events", convert::format_datetime(&dt))));
                }
                convert::write_raw_str(&convert::format_datetime(&dt), out);
            }
            "user_timezone_offset" => {
                let t = cell
                    .as_text()
                    .map(|t| t.trim().to_string())
                    .unwrap_or_default();
                let n: i64 = t.parse().map_err(|_| {
                    issue(format!(
                        "user_timezone_offset {} is not a whole number of seconds",
                        crate::model::quoted(&t)
                    ))
                })?;
                if !(-54_000..=54_000).contains(&n) {
                    return Err(issue(format!(
                        "user_timezone_offset {n} is outside -54000..54000 seconds"
                    )));
                }
                out.extend_from_slice(n.to_string().as_bytes());
            }
            _ => {
                let mut warnings = Vec::new();
                convert::write_value(cell, b.field_type, out, &mut warnings)
                    .map_err(|e| issue(e.0))?;
                for w in &warnings {
                    encoded.warnings.push(value_warning(b, w));
                }
            }
        }
        Ok(())
    }

    /// Warnings about the mapping itself (reserved names), reported once per object.
    pub fn name_warnings(&self) -> Vec<RowIssue> {
        let mut out = Vec::new();
        for b in &self.attributes {
            let reserved_standard = [
                "moe_mobile",
                "moe_unsubscribe",
                "moe_gaid",
                "moe_sub_w",
                "moe_sub_s",
                "moe_sub_p",
                "moe_sub_e",
                "moe_rsp_android",
                "moe_rsp_ios",
                "moe_rsp_web",
            ];
            if b.field == "id" || b.field == "_id" {
                out.push(RowIssue { column: b.column.clone(), reason: format!("attribute name {:?} is reserved by MoEngage and will not be stored; map it to another name", b.field) });
            } else if b.field.starts_with("moe_") && !reserved_standard.contains(&b.field.as_str())
            {
                out.push(RowIssue { column: b.column.clone(), reason: format!("attribute name {:?} uses MoEngage's reserved moe_ prefix; custom attributes must not", b.field) });
            } else if b.field.chars().count() > 200 {
                out.push(RowIssue {
                    column: b.column.clone(),
                    reason: "attribute name is over 200 characters; MoEngage truncates it".into(),
                });
            }
        }
        out
    }
}

fn value_warning(b: &Bound, w: &ValueWarning) -> RowIssue {
    let reason = match w {
        ValueWarning::LongString(n) => format!(
            "{}: string of {n} characters; MoEngage truncates values over 512",
            b.field
        ),
        ValueWarning::LongArray(n) => format!(
            "{}: array of {n} elements; MoEngage keeps at most 50",
            b.field
        ),
        ValueWarning::MixedArray => format!(
            "{}: array mixes value types; MoEngage needs arrays of one type",
            b.field
        ),
    };
    RowIssue {
        column: b.column.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests;
