//! The pipeline for one object version:
//!
//! ```text
//! source (S3 stream) → decode (gunzip, CSV) → map + validate → batch   [blocking thread]
//!        ─ channel of ready bodies ─►  deliver (paced, retried) → dead-letter / account  [async]
//! ```
//!
//! Decoding runs on a blocking thread so that CPU work (gunzip, parsing, encoding) never stalls the
//! runtime, and overlaps with waiting on MoEngage. The channel is bounded: memory stays flat
//! whatever the object's size.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::io::SyncIoBridge;

use crate::batch::{Batch, Batcher};
use crate::config::{Config, ObjectType};
use crate::dead_letter::{self, DeadLetterError, DeadLetterMessage, SourceRef};
use crate::decode::{self, DecodeInput, Opened, RangedObject, RowSource};
use crate::delivery::{self, FailureDetail, Outcome};
use crate::handler::Deps;
use crate::mapping::{ElementKind, ResolvedMapping};
use crate::report::{RowReport, RunReport, Status};
use crate::sync_state::{
    self, customer_id_of, Fingerprinter, SyncLocation, SyncOptions, SyncState, SyncStateError,
};

/// Bodies decoded ahead of delivery; bounds memory at a few request bodies.
const CHANNEL_DEPTH: usize = 4;

/// The object being processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
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

/// What the decode thread hands to the delivery loop.
enum Decoded {
    Batch(Batch),
    Rejected(RowReport),
    /// The sync state says MoEngage already has exactly this row: not sent.
    Unchanged(u64),
    /// The row's key already occurred in this object (it is still handled; the last one wins).
    DuplicateKey(RowReport),
    Warnings(Vec<RowReport>),
    /// The object cannot be decoded further. `unsent_rows` were read into a body never handed over.
    Failed {
        reason: String,
        unsent_rows: u64,
    },
}

/// Why the delivery loop stopped early.
enum Stop {
    /// The deadline is near: hand the rest to a continuation.
    Deadline,
    /// 401/403/409: nothing will get through.
    Misconfigured(String),
    /// The dead-letter queue could not be written.
    Fatal(FatalError),
}

