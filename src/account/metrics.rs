//! Metrics: one CloudWatch Embedded Metric Format (EMF) document per processed object, printed to
//! stdout as a single line. CloudWatch Logs turns it into metrics in [`NAMESPACE`]; template.yaml's
//! alarms (rejected-row ratio, failed objects) read them.
//!
//! Hand-written with serde_json rather than `metrics_cloudwatch_embedded`: that crate is a backend
//! for the global `metrics` facade — one process-wide recorder whose counters are aggregated and
//! flushed per Lambda invocation, with properties set on the shared collector. We want one
//! document per *object* (an invocation may carry several), carrying that object's bucket, key and
//! status, and computed from the run report that already holds every number — a pure function of
//! the report, which integration tests running many handlers in one process can check without a
//! global recorder. The format is small and documented:
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::io::Write;

use serde_json::{json, Map, Value};

use crate::account::report::{RunReport, Status};

/// CloudWatch namespace of every metric; template.yaml's alarms name it too.
pub const NAMESPACE: &str = "MoEngageSync";

/// Dimension names, in the one dimension set every metric is published under. `FunctionName`
/// keeps two stacks in one account (say, users and events) apart; `ObjectType` is what the issue
/// asked to slice by.
pub const DIMENSIONS: [&str; 2] = ["FunctionName", "ObjectType"];

/// The set the alarms and the dashboard read: every sync and object type of the function
/// together.
pub const FUNCTION_DIMENSIONS: [&str; 1] = ["FunctionName"];

/// The third dimension set: the same metrics per sync (`Sync` is the sync's name, `default`
/// without `SYNC_CONFIG`). The alarms keep reading the first set, every sync together.
pub const SYNC_DIMENSIONS: [&str; 3] = ["FunctionName", "ObjectType", "Sync"];

/// Used as `FunctionName` outside Lambda (where `AWS_LAMBDA_FUNCTION_NAME` is unset).
pub const LOCAL_FUNCTION_NAME: &str = "moengage-sync-local";

/// A CloudWatch unit, as EMF spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One metric: its CloudWatch name and unit, and where its value is in a run report.
#[derive(Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub read: fn(&RunReport) -> u64,
}

const fn metric(name: &'static str, unit: Unit, read: fn(&RunReport) -> u64) -> Metric {
    Metric { name, unit, read }
}

/// Every metric of the document. A table, so the directive and the values can never disagree.
pub const METRICS: &[Metric] = &[
    metric("RowsRead", Unit::Count, |r| r.summary.rows_read),
    metric("RowsDelivered", Unit::Count, |r| r.summary.rows_delivered),
    metric("RowsUnchanged", Unit::Count, |r| r.summary.rows_unchanged),
    metric("RowsRejected", Unit::Count, |r| r.summary.rows_rejected),
    metric("RowsDeadLettered", Unit::Count, |r| {
        r.summary.rows_dead_lettered
    }),
    metric("RowsPending", Unit::Count, |r| r.summary.rows_pending),
    metric("RowsWarned", Unit::Count, |r| r.summary.rows_warned),
    // Every attempt, retries included (the summary's `requests_sent`).
    metric("Requests", Unit::Count, |r| r.summary.requests_sent),
    metric("Retries", Unit::Count, |r| r.retries),
    // 429 answers.
    metric("RateLimited", Unit::Count, |r| r.rate_limited),
    // Time spent waiting for MoEngage's answers, summed over the object's requests; divide by
    // Requests for the mean.
    metric("MoEngageLatency", Unit::Milliseconds, |r| {
        r.moengage_latency_ms
    }),
    // Requests per minute in force for the sync's API when the object finished: the configured
    // budget, or less when MoEngage's x-ratelimit-limit or 429s lowered it.
    metric("EffectiveRatePerMinute", Unit::Count, |r| {
        r.effective_rate_per_minute.map_or(0, |v| v.round() as u64)
    }),
    // 1 when the object is poisoned: its runs kept dying (timeout, out of memory) without getting
    // further, so it is no longer retried; its alarm says so.
    metric("ObjectsPoisoned", Unit::Count, |r| u64::from(r.poisoned)),
    // 1 when the object stopped with an error (wrong credentials, unreadable export), else 0:
    // such rows are pending, neither rejected nor dead-lettered, so they need their own alarm.
    metric("ObjectsFailed", Unit::Count, |r| {
        u64::from(r.summary.status == Status::Failed)
    }),
    // Mirror mode: users deleted in MoEngage by a snapshot's deletion pass, deletions
    // dead-lettered, and 1 when the guard refused a pass (too many users left the snapshot: a
    // truncated export?), which has its own alarm.
    metric("UsersDeleted", Unit::Count, |r| {
        r.summary.mirror.as_ref().map_or(0, |m| m.users_deleted)
    }),
    metric("DeletesDeadLettered", Unit::Count, |r| {
        r.summary
            .mirror
            .as_ref()
            .map_or(0, |m| m.deletes_dead_lettered)
    }),
    metric("MirrorRefused", Unit::Count, |r| {
        r.summary
            .mirror
            .as_ref()
            .map_or(0, |m| u64::from(m.mirror_refused))
    }),
];

