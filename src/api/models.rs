//! `GET /models` and `GET /models/{name}`: what is served, in which versions and states, what each model
//! expects (features) and answers (outputs), and its card.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use crate::repository::manifest::Task;
use std::collections::{BTreeMap, BTreeSet};

use crate::repository::{LookupError, ModelEntry, ModelTable, ModelVersion};
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let table = state.models.load();
    Json(json!({"default": table.default_model, "models": statuses(&table)}))
}

/// Every model of the table (serving, or with versions that failed to load) with its versions' states.
pub fn statuses(table: &ModelTable) -> Vec<Value> {
    let names: BTreeSet<&String> = table.models.keys().chain(table.failures.keys()).collect();
    names.into_iter().map(|name| summary(table, name)).collect()
}

pub async fn describe(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let table = state.models.load();
    let Some(entry) = table.models.get(&name) else {
        // A model none of whose versions loaded is known, and says why.
        return match table.failures.contains_key(&name) {
            true => Ok(Json(summary(&table, &name))),
            false => Err(LookupError::UnknownModel(name).into()),
        };
    };
    let current = entry.default_version();
    let mut body = summary(&table, &name);
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

/// A model's name, task, default version and every version's state: `ready` (serving) or `failed` with the
/// reason. A version that serves older files while its changed ones failed is both: ready, with the reason
/// its new files were refused.
fn summary(table: &ModelTable, name: &str) -> Value {
    let entry = table.models.get(name);
    let failures = table.failures.get(name);
    let mut versions: BTreeMap<u64, Value> = BTreeMap::new();
    for v in entry.into_iter().flat_map(|e| e.versions.values()) {
        versions.insert(v.version, json!({"version": v.version, "state": "ready", "task": v.task()}));
    }
    for (version, failure) in failures.into_iter().flatten() {
        match versions.get_mut(version) {
            Some(serving) => serving["reason"] = json!(format!("changed files failed to load: {}", failure.reason)),
            None => {
                versions.insert(*version, json!({"version": version, "state": "failed", "reason": failure.reason}));
            }
        }
    }
    let current = entry.map(ModelEntry::default_version);
    json!({
        "name": name,
        "task": current.map(|c| c.task()),
        "default_version": current.map(|c| c.version),
        "versions": versions.into_values().collect::<Vec<_>>(),
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
