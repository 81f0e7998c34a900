//! The Lambda binary: logs, config, dependencies, then the runtime loop. With a subcommand
//! (`preview`, `check`) it is a command-line tool instead; see `cli`.

use clap::Parser;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use moengage_sync::app::{handler, startup};
use moengage_sync::{cli, config::Config};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Lambda starts `bootstrap` without arguments; people add a subcommand.
    if let Some(command) = cli::Cli::parse().command {
        std::process::exit(cli::run(command).await);
    }

    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(true)
        .without_time()
        .init();

    // A bad configuration stops here, before any invocation, with one line naming the variable.
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("moengage-sync: configuration error: {e}");
            std::process::exit(2);
        }
    };
    let deps = match startup::connect(config).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("moengage-sync: start-up error: {e}");
            std::process::exit(2);
        }
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let inv =
            moengage_sync::app::Invocation::from_deadline_ms(event.context.deadline, &deps.config);
        let summary = handler::handle(deps, event.payload, &inv).await?;
        Ok::<_, Error>(serde_json::to_value(summary)?)
    }))
    .await
}
