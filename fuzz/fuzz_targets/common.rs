// Shared by the targets (included with `include!`, as each target is its own crate root).

use moengage_sync::decode::{self, DecodeInput, Format, InputLimits, Opened, RowSource};

/// Small limits, so that the fuzzer reaches them with small inputs; the buffers must stay within.
#[allow(dead_code)]
fn limits() -> InputLimits {
    InputLimits {
        max_row_bytes: 64 << 10,
        max_header_bytes: 16 << 10,
        max_columns: 256,
        parquet_max_chunk_bytes: 4 << 20,
    }
}

/// Reads every row and every cell of `rows`, as the mapping would, and as the first pass of a
/// re-sync fingerprints them: both must give the same canonical bytes, or an unchanged row would
/// be resent (or a changed one skipped) for the way it was read.
#[allow(dead_code)]
fn drain(rows: &mut dyn RowSource) {
    let width = rows.header().len();
    let mut n = 0;
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    while let Ok(Some(row)) = rows.next_row() {
        if let Ok(row) = row {
            for i in 0..width + 1 {
                fast.clear();
                slow.clear();
                let written = row.row.write_canonical(i, &mut fast);
                match row.row.cell(i) {
                    Ok(cell) => {
                        cell.write_canonical(&mut slow);
                        assert!(written && fast == slow, "cell {i}: canonical forms differ");
                    }
                    Err(_) => assert!(!written, "cell {i} unreadable, yet written"),
                }
            }
        }
        n += 1;
        if n > 100_000 {
            break;
        }
    }
}

/// Opens `data` as `format` through the function's own entry point (compression sniffed).
#[allow(dead_code)]
fn decode_as(data: &[u8], format: Format, csv: decode::CsvOptions) {
    let input = DecodeInput {
        reader: Box::new(data),
        key: "fuzz/object",
        content_encoding: None,
        format: Some(format),
        compression: None,
        csv,
        limits: limits(),
        ranged: None,
    };
    match decode::open(input) {
        Ok(Opened::Csv(mut r)) => drain(&mut *r),
        Ok(Opened::Ndjson(mut r)) => drain(&mut r),
        Ok(Opened::Parquet(mut r)) => drain(&mut r),
        Err(e) => {
            // Errors are bounded texts.
            assert!(e.to_string().len() < 8 << 10, "error of {} bytes", e.to_string().len());
        }
    }
}

/// The configuration the payload targets check against.
#[allow(dead_code)]
fn config() -> &'static moengage_sync::config::Config {
    static CONFIG: std::sync::OnceLock<moengage_sync::config::Config> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        moengage_sync::config::Config::from_lookup(|name| {
            Some(
                match name {
                    "MOENGAGE_DATA_CENTER" => "1",
                    "MOENGAGE_WORKSPACE_ID" => "WS",
                    "MOENGAGE_API_KEY" => "key",
                    "DEAD_LETTER_QUEUE_URL" => "https://sqs.us-east-1.amazonaws.com/1/dlq",
                    "OBJECT_TYPE" => "user_attributes",
                    "PRIMARY_KEY" => "id",
                    "SOURCE_PREFIX" => "exports/",
                    "STATE_BUCKET" => "state",
                    _ => return None,
                }
                .to_string(),
            )
        })
        .expect("fuzz config")
    })
}
