//! `POST /predict`, `/models/{name}/predict`, `/models/{name}/versions/{v}/predict`: named (or positional)
//! raw records in; labels, probabilities and confidence, or values, out.
//!
//! The request is accepted or refused whole: it is parsed and preprocessed completely before anything is
//! queued, so a refused request never reaches the model or the monitor.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

use super::body::{read_bytes, read_json_bytes};
use super::error::ApiError;
use super::predict_body::PredictRequest;
use super::serve::{self, off_executor, INLINE_BODY_BYTES, INLINE_ROWS};
use super::v2::V2Error;
use super::ServedBy;
use crate::answer::Answer;
use crate::auth::Caller;
use crate::repository::ModelVersion;
use crate::runtime::ModelOutput;
use crate::state::AppState;

pub async fn predict_default(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    predict(state, None, None, Style::Inferd, Request { caller: key_id(caller), headers, body }).await
}

pub async fn predict_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    predict(state, Some(name), None, Style::Inferd, Request { caller: key_id(caller), headers, body }).await
}

pub async fn predict_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    predict(state, Some(name), Some(version), Style::Inferd, Request { caller: key_id(caller), headers, body }).await
}

/// `POST /v1/models/{name}:predict` (KServe V1, TF Serving): `{"instances": [...]}` in, `{"predictions":
/// [...]}` out, errors as `{"error": "..."}`.
pub async fn v1_predict_model(
    State(state): State<AppState>,
    Path(target): Path<String>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match target.strip_suffix(":predict") {
        Some(name) => {
            let request = Request { caller: key_id(caller), headers, body };
            predict(state, Some(name.to_string()), None, Style::V1, request).await
        }
        None => V2Error(v1_verb(&target)).into_response(),
    }
}

/// `POST /v1/models/{name}/versions/{version}:predict`.
pub async fn v1_predict_version(
    State(state): State<AppState>,
    Path((name, target)): Path<(String, String)>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match target.strip_suffix(":predict") {
        Some(version) => {
            let request = Request { caller: key_id(caller), headers, body };
            predict(state, Some(name), Some(version.to_string()), Style::V1, request).await
        }
        None => V2Error(v1_verb(&target)).into_response(),
    }
}

fn v1_verb(target: &str) -> ApiError {
    ApiError::not_found(format!("'{target}': the V1 protocol's only verb here is ':predict'"))
}

/// Which protocol answers: inferd's own, or KServe V1.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    Inferd,
    V1,
}

/// What a prediction handler takes from the request besides its path.
pub struct Request {
    /// The id of the API key presented, if any.
    pub caller: Option<Arc<str>>,
    pub headers: HeaderMap,
    pub body: Body,
}

pub fn key_id(caller: Option<Extension<Caller>>) -> Option<Arc<str>> {
    caller.map(|Extension(Caller(id))| id)
}

async fn predict(
    state: AppState,
    model: Option<String>,
    version: Option<String>,
    style: Style,
    request: Request,
) -> Response {
    let started = Instant::now();
    let fail = |error: ApiError| match style {
        Style::Inferd => error.into_response(),
        Style::V1 => V2Error(error).into_response(),
    };
    let (model, shadow) = match state.models.load().route(model.as_deref(), version.as_deref()) {
        Ok(routed) => routed,
        Err(error) => return fail(error.into()),
    };
    let served = ServedBy { model: model.name.clone(), version: model.version_label.clone() };
    let mut response = match answer(&state, &model, shadow, style, request, started).await {
        Ok(response) => response,
        Err(error) => fail(error),
    };
    response.extensions_mut().insert(served);
    response
}

async fn answer(
    state: &AppState,
    model: &Arc<ModelVersion>,
    shadow: Option<Arc<ModelVersion>>,
    style: Style,
    Request { caller, headers, body }: Request,
    started: Instant,
) -> Result<Response, ApiError> {
    let limits = &state.settings.server;
    // KServe V1 clients send JSON under any content type (KServe's own curl examples: form-urlencoded).
    let bytes = match style {
        Style::Inferd => read_json_bytes(&headers, body, limits.max_body_bytes).await?,
        Style::V1 => read_bytes(&headers, body, limits.max_body_bytes).await?,
    };
    let max_instances = limits.max_instances;
    let large = bytes.len() > INLINE_BODY_BYTES;
    let parse_model = model.clone();
    let parse = move || -> Result<(PredictRequest, Vec<f32>), ApiError> {
        let request = PredictRequest::parse(&bytes, &parse_model.pipeline, max_instances)?;
        let input = parse_model.pipeline.transform(&request.batch)?;
        Ok((request, input))
    };
    let (mut request, input) = if large { off_executor(parse).await? } else { parse()? };
    let served = serve::run(state, model, shadow, &request.batch, input, request.ids.take(), caller).await?;

    let rows = request.batch.len();
    let render_model = model.clone();
    let render = move || {
        let predictions =
            Predictions { model: &render_model, ids: &served.ids, output: &served.output, fallback: served.fallback };
        let body = match style {
            Style::Inferd => serde_json::to_vec(&PredictResponse {
                model: &render_model.name,
                version: &render_model.version_label,
                predictions,
            }),
            Style::V1 => serde_json::to_vec(&V1Response { predictions }),
        }
        .map_err(ApiError::internal)?;
        Ok((body, served))
    };
    let (body, served) = if rows > INLINE_ROWS { off_executor(render).await? } else { render()? };
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    let total = serve::timing_headers(&mut response, &served.timing, started);
    serve::log(state, model, served, &request.batch, total);
    Ok(response)
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    model: &'a str,
    version: &'a str,
    predictions: Predictions<'a>,
}

#[derive(Serialize)]
struct V1Response<'a> {
    predictions: Predictions<'a>,
}

/// The model's output rows, serialised straight into the answer without an intermediate JSON tree.
struct Predictions<'a> {
    model: &'a ModelVersion,
    ids: &'a [Arc<str>],
    output: &'a ModelOutput,
    fallback: bool,
}

impl Serialize for Predictions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.output.rows))?;
        for (r, id) in self.ids.iter().enumerate() {
            let row = self.output.row(r);
            seq.serialize_element(&Answer {
                id: Some(id),
                monitor: &self.model.monitor,
                row,
                fallback: self.fallback,
            })?;
        }
        seq.end()
    }
}