/// The EMF document for one object's run report. `function_name` and `object_type` become the
/// dimensions. The timestamp is the report's `finished_at` (now, if it has none), so the metrics
/// land in the minute the object finished.
pub fn emf(report: &RunReport, object_type: &str, function_name: &str) -> Value {
    let timestamp_ms = chrono::DateTime::parse_from_rfc3339(&report.finished_at)
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|_| chrono::Utc::now().timestamp_millis());
    let definitions: Vec<Value> = METRICS
        .iter()
        .map(|m| json!({"Name": m.name, "Unit": m.unit.as_str()}))
        .collect();

    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [&FUNCTION_DIMENSIONS[..], &DIMENSIONS[..], &SYNC_DIMENSIONS[..]],
                "Metrics": definitions,
            }],
        }),
    );
    doc.insert("FunctionName".into(), function_name.into());
    doc.insert("ObjectType".into(), object_type.into());
    let sync = match report.summary.sync.as_str() {
        "" => crate::config::syncs::DEFAULT_SYNC,
        name => name,
    };
    doc.insert("Sync".into(), sync.into());
    for m in METRICS {
        doc.insert(m.name.into(), (m.read)(report).into());
    }
    // Not metrics: properties that Logs Insights can filter on to find the object behind a spike.
    doc.insert("Bucket".into(), report.summary.bucket.clone().into());
    doc.insert("Key".into(), report.summary.key.clone().into());
    doc.insert(
        "Status".into(),
        serde_json::to_value(report.summary.status).unwrap_or(Value::Null),
    );
    Value::Object(doc)
}

/// [`emf`] as the single line CloudWatch Logs expects (serde_json's compact form has no newlines).
pub fn emf_line(report: &RunReport, object_type: &str, function_name: &str) -> String {
    emf(report, object_type, function_name).to_string()
}

/// Prints the object's EMF document to stdout as one line, named after the running function
/// (`AWS_LAMBDA_FUNCTION_NAME`). Call once per processed object.
pub fn emit(report: &RunReport, object_type: &str) {
    let function_name =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| LOCAL_FUNCTION_NAME.into());
    let mut line = emf_line(report, object_type, &function_name);
    line.push('\n');
    // One write of the whole line under stdout's lock, so log lines from other tasks cannot
    // interleave with it. A closed stdout is no reason to fail an object that was delivered.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::report::ObjectSummary;

    fn report() -> RunReport {
        RunReport {
            summary: ObjectSummary {
                bucket: "b".into(),
                key: "exports/u.csv".into(),
                status: Status::Failed,
                rows_read: 10,
                rows_delivered: 5,
                rows_unchanged: 1,
                rows_rejected: 2,
                rows_dead_lettered: 1,
                rows_pending: 1,
                requests_sent: 7,
                rows_warned: 3,
                ..Default::default()
            },
            retries: 4,
            rate_limited: 2,
            moengage_latency_ms: 1234,
            finished_at: "2026-11-29T10:00:00.000Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_defined_metric_has_a_number_and_every_dimension_a_string() {
        let doc = emf(&report(), "bulk_import", "fn-1");
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(doc["_aws"]["Timestamp"], 1_795_946_400_000_i64);
        let sets = directive["Dimensions"].as_array().unwrap();
        assert_eq!(sets.len(), 3, "the function, per object type, per sync");
        for dim in sets.iter().flat_map(|s| s.as_array().unwrap()) {
            assert!(doc[dim.as_str().unwrap()].is_string(), "{dim}");
        }
        assert_eq!(
            doc["Sync"], "default",
            "a report without a sync is the default one's"
        );
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), METRICS.len());
        for name in names {
            assert!(doc[name].is_u64(), "{name}");
        }
    }

    #[test]
    fn values_come_from_the_report() {
        let doc = emf(&report(), "bulk_import", "fn-1");
        let expect = [
            ("RowsRead", 10),
            ("RowsDelivered", 5),
            ("RowsUnchanged", 1),
            ("RowsRejected", 2),
            ("RowsDeadLettered", 1),
            ("RowsPending", 1),
            ("RowsWarned", 3),
            ("Requests", 7),
            ("Retries", 4),
            ("RateLimited", 2),
            ("MoEngageLatency", 1234),
            ("ObjectsFailed", 1),
        ];
        for (name, value) in expect {
            assert_eq!(doc[name], value, "{name}");
        }
        assert_eq!(
            (doc["ObjectType"].as_str(), doc["FunctionName"].as_str()),
            (Some("bulk_import"), Some("fn-1"))
        );
        assert_eq!(doc["Status"], "failed");
    }

    #[test]
    fn the_line_is_one_line_even_with_newlines_in_the_key() {
        let mut r = report();
        r.summary.key = "odd\nkey.csv".into();
        r.finished_at.clear();
        let line = emf_line(&r, "events", "fn");
        assert!(!line.contains('\n'));
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["Key"], "odd\nkey.csv");
        assert!(back["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    }
}
