//! Invocation payloads: what the function was asked to do — an S3 notification (direct or in SQS
//! messages), a work item, a scheduled sweep, or a redrive — parsed leniently into [`Request`]s.

use serde::Deserialize;
use serde_json::Value;

use crate::app::redrive::RedriveRequest;
use crate::app::work::{WorkItem, WorkMessage};
use crate::config::Config;
use crate::decode;
use crate::model::{shorten, ObjectRef};

/// One thing to do, from one payload (or one SQS message).
#[derive(Debug, Clone)]
pub enum Request {
    /// Objects named by an S3 notification, keys decoded, non-exports filtered out.
    Objects(Vec<ObjectRef>),
    /// A continuation or enqueued object.
    Work(WorkItem),
    /// A snapshot's mirror-mode deletion pass, asked for or continued.
    Mirror(crate::app::work::MirrorRequest),
    /// EventBridge Scheduled Event: find object versions without a completed run.
    Sweep,
    /// Replay the dead-letter queue.
    Redrive(RedriveRequest),
    /// S3's `s3:TestEvent` when a notification is configured: nothing to do.
    TestEvent,
}

#[derive(Debug, thiserror::Error)]
#[error("unrecognised invocation payload: {0}. Expected an S3 event notification, an SQS event whose messages hold S3 notifications or work items, an EventBridge Scheduled Event, or {{\"redrive\": {{…}}}}")]
pub struct UnknownPayload(pub String);

/// Parses one payload that is not an SQS event (SQS bodies go through here one by one).
pub fn parse(
    payload: &Value,
    config: &Config,
    notes: &mut Vec<String>,
) -> Result<Request, UnknownPayload> {
    if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        return Ok(Request::Sweep);
    }
    if let Some(r) = payload.get("redrive") {
        let req = RedriveRequest::deserialize(r)
            .map_err(|e| UnknownPayload(format!("redrive: {}", shorten(&e.to_string(), 300))))?;
        return Ok(Request::Redrive(req));
    }
    if let Some(m) = payload.get("mirror") {
        let req = crate::app::work::MirrorRequest::deserialize(m)
            .map_err(|e| UnknownPayload(format!("mirror: {}", shorten(&e.to_string(), 300))))?;
        return Ok(Request::Mirror(req));
    }
    if payload.get("moengage_sync").is_some() {
        let msg = WorkMessage::deserialize(payload)
            .map_err(|e| UnknownPayload(format!("work item: {}", shorten(&e.to_string(), 300))))?;
        return Ok(Request::Work(msg.moengage_sync));
    }
    if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Request::TestEvent);
    }
    if payload.get("Records").is_some() {
        return s3_objects(payload, config, notes).map(Request::Objects);
    }
    Err(UnknownPayload(describe(payload)))
}