/// Processes one object version from `plan.resume_after_row`: reads, validates, delivers, and
/// accounts for every row it reads. The report is not stored here.
pub async fn process_object(deps: &Deps, object: &ObjectRef, plan: &RunPlan) -> RunOutcome {
    let config = &deps.config;
    let mut report = RunReport {
        object_type: config.object_type.as_str().into(),
        started_at: now_rfc3339(),
        started_after_row: plan.resume_after_row,
        resume_after_row: plan.resume_after_row,
        ..Default::default()
    };
    report.summary.bucket = object.bucket.clone();
    report.summary.key = object.key.clone();

    // Source: a stream over the object, never the whole object in memory.
    let source = match deps
        .source
        .open_if(&object.bucket, &object.key, plan.etag.as_deref())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            return RunOutcome {
                report: finish_failed(
                    report,
                    format!("{e}; check the key exists and the function may read it"),
                ),
                fatal: None,
            }
        }
    };
    report.etag = source.etag.clone();
    report.version_id = source.version_id.clone();
    let reader = SyncIoBridge::new(source.body);
    let ranged = RangedObject {
        source: deps.source.clone(),
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        size: source.size.unwrap_or(0),
        runtime: tokio::runtime::Handle::current(),
    };

    // Change detection: what MoEngage already holds for this workspace and object type.
    let sync = match open_sync_state(deps, object, plan.full_resync).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            return RunOutcome {
                report: finish_failed(
                    report,
                    format!("{e}; check the function may read and write STATE_BUCKET"),
                ),
                fatal: None,
            }
        }
    };

    // Decode → map + validate → diff → batch, on a blocking thread.
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let decode_config = Arc::new(config.clone());
    let (key, encoding) = (object.key.clone(), source.content_encoding.clone());
    let skip = plan.resume_after_row;
    let decode_sync = sync.clone();
    let decoder = tokio::task::spawn_blocking(move || {
        let input = DecodeInput {
            reader: Box::new(reader),
            key: &key,
            content_encoding: encoding.as_deref(),
            format: decode_config.source_format,
            compression: decode_config.source_compression,
            csv: decode_config.csv,
            ranged: Some(ranged),
        };
        decode_object(
            input,
            &decode_config,
            Limits {
                skip_through: skip,
                max_rows: None,
            },
            Some(&decode_sync),
            &tx,
        )
    });

    // Deliver each body as it arrives; account for every row. Rejections are held until the
    // batch boundary passes them, so a checkpoint never splits what a run counted.
    let source_ref = |b: &Batch| SourceRef {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        etag: source.etag.clone(),
        version_id: source.version_id.clone(),
        first_row: b.first_row,
        last_row: b.last_row,
    };
    let mut held: Vec<Held> = Vec::new();
    let mut failure: Option<String> = None;
    let mut stop: Option<(Stop, Batch)> = None;
    let mut last_row_read = plan.resume_after_row;
    while let Some(msg) = rx.recv().await {
        match msg {
            Decoded::Rejected(r) => {
                last_row_read = last_row_read.max(r.row);
                held.push(Held {
                    row: r.row,
                    rejection: Some(r),
                });
            }
            Decoded::Unchanged(row) => {
                last_row_read = last_row_read.max(row);
                held.push(Held {
                    row,
                    rejection: None,
                });
            }
            Decoded::DuplicateKey(r) => {
                report.duplicate_keys += 1;
                report.warn(r);
            }
            Decoded::Warnings(ws) => {
                // Row 0 warnings concern the mapping itself, not a row.
                if ws.iter().any(|w| w.row > 0) {
                    report.summary.rows_warned += 1;
                }
                for w in ws {
                    report.warn(w);
                }
            }
            Decoded::Failed {
                reason,
                unsent_rows,
            } => {
                report.summary.rows_read += unsent_rows;
                report.summary.rows_pending += unsent_rows;
                failure = Some(reason);
            }
            Decoded::Batch(batch) => {
                last_row_read = last_row_read.max(batch.last_row);
                // Rejections before this body can no longer fall behind a checkpoint.
                settle_rejections(&mut report, &mut held, batch.first_row);
                if plan.stop_at.is_some_and(|t| Instant::now() >= t) {
                    stop = Some((Stop::Deadline, batch));
                    break;
                }
                let body = Bytes::from(batch.body.clone());
                let records = (batch.records - batch.events, batch.events);
                let d = delivery::deliver(
                    &deps.moengage,
                    &deps.budget,
                    &config.retry,
                    batch.endpoint,
                    body,
                    records,
                    plan.stop_at,
                )
                .await;
                report.summary.requests_sent += u64::from(d.attempts);
                report.retries += u64::from(d.attempts.saturating_sub(1));
                report.rate_limited += u64::from(d.rate_limited);
                report.moengage_latency_ms += d.latency.as_millis() as u64;
                match d.outcome {
                    Outcome::Delivered { request_id } => {
                        // Only now may the state say MoEngage has these rows.
                        sync.record_delivered(&batch.prints);
                        report.summary.rows_read += batch.records;
                        report.summary.rows_delivered += batch.records;
                        report.resume_after_row = batch.last_row;
                        tracing::debug!(key = %object.key, rows = batch.records, first_row = batch.first_row, request_id = request_id.as_deref().unwrap_or(""), "delivered");
                    }
                    Outcome::Failed(detail) => {
                        match dead_letter(deps, source_ref(&batch), &batch, detail, d.attempts)
                            .await
                        {
                            Ok(id) => {
                                report.summary.rows_read += batch.records;
                                report.summary.rows_dead_lettered += batch.records;
                                report.resume_after_row = batch.last_row;
                                report.dead_letter_message_ids.push(id);
                            }
                            Err(fatal) => {
                                stop = Some((Stop::Fatal(fatal), batch));
                                break;
                            }
                        }
                    }
                    Outcome::Misconfigured(detail) => {
                        stop = Some((Stop::Misconfigured(diagnose(config, &detail)), batch));
                        break;
                    }
                    Outcome::Interrupted => {
                        stop = Some((Stop::Deadline, batch));
                        break;
                    }
                }
            }
        }
    }
    // Dropping the receiver stops the decode thread at its next send.
    drop(rx);
    if let Err(e) = decoder.await {
        failure.get_or_insert_with(|| format!("internal error while decoding: {e}"));
    }

    let mut fatal = None;
    match stop {
        None => {
            // Read to the end (or to a decode failure): every held rejection is settled.
            settle_rejections(&mut report, &mut held, u64::MAX);
            if failure.is_none() {
                report.resume_after_row = last_row_read;
            }
        }
        Some((why, batch)) => {
            // Checkpoint just before the body that was not sent; it and the rejections after
            // it are left to the next run.
            settle_rejections(&mut report, &mut held, batch.first_row);
            let pending = batch.records + held.len() as u64;
            report.summary.rows_read += pending;
            report.summary.rows_pending += pending;
            report.resume_after_row = batch.first_row - 1;
            match why {
                Stop::Deadline => {
                    report.summary.status = Status::Continued;
                    report.finished_at = now_rfc3339();
                    report.accounting_balanced = report.summary.balanced();
                    tracing::info!(key = %object.key, resume_after_row = report.resume_after_row, "deadline near: stopping at a batch boundary");
                    save_sync_state(&sync, &mut report).await;
                    return RunOutcome {
                        report,
                        fatal: None,
                    };
                }
                Stop::Misconfigured(diagnosis) => failure = Some(diagnosis),
                Stop::Fatal(e) => {
                    failure = Some(e.to_string());
                    fatal = Some(e);
                }
            }
        }
    }

    // Whatever happened, what MoEngage accepted is recorded, so the next run does not resend it.
    save_sync_state(&sync, &mut report).await;
    report.finished_at = now_rfc3339();
    let report = match failure {
        Some(reason) => finish_failed(report, reason),
        None => {
            report.summary.status = Status::Complete;
            report.accounting_balanced = report.summary.balanced();
            report
        }
    };
    RunOutcome { report, fatal }
}

