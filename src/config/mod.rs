//! Configuration: every environment variable from DESIGN's contract, parsed once at start-up into a
//! typed [`Config`]. A bad value fails with one line naming the variable, the value and what is
//! accepted — the function never starts half-configured.

pub mod syncs;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::decode::{Compression, CsvOptions, Format, InputLimits};
use crate::deliver::RetryPolicy;
use crate::model::{
    ApiKey, ObjectType, SyncMode, DEFAULT_BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_RECORDS,
};
use syncs::{ApiBudgets, SyncConfigLocation, SyncDefaults, Syncs};

/// Where the Data API key comes from. Never printed: `Debug` redacts it.
#[derive(Clone)]
pub enum ApiKeySource {
    /// `MOENGAGE_API_KEY`: the key itself (local use).
    Literal(ApiKey),
    /// `MOENGAGE_API_KEY_SECRET_ARN`: a Secrets Manager secret holding the key (deployed use).
    SecretArn(String),
}

impl fmt::Debug for ApiKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiKeySource::Literal(_) => f.write_str("Literal(<redacted>)"),
            ApiKeySource::SecretArn(arn) => write!(f, "SecretArn({arn})"),
        }
    }
}

/// A MoEngage data center. Each has its own API host; a key is only valid on its own DC, which is
/// why a wrong DC shows up as 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataCenter(u8);

impl DataCenter {
    /// The data centers MoEngage documents: DC-01 … DC-06 and DC-101.
    pub const ALL: [u8; 7] = [1, 2, 3, 4, 5, 6, 101];
    pub const ACCEPTED: &'static str =
        "DC-01, DC-02, DC-03, DC-04, DC-05, DC-06 or DC-101 (case-insensitive; `01` also accepted)";

    /// Parses `DC-01`, `dc-1`, `01`, `1`, `DC101`.
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim();
        let upper = v.to_ascii_uppercase();
        let digits = upper.strip_prefix("DC").unwrap_or(&upper);
        let digits = digits.strip_prefix('-').unwrap_or(digits);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 3 {
            return None;
        }
        let n: u8 = digits.parse().ok()?;
        Self::ALL.contains(&n).then_some(DataCenter(n))
    }

    /// `DC-01` … `DC-06`, `DC-101`.
    pub fn name(self) -> String {
        format!("DC-{:02}", self.0)
    }

    /// `api-01.moengage.com` … `api-101.moengage.com`.
    pub fn api_host(self) -> String {
        format!("api-{:02}.moengage.com", self.0)
    }

    /// `dashboard-01.moengage.com`: what the user sees in the browser, the way to find their DC.
    pub fn dashboard_host(self) -> String {
        format!("dashboard-{:02}.moengage.com", self.0)
    }

    pub fn base_url(self) -> String {
        format!("https://{}", self.api_host())
    }
}

