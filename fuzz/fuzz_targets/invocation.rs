//! Invocation payloads: whatever JSON Lambda hands the function (S3 notifications, SQS events,
//! work items, schedules, redrive requests, anything else).
#![no_main]
use libfuzzer_sys::fuzz_target;
include!("common.rs");
use moengage_sync::app::invocation;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let mut notes = Vec::new();
    if invocation::is_sqs(&payload) {
        if let Some(records) = payload["Records"].as_array() {
            for r in records {
                if let Some(body) = r["body"].as_str() {
                    if let Ok(inner) = serde_json::from_str::<serde_json::Value>(body) {
                        let _ = invocation::parse(&inner, config(), &mut notes);
                    }
                }
            }
        }
    }
    match invocation::parse(&payload, config(), &mut notes) {
        Ok(_) => {}
        Err(e) => assert!(
            e.to_string().len() < 8 << 10,
            "error of {} bytes",
            e.to_string().len()
        ),
    }
    assert!(notes.iter().all(|n| n.len() < 8 << 10));
});
