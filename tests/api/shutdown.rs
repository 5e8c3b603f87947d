use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{sample_input, spawn_app_with};

/// At shutdown, readiness turns 503 at once while requests are still served during `shutdown_delay_s`.
#[tokio::test]
async fn readiness_turns_off_first_and_requests_are_served_during_the_delay() {
    let mut app = spawn_app_with(|s| s.server.shutdown_delay_s = 0.5).await;
    let stopped = app.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(app.get("/health/ready").await.status(), 503);
    assert_eq!(app.get("/health").await.json::<Value>().await.unwrap()["status"], "shutting_down");
    assert_eq!(app.get("/health/live").await.status(), 200);
    let response = app.post_json("/predict", &json!({"instances": [sample_input("breast_cancer")]})).await;
    assert_eq!(response.status(), 200);
    stopped.await.unwrap().unwrap();
}

/// Requests in flight when the listener closes complete with 200, then the server stops cleanly.
#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let mut app = spawn_app_with(|s| s.batching.workers = 1).await;
    let big = json!({"instances": vec![sample_input("wine"); 4096]});
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        let (client, url, big) = (app.client.clone(), format!("{}/models/wine/predict", app.address), big.clone());
        in_flight.push(tokio::spawn(async move {
            let response = client.post(url).json(&big).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stopped = app.stop();
    for request in in_flight {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["predictions"].as_array().unwrap().len(), 4096);
    }
    stopped.await.unwrap().unwrap();
}
