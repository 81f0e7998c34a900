//! The Lambda handler: works out which objects an invocation is about (S3 notification, the same
//! wrapped in SQS messages, or a scheduled sweep), runs the pipeline on each, stores each run
//! report, and answers with DESIGN's summary.

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::dead_letter::DeadLetterSink;
use crate::moengage::MoEngageClient;
use crate::pipeline::{self, FatalError, ObjectRef};
use crate::rate::Pacer;
use crate::report::{report_key, BatchItemFailure, ObjectSummary, Summary};
use crate::source::ObjectSource;
use crate::state::StateStore;

/// Everything the handler needs, built once per Lambda instance and borrowed by every invocation.
pub struct Deps {
    pub config: Config,
    /// Where exports are read from (S3; a fake in tests).
    pub source: Arc<dyn ObjectSource>,
    /// Where run reports go (S3).
    pub state: Arc<dyn StateStore>,
    /// Where undeliverable bodies go (SQS).
    pub dead_letters: Arc<dyn DeadLetterSink>,
    pub moengage: MoEngageClient,
    /// The workspace's one request budget, shared by every object this instance processes.
    pub pacer: Pacer,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("unrecognised invocation payload: {0}. Expected an S3 event notification, an SQS event whose messages hold S3 notifications, or an EventBridge Scheduled Event")]
    UnknownPayload(String),
    #[error(transparent)]
    Fatal(#[from] FatalError),
}

/// Handles one invocation.
pub async fn handle(deps: &Deps, payload: Value) -> Result<Summary, HandlerError> {
    let mut summary = Summary::default();
    if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        summary.notes.push("scheduled sweep: not enabled in this version; nothing to do".into());
        return Ok(summary);
    }
    let Some(records) = payload.get("Records").and_then(Value::as_array) else {
        return Err(HandlerError::UnknownPayload(describe(&payload)));
    };
    let from_sqs = records.first().and_then(|r| r.get("eventSource")).and_then(Value::as_str) == Some("aws:sqs");
    let payload = payload.clone();
    if !from_sqs {
        let objects = s3_objects(&payload, &deps.config, &mut summary.notes)?;
        for object in objects {
            let line = process(deps, &object).await?;
            summary.objects.push(line);
        }
        return Ok(summary);
    }

    // SQS: report each message that failed so only those come back (partial batch response).
    let sqs: SqsEvent = serde_json::from_value(payload).map_err(|e| HandlerError::UnknownPayload(format!("SQS event: {e}")))?;
    let mut failures = Vec::new();
    for record in sqs.records {
        let id = record.message_id.unwrap_or_default();
        let body = record.body.unwrap_or_default();
        let parsed: Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(e) => {
                summary.notes.push(format!("SQS message {id}: body is not JSON ({e}); dropped"));
                continue;
            }
        };
        if parsed.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            summary.notes.push(format!("SQS message {id}: S3 test event, ignored"));
            continue;
        }
        let objects = match s3_objects(&parsed, &deps.config, &mut summary.notes) {
            Ok(o) => o,
            Err(e) => {
                summary.notes.push(format!("SQS message {id}: {e}; dropped"));
                continue;
            }
        };
        let mut message_failed = false;
        for object in objects {
            match process(deps, &object).await {
                Ok(line) => {
                    message_failed |= line.status == crate::report::Status::Failed;
                    summary.objects.push(line);
                }
                Err(e) => {
                    tracing::error!(error = %e, message_id = %id, "message failed");
                    summary.notes.push(format!("SQS message {id}: {e}"));
                    message_failed = true;
                }
            }
        }
        if message_failed {
            failures.push(BatchItemFailure { item_identifier: id });
        }
    }
    summary.batch_item_failures = Some(failures);
    Ok(summary)
}

/// Runs one object and stores its run report.
async fn process(deps: &Deps, object: &ObjectRef) -> Result<ObjectSummary, FatalError> {
    let mut report = pipeline::process_object(deps, object).await?;
    let bucket = deps.config.state_bucket.clone().unwrap_or_else(|| object.bucket.clone());
    let key = report_key(&deps.config.state_prefix, &object.bucket, &object.key, &report.etag);
    report.summary.report = Some(format!("s3://{bucket}/{key}"));
    let s = &report.summary;
    tracing::info!(
        bucket = %s.bucket, key = %s.key, status = ?s.status, rows_read = s.rows_read, rows_delivered = s.rows_delivered,
        rows_rejected = s.rows_rejected, rows_dead_lettered = s.rows_dead_lettered, rows_pending = s.rows_pending,
        requests_sent = s.requests_sent, "object processed"
    );
    match serde_json::to_vec_pretty(&report) {
        Ok(body) => {
            if let Err(e) = deps.state.put(&bucket, &key, body, false).await {
                // The rows are already settled; losing the report must not resend them.
                tracing::error!(error = %e, "could not store the run report");
                report.summary.report = None;
            }
        }
        Err(e) => tracing::error!(error = %e, "could not encode the run report"),
    }
    Ok(report.summary)
}

