//! The run log: one compact JSON Lines record per run, under a date-partitioned prefix beside the
//! reports, `{STATE_PREFIX}run-log/dt=YYYY-MM-DD/…json`, so a warehouse can query run history
//! (Athena through the template's optional Glue table; Snowflake or BigQuery through an external
//! table on the same prefix) and `moengage-sync runs` can list runs without reading full reports.
//!
//! Flat columns, stable names, one line per object: the Glue table in template.yaml declares
//! exactly these fields.

use serde::{Deserialize, Serialize};

use crate::account::report::RunReport;

/// One run, as the warehouse sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub finished_at: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub sync: String,
    pub object_type: String,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub status: String,
    pub rows_read: u64,
    pub rows_delivered: u64,
    pub rows_unchanged: u64,
    pub rows_rejected: u64,
    pub rows_dead_lettered: u64,
    pub rows_pending: u64,
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    pub effective_rate_per_minute: Option<f64>,
    pub started_after_row: u64,
    pub resume_after_row: u64,
    pub error: Option<String>,
    /// The full report.
    pub report: Option<String>,
    /// Rejections grouped by column and reason, from the rows the report lists (the first
    /// `MAX_LISTED_ISSUES`; `rows_rejected` has the full count).
    pub rejections: Vec<Rejections>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejections {
    pub column: String,
    /// The reason without the row's own value (the text before the first `:`, at most 120
    /// characters), so that reasons group.
    pub reason: String,
    pub rows: u64,
}

impl RunRecord {
    pub fn from_report(r: &RunReport) -> Self {
        let s = &r.summary;
        let mut rejections: Vec<Rejections> = Vec::new();
        for row in &r.rejected_rows {
            let reason =
                crate::model::shorten(row.reason.split(':').next().unwrap_or_default().trim(), 120);
            match rejections
                .iter_mut()
                .find(|g| g.column == row.column && g.reason == reason)
            {
                Some(g) => g.rows += 1,
                None => rejections.push(Rejections {
                    column: crate::model::shorten(&row.column, 120),
                    reason,
                    rows: 1,
                }),
            }
        }
        let millis = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_millis())
                .unwrap_or(0)
        };
        RunRecord {
            finished_at: r.finished_at.clone(),
            started_at: r.started_at.clone(),
            duration_ms: (millis(&r.finished_at) - millis(&r.started_at)).max(0) as u64,
            sync: s.sync.clone(),
            object_type: r.object_type.clone(),
            bucket: s.bucket.clone(),
            key: s.key.clone(),
            etag: r.etag.clone(),
            status: serde_json::to_value(s.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            rows_read: s.rows_read,
            rows_delivered: s.rows_delivered,
            rows_unchanged: s.rows_unchanged,
            rows_rejected: s.rows_rejected,
            rows_dead_lettered: s.rows_dead_lettered,
            rows_pending: s.rows_pending,
            requests: s.requests_sent,
            retries: r.retries,
            rate_limited: r.rate_limited,
            effective_rate_per_minute: r.effective_rate_per_minute,
            started_after_row: r.started_after_row,
            resume_after_row: r.resume_after_row,
            error: s.error.as_deref().map(|e| crate::model::shorten(e, 1000)),
            report: s.report.clone(),
            rejections,
        }
    }

    /// `{prefix}run-log/dt=YYYY-MM-DD/{finished}-{hash}.json`: partitioned by the day the run
    /// finished, named so that a listing is in time order.
    pub fn key(&self, state_prefix: &str) -> String {
        let day = self.finished_at.get(..10).unwrap_or("1970-01-01");
        let stamp: String = self
            .finished_at
            .chars()
            .filter(|c| c.is_ascii_digit())
            .collect();
        let id = xxhash_rust::xxh3::xxh3_64(
            format!(
                "{}/{}/{}/{}/{}",
                self.bucket, self.key, self.etag, self.started_after_row, self.finished_at
            )
            .as_bytes(),
        );
        format!("{}{day}/{stamp}-{id:016x}.json", prefix_of(state_prefix))
    }

    /// The record as one line of JSON Lines.
    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// `{STATE_PREFIX}run-log/dt=`: the run log's prefix, before the day.
pub fn prefix_of(state_prefix: &str) -> String {
    format!("{state_prefix}run-log/dt=")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::report::{ObjectSummary, RowReport, Status};

    #[test]
    fn a_record_is_one_flat_line_partitioned_by_day_with_rejections_grouped() {
        let report = RunReport {
            summary: ObjectSummary {
                bucket: "b".into(),
                key: "exports/u.csv".into(),
                sync: "users".into(),
                status: Status::Complete,
                rows_read: 10,
                rows_delivered: 7,
                rows_rejected: 3,
                ..Default::default()
            },
            started_at: "2026-11-30T10:00:00.000Z".into(),
            finished_at: "2026-11-30T10:00:02.500Z".into(),
            rejected_rows: ["bad date: 'x'", "bad date: 'y'", "empty"]
                .iter()
                .enumerate()
                .map(|(i, reason)| RowReport {
                    row: i as u64 + 1,
                    line: None,
                    column: "signup".into(),
                    reason: reason.to_string(),
                })
                .collect(),
            ..Default::default()
        };
        let r = RunRecord::from_report(&report);
        assert_eq!(r.duration_ms, 2_500);
        assert_eq!(r.status, "complete");
        assert_eq!(
            r.rejections,
            vec![
                Rejections {
                    column: "signup".into(),
                    reason: "bad date".into(),
                    rows: 2
                },
                Rejections {
                    column: "signup".into(),
                    reason: "empty".into(),
                    rows: 1
                }
            ]
        );
        let key = r.key("moengage-sync/");
        assert!(
            key.starts_with("moengage-sync/run-log/dt=2026-11-30/20261130100002500-"),
            "{key}"
        );
        let line = r.line();
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let back: RunRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }
}