/// A row settled without a request (rejected, or unchanged when `rejection` is `None`), held until
/// the batch boundary passes it.
struct Held {
    row: u64,
    rejection: Option<RowReport>,
}

/// Counts held rows before `before_row` as rejected or unchanged.
fn settle_rejections(report: &mut RunReport, held: &mut Vec<Held>, before_row: u64) {
    let (settled, rest): (Vec<_>, Vec<_>) = held.drain(..).partition(|h| h.row < before_row);
    *held = rest;
    for h in settled {
        report.summary.rows_read += 1;
        match h.rejection {
            Some(r) => report.reject(r),
            None => report.summary.rows_unchanged += 1,
        }
    }
}

async fn open_sync_state(
    deps: &Deps,
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
        &sync_state::scope(&config.workspace_id, config.object_type),
    );
    let options = SyncOptions::new(config.sync_mode, full_resync || config.full_resync);
    let state = SyncState::open(deps.state.clone(), location, options).await?;
    // All shards up front, in parallel: the decode thread then never waits on a GET. A scope with
    // no state yet has no shards to fetch.
    if state.has_stored_state() && !options.full_resync {
        state.prefetch(16).await?;
    }
    Ok(state)
}

async fn save_sync_state(sync: &SyncState, report: &mut RunReport) {
    if let Err(e) = sync.save().await {
        // Unsaved deliveries are resent by the next run: a cost, never a lost row.
        tracing::error!(error = %e, "could not save the sync state; the next run resends what this one delivered");
        report.sync_state_error = Some(e.to_string());
    }
}

