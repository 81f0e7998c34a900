//! Mirror mode (`SYNC_MODE=mirror`): a user this sync delivered who is absent from a complete
//! snapshot is deleted from MoEngage (Delete Users, one user per request).
//!
//! A snapshot is the data objects of one folder. Its deletion pass starts when the folder has a
//! completion marker (`_SUCCESS`, a name holding `manifest`, or `MIRROR_DONE_MARKER`) or a work
//! item `{"mirror": {"bucket", "prefix"}}` asked for it, **and** every data object in it has a
//! completed run. Whichever comes last starts it: the marker's notification, the work item, or
//! the run that completes the last object.
//!
//! ```text
//! list folder → every object complete? → claim the pass (run marker of the folder, keyed by the
//! snapshot's objects and ETags) → read each object's customer ids into a spool (bounded memory)
//! → per state shard: named users the snapshot lacks → guard → delete each, paced and retried
//! → 200 or "no such user": forget the key; else dead-letter the exact body → save the shard
//! ```
//!
//! Only ours: candidates come from the sync state, which holds only users this sync delivered,
//! with the customer id each was delivered under. The guard refuses a pass that would delete more
//! than `MIRROR_MAX_DELETE_PERCENT` of them, so a truncated export never empties the workspace.
//!
//! The pass resumes by key: shards are in key order, so "the last key handled" is a position. The
//! run marker's `resume_after_row` holds 0 before the guard approved the pass, else 2 + that key
//! (1 when none was handled yet): the pass goes on from key `resume_after_row - 1`.

use std::sync::Arc;

use serde::Serialize;
use tokio::time::Instant;

use crate::account::report::{report_key, MirrorSummary, ObjectSummary, RunReport, Status};
use crate::app::runs::{Claim, MarkerStatus, Markers};
pub use crate::app::work::MirrorRequest;
use crate::app::Processed;
use crate::app::{Deps, Invocation};
pub use crate::batch::{check_delete_body, delete_body};
use crate::config::syncs::{SyncSpec, Syncs};
use crate::deliver::dead_letter::{DeadLetterMessage, SourceRef, StateNote};
use crate::deliver::{FailureDetail, Outcome};
use crate::model::{shorten, Endpoint, ObjectRef, SyncMode};
use crate::pipeline::members::add_members;
use crate::pipeline::FatalError;
use crate::source::ListedObject;
use crate::sync_state::verdicts::{PrintSpool, Spooled};
use crate::sync_state::{AbsentUser, RowPrint, SyncLocation, SyncOptions, SyncState};

/// How many ids a report or preview lists.
pub const FIRST_IDS: usize = 20;

/// Whether `key` marks its folder's snapshot complete: `_SUCCESS`, `MIRROR_DONE_MARKER`, or a
/// manifest. A name holding `manifest` counts only when the sync would not read it as data
/// either (it ends in `manifest`, `.manifest` or is `manifest.json`, or is hidden, by
/// [`crate::decode::marker_reason`]): `vip_manifest_users.csv.gz` is data, and its users are in
/// the snapshot.
pub fn is_completion_marker(key: &str, done_marker: Option<&str>) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.eq_ignore_ascii_case("_success")
        || done_marker.is_some_and(|m| m == name)
        || name.to_ascii_lowercase().contains("manifest")
            && crate::decode::marker_reason(key, None).is_some()
}

/// The folder of `key`: everything up to and including its last `/` (empty at the bucket's root).
pub fn folder_of(key: &str) -> &str {
    key.rfind('/').map_or("", |i| &key[..=i])
}

/// What MoEngage answers for a user it does not hold — 400, "User doesn't exists with customer
/// id …" — so the user is already gone: deleted. Any other 400 is a failure.
fn is_unknown_user(detail: &FailureDetail) -> bool {
    detail.status == Some(400)
        && detail.body.as_deref().is_some_and(|b| {
            let b = b.to_ascii_lowercase();
            b.contains("user doesn't exist") || b.contains("user does not exist")
        })
}

/// A snapshot's folder as listed.
pub struct Snapshot {
    pub bucket: String,
    pub prefix: String,
    /// Its data objects, by key.
    pub objects: Vec<ListedObject>,
    /// A completion marker is in the folder, no older than any data object in it (a marker left
    /// from an earlier export of a reused folder does not count).
    pub marked: bool,
    /// The newest data object's LastModified (epoch seconds).
    pub newest: i64,
    /// Identifies this set of objects and versions: a pass runs once per snapshot.
    pub id: String,
}

/// A work item's request as stored: `at` (epoch seconds) is when it came; it counts only for
/// data objects that had landed by then.
#[derive(Serialize, serde::Deserialize)]
struct StoredRequest {
    request: MirrorRequest,
    at: i64,
}

/// The pass's run marker, renewed as the pass goes.
struct Lease<'a> {
    markers: &'a Markers<'a>,
    marker: crate::app::runs::RunMarker,
    etag: String,
    secs: u64,
}

