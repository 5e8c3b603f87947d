//! Black-box tests: each starts the real server on port 0 with the bundled sample models and speaks HTTP.
//! Expected predictions come from the fixtures that onnxruntime / scikit-learn computed at export.

mod auth;
mod bad_input;
mod batching;
mod confidence;
mod health;
mod helpers;
mod kserve;
mod lifecycle;
mod matrix;
mod metrics;
mod models;
mod monitoring;
mod overload;
mod predict;
mod prediction_log;
mod routing;
mod score;
mod shutdown;
mod tls;
