//! What every prediction endpoint (`/predict`, KServe V2 `infer`, V1 `:predict`) does once it has read its
//! request into raw records and model rows: ids, inference, monitoring (metrics, drift windows, the
//! confidence policy, the feedback memory), timing headers and the prediction log. The endpoints differ only
//! in how they read requests and write answers, so every protocol is monitored the same way.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

use super::error::ApiError;
use crate::answer;
use crate::config::LowConfidencePolicy;
use crate::monitor::metrics::VersionMetrics;
use crate::monitor::prediction_log::Answered;
use crate::monitor::version::{Predicted, VersionMonitor};
use crate::preprocess::RecordBatch;
use crate::repository::manifest::Task;
use crate::repository::ModelVersion;
use crate::runtime::{InferenceTiming, ModelOutput};
use crate::state::AppState;

/// A batch the model answered, monitored and accepted.
pub struct Served {
    /// One id per record: the client's, or generated.
    pub ids: Vec<Arc<str>>,
    pub output: ModelOutput,
    /// The model's answer for each record, read from `output`.
    pub predicted: Vec<Predicted>,
    /// Whether low-confidence labels are answered as the fallback label.
    pub fallback: bool,
    pub timing: InferenceTiming,
    /// The id of the API key the request presented, for the prediction log.
    pub caller: Option<Arc<str>>,
}

/// Runs `input` (the model rows of `batch`) through `model` and monitors the answers. Under
/// `low_confidence = "reject"` a batch with a low-confidence prediction is refused whole (422).
/// `shadow`: a version that also runs this batch, off the request path, its answers only compared.
pub async fn run(
    state: &AppState,
    model: &Arc<ModelVersion>,
    shadow: Option<Arc<ModelVersion>>,
    batch: &RecordBatch,
    input: Vec<f32>,
    given_ids: Option<Vec<Arc<str>>>,
    caller: Option<Arc<str>>,
) -> Result<Served, ApiError> {
    let rows = batch.len();
    let ids = state.feedback.ids(given_ids, rows);
    let (output, timing) = state.pool.infer(&model.batcher, input, rows).await?;
    if let Some(r) = (0..rows).find(|&r| output.row(r).iter().any(|x| !x.is_finite())) {
        // Finite inputs far outside the training range can overflow inside the model.
        return Err(ApiError::bad_request(
            "invalid_value",
            format!("instance {r}: the model's output is not a finite number; its values lie too far outside the training range"),
        )
        .with_field(format!("instances[{r}]")));
    }

    let monitor = &model.monitor;
    let predicted: Vec<Predicted> = (0..rows).map(|r| answer::predicted(monitor.task, output.row(r))).collect();
    let metrics = monitor.metrics().filter(|_| state.monitoring());
    if let Some(metrics) = metrics {
        metrics.record_inference(&timing);
        monitor.observe(batch, &predicted);
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
    if let Some(shadow) = shadow {
        crate::shadow::submit(state, model, shadow, batch, &ids.ids, &predicted, caller.clone());
    }
    Ok(Served { ids: ids.ids, output, predicted, fallback, timing, caller })
}

/// Sets `x-inferd-queue-us`, `x-inferd-inference-us` and `x-inferd-total-us`; answers the total.
pub fn timing_headers(response: &mut Response, timing: &InferenceTiming, started: Instant) -> Duration {
    let headers = response.headers_mut();
    let micros = |d: Duration| HeaderValue::from(d.as_micros() as u64);
    headers.insert(HeaderName::from_static("x-inferd-queue-us"), micros(timing.queue));
    headers.insert(HeaderName::from_static("x-inferd-inference-us"), micros(timing.inference));
    let total = started.elapsed();
    headers.insert(HeaderName::from_static("x-inferd-total-us"), micros(total));
    total
}

/// Hands an answered batch to the prediction log (when monitoring and the log are on).
pub fn log(state: &AppState, model: &Arc<ModelVersion>, served: Served, batch: &RecordBatch, total: Duration) {
    if let (true, Some(log)) = (state.monitoring(), &state.prediction_log) {
        log.submit(Answered {
            model,
            ids: served.ids,
            batch,
            output: &served.output,
            fallback: served.fallback,
            shadow: false,
            key_id: served.caller,
            time: SystemTime::now(),
            latency_us: total.as_micros() as u64,
        });
    }
}

/// Bodies above this size are parsed and preprocessed on a blocking thread, and answers above
/// [`INLINE_ROWS`] rows serialised there: a 4,096-record batch takes milliseconds of CPU, which must not
/// stall the executor threads that answer `/health/live` and `/metrics`.
pub const INLINE_BODY_BYTES: usize = 64 * 1024;
pub const INLINE_ROWS: usize = 256;

/// Runs CPU-heavy request work on tokio's blocking pool.
pub async fn off_executor<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
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
