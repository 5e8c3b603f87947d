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

/// `inferd healthcheck [URL]`: GET the URL (default `http://127.0.0.1:$INFERD_SERVER__PORT/health/ready`,
/// `https://` when `INFERD_SERVER__TLS__CERT_PATH` is set); Ok when it answers 200 within two seconds. Over
/// HTTPS the server's certificate is not verified: the probe asks whether this replica answers, not who it is.
pub fn healthcheck(url: Option<&str>) -> anyhow::Result<()> {
    let default;
    let url = match url {
        Some(url) => url,
        None => {
            let port = std::env::var("INFERD_SERVER__PORT").unwrap_or_else(|_| "8080".into());
            let scheme = if std::env::var_os("INFERD_SERVER__TLS__CERT_PATH").is_some() { "https" } else { "http" };
            default = format!("{scheme}://127.0.0.1:{port}/health/ready");
            &default
        }
    };
    let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => bail!("{url}: expected an http:// or https:// URL"),
    };
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("no address for {authority}"))?;
    let timeout = Duration::from_secs(2);
    let stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 64];
    let n = match https {
        false => exchange(stream, request.as_bytes(), &mut head),
        true => {
            let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
            let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .with_context(|| format!("{host}: not a server name"))?;
            let connection = rustls::ClientConnection::new(probe::config(), name).context("TLS client")?;
            exchange(rustls::StreamOwned::new(connection, stream), request.as_bytes(), &mut head)
        }
    }
    .with_context(|| format!("{url}: no answer"))?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => bail!("{url} answered {code}"),
        None => bail!("{url} gave no HTTP answer"),
    }
}

fn exchange(mut stream: impl Read + Write, request: &[u8], head: &mut [u8]) -> std::io::Result<usize> {
    stream.write_all(request)?;
    stream.flush()?;
    stream.read(head)
}

/// The healthcheck's TLS client: any certificate will do (see [`healthcheck`]); the handshake's signatures
/// are still checked, with the ring provider's algorithms.
mod probe {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub fn config() -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Arc::new(config)
    }
}
