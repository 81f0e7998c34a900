//! `make bench`: throughput, memory and batching of the whole CPU path (decode → map → validate →
//! batch → serialize, bodies discarded: `pipeline::drain`) on generated 12-column users exports at
//! several sizes, in CSV.gz, NDJSON.gz and Parquet; cold start of the release binary; and one run
//! end to end against moto + the MoEngage emulator with the rate limit lifted.
//!
//! Each measurement runs in a child process (this binary, `--child …`) so its peak RSS
//! (`VmHWM`) and CPU time are its own. Knobs: `BENCH_ROWS` (default `100000,1000000,5000000`),
//! `BENCH_DIR` (where exports are generated and kept; default `target/bench-data`),
//! `BENCH_BIN` (the release `moengage-sync` binary, for cold start), `MOTO_SERVER` (for the
//! end-to-end run; skipped without it).

#[path = "../tests/fixtures/users.rs"]
mod users;

#[allow(clippy::duplicate_mod)]
#[path = "../tests/it/support.rs"]
mod support;

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moengage_sync::config::Config;
use moengage_sync::decode::{DecodeInput, RangedObject};
use moengage_sync::pipeline;
use moengage_sync::source::{ListedObject, ObjectMeta, ObjectSource, SourceError, SourceObject};

const FORMATS: [&str; 3] = ["csv.gz", "json.gz", "parquet"];
/// Runs per format and size; the median is reported.
const RUNS: usize = 3;
/// The Transition limits the batches are measured against.
const MAX_ELEMENTS: f64 = 50.0;
const MAX_BYTES: f64 = 100_000.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2], Path::new(&args[3]));
    }
    let dir =
        PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "target/bench-data".into()));
    std::fs::create_dir_all(&dir).expect("create BENCH_DIR");
    let sizes: Vec<u64> = std::env::var("BENCH_ROWS")
        .unwrap_or_else(|_| "100000,1000000,5000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_ROWS: comma-separated row counts")
        })
        .collect();

    println!("## drain: decode → map → validate → batch → serialize (bodies discarded), one child process per run, median of {RUNS} runs\n");
    println!("rows/s is rows over wall time; rows/CPU-s is rows per second the decode thread spent on a CPU, and");
    println!("\"waiting s\" the time it was ready to run but had none (other load on the machine) — from schedstat.\n");
    println!("| format | rows | input MB | wall s | rows/s | rows/CPU-s | waiting s | input MB/s | process CPU s | peak RSS MiB | requests | elements/request | bytes/request | fill vs limits | rows/s slowest–fastest |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &rows in &sizes {
        for format in FORMATS {
            let path = dir.join(format!("users_{rows}.{format}"));
            if !path.exists() {
                let t = Instant::now();
                generate(&path, format, rows);
                eprintln!(
                    "generated {} in {:.1} s",
                    path.display(),
                    t.elapsed().as_secs_f64()
                );
            }
            // Shared 2-vCPU machines are noisy: each run is repeated and the median (by rows/s)
            // is shown, with the slowest and fastest rates beside it.
            let mut runs: Vec<(f64, String)> = (0..RUNS)
                .map(|_| {
                    let out = Command::new(std::env::current_exe().expect("own path"))
                        .args(["--child", format, path.to_str().expect("utf-8 path")])
                        .stderr(Stdio::inherit())
                        .output()
                        .expect("run child");
                    assert!(out.status.success(), "child failed for {}", path.display());
                    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    let rate = line
                        .split('|')
                        .nth(5)
                        .and_then(|c| c.trim().parse().ok())
                        .expect("rows/s column");
                    (rate, line)
                })
                .collect();
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let line = &runs[runs.len() / 2].1;
            let (slowest, fastest) = (runs[0].0, runs[runs.len() - 1].0);
            println!("{line} {:.0}–{:.0} |", slowest, fastest);
            std::io::stdout().flush().ok();
        }
    }
    cold_start();
    end_to_end(&dir);
}

