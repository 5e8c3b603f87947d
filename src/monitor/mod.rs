//! Watching the server and its models (DESIGN §6):
//!
//! - [`metrics`]: the one Prometheus registry and its typed recording helpers;
//! - [`mod@reference`]: the drift reference profile shipped with each model version;
//! - [`drift`]: binning, PSI and Jensen–Shannon over a ring buffer of recent observations;
//! - [`version`]: everything watched per model version (drift windows, live accuracy), read at scrape time;
//! - [`feedback`]: predictions remembered by id until their ground truth arrives;
//! - [`prediction_log`]: the sampled JSON-lines log of predictions, written off the request path.

pub mod drift;
pub mod feedback;
pub mod metrics;
pub mod prediction_log;
pub mod reference;
pub mod version;

pub use metrics::Metrics;
pub use version::VersionMonitor;

/// Drift window length and PSI thresholds of one model version (its manifest's, or the server's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftSettings {
    /// Observations per drift window (and matched feedback pairs per live-accuracy window).
    pub window: usize,
    pub psi_warning: f64,
    pub psi_critical: f64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings { window: 1000, psi_warning: 0.1, psi_critical: 0.25 }
    }
}

impl DriftSettings {
    /// Checks the values; the error names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.window == 0 || self.window > 10_000_000 {
            return Err(format!("window: expected 1 to 10000000 observations, got {}", self.window));
        }
        if !(self.psi_warning.is_finite() && self.psi_warning > 0.0) {
            return Err(format!("psi_warning: expected a positive number, got {}", self.psi_warning));
        }
        if !(self.psi_critical.is_finite() && self.psi_critical >= self.psi_warning) {
            return Err(format!(
                "psi_critical: expected a number at least psi_warning ({}), got {}",
                self.psi_warning, self.psi_critical
            ));
        }
        Ok(())
    }
}
