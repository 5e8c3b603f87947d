//! The low-confidence policy: below the manifest's `min_confidence` a classification is flagged, refused
//! (422) or answered with the manifest's `fallback_label`, and counted in every case.

use serde_json::{json, Value};

use crate::helpers::{assert_error, fixtures, repository_with, spawn_app_with, TestApp};
use crate::monitoring::{metric, parse_metrics};
use inferd::config::LowConfidencePolicy;

/// breast_cancer with `min_confidence = 0.95` and a fallback label, under `policy`.
async fn app_with(policy: LowConfidencePolicy) -> (TestApp, tempfile::TempDir) {
    let repository = repository_with("breast_cancer");
    let manifest = repository.path().join("breast_cancer/1/inferd.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace("min_confidence = 0.0", "min_confidence = 0.95\nfallback_label = \"review\"");
    std::fs::write(&manifest, text).unwrap();
    let root = repository.path().to_path_buf();
    let app = spawn_app_with(move |s| {
        s.models.repository = root;
        s.monitoring.low_confidence = policy;
    })
    .await;
    (app, repository)
}

/// A confident case (fixture 0, p ≈ 0.99998) and an unsure one (fixture 6, p ≈ 0.79), by onnxruntime.
fn confident_and_unsure() -> (Value, Value) {
    let cases = fixtures("breast_cancer")["cases"].clone();
    assert!(cases[0]["output"]["probabilities"].as_object().unwrap().values().any(|p| p.as_f64().unwrap() > 0.99));
    assert!(cases[6]["output"]["probabilities"].as_object().unwrap().values().all(|p| p.as_f64().unwrap() < 0.95));
    (cases[0].clone(), cases[6].clone())
}

async fn low_confidence_total(app: &TestApp) -> Option<f64> {
    let samples = parse_metrics(&app.get("/metrics").await.text().await.unwrap());
    metric(&samples, "inferd_low_confidence_total", &[("model", "breast_cancer"), ("version", "1")])
}

#[tokio::test]
async fn flag_keeps_the_answer_and_marks_it() {
    let (app, _repository) = app_with(LowConfidencePolicy::Flag).await;
    let (sure, unsure) = confident_and_unsure();
    let body = json!({"instances": [sure["input"], unsure["input"]]});
    let answer: Value = app.post_json("/predict", &body).await.json().await.unwrap();
    let predictions = answer["predictions"].as_array().unwrap();
    assert!(predictions[0].get("low_confidence").is_none());
    assert_eq!(predictions[1]["low_confidence"], true);
    assert_eq!(predictions[1]["label"], unsure["output"]["label"]);
    assert!(predictions[1].get("fallback").is_none());
    assert_eq!(low_confidence_total(&app).await, Some(1.0));
}

#[tokio::test]
async fn reject_refuses_the_request_with_the_reason() {
    let (app, _repository) = app_with(LowConfidencePolicy::Reject).await;
    let (sure, unsure) = confident_and_unsure();
    let body = json!({"instances": [sure["input"], unsure["input"]], "ids": ["sure", "unsure"]});
    let error = assert_error(app.post_json("/predict", &body).await, 422, "low_confidence").await;
    assert_eq!(error["error"]["field"], "instances[1]");
    assert!(error["error"]["message"].as_str().unwrap().contains("0.95"), "{error}");
    assert_eq!(low_confidence_total(&app).await, Some(1.0));
    // Nothing was answered, so nothing is remembered for feedback.
    let feedback = json!({"items": [{"id": "sure", "label": "benign"}]});
    let answer: Value = app.post_json("/feedback", &feedback).await.json().await.unwrap();
    assert_eq!(answer["unknown_ids"], json!(["sure"]));
    // Confident requests are answered as usual.
    assert_eq!(app.post_json("/predict", &json!({"instances": [sure["input"]]})).await.status(), 200);
}

#[tokio::test]
async fn fallback_answers_the_fallback_label() {
    let (app, _repository) = app_with(LowConfidencePolicy::Fallback).await;
    let (sure, unsure) = confident_and_unsure();
    let body = json!({"instances": [sure["input"], unsure["input"]]});
    let answer: Value = app.post_json("/predict", &body).await.json().await.unwrap();
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions[0]["label"], sure["output"]["label"]);
    assert_eq!(predictions[1]["label"], "review");
    assert_eq!(predictions[1]["low_confidence"], true);
    assert_eq!(predictions[1]["fallback"], true);
    // The probabilities are the model's, untouched.
    for (label, p) in unsure["output"]["probabilities"].as_object().unwrap() {
        assert!((predictions[1]["probabilities"][label].as_f64().unwrap() - p.as_f64().unwrap()).abs() < 1e-5);
    }
    assert_eq!(low_confidence_total(&app).await, Some(1.0));
    let samples = parse_metrics(&app.get("/metrics").await.text().await.unwrap());
    let review = [("model", "breast_cancer"), ("version", "1"), ("label", "review")];
    assert_eq!(metric(&samples, "inferd_predictions_total", &review), Some(1.0));
}

#[tokio::test]
async fn fallback_without_a_fallback_label_refuses_to_start() {
    let repository = repository_with("breast_cancer");
    let manifest = repository.path().join("breast_cancer/1/inferd.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace("min_confidence = 0.0", "min_confidence = 0.9");
    std::fs::write(&manifest, text).unwrap();
    let mut settings = inferd::config::Settings::default();
    settings.server.port = 0;
    settings.models.repository = repository.path().to_path_buf();
    settings.monitoring.low_confidence = LowConfidencePolicy::Fallback;
    let error = inferd::app::Application::build(settings).await.err().expect("refused").to_string();
    assert!(error.contains("inferd.toml") && error.contains("fallback_label"), "{error}");
}
