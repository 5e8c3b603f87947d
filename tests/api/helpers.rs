use std::path::{Path, PathBuf};

use inferd::app::Application;
use inferd::config::Settings;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The bundled sample models with the default settings, on a free port.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with settings adjusted first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.models.repository = PathBuf::from("models");
    settings.models.default = Some("breast_cancer".into());
    adjust(&mut settings);
    let app = Application::build(settings).await.expect("the server starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp { address, client: reqwest::Client::new(), stop: Some(stop), server: Some(server) }
}

impl TestApp {
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.address)).json(body).send().await.expect("request sent")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self.client.post(format!("{}{path}", self.address)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.address)).send().await.expect("request sent")
    }

    /// Starts the graceful shutdown; the returned handle resolves when the server has stopped.
    pub fn stop(&mut self) -> JoinHandle<anyhow::Result<()>> {
        let _ = self.stop.take().expect("stopped once").send(());
        self.server.take().expect("stopped once")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// `models/NAME/1/fixtures.json`.
pub fn fixtures(model: &str) -> Value {
    read_json(&Path::new("models").join(model).join("1/fixtures.json"))
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The first fixture input of a model.
pub fn sample_input(model: &str) -> Value {
    fixtures(model)["cases"][0]["input"].clone()
}

/// Copies `models/NAME/1` into a fresh repository, where a test may edit it.
pub fn repository_with(model: &str) -> tempfile::TempDir {
    let repository = tempfile::tempdir().unwrap();
    let target = repository.path().join(model).join("1");
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(Path::new("models").join(model).join("1")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    repository
}

/// Asserts an answer is a JSON error with this status and code, and returns its body.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"), "errors are JSON");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

/// Compares an answer's prediction with a fixture's expected output (label equal, numbers within tolerance).
pub fn assert_matches_fixture(prediction: &Value, expected: &Value, tolerance: f64) {
    if let Some(value) = expected.get("value") {
        let (got, want) = (prediction["value"].as_f64().unwrap(), value.as_f64().unwrap());
        assert!((got - want).abs() <= tolerance * want.abs().max(1.0), "value {got} vs {want}");
        return;
    }
    assert_eq!(prediction["label"], expected["label"], "{prediction} vs {expected}");
    let probabilities = expected["probabilities"].as_object().unwrap();
    assert_eq!(prediction["probabilities"].as_object().unwrap().len(), probabilities.len());
    let mut best: f64 = 0.0;
    for (label, p) in probabilities {
        let got = prediction["probabilities"][label].as_f64().unwrap();
        assert!((got - p.as_f64().unwrap()).abs() <= tolerance, "{label}: {got} vs {p}");
        best = best.max(got);
    }
    assert_eq!(prediction["confidence"].as_f64().unwrap(), best);
}

/// POSTs a JSON body of `size` bytes (a one-instance request padded with spaces) over a plain socket the
/// naive way, the whole body written before the answer is read, `times` times; answers the raw answers.
/// A server that refuses from the headers must still take the body, or the writes fail with a reset.
pub async fn post_whole_body_then_read(app: &TestApp, path: &str, size: usize, times: usize) -> Vec<String> {
    let address = app.address.trim_start_matches("http://").to_string();
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut body = serde_json::to_vec(&serde_json::json!({"instances": [sample_input("breast_cancer")]})).unwrap();
        body.resize(size, b' ');
        (0..times)
            .map(|_| {
                let mut stream = std::net::TcpStream::connect(&address).unwrap();
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&body).expect("the whole body is taken");
                let mut answer = String::new();
                stream.read_to_string(&mut answer).expect("the answer is read, not reset");
                answer
            })
            .collect()
    })
    .await
    .unwrap()
}
