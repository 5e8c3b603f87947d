//! The HTTP layer: it only translates. Each file owns one group of routes; [`error`] is the single place
//! errors become status codes, and [`body`] the single place request bodies are read.
//!
//! Layers, outermost first: `track` counts and times every routed request; `authenticate` answers 401
//! where `[auth]` asks for an API key (before any limit: a stranger never takes a permit); then prediction and
//! model routes sit behind the `max_in_flight` limit and the request timeout. Health, readiness and
//! `/metrics` are outside those limits, so they answer under any load.

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
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;

use crate::auth::{self, Caller};
use crate::state::AppState;
use error::{ApiError, Rejected};

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
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
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
    if let Some(Rejected(reason)) = response.extensions().get::<Rejected>() {
        state.metrics.record_rejected(reason);
    }
    if let Some(endpoint) = endpoint {
        let (model, version) =
            response.extensions().get::<ServedBy>().map_or(("", ""), |s| (s.model.as_str(), s.version.as_str()));
        let status = response.status();
        let seconds = started.elapsed().as_secs_f64();
        state.metrics.record_request(model, version, endpoint.as_str(), status.as_str(), seconds);
    }
    response
}

/// Answers 401 on a path `[auth]` guards unless the request presents a valid key; a valid key's id goes with
/// the request ([`Caller`]) wherever it is presented, for the audit and prediction logs.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if state.keys.is_empty() {
        return next.run(request).await;
    }
    let header = request.headers().get(header::AUTHORIZATION);
    let presented = header.is_some();
    let caller = header.and_then(|value| auth::bearer(value.as_bytes())).and_then(|key| state.keys.identify(key));
    match caller {
        Some(id) => {
            request.extensions_mut().insert(Caller(id));
        }
        None if state.keys.guards(request.uri().path()) => {
            return refuse(&state, request, ApiError::unauthorized(presented)).await;
        }
        None => {}
    }
    next.run(request).await
}

/// `max_in_flight` (429 at once when full) and `request_timeout_ms` (503 `timeout`). A timed-out handler is
/// dropped, which drops its place in the inference queue too.
async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let kserve = is_kserve(request.uri().path());
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return refuse(&state, request, ApiError::overloaded()).await;
    };
    match state.settings.server.request_timeout_ms {
        0 => next.run(request).await,
        ms => match tokio::time::timeout(Duration::from_millis(ms), next.run(request)).await {
            Ok(response) => response,
            Err(_) => render(kserve, ApiError::timeout()),
        },
    }
}

/// How long a refused request's body may take to arrive before the connection is closed instead.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Refuses a request from its headers the way DESIGN §9 asks: its body is read and thrown away first (up to
/// `max_body_bytes`, for at most [`DRAIN_TIMEOUT`]), so a client still sending sees the answer rather than a
/// connection reset. Nothing of the body is kept.
async fn refuse(state: &AppState, request: Request, error: ApiError) -> Response {
    let kserve = is_kserve(request.uri().path());
    let limit = state.settings.server.max_body_bytes;
    let mut body = request.into_body();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |data| data.len());
            if read > limit {
                break;
            }
        }
    });
    let _ = drained.await;
    render(kserve, error)
}

/// KServe routes answer errors their protocol's way.
fn is_kserve(path: &str) -> bool {
    path.starts_with("/v2/") || path.starts_with("/v1/")
}

fn render(kserve: bool, error: ApiError) -> Response {
    match kserve {
        true => v2::V2Error(error).into_response(),
        false => error.into_response(),
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
