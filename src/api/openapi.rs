//! `GET /openapi.json`: an OpenAPI 3.1 description of every endpoint, generated at request time from the
//! models being served. Each model gets its own prediction paths (inferd, V1 and V2), whose request schemas
//! are its manifest's features — names, types, which are required, the categories an encoder accepts — and
//! whose examples are its fixtures, so a generated client, or schemathesis, sends requests the model takes.
//! Most of the document is per model, which is why it is built here from the manifests rather than derived
//! from Rust types; CI checks it against the running server with schemathesis.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::repository::manifest::{FeatureType, Task};
use crate::repository::{ModelTable, ModelVersion};
use crate::state::AppState;

pub async fn document(State(state): State<AppState>) -> Json<Value> {
    Json(build(&state.models.load(), state.settings.server.max_instances, &|path| state.keys.guards(path)))
}

/// The whole document for the models of `table`; `guarded` says which paths need an API key.
pub fn build(table: &ModelTable, max_instances: usize, guarded: &dyn Fn(&str) -> bool) -> Value {
    let mut paths = Map::new();
    let mut schemas = shared_schemas();
    let mut add = |path: String, item: Value| {
        paths.insert(path, item);
    };
    add("/health".into(), get("Health summary: status, models and their versions, uptime", ok_json("Health")));
    add("/health/live".into(), get("Liveness: the process answers", ok_json("Status")));
    add(
        "/health/ready".into(),
        get(
            "Readiness: every configured model loaded and warmed up",
            responses(&[("200", "Status"), ("503", "Status")]),
        ),
    );
    add("/metrics".into(), get("Prometheus metrics (text exposition format)", metrics_responses()));
    add("/openapi.json".into(), get("This document", ok_json("Document")));
    add("/models".into(), get("The models served, their versions and states", ok_json("ModelList")));
    add("/feedback".into(), feedback_path(max_instances));
    add(
        "/admin/reload".into(),
        json!({"post": {
            "summary": "Rescan the model repository now (and re-read the API key file): what changed, every model's versions and states",
            "responses": responses(&[("200", "Reload"), ("500", "Error")]),
        }}),
    );
    add(
        "/admin/audit".into(),
        json!({"get": {
            "summary": "The last lifecycle events (loads, failures, unloads, routing changes, reloads), oldest first",
            "parameters": [{"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0, "default": 100}}],
            "responses": responses(&[("200", "AuditEvents"), ("400", "Error")]),
        }}),
    );
    add("/v2".into(), get("KServe V2 server metadata", ok_json("V2ServerMetadata")));
    add("/v2/health/live".into(), get("KServe V2 liveness", ok_json("V2Live")));
    add(
        "/v2/health/ready".into(),
        get(
            "KServe V2 readiness (400 when not ready, as the protocol says)",
            responses(&[("200", "V2Ready"), ("400", "V2Ready")]),
        ),
    );

    if let Some(default) = table.default_model.as_ref().and_then(|name| table.models.get(name)) {
        let model = default.default_version();
        let what = format!("the default model, {}", default.name);
        add("/predict".into(), predict_path(model, &what, None, &example_records(model), max_instances));
    }
    for (name, entry) in &table.models {
        let current = entry.default_version();
        let versions: Vec<String> = entry.versions.values().map(|v| v.version_label.clone()).collect();
        // Read from disk once per model and document, for the four prediction paths.
        let examples = example_records(current);
        schemas.insert(format!("Record_{name}"), record_schema(current));
        schemas.insert(format!("V2Inputs_{name}"), v2_inputs_schema(current));
        add(
            format!("/models/{name}"),
            get(&format!("Model '{name}': versions, features, outputs, card"), model_responses()),
        );
        add(format!("/admin/models/{name}/routing"), routing_path(name, entry.versions.keys().copied().collect()));
        add(
            format!("/models/{name}/predict"),
            predict_path(current, &format!("model '{name}'"), None, &examples, max_instances),
        );
        add(
            format!("/models/{name}/versions/{{version}}/predict"),
            predict_path(current, &format!("a version of model '{name}'"), Some(&versions), &examples, max_instances),
        );
        add(format!("/v1/models/{name}:predict"), v1_path(current, &examples, max_instances));
        add(
            format!("/v2/models/{name}"),
            v2_get(&format!("KServe V2 metadata of model '{name}'"), "V2ModelMetadata", None),
        );
        add(
            format!("/v2/models/{name}/ready"),
            v2_get(&format!("KServe V2 readiness of model '{name}'"), "V2ModelReady", None),
        );
        add(format!("/v2/models/{name}/infer"), v2_infer_path(current, None, &examples));
        add(
            format!("/v2/models/{name}/versions/{{version}}"),
            v2_get(&format!("KServe V2 metadata of a version of '{name}'"), "V2ModelMetadata", Some(&versions)),
        );
        add(
            format!("/v2/models/{name}/versions/{{version}}/ready"),
            v2_get(&format!("KServe V2 readiness of a version of '{name}'"), "V2ModelReady", Some(&versions)),
        );
        add(
            format!("/v2/models/{name}/versions/{{version}}/infer"),
            v2_infer_path(current, Some(&versions), &examples),
        );
    }
    let mut secured = false;
    for (path, item) in paths.iter_mut().filter(|(path, _)| guarded(path)) {
        secured = true;
        for operation in item.as_object_mut().into_iter().flat_map(|ops| ops.values_mut()) {
            operation["security"] = json!([{"bearer": []}]);
            operation["responses"]["401"] = json!({
                "description": "No API key, or one the server does not hold (WWW-Authenticate: Bearer)",
                "content": json_content(reference(if path.starts_with("/v") { "V2Error" } else { "Error" })),
            });
        }
    }
    let mut components = json!({"schemas": schemas});
    if secured {
        components["securitySchemes"] =
            json!({"bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"}});
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "inferd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Model serving with drift monitoring. Prediction paths are listed per served model; KServe V2 also takes binary tensor data (Inference-Header-Content-Length), which OpenAPI cannot describe.",
        },
        "paths": paths,
        "components": components,
    })
}

