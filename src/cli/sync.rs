//! `moengage-sync sync SOURCE…`: the function's pipeline run from a terminal, for backfills and
//! first syncs. The same configuration, claims (run markers), sync state, dead-letter queue and
//! run reports as the Lambda, so a terminal run and a Lambda run never process one object version
//! twice. A progress bar per object (indicatif) on a TTY, one line every few seconds otherwise;
//! Ctrl-C stops at a batch boundary and records the checkpoint; running the same command again
//! resumes. `--dry-run` sends and writes nothing, and needs no AWS for local files.

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{exit, SyncArgs};
use crate::account::report::{ObjectSummary, RowReport, Status};
use crate::app::{handler, Invocation};
use crate::config::syncs::{SyncSpec, Syncs};
use crate::config::Config;
use crate::decode::{self, DecodeInput, RangedObject};
use crate::model::ObjectRef;
use crate::pipeline::{self, Progress};
use crate::source::local::{self, LocalOrS3, LOCAL_BUCKET};
use crate::source::ObjectSource;

/// One object to sync.
#[derive(Debug, Clone)]
struct Target {
    object: ObjectRef,
    /// As given (or listed) for people: a path or `s3://bucket/key`.
    shown: String,
}

/// What `--json` prints, and the end of the text output.
#[derive(Debug, Serialize, Default)]
pub struct SyncDoc {
    pub dry_run: bool,
    pub objects: Vec<ObjectLine>,
    pub totals: Totals,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ObjectLine {
    /// As given (or listed): a path or `s3://bucket/key`.
    pub source: String,
    /// The object's counts, status, error and report, as the function's summary has them.
    #[serde(flatten)]
    pub summary: ObjectSummary,
    /// Dry run: the first rejections, with row, column and reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RowReport>,
}

#[derive(Debug, Serialize, Default)]
pub struct Totals {
    pub objects: usize,
    pub failed: usize,
    pub rows_read: u64,
    pub rows_delivered: u64,
    pub rows_unchanged: u64,
    pub rows_rejected: u64,
    pub rows_dead_lettered: u64,
    pub rows_pending: u64,
    pub requests: u64,
}

pub async fn run(args: SyncArgs) -> i32 {
    let config = match load(&args).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("moengage-sync: configuration error: {e}");
            return exit::CANNOT_RUN;
        }
    };
    let needs_aws = !args.dry_run || args.sources.iter().any(|s| s.starts_with("s3://"));
    let aws = if needs_aws {
        Some(super::aws_config().await)
    } else {
        None
    };
    let s3: Option<Arc<dyn ObjectSource>> = aws
        .as_ref()
        .map(|a| Arc::new(super::s3_client(a)) as Arc<dyn ObjectSource>);
    let targets = match expand(&args.sources, s3.as_deref(), &config).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("moengage-sync sync: {e}");
            return exit::CANNOT_RUN;
        }
    };
    if targets.is_empty() {
        eprintln!(
            "moengage-sync sync: no data objects in {}",
            args.sources.join(" ")
        );
        return exit::CANNOT_RUN;
    }

    // Ctrl-C: stop at the next batch boundary; a second Ctrl-C exits at once.
    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nmoengage-sync sync: stopping at the next batch boundary (Ctrl-C again to quit now)…");
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }

    let mut doc = SyncDoc {
        dry_run: args.dry_run,
        ..SyncDoc::default()
    };
    let display = Display::new(targets.len(), &config, !args.json);
    if args.dry_run {
        for t in &targets {
            if cancel.is_cancelled() {
                break;
            }
            let line = dry_one(&config, &args, t, s3.clone(), &display).await;
            doc.objects.push(line);
        }
    } else {
        let Some(aws) = aws.as_ref() else {
            return exit::CANNOT_RUN;
        };
        let mut deps = match crate::app::startup::connect_with(config.clone(), aws).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("moengage-sync: start-up error: {e}");
                return exit::CANNOT_RUN;
            }
        };
        deps.source = Arc::new(LocalOrS3 {
            s3: deps.source.clone(),
        });
        for t in &targets {
            if cancel.is_cancelled() {
                doc.notes
                    .push(format!("{}: not started (interrupted)", t.shown));
                continue;
            }
            let spec = match super::pick_sync(&config, args.sync.as_deref(), &t.object.key) {
                Ok(s) => s,
                Err(e) => {
                    doc.notes.push(format!("{}: {e}; skipped", t.shown));
                    continue;
                }
            };
            let progress = Arc::new(Progress::default());
            let inv = Invocation {
                cancel: Some(cancel.clone()),
                progress: Some(progress.clone()),
                enqueue_continuations: false,
                ..Invocation::unbounded()
            };
            let only = Arc::new(only_sync(&config.syncs, &spec));
            let ticker = display.follow(&t.shown, &spec, progress.clone());
            let mut notes = Vec::new();
            let result =
                handler::process_version(&deps, &only, &t.object, None, false, &inv, &mut notes)
                    .await;
            ticker.finish().await;
            doc.notes.extend(notes);
            match result {
                Ok(crate::app::Processed::Line(s)) => doc.objects.push(ObjectLine {
                    source: t.shown.clone(),
                    summary: s,
                    rejected: Vec::new(),
                }),
                Ok(crate::app::Processed::Nothing) => {}
                Ok(crate::app::Processed::Busy) => doc.notes.push(format!(
                    "{}: another run (the Lambda, or another terminal) holds it; try again later",
                    t.shown
                )),
                Err(e) => {
                    doc.notes.push(format!("{}: {e}", t.shown));
                    doc.totals.failed += 1;
                }
            }
        }
    }
    display.done();
    for o in doc.objects.iter().map(|o| &o.summary) {
        let t = &mut doc.totals;
        t.objects += 1;
        t.failed += usize::from(o.status == Status::Failed);
        t.rows_read += o.rows_read;
        t.rows_delivered += o.rows_delivered;
        t.rows_unchanged += o.rows_unchanged;
        t.rows_rejected += o.rows_rejected;
        t.rows_dead_lettered += o.rows_dead_lettered;
        t.rows_pending += o.rows_pending;
        t.requests += o.requests_sent;
    }
    if args.json {
        match serde_json::to_string_pretty(&doc) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("moengage-sync sync: {e}"),
        }
    } else {
        print!("{}", render(&doc));
    }
    if cancel.is_cancelled() {
        // The shell's convention for a run stopped by Ctrl-C.
        130
    } else if doc.totals.failed > 0 || doc.totals.rows_dead_lettered > 0 {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// The configuration; a dry run needs only what shapes the bodies, so the MoEngage account and
/// the queues may be left out.
async fn load(args: &SyncArgs) -> Result<Config, String> {
    if !args.dry_run {
        return super::load_config().await;
    }
    let placeholders = [
        ("MOENGAGE_DATA_CENTER", "DC-01"),
        ("MOENGAGE_WORKSPACE_ID", "dry-run"),
        ("MOENGAGE_API_KEY", "dry-run"),
        ("DEAD_LETTER_QUEUE_URL", "dry-run: nothing is sent"),
    ];
    let has_arn = std::env::var("MOENGAGE_API_KEY_SECRET_ARN").is_ok_and(|v| !v.trim().is_empty());
    let mut config = Config::from_lookup(|name| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| {
                placeholders
                    .iter()
                    .find(|(n, _)| *n == name && !(name == "MOENGAGE_API_KEY" && has_arn))
                    .map(|(_, v)| v.to_string())
            })
    })
    .map_err(|e| e.to_string())?;
    if let Some(location @ crate::config::syncs::SyncConfigLocation::S3 { .. }) =
        &config.sync_config
    {
        let s3 = super::s3_client(&super::aws_config().await);
        if let Some(syncs) =
            crate::config::syncs::reload(location, &config.sync_defaults, None, &s3).await?
        {
            config.syncs = Arc::new(syncs);
        }
    }
    Ok(config)
}

