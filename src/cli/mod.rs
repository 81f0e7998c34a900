//! The command-line face of the `moengage-sync` binary, for people at a terminal rather than for
//! Lambda. It reads the same environment configuration as the function ([`Config::from_env`]).
//!
//! - `preview`: the bodies, rejections, warnings and totals the function would produce for the
//!   first rows of an export, by the function's own code path; sends nothing, writes nothing.
//! - `check`: one probe per thing a deploy can get wrong (DNS, credentials, App ID, bucket,
//!   queues), one ✓/✗ line each.
//! - `pretty`: indents a request body for reading without re-encoding it.

mod check;
mod pretty;
mod preview;
mod runs;
mod sync;

use std::io::Write;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::decode::Format;

pub use pretty::indent_json;

/// Process exit codes of the command-line mode.
pub mod exit {
    /// Everything checked out / the preview ran to its end.
    pub const OK: i32 = 0;
    /// A check failed, or the export could not be previewed to the end.
    pub const FAILED: i32 = 1;
    /// Nothing could run: bad configuration or arguments (clap uses 2 for usage errors too).
    pub const CANNOT_RUN: i32 = 2;
}

/// `moengage-sync` without a subcommand is the Lambda function; with one, a tool for people.
#[derive(Debug, Parser)]
#[command(
    name = "moengage-sync",
    version,
    about = "Streams warehouse exports from S3 into MoEngage's Data API.",
    long_about = "Streams warehouse exports from S3 into MoEngage's Data API.\n\n\
        Without a subcommand this is the AWS Lambda function (it waits for the Lambda runtime).\n\
        The subcommands read the same environment variables as the function \
        (MOENGAGE_DATA_CENTER, MOENGAGE_WORKSPACE_ID, MOENGAGE_API_KEY, OBJECT_TYPE, FIELD_MAPPING, …) \
        and the standard AWS ones (AWS_REGION, AWS_ENDPOINT_URL, credentials)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show exactly what would be sent to MoEngage for the first rows of an export. Sends
    /// nothing, writes no state.
    Preview(PreviewArgs),
    /// Verify the configuration end to end without sending data: DNS, credentials, App ID,
    /// bucket and queues. Exits non-zero if any check fails.
    Check(CheckArgs),
    /// Run the sync from this terminal: local files, s3://bucket/key, or every data object under
    /// s3://bucket/prefix/. Same claims, sync state, dead-letter queue and reports as the Lambda.
    /// Ctrl-C stops at a batch boundary; run the same command again to resume. Exits non-zero
    /// when an object failed or rows were dead-lettered.
    Sync(SyncArgs),
    /// List recent runs (Lambda and terminal) from the run log: object, status, counts,
    /// duration, first error.
    Runs(RunsArgs),
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Local files, s3://bucket/key, or s3://bucket/prefix/ (ending in /).
    #[arg(required = true)]
    pub sources: Vec<String>,
    /// Decode, map, validate, diff and batch without sending anything or writing any state;
    /// works on local files without AWS.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document (the summary) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Use this sync's settings (from SYNC_CONFIG) for every source, instead of routing by key.
    #[arg(long)]
    pub sync: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// How far back: e.g. 7d, 12h, 30m.
    #[arg(long, default_value = "7d", value_parser = parse_since)]
    pub since: std::time::Duration,
    /// Only runs with this status: complete, continued or failed.
    #[arg(long)]
    pub status: Option<String>,
    /// Print JSON Lines (one run per line) instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_since(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| "expected e.g. 7d, 12h or 30m".to_string())?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        _ => return Err("expected e.g. 7d, 12h or 30m".into()),
    };
    Ok(std::time::Duration::from_secs(
        n.saturating_mul(secs).min(366 * 86_400),
    ))
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The export: a local file path, or s3://bucket/key.
    pub source: String,
    /// How many data rows to read (the header is not counted).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub rows: u64,
    /// The export's format, when its name does not say (overrides SOURCE_FORMAT).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Preview with this sync's settings (from SYNC_CONFIG). Without it, the sync the source's
    /// key routes to, or the only sync there is.
    #[arg(long)]
    pub sync: Option<String>,
    /// Mirror mode: SOURCE is a snapshot's folder, s3://bucket/prefix/. Prints how many users its
    /// deletion pass would delete, the first 20 ids, and whether the guard would refuse. Sends
    /// nothing, writes nothing.
    #[arg(long)]
    pub deletes: bool,
    /// With --deletes: the guard's limit to preview with (as a work item's max_delete_percent).
    #[arg(long, requires = "deletes", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_delete_percent: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The bucket exports land in (default: STATE_BUCKET).
    #[arg(long)]
    pub bucket: Option<String>,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| format!("expected {}", Format::ACCEPTED))
}

/// Runs a subcommand; returns the process exit code (see [`exit`]).
pub async fn run(command: Command) -> i32 {
    // Logs go to stderr, for people, and only warnings by default: stdout is the command's output
    // (`preview --json` must stay one JSON document).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .without_time()
        .try_init();
    let code = match command {
        Command::Preview(args) => preview::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Sync(args) => sync::run(args).await,
        Command::Runs(args) => runs::run(args).await,
    };
    let _ = std::io::stdout().flush();
    code
}

/// The configuration, with its `SYNC_CONFIG` file read (from S3 too), or the one-line reason it
/// is not valid (printed by the caller).
async fn load_config() -> Result<Config, String> {
    let mut config = Config::from_env().map_err(|e| e.to_string())?;
    if let Some(location @ crate::config::syncs::SyncConfigLocation::S3 { .. }) =
        &config.sync_config
    {
        let s3 = s3_client(&aws_config().await);
        let loaded = crate::config::syncs::reload(location, &config.sync_defaults, None, &s3)
            .await
            .map_err(|message| {
                crate::config::ConfigError::SyncConfig {
                    location: location.to_string(),
                    message,
                }
                .to_string()
            })?;
        if let Some(syncs) = loaded {
            config.syncs = std::sync::Arc::new(syncs);
        }
    }
    Ok(config)
}

/// The sync a command works with: `--sync NAME`, else the one `key` routes to, else the only one.
fn pick_sync(
    config: &Config,
    name: Option<&str>,
    key: &str,
) -> Result<std::sync::Arc<crate::config::syncs::SyncSpec>, String> {
    let syncs = &config.syncs;
    let names = || {
        syncs
            .syncs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = name {
        return syncs
            .by_name(name)
            .cloned()
            .ok_or_else(|| format!("--sync {name}: no such sync; the syncs are {}", names()));
    }
    if let Ok(spec) = syncs.route(key) {
        return Ok(spec.clone());
    }
    match syncs.syncs.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(format!(
            "{key} matches no sync's prefix; pick one with --sync NAME (the syncs are {})",
            names()
        )),
    }
}

/// The AWS SDK configuration from the standard environment (`AWS_ENDPOINT_URL` for moto).
async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// An S3 client as `startup` builds it: path-style when an endpoint override is set (moto on
/// 127.0.0.1 cannot serve `bucket.127.0.0.1`).
fn s3_client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let endpoint_override =
        aws.endpoint_url().is_some() || std::env::var("AWS_ENDPOINT_URL_S3").is_ok();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(aws)
            .force_path_style(endpoint_override)
            .build(),
    )
}
