//! Every bad-input case of DESIGN §5: the documented status, a JSON error with its code, and the field.

use serde_json::{json, Value};

use crate::helpers::{assert_error, repository_with, sample_input, spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let response = app.post_raw("/predict", Some("application/json"), "{\"instances\": [").await;
    assert_error(response, 400, "malformed_json").await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = spawn_app().await;
    let body = json!({"instances": [sample_input("breast_cancer")]}).to_string();
    let response = app.post_raw("/predict", Some("text/plain"), body.clone()).await;
    assert_error(response, 415, "unsupported_media_type").await;
    let response = app.post_raw("/predict", None, body.clone()).await;
    assert_error(response, 415, "unsupported_media_type").await;
    // Parameters and case do not matter.
    let response = app.post_raw("/predict", Some("Application/JSON; charset=utf-8"), body).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 2048).await;
    let input = sample_input("breast_cancer");
    let big = json!({"instances": vec![input; 10]}).to_string();
    assert!(big.len() > 2048);
    let response = app.post_raw("/predict", Some("application/json"), big.clone()).await;
    assert_error(response, 413, "body_too_large").await;
    // Without a declared length (chunked), the limit holds while reading.
    let stream = futures_stream(big.into_bytes());
    let response = app.post_raw("/predict", Some("application/json"), stream).await;
    assert_error(response, 413, "body_too_large").await;
}

fn futures_stream(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(512).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn nan_and_infinity_are_400_naming_the_field() {
    let app = spawn_app().await;
    for token in ["NaN", "Infinity", "-Infinity", "1e999"] {
        let mut body = json!({"instances": [sample_input("breast_cancer")]}).to_string();
        body = body.replacen("\"mean radius\":12.89", &format!("\"mean radius\":{token}"), 1);
        assert!(body.contains(token), "the fixture's first value changed: {body}");
        let response = app.post_raw("/predict", Some("application/json"), body).await;
        let error = assert_error(response, 400, "non_finite_number").await;
        assert_eq!(error["error"]["field"], "instances[0].mean radius", "{token}");
    }
}

#[tokio::test]
async fn wrong_types_are_400_naming_the_field() {
    let app = spawn_app().await;
    let mut input = sample_input("breast_cancer");
    input["mean texture"] = json!("19.1");
    let error = assert_error(app.post_json("/predict", &json!({"instances": [input]})).await, 400, "wrong_type").await;
    assert_eq!(error["error"]["field"], "instances[0].mean texture");
    assert!(error["error"]["message"].as_str().unwrap().contains("expected a number"));

    let mut input = sample_input("wine");
    input["hue_band"] = json!(2);
    let error =
        assert_error(app.post_json("/models/wine/predict", &json!({"instances": [input]})).await, 400, "wrong_type")
            .await;
    assert_eq!(error["error"]["field"], "instances[0].hue_band");

    let mut input = sample_input("breast_cancer");
    input["mean area"] = json!(true);
    assert_error(app.post_json("/predict", &json!({"instances": [input]})).await, 400, "wrong_type").await;
}

#[tokio::test]
async fn a_missing_feature_is_400_naming_it() {
    let app = spawn_app().await;
    let mut first = sample_input("breast_cancer");
    let mut input = first.clone();
    input.as_object_mut().unwrap().remove("worst area");
    let error = assert_error(
        app.post_json("/predict", &json!({"instances": [first.clone(), input]})).await,
        400,
        "missing_feature",
    )
    .await;
    assert_eq!(error["error"]["field"], "instances[1].worst area");
    // null is missing too, and breast_cancer imputes nothing.
    first["worst area"] = Value::Null;
    assert_error(app.post_json("/predict", &json!({"instances": [first]})).await, 400, "missing_feature").await;
}

#[tokio::test]
async fn an_unknown_feature_is_400_naming_it() {
    let app = spawn_app().await;
    let mut input = sample_input("breast_cancer");
    input["mean radiu"] = json!(1.0);
    let error =
        assert_error(app.post_json("/predict", &json!({"instances": [input]})).await, 400, "unknown_feature").await;
    assert_eq!(error["error"]["field"], "instances[0].mean radiu");
}

#[tokio::test]
async fn an_unknown_category_is_400_where_the_step_says_error() {
    let repository = repository_with("wine");
    let manifest = repository.path().join("wine/1/inferd.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("handle_unknown = \"ignore\""));
    std::fs::write(&manifest, text.replace("handle_unknown = \"ignore\"", "handle_unknown = \"error\"")).unwrap();
    let app = spawn_app_with(|s| {
        s.models.repository = repository.path().to_path_buf();
        s.models.default = None;
    })
    .await;
    let mut input = sample_input("wine");
    input["hue_band"] = json!("ultraviolet");
    let error =
        assert_error(app.post_json("/predict", &json!({"instances": [input]})).await, 400, "unknown_category").await;
    assert_eq!(error["error"]["field"], "instances[0].hue_band");
    assert!(error["error"]["message"].as_str().unwrap().contains("ultraviolet"));
}

#[tokio::test]
async fn empty_instances_are_422() {
    let app = spawn_app().await;
    let error = assert_error(app.post_json("/predict", &json!({"instances": []})).await, 422, "empty_instances").await;
    assert_eq!(error["error"]["field"], "instances");
}

#[tokio::test]
async fn too_many_instances_are_413() {
    let app = spawn_app_with(|s| s.server.max_instances = 3).await;
    let input = sample_input("breast_cancer");
    let response = app.post_json("/predict", &json!({"instances": vec![input.clone(); 4]})).await;
    assert_error(response, 413, "too_many_instances").await;
    assert_eq!(app.post_json("/predict", &json!({"instances": vec![input; 3]})).await.status(), 200);
}