/// `GET` and `PUT /admin/models/{name}/routing`: the versions a routing may name are the loaded ones.
fn routing_path(name: &str, loaded: Vec<u64>) -> Value {
    let version_or_null = json!({"enum": loaded.iter().map(|v| json!(v)).chain([Value::Null]).collect::<Vec<_>>()});
    let update = json!({
        "type": "object",
        "properties": {
            "default": version_or_null,
            "shadow": version_or_null,
            "canary": {"oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {"version": {"enum": loaded}, "weight": {"type": "number", "minimum": 0, "maximum": 1}},
                    "required": ["version", "weight"],
                    "additionalProperties": false,
                },
            ]},
        },
        "additionalProperties": false,
    });
    let answers = || responses(&[("200", "Routing"), ("404", "Error")]);
    let mut put_answers = answers();
    for (status, why) in
        [("400", "The body is not JSON"), ("422", "A version not loaded, a weight outside [0, 1], an unknown key")]
    {
        put_answers[status] = json!({"description": why, "content": json_content(reference("Error"))});
    }
    json!({
        "get": {"summary": format!("Model '{name}': its routing (default, canary, shadow) and loaded versions"), "responses": answers()},
        "put": {
            "summary": format!("Model '{name}': change its routing; absent keys stay, null clears"),
            "requestBody": {"required": true, "content": json_content(update)},
            "responses": put_answers,
        },
    })
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn ok_json(schema: &str) -> Value {
    responses(&[("200", schema)])
}

