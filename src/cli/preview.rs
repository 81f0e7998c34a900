//! `moengage-sync preview <file | s3://bucket/key>`: runs [`pipeline::dry_run`] — the function's
//! own decode → map → validate → batch path — over the first rows and prints what would be sent.
//! No request leaves, no state is written.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio_util::io::SyncIoBridge;

use super::{exit, PreviewArgs};
use crate::account::report::RowReport;
use crate::config::syncs::SyncSpec;
use crate::config::Config;
use crate::decode::{DecodeInput, RangedObject};
use crate::pipeline::{self, DryRun};
use crate::source::ObjectSource;
use crate::state::StateStore;
use crate::sync_state::{SyncLocation, SyncOptions, SyncState};

/// What `--json` prints: one document.
#[derive(Debug, Serialize)]
pub struct PreviewDoc<'a> {
    /// The export as given on the command line.
    pub source: &'a str,
    /// The sync whose settings were used.
    pub sync: &'a str,
    pub object_type: &'static str,
    /// `--rows`: how many data rows were read at most.
    pub max_rows: u64,
    /// The requests the function would send, in order, with their exact bodies.
    pub requests: Vec<RequestDoc>,
    pub rejected: &'a [RowReport],
    /// Row 0 means the mapping itself (e.g. a reserved attribute name), not a row.
    pub warnings: &'a [RowReport],
    pub totals: Totals,
    /// Why the export could not be previewed to the end, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct RequestDoc {
    pub method: &'static str,
    pub url: String,
    /// As the function logs and dead-letters it: `/v1/{endpoint}/{app_id}`.
    pub path: String,
    pub first_row: u64,
    pub last_row: u64,
    /// Rows (elements) in the body.
    pub records: u64,
    /// Body length on the wire.
    pub bytes: usize,
    /// The body exactly as it would be sent (embedded verbatim, not re-encoded).
    pub body: Box<RawValue>,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    /// Data rows read (sent or rejected).
    pub rows: u64,
    /// Rows in the request bodies.
    pub would_send: u64,
    pub requests: usize,
    pub rejected: u64,
    /// Rows with at least one warning (they are sent, but MoEngage will alter something).
    pub rows_warned: u64,
    /// Rows the sync state says MoEngage already has; `null` while sync state is not enabled.
    pub unchanged: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchanged_note: Option<&'static str>,
}

const UNCHANGED_NOTE: &str = "sync state not read (set STATE_BUCKET, or preview an s3:// object)";

/// Rows the sync state skips as unchanged since their last delivery; `None` when the preview could
/// not read the state. (They are left out of the bodies, as a real run leaves them out.)
fn unchanged_rows(_config: &Config, dry: &DryRun) -> Option<u64> {
    dry.diffed.then_some(dry.unchanged)
}

/// The sync state a real run of this object would diff against, opened read-only: preview
/// classifies rows but never records or saves. `None` (with a note on stderr) when unreadable.
async fn read_sync_state(
    config: &Config,
    spec: &SyncSpec,
    aws: &aws_config::SdkConfig,
    bucket: Option<&str>,
) -> Option<Arc<SyncState>> {
    let bucket = config.state_bucket.as_deref().or(bucket)?;
    let store: Arc<dyn StateStore> = Arc::new(super::s3_client(aws));
    let location = SyncLocation::new(
        bucket,
        &config.state_prefix,
        &spec.state_scope(&config.workspace_id),
    );
    let options = SyncOptions::new(spec.sync_mode, config.full_resync);
    match SyncState::open(store, location, options).await {
        Ok(state) => Some(Arc::new(state)),
        Err(e) => {
            eprintln!(
                "moengage-sync preview: sync state not read ({e}); unchanged rows are not detected"
            );
            None
        }
    }
}

