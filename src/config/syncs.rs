//! Syncs: what one deployment does with each object it is given. Without `SYNC_CONFIG`, the
//! variables (`OBJECT_TYPE`, `FIELD_MAPPING`, …) describe one sync, `default`, matching every key.
//! With it, a YAML file (JSON is YAML too) lists syncs, each on its own key prefix with its own
//! object type, mapping and format; a field left out falls back to its variable, then its default.
//! The file may also set the request and record budgets of each MoEngage API, shared by every sync.
//!
//! ```yaml
//! budgets:                       # optional; the variables are the defaults
//!   bulk_import: { requests_per_minute: 1200, users_per_minute: 60000, events_per_minute: 60000 }
//!   delete_users: { requests_per_minute: 1000 }   # mirror mode (DELETES_PER_MINUTE)
//! syncs:
//!   - name: users-daily
//!     prefix: exports/users/
//!     object_type: bulk_import
//!     field_mapping: { customer_id: user_id, email: { column: email_address, type: string } }
//!   - name: purchases-hourly
//!     prefix: exports/events/purchases/
//!     object_type: events
//!     format: csv                # as SOURCE_FORMAT; also compression, csv: { delimiter, quote, escape }
//!     csv: { delimiter: ";" }
//! ```
//!
//! Parsed with serde-saphyr (maintained, panic-free, with limits on depth, aliases and size for a
//! hostile file) into JSON values first, so every error can name the sync and the field it is in.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::decode::{Compression, CsvOptions, Format};
pub use crate::deliver::rate::{ApiBudget, ApiBudgets};
use crate::map::{FieldMapping, MappingError};
use crate::model::{ObjectType, SyncMode};

/// The name of the one sync the variables describe.
pub const DEFAULT_SYNC: &str = "default";

/// A configuration file larger than this is refused before it is parsed: a 100-column typed
/// mapping for a dozen syncs is a few tens of KB.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// At most this many syncs in one file (each is matched against every key).
pub const MAX_SYNCS: usize = 200;

/// One sync: the objects under `prefix`, and what to make of their rows.
#[derive(Clone, Debug)]
pub struct SyncSpec {
    /// Unique; names metrics, reports, log lines and the sync state scope.
    pub name: String,
    /// Objects whose key starts with this belong to this sync (the longest match wins).
    pub prefix: String,
    /// `object_type`, else `OBJECT_TYPE`.
    pub object_type: ObjectType,
    /// `sync_mode`, else `SYNC_MODE`, else upsert.
    pub sync_mode: SyncMode,
    /// `field_mapping` (+ `primary_key`), else `FIELD_MAPPING` (+ `PRIMARY_KEY`), else identity.
    pub field_mapping: FieldMapping,
    /// `format`, else `SOURCE_FORMAT`, else detected.
    pub source_format: Option<Format>,
    /// `compression`, else `SOURCE_COMPRESSION`, else detected.
    pub source_compression: Option<Compression>,
    /// `csv`, else `CSV_DELIMITER` / `CSV_QUOTE` / `CSV_ESCAPE`.
    pub csv: CsvOptions,
    /// Defined in `SYNC_CONFIG`: its sync state and reports live under its name. The variables'
    /// `default` sync (and a file's sync named `default`) keeps the paths of earlier versions, so
    /// moving a deployment to a file does not resend everything.
    pub scoped: bool,
}

impl SyncSpec {
    /// The sync state scope: `{workspace}/{object_type}` for `default` (as before syncs existed),
    /// `{workspace}/syncs/{name}/{object_type}` for the others, so two datasets of users never
    /// overwrite each other's fingerprints (and resend each other's rows).
    pub fn state_scope(&self, workspace_id: &str) -> String {
        let base = crate::sync_state::scope(workspace_id, self.object_type);
        if self.scoped {
            match base.split_once('/') {
                Some((ws, ty)) => format!("{ws}/syncs/{}/{ty}", self.name),
                None => format!("{base}/syncs/{}", self.name),
            }
        } else {
            base
        }
    }

    /// Where this sync's run reports go: `{STATE_PREFIX}reports/…` for `default`, else
    /// `{STATE_PREFIX}syncs/{name}/reports/…`. Returns the prefix `report_key` adds `reports/` to.
    pub fn report_prefix(&self, state_prefix: &str) -> String {
        if self.scoped {
            format!("{state_prefix}syncs/{}/", self.name)
        } else {
            state_prefix.to_string()
        }
    }
}

/// Where `SYNC_CONFIG` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncConfigLocation {
    S3 { bucket: String, key: String },
    Path(std::path::PathBuf),
}