/// Responses with a JSON body of the named schema, by status.
fn responses(list: &[(&str, &str)]) -> Value {
    let mut map = Map::new();
    for (status, schema) in list {
        let description = if status.starts_with('2') { "Success" } else { "See the body" };
        map.insert(status.to_string(), json!({"description": description, "content": json_content(reference(schema))}));
    }
    Value::Object(map)
}

fn get(summary: &str, responses: Value) -> Value {
    json!({"get": {"summary": summary, "responses": responses}})
}

fn metrics_responses() -> Value {
    json!({"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}})
}

fn model_responses() -> Value {
    responses(&[("200", "ModelDescription"), ("404", "Error")])
}

/// The `{version}` path parameter, limited to the versions loaded.
fn version_parameter(versions: &[String]) -> Value {
    json!([{"name": "version", "in": "path", "required": true, "schema": {"type": "string", "enum": versions}}])
}

/// Error answers of a prediction endpoint, in the given error schema.
fn error_responses(map: &mut Map<String, Value>, error: &str) {
    for (status, why) in [
        ("400", "Malformed JSON, wrong types, NaN or infinity, unknown or missing features, unknown categories"),
        ("404", "Unknown model or version"),
        ("413", "Body or record count over the limits"),
        ("415", "Not application/json"),
        ("422", "Valid JSON of the wrong shape, or refused for low confidence"),
        ("429", "Too many requests in flight (Retry-After)"),
        ("503", "Queue full, timed out, or shutting down (Retry-After)"),
    ] {
        map.insert(status.into(), json!({"description": why, "content": json_content(reference(error))}));
    }
}

/// One record of `model`: an object by feature name, or an array of values in feature order.
fn record_schema(model: &ModelVersion) -> Value {
    let pipeline = &model.pipeline;
    let values: Vec<Value> =
        pipeline.features().iter().enumerate().map(|(i, f)| value_schema(model, i, f.required)).collect();
    let properties: Map<String, Value> =
        pipeline.features().iter().zip(&values).map(|(f, v)| (f.name.clone(), v.clone())).collect();
    let required: Vec<&str> = pipeline.features().iter().filter(|f| f.required).map(|f| f.name.as_str()).collect();
    json!({"oneOf": [
        {"type": "object", "properties": properties, "required": required, "additionalProperties": false},
        {"type": "array", "prefixItems": values, "items": false, "minItems": values.len(), "maxItems": values.len()},
    ]})
}

/// A raw value of feature `i`: a number or (for a category) a string; `null` for a missing one, where the
/// feature may be missing.
fn value_schema(model: &ModelVersion, i: usize, required: bool) -> Value {
    let mut schema = match model.pipeline.features()[i].kind {
        FeatureType::Number => json!({"type": ["number"]}),
        FeatureType::Category => match model.pipeline.accepted_categories(i) {
            Some(categories) => json!({"type": ["string"], "enum": categories}),
            None => json!({"type": ["string"]}),
        },
    };
    if !required {
        schema["type"].as_array_mut().expect("a type list").push(json!("null"));
        if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
            values.push(Value::Null);
        }
    }
    schema
}

/// The inputs of a model's first two fixture cases, as an example request's records (none without fixtures).
fn example_records(model: &ModelVersion) -> Vec<Value> {
    let fixtures = std::fs::read(model.dir.join("fixtures.json")).ok();
    let parsed: Option<Value> = fixtures.and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let cases = parsed.as_ref().and_then(|f| f["cases"].as_array()).map_or(&[][..], Vec::as_slice);
    cases.iter().take(2).map(|case| case["input"].clone()).collect()
}

fn predict_path(
    model: &ModelVersion,
    what: &str,
    versions: Option<&[String]>,
    examples: &[Value],
    max_instances: usize,
) -> Value {
    let name = &model.name;
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "One prediction per record", "content": json_content(reference("PredictResponse"))}),
    );
    error_responses(&mut responses, "Error");
    let request = json!({
        "type": "object",
        "properties": {
            "instances": {"type": "array", "items": reference(&format!("Record_{name}")), "minItems": 1, "maxItems": max_instances},
            "ids": {"type": ["array", "null"], "items": {"type": "string", "minLength": 1}, "description": "One id per instance (generated when absent)"},
        },
        "required": ["instances"],
        "additionalProperties": false,
    });
    let mut operation = json!({
        "summary": format!("Predict with {what}"),
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": request,
            "example": {"instances": examples},
        }}},
        "responses": responses,
    });
    if let Some(versions) = versions {
        operation["parameters"] = version_parameter(versions);
    }
    json!({"post": operation})
}

