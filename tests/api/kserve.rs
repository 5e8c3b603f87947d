//! KServe V2 (Open Inference Protocol, JSON and binary tensor data) and V1 over HTTP: answers equal to the
//! fixtures, errors as `{"error": "..."}` with 4xx statuses. tools/clients runs Triton's own client too.

use serde_json::{json, Value};

use crate::helpers::{assert_matches_fixture, fixtures, sample_input, spawn_app, spawn_app_with, TestApp};

/// The V2 error body: a 4xx status and a non-empty `error` string mentioning `needle`.
async fn assert_v2_error(response: reqwest::Response, status: u16, needle: &str) {
    assert_eq!(response.status().as_u16(), status, "status");
    let body: Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap_or_else(|| panic!("a V2 error body: {body}"));
    assert!(message.contains(needle), "'{needle}' not in: {message}");
}

/// Feature names and types of a model, from its metadata.
async fn features(app: &TestApp, model: &str) -> Vec<(String, String)> {
    let metadata: Value = app.get(&format!("/v2/models/{model}")).await.json().await.unwrap();
    metadata["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap().into(), i["datatype"].as_str().unwrap().into()))
        .collect()
}

/// One JSON input per feature for these fixture cases.
async fn json_inputs(app: &TestApp, model: &str, cases: &[Value]) -> Vec<Value> {
    features(app, model)
        .await
        .into_iter()
        .map(|(name, datatype)| {
            let data: Vec<Value> = cases
                .iter()
                .map(|c| match (&c["input"][&name], datatype.as_str()) {
                    (Value::Null, "BYTES") => json!(""),
                    (v, _) => v.clone(),
                })
                .collect();
            json!({"name": name, "datatype": datatype, "shape": [cases.len()], "data": data})
        })
        .collect()
}

/// The V2 answer's outputs as /predict-style predictions, to compare with fixtures.
fn predictions(answer: &Value) -> Vec<Value> {
    let output = |name: &str| answer["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).cloned();
    if let Some(values) = output("value") {
        return values["data"].as_array().unwrap().iter().map(|v| json!({"value": v})).collect();
    }
    let (labels, probabilities, confidence) =
        (output("label").unwrap(), output("probabilities").unwrap(), output("confidence").unwrap());
    let k = probabilities["shape"][1].as_u64().unwrap() as usize;
    labels["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(r, label)| {
            let row = &probabilities["data"].as_array().unwrap()[r * k..(r + 1) * k];
            json!({"label": label, "row": row, "confidence": confidence["data"][r]})
        })
        .collect()
}

#[tokio::test]
async fn server_and_model_metadata_health_and_readiness() {
    let app = spawn_app().await;
    let server: Value = app.get("/v2").await.json().await.unwrap();
    assert_eq!(server["name"], "inferd");
    assert!(server["extensions"].as_array().unwrap().contains(&json!("binary_tensor_data")));
    assert_eq!(app.get("/v2/health/live").await.status(), 200);
    assert_eq!(app.get("/v2/health/ready").await.status(), 200);
    assert_eq!(app.get("/v2/models/wine/ready").await.status(), 200);
    assert_eq!(app.get("/v2/models/wine/versions/1/ready").await.status(), 200);

    let wine: Value = app.get("/v2/models/wine").await.json().await.unwrap();
    assert_eq!(wine["name"], "wine");
    assert_eq!(wine["versions"], json!(["1"]));
    let hue = wine["inputs"].as_array().unwrap().iter().find(|i| i["name"] == "hue_band").unwrap();
    assert_eq!(hue["datatype"], "BYTES");
    assert_eq!(wine["inputs"][0], json!({"name": "alcohol", "datatype": "FP64", "shape": [-1]}));
    assert_eq!(wine["outputs"][1], json!({"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}));
    assert_eq!(wine["parameters"]["labels"], json!(["class_0", "class_1", "class_2"]));
    assert!(wine["parameters"]["card"]["baseline"].is_object(), "{wine}");
    let diabetes: Value = app.get("/v2/models/diabetes/versions/1").await.json().await.unwrap();
    assert_eq!(diabetes["outputs"], json!([{"name": "value", "datatype": "FP32", "shape": [-1]}]));
}

#[tokio::test]
async fn json_inference_equals_the_fixtures_for_every_model() {
    let app = spawn_app().await;
    for model in ["breast_cancer", "wine", "diabetes"] {
        let data = fixtures(model);
        let cases = data["cases"].as_array().unwrap();
        let body = json!({"id": "r-7", "inputs": json_inputs(&app, model, cases).await});
        let response = app.post_json(&format!("/v2/models/{model}/infer"), &body).await;
        assert_eq!(response.status(), 200, "{model}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!((answer["id"].as_str(), answer["model_name"].as_str()), (Some("r-7"), Some(model)));
        assert_eq!(answer["model_version"], "1");
        let tolerance = data["tolerance"].as_f64().unwrap();
        for (prediction, case) in predictions(&answer).iter().zip(cases) {
            let mut prediction = prediction.clone();
            if let Some(row) = prediction.get("row").cloned() {
                let labels = case["output"]["probabilities"].as_object().unwrap().keys();
                prediction["probabilities"] =
                    labels.zip(row.as_array().unwrap()).map(|(l, p)| (l.clone(), p.clone())).collect();
            }
            assert_matches_fixture(&prediction, &case["output"], tolerance);
        }
    }
}

#[tokio::test]
async fn binary_inputs_and_outputs_and_the_nan_clients_write() {
    let app = spawn_app().await;
    let data = fixtures("breast_cancer");
    let cases = &data["cases"].as_array().unwrap()[..3];
    let names: Vec<String> = features(&app, "breast_cancer").await.into_iter().map(|(n, _)| n).collect();
    // The first feature's values as binary FP64, the rest as JSON; every output binary.
    let first: Vec<u8> = cases.iter().flat_map(|c| c["input"][&names[0]].as_f64().unwrap().to_le_bytes()).collect();
    let mut inputs = json_inputs(&app, "breast_cancer", cases).await;
    inputs[0] = json!({"name": names[0], "datatype": "FP64", "shape": [3], "parameters": {"binary_data_size": 24}});
    let header = serde_json::to_vec(&json!({"inputs": inputs, "parameters": {"binary_data_output": true}})).unwrap();
    let mut body = header.clone();
    body.extend_from_slice(&first);
    let response = app
        .client
        .post(format!("{}/v2/models/breast_cancer/infer", app.address))
        .header("Inference-Header-Content-Length", header.len())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let length: usize = response.headers()["inference-header-content-length"].to_str().unwrap().parse().unwrap();
    let bytes = response.bytes().await.unwrap();
    let answer: Value = serde_json::from_slice(&bytes[..length]).unwrap();
    let outputs = answer["outputs"].as_array().unwrap();
    assert!(outputs.iter().all(|o| o.get("data").is_none()), "{answer}");
    let mut binary = &bytes[length..];
    let mut take = |n: usize| {
        let (head, rest) = binary.split_at(n);
        binary = rest;
        head.to_vec()
    };
    let label_bytes = take(outputs[0]["parameters"]["binary_data_size"].as_u64().unwrap() as usize);
    let probabilities = take(outputs[1]["parameters"]["binary_data_size"].as_u64().unwrap() as usize);
    assert_eq!(probabilities.len(), 3 * 2 * 4);
    assert_eq!(take(outputs[2]["parameters"]["binary_data_size"].as_u64().unwrap() as usize).len(), 3 * 4);
    // BYTES: each element a little-endian u32 length and the text.
    let mut labels = Vec::new();
    let mut rest = &label_bytes[..];
    while !rest.is_empty() {
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        labels.push(String::from_utf8(rest[4..4 + n].to_vec()).unwrap());
        rest = &rest[4 + n..];
    }
    let want: Vec<&str> = cases.iter().map(|c| c["output"]["label"].as_str().unwrap()).collect();
    assert_eq!(labels, want);
    let p = f32::from_le_bytes(probabilities[..4].try_into().unwrap()) as f64;
    let first_label = cases[0]["output"]["probabilities"].as_object().unwrap().values().next().unwrap();
    assert!((p - first_label.as_f64().unwrap()).abs() < 1e-5);

    // tritonclient writes a missing number as NaN (not JSON): read as missing, where the feature allows it.
    let wine = fixtures("wine");
    let case = &wine["cases"].as_array().unwrap()[..1];
    let mut inputs = json_inputs(&app, "wine", case).await;
    let magnesium = inputs.iter().position(|i| i["name"] == "magnesium").unwrap();
    inputs[magnesium]["data"] = json!(["NAN_HERE"]);
    let text = serde_json::to_string(&json!({"inputs": inputs})).unwrap().replace("\"NAN_HERE\"", "NaN");
    let response = app.post_raw("/v2/models/wine/infer", None, text).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn one_matrix_of_all_features_and_requested_outputs() {
    let app = spawn_app().await;
    let data = fixtures("diabetes");
    let cases = &data["cases"].as_array().unwrap()[..4];
    let names: Vec<String> = features(&app, "diabetes").await.into_iter().map(|(n, _)| n).collect();
    let matrix: Vec<Value> =
        cases.iter().flat_map(|c| names.iter().map(|n| c["input"][n].clone()).collect::<Vec<_>>()).collect();
    let body = json!({
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [4, names.len()], "data": matrix}],
        "outputs": [{"name": "value"}, {"name": "id"}],
    });
    let answer: Value = app.post_json("/v2/models/diabetes/versions/1/infer", &body).await.json().await.unwrap();
    for (prediction, case) in predictions(&answer).iter().zip(cases) {
        assert_matches_fixture(prediction, &case["output"], data["tolerance"].as_f64().unwrap());
    }
    // The ids /feedback takes.
    let ids = &answer["outputs"][1];
    assert_eq!((ids["name"].as_str(), ids["datatype"].as_str()), (Some("id"), Some("BYTES")));
    let id = ids["data"][0].as_str().unwrap();
    let feedback = app.post_json("/feedback", &json!({"items": [{"id": id, "value": 100.0}]})).await;
    assert_eq!(feedback.json::<Value>().await.unwrap()["matched"], 1);
}

#[tokio::test]
async fn every_v2_error_is_4xx_with_a_v2_error_body() {
    let app = spawn_app_with(|s| s.server.max_instances = 10).await;
    let data = fixtures("breast_cancer");
    let cases = &data["cases"].as_array().unwrap()[..2];
    let good = json_inputs(&app, "breast_cancer", cases).await;
    let infer = |path: &'static str, body: Value| {
        let app = &app;
        async move { app.post_json(path, &body).await }
    };
    assert_v2_error(infer("/v2/models/nope/infer", json!({"inputs": good})).await, 404, "no model named 'nope'").await;
    assert_v2_error(
        infer("/v2/models/breast_cancer/versions/7/infer", json!({"inputs": good})).await,
        404,
        "version '7'",
    )
    .await;
    assert_v2_error(app.get("/v2/models/nope").await, 404, "nope").await;
    assert_v2_error(app.get("/v2/models/nope/ready").await, 404, "nope").await;

    let mut bad_type = good.clone();
    bad_type[0]["datatype"] = json!("FP128");
    assert_v2_error(
        infer("/v2/models/breast_cancer/infer", json!({"inputs": bad_type})).await,
        400,
        "unsupported datatype 'FP128'",
    )
    .await;
    let mut bytes_for_number = good.clone();
    bytes_for_number[0]["datatype"] = json!("BYTES");
    bytes_for_number[0]["data"] = json!(["a", "b"]);
    assert_v2_error(
        infer("/v2/models/breast_cancer/infer", json!({"inputs": bytes_for_number})).await,
        400,
        "is a number",
    )
    .await;
    let mut wrong_count = good.clone();
    wrong_count[0]["shape"] = json!([3]);
    assert_v2_error(
        infer("/v2/models/breast_cancer/infer", json!({"inputs": wrong_count})).await,
        400,
        "holds 3 elements but 2",
    )
    .await;
    let mut ragged = good.clone();
    ragged[1]["shape"] = json!([1]);
    ragged[1]["data"] = json!([1.0]);
    assert_v2_error(infer("/v2/models/breast_cancer/infer", json!({"inputs": ragged})).await, 400, "rows").await;
    let mut three_d = good.clone();
    three_d[0]["shape"] = json!([1, 1, 2]);
    assert_v2_error(
        infer("/v2/models/breast_cancer/infer", json!({"inputs": three_d})).await,
        400,
        "expected [N] or [N, 1]",
    )
    .await;
    assert_v2_error(infer("/v2/models/breast_cancer/infer", json!({"inputs": good[1..]})).await, 400, "mean radius")
        .await;
    let mut unknown = good.clone();
    unknown[0]["name"] = json!("mean radiusss");
    assert_v2_error(
        infer("/v2/models/breast_cancer/infer", json!({"inputs": unknown})).await,
        400,
        "unknown input 'mean radiusss'",
    )
    .await;
    let mut non_finite = good.clone();
    non_finite[0]["data"] = json!(["BIG", 1.0]);
    let text = serde_json::to_string(&json!({"inputs": non_finite})).unwrap().replace("\"BIG\"", "1e400");
    assert_v2_error(app.post_raw("/v2/models/breast_cancer/infer", None, text).await, 400, "not valid").await;
    assert_v2_error(
        infer("/v2/models/breast_cancer/infer", json!({"inputs": good, "outputs": [{"name": "logits"}]})).await,
        400,
        "unknown output 'logits'",
    )
    .await;
    assert_v2_error(infer("/v2/models/breast_cancer/infer", json!({"inputs": []})).await, 400, "no inputs").await;
    assert_v2_error(infer("/v2/models/breast_cancer/infer", json!({"input": good})).await, 400, "not valid").await;
    let many: Vec<Value> = good
        .iter()
        .map(|i| json!({"name": i["name"], "datatype": "FP64", "shape": [11], "data": vec![i["data"][0].clone(); 11]}))
        .collect();
    assert_v2_error(infer("/v2/models/breast_cancer/infer", json!({"inputs": many})).await, 413, "limit is 10").await;
    let wine = json_inputs(&app, "wine", &fixtures("wine")["cases"].as_array().unwrap()[..1]).await;
    let matrix =
        json!({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, wine.len()], "data": vec![1.0; wine.len()]}]});
    assert_v2_error(infer("/v2/models/wine/infer", matrix).await, 400, "category feature").await;

    // Binary headers that do not fit the body.
    let header = serde_json::to_vec(&json!({"inputs": [{"name": "mean radius", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 8}}]})).unwrap();
    let send = |length: String, body: Vec<u8>| {
        let app = &app;
        async move {
            app.client
                .post(format!("{}/v2/models/breast_cancer/infer", app.address))
                .header("Inference-Header-Content-Length", length)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_v2_error(send("abc".into(), header.clone()).await, 400, "byte count").await;
    assert_v2_error(send("100000".into(), header.clone()).await, 400, "body has only").await;
    assert_v2_error(send(header.len().to_string(), header.clone()).await, 400, "exceeds the 0 bytes").await;
    let mut extra = header.clone();
    extra.extend_from_slice(&[0u8; 12]);
    assert_v2_error(send(header.len().to_string(), extra).await, 400, "belong to no input").await;
    // Whatever the content type says, the body is read as JSON (as KServe's own curl examples need).
    let response =
        app.post_raw("/v2/models/breast_cancer/infer", Some("application/x-www-form-urlencoded"), "{}").await;
    assert_v2_error(response, 400, "missing field `inputs`").await;
}

#[tokio::test]
async fn v1_predict_answers_predictions_and_v2_style_errors() {
    let app = spawn_app().await;
    let input = sample_input("wine");
    let expected = &fixtures("wine")["cases"][0]["output"];
    for path in ["/v1/models/wine:predict", "/v1/models/wine/versions/1:predict"] {
        let response = app.post_json(path, &json!({"instances": [input, input]})).await;
        assert_eq!(response.status(), 200, "{path}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer.as_object().unwrap().len(), 1, "only predictions: {answer}");
        assert_eq!(answer["predictions"].as_array().unwrap().len(), 2);
        assert_matches_fixture(&answer["predictions"][0], expected, 1e-5);
    }
    assert_v2_error(app.post_json("/v1/models/nope:predict", &json!({"instances": [input]})).await, 404, "nope").await;
    assert_v2_error(app.post_json("/v1/models/wine:explain", &json!({"instances": [input]})).await, 404, ":predict")
        .await;
    let bad = json!({"instances": [{"alcohol": "strong"}]});
    assert_v2_error(app.post_json("/v1/models/wine:predict", &bad).await, 400, "alcohol").await;
}

/// With `protect = "admin"`, the admin operations (only they) say they need a bearer key and may answer 401;
/// a routing update may name only loaded versions.
#[tokio::test]
async fn openapi_says_which_operations_need_an_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "ops:ops-key-0123456789abcdef\n").unwrap();
    let app = crate::helpers::spawn_app_with(|s| {
        s.auth.api_keys_file = Some(keys);
        s.auth.protect = inferd::config::Protect::Admin;
    })
    .await;
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let paths = document["paths"].as_object().unwrap();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation.get("security").is_some();
            assert_eq!(secured, path.starts_with("/admin/"), "{method} {path}");
            assert_eq!(operation["responses"].get("401").is_some(), secured, "{method} {path}");
        }
    }
    let update = &paths["/admin/models/wine/routing"]["put"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(update["properties"]["default"]["enum"], json!([1, null]));
}

