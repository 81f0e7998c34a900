//! Redrive: replays dead-letter messages once the cause is fixed. Each message's `payload` is sent
//! again, byte for byte, to its endpoint; messages that are delivered are deleted, the others
//! stay in the queue and are reported with the reason.
//!
//! A message is untrusted input: anyone allowed to send to the queue can write one. Before any
//! network call, [`vet`] and [`check_body`] refuse a message unless it names one of the closed set
//! of data endpoints for the configured app id, its `payload_s3` (if any) lies where the function
//! itself stores oversized payloads, and its payload is a body this project would send to that
//! endpoint, within the size limits. The URL is always built from the configuration.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::app::Deps;
use crate::config::Config;
use crate::deliver::dead_letter;
use crate::deliver::dead_letter::DeadLetterMessage;
use crate::deliver::Outcome;
use crate::model::SINGLE_REQUEST_MAX_BYTES;
use crate::model::{shorten, Endpoint};

/// How long a message being replayed stays hidden from other readers.
const HIDE_SECS: i32 = 300;

/// The invocation payload: `{"redrive": {"max_messages": 100}}` (events/redrive.json).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RedriveRequest {
    /// Messages to replay at most in this invocation (default 100).
    #[serde(default)]
    pub max_messages: Option<u64>,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RedriveReport {
    /// Messages read from the dead-letter queue.
    pub replayed: u64,
    /// Delivered and deleted.
    pub delivered: u64,
    /// Rows in the delivered messages.
    pub rows_delivered: u64,
    /// Rows of delivered messages recorded in their sync's state (so the next run of the export
    /// does not send them again).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_recorded: u64,
    /// Delivered messages whose rows could not be recorded in the sync state, with why: those rows
    /// are sent again by the next run of their export (never lost).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_recorded: Vec<StillFailing>,
    /// Messages refused without any request: not something this function wrote for this
    /// workspace (the reason is in `still_failing`). They stay in the queue.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused: u64,
    /// Still failing (left in the queue), with why.
    pub still_failing: Vec<StillFailing>,
    /// Messages left in the queue afterwards (approximate, as SQS counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_in_queue: Option<u64>,
    /// Dead-lettered deletions dropped unsent: the user was delivered again since (or is no
    /// longer in the sync state), so deleting now would be wrong.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub obsolete: u64,
    /// Set when the redrive could not run at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StillFailing {
    pub message_id: String,
    pub reason: String,
}

