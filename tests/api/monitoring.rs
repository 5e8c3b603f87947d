//! Monitoring through the real server: drift gauges equal an offline numpy/scipy computation on the same
//! requests, a half-sigma shift raises exactly the shifted feature, live accuracy equals scikit-learn's on
//! the same (prediction, truth) pairs. Expectations come from `tools/make_monitor_fixtures.py`
//! (`tests/data/monitor_cases.json`), never from inferd.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::helpers::{assert_error, read_json, spawn_app, spawn_app_with, TestApp};

fn cases() -> Value {
    read_json(Path::new("tests/data/monitor_cases.json"))
}

/// One sample of the exposition: metric name and labels.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format (enough of it for our own exposition: quoted, escaped label values).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let (name, mut rest) = series.split_once('{').map_or((series, ""), |(n, r)| (n, r));
        let mut labels = BTreeMap::new();
        while let Some((key, after)) = rest.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next().map(|(_, c)| if c == 'n' { '\n' } else { c }).unwrap_or('\\')),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            labels.insert(key.trim_start_matches(',').to_string(), value);
            rest = &after[end..];
        }
        samples.push(Sample { name: name.to_string(), labels, value: value.parse().expect("a number") });
    }
    samples
}

/// The value of the one sample named `name` whose labels include `labels`.
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?} matches {} series", matching.len());
    matching.first().map(|s| s.value)
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    parse_metrics(&response.text().await.unwrap())
}

/// Sends instances in requests of 100, with ids when given.
async fn predict_all(app: &TestApp, model: &str, instances: &[Value], ids: Option<&[Value]>) -> Vec<Value> {
    let mut predictions = Vec::new();
    for (i, chunk) in instances.chunks(100).enumerate() {
        let mut body = json!({"instances": chunk});
        if let Some(ids) = ids {
            body["ids"] = json!(ids[i * 100..i * 100 + chunk.len()]);
        }
        let response = app.post_json(&format!("/models/{model}/predict"), &body).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        predictions.extend(answer["predictions"].as_array().unwrap().iter().cloned());
    }
    predictions
}

fn close(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance
}

#[tokio::test]
async fn drift_gauges_equal_numpy_and_scipy_on_the_same_requests() {
    let app = spawn_app().await;
    let case = &cases()["drift_window"];
    let instances = case["instances"].as_array().unwrap();
    let predictions = predict_all(&app, "wine", instances, None).await;
    let labels: Vec<&Value> = predictions.iter().map(|p| &p["label"]).collect();
    assert_eq!(labels, case["predicted"].as_array().unwrap().iter().collect::<Vec<_>>());

    let samples = scrape(&app).await;
    let version = [("model", "wine"), ("version", "1")];
    for (feature, expected) in case["expected"].as_object().unwrap() {
        let labels = [version[0], version[1], ("feature", feature.as_str())];
        let psi = metric(&samples, "inferd_feature_drift_psi", &labels).unwrap();
        let js = metric(&samples, "inferd_feature_drift_js", &labels).unwrap();
        assert!(close(psi, expected["psi"].as_f64().unwrap(), 1e-6), "{feature}: psi {psi} vs {}", expected["psi"]);
        assert!(close(js, expected["js"].as_f64().unwrap(), 1e-6), "{feature}: js {js} vs {}", expected["js"]);
        // The window holds 300 of 1000 observations: reported, but no level yet.
        assert_eq!(metric(&samples, "inferd_drift_window_observations", &labels), Some(300.0));
        assert_eq!(metric(&samples, "inferd_drift_level", &labels), Some(0.0));
        // Bin counters add up to the window's shares (nothing left it yet).
        let counted: Vec<f64> = samples
            .iter()
            .filter(|s| {
                s.name == "inferd_feature_bin_total" && s.labels["model"] == "wine" && s.labels["feature"] == *feature
            })
            .map(|s| s.value)
            .collect();
        assert_eq!(counted.iter().sum::<f64>(), 300.0, "{feature}");
    }
    let expected = &case["prediction"];
    let psi = metric(&samples, "inferd_prediction_drift_psi", &version).unwrap();
    let js = metric(&samples, "inferd_prediction_drift_js", &version).unwrap();
    assert!(close(psi, expected["psi"].as_f64().unwrap(), 1e-6), "prediction psi {psi} vs {}", expected["psi"]);
    assert!(close(js, expected["js"].as_f64().unwrap(), 1e-6), "prediction js {js} vs {}", expected["js"]);
    // Category bins are labelled by the category itself, then __other__ (unseen) and __missing__.
    let reference = read_json(Path::new("models/wine/1/reference.json"));
    let categories = reference["features"]["hue_band"]["categories"].as_array().unwrap();
    let bins = categories.iter().map(|c| c.as_str().unwrap()).chain(["__other__", "__missing__"]);
    let shares = case["expected"]["hue_band"]["shares"].as_array().unwrap();
    for (bin, share) in bins.zip(shares) {
        let labels = [version[0], version[1], ("feature", "hue_band"), ("bin", bin)];
        let count = metric(&samples, "inferd_feature_bin_total", &labels);
        assert_eq!(count, Some((share.as_f64().unwrap() * 300.0).round()), "hue_band bin {bin}");
    }
}

