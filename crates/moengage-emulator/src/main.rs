//! `moengage-emulator`: the local MoEngage Data API fake as a process, for `make demo` and
//! manual runs. All behaviour lives in the `moengage_emulator` library; this only parses flags,
//! binds, announces the port and waits for a signal.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use moengage_emulator::{self as emulator, EmulatorConfig, Faults};
use tracing_subscriber::EnvFilter;

/// Command-line flags; knob defaults match `EmulatorConfig::default()`.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Local fake of MoEngage's Data API (auth, 409/413/415/429, silent bulk drops, Delete Users, fault injection)"
)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free one (see --port-file).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The workspace id Basic auth and the path must name.
    #[arg(long, env = "EMULATOR_WORKSPACE_ID", default_value = emulator::DEFAULT_WORKSPACE_ID)]
    workspace_id: String,
    /// The Data API key Basic auth must carry.
    #[arg(long, env = "EMULATOR_API_KEY", default_value = emulator::DEFAULT_API_KEY, hide_env_values = true)]
    api_key: String,
    /// Requests per sliding minute before 429 (0 = unlimited).
    #[arg(long, default_value_t = emulator::DEFAULT_RATE_LIMIT_PER_MINUTE)]
    rate_limit_per_minute: u32,
    /// Body cap of /v1/transition in bytes.
    #[arg(long, default_value_t = emulator::DEFAULT_TRANSITION_MAX_BYTES)]
    transition_max_bytes: usize,
    /// Body cap of /v1/customer, /v1/event and /v1/customer/delete in bytes.
    #[arg(long, default_value_t = emulator::DEFAULT_OTHER_MAX_BYTES)]
    other_max_bytes: usize,
    /// Answer the first N API requests with --fail-status.
    #[arg(long, default_value_t = 0)]
    fail_first_n: u32,
    /// Status for --fail-first-n answers.
    #[arg(long, default_value_t = 500)]
    fail_status: u16,
    /// Fail every request carrying this customer id (a Delete Users `identity_value` too) with
    /// --fail-customer-status.
    #[arg(long)]
    fail_customer_id: Option<String>,
    /// Like --fail-customer-id for several ids, comma-separated (`a,b,c`).
    #[arg(long, value_delimiter = ',')]
    fail_customer_ids: Vec<String>,
    /// Status for --fail-customer-id and --fail-customer-ids answers.
    #[arg(long, default_value_t = 400)]
    fail_customer_status: u16,
    /// Fraction (0.0–1.0) of API requests whose connection is reset without a response.
    #[arg(long, default_value_t = 0.0)]
    reset_probability: f64,
    /// Delay before every API response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Write the bound port to this file once listening, so scripts can wait for it.
    #[arg(long)]
    port_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moengage-emulator: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the emulator and serves until SIGINT/SIGTERM.
async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let faults = Faults {
        fail_first_n: args.fail_first_n,
        fail_status: args.fail_status,
        fail_customer_id: args.fail_customer_id,
        fail_customer_ids: args.fail_customer_ids,
        fail_customer_status: args.fail_customer_status,
        reset_probability: args.reset_probability,
        delay_ms: args.delay_ms,
        ..Faults::default()
    };
    faults.check()?;
    let config = EmulatorConfig {
        workspace_id: args.workspace_id,
        api_key: args.api_key,
        rate_limit_per_minute: args.rate_limit_per_minute,
        transition_max_bytes: args.transition_max_bytes,
        other_max_bytes: args.other_max_bytes,
        faults,
    };

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let running = emulator::spawn(config, listener).await?;
    if let Some(path) = &args.port_file {
        write_port_file(path, running.addr)?;
    }
    println!("moengage-emulator listening on {}", running.base_url());

    wait_for_signal().await?;
    tracing::info!("signal received; shutting down");
    running.shutdown().await;
    Ok(())
}

/// Writes the port via a temporary file and a rename, so a script polling for the file never
/// reads it half-written.
fn write_port_file(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{}\n", addr.port()))?;
    std::fs::rename(&tmp, path)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what `kill` and process managers send).
async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
