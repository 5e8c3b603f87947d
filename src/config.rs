//! Typed settings (DESIGN §7): defaults, then `config.toml`, then `INFERD_*` environment variables with `__`
//! between levels (`INFERD_SERVER__PORT=9000`). Unknown keys are errors: a misspelt limit must not silently
//! fall back to its default.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::monitor::DriftSettings;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub models: ModelsSettings,
    pub batching: BatchingSettings,
    pub monitoring: MonitoringSettings,
    pub auth: AuthSettings,
    pub audit: AuditSettings,
}

/// `[auth]` (DESIGN §9): API keys, and which endpoints need one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// The name of an environment variable holding `id:key` pairs separated by commas (read at startup).
    pub api_keys_env: Option<String>,
    /// A file of `id:key` lines (`#` comments and blank lines allowed), re-read on SIGHUP and
    /// `POST /admin/reload`.
    pub api_keys_file: Option<PathBuf>,
    pub protect: Protect,
    /// Whether `/metrics` needs a key too.
    pub protect_metrics: bool,
}

/// Which endpoints need an API key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protect {
    /// None (keys, if any, only name their callers in the logs).
    #[default]
    None,
    /// `/admin/*`.
    Admin,
    /// Every endpoint but liveness, readiness (`/health/live`, `/health/ready`, `/v2/health/*`) and
    /// `/metrics` (unless `protect_metrics`).
    All,
}

/// `[server.tls]`: serve HTTPS with this certificate chain and private key (PEM files).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// Where a model's unpinned requests go (DESIGN §8). Pinned requests (`/versions/{v}/`) bypass it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// The version unpinned requests use (none: the highest loaded one).
    pub default: Option<u64>,
    /// A version that takes `weight` of the unpinned requests.
    pub canary: Option<Canary>,
    /// A version that also runs every unpinned request off the request path, its answers only compared.
    pub shadow: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    pub version: u64,
    /// The share of unpinned requests, in [0, 1].
    pub weight: f64,
}

impl Canary {
    /// `weight` if it is a share of requests, in [0, 1].
    pub fn checked_weight(weight: f64) -> Result<f64, String> {
        match (0.0..=1.0).contains(&weight) {
            true => Ok(weight),
            false => Err("canary.weight: expected a number in [0, 1]".to_string()),
        }
    }
}

/// `[audit]`: where lifecycle events (loads, failures, unloads, reloads) are appended as JSON lines.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The audit log file (none: events are kept in memory only, for `GET /admin/audit`).
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub addr: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Most instances in one request (413 `too_many_instances` beyond).
    pub max_instances: usize,
    /// A prediction request still unanswered after this long gets 503 `timeout` (0 = no limit).
    pub request_timeout_ms: u64,
    /// Most requests inside handlers at once; more get 429 `overloaded` at once.
    pub max_in_flight: usize,
    /// After SIGTERM, keep serving (with readiness false) this long before closing the listener.
    pub shutdown_delay_s: f64,
    /// Then wait at most this long for in-flight requests.
    pub shutdown_timeout_s: f64,
    /// HTTPS (none: plain HTTP, TLS ended at the ingress).
    pub tls: Option<TlsSettings>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            addr: "127.0.0.1".into(),
            port: 8080,
            max_body_bytes: 8 * 1024 * 1024,
            max_instances: 4096,
            request_timeout_ms: 30_000,
            max_in_flight: 1024,
            shutdown_delay_s: 0.0,
            shutdown_timeout_s: 30.0,
            tls: None,
        }
    }
}

/// Which versions of each model to load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VersionPolicy {
    #[default]
    Latest,
    All,
    List(Vec<u64>),
}

