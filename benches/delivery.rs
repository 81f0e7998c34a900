//! `make bench-delivery`: how much of MoEngage's budget delivery spends at a realistic round trip.
//!
//! Each case runs the real handler (S3 on moto, the sync state, the work queue) against the MoEngage
//! emulator with an injected latency and a strict sliding-window limit equal to the budget, which
//! the function is configured with. An export sized for ~`BENCH_DELIVERY_SECS` (default 20) of
//! requests at the budget is uploaded and processed; from the emulator's request log:
//!
//! - achieved ÷ budget: requests per minute between the first and the last request, over the
//!   budget;
//! - 429s: answers refused by the window (0 against a steady emulator is the target);
//! - peak RSS (`VmHWM`) of the process that runs the handler, measured before anything else is
//!   read: the emulator (`target/release/moengage-emulator`) and moto run as their own processes.
//!   Each case runs in its own child process (this binary, `--child`).
//!
//! A last case cuts MoEngage's limit to a quarter for the middle third of a Bulk Import run at 150 ms (three
//! times as long), then restores it: the share of requests answered 429, and the rate achieved in
//! the last sixth of the run (after the limit returned).
//!
//! Knobs: `MOTO_SERVER` (required), `BENCH_DELIVERY_SECS`, `BENCH_DELIVERY_LATENCIES` (ms, default
//! `50,150,500`).

#[allow(clippy::duplicate_mod)]
#[path = "../tests/it/support.rs"]
mod support;

use std::process::Command;
use std::time::Instant;

use moengage_sync::app::{handler, Invocation};
use serde_json::{json, Value};