/// Seed default: ~100 requests per minute on each Data API.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 100;
pub const DEFAULT_STATE_PREFIX: &str = "moengage-sync/";
/// The most requests in flight by default: enough for Track User's documented 10,000/min at a
/// 500 ms round trip (Little's law, with room for the latency's spread). The window sizes itself
/// below it from the budget and the observed latency.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The validated configuration. Built once in `main`; everything downstream borrows it.
#[derive(Clone, Debug)]
pub struct Config {
    /// `MOENGAGE_DATA_CENTER`: picks the API host and names the DC in error diagnoses.
    pub data_center: DataCenter,
    /// `MOENGAGE_WORKSPACE_ID`: the Basic-auth username.
    pub workspace_id: String,
    /// `MOENGAGE_APP_ID`: the id in request paths; defaults to the Workspace ID (MoEngage answers
    /// 409 when they differ).
    pub app_id: String,
    /// `MOENGAGE_API_KEY` or `MOENGAGE_API_KEY_SECRET_ARN`.
    pub api_key: ApiKeySource,
    /// `MOENGAGE_API_URL` override (e.g. the local emulator), else `https://api-NN.moengage.com`:
    /// scheme, host and port only (checked here); [`crate::model::Endpoint::url`] adds the path.
    pub api_base_url: reqwest::Url,
    /// The syncs: one per dataset, each with its object type, mode, mapping and format. From
    /// `SYNC_CONFIG` (a local file is read here; an S3 one at start-up, see
    /// [`syncs::reload`]), else the one sync, `default`, the variables describe.
    pub syncs: Arc<Syncs>,
    /// `SYNC_CONFIG`, when set.
    pub sync_config: Option<SyncConfigLocation>,
    /// `OBJECT_TYPE`, `SYNC_MODE`, `FIELD_MAPPING`, `PRIMARY_KEY`, `SOURCE_FORMAT`,
    /// `SOURCE_COMPRESSION`, `CSV_*` and the budgets: what a file's sync falls back to.
    pub sync_defaults: SyncDefaults,
    /// `STATE_CACHE_MB`: local (`/tmp`) copy of sync-state shards kept between runs in a warm
    /// instance, revalidated by ETag; 0 turns it off. Default 512 (a 10M-user state).
    pub state_cache_mb: u64,
    /// `STATE_MEMORY_MB`: memory the sync state may use while classifying one object (the
    /// spooled prints of its rows, and the shards read at once); the rest is spilled to `/tmp`.
    /// Default 64, within the 256 MB function with everything else running.
    pub state_memory_mb: u64,
    /// `MIRROR_MAX_DELETE_PERCENT`: a mirror pass deletes nothing when more than this share of the
    /// users in the sync state left the snapshot (default 5; 0–100).
    pub mirror_max_delete_percent: u32,
    /// `MIRROR_DONE_MARKER`: a file name that, besides `_SUCCESS` and names holding `manifest`,
    /// marks a snapshot folder complete.
    pub mirror_done_marker: Option<String>,
    /// `MAX_ROW_MB`, `MAX_HEADER_MB`, `MAX_COLUMNS`, `PARQUET_MAX_CHUNK_MB`: what one object may
    /// make the decoders hold at once.
    pub input_limits: InputLimits,
    /// `CHECKPOINT_SECS`: longest time between mid-run checkpoints (run marker + sync state),
    /// default 30.
    pub checkpoint_secs: u64,
    /// `SYNC_CONFIG_RELOAD_SECS`: how often a warm instance asks whether the file changed (a
    /// conditional GET), default 60.
    pub sync_config_reload_secs: u64,
    /// `DEAD_LETTER_QUEUE_URL`: where undeliverable request bodies go.
    pub dead_letter_queue_url: String,
    /// `WORK_QUEUE_URL`: continuation work items go here; none → objects stop as `continued`.
    pub work_queue_url: Option<String>,
    /// `STATE_BUCKET`: run reports, checkpoints and sync state; `None` → the source bucket.
    pub state_bucket: Option<String>,
    /// `STATE_PREFIX`, default `moengage-sync/`, always ending in `/`.
    pub state_prefix: String,
    /// `RATE_LIMIT_PER_MINUTE`: requests per minute to MoEngage, default 100.
    pub rate_limit_per_minute: u32,
    /// `USERS_PER_MINUTE` / `EVENTS_PER_MINUTE`: optional record budgets per workspace (MoEngage
    /// documents 10,000 users/min for Track User, 30,000 events/min for Track Event, 60,000 each
    /// across Bulk Import calls); unset = only the request budget applies.
    pub users_per_minute: Option<u32>,
    pub events_per_minute: Option<u32>,
    /// `MAX_IN_FLIGHT`: the most requests in flight at once, default [`DEFAULT_MAX_IN_FLIGHT`].
    /// Below it, the number sizes itself from the request budget and MoEngage's observed round
    /// trip (Little's law).
    pub max_in_flight: usize,
    /// `BATCH_MAX_RECORDS`: elements per Transition call, default 50.
    pub batch_max_records: usize,
    /// `BATCH_MAX_BYTES`: bytes per Transition body, default 100,000.
    pub batch_max_bytes: usize,
    /// `RETRY_MAX_ATTEMPTS`, `RETRY_BASE_DELAY_MS`, `RETRY_MAX_DELAY_SECS`, `RETRY_MAX_ELAPSED_SECS`.
    pub retry: RetryPolicy,
    /// `FULL_RESYNC`: ignore the sync state (send every row) and rebuild it from what is accepted.
    pub full_resync: bool,
    /// `SOURCE_BUCKET`: the bucket the scheduled sweep lists; `None` → `STATE_BUCKET`.
    pub source_bucket: Option<String>,
    /// `SOURCE_PREFIX`: where exports land; the sweep lists only under it. Default empty (all).
    pub source_prefix: String,
    /// `SWEEP_MAX_OBJECTS`: object versions one sweep invocation processes at most, default 10.
    pub sweep_max_objects: usize,
    /// `DEADLINE_MARGIN_SECS`: stop this long before Lambda's deadline (a body in flight must fit),
    /// default 60.
    pub deadline_margin_secs: u64,
    /// `MAX_RUN_SECS`: run length when the deadline is unknown or nonsense (e.g. under
    /// `cargo lambda watch`, which sends a relative deadline), default 840.
    pub max_run_secs: u64,
}

