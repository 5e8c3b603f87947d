//! Reading a JSON request body as hostile input: content type first (415), declared and actual size (413),
//! then parsing with the path of the offending value in every error. JSON has no NaN or infinity; clients
//! that write them (Python's `json.dumps` does) get a `non_finite_number` error naming the field.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::error::ApiError;

/// Is the request's content type `application/json` (any parameters, any case)?
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

pub fn body_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body exceeds the limit of {limit} bytes"),
    )
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_bytes(headers: &HeaderMap, body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(body_too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        // to_bytes fails either on the limit or on a broken connection; the source says which.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(e) = source {
            if e.is::<http_body_util::LengthLimitError>() {
                return body_too_large(limit);
            }
            source = e.source();
        }
        ApiError::bad_request("malformed_body", format!("cannot read the request body: {error}"))
    })
}

/// Checks the content type and reads the body of a JSON request (parse it with [`parse_json`]).
pub async fn read_json_bytes(headers: &HeaderMap, body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    if !is_json(headers) {
        let got = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none");
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected content type application/json, got {got}"),
        ));
    }
    read_bytes(headers, body, limit).await
}

/// Parses a JSON document, naming the path of the value at fault.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: Value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        classify(bytes, &path, error.inner())
    })?;
    deserializer.end().map_err(|error| classify(bytes, ".", &error))?;
    Ok(value)
}

/// Refuses (422 `unknown_field`) a JSON object holding a key not in `known`; `path` is the object's own
/// field path ("" at the root), `hint` says what the object should hold.
pub fn refuse_unknown_keys(
    fields: &Map<String, Value>,
    known: &[&str],
    path: &str,
    hint: &str,
) -> Result<(), ApiError> {
    match fields.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(unknown_key(key, path, hint)),
        None => Ok(()),
    }
}

/// 422 `unknown_field` for `key` of the object at `path` ("" at the root); `hint` says what it should hold.
pub fn unknown_key(key: &str, path: &str, hint: &str) -> ApiError {
    let field = if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    ApiError::unprocessable("unknown_field", format!("unknown field '{field}': {hint}")).with_field(field)
}

fn classify(bytes: &[u8], path: &str, error: &serde_json::Error) -> ApiError {
    let field = (path != ".").then(|| path.to_string());
    let at = offset_of(bytes, error.line(), error.column());
    let rest = &bytes[at.min(bytes.len())..];
    let non_finite = error.to_string().contains("out of range")
        || [&b"NaN"[..], b"Infinity", b"-Infinity", b"+Infinity", b"-NaN", b"inf", b"-inf"]
            .iter()
            .any(|token| rest.starts_with(token));
    let error = if non_finite {
        ApiError::bad_request(
            "non_finite_number",
            "NaN and infinite numbers are not valid JSON values; send null for a missing value",
        )
    } else {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {error}"))
    };
    match field {
        Some(field) => error.with_field(field),
        None => error,
    }
}

/// Byte offset of serde_json's 1-based (line, column) position, backed up to the start of the token.
fn offset_of(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut offset = 0;
    for _ in 1..line {
        match bytes[offset..].iter().position(|b| *b == b'\n') {
            Some(i) => offset += i + 1,
            None => return bytes.len(),
        }
    }
    let mut at = (offset + column.saturating_sub(1)).min(bytes.len());
    // serde_json reports the column of the last byte it read; walk back over the token's letters.
    while at > offset && bytes[at - 1].is_ascii_alphabetic() | (bytes[at - 1] == b'-') | (bytes[at - 1] == b'+') {
        at -= 1;
    }
    while at < bytes.len() && bytes[at].is_ascii_whitespace() {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinity_name_their_field() {
        for token in ["NaN", "Infinity", "-Infinity", "1e400"] {
            let body = format!("{{\"instances\": [{{\"a\": 1, \"mean radius\": {token}}}]}}");
            let error = parse_json(body.as_bytes()).unwrap_err();
            assert_eq!(error.code, "non_finite_number", "{token}");
            assert_eq!(error.field.as_deref(), Some("instances[0].mean radius"), "{token}");
        }
    }

    #[test]
    fn malformed_json_is_a_400() {
        for body in ["{", "{\"a\": }", "[1, 2", "{} x", "", "nul"] {
            let error = parse_json(body.as_bytes()).unwrap_err();
            assert_eq!(error.code, "malformed_json", "{body}");
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
        }
    }
}