/// Replays up to `request.max_messages` dead-letter messages; stops early at `stop_at`.
pub async fn redrive(
    deps: &Deps,
    request: &RedriveRequest,
    stop_at: Option<Instant>,
) -> RedriveReport {
    let max = request.max_messages.unwrap_or(100);
    let mut report = RedriveReport::default();
    let mut to_release = Vec::new();
    'outer: while report.replayed < max {
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        let batch = match deps.dead_letters.receive(HIDE_SECS).await {
            Ok(b) => b,
            Err(e) => {
                report.error = Some(e.to_string());
                break;
            }
        };
        if batch.is_empty() {
            break;
        }
        for m in batch {
            if report.replayed >= max {
                to_release.push(m.receipt);
                continue;
            }
            report.replayed += 1;
            let fail = |report: &mut RedriveReport, reason: String| {
                tracing::warn!(message_id = %m.message_id, %reason, "redrive: still failing");
                report.still_failing.push(StillFailing {
                    message_id: m.message_id.clone(),
                    reason,
                });
            };
            let Ready {
                endpoint,
                payload,
                records,
                note,
                source,
            } = match prepare(deps, &m.body).await {
                Ok(ready) => ready,
                Err(Unready::Refused(reason)) => {
                    report.refused += 1;
                    fail(&mut report, format!("refused: {reason}"));
                    to_release.push(m.receipt);
                    continue;
                }
                Err(Unready::Unavailable(reason)) => {
                    fail(&mut report, reason);
                    to_release.push(m.receipt);
                    continue;
                }
            };
            if endpoint == Endpoint::Delete {
                match still_wanted(deps, note.as_ref(), &source, &payload).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // The user was delivered again (or left the state) since: deleting now
                        // would delete a user the warehouse holds.
                        tracing::info!(message_id = %m.message_id, "redrive: obsolete deletion dropped");
                        match deps.dead_letters.delete(&m.receipt).await {
                            Ok(()) => report.obsolete += 1,
                            Err(e) => {
                                fail(
                                    &mut report,
                                    format!(
                                        "obsolete, but could not be deleted from the queue: {e}"
                                    ),
                                );
                            }
                        }
                        continue;
                    }
                    Err(reason) => {
                        report.refused += 1;
                        fail(&mut report, format!("refused: {reason}"));
                        to_release.push(m.receipt);
                        continue;
                    }
                }
            }
            let d = deps
                .deliver
                .deliver(endpoint, payload.clone(), records, stop_at)
                .await;
            if matches!(d.outcome, Outcome::Delivered { .. }) {
                if let Some(note) = note {
                    match record(deps, endpoint, &note, &payload).await {
                        Ok(rows) => report.rows_recorded += rows,
                        Err(reason) => {
                            tracing::warn!(message_id = %m.message_id, %reason, "redrive: delivered rows not recorded in the sync state; the next run sends them again");
                            report.not_recorded.push(StillFailing {
                                message_id: m.message_id.clone(),
                                reason,
                            });
                        }
                    }
                }
            }
            match d.outcome {
                Outcome::Delivered { .. } => match deps.dead_letters.delete(&m.receipt).await {
                    Ok(()) => {
                        report.delivered += 1;
                        report.rows_delivered += records.0 + records.1;
                    }
                    // Delivered but still queued: a later redrive sends it again (MoEngage
                    // upserts are idempotent for users; say so rather than hide it).
                    Err(e) => fail(
                        &mut report,
                        format!("delivered, but could not be deleted from the queue: {e}"),
                    ),
                },
                Outcome::Failed(detail) | Outcome::Misconfigured(detail) => {
                    fail(&mut report, detail.reason);
                    to_release.push(m.receipt);
                }
                Outcome::Interrupted => {
                    fail(&mut report, "the invocation's deadline came first".into());
                    to_release.push(m.receipt);
                    break 'outer;
                }
            }
        }
    }
    for receipt in to_release {
        if let Err(e) = deps.dead_letters.release(&receipt).await {
            tracing::warn!(error = %e, "redrive: could not make a message visible again; it reappears after its visibility timeout");
        }
    }
    report.left_in_queue = deps.dead_letters.depth().await.ok();
    report
}

/// Why a message is not sent.
enum Unready {
    /// Not something this function wrote for this workspace: never sent.
    Refused(String),
    /// Ours, but its payload cannot be read now.
    Unavailable(String),
}

/// A message ready to send.
struct Ready {
    endpoint: Endpoint,
    payload: Bytes,
    records: (u64, u64),
    /// The rows' sync-state entries, recorded once MoEngage accepts the payload.
    note: Option<dead_letter::StateNote>,
    /// Where the body came from (for a deletion: the snapshot folder and its id).
    source: dead_letter::SourceRef,
}

/// A message body → what to send, once every check has passed; no request is made before.
async fn prepare(deps: &Deps, body: &str) -> Result<Ready, Unready> {
    let msg = parse_message(body).map_err(Unready::Refused)?;
    let vetted = vet(&deps.config, &msg).map_err(Unready::Refused)?;
    let payload = payload_of(deps, &vetted)
        .await
        .map_err(Unready::Unavailable)?;
    let records = check_body(&deps.config, vetted.endpoint, &payload).map_err(Unready::Refused)?;
    Ok(Ready {
        endpoint: vetted.endpoint,
        payload,
        records,
        note: msg.sync_state,
        source: msg.source,
    })
}

/// Parses a dead-letter message body (untrusted: anyone allowed to send to the queue wrote it).
pub fn parse_message(body: &str) -> Result<DeadLetterMessage, String> {
    serde_json::from_str(body).map_err(|e| {
        format!(
            "not a moengage-sync dead-letter message ({})",
            shorten(&e.to_string(), 200)
        )
    })
}

/// Opens the sync state a sealed note names, after checking the seal (by this function, for this
/// very body) and that the scope is one of this workspace's; with the rows the note stands for.
async fn noted_state(
    deps: &Deps,
    note: &dead_letter::StateNote,
    payload: &[u8],
) -> Result<
    (
        crate::sync_state::SyncState,
        Vec<crate::sync_state::RowPrint>,
    ),
    String,
