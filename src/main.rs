//! The `inferd` command line: parses arguments and hands over to the library; nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use inferd::app::{shutdown_signal, Application};

use inferd::config::Settings;

/// mimalloc: requests allocate on the executor threads and their answers and prediction-log records are
/// freed on other threads; glibc's malloc makes such cross-thread frees contend for arenas, mimalloc does
/// not (measured: 5 to 15% more requests per second). Its defaults trade memory for speed, though; see
/// [`lean_allocator`].
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Makes mimalloc commit arena memory as it is used rather than whole arenas up front. With mimalloc built
/// `no_thp` (transparent huge pages made every touched 4 KiB page of an arena resident as 2 MiB), resident
/// memory after a load test drops from about 55 MiB to about 35 MiB, with no measurable change in
/// throughput (`bench/compare.py`). Purging freed pages at once (`purge_delay` 0) saved 5 MiB more but cost
/// CPU in `madvise` calls and TLB shootdowns, so mimalloc's delay stays. `MIMALLOC_ARENA_EAGER_COMMIT`, when
/// set, still wins.
fn lean_allocator() {
    // mimalloc v3's `mi_option_arena_eager_commit`: libmimalloc-sys exports no named constant for it.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        // SAFETY: setting a mimalloc option is a plain store into mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
    }
}

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
    /// Score a CSV file with a model, through the same preprocessing and plan as the server.
    Score {
        #[command(flatten)]
        model: ModelArgs,
        /// CSV with a header of feature names (other columns are carried through).
        #[arg(long)]
        input: PathBuf,
        /// Where to write the input rows with their prediction columns.
        #[arg(long)]
        output: PathBuf,
        /// Stop at the first bad row instead of reporting and skipping it.
        #[arg(long)]
        strict: bool,
        /// Rows per model run.
        #[arg(long, default_value_t = 4096)]
        batch_rows: usize,
    },
    /// Build a version's drift reference profile (reference.json) from training data, as tools/export.py does.
    Profile {
        #[command(flatten)]
        model: ModelArgs,
        /// The training data: CSV with a header naming every feature (other columns are ignored).
        #[arg(long)]
        input: PathBuf,
        /// Where to write the profile (default: the version's own reference.json; "-" for stdout).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Probe readiness (for a container HEALTHCHECK); exits 0 when the URL answers 200.
    Healthcheck {
        /// Default: http://127.0.0.1:$INFERD_SERVER__PORT/health/ready (port 8080 when unset).
        url: Option<String>,
    },
}

/// Which model version a command works on, from which repository.
#[derive(clap::Args)]
struct ModelArgs {
    /// Model name in the repository (`[models] repository` of the configuration).
    #[arg(long)]
    model: String,
    /// Version (default: the highest in the repository).
    #[arg(long)]
    version: Option<u64>,
    /// Configuration file (default: ./config.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl ModelArgs {
    /// Loads the version as the server would (fixtures replayed).
    fn load(&self) -> anyhow::Result<inferd::repository::ModelVersion> {
        let settings = Settings::load(self.config.as_deref())?;
        let drift = settings.monitoring.drift_defaults();
        Ok(inferd::repository::load_version(&settings.models.repository, &self.model, self.version, drift)?)
    }
}

fn main() -> ExitCode {
    lean_allocator();
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
        Command::Score { model, input, output, strict, batch_rows } => {
            let options = inferd::score::ScoreOptions { batch_rows: batch_rows.max(1), strict, progress: true };
            match model.load().and_then(|loaded| inferd::score::score(&loaded, &input, &output, &options)) {
                Ok(summary) => {
                    eprintln!("{}: {} rows scored, {} bad rows skipped", output.display(), summary.scored, summary.bad);
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("inferd score: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Profile { model, input, output } => match profile(&model, &input, output.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("inferd profile: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Healthcheck { url } => match inferd::cli::healthcheck(url.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("inferd healthcheck: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn profile(model: &ModelArgs, input: &std::path::Path, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let loaded = model.load()?;
    let profile = inferd::profile::profile(&loaded, input)?;
    let default_output = loaded.dir.join("reference.json");
    let output = output.unwrap_or(&default_output);
    inferd::profile::write(&profile, output, &loaded)?;
    if output != std::path::Path::new("-") {
        eprintln!("{}: profile of {} rows written", output.display(), profile["rows"]);
    }
    Ok(())
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    // One executor thread per core (tokio's default, said here so it is one decision with the next). Blocking
    // threads (parsing and answering large bodies, flushing at shutdown) are bounded by the cores rather
    // than tokio's 512: on a small machine a flood of 4,096-record bodies then queues for a few threads
    // instead of starting hundreds that would only take turns on two cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .max_blocking_threads((4 * cores).max(8))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = Application::build(settings).await?;
        app.run_until_stopped(shutdown_signal()).await
    })
}