/// Local files, `s3://bucket/key`, and `s3://bucket/prefix/` (every data object under it, in key
/// order, markers and this tool's own state left out).
async fn expand(
    sources: &[String],
    s3: Option<&dyn ObjectSource>,
    config: &Config,
) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for source in sources {
        let Some(rest) = source.strip_prefix("s3://") else {
            let key = local::key_of(std::path::Path::new(source))
                .map_err(|e| format!("{source}: {e}"))?;
            out.push(Target {
                object: ObjectRef {
                    bucket: LOCAL_BUCKET.into(),
                    key,
                },
                shown: source.clone(),
            });
            continue;
        };
        let (bucket, key) = rest
            .split_once('/')
            .filter(|(b, _)| !b.is_empty())
            .ok_or_else(|| format!("{source} is not s3://bucket/key or s3://bucket/prefix/"))?;
        if !key.is_empty() && !key.ends_with('/') {
            out.push(Target {
                object: ObjectRef {
                    bucket: bucket.into(),
                    key: key.into(),
                },
                shown: source.clone(),
            });
            continue;
        }
        let s3 = s3.ok_or("S3 is not configured")?;
        let mut listed = s3.list(bucket, key).await.map_err(|e| e.to_string())?;
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        let own = |k: &str| {
            config.state_bucket.as_deref().unwrap_or(bucket) == bucket
                && k.starts_with(&config.state_prefix)
        };
        for o in listed {
            if own(&o.key) || decode::is_marker(&o.key, Some(o.size)) {
                continue;
            }
            out.push(Target {
                shown: format!("s3://{bucket}/{}", o.key),
                object: ObjectRef {
                    bucket: bucket.into(),
                    key: o.key,
                },
            });
        }
    }
    Ok(out)
}

