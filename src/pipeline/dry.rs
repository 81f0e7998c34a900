//! Drivers that run the producer without delivering: `preview`'s dry run (first rows, optionally
//! diffed against the sync state) and the benchmarks' drain (the whole CPU path, no network).

use tokio::sync::mpsc;

use super::produce::{decode_object, Decoded, Limits};
use super::CHANNEL_DEPTH;
use crate::account::report::RowReport;
use crate::batch::Batch;
use crate::config::syncs::SyncSpec;
use crate::config::Config;
use crate::decode::DecodeInput;
use crate::sync_state::SyncState;

/// What `preview` shows: the bodies that would be sent for the first rows, and what would be
/// rejected or warned about — computed by the same code path as a real run, sending nothing.
#[derive(Debug, Default)]
pub struct DryRun {
    pub bodies: Vec<Batch>,
    pub rejected: Vec<RowReport>,
    pub warnings: Vec<RowReport>,
    /// Rows read (in bodies, rejected or unchanged).
    pub rows_read: u64,
    /// Rows the sync state says MoEngage already has (only with [`dry_run_with_state`]).
    pub unchanged: u64,
    /// Whether the rows were diffed against a sync state (else `unchanged` means nothing).
    pub diffed: bool,
    /// Why the object could not be read to the end of the preview, if so.
    pub failure: Option<String>,
    /// Request bodies that would be sent, and the rows in them (kept or not).
    pub requests: u64,
    pub would_send: u64,
    /// Rejected rows in all (only the first [`MAX_LISTED`] are listed when bodies are not kept).
    pub rows_rejected: u64,
}

/// Rejections and warnings listed by [`dry_run_all`]; the counts go on.
pub const MAX_LISTED: usize = 100;

/// Decodes, maps, validates and batches the first `max_rows` rows of `input`; sends nothing.
/// Blocking: call from a thread that may block (not from async code).
pub fn dry_run(config: &Config, spec: &SyncSpec, input: DecodeInput<'_>, max_rows: u64) -> DryRun {
    dry_run_with_state(config, spec, input, max_rows, None)
}

/// As [`dry_run`], diffing against `sync` (rows MoEngage already has are counted `unchanged`, not
/// shown as bodies). Nothing is recorded or saved.
pub fn dry_run_with_state(
    config: &Config,
    spec: &SyncSpec,
    input: DecodeInput<'_>,
    max_rows: u64,
    sync: Option<&SyncState>,
) -> DryRun {
    dry(config, spec, input, Some(max_rows), sync, None)
}

/// The whole object through decode → map → validate → diff → batch, sending and recording
/// nothing (`sync --dry-run`): counts, and the first [`MAX_LISTED`] rejections and warnings;
/// bodies are counted and dropped, so memory stays flat. Blocking.
pub fn dry_run_all(
    config: &Config,
    spec: &SyncSpec,
    input: DecodeInput<'_>,
    sync: Option<&SyncState>,
    progress: Option<&super::Progress>,
) -> DryRun {
    dry(config, spec, input, None, sync, progress)
}

fn dry(
    config: &Config,
    spec: &SyncSpec,
    input: DecodeInput<'_>,
    max_rows: Option<u64>,
    sync: Option<&SyncState>,
    progress: Option<&super::Progress>,
) -> DryRun {
    use std::sync::atomic::Ordering::Relaxed;
    let keep = max_rows.is_some();
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let mut out = DryRun {
        diffed: sync.is_some(),
        ..DryRun::default()
    };
    let listed = |v: &Vec<RowReport>| keep || v.len() < MAX_LISTED;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            decode_object(
                input,
                config,
                spec,
                Limits {
                    skip_through: 0,
                    max_rows,
                    ..Limits::default()
                },
                sync,
                &tx,
            )
        });
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Decoded::Batch(b) => {
                    out.rows_read += b.records;
                    out.requests += 1;
                    out.would_send += b.records;
                    if keep {
                        out.bodies.push(b);
                    }
                }
                Decoded::Rejected(r) => {
                    out.rows_read += 1;
                    out.rows_rejected += 1;
                    if listed(&out.rejected) {
                        out.rejected.push(r);
                    }
                }
                Decoded::UnchangedRun { first, last } => {
                    out.rows_read += last - first + 1;
                    out.unchanged += last - first + 1;
                }
                Decoded::DuplicateKey(w) => {
                    if listed(&out.warnings) {
                        out.warnings.push(w)
                    }
                }
                Decoded::Warnings(ws) => {
                    for w in ws {
                        if listed(&out.warnings) {
                            out.warnings.push(w)
                        }
                    }
                }
                Decoded::Failed {
                    reason,
                    unsent_rows,
                } => {
                    out.rows_read += unsent_rows;
                    out.failure = Some(reason);
                }
                // Only a run with a first pass stops early this way.
                Decoded::Paused => {}
            }
            if let Some(p) = progress {
                p.rows_read.store(out.rows_read, Relaxed);
                p.rows_unchanged.store(out.unchanged, Relaxed);
                p.rows_rejected.store(out.rows_rejected, Relaxed);
                p.requests_sent.store(out.requests, Relaxed);
            }
        }
    });
    out
}

/// What [`drain`] measured.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DrainStats {
    pub rows_read: u64,
    pub rows_rejected: u64,
    pub requests: u64,
    pub elements: u64,
    pub body_bytes: u64,
    pub failure: Option<String>,
    /// On-CPU and runnable-but-waiting time of the decode thread, seconds (Linux
    /// `/proc/thread-self/schedstat`; `None` elsewhere). "Rows per on-CPU second" is the one-core
    /// rate with other tenants' load taken out; the waiting time shows how much load there was.
    pub decode_cpu_secs: Option<f64>,
    pub decode_wait_secs: Option<f64>,
}

/// The calling thread's (on-CPU, waiting-for-CPU) seconds so far, from `schedstat`.
fn thread_schedstat() -> Option<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let (run, wait) = (fields.next()??, fields.next()??);
    Some((run as f64 / 1e9, wait as f64 / 1e9))
}

/// Runs decode → map → validate → batch → serialize over all of `input` and discards the bodies
/// (benchmarks: the whole CPU path of a real run, no network). Blocking.
pub fn drain(config: &Config, spec: &SyncSpec, input: DecodeInput<'_>) -> DrainStats {
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let mut out = DrainStats::default();
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            decode_object(input, config, spec, Limits::default(), None, &tx);
            // The thread started at zero: its totals are the decode's own.
            thread_schedstat()
        });
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Decoded::Batch(b) => {
                    out.rows_read += b.records;
                    out.requests += 1;
                    out.elements += b.records;
                    out.body_bytes += b.body.len() as u64;
                }
                Decoded::Rejected(_) => {
                    out.rows_read += 1;
                    out.rows_rejected += 1;
                }
                // drain runs without sync state: no row is unchanged or a tracked duplicate.
                Decoded::UnchangedRun { .. } | Decoded::DuplicateKey(_) | Decoded::Warnings(_) => {}
                Decoded::Failed {
                    reason,
                    unsent_rows,
                } => {
                    out.rows_read += unsent_rows;
                    out.failure = Some(reason);
                }
                // Only a run with a first pass stops early this way.
                Decoded::Paused => {}
            }
        }
        if let Ok(Some((cpu, wait))) = decoder.join() {
            out.decode_cpu_secs = Some(cpu);
            out.decode_wait_secs = Some(wait);
        }
    });
    out
}
