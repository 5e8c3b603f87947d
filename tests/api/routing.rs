//! Routing per model at runtime (DESIGN §8): the default version (rollback is setting it back), a canary with
//! its share of unpinned requests, and a shadow version whose answers are only compared and logged.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::helpers::{assert_error, repository_with, sample_input, spawn_app_with, TestApp};

/// A repository with breast_cancer versions 1 and 2 (the same files), both served.
async fn two_versions(adjust: impl FnOnce(&mut inferd::config::Settings)) -> (tempfile::TempDir, TestApp) {
    let repository = repository_with("breast_cancer");
    let source = repository.path().join("breast_cancer/1");
    let target = repository.path().join("breast_cancer/2");
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    let path = repository.path().to_path_buf();
    let app = spawn_app_with(move |s| {
        s.models.repository = path;
        s.models.versions = inferd::config::VersionPolicy::All;
        adjust(s);
    })
    .await;
    (repository, app)
}

async fn put_routing(app: &TestApp, model: &str, body: &str) -> reqwest::Response {
    app.client
        .put(format!("{}/admin/models/{model}/routing", app.address))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// How many of `n` unpinned requests each version answered.
async fn answered_by(app: &TestApp, n: usize) -> BTreeMap<String, usize> {
    let body = json!({"instances": [sample_input("breast_cancer")]});
    let mut counts = BTreeMap::new();
    for chunk in 0..n.div_ceil(20) {
        let requests = (0..20.min(n - chunk * 20)).map(|_| app.post_json("/predict", &body));
        for response in futures_util::future::join_all(requests).await {
            assert_eq!(response.status(), 200);
            let answer: Value = response.json().await.unwrap();
            *counts.entry(answer["version"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn the_default_version_is_set_and_rolled_back() {
    let (_repository, app) = two_versions(|_| {}).await;
    assert_eq!(answered_by(&app, 5).await, BTreeMap::from([("2".to_string(), 5)]), "the highest by default");
    let response = put_routing(&app, "breast_cancer", r#"{"default": 1}"#).await;
    assert_eq!(response.status(), 200);
    let routing: Value = response.json().await.unwrap();
    assert_eq!(routing["default"], 1);
    assert_eq!(routing["serving_default"], 1);
    assert_eq!(answered_by(&app, 5).await, BTreeMap::from([("1".to_string(), 5)]));
    let described: Value = app.get("/models/breast_cancer").await.json().await.unwrap();
    assert_eq!(described["default_version"], 1);
    // Pinned requests bypass routing.
    let body = json!({"instances": [sample_input("breast_cancer")]});
    let pinned: Value = app.post_json("/models/breast_cancer/versions/2/predict", &body).await.json().await.unwrap();
    assert_eq!(pinned["version"], "2");
    assert_eq!(put_routing(&app, "breast_cancer", r#"{"default": null}"#).await.status(), 200);
    assert_eq!(answered_by(&app, 5).await, BTreeMap::from([("2".to_string(), 5)]));
    let audit: Value = app.get("/admin/audit").await.json().await.unwrap();
    let changes: Vec<&Value> =
        audit["events"].as_array().unwrap().iter().filter(|e| e["action"] == "routing").collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["detail"]["after"]["default"], 1);
    assert_eq!(changes[1]["detail"]["before"]["default"], 1);
}

#[tokio::test]
async fn a_canary_takes_its_weight_of_unpinned_requests() {
    let (_repository, app) = two_versions(|_| {}).await;
    let response =
        put_routing(&app, "breast_cancer", r#"{"default": 1, "canary": {"version": 2, "weight": 0.3}}"#).await;
    assert_eq!(response.status(), 200);
    let counts = answered_by(&app, 2000).await;
    let share = counts.get("2").copied().unwrap_or(0) as f64 / 2000.0;
    eprintln!("canary share over 2,000 requests: {share:.3} (weight 0.3): {counts:?}");
    assert!((0.25..=0.35).contains(&share), "canary share {share} for weight 0.3: {counts:?}");
    // Absent keys stay as they are: clearing the canary keeps the default.
    assert_eq!(put_routing(&app, "breast_cancer", r#"{"canary": null}"#).await.status(), 200);
    let routing: Value = app.get("/admin/models/breast_cancer/routing").await.json().await.unwrap();
    assert_eq!(routing["default"], 1);
    assert_eq!(routing["canary"], Value::Null);
    assert_eq!(answered_by(&app, 20).await, BTreeMap::from([("1".to_string(), 20)]));
}

#[tokio::test]
async fn a_shadow_runs_off_the_request_path_and_its_agreement_is_counted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("predictions.jsonl");
    let log_path = log.clone();
    let (_repository, mut app) = two_versions(move |s| s.monitoring.prediction_log.path = Some(log_path)).await;
    assert_eq!(put_routing(&app, "breast_cancer", r#"{"default": 1, "shadow": 2}"#).await.status(), 200);
    let counts = answered_by(&app, 40).await;
    assert_eq!(counts, BTreeMap::from([("1".to_string(), 40)]), "a shadow never answers");
    let mut agreed = 0.0;
    for _ in 0..50 {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let line = metrics.lines().find(|l| {
            l.starts_with(r#"inferd_shadow_predictions_total{model="breast_cancer",outcome="agree",version="2"}"#)
        });
        agreed = line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        if agreed >= 40.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(agreed, 40.0, "the same files agree on every prediction");
    app.stop().await.unwrap().unwrap();
    let lines: Vec<Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let shadowed: Vec<&Value> = lines.iter().filter(|l| l["shadow"] == true).collect();
    assert_eq!(lines.len(), 80, "each prediction, and its shadow's");
    assert_eq!(shadowed.len(), 40);
    assert!(shadowed.iter().all(|l| l["version"] == "2"));
}

#[tokio::test]
async fn invalid_routing_is_404_or_422_and_changes_nothing() {
    let (_repository, app) = two_versions(|_| {}).await;
    assert_error(put_routing(&app, "nope", r#"{"default": 1}"#).await, 404, "unknown_model").await;
    for (body, field) in [
        (r#"{"default": 7}"#, "default"),
        (r#"{"shadow": 0}"#, "shadow"),
        (r#"{"canary": {"version": 2, "weight": 1.5}}"#, "canary.weight"),
        (r#"{"canary": {"version": 9, "weight": 0.5}}"#, "canary.version"),
        (r#"{"canary": 2}"#, "canary"),
        (r#"{"default": "1"}"#, "default"),
    ] {
        let error = assert_error(put_routing(&app, "breast_cancer", body).await, 422, "invalid_routing").await;
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    assert_error(put_routing(&app, "breast_cancer", r#"{"weights": 1}"#).await, 422, "unknown_key").await;
    assert_error(put_routing(&app, "breast_cancer", "[1]").await, 422, "wrong_shape").await;
    assert_error(put_routing(&app, "breast_cancer", "{").await, 400, "malformed_json").await;
    let routing: Value = app.get("/admin/models/breast_cancer/routing").await.json().await.unwrap();
    assert_eq!(routing["default"], Value::Null);
    assert_eq!(routing["loaded_versions"], json!([1, 2]));
    assert_error(app.get("/admin/models/nope/routing").await, 404, "unknown_model").await;
}

#[tokio::test]
async fn routing_is_read_from_the_configuration() {
    let routing = inferd::config::Routing { default: Some(1), ..Default::default() };
    let (_repository, app) = two_versions(move |s| {
        s.models.routing.insert("breast_cancer".into(), routing);
    })
    .await;
    assert_eq!(answered_by(&app, 5).await, BTreeMap::from([("1".to_string(), 5)]));

    let repository = repository_with("breast_cancer");
    let mut settings = inferd::config::Settings::default();
    settings.server.port = 0;
    settings.models.repository = Path::new(repository.path()).to_path_buf();
    settings
        .models
        .routing
        .insert("breast_cancer".into(), inferd::config::Routing { shadow: Some(3), ..Default::default() });
    let error =
        inferd::app::Application::build(settings).await.err().expect("a routing to an unloaded version is refused");
    assert!(error.to_string().contains("models.routing.breast_cancer.shadow"), "{error}");
}
