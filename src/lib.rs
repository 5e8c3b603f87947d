//! inferd: a model-serving HTTP microservice.
//!
//! Data flows one way, `api → preprocess → runtime → monitor`:
//!
//! - [`config`]: typed settings from `config.toml` and `INFERD_*` environment variables.
//! - [`repository`]: the model repository on disk, manifests, loading and validating model versions.
//! - [`preprocess`]: the manifest's preprocessing steps compiled into a pipeline (raw record → model row).
//! - [`runtime`]: tract plans and the inference pool that runs them off the async executor.
//! - [`monitor`]: Prometheus metrics, drift windows, live accuracy from feedback, the prediction log.
//! - [`answer`]: how one prediction reads in answers and in the prediction log.
//! - [`api`]: the HTTP routes; it only translates between HTTP and the layers below.
//! - [`auth`]: API keys: which endpoints need one, and the key id that names a caller.
//! - [`app`]: builds the [`app::Application`] (state, router, listener) and shuts it down gracefully.
//! - [`tls`]: HTTPS with rustls when `[server.tls]` is set.
//! - [`cli`]: the `check` and `healthcheck` commands; [`score`]: batch scoring of CSV files; [`profile`]: drift
//!   reference profiles from training data.

pub mod answer;
pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod lifecycle;
pub mod monitor;
pub mod preprocess;
pub mod profile;
pub mod repository;
pub mod runtime;
pub mod score;
pub mod shadow;
pub mod state;
pub mod telemetry;
pub mod tls;