/// (API, object type, requests per minute, rows per request).
const CASES: [(&str, &str, u32, usize); 3] = [
    ("Bulk Import", "bulk_import", 1_200, 50),
    ("Track User", "user_attributes", 10_000, 1),
    ("Create Event", "events", 30_000, 1),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let case: usize = args[2].parse().expect("case index");
        let latency: u64 = args[3].parse().expect("latency ms");
        let secs: u64 = args[4].parse().expect("seconds");
        let shrink = args.get(5).map(String::as_str) == Some("--shrink");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let result = runtime.block_on(child(case, latency, secs, shrink));
        println!("{result}");
        return;
    }
    if std::env::var("MOTO_SERVER").is_err() {
        eprintln!("bench-delivery: MOTO_SERVER is not set (make bench-delivery sets it)");
        std::process::exit(2);
    }
    let secs: u64 = std::env::var("BENCH_DELIVERY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let latencies: Vec<u64> = std::env::var("BENCH_DELIVERY_LATENCIES")
        .unwrap_or_else(|_| "50,150,500".into())
        .split(',')
        .map(|s| s.trim().parse().expect("latencies in ms"))
        .collect();

    println!("## delivery: the handler against the emulator at a round-trip latency, strict window = budget\n");
    println!("~{secs} s of requests per case; achieved = requests per minute from the first request to the last.\n");
    println!("| API | budget req/min | latency ms | requests | rows | achieved req/min | achieved ÷ budget | 429s | in flight (window) | peak RSS MiB | wall s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, (api, _, budget, _)) in CASES.iter().enumerate() {
        for &latency in &latencies {
            let out = Command::new(std::env::current_exe().expect("own path"))
                .args([
                    "--child",
                    &i.to_string(),
                    &latency.to_string(),
                    &secs.to_string(),
                ])
                .output()
                .expect("run child");
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(r) = text
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str::<Value>(l).ok())
            else {
                eprintln!(
                    "{api} at {latency} ms failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                continue;
            };
            println!(
                "| {api} | {budget} | {latency} | {} | {} | {:.0} | {:.1} % | {} | {} | {:.1} | {:.1} |",
                r["requests"],
                r["rows"],
                r["achieved_per_minute"].as_f64().unwrap_or(0.0),
                r["share"].as_f64().unwrap_or(0.0) * 100.0,
                r["rate_limited"],
                r["window"],
                r["peak_rss_mib"].as_f64().unwrap_or(0.0),
                r["wall_secs"].as_f64().unwrap_or(0.0),
            );
        }
    }
    // The limit shrinks mid-run, then returns.
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args(["--child", "0", "150", &(secs * 3).to_string(), "--shrink"])
        .output()
        .expect("run child");
    let text = String::from_utf8_lossy(&out.stdout);
    match text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        Some(r) => {
            let requests = r["requests"].as_f64().unwrap_or(1.0);
            let limited = r["rate_limited"].as_f64().unwrap_or(0.0);
            let last = r["last_sixth_per_minute"].as_f64().unwrap_or(0.0);
            println!("\n## delivery: MoEngage cuts Bulk Import's limit to a quarter (1,200 → 300/min) for the middle third of a run, 150 ms\n");
            println!("| requests | 429s | 429 share | rate in the last sixth, req/min | ÷ budget | effective rate at the end |");
            println!("|---:|---:|---:|---:|---:|---:|");
            println!(
                "| {} | {} | {:.2} % | {:.0} | {:.1} % | {} |",
                r["requests"],
                r["rate_limited"],
                limited / requests * 100.0,
                last,
                last / 1200.0 * 100.0,
                r["effective_rate"],
            );
        }
        None => eprintln!(
            "shrinking-limit case failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn export(object_type: &str, rows: usize) -> Vec<u8> {
    let mut s = String::new();
    if object_type == "events" {
        s.push_str("user_id,event,amount\n");
        for i in 1..=rows {
            s.push_str(&format!("u-{i:07},purchase,{}.5\n", i % 100));
        }
    } else {
        s.push_str("user_id,email,plan\n");
        for i in 1..=rows {
            s.push_str(&format!(
                "u-{i:07},u{i}@example.com,{}\n",
                if i % 2 == 0 { "pro" } else { "free" }
            ));
        }
    }
    support::gzip(s.as_bytes())
}

/// The MoEngage emulator as its own process (`EMULATOR_BIN`, default the release build), so the
/// peak RSS measured is the function's alone; stopped on drop.
struct EmulatorProcess {
    _child: tokio::process::Child,
    url: String,
}

impl EmulatorProcess {
    async fn start(budget: u32, latency: u64) -> Self {
        let bin = std::env::var("EMULATOR_BIN")
            .unwrap_or_else(|_| "target/release/moengage-emulator".into());
        let port_file = std::env::temp_dir().join(format!(
            "moengage-bench-emulator-{}.port",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&port_file);
        let child = tokio::process::Command::new(&bin)
            .args([
                "--port",
                "0",
                "--workspace-id",
                support::WORKSPACE,
                "--api-key",
                support::API_KEY,
                "--rate-limit-per-minute",
                &budget.to_string(),
                "--delay-ms",
                &latency.to_string(),
                "--port-file",
                port_file.to_str().expect("utf-8 path"),
            ])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin} (make bench-delivery builds it): {e}"));
        for _ in 0..200 {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                if let Ok(port) = port.trim().parse::<u16>() {
                    let _ = std::fs::remove_file(&port_file);
                    return EmulatorProcess {
                        _child: child,
                        url: format!("http://127.0.0.1:{port}"),
                    };
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the emulator did not start");
    }
}

async fn child(case: usize, latency: u64, secs: u64, shrink: bool) -> Value {
    let (_, object_type, budget, per_request) = CASES[case];
    let requests = (budget as u64 * secs / 60) as usize;
    let rows = requests * per_request;
    let (moto, emulator) = tokio::join!(
        support::Moto::start(),
        EmulatorProcess::start(budget, latency)
    );
    let aws = support::local_aws(&moto.endpoint).await;
    let s3 = support::path_style_s3(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let bucket = "bench-bucket";
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    let dlq = sqs
        .create_queue()
        .queue_name("dlq")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    let mapping = if object_type == "events" {
        r#"{"customer_id":"user_id","action":"event","amount":{"column":"amount","type":"number"}}"#
    } else {
        r#"{"customer_id":"user_id","email":"email","plan":"plan"}"#
    };
    let env: std::collections::HashMap<&str, String> = [
        ("MOENGAGE_DATA_CENTER", "DC-01".to_string()),
        ("MOENGAGE_WORKSPACE_ID", support::WORKSPACE.into()),
        ("MOENGAGE_API_KEY", support::API_KEY.into()),
        ("MOENGAGE_API_URL", emulator.url.clone()),
        ("OBJECT_TYPE", object_type.into()),
        ("FIELD_MAPPING", mapping.into()),
        ("DEAD_LETTER_QUEUE_URL", dlq),
        ("STATE_BUCKET", bucket.into()),
        ("RATE_LIMIT_PER_MINUTE", budget.to_string()),
        ("RETRY_BASE_DELAY_MS", "500".into()),
    ]
    .into_iter()
    .collect();
    let config = moengage_sync::config::Config::from_lookup(|k| env.get(k).cloned())
        .expect("valid configuration");
    let deps = moengage_sync::app::startup::connect_with(config, &aws)
        .await
        .expect("connect");
    s3.put_object()
        .bucket(bucket)
        .key("exports/bench.csv.gz")
        .body(export(object_type, rows).into())
        .send()
        .await
        .expect("upload");

    if shrink {
        // A third of the way in, MoEngage cuts the limit; two thirds in, it is back. Through the
        // emulator's admin endpoint, as an operator (or MoEngage) would change it.
        let admin = format!("{}/_emulator/faults", emulator.url);
        let third = std::time::Duration::from_secs(secs / 3);
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            tokio::time::sleep(third).await;
            let _ = client
                .post(&admin)
                .body(json!({"rate_limit_per_minute": budget / 4}).to_string())
                .send()
                .await;
            tokio::time::sleep(third).await;
            let _ = client
                .post(&admin)
                .body(json!({"rate_limit_per_minute": null}).to_string())
                .send()
                .await;
        });
    }
    let started = Instant::now();
    let summary = handler::handle(
        &deps,
        support::s3_event(bucket, "exports/bench.csv.gz"),
        &Invocation::unbounded(),
    )
    .await
    .expect("handler");
    let wall = started.elapsed().as_secs_f64();
    // Measured before anything else is read: this process ran the handler and nothing else.
    let peak = peak_rss_mib();
    let window = deps.deliver.max_in_flight();
    let obj = &summary.objects[0];
    assert_eq!(obj.rows_delivered as usize, rows, "{obj:?}");

    let body = reqwest::get(format!("{}/_emulator/state", emulator.url))
        .await
        .expect("emulator state")
        .bytes()
        .await
        .expect("state body");
    let state: Value = serde_json::from_slice(&body).expect("state JSON");
    let list = state["requests"].as_array().cloned().unwrap_or_default();
    let mut times: Vec<chrono::DateTime<chrono::Utc>> = list
        .iter()
        .filter_map(|r| r["timestamp"].as_str())
        .filter_map(|t| t.parse().ok())
        .collect();
    times.sort();
    let rate_limited = list.iter().filter(|r| r["status"] == 429).count();
    let (first, last) = (times[0], times[times.len() - 1]);
    let span = (last - first).num_microseconds().unwrap_or(1) as f64 / 1e6;
    let achieved = (times.len() - 1) as f64 / span * 60.0;
    // Requests per minute over the last sixth of the run's span (after the limit returned).
    let sixth = (last - first) / 6;
    let tail = times.iter().filter(|t| **t >= last - sixth).count();
    let last_sixth_per_minute =
        tail.saturating_sub(1) as f64 / (sixth.num_microseconds().unwrap_or(1) as f64 / 1e6) * 60.0;
    let report_rate = match &obj.report {
        Some(uri) => {
            let key = uri.splitn(4, '/').nth(3).unwrap_or_default().to_string();
            let body = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .expect("report")
                .body
                .collect()
                .await
                .expect("report body")
                .into_bytes();
            serde_json::from_slice::<Value>(&body).unwrap_or_default()["effective_rate_per_minute"]
                .clone()
        }
        None => Value::Null,
    };
    json!({
        "requests": times.len(),
        "rows": rows,
        "achieved_per_minute": achieved,
        "share": achieved / budget as f64,
        "rate_limited": rate_limited,
        "window": window,
        "peak_rss_mib": peak,
        "wall_secs": wall,
        "last_sixth_per_minute": last_sixth_per_minute,
        "effective_rate": report_rate,
    })
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