async fn dead_letter(
    deps: &Deps,
    source: SourceRef,
    batch: &Batch,
    detail: FailureDetail,
    attempts: u32,
) -> Result<String, FatalError> {
    let (bucket, key) = (source.bucket.clone(), source.key.clone());
    let fatal = |source: DeadLetterError| FatalError::DeadLetter {
        bucket: bucket.clone(),
        key: key.clone(),
        first_row: batch.first_row,
        last_row: batch.last_row,
        source,
    };
    tracing::warn!(%bucket, %key, first_row = batch.first_row, last_row = batch.last_row, reason = %detail.reason, "dead-lettering a request body");
    let mut msg = DeadLetterMessage::new(
        source,
        batch.endpoint,
        &deps.config.app_id,
        &batch.body,
        batch.records,
        detail,
        attempts,
    )
    .map_err(fatal)?;
    if msg.encoded_len() > dead_letter::MAX_INLINE_MESSAGE_BYTES {
        // Over SQS's message size: the payload goes to S3 and the message points to it.
        let state_bucket = deps
            .config
            .state_bucket
            .clone()
            .unwrap_or_else(|| bucket.clone());
        let payload_key = format!(
            "{}rows-{}-{}-{}.json",
            dead_letter::payload_prefix(&deps.config.state_prefix, &bucket, &key),
            batch.first_row,
            batch.last_row,
            chrono::Utc::now().timestamp_millis()
        );
        deps.state
            .put(&state_bucket, &payload_key, batch.body.clone(), false)
            .await
            .map_err(|e| {
                fatal(DeadLetterError(format!(
                    "payload too large for SQS and could not be stored in S3: {e}"
                )))
            })?;
        msg.move_payload_to(format!("s3://{state_bucket}/{payload_key}"));
    }
    deps.dead_letters.send(&msg).await.map_err(fatal)
}

