//! `POST /feedback`: ground truth for earlier predictions, by id (DESIGN §5, §6).
//!
//! `{"items": [{"id": "order-17", "label": "benign"}, {"id": "…", "value": 12.3}]}` → 200
//! `{"matched": 1, "unknown_ids": ["…"], "invalid": []}`. A body of the wrong shape is refused whole (4xx);
//! past that, each item stands alone: an id never seen, evicted or already matched is counted and listed in
//! `unknown_ids`, a truth that does not fit its model (a label it does not have) in `invalid` — neither fails
//! the batch.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::body::{parse_json, read_json_bytes, refuse_unknown_keys};
use super::error::ApiError;
use crate::monitor::feedback::Lookup;
use crate::preprocess::json_type;
use crate::state::AppState;

/// One checked feedback item.
#[derive(Debug)]
struct Item {
    id: String,
    label: Option<String>,
    value: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct FeedbackAnswer {
    matched: usize,
    unknown_ids: Vec<String>,
    invalid: Vec<Invalid>,
}

#[derive(Debug, Serialize)]
struct Invalid {
    id: String,
    reason: String,
}

pub async fn feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<FeedbackAnswer>, ApiError> {
    let limits = &state.settings.server;
    let bytes = read_json_bytes(&headers, body, limits.max_body_bytes).await?;
    let items = parse_items(&parse_json(&bytes)?, limits.max_instances)?;
    if !state.monitoring() || state.feedback.capacity() == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "feedback_disabled",
            "this server remembers no predictions ([monitoring] enabled = false or feedback_capacity = 0)",
        ));
    }
    let mut answer = FeedbackAnswer { matched: 0, unknown_ids: Vec::new(), invalid: Vec::new() };
    for item in items {
        let lookup = state.feedback.take(&item.id, |remembered| {
            let monitor = &remembered.monitor;
            monitor.parse_truth(item.label.as_deref(), item.value).map_err(|reason| (reason, monitor.clone()))
        });
        match lookup {
            Lookup::Matched(remembered, truth) => {
                let monitor = &remembered.monitor;
                monitor.record_truth(remembered.predicted, truth);
                state.metrics.record_feedback(&monitor.model, &monitor.version, "matched");
                answer.matched += 1;
            }
            Lookup::Unknown => {
                state.metrics.record_feedback("", "", "unknown_id");
                answer.unknown_ids.push(item.id);
            }
            Lookup::Invalid((reason, monitor)) => {
                state.metrics.record_feedback(&monitor.model, &monitor.version, "invalid");
                answer.invalid.push(Invalid { id: item.id, reason });
            }
        }
    }
    Ok(Json(answer))
}

fn parse_items(value: &Value, max_items: usize) -> Result<Vec<Item>, ApiError> {
    let shape = |field: &str, message: String| ApiError::unprocessable("wrong_shape", message).with_field(field);
    let Value::Object(root) = value else {
        return Err(shape("", format!("expected an object with \"items\", got {}", json_type(value))));
    };
    refuse_unknown_keys(root, &["items"], "", "a feedback body has only \"items\"")?;
    let items = match root.get("items") {
        Some(Value::Array(items)) => items,
        Some(other) => return Err(shape("items", format!("expected an array of items, got {}", json_type(other)))),
        None => return Err(shape("items", "\"items\" is required".into())),
    };
    if items.is_empty() {
        return Err(ApiError::unprocessable("empty_items", "\"items\" must hold at least one item").with_field("items"));
    }
    if items.len() > max_items {
        return Err(ApiError::too_many("too_many_items", "items", items.len(), max_items));
    }
    items.iter().enumerate().map(|(i, item)| parse_item(item, &format!("items[{i}]"))).collect()
}

fn parse_item(item: &Value, path: &str) -> Result<Item, ApiError> {
    let Value::Object(fields) = item else {
        return Err(ApiError::unprocessable(
            "wrong_shape",
            format!("{path}: expected an object with \"id\" and \"label\" or \"value\", got {}", json_type(item)),
        )
        .with_field(path));
    };
    refuse_unknown_keys(fields, &["id", "label", "value"], path, "an item has \"id\" and \"label\" or \"value\"")?;
    let wrong_type = |key: &str, expected: &str, got: &Value| {
        ApiError::bad_request("wrong_type", format!("{path}.{key}: expected {expected}, got {}", json_type(got)))
            .with_field(format!("{path}.{key}"))
    };
    let id = match fields.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(other) => return Err(wrong_type("id", "a non-empty string", other)),
        None => {
            return Err(ApiError::bad_request("missing_field", format!("{path}.id: the prediction's id is required"))
                .with_field(format!("{path}.id")))
        }
    };
    let label = match fields.get("label") {
        None | Some(Value::Null) => None,
        Some(Value::String(label)) => Some(label.clone()),
        Some(other) => return Err(wrong_type("label", "a string (one of the model's labels)", other)),
    };
    let value = match fields.get("value") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(other) => return Err(wrong_type("value", "a number", other)),
    };
    if label.is_some() == value.is_some() {
        return Err(ApiError::unprocessable(
            "wrong_shape",
            format!("{path}: expected exactly one of \"label\" (classification) or \"value\" (regression)"),
        )
        .with_field(path));
    }
    Ok(Item { id, label, value })
}
