//! The pipeline for one object version, in roles:
//!
//! ```text
//! with stored sync state, first:
//! source → decode → map + validate → fingerprint → PrintSpool → SyncState::prepare   [first_pass]
//! then:
//! source (S3 stream) → decode (gunzip, CSV) → map + validate → diff → batch   [produce: blocking thread]
//!        ─ channel of each row's fate ─►  deliver (paced, retried) → dead-letter   [here: async]
//!                                         every fate and outcome → ledger (accounting, no I/O)
//! ```
//!
//! - [`first_pass`]: the rows' verdicts against the sync state, in bounded memory, before any is
//!   sent (see `docs/sync-state.md`); the sending pass stops where it stopped.
//! - [`produce`]: the producer, which turns each row into its fate (in a body, rejected,
//!   unchanged) on a blocking thread, so CPU work never stalls the runtime and overlaps with
//!   waiting on MoEngage. The channel is bounded: memory stays flat whatever the object's size.
//! - [`ledger`]: the accounting identity and the checkpoint, unit-tested on its own.
//! - [`crate::deliver::Deliver`]: sending one body, behind a trait tests can fake.
//! - [`dead_letters`], [`diagnose`]: what happens to a body that fails, and what a refusal means.
//! - [`dry`]: `preview`'s dry run and the benchmarks' drain, the producer without delivery.

mod dead_letters;
mod diagnose;
mod dry;
mod fair_use;
mod ledger;
pub mod members;
mod produce;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::io::SyncIoBridge;

pub use crate::account::progress::{CountingRead, Progress};
pub use diagnose::diagnose;
pub use dry::{drain, dry_run, dry_run_all, dry_run_with_state, DrainStats, DryRun, MAX_LISTED};

use crate::account::report::RunReport;
use crate::app::Deps;
use crate::batch::Batch;
use crate::config::syncs::SyncSpec;
use crate::decode::{DecodeInput, RangedObject};
use crate::deliver::dead_letter::{DeadLetterError, SourceRef};
use crate::deliver::Outcome;
use crate::model::ObjectRef;
use crate::sync_state::verdicts::PrintSpool;
use crate::sync_state::{SyncLocation, SyncOptions, SyncState, SyncStateError};
use ledger::{finish_failed, now_rfc3339, Ledger};
use produce::{decode_object, spool_prints, Decoded, Limits};

/// Bodies decoded ahead of delivery; bounds memory at a few request bodies.
const CHANNEL_DEPTH: usize = 4;
/// How long a stopping run waits for the decode thread to notice it.
const DECODER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Persists a mid-run checkpoint: the handler moves the run marker to the report's
/// `resume_after_row` (extending its lease) and stores the partial report, so a run killed by a
/// timeout or out of memory resends at most what was in flight plus one interval.
#[async_trait::async_trait]
pub trait Checkpoint: Send + Sync {
    /// Rows 1..=`report.resume_after_row` are settled, and the sync state of what MoEngage
    /// accepted is saved. `Err` says why it could not be recorded (the run goes on).
    async fn save(&self, report: &RunReport) -> Result<(), String>;
}

impl std::fmt::Debug for dyn Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checkpoint")
    }
}

/// How far this run goes.
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    /// Read exactly this version (the claimed one); a different ETag fails the run.
    pub etag: Option<String>,
    /// Rows 1..=resume_after_row were settled by earlier runs: skip them.
    pub resume_after_row: u64,
    /// Stop at a batch boundary once this instant has passed (Lambda's deadline minus a margin).
    pub stop_at: Option<Instant>,
    /// Ignore the sync state this run and rebuild it (`FULL_RESYNC`, or a work item's flag).
    pub full_resync: bool,
    /// Where mid-run checkpoints go, and how often (`CHECKPOINT_SECS`); none in tests and
    /// dry runs.
    pub checkpoint: Option<(Arc<dyn Checkpoint>, std::time::Duration)>,
    /// Stop at a batch boundary when cancelled, as at `stop_at` (Ctrl-C in the terminal).
    pub cancel: Option<tokio_util::sync::CancellationToken>,
    /// Live counters for a progress display.
    pub progress: Option<Arc<Progress>>,
}

