//! The one place where errors become HTTP answers: status code, machine-readable `code`, a message a person
//! can act on, and the JSON path of the offending `field` (DESIGN §5):
//! `{"error": {"code": "missing_feature", "message": "…", "field": "instances[3].mean radius"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::monitor::metrics::REJECTION_REASONS;
use crate::preprocess::{PreprocessError, PreprocessErrorKind, RecordError, RecordErrorKind};
use crate::repository::LookupError;
use crate::runtime::RuntimeError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds for `Retry-After` (overload answers).
    pub retry_after_s: Option<u32>,
    /// `WWW-Authenticate` (401 answers).
    pub challenge: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None, retry_after_s: None, challenge: None }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Valid JSON of the wrong shape.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 413 for a request holding `count` items where `limit` are allowed (`noun`: "instances", "items").
    pub fn too_many(code: &'static str, noun: &str, count: usize, limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code,
            format!("{count} {noun} in one request; the limit is {limit}"),
        )
        .with_field(noun)
    }

    /// 500: a failure of inferd itself, never of the request.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string())
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn overloaded() -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", "too many requests in flight; retry shortly")
            .retry_after(1)
    }

    /// 401: no API key, or one inferd does not hold (`invalid`), on an endpoint that needs one.
    pub fn unauthorized(invalid: bool) -> ApiError {
        let (message, challenge) = match invalid {
            false => (
                "this endpoint needs an API key: send the header Authorization: Bearer <key>",
                r#"Bearer realm="inferd""#,
            ),
            true => ("the API key is not valid", r#"Bearer realm="inferd", error="invalid_token""#),
        };
        let mut error = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).with_field("Authorization");
        error.challenge = Some(challenge);
        error
    }

    pub fn timeout() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request was not answered within the server's time limit",
        )
        .retry_after(1)
    }
}

/// Marks an answer as a refusal, for `inferd_rejected_total{reason}` (counted by the request layer).
#[derive(Debug, Clone, Copy)]
pub struct Rejected(pub &'static str);

impl ApiError {
    /// The headers every rendering of this error carries (`Retry-After`, `WWW-Authenticate`), and the
    /// [`Rejected`] mark when it refuses a request before any work.
    pub fn decorate(&self, response: &mut Response) {
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(reason) = REJECTION_REASONS.iter().find(|r| **r == self.code) {
            response.extensions_mut().insert(Rejected(reason));
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { error: Detail { code: self.code, message: &self.message, field: self.field.as_deref() } };
        let mut response = (self.status, axum::Json(body)).into_response();
        self.decorate(&mut response);
        response
    }
}

impl From<LookupError> for ApiError {
    fn from(error: LookupError) -> ApiError {
        let code = match error {
            LookupError::UnknownModel(_) | LookupError::NoDefault => "unknown_model",
            LookupError::UnknownVersion { .. } => "unknown_version",
        };
        ApiError::new(StatusCode::NOT_FOUND, code, error.to_string())
    }
}

impl From<RecordError> for ApiError {
    fn from(error: RecordError) -> ApiError {
        let (status, code) = match error.kind {
            RecordErrorKind::WrongType { .. } => (StatusCode::BAD_REQUEST, "wrong_type"),
            RecordErrorKind::Missing => (StatusCode::BAD_REQUEST, "missing_feature"),
            RecordErrorKind::Unknown => (StatusCode::BAD_REQUEST, "unknown_feature"),
            RecordErrorKind::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            RecordErrorKind::WrongLength { .. } | RecordErrorKind::NotAnInstance { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "wrong_shape")
            }
        };
        let message = error.to_string();
        ApiError::new(status, code, message).with_field(error.field)
    }
}

impl From<PreprocessError> for ApiError {
    fn from(error: PreprocessError) -> ApiError {
        let code = match error.kind {
            PreprocessErrorKind::UnknownCategory { .. } => "unknown_category",
            PreprocessErrorKind::NonFinite { .. } | PreprocessErrorKind::BeyondModelRange { .. } => "invalid_value",
        };
        let field = format!("instances[{}].{}", error.record, error.feature);
        ApiError::bad_request(code, error.to_string()).with_field(field)
    }
}

impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> ApiError {
        match error {
            RuntimeError::QueueFull => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_full",
                "the inference queue is full; retry shortly",
            )
            .retry_after(1),
            RuntimeError::Stopped => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down")
                    .retry_after(1)
            }
            other => {
                tracing::error!(error = %other, "inference failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "inference failed; see the server log")
            }
        }
    }
}
