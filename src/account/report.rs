//! Reports: the per-object summary returned by the handler and the fuller run report written to
//! `STATE_BUCKET/STATE_PREFIX`, with the accounting identity that proves no row went missing.

use serde::{Deserialize, Serialize};

/// How many rejections and warnings a run report keeps in full; counters stay exact beyond it.
pub const MAX_LISTED_ISSUES: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every row read is delivered, unchanged, rejected or dead-lettered.
    #[default]
    Complete,
    /// Stopped at a batch boundary; a continuation resumes it.
    Continued,
    /// Stopped by an error; see `error`. Rows read but not settled are `rows_pending`.
    Failed,
}

/// One object's line in the handler's response (DESIGN's summary).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSummary {
    pub bucket: String,
    pub key: String,
    /// The sync the object was routed to (`default` without `SYNC_CONFIG`).
    #[serde(default)]
    pub sync: String,
    pub status: Status,
    pub rows_read: u64,
    pub rows_delivered: u64,
    pub rows_unchanged: u64,
    pub rows_rejected: u64,
    pub rows_dead_lettered: u64,
    pub rows_pending: u64,
    pub requests_sent: u64,
    /// Rows sent with a warning (MoEngage will alter something); not part of the identity.
    #[serde(default)]
    pub rows_warned: u64,
    /// What went wrong and what to check, for `failed` objects.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Where the full run report was written.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub report: Option<String>,
}

impl ObjectSummary {
    /// `rows_read = delivered + unchanged + rejected + dead_lettered + pending`.
    pub fn balanced(&self) -> bool {
        self.rows_read
            == self.rows_delivered
                + self.rows_unchanged
                + self.rows_rejected
                + self.rows_dead_lettered
                + self.rows_pending
    }
}

/// A row that was rejected or warned about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowReport {
    /// 1-based data row number (the header is not counted).
    pub row: u64,
    /// Line of the file where the row starts (CSV), when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<u64>,
    pub column: String,
    pub reason: String,
}

/// The run report written per object version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    #[serde(flatten)]
    pub summary: ObjectSummary,
    pub etag: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version_id: Option<String>,
    pub object_type: String,
    /// The object was not run: its runs kept dying (see `MarkerStatus::Poisoned`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub poisoned: bool,
    /// Times a body was held back because one of its users reached MoEngage's fair-use limit
    /// (5,000 requests a minute per `customer_id`; a breach blocks the user for hours).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fair_use_holds: u64,
    /// Requests per minute in force for this sync's API at the end of the run: the configured
    /// budget, lowered by MoEngage's `x-ratelimit-limit` or by 429s (AIMD).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub effective_rate_per_minute: Option<f64>,
    /// The ETag of the `SYNC_CONFIG` version this run used (a content hash for a local file).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sync_config_etag: Option<String>,
    /// This run began after this row (0 for a first run; a continuation's checkpoint otherwise).
    pub started_after_row: u64,
    /// Rows 1..=resume_after_row are settled after this run: where a continuation or re-run starts.
    pub resume_after_row: u64,
    pub started_at: String,
    pub finished_at: String,
    /// True when the identity holds; written out so a reader need not add it up.
    pub accounting_balanced: bool,
    /// Keys (customer_id / event id) that occurred more than once in this object.
    #[serde(default)]
    pub duplicate_keys: u64,
    /// Set when the sync state could not be saved (its deliveries are resent next run).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sync_state_error: Option<String>,
    /// Retries (requests beyond the first per body) and 429 answers.
    pub retries: u64,
    pub rate_limited: u64,
    /// Total time waiting for MoEngage's answers, milliseconds.
    pub moengage_latency_ms: u64,
    /// The first [`MAX_LISTED_ISSUES`] rejections in row order.
    pub rejected_rows: Vec<RowReport>,
    /// The first [`MAX_LISTED_ISSUES`] warnings, including mapping-level ones (row 0).
    pub warnings: Vec<RowReport>,
    pub dead_letter_message_ids: Vec<String>,
}

impl RunReport {
    pub fn reject(&mut self, r: RowReport) {
        self.summary.rows_rejected += 1;
        if self.rejected_rows.len() < MAX_LISTED_ISSUES {
            self.rejected_rows.push(r);
        }
    }

    pub fn warn(&mut self, r: RowReport) {
        if self.warnings.len() < MAX_LISTED_ISSUES {
            self.warnings.push(r);
        }
    }
}

/// Where a run's report lives: `{prefix}reports/{bucket}/{key}/{etag}.json` for a version's first
/// run, `{etag}.from-row-{N}.json` for a run that resumed at row N.
pub fn report_key(
    prefix: &str,
    bucket: &str,
    key: &str,
    etag: &str,
    started_after_row: u64,
) -> String {
    let etag = if etag.is_empty() { "no-etag" } else { etag };
    if started_after_row == 0 {
        format!("{prefix}reports/{bucket}/{key}/{etag}.json")
    } else {
        format!(
            "{prefix}reports/{bucket}/{key}/{etag}.from-row-{}.json",
            started_after_row + 1
        )
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