/// Something that must fail the whole invocation (so Lambda retries it) rather than one object.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    /// A body that could be neither delivered nor dead-lettered would be lost.
    #[error("s3://{bucket}/{key} rows {first_row}-{last_row} could not be delivered nor dead-lettered: {source}")]
    DeadLetter {
        bucket: String,
        key: String,
        first_row: u64,
        last_row: u64,
        source: DeadLetterError,
    },
}

/// A run's report, plus the error that must fail the invocation, if any.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: RunReport,
    pub fatal: Option<FatalError>,
}

/// Processes one object version from `plan.resume_after_row`: reads, validates, delivers, and
/// accounts for every row it reads. The report is not stored here.
pub async fn process_object(
    deps: &Deps,
    spec: &Arc<SyncSpec>,
    object: &ObjectRef,
    plan: &RunPlan,
) -> RunOutcome {
    let config = &deps.config;
    let mut report = RunReport {
        object_type: spec.object_type.as_str().into(),
        started_at: now_rfc3339(),
        started_after_row: plan.resume_after_row,
        resume_after_row: plan.resume_after_row,
        ..Default::default()
    };
    report.summary.bucket = object.bucket.clone();
    report.summary.key = object.key.clone();
    report.summary.sync = spec.name.clone();

    // Source: a stream over the object, never the whole object in memory.
    let source = match open_object(deps, object, plan.etag.as_deref()).await {
        Ok(s) => s,
        Err(reason) => return failed_before_sending(report, reason),
    };
    report.etag = source.etag.clone();
    report.version_id = source.version_id.clone();
    let ranged = ranged_object(deps, object, &source);
    let mut body: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> = source.body;
    if let Some(p) = &plan.progress {
        p.object_size.store(
            source.size.unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    // Change detection: what MoEngage already holds for this workspace and object type.
    let sync = match open_sync_state(deps, spec, object, plan.full_resync).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            return failed_before_sending(
                report,
                format!("{e}; check the function may read and write STATE_BUCKET"),
            )
        }
    };

    // With a stored state, a first pass classifies every row in bounded memory (prints spooled,
    // joined with the state shard by shard); the second pass below then looks nothing up.
    let now = chrono::Utc::now();
    let mut stop_after_row = None;
    let mut unchanged_through = None;
    if sync.has_stored_state() {
        if let Some(p) = &plan.progress {
            p.classifying
                .store(true, std::sync::atomic::Ordering::Relaxed);
            body = Box::pin(CountingRead::new(body, p.clone()));
        }
        let first = first_pass(
            deps,
            spec,
            (object, source.content_encoding.clone()),
            plan,
            (body, ranged.clone()),
            &sync,
            now,
        );
        let coverage = match first.await {
            Ok(coverage) => coverage,
            Err(reason) => return failed_before_sending(report, reason),
        };
        stop_after_row = coverage.stopped_after;
        // Every row read, keyed and unchanged (so valid: MoEngage accepted the same cells): the
        // sending pass would only count them, so it does not read the object again.
        unchanged_through = coverage
            .clean_through
            .filter(|&last| sync.prepared_all_unchanged(plan.resume_after_row + 1, last));
        // The sending pass reads the same version afresh: the first stream was read to its end
        // (or as far as the first pass went), and a stream left idle meanwhile could time out.
        body = match unchanged_through {
            Some(_) => Box::pin(tokio::io::empty()),
            None => match open_object(deps, object, Some(&source.etag)).await {
                Ok(s) => s.body,
                Err(reason) => return failed_before_sending(report, reason),
            },
        };
    }
    let body: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> = match &plan.progress {
        Some(p) => {
            use std::sync::atomic::Ordering::Relaxed;
            p.classifying.store(false, Relaxed);
            p.bytes_read.store(0, Relaxed);
            Box::pin(CountingRead::new(body, p.clone()))
        }
        None => body,
    };
    let reader = SyncIoBridge::new(body);

    // Decode → map + validate → diff → batch, on a blocking thread.
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let decode_config = Arc::new(config.clone());
    let decode_spec = spec.clone();
    let (key, encoding) = (object.key.clone(), source.content_encoding.clone());
    let skip = plan.resume_after_row;
    let decode_sync = sync.clone();
    let decoder = tokio::task::spawn_blocking(move || {
        if let Some(last) = unchanged_through {
            if last > skip {
                let _ = tx.blocking_send(Decoded::UnchangedRun {
                    first: skip + 1,
                    last,
                });
            }
            return;
        }
        let input = decode_input(
            Box::new(reader),
            &key,
            encoding.as_deref(),
            &decode_spec,
            &decode_config,
            ranged,
        );
        decode_object(
            input,
            &decode_config,
            &decode_spec,
            Limits {
                skip_through: skip,
                max_rows: None,
                stop_after_row,
                now: Some(now),
            },
            Some(&decode_sync),
            &tx,
        )
    });

    // Deliver bodies concurrently, as many in flight as the budget and MoEngage's latency call
    // for, dispatched in row order and never two for one user at once; the ledger accounts for
    // every row, and for completions in any order.
    let source_ref = |b: &Batch| SourceRef {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        etag: source.etag.clone(),
        version_id: source.version_id.clone(),
        first_row: b.first_row,
        last_row: b.last_row,
    };
    let mut ledger = Ledger::new(report);
    // Named in dead letters, so that redrive records what it delivers in this sync's state.
    let state_scope = spec.state_scope(&config.workspace_id);
    let mut running = FuturesUnordered::new();
    // Users with a request in flight (hashes of their customer_id).
    let mut busy: HashSet<u64> = HashSet::new();
    // A body from the producer waiting for a free slot, or for its users' requests to settle.
    let mut waiting: Option<Batch> = None;
    let mut producing = true;
    let mut deadline = false;
    let mut stopping = false;
    let mut fatal = None;
    // Mid-run checkpoints: every `CHECKPOINT_SECS`, when the settled prefix has moved.
    let far = Instant::now() + std::time::Duration::from_secs(86_400 * 365);
    let mut next_checkpoint = plan
        .checkpoint
        .as_ref()
        .map_or(far, |(_, every)| Instant::now() + *every);
    let mut checkpointed = plan.resume_after_row;
    // Fair use per end user; `held_for` is set while a body waits for a user's window to end.
    let mut fair = fair_use::FairUse::new(fair_use::FAIR_USE_PER_MINUTE, Instant::now());
    let mut held_for_fair_use = false;
    loop {
        if let Some(progress) = &plan.progress {
            progress.update(
                &ledger.report_mut().summary,
                deps.deliver.effective_rate(spec.object_type.endpoint()),
            );
        }
        if !stopping && plan.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            deadline = true;
            stopping = true;
        }
        if let Some(mut batch) = waiting.take() {
            if !stopping && plan.stop_at.is_some_and(|t| Instant::now() >= t) {
                deadline = true;
                stopping = true;
            }
            if stopping {
                waiting = Some(batch);
            } else if running.len() < deps.deliver.max_in_flight()
                && !batch.customers.iter().any(|c| busy.contains(c))
                && fair.admit(&batch.customers, Instant::now())
            {
                held_for_fair_use = false;
                let id = ledger.dispatched(&batch);
                busy.extend(batch.customers.iter().copied());
                // The body moves into shared bytes: retries and a dead letter reuse them, no copy.
                let body = Bytes::from(std::mem::take(&mut batch.body));
                let records = (batch.records - batch.events, batch.events);
                let deliver = deps.deliver.clone();
                let stop_at = plan.stop_at;
                running.push(async move {
                    let d = deliver
                        .deliver(batch.endpoint, body.clone(), records, stop_at)
                        .await;
                    (id, batch, body, d)
                });
            } else {
                if running.len() < deps.deliver.max_in_flight()
                    && !batch.customers.iter().any(|c| busy.contains(c))
                    && !held_for_fair_use
                {
                    // Only the fair-use window stands in the way: hold the body (and, to keep
                    // each user's order, everything after it) until the window ends.
                    held_for_fair_use = true;
                    ledger.report_mut().fair_use_holds += 1;
                    tracing::warn!(key = %object.key, first_row = batch.first_row, "a user reached MoEngage's fair-use limit (5,000 requests a minute); holding rows back until the next minute");
                }
                waiting = Some(batch);
            }
        }
        if running.is_empty() && (stopping || !producing && waiting.is_none()) {
            break;
        }
        tokio::select! {
            biased;
            Some((id, batch, body, d)) = running.next(), if !running.is_empty() => {
                for c in &batch.customers {
                    busy.remove(c);
                }
                ledger.attempted(&d);
                match d.outcome {
                    Outcome::Delivered { request_id } => {
                        // Only now may the state say MoEngage has these rows.
                        sync.record_delivered(&batch.prints);
                        ledger.delivered(id);
                        tracing::debug!(key = %object.key, rows = batch.records, first_row = batch.first_row, request_id = request_id.as_deref().unwrap_or(""), "delivered");
                    }
                    Outcome::Failed(detail) => {
                        match dead_letters::send(deps, source_ref(&batch), &batch, &body, detail, d.attempts, &state_scope).await {
                            Ok(message_id) => ledger.dead_lettered(id, message_id),
                            Err(e) => {
                                ledger.returned(id);
                                ledger.fail(e.to_string());
                                fatal.get_or_insert(e);
                                stopping = true;
                            }
                        }
                    }
                    Outcome::Misconfigured(detail) => {
                        ledger.returned(id);
                        ledger.fail(diagnose(config, &detail));
                        stopping = true;
                    }
                    Outcome::Interrupted => {
                        ledger.returned(id);
                        deadline = true;
                        stopping = true;
                    }
                }
            }
            _ = async { match &plan.cancel { Some(c) => c.cancelled().await, None => std::future::pending().await } }, if !stopping => {}
            // The stop time, even while the decoder sends nothing (a long unchanged stretch, a
            // long CPU-bound step such as skipping an oversized record).
            _ = tokio::time::sleep_until(plan.stop_at.unwrap_or(far)), if !stopping && plan.stop_at.is_some() => {
                deadline = true;
                stopping = true;
            }
            // Wake when the user's window ends, or at the stop time, whichever comes first.
            _ = tokio::time::sleep_until(plan.stop_at.map_or(fair.window_ends(), |t| t.min(fair.window_ends()))), if held_for_fair_use && !stopping => {}
            _ = tokio::time::sleep_until(next_checkpoint), if !stopping && next_checkpoint < far => {
                if let Some((checkpoint, every)) = &plan.checkpoint {
                    let settled = ledger.report_mut().resume_after_row;
                    if settled > checkpointed {
                        // The state first: a checkpoint must not pass deliveries it does not know.
                        save_sync_state(&sync, ledger.report_mut()).await;
                        match checkpoint.save(&ledger.snapshot()).await {
                            Ok(()) => checkpointed = settled,
                            Err(e) => tracing::warn!(key = %object.key, error = %e, "mid-run checkpoint not recorded; a crash now would resend from the last one"),
                        }
                    }
                    next_checkpoint = Instant::now() + *every;
                }
            }
            fate = rx.recv(), if producing && !stopping && waiting.is_none() => {
                match fate {
                    None => producing = false,
                    Some(fate) => waiting = ledger.record(fate),
                }
            }
        }
    }
    // Dropping the receiver stops the decode thread at its next send. A stopping run does not
    // wait long for it: a thread inside one long step (reading past an oversized record) is left
    // to end on its own, and the run reports in time.
    drop(rx);
    let joined = if stopping {
        tokio::time::timeout(DECODER_GRACE, decoder).await
    } else {
        Ok(decoder.await)
    };
    match joined {
        Ok(Err(e)) => ledger.fail(format!("internal error while decoding: {e}")),
        Ok(Ok(())) => {}
        Err(_) => {
            tracing::warn!(key = %object.key, "the decode thread is inside a long step; the run stops without waiting for it")
        }
    }

    // The request rate in force for this sync's API as the run ends.
    ledger.report_mut().effective_rate_per_minute = deps
        .deliver
        .effective_rate(spec.object_type.endpoint())
        .map(|r| (r * 10.0).round() / 10.0);
    if stopping || ledger.paused() {
        // Checkpoint just before the first body not delivered; it and the rows after it are left
        // to the next run.
        ledger.stopped(waiting.as_ref());
        if (deadline || ledger.paused()) && !ledger.failed() {
            let mut report = ledger.continued();
            tracing::info!(key = %object.key, resume_after_row = report.resume_after_row, "deadline near: stopping at a batch boundary");
            save_sync_state(&sync, &mut report).await;
            return RunOutcome {
                report,
                fatal: None,
            };
        }
    } else {
        ledger.read_to_end();
    }

    // Whatever happened, what MoEngage accepted is recorded, so the next run does not resend it.
    save_sync_state(&sync, ledger.report_mut()).await;
    RunOutcome {
        report: ledger.finish(),
        fatal,
    }
}

