//! Every export format × compression becomes the same MoEngage elements (one golden set, compared
//! field by field); CSV edge cases; Parquet read by bounded range requests from S3; corrupt or
//! foreign files fail their object with a reason.

#[path = "../fixtures/users.rs"]
mod users;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use moengage_sync::account::report::Status;
use moengage_sync::config::Config;
use moengage_sync::decode::{
    Compression, DecodeInput, Format, ParquetRows, RangedObject, RowSource, S3Ranges,
};
use moengage_sync::pipeline::{self, DryRun};
use moengage_sync::source::{ListedObject, ObjectMeta, ObjectSource, SourceError, SourceObject};
use serde_json::Value;

use crate::support::Stack;
use users::Codec;

const ROWS: u64 = 500;

fn config(mapping: &str, extra: &[(&str, &str)]) -> Config {
    let mut env: BTreeMap<String, String> = [
        ("MOENGAGE_DATA_CENTER", "DC-01"),
        ("MOENGAGE_WORKSPACE_ID", "WS"),
        ("MOENGAGE_API_KEY", "k"),
        ("OBJECT_TYPE", "bulk_import"),
        ("DEAD_LETTER_QUEUE_URL", "http://127.0.0.1:1/q"),
        ("FIELD_MAPPING", mapping),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|k| env.get(k).cloned()).expect("valid config")
}

fn dry(
    bytes: Vec<u8>,
    key: &str,
    format: Option<Format>,
    compression: Option<Compression>,
) -> DryRun {
    let input = DecodeInput {
        reader: Box::new(Cursor::new(bytes)),
        key,
        content_encoding: None,
        format,
        compression,
        csv: Default::default(),
        limits: moengage_sync::decode::InputLimits::default(),
        ranged: None,
    };
    let config = config(users::MAPPING, &[]);
    pipeline::dry_run(&config, &config.syncs.syncs[0], input, u64::MAX)
}

/// Compares one element with the golden one, field by field, naming the first difference.
fn assert_element(label: &str, got: &Value, want: &Value) {
    let id = want["customer_id"].as_str().unwrap_or_default();
    assert_eq!(got["type"], want["type"], "{label} {id}: type");
    assert_eq!(
        got["customer_id"], want["customer_id"],
        "{label}: customer_id"
    );
    let (g, w) = (
        got["attributes"].as_object().expect("attributes"),
        want["attributes"].as_object().expect("attributes"),
    );
    for (field, value) in w {
        assert_eq!(g.get(field), Some(value), "{label} {id}: attribute {field}");
    }
    for field in g.keys() {
        assert!(
            w.contains_key(field),
            "{label} {id}: unexpected attribute {field} = {}",
            g[field]
        );
    }
}

fn assert_golden(label: &str, run: &DryRun, rows: u64) {
    assert_eq!(run.failure, None, "{label}");
    assert!(
        run.rejected.is_empty(),
        "{label}: {:?}",
        &run.rejected[..run.rejected.len().min(3)]
    );
    assert_eq!(run.rows_read, rows, "{label}");
    let mut n = 0;
    for body in &run.bodies {
        let v: Value = serde_json::from_slice(&body.body).expect("body is JSON");
        for element in v["elements"].as_array().expect("elements") {
            n += 1;
            assert_element(label, element, &users::expected_element(n));
        }
    }
    assert_eq!(n, rows, "{label}: elements");
}

