//! `POST /predict`, `/models/{name}/predict`, `/models/{name}/versions/{v}/predict`: named (or positional)
//! raw records in; labels, probabilities and confidence, or values, out.
//!
//! The request is accepted or refused whole: it is parsed and preprocessed completely before anything is
//! queued, so a refused request never reaches the model or the monitor.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::Value;

use super::body::{parse_json, read_json_bytes};
use super::error::ApiError;
use super::ServedBy;
use crate::preprocess::{json_type, Pipeline, RecordBatch};
use crate::repository::manifest::Task;
use crate::repository::{argmax, ModelVersion};
use crate::runtime::ModelOutput;
use crate::state::AppState;

pub async fn predict_default(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    predict(state, None, None, headers, body).await
}

pub async fn predict_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    predict(state, Some(name), None, headers, body).await
}

pub async fn predict_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    predict(state, Some(name), Some(version), headers, body).await
}

async fn predict(
    state: AppState,
    model: Option<String>,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let resolved = state.models.load().resolve(model.as_deref(), version.as_deref());
    let model = match resolved {
        Ok(model) => model,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let served = ServedBy { model: model.name.clone(), version: model.version_label.clone() };
    let mut response = match answer(&state, &model, headers, body, started).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response.extensions_mut().insert(served);
    response
}

/// Bodies above this size are parsed and preprocessed on a blocking thread, and answers above
/// [`INLINE_ROWS`] rows serialised there: a 4,096-record batch takes milliseconds of CPU, which must not
/// stall the executor threads that answer `/health/live` and `/metrics`.
const INLINE_BODY_BYTES: usize = 64 * 1024;
const INLINE_ROWS: usize = 256;

async fn answer(
    state: &AppState,
    model: &Arc<ModelVersion>,
    headers: HeaderMap,
    body: Body,
    started: Instant,
) -> Result<Response, ApiError> {
    let limits = &state.settings.server;
    let bytes = read_json_bytes(&headers, body, limits.max_body_bytes).await?;
    let max_instances = limits.max_instances;
    let large = bytes.len() > INLINE_BODY_BYTES;
    let parse_model = model.clone();
    let parse = move || -> Result<(PredictRequest, Vec<f32>), ApiError> {
        let value = parse_json(&bytes)?;
        let request = PredictRequest::parse(&value, &parse_model.pipeline, max_instances)?;
        let input = parse_model.pipeline.transform(&request.batch)?;
        Ok((request, input))
    };
    let (request, input) = if large { off_executor(parse).await? } else { parse()? };
    let rows = request.batch.len();
    let (output, timing) = state.pool.infer(model.plan.clone(), input, rows).await?;

    let (name, version) = (model.name.as_str(), model.version_label.as_str());
    state.metrics.record_inference(name, version, rows, timing.queue.as_secs_f64(), timing.inference.as_secs_f64());
    record_predictions(state, model, &output);

    let render_model = model.clone();
    let render = move || {
        let predictions = Predictions { model: &render_model, ids: &request.ids, output: &output };
        let response = PredictResponse { model: &render_model.name, version: &render_model.version_label, predictions };
        serde_json::to_vec(&response)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
    };
    let body = if rows > INLINE_ROWS { off_executor(render).await? } else { render()? };
    let mut response = (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
    let headers = response.headers_mut();
    let micros = |d: std::time::Duration| HeaderValue::from(d.as_micros() as u64);
    headers.insert(HeaderName::from_static("x-inferd-queue-us"), micros(timing.queue));
    headers.insert(HeaderName::from_static("x-inferd-inference-us"), micros(timing.inference));
    headers.insert(HeaderName::from_static("x-inferd-total-us"), micros(started.elapsed()));
    Ok(response)
}

/// Runs CPU-heavy request work on tokio's blocking pool.
async fn off_executor<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("request task failed: {e}"))
    })?
}

fn record_predictions(state: &AppState, model: &ModelVersion, output: &ModelOutput) {
    let (name, version) = (model.name.as_str(), model.version_label.as_str());
    for r in 0..output.rows {
        match model.task() {
            Task::Classification => {
                let row = output.row(r);
                let best = argmax(row);
                state.metrics.record_class(name, version, &model.labels()[best], row[best]);
            }
            Task::Regression => state.metrics.record_value(name, version),
        }
    }
}