#[tokio::test]
async fn a_half_sigma_shift_raises_that_feature_and_no_other() {
    let app = spawn_app().await;
    let case = &cases()["shift"];
    let shifted = case["shifted_feature"].as_str().unwrap();
    predict_all(&app, "breast_cancer", case["instances"].as_array().unwrap(), None).await;
    let samples = scrape(&app).await;
    let mut raised = Vec::new();
    for (feature, expected) in case["expected"].as_object().unwrap() {
        let labels = [("model", "breast_cancer"), ("version", "1"), ("feature", feature.as_str())];
        let level = metric(&samples, "inferd_drift_level", &labels).unwrap();
        let psi = metric(&samples, "inferd_feature_drift_psi", &labels).unwrap();
        assert!(close(psi, expected["psi"].as_f64().unwrap(), 1e-6), "{feature}: psi {psi} vs {}", expected["psi"]);
        assert_eq!(level, expected["level"].as_f64().unwrap(), "{feature}");
        if level >= 1.0 {
            raised.push(feature.clone());
        }
    }
    assert_eq!(raised, [shifted], "only the shifted feature reaches warning or more");
}

#[tokio::test]
async fn every_bin_series_exists_from_load_with_its_reference_ratio() {
    let app = spawn_app().await;
    let samples = scrape(&app).await;
    let reference = read_json(Path::new("models/wine/1/reference.json"));
    let alcohol = &reference["features"]["alcohol"];
    let edges = alcohol["edges"].as_array().unwrap().len();
    for bin in 0..=edges {
        let labels = [("model", "wine"), ("version", "1"), ("feature", "alcohol"), ("bin", &bin.to_string()[..])];
        assert_eq!(metric(&samples, "inferd_feature_bin_total", &labels), Some(0.0), "bin {bin}");
        let ratio = metric(&samples, "inferd_feature_reference_ratio", &labels).unwrap();
        assert_eq!(ratio, alcohol["ratios"][bin].as_f64().unwrap());
    }
    let missing = [("model", "wine"), ("version", "1"), ("feature", "alcohol"), ("bin", "__missing__")];
    assert_eq!(metric(&samples, "inferd_feature_reference_ratio", &missing), alcohol["missing"].as_f64());
    let prediction = [("model", "diabetes"), ("version", "1"), ("feature", "_prediction"), ("bin", "0")];
    assert_eq!(metric(&samples, "inferd_feature_bin_total", &prediction), Some(0.0));
    let warning = [("model", "wine"), ("version", "1"), ("severity", "warning")];
    assert_eq!(metric(&samples, "inferd_drift_threshold", &warning), Some(0.1));
    let baseline = [("model", "diabetes"), ("version", "1"), ("metric", "mae")];
    assert!(metric(&samples, "inferd_model_baseline", &baseline).is_some_and(|mae| mae > 40.0 && mae < 50.0));
    // No feedback yet: no live-quality series.
    assert!(samples.iter().all(|s| s.name != "inferd_live_accuracy"));
}