#[test]
fn every_format_and_compression_gives_the_golden_elements() {
    let csv = users::csv(ROWS, b',');
    let tsv = users::csv(ROWS, b'\t');
    let ndjson = users::ndjson(ROWS);
    type Case = (&'static str, Vec<u8>, Option<Format>, Option<Compression>);
    let cases: Vec<Case> = vec![
        ("unload/data_0_0_0.csv", csv.clone(), None, None),
        ("unload/data_0_0_0.csv.gz", users::gzip(&csv), None, None),
        ("unload/data_0_0_0.csv.zst", users::zstd(&csv), None, None),
        ("exports/users.tsv", tsv.clone(), None, None),
        ("exports/users.tsv.gz", users::gzip(&tsv), None, None),
        ("bq/000000000000.json", ndjson.clone(), None, None),
        ("bq/000000000000.json.gz", users::gzip(&ndjson), None, None),
        ("bq/users.jsonl.zst", users::zstd(&ndjson), None, None),
        ("bq/users.ndjson", ndjson.clone(), None, None),
        (
            "rs/0000_part_00.parquet",
            users::parquet(ROWS, 128, Codec::Snappy),
            None,
            None,
        ),
        (
            "sf/data_0_0_0.snappy.parquet",
            users::parquet(ROWS, 10_000, Codec::Gzip),
            None,
            None,
        ),
        (
            "x/users.parquet",
            users::parquet(ROWS, 200, Codec::Zstd),
            None,
            None,
        ),
        (
            "x/plain.parquet",
            users::parquet(ROWS, 200, Codec::Uncompressed),
            None,
            None,
        ),
        // No telling extension: magic bytes decide.
        (
            "rs/0000_part_00",
            users::parquet(ROWS, 100, Codec::Snappy),
            None,
            None,
        ),
        ("rs/0001_part_00", users::gzip(&csv), None, None),
        ("rs/0002_part_00", users::zstd(&ndjson), None, None),
        ("rs/0003_part_00", ndjson.clone(), None, None),
        // SOURCE_FORMAT / SOURCE_COMPRESSION win over the key.
        (
            "exports/users.dat",
            users::gzip(&ndjson),
            Some(Format::Ndjson),
            Some(Compression::Gzip),
        ),
        ("exports/users.txt", tsv.clone(), Some(Format::Tsv), None),
    ];
    for (key, bytes, format, compression) in cases {
        assert_golden(key, &dry(bytes, key, format, compression), ROWS);
    }
}

#[test]
fn csv_with_bom_crlf_embedded_newlines_and_doubled_quotes() {
    let input = "\u{feff}user_id,note,city\r\nu-1,\"say \"\"hi\"\"\",\"Paris, FR\"\r\nu-2,\"two\r\nlines\",Oslo\r\nu-3,plain,\r\n";
    let input_run = DecodeInput {
        reader: Box::new(Cursor::new(input.as_bytes().to_vec())),
        key: "e.csv",
        content_encoding: None,
        format: None,
        compression: None,
        csv: Default::default(),
        limits: moengage_sync::decode::InputLimits::default(),
        ranged: None,
    };
    let config = config(
        r#"{"customer_id":"user_id","note":"note","city":"city"}"#,
        &[],
    );
    let run = pipeline::dry_run(&config, &config.syncs.syncs[0], input_run, 100);
    assert_eq!(run.failure, None);
    assert!(run.rejected.is_empty(), "{:?}", run.rejected);
    let body: Value = serde_json::from_slice(&run.bodies[0].body).unwrap();
    let e = body["elements"].as_array().unwrap();
    assert_eq!(
        e[0]["attributes"],
        serde_json::json!({"note": "say \"hi\"", "city": "Paris, FR"})
    );
    assert_eq!(
        e[1]["attributes"],
        serde_json::json!({"note": "two\r\nlines", "city": "Oslo"})
    );
    assert_eq!(
        e[2]["attributes"],
        serde_json::json!({"note": "plain"}),
        "an empty cell is left out"
    );
}

#[test]
fn unsupported_and_corrupt_files_fail_with_a_reason() {
    let mut corrupt_gzip = users::gzip(&users::csv(20_000, b','));
    let mid = corrupt_gzip.len() / 2;
    corrupt_gzip[mid..mid + 64].fill(0x55);
    let parquet = users::parquet(2_000, 500, Codec::Snappy);
    let truncated = parquet[..parquet.len() * 2 / 3].to_vec();
    let garbage: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a.csv.gz", corrupt_gzip, "could not be read to the end"),
        ("b.parquet", truncated.clone(), "truncated"),
        ("b_part_00", truncated, "truncated"),
        ("c.bin", garbage.clone(), "binary data"),
        ("c.parquet", garbage.clone(), "no PAR1 footer"),
        ("c.json.gz", garbage, "invalid gzip header"),
        ("d.json", b"[{\"a\":1}]".to_vec(), "not NDJSON"),
    ];
    for (key, bytes, reason) in cases {
        let run = dry(bytes, key, None, None);
        let failure = run.failure.unwrap_or_else(|| panic!("{key} must fail"));
        assert!(failure.contains(reason), "{key}: {failure}");
    }
}

