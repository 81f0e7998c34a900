//! AWS SDK helpers shared by every adapter (S3 source and state, SQS queues, Secrets Manager).
//! Imports nothing from the crate.

/// An SDK error with its cause chain (the SDK's Display alone says only "service error").
pub fn aws_error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
