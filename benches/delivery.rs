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
//! - peak RSS (`VmHWM`) of the process, which runs the handler and the emulator (moto is its own
//!   process). Each case runs in its own child process (this binary, `--child`).
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

use moengage_emulator::{EmulatorConfig, Faults};
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

async fn child(case: usize, latency: u64, secs: u64, shrink: bool) -> Value {
    let (_, object_type, budget, per_request) = CASES[case];
    let requests = (budget as u64 * secs / 60) as usize;
    let rows = requests * per_request;
    let stack = support::Stack::start_with(EmulatorConfig {
        rate_limit_per_minute: budget,
        ..support::emulator_config()
    })
    .await;
    stack.emulator.set_faults(Faults {
        delay_ms: latency,
        ..Faults::default()
    });
    let mapping = if object_type == "events" {
        r#"{"customer_id":"user_id","action":"event","amount":{"column":"amount","type":"number"}}"#
    } else {
        r#"{"customer_id":"user_id","email":"email","plan":"plan"}"#
    };
    let budget_text = budget.to_string();
    let deps = stack
        .deps(&[
            ("OBJECT_TYPE", object_type),
            ("FIELD_MAPPING", mapping),
            ("RATE_LIMIT_PER_MINUTE", &budget_text),
            ("RETRY_BASE_DELAY_MS", "500"),
        ])
        .await;
    stack
        .put("exports/bench.csv.gz", export(object_type, rows))
        .await;

    if shrink {
        // A third of the way in, MoEngage halves the limit; two thirds in, it is back.
        // Through the emulator's admin endpoint, as an operator (or MoEngage) would change it.
        let admin = format!("{}/_emulator/faults", stack.emulator.base_url());
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
        support::s3_event(&stack.bucket, "exports/bench.csv.gz"),
        &Invocation::unbounded(),
    )
    .await
    .expect("handler");
    let wall = started.elapsed().as_secs_f64();
    let window = deps.deliver.max_in_flight();
    let obj = &summary.objects[0];
    assert_eq!(obj.rows_delivered as usize, rows, "{obj:?}");

    let state = stack.state();
    let times: Vec<_> = state.requests.iter().map(|r| r.timestamp).collect();
    let rate_limited = state
        .requests
        .iter()
        .filter(|r| r.status == Some(429))
        .count();
    let span = (*times.iter().max().unwrap() - *times.iter().min().unwrap())
        .num_microseconds()
        .unwrap_or(1) as f64
        / 1e6;
    let achieved = (times.len() - 1) as f64 / span * 60.0;
    // Requests per minute over the last sixth of the run's span (after the limit returned).
    let (first, last) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
    let sixth = (last - first) / 6;
    let tail = times.iter().filter(|t| **t >= last - sixth).count();
    let last_sixth_per_minute =
        tail.saturating_sub(1) as f64 / (sixth.num_microseconds().unwrap_or(1) as f64 / 1e6) * 60.0;
    json!({
        "requests": times.len(),
        "rows": rows,
        "achieved_per_minute": achieved,
        "share": achieved / budget as f64,
        "rate_limited": rate_limited,
        "window": window,
        "peak_rss_mib": peak_rss_mib(),
        "wall_secs": wall,
        "last_sixth_per_minute": last_sixth_per_minute,
        "effective_rate": report_rate(&stack, obj).await,
    })
}

/// The run report's `effective_rate_per_minute`.
async fn report_rate(
    stack: &support::Stack,
    obj: &moengage_sync::account::report::ObjectSummary,
) -> Value {
    match &obj.report {
        Some(uri) => stack.get_json(uri).await["effective_rate_per_minute"].clone(),
        None => Value::Null,
    }
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
