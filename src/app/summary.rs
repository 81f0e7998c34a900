//! The handler's response to Lambda: one line per object, invocation notes, the redrive report and
//! SQS's partial-batch failures.

use serde::{Deserialize, Serialize};

use crate::account::report::ObjectSummary;
use crate::app::redrive::RedriveReport;

/// The handler's response: DESIGN's `{"objects":[…]}`, plus SQS partial-batch failures when
/// invoked from SQS (Lambda reads `batchItemFailures` and ignores the rest).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub objects: Vec<ObjectSummary>,
    #[serde(
        rename = "batchItemFailures",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub batch_item_failures: Option<Vec<BatchItemFailure>>,
    /// Invocation-level notes (skipped markers, test events, continuations…).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub notes: Vec<String>,
    /// For a redrive invocation: what was replayed and what is left.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub redrive: Option<RedriveReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}
