use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{sample_input, spawn_app, spawn_app_with};

#[tokio::test]
async fn liveness_readiness_and_summary() {
    let app = spawn_app().await;
    let live = app.get("/health/live").await;
    assert_eq!(live.status(), 200);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
    let summary: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(summary["status"], "ok");
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"));
    assert!(summary["uptime_s"].as_f64().unwrap() >= 0.0);
    let names: Vec<&str> = summary["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["breast_cancer", "diabetes", "wine"]);
    assert_eq!(summary["models"][0]["versions"][0], json!({"version": 1, "state": "ready"}));
}

/// Inference runs on its own threads: with one worker buried under large batches, liveness and metrics
/// still answer at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_batch_never_stalls_liveness_or_metrics() {
    let app = spawn_app_with(|s| s.batching.workers = 1).await;
    let instances = vec![sample_input("wine"); 4096];
    let body = json!({"instances": instances});
    let mut load = Vec::new();
    for _ in 0..6 {
        let (client, url, body) = (app.client.clone(), format!("{}/models/wine/predict", app.address), body.clone());
        load.push(tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap().status() }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut slowest = Duration::ZERO;
    for path in ["/health/live", "/metrics", "/health/ready", "/health/live"] {
        let started = Instant::now();
        assert_eq!(app.get(path).await.status(), 200);
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_millis(500), "health took {slowest:?} under load");
    for task in load {
        let status = task.await.unwrap();
        assert!(status == 200 || status == 503, "{status}");
    }
}
