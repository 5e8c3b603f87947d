//! The `inferd` command line: parses arguments and hands over to the library; nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use inferd::app::{shutdown_signal, Application};
use inferd::config::Settings;

#[derive(Parser)]
#[command(
    name = "inferd",
    version,
    about = "Serve trained models over HTTP, with the preprocessing they were trained with"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every model of the repository.
    Serve {
        /// Configuration file (default: ./config.toml when present). INFERD_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a model version and replay its fixtures.json; exits non-zero on any mismatch.
    Check {
        /// Version directories, e.g. models/breast_cancer/1.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Probe readiness (for a container HEALTHCHECK); exits 0 when the URL answers 200.
    Healthcheck {
        /// Default: http://127.0.0.1:$INFERD_SERVER__PORT/health/ready (port 8080 when unset).
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            inferd::telemetry::init();
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    eprintln!("inferd: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { dirs } => {
            let mut ok = true;
            for dir in &dirs {
                match inferd::cli::check(dir) {
                    Ok(matched) => ok &= matched,
                    Err(error) => {
                        eprintln!("inferd check: {error:#}");
                        ok = false;
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Healthcheck { url } => match inferd::cli::healthcheck(url.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("inferd healthcheck: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let app = Application::build(settings).await?;
        app.run_until_stopped(shutdown_signal()).await
    })
}