/// A checked `/predict` body: raw records and one id per record.
#[derive(Debug)]
pub struct PredictRequest {
    pub batch: RecordBatch,
    pub ids: Vec<String>,
}

impl PredictRequest {
    /// `{"instances": [...], "ids": [...]}` → typed records. Shape errors are 422, value errors 400.
    pub fn parse(value: &Value, pipeline: &Pipeline, max_instances: usize) -> Result<PredictRequest, ApiError> {
        let shape = |field: &str, message: String| ApiError::unprocessable("wrong_shape", message).with_field(field);
        let Value::Object(root) = value else {
            return Err(shape("", format!("expected an object with \"instances\", got {}", json_type(value))));
        };
        if let Some(key) = root.keys().find(|k| *k != "instances" && *k != "ids") {
            return Err(ApiError::unprocessable(
                "unknown_field",
                format!("unknown field '{key}': a request has \"instances\" and optional \"ids\""),
            )
            .with_field(key.as_str()));
        }
        let instances = match root.get("instances") {
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(shape("instances", format!("expected an array of instances, got {}", json_type(other))))
            }
            None => return Err(shape("instances", "\"instances\" is required".into())),
        };
        if instances.is_empty() {
            return Err(ApiError::unprocessable("empty_instances", "\"instances\" must hold at least one instance")
                .with_field("instances"));
        }
        if instances.len() > max_instances {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_instances",
                format!("{} instances in one request; the limit is {max_instances}", instances.len()),
            )
            .with_field("instances"));
        }
        let ids = match root.get("ids") {
            None | Some(Value::Null) => instances.iter().map(|_| uuid::Uuid::new_v4().to_string()).collect(),
            Some(Value::Array(ids)) => {
                if ids.len() != instances.len() {
                    return Err(shape(
                        "ids",
                        format!("expected {} ids (one per instance), got {}", instances.len(), ids.len()),
                    ));
                }
                ids.iter()
                    .enumerate()
                    .map(|(i, id)| match id {
                        Value::String(s) if !s.is_empty() => Ok(s.clone()),
                        other => Err(ApiError::bad_request(
                            "wrong_type",
                            format!("ids[{i}]: expected a non-empty string, got {}", json_type(other)),
                        )
                        .with_field(format!("ids[{i}]"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(other) => return Err(shape("ids", format!("expected an array of strings, got {}", json_type(other)))),
        };
        let mut batch = RecordBatch::new(pipeline.features().len());
        batch.values.reserve(instances.len() * batch.width);
        for (i, instance) in instances.iter().enumerate() {
            pipeline.parse_instance(instance, &format!("instances[{i}]"), &mut batch)?;
        }
        Ok(PredictRequest { batch, ids })
    }
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    model: &'a str,
    version: &'a str,
    predictions: Predictions<'a>,
}

/// The model's output rows, serialised straight into the answer without an intermediate JSON tree.
struct Predictions<'a> {
    model: &'a ModelVersion,
    ids: &'a [String],
    output: &'a ModelOutput,
}

impl Serialize for Predictions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.output.rows))?;
        for (r, id) in self.ids.iter().enumerate() {
            seq.serialize_element(&Prediction { model: self.model, id, row: self.output.row(r) })?;
        }
        seq.end()
    }
}

struct Prediction<'a> {
    model: &'a ModelVersion,
    id: &'a str,
    row: &'a [f32],
}

impl Serialize for Prediction<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", self.id)?;
        match self.model.task() {
            Task::Classification => {
                let labels = self.model.labels();
                let best = argmax(self.row);
                map.serialize_entry("label", &labels[best])?;
                map.serialize_entry("probabilities", &Probabilities { labels, values: self.row })?;
                map.serialize_entry("confidence", &self.row[best])?;
                if (self.row[best] as f64) < self.model.manifest.monitoring.min_confidence {
                    map.serialize_entry("low_confidence", &true)?;
                }
            }
            Task::Regression => map.serialize_entry("value", &self.row[0])?,
        }
        map.end()
    }
}

struct Probabilities<'a> {
    labels: &'a [String],
    values: &'a [f32],
}

impl Serialize for Probabilities<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.labels.len()))?;
        for (label, p) in self.labels.iter().zip(self.values) {
            map.serialize_entry(label, p)?;
        }
        map.end()
    }
}
