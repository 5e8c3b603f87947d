use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn models_are_listed_with_their_versions() {
    let app = spawn_app().await;
    let body: Value = app.get("/models").await.json().await.unwrap();
    assert_eq!(body["default"], "breast_cancer");
    let models = body["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    let wine = models.iter().find(|m| m["name"] == "wine").unwrap();
    assert_eq!(wine["task"], "classification");
    assert_eq!(wine["default_version"], 1);
    assert_eq!(wine["versions"][0]["state"], "ready");
}

#[tokio::test]
async fn a_model_describes_its_features_outputs_and_card() {
    let app = spawn_app().await;
    let wine: Value = app.get("/models/wine").await.json().await.unwrap();
    let features = wine["features"].as_array().unwrap();
    let hue = features.iter().find(|f| f["name"] == "hue_band").unwrap();
    assert_eq!(hue["type"], "category");
    assert_eq!(hue["required"], false);
    assert!(hue["categories"].as_array().unwrap().len() >= 3);
    assert_eq!(wine["outputs"]["labels"].as_array().unwrap().len(), 3);
    assert!(wine["card"]["baseline"]["accuracy"].is_number());
    assert!(wine["description"].as_str().unwrap().len() > 5);
    assert_eq!(wine["monitoring"]["drift_reference"], true);

    let diabetes: Value = app.get("/models/diabetes").await.json().await.unwrap();
    assert_eq!(diabetes["task"], "regression");
    assert_eq!(diabetes["outputs"]["value"], "number");
}