/// The parts of an S3 notification this function reads. Parsed leniently on purpose:
/// `aws_lambda_events`' `S3Event` requires `userIdentity` and `requestParameters`, which moto (and
/// hand-written test events) leave out.
#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records", default)]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default)]
    size: Option<u64>,
}

/// The objects an S3 notification names, keys decoded; skips what is not an export.
pub fn s3_objects(event: &Value, config: &Config, notes: &mut Vec<String>) -> Result<Vec<ObjectRef>, HandlerError> {
    let event = S3Notification::deserialize(event).map_err(|e| HandlerError::UnknownPayload(format!("S3 notification: {e}")))?;
    let mut out = Vec::new();
    for r in event.records {
        let (bucket, key) = (r.s3.bucket.name, decode_key(&r.s3.object.key));
        if !r.event_name.is_empty() && !r.event_name.starts_with("ObjectCreated") {
            notes.push(format!("s3://{bucket}/{key}: {} is not an object creation; ignored", r.event_name));
            continue;
        }
        if key.ends_with('/') || r.s3.object.size == Some(0) {
            notes.push(format!("s3://{bucket}/{key}: empty object or folder placeholder; skipped"));
            continue;
        }
        // Our own reports land in the same bucket by default; never read them back as exports.
        let state_bucket = config.state_bucket.as_deref().unwrap_or(&bucket);
        if state_bucket == bucket && !config.state_prefix.is_empty() && key.starts_with(&config.state_prefix) {
            notes.push(format!("s3://{bucket}/{key}: under STATE_PREFIX {}, this tool's own state; skipped", config.state_prefix));
            continue;
        }
        out.push(ObjectRef { bucket, key });
    }
    Ok(out)
}

/// S3 notifications URL-encode keys form-style: `+` is a space, `%2F` a slash.
pub fn decode_key(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

fn describe(payload: &Value) -> String {
    match payload {
        Value::Object(m) => format!("an object with keys {:?}", m.keys().take(8).collect::<Vec<_>>()),
        other => format!("a JSON {}", match other {
            Value::Array(_) => "array",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "boolean",
            _ => "null",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_lookup(|k| {
            Some(match k {
                "MOENGAGE_DATA_CENTER" => "DC-01",
                "MOENGAGE_WORKSPACE_ID" => "WS",
                "MOENGAGE_API_KEY" => "k",
                "OBJECT_TYPE" => "bulk_import",
                "DEAD_LETTER_QUEUE_URL" => "http://127.0.0.1:1/q",
                _ => return None,
            }
            .to_string())
        })
        .unwrap()
    }

    #[test]
    fn keys_are_decoded_as_s3_encodes_them() {
        assert_eq!(decode_key("exports/users/users%20sample.csv.gz"), "exports/users/users sample.csv.gz");
        assert_eq!(decode_key("a+b%2Bc.csv"), "a b+c.csv");
        assert_eq!(decode_key("a%2Fb.csv"), "a/b.csv");
        assert_eq!(decode_key("caf%C3%A9.csv"), "café.csv");
    }

    #[test]
    fn moto_style_records_without_optional_fields_parse() {
        let event = serde_json::json!({"Records":[{
            "eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-11-29T10:00:00.000Z",
            "eventName":"ObjectCreated:Put",
            "s3":{"s3SchemaVersion":"1.0","configurationId":"c","bucket":{"name":"b","arn":"arn:aws:s3:::b"},
                  "object":{"key":"exports/a%20b.csv","size":10,"eTag":"e"}}}]});
        let mut notes = Vec::new();
        let objects = s3_objects(&event, &config(), &mut notes).unwrap();
        assert_eq!(objects, vec![ObjectRef { bucket: "b".into(), key: "exports/a b.csv".into() }]);
    }

    #[test]
    fn deletions_and_folder_placeholders_are_skipped_with_a_note() {
        let rec = |name: &str, key: &str, size: u64| serde_json::json!({"eventSource":"aws:s3","eventName":name,
            "s3":{"bucket":{"name":"b"},"object":{"key":key,"size":size}}});
        let event = serde_json::json!({"Records":[rec("ObjectRemoved:Delete","a.csv",10), rec("ObjectCreated:Put","dir/",0),
            rec("ObjectCreated:Put","moengage-sync/reports/b/x.csv/e.json",5), rec("ObjectCreated:Put","x.csv",5)]});
        let mut notes = Vec::new();
        let objects = s3_objects(&event, &config(), &mut notes).unwrap();
        assert_eq!(objects, vec![ObjectRef { bucket: "b".into(), key: "x.csv".into() }]);
        assert_eq!(notes.len(), 3, "{notes:?}");
    }
}
