//! Work items: what the function asks of itself through the SQS work queue — chiefly
//! continuations of objects too long for one invocation (and enqueued objects).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::aws::aws_error_text;

/// The body of a work-queue message: `{"moengage_sync": {…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkMessage {
    pub moengage_sync: WorkItem,
}

/// Process (or continue) one object version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    pub bucket: String,
    pub key: String,
    /// The version the checkpoint belongs to; a different current ETag means the object was
    /// overwritten, and the new version is processed from its start.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub etag: Option<String>,
    /// Informational: where the continuation resumes (the run marker is the source of truth).
    #[serde(default)]
    pub resume_after_row: u64,
    /// Ignore the sync state for this object and rebuild it (`FULL_RESYNC` for one run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_resync: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("work queue: {0}")]
pub struct WorkQueueError(pub String);

/// Sending work items to ourselves.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    async fn enqueue(&self, item: &WorkItem) -> Result<(), WorkQueueError>;
    /// A mirror pass to continue: `{"mirror": {…}}`.
    async fn enqueue_mirror(&self, request: &MirrorRequest) -> Result<(), WorkQueueError>;
}

/// The SQS queue named by `WORK_QUEUE_URL`.
pub struct SqsWorkQueue {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

#[async_trait]
impl WorkQueue for SqsWorkQueue {
    async fn enqueue(&self, item: &WorkItem) -> Result<(), WorkQueueError> {
        let body = serde_json::to_string(&WorkMessage {
            moengage_sync: item.clone(),
        })
        .map_err(|e| WorkQueueError(e.to_string()))?;
        self.send(body).await
    }

    async fn enqueue_mirror(&self, request: &MirrorRequest) -> Result<(), WorkQueueError> {
        let body = serde_json::json!({ "mirror": request }).to_string();
        self.send(body).await
    }
}

impl SqsWorkQueue {
    async fn send(&self, body: String) -> Result<(), WorkQueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                WorkQueueError(format!(
                    "could not send to {}: {}",
                    self.queue_url,
                    aws_error_text(&e)
                ))
            })
    }
}

/// A request for a snapshot's deletion pass: the work item `{"mirror": {…}}`, for exports that
/// write no completion marker; `max_delete_percent` lets one reviewed snapshot past the guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorRequest {
    pub bucket: String,
    /// The snapshot's folder, ending in `/`.
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delete_percent: Option<u32>,
    /// When the request was made (epoch seconds): an SQS message's `SentTimestamp`, the same on
    /// every redelivery; `None` for a direct invocation (then: now). The request stands for the
    /// data objects that had landed by then. Never read from the payload.
    #[serde(skip)]
    pub sent_at: Option<i64>,
}
