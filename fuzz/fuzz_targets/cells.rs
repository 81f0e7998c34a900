//! One cell converted to every declared type, as text and as the JSON value NDJSON would give.
#![no_main]
use libfuzzer_sys::fuzz_target;
use moengage_sync::map::convert::{write_value, Cell, FieldType};

const TYPES: [Option<FieldType>; 9] = [
    None,
    Some(FieldType::String),
    Some(FieldType::Number),
    Some(FieldType::Integer),
    Some(FieldType::Boolean),
    Some(FieldType::Datetime),
    Some(FieldType::Date),
    Some(FieldType::Array),
    Some(FieldType::Json),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let json: Option<serde_json::Value> = serde_json::from_str(text).ok();
    for ty in TYPES {
        let mut cells = vec![Cell::Str(text)];
        // The decoders make a number cell only from a number's exact text (NDJSON, Parquet).
        if serde_json::from_str::<serde_json::Number>(text).is_ok() {
            cells.push(Cell::Number(text));
        }
        if let Some(v) = &json {
            cells.push(Cell::Json(v));
        }
        for cell in cells {
            let (mut out, mut warnings) = (Vec::new(), Vec::new());
            match write_value(cell, ty, &mut out, &mut warnings) {
                // What is written is one JSON value MoEngage can parse.
                Ok(true) => {
                    serde_json::from_slice::<serde_json::Value>(&out).unwrap_or_else(|e| {
                        panic!(
                            "{ty:?}: wrote invalid JSON {e}: {:?}",
                            String::from_utf8_lossy(&out)
                        )
                    });
                }
                Ok(false) => assert!(out.is_empty()),
                // Reasons quote values short, whatever their length.
                Err(e) => assert!(e.0.len() < 1024, "reason of {} bytes", e.0.len()),
            }
        }
    }
});
