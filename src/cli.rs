//! Commands besides `serve`: `check` replays a version's fixtures; `healthcheck` probes readiness for a
//! container's HEALTHCHECK without needing curl in the image.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::monitor::DriftSettings;
use crate::repository::fixtures::Fixtures;
use crate::repository::{parse_version, ModelVersion};

/// `inferd check models/NAME/VERSION`: loads the version as the server would and replays `fixtures.json`.
/// Returns whether every case matched.
pub fn check(dir: &Path) -> anyhow::Result<bool> {
    let version_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let version = parse_version(version_name)
        .with_context(|| format!("{}: a version directory is named by a positive integer", dir.display()))?;
    let name = dir
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: expected models/NAME/VERSION", dir.display()))?;
    let fixtures_path = dir.join("fixtures.json");
    let fixtures =
        Fixtures::from_path(&fixtures_path).map_err(|m| anyhow::anyhow!("{}: {m}", fixtures_path.display()))?;
    // Load without the load-time replay so that a mismatch is reported case by case below.
    let model = ModelVersion::load_unchecked(name, version, dir, DriftSettings::default())?;
    let report = fixtures.replay(&model);
    for line in &report.mismatches {
        println!("MISMATCH {}: {line}", dir.display());
    }
    println!(
        "{}: {}/{} fixture cases match (max abs diff {:.3e}, tolerance {:e})",
        dir.display(),
        report.cases - report.mismatches.len(),
        report.cases,
        report.max_abs_diff,
        fixtures.tolerance
    );
    Ok(report.mismatches.is_empty() && report.cases > 0)
}

/// `inferd healthcheck [URL]`: GET the URL (default `http://127.0.0.1:$INFERD_SERVER__PORT/health/ready`);
/// Ok when it answers 200 within two seconds.
pub fn healthcheck(url: Option<&str>) -> anyhow::Result<()> {
    let default;
    let url = match url {
        Some(url) => url,
        None => {
            let port = std::env::var("INFERD_SERVER__PORT").unwrap_or_else(|_| "8080".into());
            default = format!("http://127.0.0.1:{port}/health/ready");
            &default
        }
    };
    let rest = url.strip_prefix("http://").context("only http:// URLs are supported")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("no address for {authority}"))?;
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => bail!("{url} answered {code}"),
        None => bail!("{url} gave no HTTP answer"),
    }
}
