//! The CloudWatch EMF document of a real run: valid EMF, and its numbers are the run's numbers.
//! The run is made to exercise every counter: rejected rows, 429s and retries, a dead-lettered
//! request.

use moengage_emulator::Faults;
use moengage_sync::account::metrics;
use moengage_sync::account::metrics::NAMESPACE;
use moengage_sync::account::report::RunReport;
use serde_json::Value;

use crate::support::{users_csv, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_of_a_run_is_valid_and_equals_the_run_summary() {
    let stack = Stack::start().await;
    // Two 429s before anything else (retried), and every request carrying user-00060 refused
    // permanently (dead-lettered).
    stack.emulator.set_faults(Faults {
        fail_first_n: 2,
        fail_status: 429,
        fail_customer_id: Some("user-00060".into()),
        ..Faults::default()
    });
    let deps = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;
    let mut csv = users_csv(120);
    csv.push_str("null,x@example.com,X,Y,free\n,y@example.com,Y,Z,pro\n");
    stack.put("exports/metrics.csv", csv.into_bytes()).await;

    let summary = stack.invoke(&deps, "exports/metrics.csv").await;
    let obj = &summary.objects[0];
    let report: RunReport = serde_json::from_value(
        stack
            .get_json(obj.report.as_deref().expect("report location"))
            .await,
    )
    .expect("a RunReport");
    // The run did what the faults promise, so every metric below is a real number.
    assert_eq!(
        (
            obj.rows_read,
            obj.rows_rejected,
            obj.rows_dead_lettered,
            obj.rows_delivered
        ),
        (122, 2, 50, 70),
        "{obj:?}"
    );
    assert_eq!((report.rate_limited, report.retries), (2, 2));

    let line = metrics::emf_line(&report, "bulk_import", "moengage-sync-test");
    assert!(!line.contains('\n'), "EMF must be one log line");
    let doc: Value = serde_json::from_str(&line).expect("EMF is JSON");

    // The `_aws` metadata, per the EMF specification.
    let aws = doc["_aws"].as_object().expect("_aws object");
    let timestamp = aws["Timestamp"]
        .as_i64()
        .expect("Timestamp is epoch milliseconds");
    let finished = chrono::DateTime::parse_from_rfc3339(&report.finished_at).expect("finished_at");
    assert_eq!(timestamp, finished.timestamp_millis());
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics array");
    assert_eq!(directives.len(), 1);
    let directive = &directives[0];
    assert_eq!(directive["Namespace"], NAMESPACE);
    let dimension_sets = directive["Dimensions"]
        .as_array()
        .expect("Dimensions array of arrays");
    assert!(!dimension_sets.is_empty());
    for set in dimension_sets {
        let set = set.as_array().expect("a dimension set is an array");
        assert!(!set.is_empty() && set.len() <= 30);
        for name in set {
            assert!(
                doc[name.as_str().expect("dimension name")].is_string(),
                "dimension {name} must be a top-level string"
            );
        }
    }
    assert_eq!(doc["ObjectType"], "bulk_import");
    assert_eq!(doc["FunctionName"], "moengage-sync-test");
    let definitions = directive["Metrics"].as_array().expect("Metrics array");
    assert!(!definitions.is_empty() && definitions.len() <= 100);
    let valid_units = ["Count", "Milliseconds"];
    let mut values = std::collections::BTreeMap::new();
    for d in definitions {
        let name = d["Name"].as_str().expect("Name");
        assert!(
            valid_units.contains(&d["Unit"].as_str().expect("Unit")),
            "{d}"
        );
        values.insert(
            name,
            doc[name]
                .as_u64()
                .unwrap_or_else(|| panic!("metric {name} must be a top-level number")),
        );
    }

    // The numbers are the run's.
    let expected = [
        ("RowsRead", obj.rows_read),
        ("RowsDelivered", obj.rows_delivered),
        ("RowsUnchanged", obj.rows_unchanged),
        ("RowsRejected", obj.rows_rejected),
        ("RowsDeadLettered", obj.rows_dead_lettered),
        ("RowsPending", obj.rows_pending),
        ("RowsWarned", obj.rows_warned),
        ("Requests", obj.requests_sent),
        ("Retries", report.retries),
        ("RateLimited", report.rate_limited),
        ("MoEngageLatency", report.moengage_latency_ms),
        (
            "EffectiveRatePerMinute",
            report
                .effective_rate_per_minute
                .map_or(0, |v| v.round() as u64),
        ),
        ("ObjectsPoisoned", 0),
        ("ObjectsFailed", 0),
        // Mirror mode's; an object's run deletes no one.
        ("UsersDeleted", 0),
        ("DeletesDeadLettered", 0),
        ("MirrorRefused", 0),
    ];
    // The 429s lowered the rate in force below the configured 1,000,000 a minute (AIMD).
    let rate = report.effective_rate_per_minute.expect("the rate in force");
    assert!((1.0..1_000_000.0).contains(&rate), "{rate}");
    assert_eq!(values.len(), expected.len(), "{values:?}");
    for (name, want) in expected {
        assert_eq!(values.get(name), Some(&want), "{name}");
    }
    assert_eq!(obj.requests_sent, stack.state().requests.len() as u64);
    assert_eq!(doc["Key"], "exports/metrics.csv");
    assert_eq!(doc["Status"], "complete");
}
