//! The ucca-auth binary: reads settings, starts logging, runs the server until SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use ucca_actors::SystemClock;
use ucca_auth::settings::{Cli, Command, Settings};
use ucca_auth::startup::Application;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("UCCA_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();

    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let result = Settings::resolve(args).map_err(Into::into).and_then(|settings| {
        actix_web::rt::System::new().block_on(async move {
            Application::build(settings, Arc::new(SystemClock)).await?.run_until_stopped().await
        })
    });

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}