#[tokio::test]
async fn unknown_models_and_versions_are_404() {
    let app = spawn_app().await;
    let body = json!({"instances": [sample_input("breast_cancer")]});
    assert_error(app.post_json("/models/nope/predict", &body).await, 404, "unknown_model").await;
    assert_error(app.post_json("/models/breast_cancer/versions/7/predict", &body).await, 404, "unknown_version").await;
    assert_error(app.post_json("/models/breast_cancer/versions/one/predict", &body).await, 404, "unknown_version")
        .await;
    assert_error(app.get("/models/nope").await, 404, "unknown_model").await;
    assert_error(app.get("/no/such/route").await, 404, "not_found").await;
    assert_error(app.get("/predict").await, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn valid_json_of_the_wrong_shape_is_422() {
    let app = spawn_app().await;
    let input = sample_input("breast_cancer");
    for (body, code, field) in [
        (json!([input]), "wrong_shape", ""),
        (json!({"inputs": [input]}), "unknown_field", "inputs"),
        (json!({}), "wrong_shape", "instances"),
        (json!({"instances": input}), "wrong_shape", "instances"),
        (json!({"instances": [1.5]}), "wrong_shape", "instances[0]"),
        (json!({"instances": [[1.0, 2.0]]}), "wrong_shape", "instances[0]"),
        (json!({"instances": [input], "ids": ["a", "b"]}), "wrong_shape", "ids"),
    ] {
        let error = assert_error(app.post_json("/predict", &body).await, 422, code).await;
        assert_eq!(error["error"]["field"].as_str().unwrap_or(""), field, "{body}");
    }
    // A key given twice is refused, not silently overwritten.
    let twice = format!("{{\"instances\": [{input}], \"instances\": [{input}]}}");
    let error = assert_error(app.post_raw("/predict", Some("application/json"), twice).await, 422, "wrong_shape").await;
    assert_eq!(error["error"]["field"], "instances");
}

#[tokio::test]
async fn a_value_outside_a_steps_domain_is_400() {
    // all_steps applies log1p to a feature: a value of -2 has no logarithm, and must not become a NaN row.
    let app = spawn_app_with(|s| {
        s.models.repository = "tests/data/models".into();
        s.models.default = None;
    })
    .await;
    let manifest = std::fs::read_to_string("tests/data/models/all_steps/1/inferd.toml").unwrap();
    let manifest: toml::Table = toml::from_str(&manifest).unwrap();
    let log_feature = manifest["preprocess"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["op"].as_str() == Some("log1p"))
        .map(|s| s["features"][0].as_str().unwrap().to_string())
        .unwrap();
    let fixtures = crate::helpers::read_json(std::path::Path::new("tests/data/models/all_steps/1/fixtures.json"));
    let mut input = fixtures["cases"][0]["input"].clone();
    input[&log_feature] = json!(-2.0);
    let error =
        assert_error(app.post_json("/predict", &json!({"instances": [input]})).await, 400, "invalid_value").await;
    assert_eq!(error["error"]["field"], format!("instances[0].{log_feature}"));
}

/// Whatever the body, the answer is never a 5xx and always JSON.
#[tokio::test]
async fn arbitrary_bodies_never_get_a_5xx() {
    let app = spawn_app().await;
    let input = json!({"instances": [sample_input("breast_cancer")]}).to_string();
    let mut bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        b"{\"instances\": [{\"mean radius\": 1e308}]}".to_vec(),
        b"{\"instances\": [[]], \"ids\": null}".to_vec(),
        "{\"instances\": [{\"\u{0}\": 1}]}".as_bytes().to_vec(),
        "[".repeat(10_000).into_bytes(),
    ];
    // Every prefix and a few byte flips of a valid body.
    let bytes = input.as_bytes();
    for cut in (0..bytes.len()).step_by(37) {
        bodies.push(bytes[..cut].to_vec());
        let mut flipped = bytes.to_vec();
        flipped[cut] ^= 0x20;
        bodies.push(flipped);
    }
    for body in bodies {
        let response = app.post_raw("/predict", Some("application/json"), body.clone()).await;
        let status = response.status().as_u16();
        assert!(status < 500, "{status} for {:?}", String::from_utf8_lossy(&body));
        if status != 200 {
            let error: Value = response.json().await.unwrap();
            assert!(error["error"]["code"].is_string());
        }
    }
}

#[tokio::test]
async fn values_beyond_the_models_float32_input_are_400_not_nan_answers() {
    // Found by schemathesis: 1e300 is valid JSON, but no float32 holds it; the model would answer NaN.
    let app = spawn_app().await;
    let mut input = sample_input("breast_cancer");
    input["mean area"] = json!(1e300);
    let error =
        assert_error(app.post_json("/predict", &json!({"instances": [input]})).await, 400, "invalid_value").await;
    assert_eq!(error["error"]["field"], "instances[0].mean area");
    assert!(error["error"]["message"].as_str().unwrap().contains("float32"), "{error}");
    // Finite float32 inputs so large that the model overflows inside are refused too: the diabetes
    // regressor's bmi weight takes a scaled bmi of about 2e38 past float32's range.
    let mut input = sample_input("diabetes");
    input["bmi"] = json!(1e39);
    let response = app.post_json("/models/diabetes/predict", &json!({"instances": [input]})).await;
    let error = assert_error(response, 400, "invalid_value").await;
    assert_eq!(error["error"]["field"], "instances[0]", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("not a finite number"), "{error}");
}
