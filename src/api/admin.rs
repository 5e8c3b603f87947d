//! `/admin/*` (DESIGN §8): rescan the repository now, and read the audit log.

use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};
use serde_json::{json, Value};

use std::sync::Arc;

use super::error::ApiError;
use super::models;
use crate::auth::Caller;
use crate::config::{Canary, Routing};
use crate::lifecycle::{self, RoutingError};
use crate::repository::{Change, LookupError, ModelEntry};
use crate::state::AppState;

/// The actor of admin calls that presented no API key (`[auth] protect = "none"`).
pub const ANONYMOUS: &str = "anonymous";

/// Who made an admin call, for the audit log: the id of the API key presented, never the key.
fn actor(caller: &Option<Extension<Caller>>) -> Arc<str> {
    caller.as_ref().map_or_else(|| ANONYMOUS.into(), |Extension(Caller(id))| id.clone())
}

/// `POST /admin/reload`: rescans now and answers what changed and every model's versions and states. The
/// rescan runs in its own task: a caller that gives up (or times out) does not cancel a load halfway.
pub async fn reload(State(state): State<AppState>, caller: Option<Extension<Caller>>) -> Result<Json<Value>, ApiError> {
    let rescanning = state.clone();
    let actor = actor(&caller);
    let reloaded = tokio::spawn(async move { lifecycle::reload(&rescanning, &actor, lifecycle::Trigger::Asked).await })
        .await
        .map_err(|e| ApiError::internal(format!("reload task failed: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let changes: Vec<Value> = reloaded
        .changes
        .iter()
        .map(|change| {
            let mut answer = json!({"model": change.model(), "version": change.version(), "action": change.action()});
            if let Change::Failed { reason, .. } = change {
                answer["reason"] = json!(reason);
            }
            answer
        })
        .collect();
    let table = state.models.load();
    let mut answer = json!({"changes": changes, "models": models::statuses(&table)});
    if let Some(keys) = reloaded.api_keys {
        answer["api_keys"] = lifecycle::keys_json(&keys);
    }
    Ok(Json(answer))
}

/// `GET /admin/audit?limit=N`: the last N events (default 100), oldest first. The query is read by hand so
/// that every malformed one (a repeated or non-numeric `limit`) gets a JSON 400 naming it.
pub async fn audit(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_query", message).with_field("limit");
    let mut limits = query.iter().flat_map(|q| q.split('&')).filter_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == "limit").then_some(value)
    });
    let limit = match (limits.next(), limits.next()) {
        (None, _) => 100,
        (Some(_), Some(_)) => return Err(invalid("limit: given more than once".to_string())),
        (Some(text), None) => text
            .parse::<usize>()
            .map_err(|_| invalid(format!("limit: expected a non-negative integer, got '{text}'")))?,
    };
    Ok(Json(json!({"events": state.lifecycle.audit.recent(limit)})))
}

/// `GET /admin/models/{name}/routing`: the model's routing, and the versions it may name.
pub async fn routing(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let table = state.models.load();
    let entry = table.models.get(&name).ok_or(LookupError::UnknownModel(name))?;
    Ok(Json(routing_json(entry, &entry.routing)))
}

fn routing_json(entry: &ModelEntry, routing: &Routing) -> Value {
    let mut body = serde_json::to_value(routing).unwrap_or(Value::Null);
    body["serving_default"] = json!(entry.default_version().version);
    body["loaded_versions"] = json!(entry.versions.keys().collect::<Vec<_>>());
    body
}

/// `PUT /admin/models/{name}/routing`: `{"default": 1, "canary": {"version": 2, "weight": 0.1}, "shadow": 3}`;
/// absent keys stay as they are, `null` clears. 404 for an unknown model, 422 for a version that is not
/// loaded or a weight outside [0, 1].
pub async fn set_routing(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let update: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(update) = update else {
        return Err(ApiError::unprocessable(
            "wrong_shape",
            "expected an object with \"default\", \"canary\" or \"shadow\"",
        ));
    };
    if let Some(key) = update.keys().find(|k| !matches!(k.as_str(), "default" | "canary" | "shadow")) {
        return Err(ApiError::unprocessable(
            "unknown_key",
            format!("'{key}': routing has \"default\", \"canary\" and \"shadow\""),
        )
        .with_field(key.clone()));
    }
    let apply = |entry: &ModelEntry| -> Result<Routing, String> {
        let mut routing = entry.routing.clone();
        let loaded = |field: &str, value: &Value| -> Result<u64, String> {
            let version = value
                .as_u64()
                .filter(|v| *v > 0)
                .ok_or(format!("{field}: expected a version number or null, got {value}"))?;
            entry.loaded_version(field, version)
        };
        if let Some(value) = update.get("default") {
            routing.default = if value.is_null() { None } else { Some(loaded("default", value)?) };
        }
        if let Some(value) = update.get("shadow") {
            routing.shadow = if value.is_null() { None } else { Some(loaded("shadow", value)?) };
        }
        if let Some(value) = update.get("canary") {
            routing.canary = match value {
                Value::Null => None,
                Value::Object(canary) => {
                    if let Some(key) = canary.keys().find(|k| !matches!(k.as_str(), "version" | "weight")) {
                        return Err(format!("canary.{key}: a canary has \"version\" and \"weight\""));
                    }
                    let version = loaded("canary.version", canary.get("version").unwrap_or(&Value::Null))?;
                    let weight = canary
                        .get("weight")
                        .and_then(Value::as_f64)
                        .ok_or("canary.weight: expected a number in [0, 1]".to_string())
                        .and_then(Canary::checked_weight)?;
                    Some(Canary { version, weight })
                }
                other => return Err(format!("canary: expected {{\"version\", \"weight\"}} or null, got {other}")),
            };
        }
        Ok(routing)
    };
    match lifecycle::set_routing(&state, &name, apply, &actor(&caller)).await {
        Ok(routing) => {
            let table = state.models.load();
            let entry = table.models.get(&name).ok_or(LookupError::UnknownModel(name.clone()))?;
            Ok(Json(routing_json(entry, &routing)))
        }
        Err(RoutingError::UnknownModel) => Err(LookupError::UnknownModel(name).into()),
        Err(RoutingError::Invalid(message)) => {
            let field = message.split(':').next().unwrap_or("").to_string();
            Err(ApiError::unprocessable("invalid_routing", message).with_field(field))
        }
    }
}
