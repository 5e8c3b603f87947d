//! Health, readiness and metrics: outside every limit, so they answer under any load and during shutdown.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

/// Liveness: the process answers.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "live"}))
}

/// Readiness: every configured model loaded and warmed up, and not shutting down.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.is_ready() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        let status = if state.is_draining() { "shutting_down" } else { "not_ready" };
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": status})))
    }
}

/// A summary for people: status, models and their versions' states, uptime, version.
pub async fn summary(State(state): State<AppState>) -> Json<Value> {
    let table = state.models.load();
    let models: Vec<Value> = table
        .models
        .values()
        .map(|entry| {
            let versions: Vec<Value> =
                entry.versions.values().map(|v| json!({"version": v.version, "state": "ready"})).collect();
            json!({"name": entry.name, "default_version": entry.default_version().version, "versions": versions})
        })
        .collect();
    let status = if state.is_draining() {
        "shutting_down"
    } else if state.is_ready() {
        "ok"
    } else {
        "not_ready"
    };
    Json(json!({
        "status": status,
        "models": models,
        "uptime_s": state.started.elapsed().as_secs_f64(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Drift and live-quality gauges are read from the model versions' windows now, at scrape time.
    if state.monitoring() {
        for entry in state.models.load().models.values() {
            for version in entry.versions.values() {
                state.metrics.refresh_version(&version.monitor);
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.encode())
}