> {
    use crate::sync_state::{SyncLocation, SyncOptions, SyncState};
    let prints = note.open(&deps.moengage, payload)?;
    let config = &deps.config;
    // Sealed, so written by this function; checked anyway, as a path: this workspace's scopes only.
    let workspace =
        crate::sync_state::scope(&config.workspace_id, crate::model::ObjectType::Events);
    let ours = workspace.split('/').next().unwrap_or_default();
    let segments: Vec<&str> = note.scope.split('/').collect();
    if segments.first() != Some(&ours)
        || segments.len() < 2
        || segments
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Err(format!(
            "the sync-state scope {} is not one of this workspace's",
            quote(&note.scope)
        ));
    }
    // The bucket is sealed too; with STATE_BUCKET set, it must be that one.
    if config
        .state_bucket
        .as_deref()
        .is_some_and(|b| b != note.bucket)
    {
        return Err(format!(
            "the sync state named is in bucket {}, not STATE_BUCKET",
            quote(&note.bucket)
        ));
    }
    let location = SyncLocation::new(note.bucket.clone(), &config.state_prefix, &note.scope);
    let options = SyncOptions::new(crate::model::SyncMode::Upsert, false);
    let state = SyncState::open(deps.state.clone(), location, options)
        .await
        .map_err(|e| e.to_string())?;
    Ok((state, prints))
}

/// Whether a dead-lettered deletion should still be replayed: its sealed note says which entry
/// the user had when the deletion failed, and the state must still hold exactly that; and its
/// snapshot must still be the sync's latest export, unchanged (a newer export may hold the user
/// again: its own pass decides then).
async fn still_wanted(
    deps: &Deps,
    note: Option<&dead_letter::StateNote>,
    source: &dead_letter::SourceRef,
    payload: &[u8],
) -> Result<bool, String> {
    let note = note.ok_or("a Delete Users message must carry its sealed sync-state note")?;
    let (state, prints) = noted_state(deps, note, payload).await?;
    if !state.holds(&prints).await.map_err(|e| e.to_string())? {
        return Ok(false);
    }
    crate::app::mirror::still_latest(deps, source, note.snapshot.as_deref()).await
}