impl Serialize for VersionPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            VersionPolicy::Latest => s.serialize_str("latest"),
            VersionPolicy::All => s.serialize_str("all"),
            VersionPolicy::List(list) => list.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for VersionPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<u64>),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "latest" => Ok(VersionPolicy::Latest),
            Raw::Word(w) if w == "all" => Ok(VersionPolicy::All),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "versions: expected \"latest\", \"all\" or a list of versions, got \"{w}\""
            ))),
            Raw::List(list) if list.is_empty() || list.contains(&0) => {
                Err(serde::de::Error::custom("versions: a list of positive version numbers is expected"))
            }
            Raw::List(list) => Ok(VersionPolicy::List(list)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsSettings {
    /// The model repository (relative paths are relative to the working directory).
    pub repository: PathBuf,
    /// The model `POST /predict` serves (default: the only model, if there is one).
    pub default: Option<String>,
    pub versions: VersionPolicy,
    /// Routing per model at startup (`[models.routing.NAME]`); `PUT /admin/models/{name}/routing` changes it at
    /// runtime.
    pub routing: std::collections::BTreeMap<String, Routing>,
    /// Seconds between rescans of the repository for new, changed and removed versions (0 = never; SIGHUP
    /// and `POST /admin/reload` rescan at any time).
    pub poll_interval_s: f64,
}

impl Default for ModelsSettings {
    fn default() -> Self {
        ModelsSettings {
            repository: PathBuf::from("models"),
            default: None,
            versions: VersionPolicy::Latest,
            routing: Default::default(),
            poll_interval_s: 0.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingSettings {
    /// Most rows in one model run: queued requests are gathered into batches up to this size.
    pub max_batch_size: usize,
    /// How long (µs, from the oldest request's arrival) a batch may wait to fill; 0 = never wait, batch only
    /// what queued while the previous batch ran.
    pub max_delay_us: u64,
    /// Rows that may wait per model version; a request that would exceed it gets 503 `queue_full`.
    pub queue_capacity: usize,
    /// Inference threads, and batches of one version that may run at once (0 = one per CPU core).
    pub workers: usize,
}

impl Default for BatchingSettings {
    fn default() -> Self {
        BatchingSettings { max_batch_size: 64, max_delay_us: 0, queue_capacity: 16_384, workers: 0 }
    }
}

impl BatchingSettings {
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// What happens to a classification whose confidence is below the manifest's `min_confidence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LowConfidencePolicy {
    /// Answer it, with `"low_confidence": true`.
    #[default]
    Flag,
    /// Refuse the request with 422 `low_confidence`.
    Reject,
    /// Answer the manifest's `fallback_label` instead (flagged too).
    Fallback,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringSettings {
    /// Off: no drift windows, prediction metrics, feedback memory or prediction log (a switch to measure
    /// what monitoring costs).
    pub enabled: bool,
    /// Drift window and PSI thresholds for manifests that do not set their own.
    pub window: usize,
    pub psi_warning: f64,
    pub psi_critical: f64,
    pub low_confidence: LowConfidencePolicy,
    /// Predictions remembered for `POST /feedback`; the oldest is evicted beyond it (0 = remember none).
    pub feedback_capacity: usize,
    pub prediction_log: PredictionLogSettings,
}

impl Default for MonitoringSettings {
    fn default() -> Self {
        let drift = DriftSettings::default();
        MonitoringSettings {
            enabled: true,
            window: drift.window,
            psi_warning: drift.psi_warning,
            psi_critical: drift.psi_critical,
            low_confidence: LowConfidencePolicy::Flag,
            feedback_capacity: 100_000,
            prediction_log: PredictionLogSettings::default(),
        }
    }
}

impl MonitoringSettings {
    pub fn drift_defaults(&self) -> DriftSettings {
        DriftSettings { window: self.window, psi_warning: self.psi_warning, psi_critical: self.psi_critical }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictionLogSettings {
    /// JSON lines file; none = no prediction log.
    pub path: Option<PathBuf>,
    /// Share of predictions written, in [0, 1].
    pub sample_rate: f64,
    /// The file is rotated (`path.1`, `path.2`, …) before it would grow past this size.
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub max_files: usize,
    /// Requests waiting for the writer thread; beyond it records are dropped and counted, never blocking.
    pub queue_capacity: usize,
}

impl Default for PredictionLogSettings {
    fn default() -> Self {
        PredictionLogSettings {
            path: None,
            sample_rate: 1.0,
            max_bytes: 100 * 1024 * 1024,
            max_files: 5,
            queue_capacity: 16_384,
        }
    }
}

impl Settings {
    /// Defaults, then the TOML file (if `path` is given it must exist; otherwise `config.toml` is read when
    /// present), then `INFERD_*` environment variables.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match path {
            Some(path) => {
                anyhow::ensure!(path.is_file(), "{}: configuration file not found", path.display());
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new("config.toml").is_file() => figment = figment.merge(Toml::file_exact("config.toml")),
            None => {}
        }
        figment = figment.merge(Env::prefixed("INFERD_").filter(|key| key.as_str().contains("__")).split("__"));
        let settings: Settings = figment.extract().map_err(|e| anyhow::anyhow!("configuration: {}", one_line(&e)))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let s = &self.server;
        anyhow::ensure!(s.max_body_bytes > 0, "configuration: server.max_body_bytes must be positive");
        anyhow::ensure!(s.max_instances > 0, "configuration: server.max_instances must be positive");
        anyhow::ensure!(s.max_in_flight > 0, "configuration: server.max_in_flight must be positive");
        anyhow::ensure!(
            s.shutdown_delay_s >= 0.0 && s.shutdown_timeout_s >= 0.0,
            "configuration: server.shutdown_delay_s and shutdown_timeout_s must not be negative"
        );
        let poll = self.models.poll_interval_s;
        anyhow::ensure!(
            poll.is_finite() && poll >= 0.0,
            "configuration: models.poll_interval_s must be a number of seconds, 0 or more"
        );
        anyhow::ensure!(self.batching.queue_capacity > 0, "configuration: batching.queue_capacity must be positive");
        anyhow::ensure!(self.batching.max_batch_size > 0, "configuration: batching.max_batch_size must be positive");
        anyhow::ensure!(
            self.batching.max_delay_us <= 1_000_000,
            "configuration: batching.max_delay_us must be at most 1000000 (one second)"
        );
        let m = &self.monitoring;
        m.drift_defaults().validate().map_err(|e| anyhow::anyhow!("configuration: monitoring.{e}"))?;
        let log = &m.prediction_log;
        anyhow::ensure!(
            (0.0..=1.0).contains(&log.sample_rate),
            "configuration: monitoring.prediction_log.sample_rate must lie in [0, 1]"
        );
        anyhow::ensure!(log.max_bytes > 0, "configuration: monitoring.prediction_log.max_bytes must be positive");
        anyhow::ensure!(
            log.queue_capacity > 0,
            "configuration: monitoring.prediction_log.queue_capacity must be positive"
        );
        Ok(())
    }
}

fn one_line(error: &figment::Error) -> String {
    error.clone().into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_policies_parse() {
        let parse = |v: &str| toml::from_str::<ModelsSettings>(&format!("versions = {v}"));
        assert_eq!(parse("\"all\"").unwrap().versions, VersionPolicy::All);
        assert_eq!(parse("[1, 3]").unwrap().versions, VersionPolicy::List(vec![1, 3]));
        assert!(parse("\"newest\"").is_err());
        assert!(parse("[0]").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("[server]\nprot = 1").is_err());
    }
}