/// Whether a payload is an SQS event (its records come from `aws:sqs`).
pub fn is_sqs(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
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

/// The objects an S3 notification names, keys decoded; skips what is not an export, except
/// completion markers (`_SUCCESS`, manifests, `MIRROR_DONE_MARKER`): mirror mode starts on them.
pub fn s3_objects(
    event: &Value,
    config: &Config,
    notes: &mut Vec<String>,
) -> Result<Vec<ObjectRef>, UnknownPayload> {
    let event = S3Notification::deserialize(event).map_err(|e| {
        UnknownPayload(format!("S3 notification: {}", shorten(&e.to_string(), 300)))
    })?;
    let mut out = Vec::new();
    for r in event.records {
        let (bucket, key) = (r.s3.bucket.name, decode_key(&r.s3.object.key));
        // Notes go into the response: a forged notification's names are cut there.
        let (b, k) = (shorten(&bucket, 100), shorten(&key, 1_100));
        if !r.event_name.is_empty() && !r.event_name.starts_with("ObjectCreated") {
            notes.push(format!(
                "s3://{b}/{k}: {} is not an object creation; ignored",
                shorten(&r.event_name, 100)
            ));
            continue;
        }
        let done = config.mirror_done_marker.as_deref();
        if crate::app::mirror::is_completion_marker(&key, done)
            && config.accepts_object(&bucket, &key).is_ok()
        {
            out.push(ObjectRef { bucket, key });
            continue;
        }
        if let Some(what) = decode::marker_reason(&key, r.s3.object.size) {
            notes.push(format!("s3://{b}/{k}: {what}, not data; skipped"));
            continue;
        }
        if let Err(why) = config.accepts_object(&bucket, &key) {
            notes.push(format!("s3://{b}/{k}: {}", shorten(&why, 2_000)));
            continue;
        }
        out.push(ObjectRef { bucket, key });
    }
    Ok(out)
}

/// S3 notifications URL-encode keys form-style: `+` is a space, `%2F` a slash.
pub fn decode_key(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

fn describe(payload: &Value) -> String {
    match payload {
        // Keys are cut: a payload's keys are anyone's text, and this goes into the response.
        Value::Object(m) => format!(
            "an object with keys {:?}",
            m.keys().take(8).map(|k| shorten(k, 60)).collect::<Vec<_>>()
        ),
        other => format!(
            "a JSON {}",
            match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "boolean",
                _ => "null",
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_lookup(|k| {
            Some(
                match k {
                    "MOENGAGE_DATA_CENTER" => "DC-01",
                    "MOENGAGE_WORKSPACE_ID" => "WS",
                    "MOENGAGE_API_KEY" => "k",
                    "OBJECT_TYPE" => "bulk_import",
                    "DEAD_LETTER_QUEUE_URL" => "http://127.0.0.1:1/q",
                    _ => return None,
                }
                .to_string(),
            )
        })
        .unwrap()
    }

    #[test]
    fn keys_are_decoded_as_s3_encodes_them() {
        assert_eq!(
            decode_key("exports/users/users%20sample.csv.gz"),
            "exports/users/users sample.csv.gz"
        );
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
        assert_eq!(
            objects,
            vec![ObjectRef {
                bucket: "b".into(),
                key: "exports/a b.csv".into()
            }]
        );
    }

    /// Found by `make fuzz` (target `invocation`): keys of any length were quoted whole in the
    /// error, which goes into the response.
    #[test]
    fn an_unrecognised_payload_is_described_in_a_few_hundred_bytes() {
        let raw = include_bytes!("../../tests/fixtures/fuzz/invocation-long-keys.json");
        let payload: Value = serde_json::from_slice(raw).expect("JSON");
        let e = parse(&payload, &config(), &mut Vec::new()).expect_err("not a payload we know");
        assert!(e.to_string().len() < 2_000, "{} bytes", e.to_string().len());
        // A notification whose names are long: the notes about it are cut too.
        let raw = include_bytes!("../../tests/fixtures/fuzz/invocation-long-notes.json");
        let payload: Value = serde_json::from_slice(raw).expect("JSON");
        let mut notes = Vec::new();
        let _ = parse(&payload, &config(), &mut notes);
        assert!(notes.iter().all(|n| n.len() < 4_000), "{notes:?}");
        let long_key = serde_json::json!({ "k".repeat(100_000): 1 });
        let e = parse(&long_key, &config(), &mut Vec::new()).expect_err("unknown");
        assert!(e.to_string().len() < 2_000, "{} bytes", e.to_string().len());
    }

    #[test]
    fn deletions_and_folder_placeholders_are_skipped_with_a_note() {
        let rec = |name: &str, key: &str, size: u64| {
            serde_json::json!({"eventSource":"aws:s3","eventName":name,
            "s3":{"bucket":{"name":"b"},"object":{"key":key,"size":size}}})
        };
        let event = serde_json::json!({"Records":[rec("ObjectRemoved:Delete","a.csv",10), rec("ObjectCreated:Put","dir/",0),
            rec("ObjectCreated:Put","moengage-sync/reports/b/x.csv/e.json",5), rec("ObjectCreated:Put","x.csv",5)]});
        let mut notes = Vec::new();
        let objects = s3_objects(&event, &config(), &mut notes).unwrap();
        assert_eq!(
            objects,
            vec![ObjectRef {
                bucket: "b".into(),
                key: "x.csv".into()
            }]
        );
        assert_eq!(notes.len(), 3, "{notes:?}");
    }
}