/// Opens a stream over `object` at `etag` (when given); the error says what to check.
async fn open_object(
    deps: &Deps,
    object: &ObjectRef,
    etag: Option<&str>,
) -> Result<crate::source::SourceObject, String> {
    deps.source
        .open_if(&object.bucket, &object.key, etag)
        .await
        .map_err(|e| format!("{e}; check the key exists and the function may read it"))
}

/// Range reads of the version `source` opened (Parquet reads its footer and pages by range).
fn ranged_object(
    deps: &Deps,
    object: &ObjectRef,
    source: &crate::source::SourceObject,
) -> RangedObject {
    RangedObject {
        source: deps.source.clone(),
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        size: source.size.unwrap_or(0),
        etag: Some(source.etag.clone()),
        runtime: tokio::runtime::Handle::current(),
    }
}

/// The outcome of a run that failed before any row was sent.
fn failed_before_sending(report: RunReport, reason: String) -> RunOutcome {
    RunOutcome {
        report: finish_failed(report, reason),
        fatal: None,
    }
}

/// The first pass over an object with a stored sync state: reads `body` (the object's stream;
/// the sending pass opens the same version again), spools every keyed row's print within `STATE_MEMORY_MB` (the rest goes to `/tmp`),
/// and has the state classify them shard by shard ([`SyncState::prepare`]). Returns the last row
/// covered when it stopped early (its time, half of what is left, or its row allowance ran out).
async fn first_pass(
    deps: &Deps,
    spec: &Arc<SyncSpec>,
    (object, encoding): (&ObjectRef, Option<String>),
    plan: &RunPlan,
    (body, ranged): (
        std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
        RangedObject,
    ),
    sync: &Arc<SyncState>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<produce::Coverage, String> {
    let config = &deps.config;
    let budget = usize::try_from(config.state_memory_mb << 20).unwrap_or(usize::MAX);
    let spool = PrintSpool::new(sync.shard_bits(), budget / 4, &std::env::temp_dir());
    // Half a byte a row for the verdicts: at most `budget` rows' worth (half the budget).
    let max_rows = (budget as u64).max(produce::MIN_FIRST_PASS_ROWS);
    // At most half the time left, so that what was classified can also be delivered.
    let until = plan.stop_at.map(|t| {
        let now = Instant::now();
        (now + t.saturating_duration_since(now) / 2).into_std()
    });
    let decode_config = Arc::new(config.clone());
    let decode_spec = spec.clone();
    let key = object.key.clone();
    let skip = plan.resume_after_row;
    let reader = SyncIoBridge::new(body);
    let thread = tokio::task::spawn_blocking(move || {
        let input = decode_input(
            Box::new(reader),
            &key,
            encoding.as_deref(),
            &decode_spec,
            &decode_config,
            ranged,
        );
        let limits = Limits {
            skip_through: skip,
            now: Some(now),
            ..Limits::default()
        };
        spool_prints(input, &decode_spec, limits, spool, max_rows, until)
    });
    // A thread inside one long step (reading past an oversized record) is not waited on past
    // the run's stop time; it ends on its own.
    let far = Instant::now() + std::time::Duration::from_secs(86_400 * 365);
    let pass = tokio::time::timeout_at(plan.stop_at.unwrap_or(far), thread)
        .await
        .map_err(|_| {
            "classifying the rows against the sync state did not finish before the run's stop \
             time: one row took that long to read (look for an oversized record), or raise the \
             function's Timeout"
                .to_string()
        })?
        .map_err(|e| format!("internal error while classifying rows: {e}"))?
        .map_err(|e| {
            format!(
                "could not spool the rows' sync-state prints to {}: {e}; check the function's \
             ephemeral storage",
                std::env::temp_dir().display()
            )
        })?;
    let spooled = pass.spool.finish();
    let stats = sync
        .prepare(&spooled, PREPARE_CONCURRENCY)
        .await
        .map_err(|e| format!("{e}; check the function may read and write STATE_BUCKET"))?;
    tracing::debug!(key = %object.key, rows = stats.rows, shards_read = stats.shards_read, entries_kept = stats.entries_kept, spilled_bytes = spooled.spilled_bytes(), coverage = ?pass.coverage, "rows classified against the sync state");
    Ok(pass.coverage)
}

/// What the decoders read: `reader` (the object's stream) and, for Parquet, `ranged`.
fn decode_input<'a>(
    reader: Box<dyn std::io::Read + Send + 'a>,
    key: &'a str,
    content_encoding: Option<&'a str>,
    spec: &SyncSpec,
    config: &crate::config::Config,
    ranged: RangedObject,
) -> DecodeInput<'a> {
    DecodeInput {
        reader,
        key,
        content_encoding,
        format: spec.source_format,
        compression: spec.source_compression,
        csv: spec.csv,
        limits: config.input_limits,
        ranged: Some(ranged),
    }
}

/// Shards read at once while classifying (each is joined and dropped before the next).
const PREPARE_CONCURRENCY: usize = 4;

async fn open_sync_state(
    deps: &Deps,
    spec: &SyncSpec,
    object: &ObjectRef,
    full_resync: bool,
) -> Result<SyncState, SyncStateError> {
    let config = &deps.config;
    let bucket = config
        .state_bucket
        .clone()
        .unwrap_or_else(|| object.bucket.clone());
    let location = SyncLocation::new(
        bucket,
        &config.state_prefix,
        &spec.state_scope(&config.workspace_id),
    );
    let options = SyncOptions::new(spec.sync_mode, full_resync || config.full_resync);
    // A scope with stored state is classified by `first_pass`; one without has no shard to read.
    SyncState::open(deps.state.clone(), location, options).await
}

async fn save_sync_state(sync: &SyncState, report: &mut RunReport) {
    if let Err(e) = sync.save().await {
        // Unsaved deliveries are resent by the next run: a cost, never a lost row.
        tracing::error!(error = %e, "could not save the sync state; the next run resends what this one delivered");
        report.sync_state_error = Some(e.to_string());
    }
}

#[cfg(test)]
mod tests;