/// An ObjectSource that records every ranged read.
struct Counting {
    inner: Arc<dyn ObjectSource>,
    ranges: Mutex<Vec<(u64, u64)>>,
}

#[async_trait]
impl ObjectSource for Counting {
    async fn open(&self, bucket: &str, key: &str) -> Result<SourceObject, SourceError> {
        self.inner.open(bucket, key).await
    }
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, SourceError> {
        self.inner.head(bucket, key).await
    }
    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, SourceError> {
        self.ranges.lock().unwrap().push((start, end));
        self.inner.read_range(bucket, key, start, end).await
    }
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, SourceError> {
        self.inner.list(bucket, prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_is_read_from_s3_in_bounded_range_requests() {
    let stack = Stack::start().await;
    let rows = 60_000;
    let file = users::parquet(rows, 15_000, Codec::Snappy);
    let size = file.len() as u64;
    stack.put("rs/0000_part_00.parquet", file).await;
    let counting = Arc::new(Counting {
        inner: Arc::new(stack.s3.clone()),
        ranges: Mutex::new(Vec::new()),
    });

    // A 12 × 64 KiB window budget: every request is at most 64 KiB, far below the file's size.
    let ranged = RangedObject {
        source: counting.clone(),
        bucket: stack.bucket.clone(),
        key: "rs/0000_part_00.parquet".into(),
        size: 0,
        etag: None,
        runtime: tokio::runtime::Handle::current(),
    };
    let read = tokio::task::spawn_blocking(move || {
        let mut rows = ParquetRows::open_with(
            Arc::new(S3Ranges::new(ranged).expect("head")),
            12 * 64 * 1024,
            moengage_sync::decode::InputLimits::default(),
        )
        .expect("open");
        let mut n = 0u64;
        while let Some(row) = rows.next_row().expect("read") {
            row.expect("row");
            n += 1;
        }
        n
    })
    .await
    .unwrap();
    assert_eq!(read, rows);
    let ranges = counting.ranges.lock().unwrap().clone();
    let fetched: u64 = ranges.iter().map(|(s, e)| e - s).sum();
    let largest = ranges.iter().map(|(s, e)| e - s).max().unwrap();
    assert!(
        size > 8 * 64 * 1024,
        "the file ({size} bytes) must be much larger than one window"
    );
    assert!(
        largest <= 64 * 1024,
        "a request fetched {largest} bytes; the window is 64 KiB"
    );
    // Each byte once, plus the footer read (≤ 64 KiB), which may overlap the last column chunks.
    assert!(
        fetched <= size + 64 * 1024,
        "fetched {fetched} bytes of a {size}-byte file: something was read twice"
    );
    assert!(
        ranges.len() as u64 >= size / (64 * 1024),
        "{} requests for {size} bytes",
        ranges.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_end_to_end_through_the_handler() {
    let stack = Stack::start().await;
    // The same rows in every file: without FULL_RESYNC the sync state would (rightly) skip them
    // after the first file as unchanged.
    let mut deps = stack
        .deps(&[("FIELD_MAPPING", users::MAPPING), ("FULL_RESYNC", "true")])
        .await;
    let counting = Arc::new(Counting {
        inner: deps.source.clone(),
        ranges: Mutex::new(Vec::new()),
    });
    deps.source = counting.clone();
    let rows = 300;
    let csv = users::csv(rows, b',');
    let parquet = users::parquet(rows, 100, Codec::Snappy);
    let parquet_size = parquet.len() as u64;
    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("sf/data_0_0_0.csv.gz", users::gzip(&csv)),
        ("sf/data_0_0_1.csv.zst", users::zstd(&csv)),
        ("bq/000000000000.json.gz", users::gzip(&users::ndjson(rows))),
        ("rs/0000_part_00.parquet", parquet),
        ("rs/0001_part_00", users::gzip(&users::csv(rows, b'\t'))),
        ("x/users.tsv", users::csv(rows, b'\t')),
    ];
    for (key, body) in &objects {
        stack.put(key, body.clone()).await;
        let summary = stack.invoke(&deps, key).await;
        let obj = &summary.objects[0];
        assert_eq!(obj.status, Status::Complete, "{key}: {obj:?}");
        assert_eq!(
            (obj.rows_read, obj.rows_delivered, obj.rows_rejected),
            (rows, rows, 0),
            "{key}"
        );
    }
    let state = stack.state();
    assert!(state.dropped.is_empty(), "{:?}", state.dropped);
    assert_eq!(state.accepted.len() as u64, rows * objects.len() as u64);
    for record in &state.accepted {
        let i: u64 = record.customer_id.trim_start_matches("u-").parse().unwrap();
        assert_element("end to end", &record.element, &users::expected_element(i));
    }
    for i in 1..=rows {
        let want = users::expected_element(i);
        let got = &state.users[want["customer_id"].as_str().unwrap()];
        assert_eq!(&Value::Object(got.clone()), &want["attributes"]);
    }
    let all = counting.ranges.lock().unwrap().clone();
    // Opened twice (the state held these users already: a first pass classifies them, the
    // second sends), never read whole: the footer, then each column chunk of each of the 3 row
    // groups by its own range.
    let (opens, ranges): (Vec<_>, Vec<_>) =
        all.iter().partition(|&&(s, e)| (s, e) == (0, parquet_size));
    assert_eq!(opens.len(), 2, "{all:?}");
    assert!(
        ranges.len() >= 2 * 3 * users::HEADER.len(),
        "Parquet is read by ranges: {ranges:?}"
    );
    assert!(
        ranges.iter().all(|(s, e)| e - s < parquet_size / 3),
        "one column chunk per request: {ranges:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_objects_fail_in_s3_without_delivering_rows() {
    let stack = Stack::start().await;
    let deps = stack.deps(&[("FIELD_MAPPING", users::MAPPING)]).await;
    let parquet = users::parquet(1_000, 250, Codec::Snappy);
    let garbage: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut bad_gzip = users::gzip(&users::csv(20_000, b','));
    let mid = bad_gzip.len() / 2;
    bad_gzip[mid..mid + 64].fill(0);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bad/truncated.parquet",
            parquet[..parquet.len() / 2].to_vec(),
            "truncated",
        ),
        ("bad/garbage", garbage, "binary data"),
        (
            "bad/corrupt.csv.gz",
            bad_gzip,
            "could not be read to the end",
        ),
    ];
    for (key, body, reason) in cases {
        stack.put(key, body).await;
        let summary = stack.invoke(&deps, key).await;
        let obj = &summary.objects[0];
        assert_eq!(obj.status, Status::Failed, "{key}: {obj:?}");
        assert!(obj.balanced(), "{key}: {obj:?}");
        let error = obj.error.as_deref().unwrap_or_default();
        assert!(error.contains(reason), "{key}: {error}");
        if key != "bad/corrupt.csv.gz" {
            assert_eq!(obj.rows_delivered, 0, "{key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semicolon_export_needs_csv_delimiter_and_then_arrives_whole() {
    let stack = Stack::start().await;
    let rows = 120;
    let key = "eu/users.csv.gz";
    stack.put(key, users::gzip(&users::csv(rows, b';'))).await;

    // Read as commas, the header is one column: the object fails before anything is sent, and
    // says which variable to set.
    let plain = stack.deps(&[("FIELD_MAPPING", users::MAPPING)]).await;
    let summary = stack.invoke(&plain, key).await;
    let obj = &summary.objects[0];
    assert_eq!(obj.status, Status::Failed, "{obj:?}");
    let error = obj.error.as_deref().unwrap_or_default();
    assert!(error.contains("set CSV_DELIMITER"), "{error}");
    assert!(stack.state().accepted.is_empty());

    let deps = stack
        .deps(&[("FIELD_MAPPING", users::MAPPING), ("CSV_DELIMITER", ";")])
        .await;
    let summary = stack.invoke(&deps, key).await;
    let obj = &summary.objects[0];
    assert_eq!(obj.status, Status::Complete, "{obj:?}");
    assert_eq!(
        (obj.rows_read, obj.rows_delivered, obj.rows_rejected),
        (rows, rows, 0)
    );
    let state = stack.state();
    assert_eq!(state.accepted.len() as u64, rows);
    for record in &state.accepted {
        let i: u64 = record.customer_id.trim_start_matches("u-").parse().unwrap();
        assert_element("semicolons", &record.element, &users::expected_element(i));
    }
}
