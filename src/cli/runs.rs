//! `moengage-sync runs [--since 7d] [--status failed] [--json]`: recent runs, Lambda and
//! terminal alike, from the run log (`{STATE_PREFIX}run-log/dt=…/`): one small record per run,
//! listed by day, so it stays cheap however large the reports are.

use std::fmt::Write;

use super::{exit, RunsArgs};
use crate::account::run_log::{prefix_of, RunRecord};
use crate::source::ObjectSource;
use crate::state::StateStore;

/// Records read at most (the newest are kept).
const MAX_RECORDS: usize = 10_000;

pub async fn run(args: RunsArgs) -> i32 {
    let config = match super::load_config().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("moengage-sync: configuration error: {e}");
            return exit::CANNOT_RUN;
        }
    };
    let Some(bucket) = config
        .state_bucket
        .clone()
        .or_else(|| config.source_bucket.clone())
    else {
        eprintln!("moengage-sync runs: set STATE_BUCKET (the bucket the run log is in)");
        return exit::CANNOT_RUN;
    };
    if let Some(s) = &args.status {
        if !["complete", "continued", "failed"].contains(&s.as_str()) {
            eprintln!("moengage-sync runs: --status {s}: expected complete, continued or failed");
            return exit::CANNOT_RUN;
        }
    }
    let s3 = super::s3_client(&super::aws_config().await);
    let now = chrono::Utc::now();
    let since =
        now - chrono::Duration::from_std(args.since).unwrap_or_else(|_| chrono::Duration::days(7));
    let mut records = Vec::new();
    let mut day = since.date_naive();
    while day <= now.date_naive() {
        let prefix = format!("{}{day}/", prefix_of(&config.state_prefix));
        let listed = match ObjectSource::list(&s3, &bucket, &prefix).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("moengage-sync runs: {e}");
                return exit::FAILED;
            }
        };
        for o in listed {
            if let Ok(Some(body)) = StateStore::get(&s3, &bucket, &o.key).await {
                for line in String::from_utf8_lossy(&body).lines() {
                    if let Ok(r) = serde_json::from_str::<RunRecord>(line) {
                        records.push(r);
                    }
                }
            }
        }
        if records.len() > MAX_RECORDS {
            records.drain(..records.len() - MAX_RECORDS);
        }
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    let since_text = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    records.retain(|r| {
        r.finished_at.as_str() >= since_text.as_str()
            && args.status.as_deref().is_none_or(|s| r.status == s)
    });
    records.sort_by(|a, b| a.finished_at.cmp(&b.finished_at));
    if args.json {
        for r in &records {
            print!("{}", r.line());
        }
    } else {
        print!("{}", table(&records));
    }
    exit::OK
}

/// One line per run: when, sync, object, status, counts, duration, first error.
pub fn table(records: &[RunRecord]) -> String {
    let mut out = String::new();
    if records.is_empty() {
        out.push_str("no runs in that period\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<20} {:<12} {:<9} {:>9} {:>9} {:>9} {:>8} {:>6} {:>7} {:>8}  object / first error",
        "finished (UTC)",
        "sync",
        "status",
        "read",
        "delivered",
        "unchanged",
        "rejected",
        "dead",
        "pending",
        "secs"
    );
    for r in records {
        let _ = writeln!(
            out,
            "{:<20} {:<12} {:<9} {:>9} {:>9} {:>9} {:>8} {:>6} {:>7} {:>8.1}  s3://{}/{}{}",
            r.finished_at
                .get(..19)
                .unwrap_or(&r.finished_at)
                .replace('T', " "),
            crate::model::shorten(&r.sync, 12),
            r.status,
            r.rows_read,
            r.rows_delivered,
            r.rows_unchanged,
            r.rows_rejected,
            r.rows_dead_lettered,
            r.rows_pending,
            r.duration_ms as f64 / 1000.0,
            r.bucket,
            r.key,
            r.error
                .as_deref()
                .map(|e| format!(" — {}", crate::model::shorten(e, 160)))
                .unwrap_or_default(),
        );
    }
    out
}
