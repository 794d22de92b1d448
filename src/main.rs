//! The ucca-auth binary: reads settings, starts logging, and runs the server
//! until SIGINT or SIGTERM, or runs one offline command on the store.
#![forbid(unsafe_code)]

mod admin;

use std::error::Error;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tracing_appender::non_blocking::NonBlockingBuilder;
use tracing_subscriber::EnvFilter;
use ucca_actors::SystemClock;
use ucca_auth::settings::{ClientCommand, Cli, Command, ServeArgs, Settings};
use ucca_auth::startup::Application;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match std::env::var("UCCA_LOG") {
        Err(_) => EnvFilter::new("info"),
        Ok(text) => match EnvFilter::try_new(&text) {
            Ok(filter) => filter,
            Err(error) => {
                // The logger does not exist yet, so the message goes straight to stderr.
                eprintln!("ucca-auth: UCCA_LOG={text:?} is not a valid log filter ({error}); use a level such as info or debug, or a filter such as ucca::security=info");
                return ExitCode::from(2);
            }
        },
    };
    // A background thread writes the log, so request threads never wait on stderr
    // (the access log alone cost a fifth of a bearer-checked call's time in the
    // HTTP benchmark). Not lossy: a full queue makes callers wait rather than
    // drop security events. The guard flushes what is queued when main returns.
    let (log_writer, _log_guard) = NonBlockingBuilder::default().lossy(false).finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log_writer)
        // Colour codes only where a person reads the log; files and collectors get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let result: Result<(), Box<dyn Error>> = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Export(args)) => admin::export(args).map_err(Into::into),
        Some(Command::Import(args)) => admin::import(args).map_err(Into::into),
        Some(Command::Client(ClientCommand::Add(args))) => admin::add_client(args).map_err(Into::into),
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), Box<dyn Error>> {
    let settings = Settings::resolve(args)?;
    actix_web::rt::System::new().block_on(async move {
        Application::build(settings, Arc::new(SystemClock)).await?.run_until_stopped().await
    })?;
    Ok(())
}
