//! Every model family of the test matrix (`tests/data/matrix`, made by `tools/make_matrix.py` from pipelines
//! on bundled datasets), served over HTTP, answers what onnxruntime computed for at least 200 rows each.

use serde_json::{json, Value};

use crate::helpers::{assert_matches_fixture, read_json, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_serves_its_fixtures() {
    let root = std::path::Path::new("tests/data/matrix");
    let app = spawn_app_with(|s| {
        s.models.repository = root.to_path_buf();
        s.models.default = None;
    })
    .await;
    let listed: Value = app.get("/models").await.json().await.unwrap();
    let names: Vec<String> =
        listed["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect();
    assert!(names.len() >= 30, "only {} families served", names.len());
    for name in &names {
        let fixtures = read_json(&root.join(name).join("1/fixtures.json"));
        let cases = fixtures["cases"].as_array().unwrap();
        assert!(cases.len() >= 200, "{name}: {} fixture rows", cases.len());
        let tolerance = fixtures["tolerance"].as_f64().unwrap();
        let instances: Vec<Value> = cases.iter().map(|c| c["input"].clone()).collect();
        let response = app.post_json(&format!("/models/{name}/predict"), &json!({"instances": instances})).await;
        assert_eq!(response.status(), 200, "{name}");
        let body: Value = response.json().await.unwrap();
        for (prediction, case) in body["predictions"].as_array().unwrap().iter().zip(cases) {
            assert_matches_fixture(prediction, &case["output"], tolerance);
        }
    }
}