impl SyncConfigLocation {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if let Some(rest) = raw.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                    Ok(SyncConfigLocation::S3 {
                        bucket: bucket.into(),
                        key: key.into(),
                    })
                }
                _ => Err("s3://bucket/key of a YAML or JSON file, or a local path".into()),
            };
        }
        if raw.contains("://") {
            return Err("s3://bucket/key of a YAML or JSON file, or a local path".into());
        }
        Ok(SyncConfigLocation::Path(raw.into()))
    }
}

impl std::fmt::Display for SyncConfigLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncConfigLocation::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            SyncConfigLocation::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The variables' values, the fallback of every field a file's sync leaves out. Already checked:
/// a bad variable fails at start-up whether or not a file overrides it.
#[derive(Clone, Debug, Default)]
pub struct SyncDefaults {
    pub object_type: Option<ObjectType>,
    pub sync_mode: Option<SyncMode>,
    pub field_mapping: Option<String>,
    pub primary_key: Option<String>,
    pub source_format: Option<Format>,
    pub source_compression: Option<Compression>,
    pub csv: CsvOptions,
    /// `SOURCE_PREFIX`: every sync's prefix must lie under it (the function sees nothing else).
    pub source_prefix: String,
    /// The variables' budgets.
    pub budgets: Option<ApiBudgets>,
}

/// The syncs in force, with the file version they came from.
#[derive(Clone, Debug)]
pub struct Syncs {
    pub syncs: Vec<Arc<SyncSpec>>,
    pub budgets: ApiBudgets,
    /// `SYNC_CONFIG` and the ETag (S3) or content hash (local file) of the version read; `None`
    /// without a file.
    pub file: Option<(SyncConfigLocation, String)>,
}