fn v1_path(model: &ModelVersion, examples: &[Value], max_instances: usize) -> Value {
    let name = &model.name;
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "One prediction per instance", "content": json_content(reference("V1Response"))}),
    );
    error_responses(&mut responses, "V2Error");
    json!({"post": {
        "summary": format!("KServe V1 / TF Serving predict with model '{name}'"),
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": {
                "type": "object",
                "properties": {"instances": {"type": "array", "items": reference(&format!("Record_{name}")), "minItems": 1, "maxItems": max_instances}},
                "required": ["instances"],
                "additionalProperties": false,
            },
            "example": {"instances": examples},
        }}},
        "responses": responses,
    }})
}

fn v2_get(summary: &str, schema: &str, versions: Option<&[String]>) -> Value {
    let mut operation = json!({"summary": summary, "responses": responses(&[("200", schema), ("404", "V2Error")])});
    if let Some(versions) = versions {
        operation["parameters"] = version_parameter(versions);
    }
    json!({"get": operation})
}

/// V2 input tensors of `model`: one per feature, numbers in any numeric datatype, categories BYTES.
fn v2_inputs_schema(model: &ModelVersion) -> Value {
    let tensors: Vec<Value> = model
        .pipeline
        .features()
        .iter()
        .map(|f| {
            let (datatypes, element) = match f.kind {
                FeatureType::Number => (
                    json!(["FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"]),
                    json!({"type": ["number", "null"]}),
                ),
                FeatureType::Category => (json!(["BYTES"]), json!({"type": "string"})),
            };
            json!({
                "type": "object",
                "properties": {
                    "name": {"const": f.name},
                    "datatype": {"enum": datatypes},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
                    "data": {"type": "array", "items": element},
                    "parameters": {"type": "object"},
                },
                "required": ["name", "datatype", "shape", "data"],
                "additionalProperties": false,
            })
        })
        .collect();
    json!({"type": "array", "items": {"oneOf": tensors}, "minItems": 1})
}

fn v2_infer_path(model: &ModelVersion, versions: Option<&[String]>, records: &[Value]) -> Value {
    let name = &model.name;
    let inputs: Vec<Value> = model
        .pipeline
        .features()
        .iter()
        .map(|f| {
            let datatype = if f.kind == FeatureType::Number { "FP64" } else { "BYTES" };
            let data: Vec<Value> = records
                .iter()
                .map(|r| match (&r[&f.name], f.kind) {
                    (Value::Null, FeatureType::Category) => json!(""),
                    (value, _) => value.clone(),
                })
                .collect();
            json!({"name": f.name, "datatype": datatype, "shape": [records.len()], "data": data})
        })
        .collect();
    let outputs = match model.task() {
        Task::Classification => json!(["label", "probabilities", "confidence", "id"]),
        Task::Regression => json!(["value", "id"]),
    };
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "The requested outputs", "content": json_content(reference("V2InferResponse"))}),
    );
    error_responses(&mut responses, "V2Error");
    let mut operation = json!({
        "summary": format!("KServe V2 inference with model '{name}'"),
        "description": "One input per feature (shape [N] or [N, 1]; NaN or null for a missing number, \"\" for a missing category), or one numeric [N, F] tensor of all features in order. Binary tensor data is accepted too (not describable here).",
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "id": {"type": ["string", "null"]},
                    "parameters": {"type": "object"},
                    "inputs": reference(&format!("V2Inputs_{name}")),
                    "outputs": {"type": ["array", "null"], "items": {
                        "type": "object",
                        "properties": {"name": {"enum": outputs}, "parameters": {"type": "object"}},
                        "required": ["name"],
                        "additionalProperties": false,
                    }},
                },
                "required": ["inputs"],
                "additionalProperties": false,
            },
            "example": {"id": "example-1", "inputs": inputs},
        }}},
        "responses": responses,
    });
    if let Some(versions) = versions {
        operation["parameters"] = version_parameter(versions);
    }
    json!({"post": operation})
}

