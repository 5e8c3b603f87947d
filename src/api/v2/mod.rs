//! The Open Inference Protocol (KServe V2) over HTTP/REST, with the binary tensor data extension, so
//! Triton and KServe clients (tritonclient, kserve) work against inferd unchanged; and KServe V1 /
//! TF-Serving's `:predict`. Both protocols answer errors their way: `{"error": "message"}`.

pub mod infer;
pub mod tensor;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::body::read_bytes;
use super::error::ApiError;
use super::predict::{key_id, Request};
use super::serve::{self, off_executor, INLINE_BODY_BYTES};
use super::ServedBy;
use crate::auth::Caller;
use crate::repository::manifest::{FeatureType, Task};
use crate::repository::{ModelEntry, ModelVersion};
use crate::state::AppState;
use infer::HEADER_LENGTH;

/// An error answered the V2 way: the status, and `{"error": "message"}` (naming the field, if any).
pub struct V2Error(pub ApiError);

impl From<ApiError> for V2Error {
    fn from(error: ApiError) -> V2Error {
        V2Error(error)
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let error = self.0;
        let message = match &error.field {
            Some(field) if !error.message.contains(field.as_str()) => format!("{field}: {}", error.message),
            _ => error.message.clone(),
        };
        let mut response = (error.status, Json(json!({ "error": message }))).into_response();
        error.decorate(&mut response);
        response
    }
}

/// `GET /v2`: server metadata.
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "inferd",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_repository_metadata"],
    }))
}

/// `GET /v2/health/live`.
pub async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

/// `GET /v2/health/ready`: 200 when ready; otherwise 400, as the protocol says ("a 4xx status code
/// indicating false"), where inferd's own `/health/ready` answers 503 for load balancers.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ready = state.is_ready();
    (if ready { StatusCode::OK } else { StatusCode::BAD_REQUEST }, Json(json!({ "ready": ready })))
}

fn entry<'a>(table: &'a crate::repository::ModelTable, name: &str) -> Result<&'a ModelEntry, V2Error> {
    table.models.get(name).ok_or_else(|| V2Error(crate::repository::LookupError::UnknownModel(name.into()).into()))
}

/// `GET /v2/models/{name}`: metadata of the model (its default version's inputs and outputs).
pub async fn model_metadata(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, V2Error> {
    let table = state.models.load();
    let entry = entry(&table, &name)?;
    let versions: Vec<String> = entry.versions.values().map(|v| v.version_label.clone()).collect();
    Ok(Json(metadata(entry.default_version(), versions)))
}

/// `GET /v2/models/{name}/versions/{version}`.
pub async fn version_metadata(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, V2Error> {
    let model = state.models.load().resolve(Some(&name), Some(&version)).map_err(ApiError::from)?;
    let versions = vec![model.version_label.clone()];
    Ok(Json(metadata(&model, versions)))
}

/// Inputs (one per feature: numbers FP64, categories BYTES), outputs, and the model card as `parameters`.
fn metadata(model: &ModelVersion, versions: Vec<String>) -> Value {
    let inputs: Vec<Value> = model
        .pipeline
        .features()
        .iter()
        .map(|f| {
            let datatype = match f.kind {
                FeatureType::Number => "FP64",
                FeatureType::Category => "BYTES",
            };
            json!({"name": f.name, "datatype": datatype, "shape": [-1]})
        })
        .collect();
    let outputs: Vec<Value> = match model.task() {
        Task::Classification => vec![
            json!({"name": "label", "datatype": "BYTES", "shape": [-1]}),
            json!({"name": "probabilities", "datatype": "FP32", "shape": [-1, model.labels().len()]}),
            json!({"name": "confidence", "datatype": "FP32", "shape": [-1]}),
        ],
        Task::Regression => vec![json!({"name": "value", "datatype": "FP32", "shape": [-1]})],
    };
    let mut parameters = json!({
        "task": model.task(),
        "description": model.manifest.model.description,
        "versions": versions,
        "card": model.card,
    });
    if model.task() == Task::Classification {
        parameters["labels"] = json!(model.labels());
    }
    json!({
        "name": model.name,
        "versions": versions,
        "platform": "inferd",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": parameters,
    })
}

/// `GET /v2/models/{name}/ready`.
pub async fn model_ready(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, V2Error> {
    state.models.load().resolve(Some(&name), None).map_err(ApiError::from)?;
    Ok(Json(json!({"name": name, "ready": true})))
}

/// `GET /v2/models/{name}/versions/{version}/ready`.
pub async fn version_ready(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, V2Error> {
    state.models.load().resolve(Some(&name), Some(&version)).map_err(ApiError::from)?;
    Ok(Json(json!({"name": name, "version": version, "ready": true})))
}

/// `POST /v2/models/{name}/infer`.
pub async fn infer_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer(state, name, None, Request { caller: key_id(caller), headers, body }).await
}

/// `POST /v2/models/{name}/versions/{version}/infer`.
pub async fn infer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer(state, name, Some(version), Request { caller: key_id(caller), headers, body }).await
}

async fn infer(state: AppState, name: String, version: Option<String>, request: Request) -> Response {
    let started = Instant::now();
    let (model, shadow) = match state.models.load().route(Some(&name), version.as_deref()) {
        Ok(routed) => routed,
        Err(error) => return V2Error(error.into()).into_response(),
    };
    let served_by = ServedBy { model: model.name.clone(), version: model.version_label.clone() };
    let mut response = match answer_infer(&state, &model, shadow, request, started).await {
        Ok(response) => response,
        Err(error) => V2Error(error).into_response(),
    };
    response.extensions_mut().insert(served_by);
    response
}

async fn answer_infer(
    state: &AppState,
    model: &Arc<ModelVersion>,
    shadow: Option<Arc<ModelVersion>>,
    Request { caller, headers, body }: Request,
    started: Instant,
) -> Result<Response, ApiError> {
    // The body is JSON (or a JSON header and binary tensors) whatever its content type says: clients differ
    // (tritonclient sends none, KServe's own curl examples send form-urlencoded), and they must work unchanged.
    let header_length = headers.get(HEADER_LENGTH).map(|v| v.to_str().unwrap_or("?").to_string());
    let limits = &state.settings.server;
    let bytes = read_bytes(&headers, body, limits.max_body_bytes).await?;
    let max_instances = limits.max_instances;
    let large = bytes.len() > INLINE_BODY_BYTES;
    let parse_model = model.clone();
    let parse = move || {
        let (request, inputs) = infer::parse(&bytes, header_length.as_deref())?;
        let batch = infer::records(&parse_model, inputs, max_instances)?;
        let input = parse_model.pipeline.transform(&batch)?;
        Ok((request, batch, input))
    };
    let (request, batch, input) = if large { off_executor(parse).await? } else { parse()? };
    let served = serve::run(state, model, shadow, &batch, input, None, caller).await?;
    let answer = infer::respond(model, &request, &served)?;
    let mut response = match answer.header_length {
        None => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response(),
        Some(length) => {
            let mut response =
                (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], answer.body).into_response();
            response.headers_mut().insert(HEADER_LENGTH, HeaderValue::from(length));
            response
        }
    };
    let total = serve::timing_headers(&mut response, &served.timing, started);
    serve::log(state, model, served, &batch, total);
    Ok(response)
}