/// A configuration problem, always naming the variable and what it accepts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{variable} is not set; expected {accepted}")]
    Missing {
        variable: &'static str,
        accepted: String,
    },
    #[error("{variable}={value:?} is not valid; expected {accepted}")]
    Invalid {
        variable: &'static str,
        value: String,
        accepted: String,
    },
    #[error("{variable} and {other} are both set; set only one of them")]
    Conflict {
        variable: &'static str,
        other: &'static str,
    },
    /// The `SYNC_CONFIG` file: where, then which sync and field, and what is accepted.
    #[error("SYNC_CONFIG {location}: {message}")]
    SyncConfig { location: String, message: String },
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`; tests pass a map. Empty values count as unset, since SAM
    /// passes empty strings for optional Parameters.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let data_center = {
            let raw = get("MOENGAGE_DATA_CENTER").ok_or(ConfigError::Missing {
                variable: "MOENGAGE_DATA_CENTER",
                accepted: DataCenter::ACCEPTED.into(),
            })?;
            DataCenter::parse(&raw).ok_or(ConfigError::Invalid {
                variable: "MOENGAGE_DATA_CENTER",
                value: raw,
                accepted: DataCenter::ACCEPTED.into(),
            })?
        };
        let workspace_id = get("MOENGAGE_WORKSPACE_ID")
            .map(|v| v.trim().to_string())
            .ok_or(ConfigError::Missing {
                variable: "MOENGAGE_WORKSPACE_ID",
                accepted: "your Workspace ID from Settings > Account > APIs".into(),
            })?;
        let (app_id_variable, app_id) = match get("MOENGAGE_APP_ID") {
            Some(v) => ("MOENGAGE_APP_ID", v.trim().to_string()),
            None => ("MOENGAGE_WORKSPACE_ID", workspace_id.clone()),
        };
        // It becomes a path segment of every request: letters, digits, `-`, `_` and `.` only.
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
        if app_id.is_empty()
            || app_id.len() > 128
            || !app_id.bytes().all(plain)
            || app_id.bytes().all(|b| b == b'.')
        {
            return Err(ConfigError::Invalid {
                variable: app_id_variable,
                value: app_id,
                accepted: "the id from Settings > Account > APIs: letters, digits, '-', '_' or '.', at most 128"
                    .into(),
            });
        }

        let api_key = match (get("MOENGAGE_API_KEY"), get("MOENGAGE_API_KEY_SECRET_ARN")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Conflict {
                    variable: "MOENGAGE_API_KEY",
                    other: "MOENGAGE_API_KEY_SECRET_ARN",
                })
            }
            (Some(key), None) => ApiKeySource::Literal(ApiKey::new(key.trim())),
            (None, Some(arn)) => {
                if !arn.starts_with("arn:") {
                    // The value is an ARN, not the key, so it is safe to echo back.
                    return Err(ConfigError::Invalid {
                        variable: "MOENGAGE_API_KEY_SECRET_ARN",
                        value: arn,
                        accepted: "a Secrets Manager secret ARN (arn:aws:secretsmanager:…)".into(),
                    });
                }
                ApiKeySource::SecretArn(arn)
            }
            (None, None) => return Err(ConfigError::Missing {
                variable: "MOENGAGE_API_KEY",
                accepted:
                    "the Data API key, or MOENGAGE_API_KEY_SECRET_ARN naming a secret that holds it"
                        .into(),
            }),
        };

        let api_base_url = match get("MOENGAGE_API_URL") {
            Some(url) => parse_api_url(&url, get("MOENGAGE_API_URL_ALLOW_HTTP"))?,
            None => {
                reqwest::Url::parse(&data_center.base_url()).map_err(|e| ConfigError::Invalid {
                    variable: "MOENGAGE_DATA_CENTER",
                    value: data_center.name(),
                    accepted: format!("{} (its API host is not a URL: {e})", DataCenter::ACCEPTED),
                })?
            }
        };

        let object_type = match get("OBJECT_TYPE") {
            None => None,
            Some(raw) => Some(ObjectType::parse(&raw).ok_or(ConfigError::Invalid {
                variable: "OBJECT_TYPE",
                value: raw,
                accepted: ObjectType::ACCEPTED.into(),
            })?),
        };
        let sync_mode = match get("SYNC_MODE") {
            None => None,
            Some(raw) => Some(SyncMode::parse(&raw).ok_or(ConfigError::Invalid {
                variable: "SYNC_MODE",
                value: raw,
                accepted: SyncMode::ACCEPTED.into(),
            })?),
        };
        let primary_key = get("PRIMARY_KEY").map(|v| v.trim().to_string());

        let dead_letter_queue_url = get("DEAD_LETTER_QUEUE_URL").ok_or(ConfigError::Missing {
            variable: "DEAD_LETTER_QUEUE_URL",
            accepted: "the URL of the SQS queue for undeliverable requests".into(),
        })?;
        let work_queue_url = get("WORK_QUEUE_URL");
        let state_bucket = get("STATE_BUCKET").map(|v| v.trim().to_string());
        let state_prefix = {
            let raw = get("STATE_PREFIX").unwrap_or_else(|| DEFAULT_STATE_PREFIX.into());
            let p = raw.trim().trim_start_matches('/').to_string();
            // An empty prefix would put run reports among the exports, and the function would
            // then process its own reports.
            if p.is_empty() {
                return Err(ConfigError::Invalid {
                    variable: "STATE_PREFIX",
                    value: raw,
                    accepted:
                        "a key prefix such as moengage-sync/ (not empty, not just /): reports, \
                               markers and the sync state must stay apart from the exports"
                            .into(),
                });
            }
            if p.ends_with('/') {
                p
            } else {
                format!("{p}/")
            }
        };

        let rate_limit_per_minute = parse_number(
            "RATE_LIMIT_PER_MINUTE",
            get("RATE_LIMIT_PER_MINUTE"),
            DEFAULT_RATE_LIMIT_PER_MINUTE,
            1,
            1_000_000,
        )?;
        let users_per_minute = match get("USERS_PER_MINUTE") {
            None => None,
            raw => Some(parse_number("USERS_PER_MINUTE", raw, 0, 1, 10_000_000)?),
        };
        let events_per_minute = match get("EVENTS_PER_MINUTE") {
            None => None,
            raw => Some(parse_number("EVENTS_PER_MINUTE", raw, 0, 1, 10_000_000)?),
        };
        // MoEngage documents 5,000 a minute for Delete Users; 100 like the seed's other APIs.
        let deletes_per_minute = parse_number(
            "DELETES_PER_MINUTE",
            get("DELETES_PER_MINUTE"),
            DEFAULT_RATE_LIMIT_PER_MINUTE,
            1,
            1_000_000,
        )?;
        let max_in_flight = parse_number(
            "MAX_IN_FLIGHT",
            get("MAX_IN_FLIGHT"),
            DEFAULT_MAX_IN_FLIGHT,
            1,
            1_000,
        )?;
        let batch_max_records = parse_number(
            "BATCH_MAX_RECORDS",
            get("BATCH_MAX_RECORDS"),
            DEFAULT_BATCH_MAX_RECORDS,
            1,
            10_000,
        )?;
        let batch_max_bytes = parse_number(
            "BATCH_MAX_BYTES",
            get("BATCH_MAX_BYTES"),
            DEFAULT_BATCH_MAX_BYTES,
            1_000,
            10_000_000,
        )?;

        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            max_attempts: parse_number(
                "RETRY_MAX_ATTEMPTS",
                get("RETRY_MAX_ATTEMPTS"),
                defaults.max_attempts,
                1,
                100,
            )?,
            base_delay: Duration::from_millis(parse_number(
                "RETRY_BASE_DELAY_MS",
                get("RETRY_BASE_DELAY_MS"),
                defaults.base_delay.as_millis() as u64,
                1,
                600_000,
            )?),
            max_delay: Duration::from_secs(parse_number(
                "RETRY_MAX_DELAY_SECS",
                get("RETRY_MAX_DELAY_SECS"),
                defaults.max_delay.as_secs(),
                1,
                3_600,
            )?),
            max_elapsed: Duration::from_secs(parse_number(
                "RETRY_MAX_ELAPSED_SECS",
                get("RETRY_MAX_ELAPSED_SECS"),
                defaults.max_elapsed.as_secs(),
                1,
                3_600,
            )?),
        };

        let source_format = match get("SOURCE_FORMAT") {
            None => None,
            Some(raw) => Some(Format::parse(&raw).ok_or(ConfigError::Invalid {
                variable: "SOURCE_FORMAT",
                value: raw,
                accepted: Format::ACCEPTED.into(),
            })?),
        };
        let source_compression = match get("SOURCE_COMPRESSION") {
            None => None,
            Some(raw) => Some(Compression::parse(&raw).ok_or(ConfigError::Invalid {
                variable: "SOURCE_COMPRESSION",
                value: raw,
                accepted: Compression::ACCEPTED.into(),
            })?),
        };

        // Not trimmed: a tab (or a space) is a legitimate delimiter.
        let csv_char = |variable: &'static str| -> Result<Option<u8>, ConfigError> {
            match lookup(variable).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(raw) => match CsvOptions::parse_char(&raw) {
                    Some(c) => Ok(Some(c)),
                    None => Err(ConfigError::Invalid {
                        variable,
                        value: raw,
                        accepted: CsvOptions::ACCEPTED_CHAR.into(),
                    }),
                },
            }
        };
        let csv = CsvOptions {
            delimiter: csv_char("CSV_DELIMITER")?,
            quote: csv_char("CSV_QUOTE")?.unwrap_or(b'"'),
            escape: match lookup("CSV_ESCAPE") {
                Some(v) if v.trim().eq_ignore_ascii_case("none") => None,
                _ => csv_char("CSV_ESCAPE")?,
            },
        };
        if csv.delimiter == Some(csv.quote) {
            return Err(ConfigError::Invalid {
                variable: "CSV_DELIMITER",
                value: (csv.quote as char).to_string(),
                accepted: format!(
                    "a character other than the quote character ({:?}, CSV_QUOTE)",
                    csv.quote as char
                ),
            });
        }

        let full_resync = match get("FULL_RESYNC") {
            None => false,
            Some(raw) => crate::map::convert::parse_bool(&raw).ok_or(ConfigError::Invalid {
                variable: "FULL_RESYNC",
                value: raw,
                accepted: "true or false".into(),
            })?,
        };
        let source_bucket = get("SOURCE_BUCKET").map(|v| v.trim().to_string());
        let source_prefix = get("SOURCE_PREFIX")
            .map(|v| v.trim().trim_start_matches('/').to_string())
            .unwrap_or_default();
        let sweep_max_objects =
            parse_number("SWEEP_MAX_OBJECTS", get("SWEEP_MAX_OBJECTS"), 10, 1, 10_000)?;
        let deadline_margin_secs = parse_number(
            "DEADLINE_MARGIN_SECS",
            get("DEADLINE_MARGIN_SECS"),
            60,
            0,
            600,
        )?;
        let max_run_secs = parse_number("MAX_RUN_SECS", get("MAX_RUN_SECS"), 840, 1, 86_400)?;
        let checkpoint_secs =
            parse_number("CHECKPOINT_SECS", get("CHECKPOINT_SECS"), 30, 1, 3_600)?;
        let mb = |name: &'static str, default: usize, max: usize| {
            parse_number(name, get(name), default, 1, max).map(|n: usize| n << 20)
        };
        let state_cache_mb = parse_number("STATE_CACHE_MB", get("STATE_CACHE_MB"), 512, 0, 10_240)?;
        let state_memory_mb =
            parse_number("STATE_MEMORY_MB", get("STATE_MEMORY_MB"), 64, 16, 10_240)?;
        let mirror_max_delete_percent = parse_number(
            "MIRROR_MAX_DELETE_PERCENT",
            get("MIRROR_MAX_DELETE_PERCENT"),
            5,
            0,
            100,
        )?;
        let mirror_done_marker = match get("MIRROR_DONE_MARKER") {
            None => None,
            Some(raw) => {
                let name = raw.trim();
                if name.is_empty() || name.contains('/') || name.len() > 255 {
                    return Err(ConfigError::Invalid {
                        variable: "MIRROR_DONE_MARKER",
                        value: raw.clone(),
                        accepted: "a file name (no '/'), e.g. _DONE".into(),
                    });
                }
                Some(name.to_string())
            }
        };
        let input_limits = InputLimits {
            max_row_bytes: mb("MAX_ROW_MB", InputLimits::DEFAULT_MAX_ROW_MB, 256)?,
            max_header_bytes: mb("MAX_HEADER_MB", InputLimits::DEFAULT_MAX_HEADER_MB, 256)?,
            max_columns: parse_number(
                "MAX_COLUMNS",
                get("MAX_COLUMNS"),
                InputLimits::DEFAULT_MAX_COLUMNS,
                1,
                1_000_000,
            )?,
            parquet_max_chunk_bytes: mb(
                "PARQUET_MAX_CHUNK_MB",
                InputLimits::DEFAULT_PARQUET_MAX_CHUNK_MB as usize,
                4096,
            )? as u64,
        };
        let sync_config_reload_secs = parse_number(
            "SYNC_CONFIG_RELOAD_SECS",
            get("SYNC_CONFIG_RELOAD_SECS"),
            60,
            0,
            86_400,
        )?;

        let sync_defaults = SyncDefaults {
            object_type,
            sync_mode,
            field_mapping: get("FIELD_MAPPING"),
            primary_key,
            source_format,
            source_compression,
            csv,
            source_prefix: source_prefix.clone(),
            budgets: Some(
                ApiBudgets::from_variables(
                    rate_limit_per_minute,
                    users_per_minute,
                    events_per_minute,
                )
                .with_deletes(deletes_per_minute),
            ),
        };
        let sync_config =
            match get("SYNC_CONFIG") {
                None => None,
                Some(raw) => Some(SyncConfigLocation::parse(&raw).map_err(|accepted| {
                    ConfigError::Invalid {
                        variable: "SYNC_CONFIG",
                        value: raw.clone(),
                        accepted,
                    }
                })?),
            };
        let syncs = match &sync_config {
            None => Syncs::from_variables(&sync_defaults).map_err(|e| match e.value {
                None => ConfigError::Missing {
                    variable: e.variable,
                    accepted: e.accepted,
                },
                Some(value) => ConfigError::Invalid {
                    variable: e.variable,
                    value,
                    accepted: e.accepted,
                },
            })?,
            Some(location @ SyncConfigLocation::Path(path)) => {
                let text = std::fs::read(path).map_err(|e| ConfigError::SyncConfig {
                    location: location.to_string(),
                    message: format!("cannot read the file ({e})"),
                })?;
                let tag = syncs::content_tag(&text);
                Syncs::from_file(&text, &sync_defaults, location.clone(), tag).map_err(
                    |message| ConfigError::SyncConfig {
                        location: location.to_string(),
                        message,
                    },
                )?
            }
            // Read at start-up, where the S3 client is ([`Config::load_remote_syncs`]); until then
            // no object routes anywhere.
            Some(location @ SyncConfigLocation::S3 { .. }) => Syncs {
                syncs: Vec::new(),
                budgets: sync_defaults.budgets.unwrap_or(ApiBudgets::from_variables(
                    DEFAULT_RATE_LIMIT_PER_MINUTE,
                    None,
                    None,
                )),
                file: Some((location.clone(), String::new())),
            },
        };

        Ok(Config {
            data_center,
            workspace_id,
            app_id,
            api_key,
            api_base_url,
            syncs: Arc::new(syncs),
            sync_config,
            sync_defaults,
            sync_config_reload_secs,
            checkpoint_secs,
            input_limits,
            state_cache_mb,
            state_memory_mb,
            mirror_max_delete_percent,
            mirror_done_marker,
            dead_letter_queue_url,
            work_queue_url,
            state_bucket,
            state_prefix,
            rate_limit_per_minute,
            users_per_minute,
            events_per_minute,
            max_in_flight,
            batch_max_records,
            batch_max_bytes,
            retry,
            full_resync,
            source_bucket,
            source_prefix,
            sweep_max_objects,
            deadline_margin_secs,
            max_run_secs,
        })
    }

    /// Whether this function may process `s3://bucket/key`, named by an S3 notification or a work
    /// item (both can be forged by anyone allowed to send to the work queue). Only the source
    /// bucket (`SOURCE_BUCKET`, else `STATE_BUCKET`, when either is set) under `SOURCE_PREFIX`, and
    /// never this tool's own state under `STATE_PREFIX`. `Err` says why, for a note.
    pub fn accepts_object(&self, bucket: &str, key: &str) -> Result<(), String> {
        let source_bucket = self
            .source_bucket
            .as_deref()
            .or(self.state_bucket.as_deref());
        if let Some(allowed) = source_bucket.filter(|b| *b != bucket) {
            return Err(format!(
                "not in the source bucket {allowed} (SOURCE_BUCKET, else STATE_BUCKET); skipped"
            ));
        }
        if !key.starts_with(&self.source_prefix) {
            return Err(format!(
                "outside SOURCE_PREFIX {:?}; skipped",
                self.source_prefix
            ));
        }
        // Our own reports land in the same bucket by default; never read them back as exports.
        let state_bucket = self.state_bucket.as_deref().unwrap_or(bucket);
        if state_bucket == bucket
            && !self.state_prefix.is_empty()
            && key.starts_with(&self.state_prefix)
        {
            return Err(format!(
                "under STATE_PREFIX {}, this tool's own state; skipped",
                self.state_prefix
            ));
        }
        Ok(())
    }

    /// Host name shown in diagnoses: the DC's host, or the override's host (with its port).
    pub fn api_host(&self) -> String {
        let host = self.api_base_url.host_str().unwrap_or_default();
        match self.api_base_url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }

    /// `https://api-01.moengage.com`: the base URL for people, without a trailing slash.
    pub fn api_origin(&self) -> String {
        self.api_base_url.as_str().trim_end_matches('/').to_string()
    }

    /// Whether `MOENGAGE_API_URL` points somewhere other than the data center's host.
    pub fn api_url_overridden(&self) -> bool {
        self.api_origin() != self.data_center.base_url()
    }

    /// The URL of one MoEngage endpoint: the only way this crate builds one.
    pub fn api_url(&self, endpoint: crate::model::Endpoint) -> reqwest::Url {
        endpoint.url(&self.api_base_url, &self.app_id)
    }
}