pub async fn run(args: PreviewArgs) -> i32 {
    let config = match super::load_config().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("moengage-sync: configuration error: {e}");
            return exit::CANNOT_RUN;
        }
    };
    if args.deletes {
        return deletes(config, &args).await;
    }
    let key = args
        .source
        .strip_prefix("s3://")
        .and_then(|r| r.split_once('/'))
        .map_or(args.source.as_str(), |(_, k)| k);
    let spec = match super::pick_sync(&config, args.sync.as_deref(), key) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("moengage-sync preview: {e}");
            return exit::CANNOT_RUN;
        }
    };
    let dry = match dry_run(&config, &spec, &args).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("moengage-sync preview: {e}");
            return exit::CANNOT_RUN;
        }
    };
    let doc = document(&config, &spec, &args, &dry);
    if args.json {
        match serde_json::to_string_pretty(&doc) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("moengage-sync preview: could not encode the preview: {e}");
                return exit::FAILED;
            }
        }
    } else {
        print!("{}", render_text(&doc));
    }
    if dry.failure.is_some() {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// Opens the export (a local file, or S3 through the function's own `ObjectSource`) and dry-runs
/// it on a blocking thread, as the function decodes.
async fn dry_run(
    config: &Config,
    spec: &Arc<SyncSpec>,
    args: &PreviewArgs,
) -> Result<DryRun, String> {
    let config = config.clone();
    let spec = spec.clone();
    let (rows, format) = (args.rows, args.format.or(spec.source_format));
    let task = match args.source.strip_prefix("s3://") {
        None => {
            let path = args.source.clone();
            let file =
                std::fs::File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
            let state = match config.state_bucket {
                Some(_) => read_sync_state(&config, &spec, &super::aws_config().await, None).await,
                None => None,
            };
            tokio::task::spawn_blocking(move || {
                let input = DecodeInput {
                    reader: Box::new(file),
                    key: &path,
                    content_encoding: None,
                    format,
                    compression: spec.source_compression,
                    csv: spec.csv,
                    limits: config.input_limits,
                    ranged: None,
                };
                pipeline::dry_run_with_state(&config, &spec, input, rows, state.as_deref())
            })
        }
        Some(rest) => {
            let (bucket, key) = match rest.split_once('/') {
                Some((b, k)) if !b.is_empty() && !k.is_empty() => (b.to_string(), k.to_string()),
                _ => return Err(format!("{} is not an s3://bucket/key URI", args.source)),
            };
            let aws = super::aws_config().await;
            let state = read_sync_state(&config, &spec, &aws, Some(&bucket)).await;
            let s3: Arc<dyn ObjectSource> = Arc::new(super::s3_client(&aws));
            let object = s3.open(&bucket, &key).await.map_err(|e| e.to_string())?;
            let ranged = RangedObject {
                source: s3.clone(),
                bucket,
                key: key.clone(),
                size: object.size.unwrap_or(0),
                etag: Some(object.etag.clone()),
                runtime: tokio::runtime::Handle::current(),
            };
            let reader = SyncIoBridge::new(object.body);
            let encoding = object.content_encoding;
            tokio::task::spawn_blocking(move || {
                let input = DecodeInput {
                    reader: Box::new(reader),
                    key: &key,
                    content_encoding: encoding.as_deref(),
                    format,
                    compression: spec.source_compression,
                    csv: spec.csv,
                    limits: config.input_limits,
                    ranged: Some(ranged),
                };
                pipeline::dry_run_with_state(&config, &spec, input, rows, state.as_deref())
            })
        }
    };
    task.await
        .map_err(|e| format!("internal error while decoding: {e}"))
}

pub fn document<'a>(
    config: &Config,
    spec: &'a SyncSpec,
    args: &'a PreviewArgs,
    dry: &'a DryRun,
) -> PreviewDoc<'a> {
    let requests = dry
        .bodies
        .iter()
        .map(|b| {
            let path = b.endpoint.path(&config.app_id);
            let text = String::from_utf8_lossy(&b.body).into_owned();
            // The batcher only produces JSON; should that ever break, show the bytes as a string
            // rather than fail the preview.
            let body = RawValue::from_string(text.clone())
                .or_else(|_| serde_json::value::to_raw_value(&text))
                .unwrap_or_else(|_| RawValue::NULL.to_owned());
            RequestDoc {
                method: "POST",
                url: config.api_url(b.endpoint).to_string(),
                path,
                first_row: b.first_row,
                last_row: b.last_row,
                records: b.records,
                bytes: b.body.len(),
                body,
            }
        })
        .collect::<Vec<_>>();
    let mut warned_rows: Vec<u64> = dry
        .warnings
        .iter()
        .map(|w| w.row)
        .filter(|r| *r > 0)
        .collect();
    warned_rows.sort_unstable();
    warned_rows.dedup();
    let unchanged = unchanged_rows(config, dry);
    PreviewDoc {
        source: &args.source,
        sync: &spec.name,
        object_type: spec.object_type.as_str(),
        max_rows: args.rows,
        totals: Totals {
            rows: dry.rows_read,
            would_send: requests.iter().map(|r| r.records).sum(),
            requests: requests.len(),
            rejected: dry.rejected.len() as u64,
            rows_warned: warned_rows.len() as u64,
            unchanged,
            unchanged_note: unchanged.is_none().then_some(UNCHANGED_NOTE),
        },
        requests,
        rejected: &dry.rejected,
        warnings: &dry.warnings,
        failure: dry.failure.as_deref(),
    }
}