/// Where a work item's request waits for the folder's objects to complete.
fn request_key(state_prefix: &str, bucket: &str, prefix: &str) -> String {
    format!("{state_prefix}mirror-requests/{bucket}/{prefix}request.json")
}

/// Lists the folder `prefix` of `bucket`: its data objects of sync `spec` (not in subfolders, not
/// markers, not this function's own state) and whether a completion marker is there.
pub async fn list_snapshot(
    deps: &Deps,
    syncs: &Syncs,
    spec: &SyncSpec,
    bucket: &str,
    prefix: &str,
) -> Result<Snapshot, String> {
    let config = &deps.config;
    let listed = deps
        .source
        .list(bucket, prefix)
        .await
        .map_err(|e| format!("{e}; check the function may list the bucket"))?;
    let done = config.mirror_done_marker.as_deref();
    let mut marker: Option<ListedObject> = None;
    let mut objects = Vec::new();
    for o in listed {
        let Some(name) = o.key.strip_prefix(prefix) else {
            continue;
        };
        if name.is_empty() || name.contains('/') || is_own_state(deps, bucket, &o.key) {
            continue;
        }
        if is_completion_marker(&o.key, done) {
            if marker
                .as_ref()
                .is_none_or(|m| o.last_modified > m.last_modified)
            {
                marker = Some(o);
            }
        } else if is_data_of(deps, syncs, spec, bucket, &o) {
            objects.push(o);
        }
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    let newest = objects.iter().map(|o| o.last_modified).max().unwrap_or(0);
    // S3 times are whole seconds: a marker written in the same second as the last part counts.
    let marked = marker.as_ref().is_some_and(|m| m.last_modified >= newest);
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    if let Some(m) = marker.as_ref().filter(|_| marked) {
        h.update(m.key.as_bytes());
        h.update(m.etag.as_bytes());
    }
    for o in &objects {
        h.update(o.key.as_bytes());
        h.update(&[0]);
        h.update(o.etag.as_bytes());
        h.update(b"\n");
    }
    Ok(Snapshot {
        bucket: bucket.into(),
        prefix: prefix.into(),
        objects,
        marked,
        newest,
        id: format!("mirror-{:016x}", h.digest()),
    })
}

/// A data object of sync `spec` newer than `snapshot` outside its folder: then `snapshot` is not
/// the latest export, and its users may have been delivered by the newer one; mirroring it would
/// delete them. Only the latest snapshot is mirrored.
pub async fn newer_export(
    deps: &Deps,
    syncs: &Syncs,
    spec: &SyncSpec,
    snapshot: &Snapshot,
) -> Result<Option<String>, String> {
    let config = &deps.config;
    let root = if spec.prefix.is_empty() {
        config.source_prefix.as_str()
    } else {
        spec.prefix.as_str()
    };
    let listed = deps
        .source
        .list(&snapshot.bucket, root)
        .await
        .map_err(|e| format!("{e}; check the function may list the bucket"))?;
    Ok(listed
        .into_iter()
        .find(|o| {
            o.last_modified > snapshot.newest
                && folder_of(&o.key) != snapshot.prefix
                && is_data_of(deps, syncs, spec, &snapshot.bucket, o)
        })
        .map(|o| o.key))
}

/// This function's own state (reports, markers, shards) when it lives in `bucket`.
fn is_own_state(deps: &Deps, bucket: &str, key: &str) -> bool {
    let config = &deps.config;
    config.state_bucket.as_deref().unwrap_or(bucket) == bucket
        && key.starts_with(&config.state_prefix)
}

/// A data object of sync `spec`: not this function's state, not a marker, routed to `spec`.
fn is_data_of(deps: &Deps, syncs: &Syncs, spec: &SyncSpec, bucket: &str, o: &ListedObject) -> bool {
    !is_own_state(deps, bucket, &o.key)
        && !crate::decode::is_marker(&o.key, Some(o.size))
        && syncs.route(&o.key).is_ok_and(|s| s.name == spec.name)
}

/// The snapshot's data objects without a completed run, each with what its run marker says.
async fn incomplete(markers: &Markers<'_>, snapshot: &Snapshot) -> Vec<String> {
    let mut waiting = Vec::new();
    for o in &snapshot.objects {
        match markers.get(&snapshot.bucket, &o.key, &o.etag).await {
            Ok(Some(m)) if m.status == MarkerStatus::Complete => {}
            Ok(m) => waiting.push(format!(
                "{} ({})",
                o.key,
                m.map_or("not started".into(), |m| format!("{:?}", m.status)
                    .to_lowercase())
            )),
            Err(e) => waiting.push(format!("{} (its run marker: {e})", o.key)),
        }
    }
    waiting
}

/// The users a snapshot's data objects hold, spooled by state shard.
pub struct Members {
    spooled: Spooled,
    pub rows: u64,
    pub unreadable: u64,
    /// Where the first unreadable row is, for the refusal's message.
    pub first_unreadable: Option<String>,
}

impl Members {
    /// The sorted, distinct user keys of state shard `index`.
    fn keys(&self, index: usize) -> Result<Vec<u64>, String> {
        let mut keys: Vec<u64> = self
            .spooled
            .shard(index)
            .map_err(|e| format!("could not read the snapshot's users back from /tmp: {e}"))?
            .iter()
            .map(|e| e.key)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

/// Reads every data object of `snapshot` for its users.
pub async fn read_members(
    deps: &Deps,
    spec: &Arc<SyncSpec>,
    snapshot: &Snapshot,
    shard_bits: u8,
) -> Result<Members, String> {
    let budget = usize::try_from(deps.config.state_memory_mb << 20).unwrap_or(usize::MAX);
    let mut spool = PrintSpool::new(shard_bits, budget / 4, &std::env::temp_dir());
    let (mut rows, mut unreadable, mut first_unreadable) = (0, 0, None);
    for o in &snapshot.objects {
        let object = ObjectRef {
            bucket: snapshot.bucket.clone(),
            key: o.key.clone(),
        };
        let (next, read) = add_members(deps, spec, &object, &o.etag, spool, rows).await?;
        spool = next;
        rows += read.rows;
        unreadable += read.unreadable;
        if let (None, Some(row)) = (&first_unreadable, read.first_unreadable) {
            first_unreadable = Some(format!("s3://{}/{} row {row}", object.bucket, object.key));
        }
    }
    Ok(Members {
        spooled: spool.finish(),
        rows,
        unreadable,
        first_unreadable,
    })
}

/// What the state holds against a snapshot: the guard's figures.
#[derive(Debug, Default)]
pub struct Scan {
    /// Users the state can name.
    pub named: u64,
    /// Named users the snapshot lacks.
    pub absent: u64,
    /// Of those, the ones at or after the pass's resume point.
    pub absent_from: u64,
    /// Entries without an id the snapshot lacks (events, or users stored before ids were).
    pub unnamed_absent: u64,
    /// The first ids to delete (from the resume point).
    pub first_ids: Vec<String>,
}

/// Counts, shard by shard, the named users `members` lacks; `from` is the first key still to do.
pub async fn scan(state: &SyncState, members: &Members, from: u64) -> Result<Scan, String> {
    let mut out = Scan::default();
    for i in 0..1usize << state.shard_bits() {
        let keys = members.keys(i)?;
        let absent = state
            .absent_users(i, &keys)
            .await
            .map_err(|e| format!("{e}; check the function may read STATE_BUCKET"))?;
        state.release(i);
        out.named += absent.named;
        out.absent += absent.users.len() as u64;
        out.unnamed_absent += absent.unnamed_absent;
        for user in absent.users.iter().filter(|u| u.key >= from) {
            out.absent_from += 1;
            if out.first_ids.len() < FIRST_IDS {
                out.first_ids.push(display_id(&user.id));
            }
        }
    }
    Ok(out)
}

/// A stored id (JSON-escaped) as people read it.
fn display_id(id: &[u8]) -> String {
    let quoted = format!("\"{}\"", String::from_utf8_lossy(id));
    let text = serde_json::from_str::<String>(&quoted)
        .unwrap_or_else(|_| String::from_utf8_lossy(id).into_owned());
    shorten(&text, 200)
}

/// Why the guard refuses, if it does.
pub fn refusal(scan: &Scan, members: &Members, objects: usize, limit: u32) -> Option<String> {
    if objects == 0 {
        return Some("the snapshot holds no data object".into());
    }
    if members.unreadable > 0 {
        return Some(format!(
            "{} rows of the snapshot could not be read (the first: {}), so the users they hold are unknown; fix the export",
            members.unreadable,
            members.first_unreadable.as_deref().unwrap_or("?")
        ));
    }
    let over = u128::from(scan.absent) * 100 > u128::from(limit) * u128::from(scan.named);
    over.then(|| {
        format!(
            "{} of the {} users this sync delivered ({:.1} %) are absent from the snapshot, over the {limit} % allowed (MIRROR_MAX_DELETE_PERCENT); a truncated or half-written export?",
            scan.absent,
            scan.named,
            percent(scan.absent, scan.named)
        )
    })
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Opens the sync state of `spec`'s scope for a mirror pass in `bucket`.
pub async fn open_state(deps: &Deps, spec: &SyncSpec, bucket: &str) -> Result<SyncState, String> {
    let config = &deps.config;
    let state_bucket = config.state_bucket.clone().unwrap_or_else(|| bucket.into());
    let location = SyncLocation::new(
        state_bucket,
        &config.state_prefix,
        &spec.state_scope(&config.workspace_id),
    );
    SyncState::open(
        deps.state.clone(),
        location,
        SyncOptions::new(SyncMode::Mirror, false),
    )
    .await
    .map_err(|e| format!("{e}; check the function may read and write STATE_BUCKET"))
}

/// What started a pass.
pub enum Trigger {
    /// A completion marker's notification.
    Marker,
    /// A data object of the folder completed its run.
    ObjectCompleted,
    /// A work item asked for it.
    Requested(MirrorRequest),
}

/// Checks that a request names a folder this function may read, routed to a mirror sync.
fn check_folder<'s>(
    deps: &Deps,
    syncs: &'s Syncs,
    bucket: &str,
    prefix: &str,
) -> Result<&'s Arc<SyncSpec>, String> {
    if !prefix.is_empty() && !prefix.ends_with('/') {
        return Err("the prefix must be a folder, ending in /".into());
    }
    if prefix.split('/').any(|s| s == "." || s == "..") {
        return Err("the prefix may not hold . or .. segments".into());
    }
    deps.config.accepts_object(bucket, prefix)?;
    let spec = syncs.route(prefix)?;
    if spec.sync_mode != SyncMode::Mirror {
        return Err(format!(
            "sync {} is in {} mode, not mirror; nothing is deleted",
            spec.name,
            spec.sync_mode.as_str()
        ));
    }
    Ok(spec)
}

/// Runs (or continues) the deletion pass of the folder `prefix` of `bucket` if it may start now;
/// a note says why not.
pub async fn run(
    deps: &Deps,
    syncs: &Arc<Syncs>,
    bucket: &str,
    prefix: &str,
    trigger: Trigger,
    inv: &Invocation,
    notes: &mut Vec<String>,
) -> Result<Processed, FatalError> {
    let config = &deps.config;
    let where_ = shorten(&format!("s3://{bucket}/{prefix}"), 1100);
    let spec = match check_folder(deps, syncs, bucket, prefix) {
        Ok(spec) => spec.clone(),
        Err(why) => {
            if !matches!(trigger, Trigger::ObjectCompleted) {
                notes.push(format!("mirror {where_}: {}", shorten(&why, 2_000)));
            }
            return Ok(Processed::Nothing);
        }
    };
    let state_bucket = config.state_bucket.clone().unwrap_or_else(|| bucket.into());
    let request_at = request_key(&config.state_prefix, bucket, prefix);
    let mut requested = None;
    if let Trigger::Requested(req) = &trigger {
        // Kept until the folder completes, so that the object that completes it starts the pass;
        // it stands for the objects in the folder when it came, not for a later export there.
        let stored = StoredRequest {
            request: req.clone(),
            at: req
                .sent_at
                .unwrap_or_else(|| chrono::Utc::now().timestamp()),
        };
        let body = serde_json::to_vec(&stored).unwrap_or_default();
        if let Err(e) = deps
            .state
            .put(&state_bucket, &request_at, body, false)
            .await
        {
            notes.push(format!(
                "mirror {where_}: could not record the request: {e}"
            ));
        }
        requested = Some(stored);
    } else if let Ok(Some(body)) = deps.state.get(&state_bucket, &request_at).await {
        requested = serde_json::from_slice::<StoredRequest>(&body).ok();
    }
    let snapshot = match list_snapshot(deps, syncs, &spec, bucket, prefix).await {
        Ok(s) => s,
        Err(e) => return Ok(Processed::Line(failed(bucket, prefix, &spec, e))),
    };
    let requested = requested
        .filter(|r| r.at >= snapshot.newest)
        .map(|r| r.request);
    if !snapshot.marked && requested.is_none() {
        if !matches!(trigger, Trigger::ObjectCompleted) {
            notes.push(format!("mirror {where_}: no completion marker (_SUCCESS, a manifest, or MIRROR_DONE_MARKER) newer than its data objects, and no request since they landed; nothing is deleted"));
        }
        return Ok(Processed::Nothing);
    }
    // Only the latest export is mirrored: users a newer one delivered are not in this one.
    match newer_export(deps, syncs, &spec, &snapshot).await {
        Ok(None) => {}
        Ok(Some(newer)) => {
            notes.push(format!(
                "mirror {where_}: not the latest export (s3://{bucket}/{} is newer); only the latest snapshot is mirrored, so nothing is deleted",
                shorten(&newer, 1_100)
            ));
            let _ = deps.state.delete(&state_bucket, &request_at).await;
            return Ok(Processed::Nothing);
        }
        Err(e) => return Ok(Processed::Line(failed(bucket, prefix, &spec, e))),
    }
    let markers = Markers {
        store: &*deps.state,
        state_bucket: &state_bucket,
        prefix: &config.state_prefix,
    };
    let waiting = incomplete(&markers, &snapshot).await;
    if !waiting.is_empty() {
        notes.push(format!(
            "mirror {where_}: waits for {} of {} data objects to complete, e.g. {}; the pass starts when the last one does",
            waiting.len(),
            snapshot.objects.len(),
            shorten(&waiting[0], 1_200)
        ));
        return Ok(match trigger {
            // An SQS work item comes back until the folder is complete.
            Trigger::Requested(_) => Processed::Busy,
            _ => Processed::Nothing,
        });
    }
    let (marker, marker_etag) = match markers
        .claim(bucket, prefix, &snapshot.id, inv.lease_secs())
        .await
    {
        Ok(Claim::Claimed {
            marker,
            marker_etag,
        }) => (marker, marker_etag),
        Ok(Claim::Complete { .. }) => {
            // A request for a snapshot whose pass ran is spent (a duplicate work item must not
            // linger and apply its limit to a later export of the folder).
            let _ = deps.state.delete(&state_bucket, &request_at).await;
            if !matches!(trigger, Trigger::ObjectCompleted) {
                notes.push(format!(
                    "mirror {where_}: this snapshot's deletion pass already ran; nothing to do"
                ));
            }
            return Ok(Processed::Nothing);
        }
        Ok(Claim::Busy { .. }) => {
            notes.push(format!(
                "mirror {where_}: the deletion pass is running in another invocation"
            ));
            return Ok(Processed::Busy);
        }
        Ok(Claim::Poisoned { marker }) => {
            let why = marker.error.unwrap_or_default();
            return Ok(Processed::Line(failed(bucket, prefix, &spec, why)));
        }
        Err(e) => {
            let why = format!("could not claim the pass's run marker: {e}");
            return Ok(Processed::Line(failed(bucket, prefix, &spec, why)));
        }
    };
    let limit = requested
        .as_ref()
        .and_then(|r| r.max_delete_percent)
        .unwrap_or(config.mirror_max_delete_percent);
    let stop_at = inv.stop_at(config);
    let resume = marker.resume_after_row;
    let mut lease = Lease {
        markers: &markers,
        marker,
        etag: marker_etag,
        secs: inv.lease_secs(),
    };
    let (mut report, fatal) = delete_pass(
        deps,
        &spec,
        &snapshot,
        (resume, limit),
        stop_at,
        &mut lease,
        notes,
    )
    .await;
    let (marker, marker_etag) = (lease.marker, lease.etag);
    let pass_resume = report.resume_after_row;
    report.summary.sync = spec.name.clone();
    let key = report_key(
        &spec.report_prefix(&config.state_prefix),
        bucket,
        prefix.trim_end_matches('/'),
        &snapshot.id,
        resume,
    );
    report.summary.report = Some(format!("s3://{state_bucket}/{key}"));
    if let Ok(body) = serde_json::to_vec_pretty(&report) {
        if let Err(e) = deps.state.put(&state_bucket, &key, body, false).await {
            tracing::error!(error = %e, "could not store the mirror pass's report");
            report.summary.report = None;
        }
    }
    crate::account::metrics::emit(&report, spec.object_type.as_str());
    let status = match report.summary.status {
        Status::Complete => MarkerStatus::Complete,
        Status::Continued => MarkerStatus::Continued,
        Status::Failed => MarkerStatus::Failed,
    };
    let error = report.summary.error.clone();
    if let Err(e) = markers
        .finish(marker, &marker_etag, status, pass_resume, error)
        .await
    {
        tracing::error!(error = %e, "could not record the mirror pass's outcome");
    }
    if status != MarkerStatus::Continued {
        // Done, refused or failed: a new request (or marker) is needed for this folder again.
        let _ = deps.state.delete(&state_bucket, &request_at).await;
    }
    if status == MarkerStatus::Continued {
        let item = MirrorRequest {
            bucket: bucket.into(),
            prefix: prefix.into(),
            max_delete_percent: requested.and_then(|r| r.max_delete_percent),
            sent_at: None,
        };
        match &deps.work_queue {
            Some(q) if inv.enqueue_continuations => match q.enqueue_mirror(&item).await {
                Ok(()) => notes.push(format!("mirror {where_}: continues in a new invocation")),
                Err(e) => notes.push(format!("mirror {where_}: {e}; the pass continues when the snapshot is next triggered")),
            },
            _ => notes.push(format!("mirror {where_}: stopped before the end; run it again (work item {{\"mirror\":{{\"bucket\":…,\"prefix\":…}}}}) to continue")),
        }
    }
    if let Some(f) = fatal {
        return Err(f);
    }
    Ok(Processed::Line(report.summary))
}

fn failed(bucket: &str, prefix: &str, spec: &SyncSpec, error: String) -> ObjectSummary {
    tracing::error!(%bucket, %prefix, %error, "mirror pass failed");
    ObjectSummary {
        bucket: bucket.into(),
        key: prefix.into(),
        sync: spec.name.clone(),
        status: Status::Failed,
        error: Some(shorten(&error, 2_000)),
        mirror: Some(Box::default()),
        ..Default::default()
    }
}

/// The pass itself, from `resume` (see the module doc): returns its report (with the resume
/// point) and the error that must fail the invocation, if any.
async fn delete_pass(
    deps: &Deps,
    spec: &Arc<SyncSpec>,
    snapshot: &Snapshot,
    (resume, limit): (u64, u32),
    stop_at: Option<Instant>,
    lease: &mut Lease<'_>,
    notes: &mut Vec<String>,
) -> (RunReport, Option<FatalError>) {
    let mut report = RunReport {
        summary: ObjectSummary {
            bucket: snapshot.bucket.clone(),
            key: snapshot.prefix.clone(),
            status: Status::Complete,
            mirror: Some(Box::default()),
            ..Default::default()
        },
        etag: snapshot.id.clone(),
        object_type: spec.object_type.as_str().into(),
        resume_after_row: resume,
        ..Default::default()
    };
    let fail = |mut report: RunReport, why: String| {
        report.summary.status = Status::Failed;
        report.summary.error = Some(shorten(&why, 2_000));
        report.finished_at =
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        (report, None)
    };
    let state = match open_state(deps, spec, &snapshot.bucket).await {
        Ok(s) => s,
        Err(e) => return fail(report, e),
    };
    let members = match read_members(deps, spec, snapshot, state.shard_bits()).await {
        Ok(m) => m,
        Err(e) => return fail(report, format!("could not read the snapshot: {e}")),
    };
    let from = resume.saturating_sub(1);
    let found = match scan(&state, &members, from).await {
        Ok(s) => s,
        Err(e) => return fail(report, e),
    };
    let mut m = MirrorSummary {
        users_to_delete: found.absent_from,
        users_in_state: found.named,
        first_ids: found.first_ids.clone(),
        deletes_pending: found.absent_from,
        ..Default::default()
    };
    if found.unnamed_absent > 0 {
        notes.push(format!("mirror s3://{}/{}: {} entries of the sync state without a customer id are absent from the snapshot (events, or users stored before ids were); they are not deleted", snapshot.bucket, snapshot.prefix, found.unnamed_absent));
    }
    // The guard, before the first deletion of the pass (a continuation was approved already).
    if resume == 0 {
        if let Some(why) = refusal(&found, &members, snapshot.objects.len(), limit) {
            m.mirror_refused = true;
            report.summary.mirror = Some(Box::new(m));
            let what = format!(
                "mirror refused ({why}): nothing was deleted. If the snapshot is right, review the ids in the report (or `moengage-sync preview --deletes s3://{}/{}`) and send the work item {{\"mirror\":{{\"bucket\":\"{}\",\"prefix\":\"{}\",\"max_delete_percent\":{}}}}}",
                snapshot.bucket,
                snapshot.prefix,
                snapshot.bucket,
                snapshot.prefix,
                (percent(found.absent, found.named).ceil() as u32).clamp(1, 100)
            );
            return fail(report, what);
        }
    }
    let mut position = resume.max(1);
    // The position as of the last save: deletions after it are not yet out of the state.
    let mut saved = position;
    let mut handled = 0u64;
    let mut fatal = None;
    let mut stopped = None;
    'shards: for i in 0..1usize << state.shard_bits() {
        let keys = match members.keys(i) {
            Ok(k) => k,
            Err(e) => {
                stopped = Some(e);
                break;
            }
        };
        let absent = match state.absent_users(i, &keys).await {
            Ok(a) => a,
            Err(e) => {
                stopped = Some(format!("{e}; check the function may read STATE_BUCKET"));
                break;
            }
        };
        for user in absent.users.iter().filter(|u| u.key >= from) {
            if stop_at.is_some_and(|t| Instant::now() >= t) {
                report.summary.status = Status::Continued;
                break 'shards;
            }
            handled += 1;
            let body = delete_body(&user.id);
            let d = deps
                .deliver
                .deliver(Endpoint::Delete, body.clone(), (0, 0), stop_at)
                .await;
            report.summary.requests_sent += u64::from(d.attempts);
            report.retries += u64::from(d.attempts.saturating_sub(1));
            report.rate_limited += u64::from(d.rate_limited);
            match d.outcome {
                Outcome::Delivered { .. } => state.forget(user.key),
                Outcome::Failed(detail) if is_unknown_user(&detail) => state.forget(user.key),
                Outcome::Failed(detail) => {
                    let scope = spec.state_scope(&deps.config.workspace_id);
                    let noted = (&state, user, scope.as_str());
                    if let Err(e) =
                        dead_letter(deps, snapshot, noted, &body, detail, d.attempts).await
                    {
                        // Neither deleted nor dead-lettered: pending, and the pass fails.
                        handled -= 1;
                        stopped = Some(e.to_string());
                        fatal = Some(e);
                        break 'shards;
                    }
                    m.deletes_dead_lettered += 1;
                    position = user.key.saturating_add(2);
                    continue;
                }
                Outcome::Misconfigured(detail) => {
                    handled -= 1;
                    stopped = Some(format!("MoEngage refused the Delete Users request ({}): check MOENGAGE_WORKSPACE_ID, the API key and the data center", detail.reason));
                    break 'shards;
                }
                Outcome::Interrupted => {
                    handled -= 1;
                    report.summary.status = Status::Continued;
                    break 'shards;
                }
            }
            m.users_deleted += 1;
            position = user.key.saturating_add(2);
        }
        // A shard's deletions leave the state once the shard is done (or the pass stops); the
        // pass resumes after what is saved, and its lease runs on.
        if let Err(e) = state.save().await {
            stopped = Some(unsaved(&e));
            break;
        }
        saved = position;
        state.release(i);
        match lease
            .markers
            .renew(&mut lease.marker, &lease.etag, saved, lease.secs)
            .await
        {
            Ok(Some(etag)) => lease.etag = etag,
            Ok(None) => {
                stopped = Some("another invocation took this pass over; it goes on there".into());
                break;
            }
            Err(e) => tracing::warn!(error = %e, "could not extend the mirror pass's lease"),
        }
    }
    if let Err(e) = state.save().await {
        stopped.get_or_insert(unsaved(&e));
    } else {
        saved = position;
    }
    // What the loop met beyond the count (another writer added users meanwhile) is counted too.
    m.users_to_delete = m.users_to_delete.max(handled);
    m.deletes_pending = m.users_to_delete - m.users_deleted - m.deletes_dead_lettered;
    report.resume_after_row = saved;
    report.summary.mirror = Some(Box::new(m));
    report.finished_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if let Some(why) = stopped {
        report.summary.status = Status::Failed;
        report.summary.error = Some(shorten(&why, 2_000));
    }
    (report, fatal)
}

fn unsaved(e: &crate::sync_state::SyncStateError) -> String {
    format!("the deleted users could not be removed from the sync state ({e}); the pass resumes before them, and MoEngage answers that they are gone")
}

/// Sends one undeliverable Delete Users body to the dead-letter queue, exactly as sent.
async fn dead_letter(
    deps: &Deps,
    snapshot: &Snapshot,
    (state, user, scope): (&SyncState, &AbsentUser, &str),
    body: &[u8],
    detail: FailureDetail,
    attempts: u32,
) -> Result<String, FatalError> {
    let fatal = |source| FatalError::DeadLetter {
        bucket: snapshot.bucket.clone(),
        key: snapshot.prefix.clone(),
        first_row: 0,
        last_row: 0,
        source,
    };
    let source = SourceRef {
        bucket: snapshot.bucket.clone(),
        key: snapshot.prefix.clone(),
        etag: snapshot.id.clone(),
        version_id: None,
        first_row: 0,
        last_row: 0,
    };
    let mut msg = DeadLetterMessage::new(
        source,
        Endpoint::Delete,
        &deps.config.app_id,
        body,
        1,
        detail,
        attempts,
    )
    .map_err(fatal)?;
    // Sealed: redrive replays the deletion only while the state still holds the user as it was
    // now, and then drops the entry.
    let print = RowPrint {
        key: user.key,
        fingerprint: user.fingerprint,
    };
    let location = state.location();
    msg.sync_state = Some(StateNote::for_deletion(
        &deps.moengage,
        (&location.bucket, scope),
        &[print],
        body,
        sealed_snapshot(&snapshot.bucket, &snapshot.prefix, &snapshot.id),
    ));
    deps.dead_letters.send(&msg).await.map_err(fatal)
}

/// How a deletion's sealed note names its snapshot.
pub fn sealed_snapshot(bucket: &str, prefix: &str, id: &str) -> String {
    format!("{bucket}/{prefix}#{id}")
}

/// Whether the snapshot a dead-lettered deletion came from (`source`: its folder, and its id as
/// the ETag; it must be the one its note seals) is still its sync's latest export, unchanged.
pub async fn still_latest(
    deps: &Deps,
    source: &SourceRef,
    sealed: Option<&str>,
) -> Result<bool, String> {
    if sealed != Some(sealed_snapshot(&source.bucket, &source.key, &source.etag).as_str()) {
        return Err("the deletion's snapshot is not the one its sealed note names".into());
    }
    let syncs = deps.current_syncs().await.map_err(|e| e.to_string())?;
    let spec = check_folder(deps, &syncs, &source.bucket, &source.key)?.clone();
    let snapshot = list_snapshot(deps, &syncs, &spec, &source.bucket, &source.key).await?;
    if snapshot.id != source.etag {
        return Ok(false);
    }
    Ok(newer_export(deps, &syncs, &spec, &snapshot)
        .await?
        .is_none())
}

/// What a snapshot's deletion pass would do (`moengage-sync preview --deletes`): it reads the
/// snapshot and the sync state, and sends and writes nothing.
#[derive(Debug, Clone, Serialize)]
pub struct DeletePreview {
    pub bucket: String,
    pub prefix: String,
    pub sync: String,
    /// Data objects in the snapshot.
    pub objects: usize,
    /// Rows read from them.
    pub rows: u64,
    /// Users this sync delivered that the snapshot lacks: what the pass would delete.
    pub users_to_delete: u64,
    /// Users in the sync state with a stored customer id.
    pub users_in_state: u64,
    /// The first ids (at most 20).
    pub first_ids: Vec<String>,
    /// The guard's limit, in percent.
    pub max_delete_percent: u32,
    /// Why the guard would refuse, if it would.
    pub refused: Option<String>,
    /// Data objects without a completed run yet (with their run's status): the pass would wait
    /// for them.
    pub waiting_for: Vec<String>,
    /// Whether a completion marker is in the folder.
    pub marked: bool,
    /// A newer export of the sync outside this folder: the pass would not run (only the latest
    /// snapshot is mirrored).
    pub newer_export: Option<String>,
}

/// Computes [`DeletePreview`] for the folder `prefix` of `bucket`.
pub async fn preview(
    deps: &Deps,
    syncs: &Syncs,
    bucket: &str,
    prefix: &str,
    max_delete_percent: Option<u32>,
) -> Result<DeletePreview, String> {
    let spec = check_folder(deps, syncs, bucket, prefix)?.clone();
    let snapshot = list_snapshot(deps, syncs, &spec, bucket, prefix).await?;
    let config = &deps.config;
    let state_bucket = config.state_bucket.clone().unwrap_or_else(|| bucket.into());
    let markers = Markers {
        store: &*deps.state,
        state_bucket: &state_bucket,
        prefix: &config.state_prefix,
    };
    let waiting_for = incomplete(&markers, &snapshot).await;
    let newer_export = newer_export(deps, syncs, &spec, &snapshot).await?;
    let state = open_state(deps, &spec, bucket).await?;
    let members = read_members(deps, &spec, &snapshot, state.shard_bits()).await?;
    let found = scan(&state, &members, 0).await?;
    let limit = max_delete_percent.unwrap_or(config.mirror_max_delete_percent);
    Ok(DeletePreview {
        bucket: bucket.into(),
        prefix: prefix.into(),
        sync: spec.name.clone(),
        objects: snapshot.objects.len(),
        rows: members.rows,
        users_to_delete: found.absent,
        users_in_state: found.named,
        refused: refusal(&found, &members, snapshot.objects.len(), limit),
        first_ids: found.first_ids,
        max_delete_percent: limit,
        waiting_for,
        marked: snapshot.marked,
        newer_export,
    })
}

/// After a data object's run: if it completed, in a mirror sync, its folder's pass may start.
pub async fn after_object(
    deps: &Deps,
    syncs: &Arc<Syncs>,
    line: &ObjectSummary,
    inv: &Invocation,
    notes: &mut Vec<String>,
) -> Result<Processed, FatalError> {
    if line.status != Status::Complete || line.mirror.is_some() {
        return Ok(Processed::Nothing);
    }
    match syncs.route(&line.key) {
        Ok(spec) if spec.sync_mode == SyncMode::Mirror => {}
        _ => return Ok(Processed::Nothing),
    }
    let prefix = folder_of(&line.key).to_string();
    run(
        deps,
        syncs,
        &line.bucket,
        &prefix,
        Trigger::ObjectCompleted,
        inv,
        notes,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_folders_and_bodies() {
        assert!(is_completion_marker("exports/u/dt=1/_SUCCESS", None));
        assert!(is_completion_marker("exports/u/dt=1/_success", None));
        assert!(is_completion_marker("exports/u/dt=1/unload.manifest", None));
        assert!(is_completion_marker("exports/u/dt=1/manifest.json", None));
        assert!(is_completion_marker("exports/u/dt=1/_manifest", None));
        // A data file whose name merely holds the word is data: its users are in the snapshot.
        assert!(!is_completion_marker(
            "exports/u/dt=1/vip_manifest_users.csv.gz",
            None
        ));
        assert!(is_completion_marker("x/_DONE", Some("_DONE")));
        assert!(!is_completion_marker("x/_DONE", None));
        assert!(!is_completion_marker("x/users.csv", Some("_DONE")));
        assert_eq!(folder_of("exports/u/dt=1/part-0.csv"), "exports/u/dt=1/");
        assert_eq!(folder_of("top.csv"), "");
        let body = delete_body(br#"u\"1"#);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["identity_value"], "u\"1");
        assert_eq!(check_delete_body(&v), Ok(()));
        for bad in [
            serde_json::json!({"identity_type":"moengage_id","identity_value":"x"}),
            serde_json::json!({"identity_type":"customer_id","identity_value":""}),
            serde_json::json!({"identity_type":"customer_id","identity_value":"x","extra":1}),
            serde_json::json!([1]),
        ] {
            assert!(check_delete_body(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_unknown_user_is_already_deleted_and_nothing_else_is() {
        let answer = |status, body: &str| FailureDetail {
            status: Some(status),
            body: Some(body.into()),
            ..Default::default()
        };
        assert!(is_unknown_user(&answer(
            400,
            r#"{"status":"fail","error":{"type":"Not Found","message":"User doesn't exists with customer id u1"}}"#
        )));
        assert!(!is_unknown_user(&answer(
            400,
            r#"{"status":"fail","error":{"type":"MissingAttributeError"}}"#
        )));
        assert!(!is_unknown_user(&answer(500, "Not Found")));
        // Another 400 "not found" (an app, an endpoint) is no proof the user is gone.
        assert!(!is_unknown_user(&answer(
            400,
            r#"{"status":"fail","error":{"type":"Not Found","message":"App not found"}}"#
        )));
    }
}