/// `MOENGAGE_API_URL`: an http(s) base URL with no credentials, query or path (a documented
/// `/v1` suffix is dropped). Plain `http://` only to a loopback host (the local emulator) unless
/// `MOENGAGE_API_URL_ALLOW_HTTP=true`: the Data API key travels in every request's header.
fn parse_api_url(raw: &str, allow_http: Option<String>) -> Result<reqwest::Url, ConfigError> {
    let invalid = |why: &str| {
        ConfigError::Invalid {
        variable: "MOENGAGE_API_URL",
        value: raw.to_string(),
        accepted: format!(
            "{why}: a base URL with scheme, host and optional port only, e.g. http://127.0.0.1:8080 \
             for the local emulator (unset it to use the data center's host)"
        ),
    }
    };
    let trimmed = raw.trim();
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
        return Err(invalid("an http:// or https:// URL"));
    }
    let mut url = reqwest::Url::parse(trimmed).map_err(|e| invalid(&format!("not a URL ({e})")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials in the URL are not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    // Users paste the documented base `https://api-01.moengage.com/v1`; paths add /v1.
    match url.path().trim_end_matches('/') {
        "" | "/v1" => url.set_path("/"),
        _ => return Err(invalid("a path is not allowed (endpoints add /v1/…)")),
    }
    let allow_http = match allow_http.as_deref().map(str::trim) {
        None => false,
        Some(v) => crate::map::convert::parse_bool(v).ok_or(ConfigError::Invalid {
            variable: "MOENGAGE_API_URL_ALLOW_HTTP",
            value: v.to_string(),
            accepted: "true or false".into(),
        })?,
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if url.scheme() == "http" && !loopback && !allow_http {
        return Err(invalid(
            "plain http:// is accepted only to a loopback host (127.0.0.1, ::1, localhost), since the \
             Data API key is sent with every request; use https://, or set MOENGAGE_API_URL_ALLOW_HTTP=true \
             for a trusted network",
        ));
    }
    Ok(url)
}

fn parse_number<T>(
    variable: &'static str,
    raw: Option<String>,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = raw else { return Ok(default) };
    let invalid = || ConfigError::Invalid {
        variable,
        value: raw.clone(),
        accepted: format!("a whole number from {min} to {max}"),
    };
    let n: T = raw.trim().replace('_', "").parse().map_err(|_| invalid())?;
    if n < min || n > max {
        return Err(invalid());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            ("MOENGAGE_DATA_CENTER", "DC-01".to_string()),
            ("MOENGAGE_WORKSPACE_ID", "WS1".to_string()),
            ("MOENGAGE_API_KEY", "key-123".to_string()),
            ("OBJECT_TYPE", "bulk_import".to_string()),
            (
                "DEAD_LETTER_QUEUE_URL",
                "http://127.0.0.1:1/123/dlq".to_string(),
            ),
        ])
    }

    fn load(vars: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn api_url_override_is_a_bare_base_and_plain_http_only_to_loopback() {
        let with = |url: &str, allow: Option<&str>| {
            let mut vars = base();
            vars.insert("MOENGAGE_API_URL", url.to_string());
            if let Some(a) = allow {
                vars.insert("MOENGAGE_API_URL_ALLOW_HTTP", a.to_string());
            }
            load(&vars).map(|c| c.api_origin())
        };
        for (url, origin) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://127.0.0.2:9/v1", "http://127.0.0.2:9"),
            ("http://localhost:8080/", "http://localhost:8080"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            (
                "https://moengage-proxy.example.com",
                "https://moengage-proxy.example.com",
            ),
            (
                "https://api-02.moengage.com/v1/",
                "https://api-02.moengage.com",
            ),
        ] {
            assert_eq!(with(url, None).unwrap(), origin, "{url}");
        }
        for (url, why) in [
            ("http://10.0.0.5:8080", "loopback"),
            ("http://api-01.moengage.com", "loopback"),
            ("http://127.0.0.1.evil.example", "loopback"),
            ("https://user:pw@api-01.moengage.com", "credentials"),
            ("https://api-01.moengage.com@evil.example", "credentials"),
            ("http://127.0.0.1:8080/steal", "path"),
            ("https://api-01.moengage.com/v1/transition/APP", "path"),
            ("https://api-01.moengage.com?x=1", "query"),
            ("ftp://127.0.0.1", "http://"),
            ("https://", "not a URL"),
        ] {
            let err = with(url, None).unwrap_err().to_string();
            assert!(err.starts_with("MOENGAGE_API_URL="), "{url}: {err}");
            assert!(err.contains(why), "{url}: {err}");
        }
        assert_eq!(
            with("http://10.0.0.5:8080", Some("true")).unwrap(),
            "http://10.0.0.5:8080"
        );
        let err = with("http://10.0.0.5:8080", Some("maybe"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("MOENGAGE_API_URL_ALLOW_HTTP"), "{err}");
    }

    #[test]
    fn data_center_table_maps_every_dc_to_its_documented_host() {
        let table = [
            ("DC-01", "api-01.moengage.com"),
            ("DC-02", "api-02.moengage.com"),
            ("DC-03", "api-03.moengage.com"),
            ("DC-04", "api-04.moengage.com"),
            ("DC-05", "api-05.moengage.com"),
            ("DC-06", "api-06.moengage.com"),
            ("DC-101", "api-101.moengage.com"),
            ("dc-02", "api-02.moengage.com"),
            ("01", "api-01.moengage.com"),
            ("3", "api-03.moengage.com"),
            ("DC03", "api-03.moengage.com"),
        ];
        for (input, host) in table {
            let dc = DataCenter::parse(input).unwrap_or_else(|| panic!("{input} should parse"));
            assert_eq!(dc.api_host(), host, "{input}");
            let mut vars = base();
            vars.insert("MOENGAGE_DATA_CENTER", input.to_string());
            assert_eq!(load(&vars).unwrap().api_origin(), format!("https://{host}"));
        }
    }

    #[test]
    fn unknown_data_center_fails_naming_variable_value_and_accepted() {
        for bad in ["DC-07", "DC-00", "US", "DC-1011", "", "DC-", "api-01"] {
            let mut vars = base();
            vars.insert("MOENGAGE_DATA_CENTER", bad.to_string());
            let err = load(&vars).unwrap_err().to_string();
            assert!(err.starts_with("MOENGAGE_DATA_CENTER"), "{err}");
            assert!(err.contains("DC-01, DC-02"), "{err}");
            if !bad.is_empty() {
                assert!(err.contains(&format!("{bad:?}")), "{err}");
            }
        }
    }

    #[test]
    fn bad_values_fail_with_one_line_naming_the_variable() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "OBJECT_TYPE",
                "users",
                "user_attributes, events or bulk_import",
            ),
            ("SYNC_MODE", "mirror2", "upsert, insert, update or mirror"),
            ("DELETES_PER_MINUTE", "0", "whole number from 1"),
            (
                "MIRROR_MAX_DELETE_PERCENT",
                "101",
                "whole number from 0 to 100",
            ),
            ("MIRROR_DONE_MARKER", "a/b", "a file name"),
            ("RATE_LIMIT_PER_MINUTE", "fast", "whole number"),
            ("RATE_LIMIT_PER_MINUTE", "0", "whole number from 1"),
            ("BATCH_MAX_RECORDS", "-5", "whole number"),
            ("BATCH_MAX_BYTES", "10", "whole number from 1000"),
            ("MOENGAGE_API_URL", "127.0.0.1:8080", "http://"),
            ("MOENGAGE_APP_ID", "APP/../x", "letters, digits"),
            ("STATE_PREFIX", "/", "not empty"),
            ("STATE_PREFIX", " // ", "not empty"),
            ("MOENGAGE_APP_ID", "..", "letters, digits"),
            ("MOENGAGE_WORKSPACE_ID", "WS 1", "letters, digits"),
            ("FIELD_MAPPING", "{not json", "JSON object"),
            ("FIELD_MAPPING", "{\"email\":42}", "column"),
            ("MOENGAGE_API_KEY_SECRET_ARN", "mykey", "secret ARN"),
            ("SOURCE_FORMAT", "xlsx", "csv, tsv, ndjson or parquet"),
            ("SOURCE_COMPRESSION", "bz2", "none, gzip or zstd"),
            ("CSV_DELIMITER", ";;", "one ASCII character"),
            ("CSV_QUOTE", "«", "one ASCII character"),
            ("CSV_ESCAPE", "\n", "other than a line break"),
            ("CSV_DELIMITER", "\"", "other than the quote character"),
            ("STATE_MEMORY_MB", "8", "whole number from 16"),
        ];
        for (var, value, accepted) in cases {
            let mut vars = base();
            if *var == "MOENGAGE_API_KEY_SECRET_ARN" {
                vars.remove("MOENGAGE_API_KEY");
            }
            vars.insert(var, value.to_string());
            let err = load(&vars).unwrap_err().to_string();
            assert!(err.starts_with(var), "{var}: {err}");
            assert!(err.contains(accepted), "{var}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn the_csv_dialect_is_read_from_its_variables() {
        let config = load(&base()).unwrap();
        assert_eq!(config.syncs.syncs[0].csv, CsvOptions::default());
        let mut vars = base();
        vars.insert("CSV_DELIMITER", "\t".into());
        vars.insert("CSV_QUOTE", "'".into());
        vars.insert("CSV_ESCAPE", "\\".into());
        let config = load(&vars).unwrap();
        assert_eq!(
            config.syncs.syncs[0].csv,
            CsvOptions {
                delimiter: Some(b'\t'),
                quote: b'\'',
                escape: Some(b'\\'),
            }
        );
        for tab in ["\\t", "TAB"] {
            vars.insert("CSV_DELIMITER", tab.into());
            assert_eq!(
                load(&vars).unwrap().syncs.syncs[0].csv.delimiter,
                Some(b'\t'),
                "{tab:?}"
            );
        }
        vars.insert("CSV_ESCAPE", "none".into());
        assert_eq!(load(&vars).unwrap().syncs.syncs[0].csv.escape, None);
    }

    #[test]
    fn missing_required_variables_are_named() {
        for var in [
            "MOENGAGE_DATA_CENTER",
            "MOENGAGE_WORKSPACE_ID",
            "OBJECT_TYPE",
            "DEAD_LETTER_QUEUE_URL",
            "MOENGAGE_API_KEY",
        ] {
            let mut vars = base();
            vars.remove(var);
            let err = load(&vars).unwrap_err().to_string();
            assert!(
                err.starts_with(var) && err.contains("not set"),
                "{var}: {err}"
            );
        }
    }

    #[test]
    fn api_key_never_appears_in_errors_or_debug() {
        let mut vars = base();
        vars.insert("MOENGAGE_API_KEY", "super-secret-key".into());
        vars.insert(
            "MOENGAGE_API_KEY_SECRET_ARN",
            "arn:aws:secretsmanager:x".into(),
        );
        let err = load(&vars).unwrap_err().to_string();
        assert!(!err.contains("super-secret-key"), "{err}");
        vars.remove("MOENGAGE_API_KEY_SECRET_ARN");
        let cfg = load(&vars).unwrap();
        assert!(!format!("{cfg:?}").contains("super-secret-key"));
    }

    #[test]
    fn sync_config_replaces_object_type_and_its_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("moengage-sync-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yaml");
        std::fs::write(
            &good,
            "syncs:\n  - {name: users, prefix: exports/users/, object_type: user_attributes}\n",
        )
        .unwrap();
        let mut vars = base();
        vars.remove("OBJECT_TYPE");
        vars.insert("SYNC_CONFIG", good.display().to_string());
        let cfg = load(&vars).unwrap();
        assert_eq!(cfg.syncs.syncs[0].name, "users");
        assert!(cfg.syncs.file_etag().unwrap().starts_with("xxh3:"));

        let bad = dir.join("bad.yaml");
        std::fs::write(
            &bad,
            "syncs:\n  - {name: users, prefix: x/, object_type: people}\n",
        )
        .unwrap();
        vars.insert("SYNC_CONFIG", bad.display().to_string());
        let err = load(&vars).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "SYNC_CONFIG {}: sync \"users\": object_type",
                bad.display()
            )),
            "{err}"
        );
        vars.insert(
            "SYNC_CONFIG",
            dir.join("missing.yaml").display().to_string(),
        );
        let err = load(&vars).unwrap_err().to_string();
        assert!(err.contains("cannot read the file"), "{err}");
        vars.insert("SYNC_CONFIG", "ftp://x/y".into());
        let err = load(&vars).unwrap_err().to_string();
        assert!(err.starts_with("SYNC_CONFIG=\"ftp://x/y\""), "{err}");
        // Without the file, OBJECT_TYPE is required as before.
        vars.remove("SYNC_CONFIG");
        let err = load(&vars).unwrap_err().to_string();
        assert!(err.starts_with("OBJECT_TYPE is not set"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn defaults_follow_the_contract() {
        let cfg = load(&base()).unwrap();
        assert_eq!(cfg.app_id, "WS1");
        assert_eq!(cfg.syncs.syncs[0].sync_mode, SyncMode::Upsert);
        assert_eq!(cfg.syncs.syncs[0].name, "default");
        assert_eq!(cfg.syncs.syncs[0].prefix, "");
        assert_eq!(cfg.rate_limit_per_minute, 100);
        assert_eq!(cfg.batch_max_records, 50);
        assert_eq!(cfg.batch_max_bytes, 100_000);
        assert_eq!(cfg.state_prefix, "moengage-sync/");
        assert_eq!(cfg.state_bucket, None);
        assert_eq!(cfg.state_memory_mb, 64);

        let mut vars = base();
        vars.insert("MOENGAGE_API_URL", "http://127.0.0.1:8080/v1/".into());
        vars.insert("STATE_PREFIX", "state".into());
        vars.insert("MOENGAGE_APP_ID", "".into());
        let cfg = load(&vars).unwrap();
        assert_eq!(cfg.api_origin(), "http://127.0.0.1:8080");
        assert_eq!(cfg.api_host(), "127.0.0.1:8080");
        assert_eq!(cfg.state_prefix, "state/");
        assert_eq!(
            cfg.app_id, "WS1",
            "empty MOENGAGE_APP_ID (as SAM passes it) means unset"
        );
    }
}
