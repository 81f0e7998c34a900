//! Redrive: replays dead-letter messages once the cause is fixed. Each message's `payload` is sent
//! again, byte for byte, to its `endpoint`; messages that are delivered are deleted, the others
//! stay in the queue and are reported with the reason.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::dead_letter::DeadLetterMessage;
use crate::delivery::{self, Outcome};
use crate::handler::Deps;

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
    /// Still failing (left in the queue), with why.
    pub still_failing: Vec<StillFailing>,
    /// Messages left in the queue afterwards (approximate, as SQS counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_in_queue: Option<u64>,
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
            let msg: DeadLetterMessage = match serde_json::from_str(&m.body) {
                Ok(msg) => msg,
                Err(e) => {
                    fail(
                        &mut report,
                        format!("not a moengage-sync dead-letter message ({e})"),
                    );
                    to_release.push(m.receipt);
                    continue;
                }
            };
            let payload = match payload_of(deps, &msg).await {
                Ok(p) => p,
                Err(reason) => {
                    fail(&mut report, reason);
                    to_release.push(m.receipt);
                    continue;
                }
            };
            let records = record_kinds(&msg.endpoint, &payload, msg.records);
            let d = delivery::deliver(
                &deps.moengage,
                &deps.budget,
                &deps.config.retry,
                &msg.endpoint,
                payload,
                records,
                stop_at,
            )
            .await;
            match d.outcome {
                Outcome::Delivered { .. } => match deps.dead_letters.delete(&m.receipt).await {
                    Ok(()) => {
                        report.delivered += 1;
                        report.rows_delivered += msg.records;
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

/// (customers, events) in a replayed body, for the record budgets.
fn record_kinds(endpoint: &str, payload: &[u8], records: u64) -> (u64, u64) {
    if endpoint.contains("/event/") {
        return (0, records);
    }
    if !endpoint.contains("/transition/") {
        return (records, 0);
    }
    let events = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| {
            v.get("elements")
                .and_then(|e| e.as_array())
                .map(|a| a.iter().filter(|e| e["type"] == "event").count() as u64)
        })
        .unwrap_or(0);
    (records.saturating_sub(events), events)
}

/// The exact bytes to send again: inline, or from S3 when the message points there.
async fn payload_of(deps: &Deps, msg: &DeadLetterMessage) -> Result<Bytes, String> {
    if let Some(p) = &msg.payload {
        return Ok(Bytes::copy_from_slice(p.get().as_bytes()));
    }
    let uri = msg
        .payload_s3
        .as_deref()
        .ok_or("the message has neither payload nor payload_s3")?;
    let (bucket, key) = uri
        .strip_prefix("s3://")
        .and_then(|r| r.split_once('/'))
        .ok_or_else(|| format!("payload_s3 {uri:?} is not an s3:// URI"))?;
    match deps.state.get(bucket, key).await {
        Ok(Some(body)) => Ok(Bytes::from(body)),
        Ok(None) => Err(format!("payload {uri} no longer exists")),
        Err(e) => Err(e.to_string()),
    }
}