fn feedback_path(max_instances: usize) -> Value {
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "What was matched", "content": json_content(reference("FeedbackAnswer"))}),
    );
    for (status, why) in [
        ("400", "Malformed JSON or wrong types"),
        ("409", "Monitoring or the feedback memory is off"),
        ("413", "Body or item count over the limits"),
        ("415", "Not application/json"),
        ("422", "Valid JSON of the wrong shape"),
        ("429", "Too many requests in flight"),
        ("503", "Timed out or shutting down"),
    ] {
        responses.insert(status.into(), json!({"description": why, "content": json_content(reference("Error"))}));
    }
    json!({"post": {
        "summary": "Ground truth for earlier predictions, by id",
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": {
                "type": "object",
                "properties": {"items": {"type": "array", "minItems": 1, "maxItems": max_instances, "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "minLength": 1},
                        "label": {"type": ["string", "null"]},
                        "value": {"type": ["number", "null"]},
                    },
                    "required": ["id"],
                    "additionalProperties": false,
                    // Exactly one of a label (classification) or a value (regression); null is absent.
                    "oneOf": [
                        {"properties": {"label": {"type": "string"}, "value": {"type": "null"}}, "required": ["label"]},
                        {"properties": {"value": {"type": "number"}, "label": {"type": "null"}}, "required": ["value"]},
                    ],
                }}},
                "required": ["items"],
                "additionalProperties": false,
            },
            "example": {"items": [{"id": "order-17", "label": "benign"}]},
        }}},
        "responses": responses,
    }})
}

