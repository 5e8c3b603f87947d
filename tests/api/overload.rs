//! Overload (DESIGN §9): past `max_in_flight` a request is refused at once with 429; past
//! `request_timeout_ms` it gets 503; each carries `Retry-After` and is counted in `inferd_rejected_total`;
//! health, readiness and `/metrics` answer throughout; queued work whose caller has gone is never computed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::helpers::{assert_error, post_whole_body_then_read, sample_input, spawn_app_with, TestApp};
use crate::monitoring::{metric, parse_metrics};

/// A POST to `/predict` whose body arrives only when the returned sender sends it (and is dropped): the
/// request holds its place in the handlers meanwhile.
fn slow_request(app: &TestApp) -> (mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<reqwest::Response>) {
    let (send, chunks) = mpsc::channel::<Vec<u8>>(4);
    let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
        chunks.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), chunks))
    });
    let request = app
        .client
        .post(format!("{}/predict", app.address))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream));
    (send, tokio::spawn(async move { request.send().await.unwrap() }))
}

async fn scrape(app: &TestApp) -> Vec<crate::monitoring::Sample> {
    parse_metrics(&app.get("/metrics").await.text().await.unwrap())
}

#[tokio::test]
async fn past_max_in_flight_requests_are_refused_at_once_while_health_and_metrics_answer() {
    let app = spawn_app_with(|s| s.server.max_in_flight = 1).await;
    let (send, held) = slow_request(&app);
    send.send(b"{\"instances\": [".to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let one = json!({"instances": [sample_input("breast_cancer")]});
    let started = Instant::now();
    let refused = app.post_json("/predict", &one).await;
    assert!(started.elapsed() < Duration::from_millis(500), "refused at once: {:?}", started.elapsed());
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_error(refused, 429, "overloaded").await;
    assert_error(app.get("/models").await, 429, "overloaded").await;
    let v2 = app.post_json("/v2/models/breast_cancer/infer", &json!({"inputs": []})).await;
    assert_eq!(v2.status(), 429);
    assert!(v2.json::<Value>().await.unwrap()["error"].is_string(), "KServe routes refuse the KServe way");
    // A large body sent to a full server gets its 429, not a connection reset.
    for answer in post_whole_body_then_read(&app, "/predict", 7 << 20, 1).await {
        assert!(answer.starts_with("HTTP/1.1 429") && answer.contains("\"overloaded\""), "{answer}");
    }

    for path in ["/health/live", "/health/ready", "/v2/health/ready", "/health", "/metrics"] {
        assert_eq!(app.get(path).await.status(), 200, "{path} answers under full load");
    }
    let samples = scrape(&app).await;
    assert_eq!(metric(&samples, "inferd_rejected_total", &[("reason", "overloaded")]), Some(4.0));
    assert_eq!(metric(&samples, "inferd_rejected_total", &[("reason", "queue_full")]), Some(0.0));

    // The held request completes, and its permit frees the server.
    let rest = serde_json::to_vec(&sample_input("breast_cancer")).unwrap();
    send.send([rest, b"]}".to_vec()].concat()).await.unwrap();
    drop(send);
    let held = held.await.unwrap();
    assert_eq!(held.status(), 200);
    assert_eq!(app.post_json("/predict", &one).await.status(), 200);
}

#[tokio::test]
async fn a_request_past_its_timeout_gets_503_and_its_queued_work_is_never_computed() {
    // Batches wait up to 400 ms to fill: the request sits in the queue past its 150 ms.
    let app = spawn_app_with(|s| {
        s.server.request_timeout_ms = 150;
        s.batching.max_delay_us = 400_000;
    })
    .await;
    let one = json!({"instances": [sample_input("breast_cancer")]});
    let started = Instant::now();
    let response = app.post_json("/predict", &one).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(150) && waited < Duration::from_millis(390), "{waited:?}");
    assert_eq!(response.headers()["retry-after"], "1");
    assert_error(response, 503, "timeout").await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = scrape(&app).await;
    let batches = metric(&samples, "inferd_inference_duration_seconds_count", &[("model", "breast_cancer")]);
    assert_eq!(batches.unwrap_or(0.0), 0.0, "the abandoned request was dropped from the queue");
    assert_eq!(metric(&samples, "inferd_rejected_total", &[("reason", "timeout")]), Some(1.0));
}

#[tokio::test]
async fn work_whose_client_hung_up_is_dropped_from_the_queue() {
    let app = spawn_app_with(|s| {
        s.server.request_timeout_ms = 0;
        s.batching.max_delay_us = 400_000;
    })
    .await;
    let one = json!({"instances": [sample_input("breast_cancer")]});
    let impatient = app.client.post(format!("{}/predict", app.address)).json(&one).timeout(Duration::from_millis(100));
    assert!(impatient.send().await.unwrap_err().is_timeout());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = |samples: &[crate::monitoring::Sample]| {
        metric(samples, "inferd_inference_duration_seconds_count", &[("model", "breast_cancer")]).unwrap_or(0.0)
    };
    assert_eq!(count(&scrape(&app).await), 0.0, "nobody reads the answer: it is not computed");
    assert_eq!(app.post_json("/predict", &one).await.status(), 200);
    assert_eq!(count(&scrape(&app).await), 1.0);
}
