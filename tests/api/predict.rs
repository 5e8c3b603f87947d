use serde_json::{json, Value};

use crate::helpers::{assert_matches_fixture, fixtures, spawn_app};

/// Every fixture of every sample model, sent as one batch, answers what onnxruntime / scikit-learn computed.
#[tokio::test]
async fn sample_models_answer_their_fixtures_in_a_batch() {
    let app = spawn_app().await;
    for model in ["breast_cancer", "wine", "diabetes"] {
        let fixtures = fixtures(model);
        let cases = fixtures["cases"].as_array().unwrap();
        let instances: Vec<Value> = cases.iter().map(|c| c["input"].clone()).collect();
        let response = app.post_json(&format!("/models/{model}/predict"), &json!({"instances": instances})).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["model"], model);
        assert_eq!(body["version"], "1");
        let predictions = body["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), cases.len());
        for (prediction, case) in predictions.iter().zip(cases) {
            assert_matches_fixture(prediction, &case["output"], 1e-5);
        }
    }
}

#[tokio::test]
async fn single_records_answer_their_fixture_with_timing_headers() {
    let app = spawn_app().await;
    let case = &fixtures("breast_cancer")["cases"][3];
    let response = app.post_json("/predict", &json!({"instances": [case["input"]]})).await;
    assert_eq!(response.status(), 200);
    for header in ["x-inferd-queue-us", "x-inferd-inference-us", "x-inferd-total-us"] {
        let value = response.headers()[header].to_str().unwrap();
        assert!(value.parse::<u64>().is_ok(), "{header}: {value}");
    }
    let body: Value = response.json().await.unwrap();
    assert_matches_fixture(&body["predictions"][0], &case["output"], 1e-5);
}

#[tokio::test]
async fn regression_answers_a_value() {
    let app = spawn_app().await;
    let case = &fixtures("diabetes")["cases"][0];
    let body: Value =
        app.post_json("/models/diabetes/predict", &json!({"instances": [case["input"]]})).await.json().await.unwrap();
    let prediction = &body["predictions"][0];
    assert!(prediction.get("label").is_none() && prediction.get("probabilities").is_none());
    assert_matches_fixture(prediction, &case["output"], 1e-5);
}

#[tokio::test]
async fn positional_instances_follow_the_manifest_feature_order() {
    let app = spawn_app().await;
    let manifest = app.get("/models/wine").await.json::<Value>().await.unwrap();
    let names: Vec<String> =
        manifest["features"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect();
    let cases = fixtures("wine")["cases"].as_array().unwrap().clone();
    let rows: Vec<Value> = cases
        .iter()
        .map(|c| Value::Array(names.iter().map(|n| c["input"].get(n).cloned().unwrap_or(Value::Null)).collect()))
        .collect();
    let body: Value = app.post_json("/models/wine/predict", &json!({"instances": rows})).await.json().await.unwrap();
    for (prediction, case) in body["predictions"].as_array().unwrap().iter().zip(&cases) {
        assert_matches_fixture(prediction, &case["output"], 1e-5);
    }
}

#[tokio::test]
async fn missing_values_and_unseen_categories_are_imputed_and_ignored() {
    let app = spawn_app().await;
    // A wine fixture with missing values, then the same record with an unseen hue band: one_hot with
    // handle_unknown = "ignore" encodes it as all zeros, and the answer is still a valid distribution.
    let cases = fixtures("wine")["cases"].as_array().unwrap().clone();
    let with_missing = cases.iter().find(|c| c["input"].as_object().unwrap().values().any(Value::is_null)).unwrap();
    let mut unseen = with_missing["input"].clone();
    unseen["hue_band"] = json!("ultraviolet");
    let body: Value = app
        .post_json("/models/wine/predict", &json!({"instances": [with_missing["input"], unseen]}))
        .await
        .json()
        .await
        .unwrap();
    assert_matches_fixture(&body["predictions"][0], &with_missing["output"], 1e-5);
    let total: f64 =
        body["predictions"][1]["probabilities"].as_object().unwrap().values().map(|p| p.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-5);
}

#[tokio::test]
async fn ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let input = crate::helpers::sample_input("breast_cancer");
    let body: Value = app
        .post_json("/predict", &json!({"instances": [input, input], "ids": ["order-17", "order-18"]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["predictions"][0]["id"], "order-17");
    assert_eq!(body["predictions"][1]["id"], "order-18");
    let body: Value = app.post_json("/predict", &json!({"instances": [input, input]})).await.json().await.unwrap();
    let (a, b) = (body["predictions"][0]["id"].as_str().unwrap(), body["predictions"][1]["id"].as_str().unwrap());
    assert!(uuid::Uuid::parse_str(a).is_ok() && uuid::Uuid::parse_str(b).is_ok());
    assert_ne!(a, b);
}

#[tokio::test]
async fn a_pinned_version_answers_and_names_itself() {
    let app = spawn_app().await;
    let input = crate::helpers::sample_input("diabetes");
    let response = app.post_json("/models/diabetes/versions/1/predict", &json!({"instances": [input]})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["model"].as_str(), body["version"].as_str()), (Some("diabetes"), Some("1")));
}

#[tokio::test]
async fn concurrent_requests_all_answer_their_fixture() {
    let app = spawn_app().await;
    let cases = fixtures("breast_cancer")["cases"].as_array().unwrap().clone();
    let mut tasks = Vec::new();
    for case in cases.iter().cycle().take(200).cloned() {
        let (client, url) = (app.client.clone(), format!("{}/predict", app.address));
        tasks.push(tokio::spawn(async move {
            let body: Value = client
                .post(url)
                .json(&json!({"instances": [case["input"]]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_matches_fixture(&body["predictions"][0], &case["output"], 1e-5);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}
