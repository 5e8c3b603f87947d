//! `POST /predict`, `/models/{name}/predict`, `/models/{name}/versions/{v}/predict`: named (or positional)
//! raw records in; labels, probabilities and confidence, or values, out.
//!
//! The request is accepted or refused whole: it is parsed and preprocessed completely before anything is
//! queued, so a refused request never reaches the model or the monitor.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

use super::body::read_json_bytes;
use super::error::ApiError;
use super::predict_body::PredictRequest;
use super::ServedBy;
use crate::answer::{self, Answer};
use crate::config::LowConfidencePolicy;
use crate::monitor::metrics::VersionMetrics;
use crate::monitor::prediction_log::LoggedRequest;
use crate::monitor::version::{Predicted, VersionMonitor};
use crate::repository::manifest::Task;
use crate::repository::ModelVersion;
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
    let parse = move || -> Result<(PredictRequest, Vec<f32>, Bytes), ApiError> {
        let request = PredictRequest::parse(&bytes, &parse_model.pipeline, max_instances)?;
        let input = parse_model.pipeline.transform(&request.batch)?;
        Ok((request, input, bytes))
    };
    let (mut request, input, bytes) = if large { off_executor(parse).await? } else { parse()? };
    let rows = request.batch.len();
    let ids = state.feedback.ids(request.ids.take(), rows);
    let (output, timing) = state.pool.infer(model.plan.clone(), input, rows).await?;

    let monitor = &model.monitor;
    let predicted: Vec<Predicted> = (0..rows).map(|r| answer::predicted(monitor.task, output.row(r))).collect();
    let watching = state.monitoring();
    let metrics = monitor.metrics().filter(|_| watching);
    if let Some(metrics) = metrics {
        metrics.record_inference(rows, timing.queue.as_secs_f64(), timing.inference.as_secs_f64());
        monitor.observe(&request.batch, &predicted);
    }
    let policy = state.settings.monitoring.low_confidence;
    if policy == LowConfidencePolicy::Reject {
        if let Some(r) = predicted.iter().position(|p| monitor.is_low_confidence(*p)) {
            if let Some(metrics) = metrics {
                record_confidence(metrics, monitor, &predicted);
            }
            return Err(low_confidence(monitor, r, predicted[r]));
        }
    }
    let fallback = policy == LowConfidencePolicy::Fallback;
    if let Some(metrics) = metrics {
        record_confidence(metrics, monitor, &predicted);
        record_answers(metrics, monitor, &predicted, fallback);
        let evicted = state.feedback.remember(monitor, &ids, &predicted);
        state.metrics.record_feedback_evictions(evicted);
    }

    let render_model = model.clone();
    let render = move || {
        let predictions = Predictions { model: &render_model, ids: &ids.ids, output: &output, fallback };
        let response = PredictResponse { model: &render_model.name, version: &render_model.version_label, predictions };
        let body = serde_json::to_vec(&response)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        Ok((body, request, ids, output))
    };
    let (body, request, ids, output) = if rows > INLINE_ROWS { off_executor(render).await? } else { render()? };
    let mut response = (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
    let headers = response.headers_mut();
    let micros = |d: std::time::Duration| HeaderValue::from(d.as_micros() as u64);
    headers.insert(HeaderName::from_static("x-inferd-queue-us"), micros(timing.queue));
    headers.insert(HeaderName::from_static("x-inferd-inference-us"), micros(timing.inference));
    let total = started.elapsed();
    headers.insert(HeaderName::from_static("x-inferd-total-us"), micros(total));
    if let (true, Some(log)) = (watching, &state.prediction_log) {
        log.submit(LoggedRequest {
            model: model.clone(),
            ids: ids.ids,
            batch: request.batch,
            body: bytes,
            spans: request.spans,
            output,
            fallback,
            time: SystemTime::now(),
            latency_us: total.as_micros() as u64,
        });
    }
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

fn record_confidence(metrics: &VersionMetrics, monitor: &VersionMonitor, predicted: &[Predicted]) {
    let confidences = predicted.iter().filter_map(|p| match p {
        Predicted::Class { confidence, .. } => Some(*confidence),
        Predicted::Value(_) => None,
    });
    let low = predicted.iter().filter(|p| monitor.is_low_confidence(**p)).count() as u64;
    metrics.record_confidences(confidences, low);
}

/// `inferd_predictions_total` by the label answered (the fallback label where the policy put it).
fn record_answers(metrics: &VersionMetrics, monitor: &VersionMonitor, predicted: &[Predicted], fallback: bool) {
    if monitor.task == Task::Regression {
        metrics.record_values(predicted.len());
        return;
    }
    // Per class, then one counter update per label rather than one per row.
    let mut per_class = vec![0u64; monitor.labels.len()];
    let mut fell_back = 0u64;
    for answer in predicted {
        if let Predicted::Class { index, .. } = answer {
            if monitor.falls_back(*answer, fallback) {
                fell_back += 1;
            } else {
                per_class[*index as usize] += 1;
            }
        }
    }
    metrics.record_classes(&per_class, fell_back);
}

/// 422 for the first prediction below `min_confidence` under `low_confidence = "reject"`.
fn low_confidence(monitor: &VersionMonitor, record: usize, predicted: Predicted) -> ApiError {
    let (label, confidence) = match predicted {
        Predicted::Class { index, confidence } => (monitor.labels[index as usize].as_str(), confidence),
        Predicted::Value(_) => ("", 0.0),
    };
    ApiError::unprocessable(
        "low_confidence",
        format!(
            "instance {record}: confidence {confidence} in '{label}' is below the model's min_confidence {}",
            monitor.min_confidence
        ),
    )
    .with_field(format!("instances[{record}]"))
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
