//! `GET /models` and `GET /models/{name}`: what is served, in which versions and states, what each model
//! expects (features) and answers (outputs), and its card.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use crate::repository::manifest::Task;
use crate::repository::{LookupError, ModelEntry, ModelVersion};
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let table = state.models.load();
    let models: Vec<Value> = table.models.values().map(summary).collect();
    Json(json!({"default": table.default_model, "models": models}))
}

pub async fn describe(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let table = state.models.load();
    let entry = table.models.get(&name).ok_or(LookupError::UnknownModel(name))?;
    let current = entry.default_version();
    let mut body = summary(entry);
    body["description"] = json!(current.manifest.model.description);
    body["features"] = features(current);
    body["outputs"] = outputs(current);
    body["card"] = current.card.clone();
    let monitor = &current.monitor;
    body["monitoring"] = json!({
        "drift_reference": monitor.watches_drift(),
        "window": monitor.drift_settings.window,
        "psi_warning": monitor.drift_settings.psi_warning,
        "psi_critical": monitor.drift_settings.psi_critical,
        "min_confidence": monitor.min_confidence,
        "fallback_label": monitor.fallback_label,
    });
    Ok(Json(body))
}

fn summary(entry: &ModelEntry) -> Value {
    let current = entry.default_version();
    let versions: Vec<Value> =
        entry.versions.values().map(|v| json!({"version": v.version, "state": "ready", "task": v.task()})).collect();
    json!({
        "name": entry.name,
        "task": current.task(),
        "default_version": current.version,
        "versions": versions,
    })
}

fn features(version: &ModelVersion) -> Value {
    let features: Vec<Value> = version
        .pipeline
        .features()
        .iter()
        .map(|f| {
            let mut feature = json!({"name": f.name, "type": f.kind, "required": f.required});
            if !f.categories.is_empty() {
                feature["categories"] = json!(f.categories);
            }
            feature
        })
        .collect();
    Value::Array(features)
}

fn outputs(version: &ModelVersion) -> Value {
    match version.task() {
        Task::Regression => json!({"value": "number"}),
        Task::Classification => json!({"labels": version.labels(), "probabilities": true, "confidence": true}),
    }
}
