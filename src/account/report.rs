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
    /// A mirror mode deletion pass (the entry's `key` is the snapshot's folder).
    #[serde(flatten, default)]
    pub mirror: Option<Box<MirrorSummary>>,
}

/// What a mirror mode deletion pass did: `users_to_delete = users_deleted +
/// deletes_dead_lettered + deletes_pending`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorSummary {
    /// Users this sync delivered that no data object of the snapshot holds.
    pub users_to_delete: u64,
    /// Deleted: MoEngage answered 200, or 400 "user does not exist" (already gone).
    pub users_deleted: u64,
    /// Deletions MoEngage refused or that kept failing: in the dead-letter queue, exact body.
    pub deletes_dead_lettered: u64,
    /// Not attempted yet (a continuation goes on), or not attempted at all when refused.
    pub deletes_pending: u64,
    /// Users in the sync state with a stored customer id: the guard's denominator.
    pub users_in_state: u64,
    /// The guard stopped the pass: nothing was deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mirror_refused: bool,
    /// The first customer ids to delete (at most 20), for people.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_ids: Vec<String>,
}

impl MirrorSummary {
    pub fn balanced(&self) -> bool {
        self.users_to_delete
            == self.users_deleted + self.deletes_dead_lettered + self.deletes_pending
    }
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
    /// The first [`MAX_LISTED_ISSUES`] dead-letter message ids (`rows_dead_lettered` stays exact).
    pub dead_letter_message_ids: Vec<String>,
    /// Every rejected row counted by the kind of its reason (`column: reason` with the values
    /// left out), so the report stays small whatever the number of rejections: the first
    /// [`MAX_LISTED_ISSUES`] are listed in full above, all are counted here. At most
    /// [`MAX_REASON_KINDS`] kinds; the rest count under [`OTHER_REASONS`].
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rejections_by_reason: std::collections::BTreeMap<String, u64>,
}

/// Kinds of rejection a report counts separately.
pub const MAX_REASON_KINDS: usize = 100;
/// Where rejections beyond [`MAX_REASON_KINDS`] kinds are counted.
pub const OTHER_REASONS: &str = "(other reasons)";
/// Longest column name and reason kept in a listed rejection or warning.
pub const MAX_REASON_BYTES: usize = 600;

impl RowReport {
    /// Cut to [`MAX_REASON_BYTES`]: one hostile value cannot make a report large.
    pub fn bounded(mut self) -> Self {
        if self.column.len() > crate::model::QUOTE_MAX_BYTES {
            self.column = crate::model::shorten(&self.column, crate::model::QUOTE_MAX_BYTES);
        }
        if self.reason.len() > MAX_REASON_BYTES {
            self.reason = crate::model::shorten(&self.reason, MAX_REASON_BYTES);
        }
        self
    }

    /// The kind of this rejection, for [`RunReport::rejections_by_reason`]: the column and the
    /// reason with quoted values and numbers left out (`email: "…" is not an e-mail`).
    pub fn kind(&self) -> String {
        let mut out = String::with_capacity(64);
        out.push_str(&crate::model::shorten(&self.column, 60));
        out.push_str(": ");
        let mut chars = self.reason.chars().peekable();
        while let Some(c) = chars.next() {
            if out.len() > 160 {
                out.push('…');
                break;
            }
            match c {
                '"' => {
                    // A Debug-quoted value: skip to its closing quote, escapes included.
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => {
                                chars.next();
                            }
                            '"' => break,
                            _ => {}
                        }
                    }
                    out.push_str("\"…\"");
                }
                c if c.is_ascii_digit() => {
                    while chars
                        .peek()
                        .is_some_and(|c| c.is_ascii_digit() || *c == '.')
                    {
                        chars.next();
                    }
                    out.push('N');
                }
                c => out.push(c),
            }
        }
        out
    }
}

impl RunReport {
    pub fn reject(&mut self, r: RowReport) {
        self.summary.rows_rejected += 1;
        self.count_rejections(&r.kind(), 1);
        if self.rejected_rows.len() < MAX_LISTED_ISSUES {
            self.rejected_rows.push(r.bounded());
        }
    }

    pub fn warn(&mut self, r: RowReport) {
        if self.warnings.len() < MAX_LISTED_ISSUES {
            self.warnings.push(r.bounded());
        }
    }

    /// Adds `n` rejections of `kind` (see [`RowReport::kind`]).
    pub fn count_rejections(&mut self, kind: &str, n: u64) {
        if let Some(c) = self.rejections_by_reason.get_mut(kind) {
            *c += n;
        } else if self.rejections_by_reason.len() < MAX_REASON_KINDS {
            self.rejections_by_reason.insert(kind.to_string(), n);
        } else {
            *self
                .rejections_by_reason
                .entry(OTHER_REASONS.to_string())
                .or_default() += n;
        }
    }

    /// Notes a dead-lettered body's message id (the first [`MAX_LISTED_ISSUES`] are kept).
    pub fn dead_lettered(&mut self, message_id: String) {
        if self.dead_letter_message_ids.len() < MAX_LISTED_ISSUES {
            self.dead_letter_message_ids.push(message_id);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(row: u64, column: &str, reason: String) -> RowReport {
        RowReport {
            row,
            line: None,
            column: column.into(),
            reason,
        }
    }

    #[test]
    fn a_report_stays_small_whatever_the_rejections() {
        let mut report = RunReport::default();
        let huge = "x".repeat(100 << 10);
        for row in 1..=3_000u64 {
            let reason = match row % 3 {
                0 => format!("{} is not an integer", crate::model::quoted(&huge)),
                1 => format!("{:?} is not an integer", format!("{row}{huge}")),
                _ => format!("column {row} of {} is odd", row * 7),
            };
            report.reject(rejected(row, &huge, reason));
        }
        assert_eq!(report.summary.rows_rejected, 3_000);
        assert_eq!(report.rejected_rows.len(), MAX_LISTED_ISSUES);
        assert_eq!(report.rejections_by_reason.values().sum::<u64>(), 3_000);
        // Values and numbers are left out of the kinds: two kinds here (the column is cut).
        assert_eq!(
            report.rejections_by_reason.len(),
            2,
            "{:?}",
            report.rejections_by_reason.keys()
        );
        let bytes = serde_json::to_vec(&report).unwrap().len();
        assert!(bytes < 1 << 20, "report is {bytes} bytes");

        // Beyond MAX_REASON_KINDS kinds, the rest share one counter.
        let mut report = RunReport::default();
        for row in 0..(MAX_REASON_KINDS as u64 + 50) {
            let column = format!("c{row}");
            report.reject(rejected(row, &column, "bad".into()));
        }
        assert_eq!(report.rejections_by_reason.len(), MAX_REASON_KINDS + 1);
        assert_eq!(report.rejections_by_reason[OTHER_REASONS], 50);
    }
}