impl Syncs {
    /// The sync an object belongs to: the longest prefix its key starts with. `Err` is the note
    /// for an object no sync takes.
    pub fn route(&self, key: &str) -> Result<&Arc<SyncSpec>, String> {
        self.syncs
            .iter()
            .filter(|s| key.starts_with(&s.prefix))
            .max_by_key(|s| s.prefix.len())
            .ok_or_else(|| {
                let prefixes: Vec<String> = self
                    .syncs
                    .iter()
                    .map(|s| format!("{:?} ({})", s.prefix, s.name))
                    .collect();
                format!(
                    "matches no sync's prefix (configured: {}); skipped",
                    prefixes.join(", ")
                )
            })
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<SyncSpec>> {
        self.syncs.iter().find(|s| s.name == name)
    }

    /// The ETag of the file these syncs came from, for run reports.
    pub fn file_etag(&self) -> Option<&str> {
        self.file.as_ref().map(|(_, etag)| etag.as_str())
    }

    /// The one sync the variables describe: `default`, every key. Errors as the variables'.
    pub fn from_variables(defaults: &SyncDefaults) -> Result<Self, VariableError> {
        let object_type = defaults.object_type.ok_or(VariableError {
            variable: "OBJECT_TYPE",
            value: None,
            accepted: ObjectType::ACCEPTED.into(),
        })?;
        let sync_mode = defaults.sync_mode.unwrap_or(SyncMode::Upsert);
        if let Err(why) = mirror_fits(object_type, sync_mode) {
            return Err(VariableError {
                variable: "SYNC_MODE",
                value: Some(sync_mode.as_str().into()),
                accepted: why.into(),
            });
        }
        let field_mapping =
            mapping_from_variable(defaults, defaults.primary_key.clone(), object_type)?;
        Ok(Syncs {
            syncs: vec![Arc::new(SyncSpec {
                name: DEFAULT_SYNC.into(),
                prefix: String::new(),
                object_type,
                sync_mode,
                field_mapping,
                source_format: defaults.source_format,
                source_compression: defaults.source_compression,
                csv: defaults.csv,
                scoped: false,
            })],
            budgets: defaults.budgets.unwrap_or(ApiBudgets::from_variables(
                super::DEFAULT_RATE_LIMIT_PER_MINUTE,
                None,
                None,
            )),
            file: None,
        })
    }

    /// Parses a `SYNC_CONFIG` file. `Err` is one line naming the sync and the field.
    pub fn from_file(
        text: &[u8],
        defaults: &SyncDefaults,
        location: SyncConfigLocation,
        etag: String,
    ) -> Result<Self, String> {
        if text.len() > MAX_FILE_BYTES {
            return Err(format!(
                "the file is {} bytes; at most {MAX_FILE_BYTES} are accepted",
                text.len()
            ));
        }
        let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8 text ({e})"))?;
        let doc: Value = serde_saphyr::from_str(text)
            .map_err(|e| format!("not valid YAML: {}", one_line(&e.to_string())))?;
        let file: FileDoc = serde_json::from_value(doc).map_err(|e| {
            format!(
                "{}; the file holds `syncs:` (a list) and optionally `budgets:`",
                one_line(&e.to_string())
            )
        })?;
        if file.syncs.is_empty() {
            return Err("`syncs:` lists no sync; list at least one".into());
        }
        if file.syncs.len() > MAX_SYNCS {
            return Err(format!(
                "`syncs:` lists {} syncs; at most {MAX_SYNCS}",
                file.syncs.len()
            ));
        }
        let budgets = file
            .budgets
            .unwrap_or_default()
            .resolve(defaults.budgets.unwrap_or(ApiBudgets::from_variables(
                super::DEFAULT_RATE_LIMIT_PER_MINUTE,
                None,
                None,
            )))?;
        let mut names = HashSet::new();
        let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
        let mut syncs = Vec::with_capacity(file.syncs.len());
        for (i, raw) in file.syncs.into_iter().enumerate() {
            let label = raw
                .get("name")
                .and_then(Value::as_str)
                .map(|n| format!("sync {:?}", crate::model::shorten(n, 80)))
                .unwrap_or_else(|| format!("syncs[{i}]"));
            let spec = parse_sync(raw, defaults).map_err(|e| format!("{label}: {e}"))?;
            if !names.insert(spec.name.clone()) {
                return Err(format!(
                    "{label}: name: used by another sync; names must be unique"
                ));
            }
            if let Some(other) = prefixes.insert(spec.prefix.clone(), spec.name.clone()) {
                return Err(format!(
                    "{label}: prefix: {:?} is also sync {other:?}'s prefix; an object must belong to one sync",
                    spec.prefix
                ));
            }
            syncs.push(Arc::new(spec));
        }
        Ok(Syncs {
            syncs,
            budgets,
            file: Some((location, etag)),
        })
    }
}

/// A bad variable behind a sync (for [`super::ConfigError::Invalid`] / `Missing`).
#[derive(Debug)]
pub struct VariableError {
    pub variable: &'static str,
    /// `None`: the variable is not set.
    pub value: Option<String>,
    pub accepted: String,
}

fn mapping_from_variable(
    defaults: &SyncDefaults,
    primary_key: Option<String>,
    object_type: ObjectType,
) -> Result<FieldMapping, VariableError> {
    FieldMapping::parse(defaults.field_mapping.as_deref(), primary_key, object_type)
        .map_err(|e| mapping_error(e, defaults.field_mapping.clone().unwrap_or_default()))
}

fn mapping_error(e: MappingError, raw: String) -> VariableError {
    match e {
        MappingError::Json { value, reason } => VariableError {
            variable: "FIELD_MAPPING",
            value: Some(value),
            accepted: format!(
                "a JSON object of MoEngage field → source column or {{\"column\":…,\"type\":…}} ({reason})"
            ),
        },
        other => VariableError {
            variable: "FIELD_MAPPING",
            value: Some(raw),
            accepted: other.to_string(),
        },
    }
}

/// Collapses a multi-line parser message (with its source snippet) onto one line.
fn one_line(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    crate::model::shorten(&joined, 300)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    syncs: Vec<serde_json::Map<String, Value>>,
    #[serde(default)]
    budgets: Option<FileBudgets>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileBudgets {
    track_user: Option<FileBudget>,
    create_event: Option<FileBudget>,
    bulk_import: Option<FileBudget>,
    delete_users: Option<FileBudget>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct FileBudget {
    requests_per_minute: Option<u32>,
    users_per_minute: Option<u32>,
    events_per_minute: Option<u32>,
}

impl FileBudgets {
    fn resolve(self, defaults: ApiBudgets) -> Result<ApiBudgets, String> {
        let one = |name: &str,
                   file: Option<FileBudget>,
                   default: ApiBudget|
         -> Result<ApiBudget, String> {
            let Some(f) = file else { return Ok(default) };
            let check = |field: &str, v: Option<u32>, max: u32| {
                match v {
                Some(n) if n == 0 || n > max => Err(format!(
                    "budgets.{name}.{field}: {n} is not valid; expected a whole number from 1 to {max}"
                )),
                _ => Ok(v),
            }
            };
            Ok(ApiBudget {
                requests_per_minute: check(
                    "requests_per_minute",
                    f.requests_per_minute,
                    1_000_000,
                )?
                .unwrap_or(default.requests_per_minute),
                users_per_minute: check("users_per_minute", f.users_per_minute, 10_000_000)?
                    .or(default.users_per_minute),
                events_per_minute: check("events_per_minute", f.events_per_minute, 10_000_000)?
                    .or(default.events_per_minute),
            })
        };
        let budgets = ApiBudgets {
            track_user: one("track_user", self.track_user, defaults.track_user)?,
            create_event: one("create_event", self.create_event, defaults.create_event)?,
            bulk_import: one("bulk_import", self.bulk_import, defaults.bulk_import)?,
            delete_users: one("delete_users", self.delete_users, defaults.delete_users)?,
        };
        if self
            .delete_users
            .is_some_and(|b| b.users_per_minute.is_some() || b.events_per_minute.is_some())
        {
            return Err("budgets.delete_users: Delete Users takes one user per request; set requests_per_minute only".into());
        }
        if self
            .track_user
            .is_some_and(|b| b.events_per_minute.is_some())
        {
            return Err("budgets.track_user.events_per_minute: Track User carries no events; set it on create_event or bulk_import".into());
        }
        if self
            .create_event
            .is_some_and(|b| b.users_per_minute.is_some())
        {
            return Err("budgets.create_event.users_per_minute: Create Event carries no users; set it on track_user or bulk_import".into());
        }
        Ok(budgets)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSync {
    name: String,
    prefix: String,
    object_type: Option<String>,
    sync_mode: Option<String>,
    primary_key: Option<String>,
    /// An object (YAML map), or a JSON string as `FIELD_MAPPING` holds it.
    field_mapping: Option<Value>,
    format: Option<String>,
    compression: Option<String>,
    csv: Option<FileCsv>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCsv {
    delimiter: Option<String>,
    quote: Option<String>,
    escape: Option<String>,
}

fn parse_sync(
    raw: serde_json::Map<String, Value>,
    defaults: &SyncDefaults,
) -> Result<SyncSpec, String> {
    // serde_json's type errors do not say which field: check the text fields first.
    for field in [
        "name",
        "prefix",
        "object_type",
        "sync_mode",
        "primary_key",
        "format",
        "compression",
    ] {
        if let Some(v) = raw.get(field).filter(|v| !v.is_string()) {
            return Err(format!(
                "{field}: expected a string, not {}",
                crate::model::shorten(&v.to_string(), 80)
            ));
        }
    }
    let s: FileSync =
        serde_json::from_value(Value::Object(raw)).map_err(|e| one_line(&e.to_string()))?;
    // The name becomes a path segment (reports, sync state) and a metric dimension.
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
    if s.name.is_empty()
        || s.name.len() > 64
        || !s.name.bytes().all(plain)
        || s.name.bytes().all(|b| b == b'.')
    {
        return Err(format!(
            "name: {:?} is not valid; expected letters, digits, '-', '_' or '.', at most 64",
            crate::model::shorten(&s.name, 80)
        ));
    }
    let prefix = s.prefix.trim().trim_start_matches('/').to_string();
    if !prefix.starts_with(&defaults.source_prefix) && !defaults.source_prefix.starts_with(&prefix)
    {
        return Err(format!(
            "prefix: {prefix:?} lies outside SOURCE_PREFIX {:?}, so no object would ever reach it",
            defaults.source_prefix
        ));
    }
    let invalid = |field: &str, value: &str, accepted: &str| {
        format!(
            "{field}: {:?} is not valid; expected {accepted}",
            crate::model::shorten(value, 80)
        )
    };
    let object_type = match &s.object_type {
        Some(v) => {
            ObjectType::parse(v).ok_or_else(|| invalid("object_type", v, ObjectType::ACCEPTED))?
        }
        None => defaults.object_type.ok_or_else(|| {
            format!(
                "object_type: not set here nor in OBJECT_TYPE; expected {}",
                ObjectType::ACCEPTED
            )
        })?,
    };
    let sync_mode = match &s.sync_mode {
        Some(v) => SyncMode::parse(v).ok_or_else(|| invalid("sync_mode", v, SyncMode::ACCEPTED))?,
        None => defaults.sync_mode.unwrap_or(SyncMode::Upsert),
    };
    if let Err(why) = mirror_fits(object_type, sync_mode) {
        return Err(format!("sync_mode: {why}"));
    }
    let primary_key = s
        .primary_key
        .map(|k| k.trim().to_string())
        .or_else(|| defaults.primary_key.clone());
    let field_mapping = match s.field_mapping {
        None => mapping_from_variable(defaults, primary_key.clone(), object_type).map_err(|e| {
            format!(
                "field_mapping: not set here, and {}={:?} is not valid for {}: {}",
                e.variable,
                crate::model::shorten(&e.value.unwrap_or_default(), 80),
                object_type.as_str(),
                e.accepted
            )
        })?,
        Some(value) => {
            let text = match value {
                Value::String(s) => s,
                Value::Object(_) => value.to_string(),
                other => {
                    return Err(format!(
                        "field_mapping: expected a map of MoEngage field → source column, not {}",
                        crate::model::shorten(&other.to_string(), 80)
                    ))
                }
            };
            FieldMapping::parse(Some(&text), primary_key.clone(), object_type).map_err(|e| {
                let e = mapping_error(e, String::new());
                format!("field_mapping: {}", e.accepted)
            })?
        }
    };
    let mut source_format = defaults.source_format;
    let mut source_compression = defaults.source_compression;
    let mut csv = defaults.csv;
    {
        if let Some(v) = s.format {
            source_format =
                Some(Format::parse(&v).ok_or_else(|| invalid("format", &v, Format::ACCEPTED))?);
        }
        if let Some(v) = s.compression {
            source_compression = Some(
                Compression::parse(&v)
                    .ok_or_else(|| invalid("compression", &v, Compression::ACCEPTED))?,
            );
        }
        if let Some(c) = s.csv {
            let ch = |field: &str, v: &str| {
                CsvOptions::parse_char(v)
                    .ok_or_else(|| invalid(field, v, CsvOptions::ACCEPTED_CHAR))
            };
            if let Some(v) = c.delimiter {
                csv.delimiter = Some(ch("csv.delimiter", &v)?);
            }
            if let Some(v) = c.quote {
                csv.quote = ch("csv.quote", &v)?;
            }
            if let Some(v) = c.escape {
                csv.escape = if v.trim().eq_ignore_ascii_case("none") {
                    None
                } else {
                    Some(ch("csv.escape", &v)?)
                };
            }
        }
    }
    if csv.delimiter == Some(csv.quote) {
        return Err(format!(
            "csv.delimiter: {:?} is also the quote character; expected another character",
            csv.quote as char
        ));
    }
    Ok(SyncSpec {
        scoped: s.name != DEFAULT_SYNC,
        name: s.name,
        prefix,
        object_type,
        sync_mode,
        field_mapping,
        source_format,
        source_compression,
        csv,
    })
}

/// Reads the `SYNC_CONFIG` file again if it changed since `known_tag` (the ETag, or the content
/// tag of a local file): `Ok(None)` when it did not. From S3 a conditional GET, so an unchanged
/// file costs one request and no download.
pub async fn reload(
    location: &SyncConfigLocation,
    defaults: &SyncDefaults,
    known_tag: Option<&str>,
    store: &dyn crate::state::StateStore,
) -> Result<Option<Syncs>, String> {
    use crate::state::Fetched;
    let (text, tag) = match location {
        SyncConfigLocation::Path(path) => {
            let text = std::fs::read(path).map_err(|e| format!("cannot read the file ({e})"))?;
            let tag = content_tag(&text);
            if known_tag == Some(tag.as_str()) {
                return Ok(None);
            }
            (text, tag)
        }
        SyncConfigLocation::S3 { bucket, key } => {
            match store
                .get_if_changed(bucket, key, known_tag, MAX_FILE_BYTES)
                .await
                .map_err(|e| format!("cannot read the file: {}; check it exists and the function may read it (s3:GetObject)", e.reason))?
            {
                Fetched::Unchanged => return Ok(None),
                Fetched::Missing => {
                    return Err("no such object; check the bucket and key, and that the function may read it (s3:GetObject)".into())
                }
                Fetched::Changed(v) => (v.body, v.etag),
            }
        }
    };
    Syncs::from_file(&text, defaults, location.clone(), tag).map(Some)
}

/// A short stable tag of a local file's content, standing in for an S3 ETag.
pub fn content_tag(bytes: &[u8]) -> String {
    format!("xxh3:{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

#[cfg(test)]
mod tests;

/// Mirror mode deletes users; events have nothing to delete.
fn mirror_fits(object_type: ObjectType, mode: SyncMode) -> Result<(), &'static str> {
    if mode == SyncMode::Mirror && object_type == ObjectType::Events {
        return Err("mirror deletes users who leave the snapshot, so it applies to user_attributes and bulk_import (its customer elements), not events; use upsert, insert or update for events");
    }
    Ok(())
}