/// Writes a generated export, streaming (memory stays small even for millions of rows).
fn generate(path: &Path, format: &str, rows: u64) {
    let tmp = path.with_extension("partial");
    let file = BufWriter::with_capacity(1 << 20, File::create(&tmp).expect("create"));
    const CHUNK: u64 = 100_000;
    match format {
        "csv.gz" | "json.gz" => {
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            let mut from = 1;
            while from <= rows {
                let to = (from + CHUNK - 1).min(rows);
                if format == "csv.gz" {
                    users::write_csv(&mut gz, from, to, b',', from == 1).expect("write");
                } else {
                    users::write_ndjson(&mut gz, from, to).expect("write");
                }
                from = to + 1;
            }
            gz.finish().expect("gzip").flush().expect("flush");
        }
        // Row groups of 128 Ki rows, snappy: what Snowflake/Redshift unloads look like.
        "parquet" => {
            users::write_parquet(file, rows, 128 * 1024, users::Codec::Snappy).expect("parquet")
        }
        other => panic!("unknown format {other}"),
    }
    std::fs::rename(&tmp, path).expect("rename");
}

fn bench_config() -> Config {
    let env = |k: &str| {
        Some(
            match k {
                "MOENGAGE_DATA_CENTER" => "DC-01",
                "MOENGAGE_WORKSPACE_ID" => "BENCH",
                "MOENGAGE_API_KEY" => "bench-key",
                "OBJECT_TYPE" => "bulk_import",
                "DEAD_LETTER_QUEUE_URL" => "http://127.0.0.1:1/q",
                "FIELD_MAPPING" => users::MAPPING,
                _ => return None,
            }
            .to_string(),
        )
    };
    Config::from_lookup(env).expect("bench config")
}

/// One drain run; prints one table row.
fn child(format: &str, path: &Path) {
    let config = bench_config();
    let size = std::fs::metadata(path).expect("export exists").len();
    let key = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (reader, ranged): (Box<dyn Read + Send>, _) = if format == "parquet" {
        // The Lambda's path: range reads through an ObjectSource, block_on from the decode thread.
        let ranged = RangedObject {
            source: Arc::new(LocalFiles),
            bucket: "local".into(),
            key: path.to_str().expect("utf-8").into(),
            size,
            etag: None,
            runtime: runtime.handle().clone(),
        };
        (Box::new(std::io::empty()), Some(ranged))
    } else {
        (Box::new(File::open(path).expect("open")), None)
    };
    let input = DecodeInput {
        reader,
        key: &key,
        content_encoding: None,
        format: None,
        compression: None,
        csv: Default::default(),
        limits: config.input_limits,
        ranged,
    };
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let stats = pipeline::drain(&config, &config.syncs.syncs[0], input);
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(stats.failure, None, "{key}");
    assert_eq!(stats.rows_rejected, 0, "{key}");
    let requests = stats.requests.max(1) as f64;
    let per_request = stats.elements as f64 / requests;
    let bytes_per_request = stats.body_bytes as f64 / requests;
    // How full the bodies are against whichever limit binds: 50 elements or 100,000 bytes.
    let fill = (per_request / MAX_ELEMENTS).max(bytes_per_request / MAX_BYTES);
    let (on_cpu, waiting) = (
        stats.decode_cpu_secs.unwrap_or(f64::NAN),
        stats.decode_wait_secs.unwrap_or(f64::NAN),
    );
    println!(
        "| {format} | {} | {:.1} | {wall:.2} | {:.0} | {:.0} | {waiting:.2} | {:.1} | {cpu:.2} | {:.1} | {} | {per_request:.2} | {bytes_per_request:.0} | {:.2} % |",
        stats.rows_read,
        size as f64 / 1e6,
        stats.rows_read as f64 / wall,
        stats.rows_read as f64 / on_cpu,
        size as f64 / 1e6 / wall,
        peak_rss_kib() as f64 / 1024.0,
        stats.requests,
        fill * 100.0,
    );
}

/// `VmHWM`: this process's peak resident set, KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of this process (all threads), from /proc/self/stat (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Local files as an ObjectSource: `key` is the path.
struct LocalFiles;

#[async_trait]
impl ObjectSource for LocalFiles {
    async fn open(&self, bucket: &str, key: &str) -> Result<SourceObject, SourceError> {
        let err = |e: std::io::Error| SourceError {
            bucket: bucket.into(),
            key: key.into(),
            reason: e.to_string(),
        };
        let file = tokio::fs::File::open(key).await.map_err(err)?;
        let size = file.metadata().await.map_err(err)?.len();
        Ok(SourceObject {
            etag: "local".into(),
            version_id: None,
            content_encoding: None,
            size: Some(size),
            body: Box::pin(file),
        })
    }
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, SourceError> {
        let size = std::fs::metadata(key)
            .map_err(|e| SourceError {
                bucket: bucket.into(),
                key: key.into(),
                reason: e.to_string(),
            })?
            .len();
        Ok(ObjectMeta {
            etag: "local".into(),
            version_id: None,
            size,
            content_encoding: None,
        })
    }
    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, SourceError> {
        let err = |e: std::io::Error| SourceError {
            bucket: bucket.into(),
            key: key.into(),
            reason: e.to_string(),
        };
        let file = File::open(key).map_err(err)?;
        let mut buf = vec![0; (end - start) as usize];
        file.read_exact_at(&mut buf, start).map_err(err)?;
        Ok(buf.into())
    }
    async fn list(&self, _bucket: &str, _prefix: &str) -> Result<Vec<ListedObject>, SourceError> {
        Ok(Vec::new())
    }
}