/// The syncs with only `spec`, matching every key: the terminal names its objects itself.
fn only_sync(syncs: &Syncs, spec: &SyncSpec) -> Syncs {
    let mut one = spec.clone();
    one.prefix = String::new();
    Syncs {
        syncs: vec![Arc::new(one)],
        budgets: syncs.budgets,
        file: syncs.file.clone(),
    }
}

/// A dry run of one object: the whole pipeline but delivery, nothing written.
async fn dry_one(
    config: &Config,
    args: &SyncArgs,
    t: &Target,
    s3: Option<Arc<dyn ObjectSource>>,
    display: &Display,
) -> ObjectLine {
    let line = |summary: ObjectSummary, rejected: Vec<RowReport>| ObjectLine {
        source: t.shown.clone(),
        summary: ObjectSummary {
            bucket: t.object.bucket.clone(),
            key: t.object.key.clone(),
            ..summary
        },
        rejected,
    };
    let failed = |error: String| {
        line(
            ObjectSummary {
                sync: args.sync.clone().unwrap_or_default(),
                status: Status::Failed,
                error: Some(error),
                ..Default::default()
            },
            Vec::new(),
        )
    };
    let spec = match super::pick_sync(config, args.sync.as_deref(), &t.object.key) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let source: Arc<dyn ObjectSource> = Arc::new(LocalOrS3 {
        s3: s3.unwrap_or_else(|| Arc::new(NoS3)),
    });
    let object = match source.open(&t.object.bucket, &t.object.key).await {
        Ok(o) => o,
        Err(e) => return failed(e.to_string()),
    };
    let progress = Arc::new(Progress::default());
    progress
        .object_size
        .store(object.size.unwrap_or(0), Relaxed);
    let ticker = display.follow(&t.shown, &spec, progress.clone());
    let counted = pipeline::CountingRead::new(object.body, progress.clone());
    let ranged = RangedObject {
        source: source.clone(),
        bucket: t.object.bucket.clone(),
        key: t.object.key.clone(),
        size: object.size.unwrap_or(0),
        etag: Some(object.etag.clone()),
        runtime: tokio::runtime::Handle::current(),
    };
    let (config2, spec2, key, encoding) = (
        config.clone(),
        spec.clone(),
        t.object.key.clone(),
        object.content_encoding.clone(),
    );
    let p = progress.clone();
    let dry = tokio::task::spawn_blocking(move || {
        let input = DecodeInput {
            reader: Box::new(tokio_util::io::SyncIoBridge::new(counted)),
            key: &key,
            content_encoding: encoding.as_deref(),
            format: spec2.source_format,
            compression: spec2.source_compression,
            csv: spec2.csv,
            limits: config2.input_limits,
            ranged: Some(ranged),
        };
        pipeline::dry_run_all(&config2, &spec2, input, None, Some(&p))
    })
    .await;
    ticker.finish().await;
    let dry = match dry {
        Ok(d) => d,
        Err(e) => return failed(format!("internal error while decoding: {e}")),
    };
    line(
        ObjectSummary {
            sync: spec.name.clone(),
            status: if dry.failure.is_some() {
                Status::Failed
            } else {
                Status::Complete
            },
            rows_read: dry.rows_read,
            rows_unchanged: dry.unchanged,
            rows_rejected: dry.rows_rejected,
            // Rows that would be sent: pending, since nothing was.
            rows_pending: dry.would_send,
            requests_sent: dry.requests,
            error: dry.failure,
            ..Default::default()
        },
        dry.rejected,
    )
}

