//! The HTTP ceiling of `bench/compare.py`: a bare axum handler that parses the same JSON body `/predict`
//! gets into a map and answers a fixed JSON. No model, no preprocessing, no monitoring: nothing that serves
//! a model over HTTP on this machine can beat it.
//!
//!     cargo run --release --example http_ceiling -- 127.0.0.1:8200

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;

const ANSWER: &str = r#"{"model":"ceiling","version":"1","predictions":[{"label":"benign","probabilities":{"malignant":0.1,"benign":0.9},"confidence":0.9}]}"#;

async fn predict(body: Bytes) -> impl IntoResponse {
    match serde_json::from_slice::<HashMap<String, serde_json::Value>>(&body) {
        Ok(map) => {
            std::hint::black_box(map);
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], ANSWER)
        }
        Err(_) => (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], r#"{"error":"bad json"}"#),
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8200".to_string());
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("http_ceiling listening on {}", listener.local_addr()?);
        axum::serve(listener, Router::new().route("/predict", post(predict))).await
    })
}