/// Records a delivered body's rows in its sync's state, when its note is sealed by this function
/// for this very body and names a scope of this workspace; returns the rows recorded. A delivered
/// deletion drops the user's entry instead.
async fn record(
    deps: &Deps,
    endpoint: Endpoint,
    note: &dead_letter::StateNote,
    payload: &[u8],
) -> Result<u64, String> {
    let (state, prints) = noted_state(deps, note, payload).await?;
    if endpoint == Endpoint::Delete {
        state
            .forget_deleted(&prints)
            .await
            .map_err(|e| e.to_string())?;
    } else {
        let ids = crate::sync_state::customer_ids_in(payload);
        state
            .accept(&prints, |key| ids.get(&key).cloned())
            .await
            .map_err(|e| e.to_string())?;
    }
    state.save().await.map_err(|e| e.to_string())?;
    Ok(prints.len() as u64)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A value from a refused message, quoted and cut: a forged message must not make a huge report.
fn quote(s: &str) -> String {
    format!("{:?}", shorten(s, 120))
}

/// A message that passed [`vet`]: where to send, and where its body is.
#[derive(Debug, PartialEq, Eq)]
pub struct Vetted {
    pub endpoint: Endpoint,
    pub payload: PayloadAt,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PayloadAt {
    Inline(Bytes),
    /// Under the function's own dead-letter payload prefix.
    S3 {
        bucket: String,
        key: String,
    },
}

/// Checks everything a message names before anything is requested: the endpoint kind (or, for
/// messages older than `kind`, a path parsed strictly), the app id, and where the payload is.
pub fn vet(config: &Config, msg: &DeadLetterMessage) -> Result<Vetted, String> {
    let accepted = "customer, event or transition";
    let from_path = Endpoint::parse_data_path(&msg.endpoint);
    let (endpoint, app_id) = match (&msg.kind, from_path) {
        (Some(kind), path) => {
            let endpoint = Endpoint::data_by_name(kind).ok_or_else(|| {
                format!(
                    "unknown endpoint kind {}; this project writes {accepted}",
                    quote(kind)
                )
            })?;
            let app_id = match (&msg.app_id, path) {
                (Some(app), _) => app.as_str(),
                (None, Some((_, app))) => app,
                (None, None) => return Err("the message names no app_id".into()),
            };
            // Both are written together; a path that disagrees with the kind is not ours.
            if endpoint.path(app_id) != msg.endpoint {
                return Err(format!(
                    "endpoint {} does not match kind {kind:?} and app id {}",
                    quote(&msg.endpoint),
                    quote(app_id)
                ));
            }
            (endpoint, app_id)
        }
        (None, Some(parsed)) => parsed,
        (None, None) => {
            return Err(format!(
            "endpoint {} is not one this project writes (/v1/{{customer,event,transition}}/APP_ID)",
            quote(&msg.endpoint)
        ))
        }
    };
    if app_id != config.app_id {
        return Err(format!(
            "app id {} is not the configured MOENGAGE_APP_ID {:?}",
            quote(app_id),
            config.app_id
        ));
    }
    let payload = match (&msg.payload, &msg.payload_s3) {
        (Some(p), None) => PayloadAt::Inline(Bytes::copy_from_slice(p.get().as_bytes())),
        (None, Some(uri)) => {
            let (bucket, key) = uri
                .strip_prefix("s3://")
                .and_then(|r| r.split_once('/'))
                .ok_or_else(|| format!("payload_s3 {} is not an s3:// URI", quote(uri)))?;
            // Where the pipeline stores it: the state bucket (default: the object's own bucket),
            // under the dead-letter prefix of the message's source object.
            let state_bucket = config
                .state_bucket
                .as_deref()
                .or(config.source_bucket.as_deref())
                .unwrap_or(&msg.source.bucket);
            let prefix = dead_letter::payload_prefix(
                &config.state_prefix,
                &msg.source.bucket,
                &msg.source.key,
            );
            if bucket != state_bucket
                || !key.starts_with(&prefix)
                || key[prefix.len()..].contains('/')
            {
                return Err(format!(
                    "payload_s3 {} is outside s3://{state_bucket}/{prefix}, where this function stores payloads too large for SQS",
                    quote(uri)
                ));
            }
            PayloadAt::S3 {
                bucket: bucket.to_string(),
                key: key.to_string(),
            }
        }
        (Some(_), Some(_)) => return Err("the message has both payload and payload_s3".into()),
        (None, None) => return Err("the message has neither payload nor payload_s3".into()),
    };
    Ok(Vetted { endpoint, payload })
}

/// Checks that `body` is what this project sends to `endpoint` (shape and size); returns its
/// (customers, events) for the record budgets. The count comes from the body, not the message.
pub fn check_body(config: &Config, endpoint: Endpoint, body: &[u8]) -> Result<(u64, u64), String> {
    let (max_bytes, limit_name) = match endpoint {
        Endpoint::Transition => (config.batch_max_bytes, "BATCH_MAX_BYTES"),
        _ => (SINGLE_REQUEST_MAX_BYTES, "MoEngage's single-request limit"),
    };
    if body.len() > max_bytes {
        return Err(format!(
            "the payload is {} bytes, over {limit_name} ({max_bytes})",
            body.len()
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the payload is not JSON ({e})"))?;
    let not_ours = |what: &str| format!("the payload is not a {} body: {what}", endpoint.name());
    let element = |e: &serde_json::Value, want: Option<&str>| -> Result<bool, String> {
        let obj = e
            .as_object()
            .ok_or_else(|| not_ours("an element is not an object"))?;
        let ty = obj.get("type").and_then(|t| t.as_str());
        let is_event = match (ty, want) {
            (Some(t), Some(w)) if t == w => t == "event",
            (Some(t @ ("customer" | "event")), None) => t == "event",
            _ => return Err(not_ours("an element's \"type\" is missing or unexpected")),
        };
        match obj.get("customer_id").and_then(|c| c.as_str()) {
            Some(id) if !id.is_empty() => {}
            _ => return Err(not_ours("an element has no customer_id")),
        }
        let has_actions = obj
            .get("actions")
            .and_then(|a| a.as_array())
            .is_some_and(|a| !a.is_empty());
        if is_event && !has_actions {
            return Err(not_ours("an event element has no actions"));
        }
        Ok(is_event)
    };
    match endpoint {
        Endpoint::Customer => element(&value, Some("customer")).map(|_| (1, 0)),
        Endpoint::Event => element(&value, Some("event")).map(|_| (0, 1)),
        Endpoint::Transition => {
            if value.get("type").and_then(|t| t.as_str()) != Some("transition") {
                return Err(not_ours("\"type\" is not \"transition\""));
            }
            let elements = value
                .get("elements")
                .and_then(|e| e.as_array())
                .filter(|a| !a.is_empty())
                .ok_or_else(|| not_ours("no elements"))?;
            if elements.len() > config.batch_max_records {
                return Err(format!(
                    "the payload has {} elements, over BATCH_MAX_RECORDS ({})",
                    elements.len(),
                    config.batch_max_records
                ));
            }
            let mut events = 0;
            for e in elements {
                events += u64::from(element(e, None)?);
            }
            Ok((elements.len() as u64 - events, events))
        }
        Endpoint::Delete => crate::batch::check_delete_body(&value)
            .map(|_| (0, 0))
            .map_err(not_ours),
        Endpoint::Authentication => Err("the connection test carries no data".into()),
    }
}

/// The exact bytes to send again: inline, or from the function's own store.
async fn payload_of(deps: &Deps, vetted: &Vetted) -> Result<Bytes, String> {
    match &vetted.payload {
        PayloadAt::Inline(b) => Ok(b.clone()),
        PayloadAt::S3 { bucket, key } => match deps.state.get(bucket, key).await {
            Ok(Some(body)) => Ok(Bytes::from(body)),
            Ok(None) => Err(format!("payload s3://{bucket}/{key} no longer exists")),
            Err(e) => Err(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::dead_letter::SourceRef;
    use crate::deliver::FailureDetail;

    fn config(extra: &[(&str, &str)]) -> Config {
        Config::from_lookup(|k| {
            extra
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
                .or(match k {
                    "MOENGAGE_DATA_CENTER" => Some("DC-01".into()),
                    "MOENGAGE_WORKSPACE_ID" => Some("WS1".into()),
                    "MOENGAGE_API_KEY" => Some("k".into()),
                    "OBJECT_TYPE" => Some("bulk_import".into()),
                    "DEAD_LETTER_QUEUE_URL" => Some("http://127.0.0.1:1/q".into()),
                    "SOURCE_BUCKET" => Some("exports".into()),
                    _ => None,
                })
        })
        .unwrap()
    }

    const BODY: &str = r#"{"type":"transition","elements":[{"type":"customer","customer_id":"u1","attributes":{}},{"type":"event","customer_id":"u2","actions":[{"action":"a"}]}]}"#;

    fn message(json: serde_json::Value) -> DeadLetterMessage {
        let mut base = serde_json::json!({
            "source": {"bucket":"exports","key":"in/u.csv","etag":"e","first_row":1,"last_row":2},
            "endpoint": "/v1/transition/WS1",
            "payload": serde_json::from_str::<serde_json::Value>(BODY).unwrap(),
            "records": 2, "error": {"reason":"x"}, "attempts": 1, "failed_at": "t"
        });
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn messages_this_function_writes_pass_old_and_new() {
        let c = config(&[]);
        let new = DeadLetterMessage::new(
            SourceRef {
                bucket: "exports".into(),
                key: "in/u.csv".into(),
                etag: "e".into(),
                version_id: None,
                first_row: 1,
                last_row: 2,
            },
            Endpoint::Transition,
            "WS1",
            BODY.as_bytes(),
            2,
            FailureDetail::default(),
            1,
        )
        .unwrap();
        let back: DeadLetterMessage =
            serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        let v = vet(&c, &back).unwrap();
        assert_eq!(v.endpoint, Endpoint::Transition);
        assert_eq!(v.payload, PayloadAt::Inline(Bytes::from(BODY)));
        // Written before `kind` existed: the path alone.
        assert_eq!(
            vet(&c, &message(serde_json::json!({}))).unwrap().endpoint,
            Endpoint::Transition
        );
        assert_eq!(
            check_body(&c, Endpoint::Transition, BODY.as_bytes()),
            Ok((1, 1))
        );
        let uri = "s3://exports/moengage-sync/dead-letters/exports/in/u.csv/rows-1-2-9.json";
        let v = vet(
            &c,
            &message(serde_json::json!({"payload": null, "payload_s3": uri})),
        )
        .unwrap();
        assert_eq!(
            v.payload,
            PayloadAt::S3 {
                bucket: "exports".into(),
                key: "moengage-sync/dead-letters/exports/in/u.csv/rows-1-2-9.json".into()
            }
        );
    }

    #[test]
    fn forged_messages_are_refused_with_their_reason() {
        let c = config(&[]);
        let cases = [
            (
                serde_json::json!({"endpoint": "@127.0.0.1:9/steal"}),
                "is not one this project writes",
            ),
            (
                serde_json::json!({"endpoint": "http://127.0.0.1:9/steal"}),
                "is not one this project writes",
            ),
            (
                serde_json::json!({"endpoint": ".evil@127.0.0.1:9/v1/transition/WS1"}),
                "is not one this project writes",
            ),
            (
                serde_json::json!({"kind": "steal"}),
                "unknown endpoint kind",
            ),
            (
                serde_json::json!({"kind": "authentication"}),
                "unknown endpoint kind",
            ),
            (
                serde_json::json!({"kind": "event", "app_id": "WS1"}),
                "does not match kind",
            ),
            (
                serde_json::json!({"endpoint": "/v1/transition/OTHER"}),
                "not the configured MOENGAGE_APP_ID",
            ),
            (
                serde_json::json!({"kind": "transition", "app_id": "OTHER", "endpoint": "/v1/transition/OTHER"}),
                "not the configured MOENGAGE_APP_ID",
            ),
            (
                serde_json::json!({"payload": null, "payload_s3": "s3://exports/in/u.csv"}),
                "is outside s3://exports/moengage-sync/dead-letters/exports/in/u.csv/",
            ),
            (
                serde_json::json!({"payload": null, "payload_s3": "s3://other/moengage-sync/dead-letters/exports/in/u.csv/x.json"}),
                "is outside",
            ),
            (
                serde_json::json!({"payload": null, "payload_s3": "s3://exports/moengage-sync/dead-letters/exports/in/u.csv/../../../in/u.csv"}),
                "is outside",
            ),
            (
                serde_json::json!({"payload": null, "payload_s3": "https://evil/x"}),
                "not an s3:// URI",
            ),
            (
                serde_json::json!({"payload": null}),
                "neither payload nor payload_s3",
            ),
        ];
        for (fields, why) in cases {
            let err = vet(&c, &message(fields.clone())).unwrap_err();
            assert!(err.contains(why), "{fields}: {err}");
        }
    }

    #[test]
    fn bodies_are_checked_for_shape_and_size() {
        let c = config(&[("BATCH_MAX_RECORDS", "2"), ("BATCH_MAX_BYTES", "1000")]);
        let t = Endpoint::Transition;
        let e = |n: usize| {
            let el = r#"{"type":"customer","customer_id":"u","attributes":{}}"#;
            format!(
                r#"{{"type":"transition","elements":[{}]}}"#,
                vec![el; n].join(",")
            )
        };
        assert_eq!(check_body(&c, t, e(2).as_bytes()), Ok((2, 0)));
        for (endpoint, body, why) in [
            (t, e(3), "over BATCH_MAX_RECORDS (2)"),
            (
                t,
                format!(
                    r#"{{"type":"transition","elements":[],"pad":"{}"}}"#,
                    "x".repeat(1000)
                ),
                "over BATCH_MAX_BYTES (1000)",
            ),
            (
                t,
                r#"{"hello":"world"}"#.to_string(),
                "not a transition body",
            ),
            (
                t,
                r#"{"type":"transition","elements":[]}"#.to_string(),
                "no elements",
            ),
            (
                t,
                r#"{"type":"transition","elements":[{"type":"admin","customer_id":"u"}]}"#
                    .to_string(),
                "type",
            ),
            (
                t,
                r#"{"type":"transition","elements":[{"type":"customer"}]}"#.to_string(),
                "no customer_id",
            ),
            (
                t,
                r#"{"type":"transition","elements":[{"type":"event","customer_id":"u"}]}"#
                    .to_string(),
                "no actions",
            ),
            (t, "not json".to_string(), "not JSON"),
            (
                Endpoint::Customer,
                r#"{"type":"event","customer_id":"u","actions":[{}]}"#.to_string(),
                "not a customer body",
            ),
            (
                Endpoint::Event,
                format!(
                    r#"{{"type":"event","customer_id":"u","actions":[{{"p":"{}"}}]}}"#,
                    "x".repeat(130_000)
                ),
                "single-request limit",
            ),
        ] {
            let err = check_body(&c, endpoint, body.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{body:.80}: {err}");
        }
        assert_eq!(
            check_body(
                &c,
                Endpoint::Event,
                br#"{"type":"event","customer_id":"u","actions":[{"action":"a"}]}"#
            ),
            Ok((0, 1))
        );
    }
}
