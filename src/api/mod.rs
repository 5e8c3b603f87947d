//! The HTTP layer: it only translates. Each file owns one group of routes; [`error`] is the single place
//! errors become status codes, and [`body`] the single place request bodies are read.
//!
//! Prediction and model routes sit behind the `max_in_flight` limit and the request timeout; health,
//! readiness and `/metrics` do not, so they answer under any load.

mod admin;
pub mod body;
pub mod error;
mod feedback;
mod health;
mod models;
mod openapi;
mod predict;
mod predict_body;
mod serve;
pub mod v2;

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;
use error::ApiError;

/// Which model version answered, attached to responses so the metrics layer can label them.
#[derive(Debug, Clone)]
pub struct ServedBy {
    pub model: String,
    pub version: String,
}

pub fn router(state: AppState) -> Router {
    let work = Router::new()
        .route("/predict", post(predict::predict_default))
        .route("/models/{name}/predict", post(predict::predict_model))
        .route("/models/{name}/versions/{version}/predict", post(predict::predict_version))
        .route("/models", get(models::list))
        .route("/models/{name}", get(models::describe))
        .route("/feedback", post(feedback::feedback))
        .route("/admin/reload", post(admin::reload))
        .route("/admin/audit", get(admin::audit))
        .route("/admin/models/{name}/routing", get(admin::routing).put(admin::set_routing))
        .route("/v1/models/{target}", post(predict::v1_predict_model))
        .route("/v1/models/{name}/versions/{target}", post(predict::v1_predict_version))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route("/v2/models/{name}/infer", post(v2::infer_model))
        .route("/v2/models/{name}/versions/{version}", get(v2::version_metadata))
        .route("/v2/models/{name}/versions/{version}/ready", get(v2::version_ready))
        .route("/v2/models/{name}/versions/{version}/infer", post(v2::infer_version))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit));
    let open = Router::new()
        .route("/health", get(health::summary))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready));
    work.merge(open)
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Counts and times every routed request, labelled by route template and the model version that answered.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !state.monitoring() {
        return next.run(request).await;
    }
    let started = Instant::now();
    let endpoint = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    if let Some(endpoint) = endpoint {
        let (model, version) =
            response.extensions().get::<ServedBy>().map_or(("", ""), |s| (s.model.as_str(), s.version.as_str()));
        let status = response.status();
        let seconds = started.elapsed().as_secs_f64();
        state.metrics.record_request(model, version, endpoint.as_str(), status.as_str(), seconds);
    }
    response
}

/// `max_in_flight` (429 at once when full) and `request_timeout_ms` (503 `timeout`). A timed-out handler is
/// dropped, which drops its place in the inference queue too.
async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // KServe routes answer errors their protocol's way.
    let path = request.uri().path();
    let kserve = path.starts_with("/v2/") || path.starts_with("/v1/");
    let refuse = |error: ApiError| if kserve { v2::V2Error(error).into_response() } else { error.into_response() };
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return refuse(ApiError::overloaded());
    };
    match state.settings.server.request_timeout_ms {
        0 => next.run(request).await,
        ms => match tokio::time::timeout(Duration::from_millis(ms), next.run(request)).await {
            Ok(response) => response,
            Err(_) => refuse(ApiError::timeout()),
        },
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", request.method(), request.uri().path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
    )
}
