//! Watching the server: the Prometheus registry and its typed recording helpers ([`metrics`]), and the drift
//! reference profiles shipped with each model version ([`mod@reference`]).

pub mod drift;
pub mod metrics;
pub mod reference;

pub use metrics::Metrics;
