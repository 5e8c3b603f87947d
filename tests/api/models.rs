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

/// A repository holding breast_cancer versions 1 and 2 (the same files twice).
fn two_versions() -> tempfile::TempDir {
    let repository = crate::helpers::repository_with("breast_cancer");
    let (one, two) = (repository.path().join("breast_cancer/1"), repository.path().join("breast_cancer/2"));
    std::fs::create_dir_all(&two).unwrap();
    for entry in std::fs::read_dir(&one).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), two.join(entry.file_name())).unwrap();
    }
    // Not versions: a staging directory, a zero-padded name, a file.
    std::fs::create_dir_all(repository.path().join("breast_cancer/.staging-3")).unwrap();
    std::fs::create_dir_all(repository.path().join("breast_cancer/03")).unwrap();
    std::fs::write(repository.path().join("breast_cancer/README"), "notes").unwrap();
    repository
}

#[tokio::test]
async fn several_versions_are_served_at_once() {
    use inferd::config::VersionPolicy;
    use serde_json::json;

    let repository = two_versions();
    let app = crate::helpers::spawn_app_with(|s| {
        s.models.repository = repository.path().to_path_buf();
        s.models.versions = VersionPolicy::All;
    })
    .await;
    let entry: Value = app.get("/models/breast_cancer").await.json().await.unwrap();
    assert_eq!(entry["default_version"], 2);
    assert_eq!(entry["versions"].as_array().unwrap().len(), 2);
    let body = json!({"instances": [crate::helpers::sample_input("breast_cancer")]});
    for (path, version) in [
        ("/predict", "2"),
        ("/models/breast_cancer/predict", "2"),
        ("/models/breast_cancer/versions/1/predict", "1"),
        ("/models/breast_cancer/versions/2/predict", "2"),
    ] {
        let answer: Value = app.post_json(path, &body).await.json().await.unwrap();
        assert_eq!(answer["version"], version, "{path}");
    }
}

#[tokio::test]
async fn the_version_policy_picks_what_loads() {
    use inferd::config::VersionPolicy;

    let repository = two_versions();
    for (policy, expected) in [(VersionPolicy::Latest, vec![2]), (VersionPolicy::List(vec![1]), vec![1])] {
        let app = crate::helpers::spawn_app_with(|s| {
            s.models.repository = repository.path().to_path_buf();
            s.models.versions = policy;
        })
        .await;
        let entry: Value = app.get("/models/breast_cancer").await.json().await.unwrap();
        let versions: Vec<u64> =
            entry["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
        assert_eq!(versions, expected);
    }
}

#[tokio::test]
async fn without_a_default_model_predict_names_the_way_out() {
    let app = crate::helpers::spawn_app_with(|s| s.models.default = None).await;
    let body = serde_json::json!({"instances": [crate::helpers::sample_input("breast_cancer")]});
    let error = crate::helpers::assert_error(app.post_json("/predict", &body).await, 404, "unknown_model").await;
    assert!(error["error"]["message"].as_str().unwrap().contains("/models/{name}/predict"));
}