#[tokio::test]
async fn live_accuracy_and_f1_equal_scikit_learn_on_the_same_pairs() {
    let app = spawn_app().await;
    let case = &cases()["feedback_classification"];
    let ids = case["ids"].as_array().unwrap();
    let predictions = predict_all(&app, "breast_cancer", case["instances"].as_array().unwrap(), Some(ids)).await;
    assert_eq!(
        predictions.iter().map(|p| p["label"].clone()).collect::<Vec<_>>(),
        *case["predicted"].as_array().unwrap()
    );

    let items: Vec<Value> = ids
        .iter()
        .zip(case["truth"].as_array().unwrap())
        .map(|(id, truth)| json!({"id": id, "label": truth}))
        .collect();
    let mut body = json!({"items": items});
    body["items"].as_array_mut().unwrap().push(json!({"id": "never-predicted", "label": "benign"}));
    let response = app.post_json("/feedback", &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer, json!({"matched": ids.len(), "unknown_ids": ["never-predicted"], "invalid": []}));

    let samples = scrape(&app).await;
    let version = [("model", "breast_cancer"), ("version", "1")];
    let accuracy = metric(&samples, "inferd_live_accuracy", &version).unwrap();
    let f1 = metric(&samples, "inferd_live_f1", &version).unwrap();
    assert!(close(accuracy, case["accuracy"].as_f64().unwrap(), 1e-12), "{accuracy} vs {}", case["accuracy"]);
    assert!(close(f1, case["f1_macro"].as_f64().unwrap(), 1e-12), "{f1} vs {}", case["f1_macro"]);
    assert_eq!(metric(&samples, "inferd_live_pairs", &version), Some(ids.len() as f64));
    let matched = [version[0], version[1], ("outcome", "matched")];
    assert_eq!(metric(&samples, "inferd_feedback_total", &matched), Some(ids.len() as f64));
    let unknown = [("model", ""), ("version", ""), ("outcome", "unknown_id")];
    assert_eq!(metric(&samples, "inferd_feedback_total", &unknown), Some(1.0));

    // A matched id is used up.
    let again = app.post_json("/feedback", &json!({"items": [{"id": ids[0], "label": "benign"}]})).await;
    assert_eq!(again.json::<Value>().await.unwrap()["unknown_ids"], json!([ids[0]]));
}

#[tokio::test]
async fn live_mae_equals_scikit_learn_on_the_same_pairs() {
    let app = spawn_app().await;
    let case = &cases()["feedback_regression"];
    let ids = case["ids"].as_array().unwrap();
    predict_all(&app, "diabetes", case["instances"].as_array().unwrap(), Some(ids)).await;
    let items: Vec<Value> = ids
        .iter()
        .zip(case["truth"].as_array().unwrap())
        .map(|(id, truth)| json!({"id": id, "value": truth}))
        .collect();
    let answer: Value = app.post_json("/feedback", &json!({"items": items})).await.json().await.unwrap();
    assert_eq!(answer["matched"], ids.len());
    let samples = scrape(&app).await;
    let mae = metric(&samples, "inferd_live_mae", &[("model", "diabetes"), ("version", "1")]).unwrap();
    let want = case["mae"].as_f64().unwrap();
    // onnxruntime and tract agree to float32 rounding; MAE is an average of such values.
    assert!(close(mae, want, 1e-4 * want), "{mae} vs {want}");
}

