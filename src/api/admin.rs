//! `/admin/*` (DESIGN §8): rescan the repository now, and read the audit log.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::models;
use crate::lifecycle;
use crate::repository::Change;
use crate::state::AppState;

/// The actor of admin calls until API keys name callers (`[auth]`): never a key, never a payload.
pub const ANONYMOUS: &str = "anonymous";

/// `POST /admin/reload`: rescans now and answers what changed and every model's versions and states. The
/// rescan runs in its own task: a caller that gives up (or times out) does not cancel a load halfway.
pub async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rescanning = state.clone();
    let changes =
        tokio::spawn(async move { lifecycle::reload(&rescanning, ANONYMOUS, lifecycle::Trigger::Asked).await })
            .await
            .map_err(|e| ApiError::internal(format!("reload task failed: {e}")))?
            .map_err(|e| ApiError::internal(e.to_string()))?;
    let changes: Vec<Value> = changes
        .iter()
        .map(|change| match change {
            Change::Loaded { model, version, replaced } => {
                json!({"model": model, "version": version, "action": if *replaced { "reloaded" } else { "loaded" }})
            }
            Change::Failed { model, version, reason } => {
                json!({"model": model, "version": version, "action": "failed", "reason": reason})
            }
            Change::Unloaded { model, version } => json!({"model": model, "version": version, "action": "unloaded"}),
        })
        .collect();
    let table = state.models.load();
    Ok(Json(json!({"changes": changes, "models": models::statuses(&table)})))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    limit: Option<String>,
}

/// `GET /admin/audit?limit=N`: the last N events (default 100), oldest first.
pub async fn audit(State(state): State<AppState>, Query(query): Query<AuditQuery>) -> Result<Json<Value>, ApiError> {
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(text) => text.parse::<usize>().map_err(|_| {
            ApiError::bad_request("invalid_query", format!("limit: expected a non-negative integer, got '{text}'"))
                .with_field("limit")
        })?,
    };
    Ok(Json(json!({"events": state.lifecycle.audit.recent(limit)})))
}
