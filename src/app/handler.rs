//! The Lambda handler: dispatches an invocation (S3 notification, SQS messages, work item,
//! scheduled sweep, redrive), and runs each object version under its run marker: claim → run the
//! pipeline → store the report → record the outcome → enqueue a continuation if needed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::SqsEvent;
use serde_json::Value;
use tokio::time::Instant;

use crate::account::report::{report_key, ObjectSummary, Status};
use crate::app::invocation;
use crate::app::invocation::{Request, UnknownPayload};
use crate::app::mirror;
use crate::app::redrive;
use crate::app::runs::{Claim, MarkerStatus, Markers, RunCheckpoint, RunMarker};
use crate::app::summary::{BatchItemFailure, Summary};
use crate::app::work::WorkItem;
use crate::app::Processed;
use crate::app::{Deps, Invocation};
use crate::config::syncs::SyncSpec;
use crate::config::syncs::Syncs;
use crate::decode;
use crate::model::{shorten, ObjectRef};
use crate::pipeline::{self, FatalError, RunOutcome, RunPlan};
use crate::source::normalize_etag;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    UnknownPayload(#[from] UnknownPayload),
    #[error(transparent)]
    Fatal(#[from] FatalError),
    /// A changed `SYNC_CONFIG` that is not valid: nothing runs until it is fixed.
    #[error("configuration error: {0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Handles one invocation.
pub async fn handle(
    deps: &Deps,
    payload: Value,
    inv: &Invocation,
) -> Result<Summary, HandlerError> {
    let mut summary = Summary::default();
    let syncs = deps.current_syncs().await.inspect_err(|e| {
        tracing::error!(error = %e, "SYNC_CONFIG is not valid; nothing is processed until it is fixed")
    })?;
    if !invocation::is_sqs(&payload) {
        let request = invocation::parse(&payload, &deps.config, &mut summary.notes)?;
        run_request(deps, &syncs, request, inv, &mut summary).await?;
        return Ok(summary);
    }
    // SQS: report each message that failed so only those come back (partial batch response).
    let sqs: SqsEvent =
        serde_json::from_value(payload).map_err(|e| UnknownPayload(format!("SQS event: {e}")))?;
    let mut failures = Vec::new();
    for record in sqs.records {
        let id = record.message_id.unwrap_or_default();
        let parsed = serde_json::from_str::<Value>(record.body.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())
            .and_then(|body| {
                invocation::parse(&body, &deps.config, &mut summary.notes)
                    .map_err(|e| e.to_string())
            });
        let request = match parsed {
            // A mirror request stands for the objects landed when it was sent, not when SQS
            // delivers it again.
            Ok(Request::Mirror(mut req)) => {
                req.sent_at = record
                    .attributes
                    .get("SentTimestamp")
                    .and_then(|ms| ms.parse::<i64>().ok())
                    .map(|ms| ms / 1000);
                Request::Mirror(req)
            }
            Ok(r) => r,
            Err(e) => {
                // Retrying a message we cannot read would not help; its redrive policy would only
                // delay the same answer.
                summary
                    .notes
                    .push(format!("SQS message {id}: {e}; dropped"));
                continue;
            }
        };
        let before = summary.objects.len();
        let failed = match run_request(deps, &syncs, request, inv, &mut summary).await {
            // An object another invocation holds comes back later, never acknowledged unseen.
            Ok(later) => {
                // A refused mirror pass is not retried: it waits for a reviewed work item.
                later
                    || summary.objects[before..].iter().any(|o| {
                        o.status == Status::Failed
                            && !o.mirror.as_ref().is_some_and(|m| m.mirror_refused)
                    })
            }
            Err(e) => {
                tracing::error!(error = %e, message_id = %id, "message failed");
                summary.notes.push(format!("SQS message {id}: {e}"));
                true
            }
        };
        if failed {
            failures.push(BatchItemFailure {
                item_identifier: id,
            });
        }
    }
    summary.batch_item_failures = Some(failures);
    Ok(summary)
}

/// Runs one request; `true` when part of it must be tried again later (an object another
/// invocation is processing), so an SQS message is not acknowledged and dropped.
async fn run_request(
    deps: &Deps,
    syncs: &Arc<Syncs>,
    request: Request,
    inv: &Invocation,
    summary: &mut Summary,
) -> Result<bool, FatalError> {
    let mut later = false;
    let mut take = |p: Processed, summary: &mut Summary| match p {
        Processed::Line(line) => summary.objects.push(line),
        Processed::Nothing => {}
        Processed::Busy => later = true,
    };
    match request {
        Request::Objects(objects) => {
            let done = deps.config.mirror_done_marker.as_deref();
            for object in objects {
                let folder = mirror::folder_of(&object.key);
                let mirrored = syncs
                    .route(folder)
                    .is_ok_and(|s| s.sync_mode == crate::model::SyncMode::Mirror);
                if mirror::is_completion_marker(&object.key, done) && mirrored {
                    let p = mirror::run(
                        deps,
                        syncs,
                        &object.bucket,
                        folder,
                        mirror::Trigger::Marker,
                        inv,
                        &mut summary.notes,
                    )
                    .await?;
                    take(p, summary);
                    continue;
                }
                let p = process_version(deps, syncs, &object, None, false, inv, &mut summary.notes)
                    .await?;
                let after = after_object(deps, syncs, &p, inv, &mut summary.notes).await?;
                take(p, summary);
                take(after, summary);
            }
        }
        Request::Mirror(req) => {
            let (bucket, prefix) = (req.bucket.clone(), req.prefix.clone());
            let trigger = mirror::Trigger::Requested(req);
            let p = mirror::run(
                deps,
                syncs,
                &bucket,
                &prefix,
                trigger,
                inv,
                &mut summary.notes,
            )
            .await?;
            take(p, summary);
        }
        Request::Work(item) => {
            if let Err(why) = deps.config.accepts_object(&item.bucket, &item.key) {
                // A forged work item must not make the function read another bucket or its own
                // state; a key longer than S3 allows is cut in the note.
                let named = shorten(&format!("s3://{}/{}", item.bucket, item.key), 1100);
                tracing::warn!(object = %named, %why, "work item refused");
                summary.notes.push(format!("work item {named}: {why}"));
                return Ok(false);
            }
            let object = ObjectRef {
                bucket: item.bucket,
                key: item.key,
            };
            let p = process_version(
                deps,
                syncs,
                &object,
                item.etag.as_deref(),
                item.full_resync,
                inv,
                &mut summary.notes,
            )
            .await?;
            let after = after_object(deps, syncs, &p, inv, &mut summary.notes).await?;
            take(p, summary);
            take(after, summary);
        }
        Request::Sweep => sweep(deps, syncs, inv, summary).await?,
        Request::Redrive(req) => {
            summary.redrive = Some(redrive::redrive(deps, &req, inv.stop_at(&deps.config)).await)
        }
        Request::TestEvent => summary.notes.push("S3 test event: nothing to do".into()),
    }
    Ok(later)
}

/// After an object's run: a mirror sync's folder may now be complete.
async fn after_object(
    deps: &Deps,
    syncs: &Arc<Syncs>,
    processed: &Processed,
    inv: &Invocation,
    notes: &mut Vec<String>,
) -> Result<Processed, FatalError> {
    match processed {
        Processed::Line(line) => mirror::after_object(deps, syncs, line, inv, notes).await,
        _ => Ok(Processed::Nothing),
    }
}

/// Runs the current version of one object under its run marker; a note says why when it did not
/// run.
pub async fn process_version(
    deps: &Deps,
    syncs: &Arc<Syncs>,
    object: &ObjectRef,
    expected_etag: Option<&str>,
    full_resync: bool,
    inv: &Invocation,
    notes: &mut Vec<String>,
) -> Result<Processed, FatalError> {
    let where_ = format!("s3://{}/{}", object.bucket, object.key);
    let spec = match syncs.route(&object.key) {
        Ok(spec) => spec.clone(),
        Err(note) => {
            // Not ours to sync: neither failed nor dead-lettered, and no marker is claimed.
            notes.push(format!("{}: {note}", shorten(&where_, 1100)));
            return Ok(Processed::Nothing);
        }
    };
    // Every log line of this object's run names its sync.
    let span = tracing::info_span!("object", sync = %spec.name);
    process_routed(
        deps,
        syncs,
        &spec,
        object,
        expected_etag,
        full_resync,
        inv,
        notes,
    )
    .instrument(span)
    .await
}

#[allow(clippy::too_many_arguments)]
async fn process_routed(
    deps: &Deps,
    syncs: &Syncs,
    spec: &Arc<SyncSpec>,
    object: &ObjectRef,
    expected_etag: Option<&str>,
    full_resync: bool,
    inv: &Invocation,
    notes: &mut Vec<String>,
) -> Result<Processed, FatalError> {
    let config = &deps.config;
    let where_ = format!("s3://{}/{}", object.bucket, object.key);
    let meta = match deps.source.head(&object.bucket, &object.key).await {
        Ok(m) => m,
        Err(e) => {
            return Ok(Processed::Line(failed_line(
                object,
                format!("{e}; check the key exists and the function may read it"),
            )))
        }
    };
    if let Some(what) = decode::marker_reason(&object.key, Some(meta.size)) {
        notes.push(format!("{where_}: {what}, not data; skipped"));
        return Ok(Processed::Nothing);
    }
    if let Some(expected) = expected_etag
        .map(normalize_etag)
        .filter(|e| *e != meta.etag)
    {
        notes.push(format!("{where_}: overwritten since its checkpoint (ETag {expected} → {}); the new version is processed from its start", meta.etag));
    }

    let state_bucket = config
        .state_bucket
        .clone()
        .unwrap_or_else(|| object.bucket.clone());
    let markers = Markers {
        store: &*deps.state,
        state_bucket: &state_bucket,
        prefix: &config.state_prefix,
    };
    let (marker, marker_etag) = match markers
        .claim(&object.bucket, &object.key, &meta.etag, inv.lease_secs())
        .await
    {
        Ok(Claim::Claimed {
            marker,
            marker_etag,
        }) => (marker, marker_etag),
        Ok(Claim::Complete { marker }) => {
            notes.push(format!(
                "{where_} (ETag {}): already processed completely ({}); nothing to do",
                meta.etag, marker.updated_at
            ));
            return Ok(Processed::Nothing);
        }
        Ok(Claim::Busy { marker }) => {
            notes.push(format!(
                "{where_} (ETag {}): being processed by another invocation since {}; it comes back later (an SQS message is returned for retry)",
                meta.etag, marker.updated_at
            ));
            return Ok(Processed::Busy);
        }
        Ok(Claim::Poisoned { marker }) => {
            let mkey = crate::app::runs::marker_key(
                &config.state_prefix,
                &object.bucket,
                &object.key,
                &meta.etag,
            );
            let error = format!(
                "{}; check the logs of those runs (raise MemorySize or Timeout, or fix the export), then delete s3://{state_bucket}/{mkey} to retry",
                marker.error.as_deref().unwrap_or("its runs keep dying")
            );
            let mut line = failed_line(object, error);
            line.sync = spec.name.clone();
            // A metric (and its alarm) for it: it will not come back by itself.
            let report = crate::account::report::RunReport {
                summary: line.clone(),
                object_type: spec.object_type.as_str().into(),
                poisoned: true,
                finished_at: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ..Default::default()
            };
            crate::account::metrics::emit(&report, spec.object_type.as_str());
            return Ok(Processed::Line(line));
        }
        Err(e) => {
            return Ok(Processed::Line(failed_line(
                object,
                format!(
                "could not claim the run marker: {e}; check the function may write to STATE_BUCKET"
            ),
            )))
        }
    };

    let key = report_key(
        &spec.report_prefix(&config.state_prefix),
        &object.bucket,
        &object.key,
        &meta.etag,
        marker.resume_after_row,
    );
    let checkpoint = Arc::new(RunCheckpoint {
        store: deps.state.clone(),
        state_bucket: state_bucket.clone(),
        prefix: config.state_prefix.clone(),
        report_key: key.clone(),
        lease_secs: inv.lease_secs(),
        sync_config_etag: syncs.file_etag().map(str::to_string),
        current: tokio::sync::Mutex::new((marker.clone(), marker_etag.clone())),
    });
    let plan = RunPlan {
        etag: Some(meta.etag.clone()),
        resume_after_row: marker.resume_after_row,
        stop_at: inv.stop_at(config),
        full_resync,
        checkpoint: Some((
            checkpoint.clone() as Arc<dyn pipeline::Checkpoint>,
            std::time::Duration::from_secs(config.checkpoint_secs),
        )),
        cancel: inv.cancel.clone(),
        progress: inv.progress.clone(),
    };
    let RunOutcome { mut report, fatal } =
        pipeline::process_object(deps, spec, object, &plan).await;
    drop(plan);
    if let Some(progress) = &inv.progress {
        // The final counts (held rows settle at the end).
        progress.update(&report.summary, report.effective_rate_per_minute);
    }
    report.sync_config_etag = syncs.file_etag().map(str::to_string);
    // Mid-run checkpoints moved the marker on; finish from its latest version.
    let (marker, marker_etag) = checkpoint.current.lock().await.clone();
    report.summary.report = Some(format!("s3://{state_bucket}/{key}"));
    let s = &report.summary;
    tracing::info!(
        sync = %s.sync, bucket = %s.bucket, key = %s.key, status = ?s.status, rows_read = s.rows_read, rows_delivered = s.rows_delivered,
        rows_rejected = s.rows_rejected, rows_dead_lettered = s.rows_dead_lettered, rows_pending = s.rows_pending,
        requests_sent = s.requests_sent, resume_after_row = report.resume_after_row, "object processed"
    );
    match serde_json::to_vec_pretty(&report) {
        Ok(body) => {
            if let Err(e) = deps.state.put(&state_bucket, &key, body, false).await {
                // The rows are already settled; losing the report must not resend them.
                tracing::error!(error = %e, "could not store the run report");
                report.summary.report = None;
            }
        }
        Err(e) => tracing::error!(error = %e, "could not encode the run report"),
    }

    // The run log: one line a warehouse (and `moengage-sync runs`) can query.
    let record = crate::account::run_log::RunRecord::from_report(&report);
    if let Err(e) = deps
        .state
        .put(
            &state_bucket,
            &record.key(&config.state_prefix),
            record.line().into_bytes(),
            false,
        )
        .await
    {
        tracing::warn!(error = %e, "could not store the run-log record");
    }

    // CloudWatch Embedded Metric Format: one line per object, for dashboards and alarms.
    crate::account::metrics::emit(&report, spec.object_type.as_str());

    let status = match report.summary.status {
        Status::Complete => MarkerStatus::Complete,
        Status::Continued => MarkerStatus::Continued,
        Status::Failed => MarkerStatus::Failed,
    };
    match markers
        .finish(
            marker,
            &marker_etag,
            status,
            report.resume_after_row,
            report.summary.error.clone(),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(%where_, "the run marker was taken over by another invocation while this one ran")
        }
        Err(e) => {
            tracing::error!(error = %e, %where_, "could not record the run's outcome; a repeat delivery will re-run from the last checkpoint")
        }
    }

    if report.summary.status == Status::Continued && !inv.enqueue_continuations {
        notes.push(format!(
            "{where_}: stopped after row {}; run the same command again to resume",
            report.resume_after_row
        ));
    } else if report.summary.status == Status::Continued {
        let item = WorkItem {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            etag: Some(meta.etag.clone()),
            resume_after_row: report.resume_after_row,
            full_resync,
        };
        match &deps.work_queue {
            Some(q) => match q.enqueue(&item).await {
                Ok(()) => notes.push(format!("{where_}: continues after row {} in a new invocation", report.resume_after_row)),
                Err(e) => notes.push(format!("{where_}: {e}; the scheduled sweep will resume it after row {}", report.resume_after_row)),
            },
            None => notes.push(format!("{where_}: WORK_QUEUE_URL is not set; the scheduled sweep will resume it after row {}", report.resume_after_row)),
        }
    }
    if let Some(f) = fatal {
        return Err(f);
    }
    Ok(Processed::Line(report.summary))
}

/// The scheduled sweep: object versions under `SOURCE_PREFIX` without a completed run (missed
/// notifications, failed or continued runs), at most `SWEEP_MAX_OBJECTS` per invocation.
async fn sweep(
    deps: &Deps,
    syncs: &Arc<Syncs>,
    inv: &Invocation,
    summary: &mut Summary,
) -> Result<(), FatalError> {
    let config = &deps.config;
    let Some(bucket) = config
        .source_bucket
        .clone()
        .or_else(|| config.state_bucket.clone())
    else {
        summary.notes.push(
            "sweep: neither SOURCE_BUCKET nor STATE_BUCKET is set, so there is no bucket to sweep"
                .into(),
        );
        return Ok(());
    };
    let listed = match deps.source.list(&bucket, &config.source_prefix).await {
        Ok(l) => l,
        Err(e) => {
            summary.notes.push(format!("sweep: {e}"));
            return Ok(());
        }
    };
    let state_bucket = config
        .state_bucket
        .clone()
        .unwrap_or_else(|| bucket.clone());
    let markers = Markers {
        store: &*deps.state,
        state_bucket: &state_bucket,
        prefix: &config.state_prefix,
    };
    let (mut processed, mut done, mut busy, mut backing_off) = (0usize, 0usize, 0usize, 0usize);
    let mut unrouted = Vec::new();
    let mut poisoned = 0usize;
    // New and continued objects first; failed ones after them, each only once its backoff is
    // over, so that a few broken objects cannot starve everything listed after them.
    let mut first = Vec::new();
    let mut failed = Vec::new();
    for o in listed {
        let own_state = state_bucket == bucket
            && !config.state_prefix.is_empty()
            && o.key.starts_with(&config.state_prefix);
        if own_state || decode::is_marker(&o.key, Some(o.size)) {
            continue;
        }
        if syncs.route(&o.key).is_err() {
            unrouted.push(o.key);
            continue;
        }
        match markers.get(&bucket, &o.key, &o.etag).await {
            Ok(Some(m)) if m.status == MarkerStatus::Complete => done += 1,
            Ok(Some(m)) if m.status == MarkerStatus::Poisoned => poisoned += 1,
            Ok(Some(m)) if m.status == MarkerStatus::Running && m.lease_until > now_epoch() => {
                busy += 1
            }
            Ok(Some(m)) if m.status == MarkerStatus::Failed => {
                if retry_due(&m, now_epoch()) {
                    failed.push(o);
                } else {
                    backing_off += 1;
                }
            }
            _ => first.push(o),
        }
    }
    for o in first.into_iter().chain(failed) {
        if processed >= config.sweep_max_objects
            || inv.stop_at(config).is_some_and(|t| Instant::now() >= t)
        {
            summary.notes.push(format!("sweep: stopped after {processed} objects (SWEEP_MAX_OBJECTS or deadline); the next sweep continues"));
            break;
        }
        processed += 1;
        let object = ObjectRef {
            bucket: bucket.clone(),
            key: o.key,
        };
        let p = process_version(deps, syncs, &object, None, false, inv, &mut summary.notes).await?;
        let after = after_object(deps, syncs, &p, inv, &mut summary.notes).await?;
        for p in [p, after] {
            match p {
                Processed::Line(line) => summary.objects.push(line),
                // The next sweep looks again.
                Processed::Busy => busy += 1,
                Processed::Nothing => {}
            }
        }
    }
    if let Some(first) = unrouted.first() {
        let why = syncs.route(first).err().unwrap_or_default();
        summary.notes.push(format!(
            "sweep: {} objects match no sync and were skipped, e.g. s3://{bucket}/{}: {why}",
            unrouted.len(),
            shorten(first, 1024)
        ));
    }
    if poisoned > 0 {
        summary.notes.push(format!("sweep: {poisoned} poisoned objects are not retried (their runs kept dying; each marker's error says what to check, and deleting it retries the object)"));
    }
    if backing_off > 0 {
        summary.notes.push(format!("sweep: {backing_off} failed objects wait for their retry backoff (after a second failed run 1 minute, doubling per run, at most 6 hours)"));
    }
    summary.notes.push(format!("sweep of s3://{bucket}/{}: {processed} processed, {done} already complete, {busy} in progress elsewhere", config.source_prefix));
    Ok(())
}

/// Whether a failed object is due again: at once after one failed run (a fixed configuration
/// takes effect on the next sweep), then 1 minute after the second, doubling with each run, at
/// most 6 hours. A marker whose time cannot be read is due.
fn retry_due(marker: &RunMarker, now_epoch: u64) -> bool {
    if marker.runs <= 1 {
        return true;
    }
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(&marker.updated_at) else {
        return true;
    };
    let backoff = 60u64
        .saturating_mul(1 << (marker.runs - 2).min(9))
        .min(6 * 3600);
    at.timestamp().max(0) as u64 + backoff <= now_epoch
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn failed_line(object: &ObjectRef, error: String) -> ObjectSummary {
    tracing::error!(bucket = %object.bucket, key = %object.key, %error, "object failed");
    ObjectSummary {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        status: Status::Failed,
        error: Some(crate::model::shorten(&error, 2_000)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_objects_back_off_from_the_second_run_up_to_six_hours() {
        let marker = |runs: u32, updated_at: &str| RunMarker {
            status: MarkerStatus::Failed,
            bucket: "b".into(),
            key: "k".into(),
            etag: "e".into(),
            resume_after_row: 0,
            runs,
            lease_until: 0,
            updated_at: updated_at.into(),
            error: None,
            deaths: 0,
            claimed_at_row: 0,
        };
        let at = "2026-11-30T12:00:00Z";
        let t0 = chrono::DateTime::parse_from_rfc3339(at)
            .unwrap()
            .timestamp() as u64;
        // One failed run: due at once (a fixed configuration helps on the next sweep).
        assert!(retry_due(&marker(1, at), t0));
        // Then 1, 2, 4 … minutes, never more than 6 hours.
        for (runs, wait) in [
            (2, 60),
            (3, 120),
            (4, 240),
            (10, 60 * 256),
            (12, 6 * 3600),
            (40, 6 * 3600),
        ] {
            assert!(!retry_due(&marker(runs, at), t0 + wait - 1), "runs {runs}");
            assert!(retry_due(&marker(runs, at), t0 + wait), "runs {runs}");
        }
        assert!(retry_due(&marker(5, "not a time"), t0));
    }
}