#[tokio::test]
async fn feedback_that_does_not_fit_its_model_is_reported_and_the_prediction_kept() {
    let app = spawn_app().await;
    let input = crate::helpers::sample_input("breast_cancer");
    let body = json!({"instances": [input], "ids": ["order-1"]});
    assert_eq!(app.post_json("/predict", &body).await.status(), 200);
    let answer: Value = app
        .post_json("/feedback", &json!({"items": [{"id": "order-1", "label": "benin"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["matched"], 0);
    assert_eq!(answer["invalid"][0]["id"], "order-1");
    assert!(answer["invalid"][0]["reason"].as_str().unwrap().contains("benin"), "{answer}");
    let answer: Value =
        app.post_json("/feedback", &json!({"items": [{"id": "order-1", "value": 3.0}]})).await.json().await.unwrap();
    assert!(answer["invalid"][0]["reason"].as_str().unwrap().contains("label"), "{answer}");
    let answer: Value = app
        .post_json("/feedback", &json!({"items": [{"id": "order-1", "label": "benign"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["matched"], 1);
}

#[tokio::test]
async fn malformed_feedback_is_refused_whole_with_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!([]), 422, "wrong_shape", ""),
        (json!({"items": {}}), 422, "wrong_shape", "items"),
        (json!({}), 422, "wrong_shape", "items"),
        (json!({"items": []}), 422, "empty_items", "items"),
        (json!({"items": [], "extra": 1}), 422, "unknown_field", "extra"),
        (json!({"items": [7]}), 422, "wrong_shape", "items[0]"),
        (json!({"items": [{"label": "benign"}]}), 400, "missing_field", "items[0].id"),
        (json!({"items": [{"id": 5, "label": "benign"}]}), 400, "wrong_type", "items[0].id"),
        (json!({"items": [{"id": "a", "label": 1}]}), 400, "wrong_type", "items[0].label"),
        (json!({"items": [{"id": "a", "value": "1"}]}), 400, "wrong_type", "items[0].value"),
        (json!({"items": [{"id": "a"}]}), 422, "wrong_shape", "items[0]"),
        (json!({"items": [{"id": "a", "label": "x", "value": 1}]}), 422, "wrong_shape", "items[0]"),
        (json!({"items": [{"id": "a", "label": "x", "when": 1}]}), 422, "unknown_field", "items[0].when"),
    ];
    for (body, status, code, field) in cases {
        let error = assert_error(app.post_json("/feedback", &body).await, status, code).await;
        if !field.is_empty() {
            assert_eq!(error["error"]["field"], field, "{body}");
        }
    }
    let too_many = json!({"items": vec![json!({"id": "a", "label": "benign"}); 4097]});
    assert_error(app.post_json("/feedback", &too_many).await, 413, "too_many_items").await;
    assert_error(app.post_raw("/feedback", Some("text/plain"), "{}").await, 415, "unsupported_media_type").await;
    assert_error(app.post_raw("/feedback", Some("application/json"), "{\"items\": [").await, 400, "malformed_json")
        .await;
}

#[tokio::test]
async fn the_oldest_remembered_prediction_is_evicted_and_counted() {
    let app = spawn_app_with(|s| s.monitoring.feedback_capacity = 2).await;
    let input = crate::helpers::sample_input("breast_cancer");
    let body = json!({"instances": [input.clone(), input.clone(), input], "ids": ["a", "b", "c"]});
    assert_eq!(app.post_json("/predict", &body).await.status(), 200);
    let items = json!({"items": [{"id": "a", "label": "benign"}, {"id": "c", "label": "benign"}]});
    let answer: Value = app.post_json("/feedback", &items).await.json().await.unwrap();
    assert_eq!(answer["matched"], 1);
    assert_eq!(answer["unknown_ids"], json!(["a"]));
    assert_eq!(metric(&scrape(&app).await, "inferd_feedback_evictions_total", &[]), Some(1.0));
}

#[tokio::test]
async fn monitoring_off_records_nothing() {
    let app = spawn_app_with(|s| s.monitoring.enabled = false).await;
    let input = crate::helpers::sample_input("breast_cancer");
    assert_eq!(app.post_json("/predict", &json!({"instances": [input]})).await.status(), 200);
    let samples = scrape(&app).await;
    for name in ["inferd_requests_total", "inferd_predictions_total", "inferd_feature_drift_psi"] {
        assert!(samples.iter().all(|s| s.name != name), "{name} recorded with monitoring off");
    }
    let body = json!({"items": [{"id": "a", "label": "benign"}]});
    assert_error(app.post_json("/feedback", &body).await, 409, "feedback_disabled").await;
}