fn finish_failed(mut report: RunReport, reason: String) -> RunReport {
    tracing::error!(bucket = %report.summary.bucket, key = %report.summary.key, %reason, "object failed");
    report.summary.status = Status::Failed;
    report.summary.error = Some(reason);
    if report.finished_at.is_empty() {
        report.finished_at = now_rfc3339();
    }
    report.accounting_balanced = report.summary.balanced();
    report
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Says what a 401/403/409 means and what to check, naming the data center and ids in use.
pub fn diagnose(config: &Config, detail: &FailureDetail) -> String {
    let host = config.api_host();
    let dc = config.data_center.name();
    let answer = detail.reason.as_str();
    match detail.status {
        Some(401) => format!(
            "MoEngage refused the credentials ({answer}) at {host}: the Workspace ID {ws:?} and Data API key are not valid on {dc}. \
             Check: (1) the data center — your dashboard URL {dash} must match {dc}; \
             (2) MOENGAGE_WORKSPACE_ID is the Workspace ID from Settings > Account > APIs; \
             (3) the Data API key (not another key type) is in MOENGAGE_API_KEY or the secret.",
            ws = config.workspace_id,
            dash = config.data_center.dashboard_host(),
        ),
        Some(403) => format!(
            "MoEngage answered 403 ({answer}) at {host}: the account or workspace {ws:?} is suspended or blocked for the Data API. \
             Check the account status with MoEngage, and that Data API access is enabled.",
            ws = config.workspace_id
        ),
        Some(409) => format!(
            "MoEngage answered 409 ({answer}): the App ID in the request path ({app:?}) differs from the Workspace ID used to authenticate ({ws:?}). \
             Unset MOENGAGE_APP_ID (it defaults to the Workspace ID) or set it to the Workspace ID.",
            app = config.app_id,
            ws = config.workspace_id
        ),
        _ => format!("MoEngage rejected the configuration at {host} ({answer}); check the data center ({dc}), Workspace ID and Data API key."),
    }
}

/// Which rows the decode thread works on.
#[derive(Debug, Clone, Copy, Default)]
struct Limits {
    /// Rows 1..=skip_through were settled by an earlier run: read past them without a word.
    skip_through: u64,
    /// Stop after this many rows (preview), flushing the last body.
    max_rows: Option<u64>,
}

/// A header read as one column that holds `;`, `|` or a tab was most likely split on the wrong
/// delimiter.
fn delimiter_hint(header: &[String]) -> String {
    match header {
        [only] => [';', '|', '\t']
            .into_iter()
            .find(|d| only.contains(*d))
            .map(|d| format!("; the header was read as one column — if the file is separated by {d:?}, set CSV_DELIMITER"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The blocking half: stream → rows → elements → bodies, sent down `tx`.
fn decode_object(
    input: DecodeInput<'_>,
    config: &Config,
    limits: Limits,
    sync: Option<&SyncState>,
    tx: &mpsc::Sender<Decoded>,
) {
    match decode::open(input) {
        Ok(Opened::Csv(rows)) => decode_rows(rows, config, limits, sync, tx),
        Ok(Opened::Ndjson(rows)) => decode_rows(rows, config, limits, sync, tx),
        Ok(Opened::Parquet(rows)) => decode_rows(rows, config, limits, sync, tx),
        Err(e) => {
            let _ = tx.blocking_send(Decoded::Failed {
                reason: format!("not a readable export: {e}"),
                unsent_rows: 0,
            });
        }
    }
}

/// [`decode_object`]'s row loop, compiled per format.
fn decode_rows<R: RowSource>(
    mut rows: R,
    config: &Config,
    limits: Limits,
    sync: Option<&SyncState>,
    tx: &mpsc::Sender<Decoded>,
) {
    let max_rows = limits.max_rows;
    let send = |m: Decoded| tx.blocking_send(m).is_ok();
    let mapping: ResolvedMapping = match config
        .field_mapping
        .resolve(rows.header(), config.sync_mode)
    {
        Ok(m) => m,
        Err(e) => {
            send(Decoded::Failed {
                reason: format!(
                    "the mapping does not fit this export: {e}{}",
                    delimiter_hint(rows.header())
                ),
                unsent_rows: 0,
            });
            return;
        }
    };
    let name_warnings: Vec<RowReport> = mapping
        .name_warnings()
        .into_iter()
        .map(|w| RowReport {
            row: 0,
            line: None,
            column: w.column,
            reason: w.reason,
        })
        .collect();
    if !name_warnings.is_empty() && !send(Decoded::Warnings(name_warnings)) {
        return;
    }
    let (max_records, max_bytes) = match config.object_type {
        ObjectType::BulkImport => (config.batch_max_records, config.batch_max_bytes),
        _ => (1, config.batch_max_bytes),
    };
    let mut batcher = Batcher::new(config.object_type, max_records, max_bytes);
    let fingerprinter = Fingerprinter::new(config.object_type, &mapping);
    let now = chrono::Utc::now();
    let mut element = Vec::with_capacity(4096);
    let mut seen = 0u64;
    loop {
        if max_rows.is_some_and(|max| seen >= max) {
            break;
        }
        seen += 1;
        let row = match rows.next_row() {
            Ok(Some(row)) => row.map(|r| (r.number, r.line)),
            Ok(None) => break,
            Err(e) => {
                let unsent = batcher.finish().map_or(0, |b| b.records);
                send(Decoded::Failed {
                    reason: format!("the export could not be read to the end: {e}"),
                    unsent_rows: unsent,
                });
                return;
            }
        };
        let row = match row {
            Ok(row) => row,
            Err(bad) if bad.row <= limits.skip_through => continue,
            Err(bad) => {
                if !send(Decoded::Rejected(RowReport {
                    row: bad.row,
                    line: bad.line,
                    column: String::new(),
                    reason: bad.reason,
                })) {
                    return;
                }
                continue;
            }
        };
        let (row_no, line) = row;
        if row_no <= limits.skip_through {
            continue;
        }
        let reject = |column: String, reason: String| {
            Decoded::Rejected(RowReport {
                row: row_no,
                line,
                column,
                reason,
            })
        };
        // The row just read is the decoder's current one: cells come straight from `rows`.
        match mapping.encode(&rows, &mut element, now) {
            Err(issue) => {
                if !send(reject(issue.column, issue.reason)) {
                    return;
                }
            }
            Ok((kind, encoded)) => {
                // Diff against the sync state: users by customer_id, events by their event id.
                let mut print = None;
                if let Some(state) = sync {
                    let event_id = if kind == ElementKind::Event {
                        mapping.event_key(&rows)
                    } else {
                        None
                    };
                    let key: Option<&[u8]> = match kind {
                        ElementKind::Customer => customer_id_of(&element),
                        ElementKind::Event => event_id.as_deref().map(str::as_bytes),
                    };
                    if let Some(key) = key {
                        let p = fingerprinter.print(kind, key, &element);
                        match state.classify(kind, p) {
                            Ok(decision) => {
                                if decision.duplicate {
                                    let what = if kind == ElementKind::Event {
                                        "event id"
                                    } else {
                                        "customer_id"
                                    };
                                    let w = RowReport { row: row_no, line, column: String::new(), reason: format!("{what} {} occurred earlier in this export; the last occurrence wins", String::from_utf8_lossy(key)) };
                                    if !send(Decoded::DuplicateKey(w)) {
                                        return;
                                    }
                                }
                                if !decision.send {
                                    if !send(Decoded::Unchanged(row_no)) {
                                        return;
                                    }
                                    continue;
                                }
                                print = Some(p);
                            }
                            Err(e) => {
                                let unsent = batcher.finish().map_or(0, |b| b.records);
                                send(Decoded::Failed {
                                    reason: format!("could not read the sync state: {e}"),
                                    unsent_rows: unsent,
                                });
                                return;
                            }
                        }
                    }
                }
                match batcher.push(&element, row_no, kind == ElementKind::Event, print) {
                    Ok(Some(full)) => {
                        if !send(Decoded::Batch(full)) {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(too_large) => {
                        if !send(reject(String::new(), too_large.to_string())) {
                            return;
                        }
                        continue;
                    }
                }
                if !encoded.warnings.is_empty() {
                    let ws = encoded
                        .warnings
                        .into_iter()
                        .map(|w| RowReport {
                            row: row_no,
                            line,
                            column: w.column,
                            reason: w.reason,
                        })
                        .collect();
                    if !send(Decoded::Warnings(ws)) {
                        return;
                    }
                }
            }
        }
    }
    if let Some(last) = batcher.finish() {
        send(Decoded::Batch(last));
    }
}

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
}

/// Decodes, maps, validates and batches the first `max_rows` rows of `input`; sends nothing.
/// Blocking: call from a thread that may block (not from async code).
pub fn dry_run(config: &Config, input: DecodeInput<'_>, max_rows: u64) -> DryRun {
    dry_run_with_state(config, input, max_rows, None)
}

/// As [`dry_run`], diffing against `sync` (rows MoEngage already has are counted `unchanged`, not
/// shown as bodies). Nothing is recorded or saved.
pub fn dry_run_with_state(
    config: &Config,
    input: DecodeInput<'_>,
    max_rows: u64,
    sync: Option<&SyncState>,
) -> DryRun {
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let mut out = DryRun {
        diffed: sync.is_some(),
        ..DryRun::default()
    };
    std::thread::scope(|scope| {
        scope.spawn(move || {
            decode_object(
                input,
                config,
                Limits {
                    skip_through: 0,
                    max_rows: Some(max_rows),
                },
                sync,
                &tx,
            )
        });
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Decoded::Batch(b) => {
                    out.rows_read += b.records;
                    out.bodies.push(b);
                }
                Decoded::Rejected(r) => {
                    out.rows_read += 1;
                    out.rejected.push(r);
                }
                Decoded::Unchanged(_) => {
                    out.rows_read += 1;
                    out.unchanged += 1;
                }
                Decoded::DuplicateKey(w) => out.warnings.push(w),
                Decoded::Warnings(ws) => out.warnings.extend(ws),
                Decoded::Failed {
                    reason,
                    unsent_rows,
                } => {
                    out.rows_read += unsent_rows;
                    out.failure = Some(reason);
                }
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
pub fn drain(config: &Config, input: DecodeInput<'_>) -> DrainStats {
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let mut out = DrainStats::default();
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            decode_object(input, config, Limits::default(), None, &tx);
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
                Decoded::Unchanged(_) | Decoded::DuplicateKey(_) | Decoded::Warnings(_) => {}
                Decoded::Failed {
                    reason,
                    unsent_rows,
                } => {
                    out.rows_read += unsent_rows;
                    out.failure = Some(reason);
                }
            }
        }
        if let Ok(Some((cpu, wait))) = decoder.join() {
            out.decode_cpu_secs = Some(cpu);
            out.decode_wait_secs = Some(wait);
        }
    });
    out
}