#[tokio::test]
async fn openapi_describes_every_endpoint_and_each_models_records() {
    let app = spawn_app().await;
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/predict",
        "/feedback",
        "/models",
        "/health/ready",
        "/metrics",
        "/openapi.json",
        "/v2",
        "/v2/health/ready",
        "/admin/reload",
        "/admin/audit",
    ] {
        assert!(paths.contains_key(path), "{path}");
    }
    assert!(document["components"].get("securitySchemes").is_none(), "no key needed, none described");
    for model in ["breast_cancer", "wine", "diabetes"] {
        for path in [
            format!("/admin/models/{model}/routing"),
            format!("/models/{model}/predict"),
            format!("/models/{model}/versions/{{version}}/predict"),
            format!("/v1/models/{model}:predict"),
            format!("/v2/models/{model}/infer"),
            format!("/v2/models/{model}/versions/{{version}}/ready"),
        ] {
            assert!(paths.contains_key(&path), "{path}");
        }
    }
    // Wine's records: every feature typed, the optional ones nullable, the required ones required.
    let record = &document["components"]["schemas"]["Record_wine"]["oneOf"][0];
    assert_eq!(record["additionalProperties"], false);
    assert_eq!(record["properties"]["alcohol"]["type"], json!(["number", "null"]));
    assert_eq!(record["properties"]["hue_band"]["type"], json!(["string", "null"]));
    let described: Value = app.get("/models/wine").await.json().await.unwrap();
    let required: Vec<&Value> = described["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["required"] == true)
        .map(|f| &f["name"])
        .collect();
    assert_eq!(record["required"].as_array().unwrap().iter().collect::<Vec<_>>(), required);
    // The example request is the model's fixtures, and the server takes it.
    let example = &paths["/models/wine/predict"]["post"]["requestBody"]["content"]["application/json"]["example"];
    assert_eq!(example["instances"][0], fixtures("wine")["cases"][0]["input"]);
    assert_eq!(app.post_json("/models/wine/predict", example).await.status(), 200);
    let v2_example = &paths["/v2/models/wine/infer"]["post"]["requestBody"]["content"]["application/json"]["example"];
    assert_eq!(app.post_json("/v2/models/wine/infer", v2_example).await.status(), 200);
}
