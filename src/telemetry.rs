//! Logging, set up once: `tracing` to stderr, level from `RUST_LOG` (default `info`), JSON lines when
//! `INFERD_LOG_FORMAT=json` (for log shippers), human-readable text otherwise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let json = std::env::var("INFERD_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // try_init: tests start several servers in one process; only the first installs the subscriber.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
