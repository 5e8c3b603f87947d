//! HTTPS with `[server.tls]`: a self-signed certificate made here (rcgen), predictions over HTTP/1.1 and
//! HTTP/2, plain HTTP refused, and the healthcheck probing over TLS.

use std::path::Path;

use inferd::config::TlsSettings;
use serde_json::{json, Value};

use crate::helpers::{fixtures, spawn_app_with};

/// Writes a self-signed certificate for localhost and 127.0.0.1; answers its PEM.
fn self_signed(dir: &Path) -> (TlsSettings, String) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let settings = TlsSettings { cert_path: dir.join("cert.pem"), key_path: dir.join("key.pem") };
    let pem = certified.cert.pem();
    std::fs::write(&settings.cert_path, &pem).unwrap();
    std::fs::write(&settings.key_path, certified.key_pair.serialize_pem()).unwrap();
    (settings, pem)
}

#[tokio::test]
async fn predicts_over_https_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, pem) = self_signed(dir.path());
    let app = spawn_app_with(|s| s.server.tls = Some(tls)).await;
    let port = app.address.rsplit(':').next().unwrap().to_string();
    let https = format!("https://localhost:{port}");
    let root = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();

    let case = &fixtures("wine")["cases"][0];
    let body = json!({"instances": [case["input"]]});
    for http2 in [false, true] {
        let mut client = reqwest::Client::builder().add_root_certificate(root.clone());
        if !http2 {
            client = client.http1_only(); // otherwise ALPN settles on h2
        }
        let client = client.build().unwrap();
        let response = client.post(format!("{https}/models/wine/predict")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let expected = if http2 { reqwest::Version::HTTP_2 } else { reqwest::Version::HTTP_11 };
        assert_eq!(response.version(), expected);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["predictions"][0]["label"], case["output"]["label"], "{answer}");
        let ready = client.get(format!("{https}/health/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
    }

    // A client that does not trust the certificate cannot connect; nor can one speaking plain HTTP.
    let untrusting = reqwest::Client::builder().tls_built_in_root_certs(false).build().unwrap();
    assert!(untrusting.get(format!("{https}/health/ready")).send().await.is_err());
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/health/ready")).await.is_err());

    // The container's healthcheck speaks TLS to the same server.
    let url = format!("https://127.0.0.1:{port}/health/ready");
    tokio::task::spawn_blocking(move || inferd::cli::healthcheck(Some(&url))).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_or_mismatched_certificate_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, _) = self_signed(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (other_tls, _) = self_signed(other.path());
    for (settings, expected) in [
        (TlsSettings { cert_path: dir.path().join("nope.pem"), ..tls.clone() }, "nope.pem"),
        (TlsSettings { key_path: tls.cert_path.clone(), ..tls.clone() }, "no usable private key"),
        (TlsSettings { key_path: other_tls.key_path.clone(), ..tls.clone() }, "does not go with"),
    ] {
        let mut config = inferd::config::Settings::default();
        config.server.port = 0;
        config.server.tls = Some(settings);
        let error = inferd::app::Application::build(config).await.err().expect("refused").to_string();
        assert!(error.contains(expected), "{error}");
    }
}