/// The text form: each request with its body indented, then rejections, warnings and totals.
pub fn render_text(doc: &PreviewDoc<'_>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        out,
        "Preview of {} as {} (sync {}): first {} rows, nothing sent.\n",
        doc.source, doc.object_type, doc.sync, doc.max_rows
    );
    for (i, r) in doc.requests.iter().enumerate() {
        let _ = writeln!(
            out,
            "Request {} of {}: {} {}  (rows {}–{}, {} {}, {} bytes)",
            i + 1,
            doc.requests.len(),
            r.method,
            r.url,
            r.first_row,
            r.last_row,
            r.records,
            if r.records == 1 {
                "element"
            } else {
                "elements"
            },
            r.bytes
        );
        let _ = writeln!(out, "{}\n", super::indent_json(r.body.get()));
    }
    if doc.requests.is_empty() {
        let _ = writeln!(out, "No request would be sent.\n");
    }
    let issue = |r: &RowReport| {
        let at = match (r.row, r.line) {
            (0, _) => "mapping".to_string(),
            (row, Some(line)) => format!("row {row} (line {line})"),
            (row, None) => format!("row {row}"),
        };
        let column = if r.column.is_empty() {
            String::new()
        } else {
            format!(", column {}", r.column)
        };
        format!("  {at}{column}: {}", r.reason)
    };
    if !doc.rejected.is_empty() {
        let _ = writeln!(out, "Rejected (not sent):");
        for r in doc.rejected {
            let _ = writeln!(out, "{}", issue(r));
        }
        out.push('\n');
    }
    if !doc.warnings.is_empty() {
        let _ = writeln!(
            out,
            "Warnings (sent; MoEngage will alter or ignore something):"
        );
        for w in doc.warnings {
            let _ = writeln!(out, "{}", issue(w));
        }
        out.push('\n');
    }
    let t = &doc.totals;
    let _ = writeln!(
        out,
        "rows: {}  would send: {} in {} {}  rejected: {}  with warnings: {}",
        t.rows,
        t.would_send,
        t.requests,
        if t.requests == 1 {
            "request"
        } else {
            "requests"
        },
        t.rejected,
        t.rows_warned
    );
    match t.unchanged {
        Some(n) => {
            let _ = writeln!(out, "unchanged: {n}");
        }
        None => {
            let _ = writeln!(out, "unchanged: n/a ({UNCHANGED_NOTE})");
        }
    }
    if let Some(f) = doc.failure {
        let _ = writeln!(out, "✗ stopped: {f}");
    }
    out
}

/// `preview --deletes s3://bucket/prefix/`: what mirror mode's deletion pass would do.
async fn deletes(config: Config, args: &PreviewArgs) -> i32 {
    let Some((bucket, prefix)) = args
        .source
        .strip_prefix("s3://")
        .and_then(|r| r.split_once('/'))
        .filter(|(b, _)| !b.is_empty())
    else {
        eprintln!(
            "moengage-sync preview --deletes: {} is not an s3://bucket/prefix/ folder",
            args.source
        );
        return exit::CANNOT_RUN;
    };
    let aws = super::aws_config().await;
    let deps = match crate::app::startup::connect_with(config, &aws).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("moengage-sync preview --deletes: {e}");
            return exit::CANNOT_RUN;
        }
    };
    let syncs = deps.config.syncs.clone();
    let p =
        match crate::app::mirror::preview(&deps, &syncs, bucket, prefix, args.max_delete_percent)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                eprintln!("moengage-sync preview --deletes: {e}");
                return exit::CANNOT_RUN;
            }
        };
    if args.json {
        match serde_json::to_string_pretty(&p) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("moengage-sync preview --deletes: {e}");
                return exit::FAILED;
            }
        }
    } else {
        print!("{}", render_deletes(&p));
    }
    exit::OK
}

fn render_deletes(p: &crate::app::mirror::DeletePreview) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Mirror preview of s3://{}/{} (sync {}): {} data objects, {} rows",
        p.bucket, p.prefix, p.sync, p.objects, p.rows
    );
    let _ = writeln!(
        out,
        "  {} of the {} users this sync delivered are absent from the snapshot and would be deleted",
        p.users_to_delete, p.users_in_state
    );
    for id in &p.first_ids {
        let _ = writeln!(out, "    {id}");
    }
    if p.users_to_delete > p.first_ids.len() as u64 {
        let _ = writeln!(
            out,
            "    … and {} more",
            p.users_to_delete - p.first_ids.len() as u64
        );
    }
    match &p.refused {
        Some(why) => {
            let _ = writeln!(
                out,
                "  The guard would REFUSE ({} % allowed): {why}; nothing would be deleted.",
                p.max_delete_percent
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  The guard would allow it ({} % allowed).",
                p.max_delete_percent
            );
        }
    }
    if let Some(newer) = &p.newer_export {
        let _ = writeln!(out, "  Not the latest export ({newer} is newer): only the latest snapshot is mirrored, so the pass would delete nothing.");
    }
    if !p.marked {
        let _ = writeln!(out, "  No completion marker yet (_SUCCESS, a manifest, or MIRROR_DONE_MARKER): the pass starts on one, or on a {{\"mirror\": …}} work item.");
    }
    if let Some(first) = p.waiting_for.first() {
        let _ = writeln!(out, "  {} data objects have no completed run yet (e.g. {first}): the pass would wait for them.", p.waiting_for.len());
    }
    let _ = writeln!(out, "  Nothing was sent and nothing was written. MoEngage keeps a deleted user for 24 hours before erasing it.");
    out
}