/// The schemas every model shares.
fn shared_schemas() -> Map<String, Value> {
    let string = json!({"type": "string"});
    let number = json!({"type": "number"});
    let prediction = json!({
        "type": "object",
        "properties": {
            "id": string,
            "label": string,
            "probabilities": {"type": "object", "additionalProperties": number},
            "confidence": number,
            "low_confidence": {"type": "boolean"},
            "fallback": {"type": "boolean"},
            "value": number,
        },
        "additionalProperties": false,
    });
    let tensor = json!({
        "type": "object",
        "properties": {
            "name": string,
            "datatype": {"enum": ["BYTES", "FP32"]},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "parameters": {"type": "object"},
            "data": {"type": "array", "items": {"type": ["number", "string"]}},
        },
        "required": ["name", "datatype", "shape"],
    });
    let io = json!({
        "type": "object",
        "properties": {"name": string, "datatype": string, "shape": {"type": "array", "items": {"type": "integer"}}},
        "required": ["name", "datatype", "shape"],
    });
    let schemas = json!({
        "Error": {
            "type": "object",
            "properties": {"error": {
                "type": "object",
                "properties": {"code": string, "message": string, "field": string},
                "required": ["code", "message"],
            }},
            "required": ["error"],
        },
        "V2Error": {"type": "object", "properties": {"error": string}, "required": ["error"]},
        "Reload": {
            "type": "object",
            "properties": {
                "changes": {"type": "array", "items": {"type": "object", "properties": {"model": string, "version": {"type": "integer"}, "action": {"enum": ["loaded", "reloaded", "failed", "unloaded"]}, "reason": string}, "required": ["model", "version", "action"]}},
                "models": {"type": "array"},
                "api_keys": {"type": "object", "properties": {"count": {"type": "integer", "minimum": 0}, "error": string}},
            },
            "required": ["changes", "models"],
        },
        "AuditEvents": {
            "type": "object",
            "properties": {"events": {"type": "array", "items": {
                "type": "object",
                "properties": {"time": string, "actor": string, "action": {"enum": ["load", "load_failed", "unload", "routing", "reload"]}, "model": {"type": ["string", "null"]}, "version": {"type": ["integer", "null"]}, "detail": {}},
                "required": ["time", "actor", "action", "model", "version", "detail"],
            }}},
            "required": ["events"],
        },
        "Routing": {
            "type": "object",
            "properties": {
                "default": {"type": ["integer", "null"]},
                "shadow": {"type": ["integer", "null"]},
                "canary": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {"version": {"type": "integer"}, "weight": number}, "required": ["version", "weight"]}]},
                "serving_default": {"type": "integer"},
                "loaded_versions": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["default", "canary", "shadow", "serving_default", "loaded_versions"],
        },
        "Status": {"type": "object", "properties": {"status": string}, "required": ["status"]},
        "Health": {
            "type": "object",
            "properties": {"status": string, "models": {"type": "array"}, "uptime_s": number, "version": string},
            "required": ["status", "models", "uptime_s", "version"],
        },
        "Document": {"type": "object", "properties": {"openapi": string}, "required": ["openapi", "paths"]},
        "ModelList": {"type": "object", "properties": {"default": {"type": ["string", "null"]}, "models": {"type": "array"}}, "required": ["models"]},
        "ModelDescription": {
            "type": "object",
            "properties": {"name": string, "task": {"enum": ["classification", "regression"]}, "versions": {"type": "array"}, "features": {"type": "array"}, "outputs": {"type": "object"}, "card": {"type": "object"}},
            "required": ["name", "task", "versions", "features", "outputs"],
        },
        "PredictResponse": {
            "type": "object",
            "properties": {"model": string, "version": string, "predictions": {"type": "array", "items": prediction}},
            "required": ["model", "version", "predictions"],
            "additionalProperties": false,
        },
        "V1Response": {
            "type": "object",
            "properties": {"predictions": {"type": "array", "items": prediction}},
            "required": ["predictions"],
            "additionalProperties": false,
        },
        "FeedbackAnswer": {
            "type": "object",
            "properties": {
                "matched": {"type": "integer", "minimum": 0},
                "unknown_ids": {"type": "array", "items": string},
                "invalid": {"type": "array", "items": {"type": "object", "properties": {"id": string, "reason": string}, "required": ["id", "reason"]}},
            },
            "required": ["matched", "unknown_ids", "invalid"],
        },
        "V2ServerMetadata": {
            "type": "object",
            "properties": {"name": string, "version": string, "extensions": {"type": "array", "items": string}},
            "required": ["name", "version", "extensions"],
        },
        "V2Live": {"type": "object", "properties": {"live": {"type": "boolean"}}, "required": ["live"]},
        "V2Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}, "required": ["ready"]},
        "V2ModelReady": {"type": "object", "properties": {"name": string, "ready": {"type": "boolean"}}, "required": ["name", "ready"]},
        "V2ModelMetadata": {
            "type": "object",
            "properties": {
                "name": string,
                "versions": {"type": "array", "items": string},
                "platform": string,
                "inputs": {"type": "array", "items": io},
                "outputs": {"type": "array", "items": io},
                "parameters": {"type": "object"},
            },
            "required": ["name", "versions", "platform", "inputs", "outputs"],
        },
        "V2InferResponse": {
            "type": "object",
            "properties": {"model_name": string, "model_version": string, "id": string, "outputs": {"type": "array", "items": tensor}},
            "required": ["model_name", "model_version", "outputs"],
        },
    });
    match schemas {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}
