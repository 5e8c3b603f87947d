//! Shadow traffic (DESIGN §8): a model's shadow version also runs every unpinned request, off the request
//! path, and its answers are only compared with the ones returned (`inferd_shadow_predictions_total`,
//! `inferd_shadow_abs_diff`) and written to the prediction log marked `"shadow": true`.
//!
//! The work is bounded: at most [`SHADOW_QUEUE`] requests wait for or run in a shadow at once; beyond that a
//! request's shadow run is dropped and counted (`inferd_shadow_dropped_total`), never slowing an answer.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::answer;
use crate::monitor::prediction_log::Answered;
use crate::monitor::version::Predicted;
use crate::preprocess::RecordBatch;
use crate::repository::ModelVersion;
use crate::state::AppState;

/// Requests whose shadow runs may be pending at once.
pub const SHADOW_QUEUE: usize = 256;

/// Whether two answers agree: the same label, or values within 1e-6 × max(1, |value|).
pub fn agree(answered: &ModelVersion, answer: Predicted, shadow: &ModelVersion, shadowed: Predicted) -> bool {
    match (answer, shadowed) {
        (Predicted::Class { index: a, .. }, Predicted::Class { index: b, .. }) => {
            answered.labels().get(a as usize) == shadow.labels().get(b as usize)
        }
        (Predicted::Value(a), Predicted::Value(b)) => {
            let (a, b) = (a as f64, b as f64);
            (a - b).abs() <= 1e-6 * a.abs().max(1.0)
        }
        _ => false,
    }
}

/// Queues a shadow run of `batch` (which `answered` answered as `predicted`), or counts it dropped.
pub fn submit(
    state: &AppState,
    answered: &Arc<ModelVersion>,
    shadow: Arc<ModelVersion>,
    batch: &RecordBatch,
    ids: &[Arc<str>],
    predicted: &[Predicted],
    caller: Option<Arc<str>>,
) {
    let Ok(permit) = state.shadow_slots.clone().try_acquire_owned() else {
        state.metrics.record_shadow_dropped(&shadow.name, &shadow.version_label);
        return;
    };
    let (state, answered, batch, ids, predicted) =
        (state.clone(), answered.clone(), batch.clone(), ids.to_vec(), predicted.to_vec());
    tokio::spawn(async move {
        let _permit = permit;
        run(&state, &answered, &shadow, &batch, ids, &predicted, caller).await;
    });
}

async fn run(
    state: &AppState,
    answered: &ModelVersion,
    shadow: &Arc<ModelVersion>,
    batch: &RecordBatch,
    ids: Vec<Arc<str>>,
    predicted: &[Predicted],
    caller: Option<Arc<str>>,
) {
    let started = Instant::now();
    let rows = batch.len();
    let (model, version) = (shadow.name.as_str(), shadow.version_label.as_str());
    // The records passed the answering version's checks; a shadow whose pipeline refuses them disagrees.
    let input = match shadow.pipeline.transform(batch) {
        Ok(input) => input,
        Err(error) => {
            tracing::warn!(model, version, %error, "shadow version refused records the answering one took");
            state.metrics.record_shadow(model, version, 0, rows as u64, &[]);
            return;
        }
    };
    let output = match state.pool.infer(&shadow.batcher, input, rows).await {
        Ok((output, _)) => output,
        Err(error) => {
            // A full queue or a gone caller: the shadow did not run, which is not a disagreement.
            tracing::debug!(model, version, %error, "shadow run not done");
            state.metrics.record_shadow_dropped(model, version);
            return;
        }
    };
    let (mut agreed, mut abs_diffs) = (0, Vec::new());
    for (r, answer) in predicted.iter().enumerate().take(rows) {
        let shadowed = answer::predicted(shadow.monitor.task, output.row(r));
        agreed += u64::from(agree(answered, *answer, shadow, shadowed));
        if let (Predicted::Value(a), Predicted::Value(b)) = (answer, shadowed) {
            abs_diffs.push((*a as f64 - b as f64).abs());
        }
    }
    state.metrics.record_shadow(model, version, agreed, rows as u64 - agreed, &abs_diffs);
    if let (true, Some(log)) = (state.monitoring(), &state.prediction_log) {
        log.submit(Answered {
            model: shadow,
            ids,
            batch,
            output: &output,
            fallback: false,
            shadow: true,
            key_id: caller,
            time: SystemTime::now(),
            latency_us: started.elapsed().as_micros() as u64,
        });
    }
}
