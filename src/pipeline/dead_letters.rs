//! Dead-lettering one undeliverable body: the exact payload to SQS, or to S3 under the state
//! prefix when it is too large for an SQS message, with a pointer in the message.

use super::FatalError;
use crate::app::Deps;
use crate::batch::Batch;
use crate::deliver::dead_letter::{self, DeadLetterError, DeadLetterMessage, SourceRef, StateNote};
use crate::deliver::FailureDetail;

/// Sends `batch`'s body to the dead-letter queue; returns the message id. An error here must fail
/// the invocation: a body neither delivered nor dead-lettered would be lost.
pub(super) async fn send(
    deps: &Deps,
    source: SourceRef,
    batch: &Batch,
    body: &[u8],
    detail: FailureDetail,
    attempts: u32,
    scope: &str,
) -> Result<String, FatalError> {
    let (bucket, key) = (source.bucket.clone(), source.key.clone());
    let fatal = |source: DeadLetterError| FatalError::DeadLetter {
        bucket: bucket.clone(),
        key: key.clone(),
        first_row: batch.first_row,
        last_row: batch.last_row,
        source,
    };
    tracing::warn!(%bucket, %key, first_row = batch.first_row, last_row = batch.last_row, reason = %detail.reason, "dead-lettering a request body");
    let mut msg = DeadLetterMessage::new(
        source,
        batch.endpoint,
        &deps.config.app_id,
        body,
        batch.records,
        detail,
        attempts,
    )
    .map_err(fatal)?;
    // The state lives in the state bucket, by default the object's own (as `open_sync_state`).
    let state_bucket = deps
        .config
        .state_bucket
        .clone()
        .unwrap_or_else(|| bucket.clone());
    if !batch.prints.is_empty() {
        // Redrive records these rows in the sync state once MoEngage accepts the body.
        msg.sync_state = Some(StateNote::new(
            &deps.moengage,
            &state_bucket,
            scope,
            &batch.prints,
            body,
        ));
    }
    if msg.encoded_len() > dead_letter::MAX_INLINE_MESSAGE_BYTES {
        // Over SQS's message size: the payload goes to S3 and the message points to it.
        let payload_key = format!(
            "{}rows-{}-{}-{}.json",
            dead_letter::payload_prefix(&deps.config.state_prefix, &bucket, &key),
            batch.first_row,
            batch.last_row,
            chrono::Utc::now().timestamp_millis()
        );
        deps.state
            .put(&state_bucket, &payload_key, body.to_vec(), false)
            .await
            .map_err(|e| {
                fatal(DeadLetterError(format!(
                    "payload too large for SQS and could not be stored in S3: {e}"
                )))
            })?;
        msg.move_payload_to(format!("s3://{state_bucket}/{payload_key}"));
    }
    deps.dead_letters.send(&msg).await.map_err(fatal)
}