/// Cold start: from spawning the release binary (valid configuration) until it asks the Lambda
/// Runtime API for its first event — at that moment config is parsed, clients are built and the
/// handler is ready. The Runtime API is a local listener of ours; nothing else is contacted.
fn cold_start() {
    let bin = std::env::var("BENCH_BIN").unwrap_or_else(|_| "target/release/moengage-sync".into());
    if !Path::new(&bin).exists() {
        println!("\ncold start: skipped ({bin} not built; `make bench` builds it)");
        return;
    }
    let mut samples = Vec::new();
    for _ in 0..15 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let api = listener.local_addr().expect("addr").to_string();
        let t = Instant::now();
        let mut child = Command::new(&bin)
            .env_clear()
            .envs([
                ("AWS_LAMBDA_RUNTIME_API", api.as_str()),
                ("AWS_LAMBDA_FUNCTION_NAME", "moengage-sync"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "bench"),
                ("AWS_SECRET_ACCESS_KEY", "bench"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
                ("MOENGAGE_DATA_CENTER", "DC-01"),
                ("MOENGAGE_WORKSPACE_ID", "BENCH"),
                ("MOENGAGE_API_KEY", "bench-key"),
                ("OBJECT_TYPE", "bulk_import"),
                (
                    "DEAD_LETTER_QUEUE_URL",
                    "http://127.0.0.1:9/123456789012/dlq",
                ),
                ("FIELD_MAPPING", users::MAPPING),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moengage-sync");
        listener.set_nonblocking(false).ok();
        let (mut conn, _) = listener.accept().expect("the binary polls the Runtime API");
        let mut buf = [0u8; 256];
        let n = conn.read(&mut buf).unwrap_or(0);
        let elapsed = t.elapsed();
        let asked = String::from_utf8_lossy(&buf[..n]);
        assert!(
            asked.contains("/runtime/invocation/next"),
            "unexpected first request: {asked}"
        );
        samples.push(elapsed);
        child.kill().ok();
        child.wait().ok();
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "\n## cold start (spawn → first `GET /runtime/invocation/next`), {} runs: median {:.1} ms, p90 {:.1} ms, min {:.1} ms",
        samples.len(),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 9 / 10]),
        ms(samples[0])
    );
}

/// One real run: moto S3 → handler → HTTP to the emulator (rate limit lifted) for each format.
fn end_to_end(dir: &Path) {
    if std::env::var("MOTO_SERVER").is_err() {
        println!("\nend to end: skipped (set MOTO_SERVER to moto_server, as `make bench` does)");
        return;
    }
    let rows: u64 = std::env::var("BENCH_E2E_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let stack = support::Stack::start().await;
        let deps = stack.deps(&[("FIELD_MAPPING", users::MAPPING), ("RATE_LIMIT_PER_MINUTE", "1000000"), ("FULL_RESYNC", "true")]).await;
        println!("\n## end to end: moto S3 → handler → emulator over HTTP (rate limit lifted), {rows} rows\n");
        println!("| format | rows delivered | requests | wall s | rows/s |");
        println!("|---|---:|---:|---:|---:|");
        for format in FORMATS {
            let path = dir.join(format!("users_{rows}.{format}"));
            if !path.exists() {
                generate(&path, format, rows);
            }
            let key = format!("e2e/users_{rows}.{format}");
            stack.put(&key, std::fs::read(&path).expect("read export")).await;
            let t = Instant::now();
            let summary = stack.invoke(&deps, &key).await;
            let wall = t.elapsed().as_secs_f64();
            let o = &summary.objects[0];
            assert_eq!(o.rows_delivered, rows, "{key}: {o:?}");
            println!("| {format} | {} | {} | {wall:.2} | {:.0} |", o.rows_delivered, o.requests_sent, rows as f64 / wall);
        }
    });
}
