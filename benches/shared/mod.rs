//! What the benchmarks that run the real handler share: MoEngage accepting every body at once,
//! knobs from the environment, and the process's peak RSS and CPU time.

// Each benchmark uses part of this.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moengage_sync::deliver::{Deliver, Delivery, Outcome};
use moengage_sync::model::Endpoint;

/// MoEngage accepting every body at once: what such a benchmark measures is the state, not
/// delivery.
pub struct AcceptAll;

#[async_trait::async_trait]
impl Deliver for AcceptAll {
    async fn deliver(
        &self,
        _endpoint: Endpoint,
        _body: Bytes,
        _records: (u64, u64),
        _stop_at: Option<tokio::time::Instant>,
    ) -> Delivery {
        Delivery {
            outcome: Outcome::Delivered { request_id: None },
            attempts: 1,
            rate_limited: 0,
            latency: Duration::ZERO,
        }
    }
    fn max_in_flight(&self) -> usize {
        64
    }
}

/// A deliverer that accepts everything, for `Deps::deliver`.
pub fn accept_all() -> Arc<dyn Deliver> {
    Arc::new(AcceptAll)
}

/// A number from the environment (`_` allowed as a separator), else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// This process's peak resident memory (`VmHWM`), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU seconds this process has used (user + system, all threads), from `/proc/self/stat`.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the state field.
    (ticks(11) + ticks(12)) / 100.0
}

/// The runtime the benchmarks run the function on: two workers, as on this machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs this benchmark again as `--child args…` with `env` added, and returns the numbers on the
/// last line it prints (the handler writes its metrics, EMF, to stdout before it).
pub async fn run_child(args: &[&str], env: &std::collections::HashMap<String, String>) -> Vec<f64> {
    let out = tokio::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("--child")
        .args(args)
        .envs(env)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .expect("run the child");
    assert!(out.status.success(), "child {args:?} failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    line.split_whitespace()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("child printed {line:?}"))
        })
        .collect()
}

/// In a `--child`: the function's `Deps` as a warm instance would build them from the parent's
/// environment, against moto at `moto_endpoint`, with MoEngage accepting at once; and the source
/// bucket.
pub async fn child_deps(moto_endpoint: &str) -> (moengage_sync::app::Deps, String) {
    let aws = crate::support::local_aws(moto_endpoint).await;
    let config = moengage_sync::config::Config::from_env().expect("the parent's configuration");
    let bucket = config.source_bucket.clone().expect("SOURCE_BUCKET");
    let mut deps = moengage_sync::app::startup::connect_with(config, &aws)
        .await
        .expect("connect");
    deps.deliver = accept_all();
    (deps, bucket)
}

/// Users `from..=to` of `tests/fixtures/users.rs` as a CSV.gz export at `path` (generated once,
/// then kept); with `changed`, every 100th user has another email.
pub fn export_users(path: &std::path::Path, from: u64, to: u64, changed: bool) {
    use std::io::Write;
    if path.exists() {
        return;
    }
    let tmp = path.with_extension("partial");
    let file =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).expect("create"));
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    crate::users::write_csv(&mut gz, 1, 0, b',', true).expect("header");
    let mut row = Vec::new();
    for i in from..=to {
        row.clear();
        crate::users::write_csv(&mut row, i, i, b',', false).expect("write");
        if changed && i.is_multiple_of(100) {
            // The email is the row's only `@` (a name may hold a newline: rows are not lines).
            let text = String::from_utf8_lossy(&row).replacen('@', "+changed@", 1);
            gz.write_all(text.as_bytes()).expect("write");
        } else {
            gz.write_all(&row).expect("write");
        }
    }
    gz.finish().expect("gzip").flush().expect("flush");
    std::fs::rename(&tmp, path).expect("rename");
}