/// S3 when no AWS is configured: a local dry run never reaches it.
struct NoS3;

#[async_trait::async_trait]
impl ObjectSource for NoS3 {
    async fn open(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<crate::source::SourceObject, crate::source::SourceError> {
        Err(no_s3(bucket, key))
    }
    async fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<crate::source::ObjectMeta, crate::source::SourceError> {
        Err(no_s3(bucket, key))
    }
    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        _: u64,
        _: u64,
    ) -> Result<bytes::Bytes, crate::source::SourceError> {
        Err(no_s3(bucket, key))
    }
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<crate::source::ListedObject>, crate::source::SourceError> {
        Err(no_s3(bucket, prefix))
    }
}

fn no_s3(bucket: &str, key: &str) -> crate::source::SourceError {
    crate::source::SourceError {
        bucket: bucket.into(),
        key: key.into(),
        reason: "S3 is not configured".into(),
    }
}

/// Progress: indicatif bars on a terminal, a line every few seconds otherwise, nothing for
/// `--json`.
struct Display {
    bars: Option<indicatif::MultiProgress>,
    overall: Option<indicatif::ProgressBar>,
    lines: bool,
    budget_per_minute: f64,
}

/// Follows one object until [`Ticker::finish`].
struct Ticker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Ticker {
    /// Shows the final counts, then stops following.
    async fn finish(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Display {
    fn new(objects: usize, config: &Config, show: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let budget_per_minute = config.syncs.budgets.bulk_import.requests_per_minute as f64;
        if !show {
            return Display {
                bars: None,
                overall: None,
                lines: false,
                budget_per_minute,
            };
        }
        if !tty {
            return Display {
                bars: None,
                overall: None,
                lines: true,
                budget_per_minute,
            };
        }
        let bars = indicatif::MultiProgress::with_draw_target(
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        let overall = bars.add(indicatif::ProgressBar::new(objects as u64));
        overall.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {pos}/{len} objects  {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        overall.set_prefix("overall");
        Display {
            bars: Some(bars),
            overall: Some(overall),
            lines: false,
            budget_per_minute,
        }
    }

    /// Shows `progress` of one object until the returned ticker is finished.
    fn follow(&self, shown: &str, spec: &SyncSpec, progress: Arc<Progress>) -> Ticker {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.insert_from_back(1, indicatif::ProgressBar::new_spinner());
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {prefix} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.set_prefix(format!("{shown} ({})", spec.name));
            bar
        });
        if bar.is_none() && !self.lines {
            return Ticker {
                stop: None,
                task: None,
            };
        }
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let shown = shown.to_string();
        let lines = self.lines;
        let overall = self.overall.clone();
        let budget = self.budget_per_minute;
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let every = if lines {
                Duration::from_secs(5)
            } else {
                Duration::from_millis(250)
            };
            loop {
                let finished = tokio::select! {
                    _ = &mut stopped => true,
                    _ = tokio::time::sleep(every) => false,
                };
                let text = status_text(&progress, budget, started.elapsed());
                match &bar {
                    Some(b) if finished => b.finish_with_message(text),
                    Some(b) => b.set_message(text),
                    None => eprintln!("sync: {shown}: {text}"),
                }
                if finished {
                    if let Some(o) = &overall {
                        o.inc(1);
                    }
                    return;
                }
            }
        });
        Ticker {
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn done(&self) {
        if let Some(o) = &self.overall {
            o.finish();
        }
    }
}

/// `12,345 rows read · 12,000 delivered · 300 unchanged · 45 rejected · 1,164 req/min (budget
/// 1,200) · ETA 3m10s`.
fn status_text(p: &Progress, budget: f64, elapsed: Duration) -> String {
    let size = Some(p.object_size.load(Relaxed)).filter(|s| *s > 0);
    if p.classifying.load(Relaxed) {
        // The first pass: nothing is sent until every row has its verdict.
        let bytes = p.bytes_read.load(Relaxed);
        let read = match size {
            Some(size) => format!(
                "{:.0} % of the export read",
                bytes as f64 * 100.0 / size as f64
            ),
            None => format!("{:.1} MB of the export read", bytes as f64 / 1e6),
        };
        return format!("comparing rows with the sync state before sending · {read}");
    }
    let read = p.rows_read.load(Relaxed);
    let delivered = p.rows_delivered.load(Relaxed);
    let unchanged = p.rows_unchanged.load(Relaxed);
    let rejected = p.rows_rejected.load(Relaxed);
    let requests = p.requests_sent.load(Relaxed);
    let bytes = p.bytes_read.load(Relaxed);
    let rate = p.rate_per_minute.load(Relaxed) as f64;
    let minutes = elapsed.as_secs_f64() / 60.0;
    let achieved = if minutes > 0.0 {
        requests as f64 / minutes
    } else {
        0.0
    };
    // ETA from the budget: the rows left (estimated from the bytes read so far) that will need a
    // request, at the budget's pace and the rows each request has carried.
    let eta = match (size, bytes, read) {
        (Some(size), b, r) if b > 0 && r > 0 && size >= b => {
            let left = (r as f64 * (size - b) as f64 / b as f64).max(0.0);
            let sending = if r > 0 {
                1.0 - unchanged as f64 / r as f64
            } else {
                1.0
            };
            let per_request = if requests > 0 {
                (delivered.max(1) as f64 / requests as f64).max(1.0)
            } else {
                1.0
            };
            let pace = if rate > 0.0 { rate } else { budget };
            let mins = left * sending / per_request / pace.max(1.0);
            format!(
                " · ETA {}",
                human_duration(Duration::from_secs_f64(mins * 60.0))
            )
        }
        _ => String::new(),
    };
    let budget_text = if rate > 0.0 {
        format!(" · {achieved:.0} req/min of {rate:.0} in force")
    } else {
        String::new()
    };
    format!(
        "{read} rows read · {delivered} delivered · {unchanged} unchanged · {rejected} rejected{budget_text}{eta}"
    )
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The text summary: one line per object, the notes, the totals.
pub fn render(doc: &SyncDoc) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let verb = if doc.dry_run {
        "would send"
    } else {
        "delivered"
    };
    for line in &doc.objects {
        let o = &line.summary;
        let _ = writeln!(
            out,
            "{} {} ({}): {} rows read, {} {verb}, {} unchanged, {} rejected, {} dead-lettered, {} pending, {} requests",
            match o.status {
                Status::Complete => "✓",
                Status::Continued => "…",
                Status::Failed => "✗",
            },
            line.source,
            o.sync,
            o.rows_read,
            if doc.dry_run { o.rows_pending } else { o.rows_delivered },
            o.rows_unchanged,
            o.rows_rejected,
            o.rows_dead_lettered,
            if doc.dry_run { 0 } else { o.rows_pending },
            o.requests_sent,
        );
        if let Some(e) = &o.error {
            let _ = writeln!(out, "    error: {e}");
        }
        for r in line.rejected.iter().take(10) {
            let _ = writeln!(out, "    row {} {}: {}", r.row, r.column, r.reason);
        }
        if let Some(r) = &o.report {
            let _ = writeln!(out, "    report: {r}");
        }
    }
    for n in &doc.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let t = &doc.totals;
    let _ = writeln!(
        out,
        "{} objects ({} failed): {} rows read, {} {verb}, {} unchanged, {} rejected, {} dead-lettered, {} pending{}",
        t.objects,
        t.failed,
        t.rows_read,
        if doc.dry_run { t.rows_pending } else { t.rows_delivered },
        t.rows_unchanged,
        t.rows_rejected,
        t.rows_dead_lettered,
        if doc.dry_run { 0 } else { t.rows_pending },
        if doc.dry_run { " (dry run: nothing sent, nothing written)" } else { "" },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_says_when_rows_are_compared_with_the_state_before_sending() {
        let p = Progress::default();
        p.object_size.store(1_000, Relaxed);
        p.bytes_read.store(250, Relaxed);
        p.classifying.store(true, Relaxed);
        assert_eq!(
            status_text(&p, 100.0, Duration::from_secs(5)),
            "comparing rows with the sync state before sending · 25 % of the export read"
        );
        p.classifying.store(false, Relaxed);
        p.rows_read.store(10, Relaxed);
        assert!(status_text(&p, 100.0, Duration::from_secs(5)).starts_with("10 rows read"));
    }
}
