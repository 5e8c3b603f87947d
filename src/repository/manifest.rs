//! The manifest (`inferd.toml`): what a model version expects, how its raw features become the model's
//! input row, and how its outputs are read.
//!
//! Parsing is strict (`deny_unknown_fields`): a typo in a manifest is an error at load, never a silently
//! ignored setting. [`Manifest::from_path`] parses the TOML; the semantic checks that tie features, steps and
//! outputs together live in [`crate::preprocess::Pipeline::compile`] and in the loader, so every error names
//! the file and the field.

use std::path::Path;

use serde::Deserialize;

use super::RepositoryError;
use crate::monitor::DriftSettings;

/// The whole manifest of one model version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub model: ModelSection,
    pub features: Vec<FeatureSpec>,
    #[serde(default)]
    pub preprocess: Vec<StepSpec>,
    pub outputs: OutputsSpec,
    #[serde(default)]
    pub monitoring: MonitoringSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Regression,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub task: Task,
    #[serde(default)]
    pub description: String,
    /// The model's input row by feature name; defaults to the `[[features]]` order.
    pub input_order: Option<Vec<String>>,
    /// Free-form model card, shown as JSON by `GET /models/{name}`.
    #[serde(default)]
    pub card: toml::Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureType {
    Number,
    Category,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FeatureType,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default = "default_true")]
    pub required: bool,
}

fn default_true() -> bool {
    true
}

/// A value an impute step puts in place of a missing one: a number, or a category's string.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ImputeValue {
    Number(f64),
    Category(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandleUnknown {
    /// An unseen category encodes as all zeros (scikit-learn's `handle_unknown="ignore"`).
    #[default]
    Ignore,
    /// An unseen category is refused with a 400.
    Error,
}

/// One `[[preprocess]]` step. Every array holds one entry per name in `features`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepSpec {
    Impute {
        features: Vec<String>,
        values: Vec<ImputeValue>,
    },
    StandardScale {
        features: Vec<String>,
        mean: Vec<f64>,
        scale: Vec<f64>,
    },
    MinMaxScale {
        features: Vec<String>,
        min: Vec<f64>,
        scale: Vec<f64>,
    },
    RobustScale {
        features: Vec<String>,
        center: Vec<f64>,
        scale: Vec<f64>,
    },
    Clip {
        features: Vec<String>,
        lower: Vec<f64>,
        upper: Vec<f64>,
    },
    Log1p {
        features: Vec<String>,
    },
    OneHot {
        features: Vec<String>,
        categories: Vec<String>,
        #[serde(default)]
        handle_unknown: HandleUnknown,
    },
    Ordinal {
        features: Vec<String>,
        categories: Vec<String>,
        /// Code for an unseen category; absent means unseen categories are refused.
        unknown_value: Option<f64>,
    },
    Passthrough {
        features: Vec<String>,
    },
}

impl StepSpec {
    pub fn op_name(&self) -> &'static str {
        match self {
            StepSpec::Impute { .. } => "impute",
            StepSpec::StandardScale { .. } => "standard_scale",
            StepSpec::MinMaxScale { .. } => "min_max_scale",
            StepSpec::RobustScale { .. } => "robust_scale",
            StepSpec::Clip { .. } => "clip",
            StepSpec::Log1p { .. } => "log1p",
            StepSpec::OneHot { .. } => "one_hot",
            StepSpec::Ordinal { .. } => "ordinal",
            StepSpec::Passthrough { .. } => "passthrough",
        }
    }

    pub fn features(&self) -> &[String] {
        match self {
            StepSpec::Impute { features, .. }
            | StepSpec::StandardScale { features, .. }
            | StepSpec::MinMaxScale { features, .. }
            | StepSpec::RobustScale { features, .. }
            | StepSpec::Clip { features, .. }
            | StepSpec::Log1p { features }
            | StepSpec::OneHot { features, .. }
            | StepSpec::Ordinal { features, .. }
            | StepSpec::Passthrough { features } => features,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsSpec {
    /// Class index → label (classification).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Name of the ONNX output holding `[N, K]` class probabilities (classification).
    pub probabilities: Option<String>,
    /// Name of the ONNX output holding `[N]` or `[N, 1]` values (regression).
    pub value: Option<String>,
}

/// `[monitoring]`: unset drift keys fall back to the server's `[monitoring]` defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSpec {
    pub window: Option<usize>,
    pub psi_warning: Option<f64>,
    pub psi_critical: Option<f64>,
    /// Classifications less confident than this are flagged (and handled by the low-confidence policy).
    #[serde(default)]
    pub min_confidence: f64,
    /// The label answered instead of a low-confidence one under `low_confidence = "fallback"`.
    pub fallback_label: Option<String>,
}

impl MonitoringSpec {
    /// The drift settings of this version: its own keys, else `defaults`.
    pub fn drift(&self, defaults: DriftSettings) -> DriftSettings {
        DriftSettings {
            window: self.window.unwrap_or(defaults.window),
            psi_warning: self.psi_warning.unwrap_or(defaults.psi_warning),
            psi_critical: self.psi_critical.unwrap_or(defaults.psi_critical),
        }
    }

    /// Checks the keys against the task; the error names the key.
    pub fn validate(&self, task: Task, defaults: DriftSettings) -> Result<(), String> {
        self.drift(defaults).validate().map_err(|e| format!("monitoring.{e}"))?;
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(format!("monitoring.min_confidence: expected a number in [0, 1], got {}", self.min_confidence));
        }
        match (&self.fallback_label, task) {
            (Some(_), Task::Regression) => {
                Err("monitoring.fallback_label: a regression model has no labels to fall back to".into())
            }
            (Some(label), _) if label.is_empty() => Err("monitoring.fallback_label: must not be empty".into()),
            _ => Ok(()),
        }
    }
}

impl Manifest {
    /// Reads and parses `inferd.toml`; the error is one line naming the file, the line and the field.
    pub fn from_path(path: &Path) -> Result<Manifest, RepositoryError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| RepositoryError::Io { path: path.to_path_buf(), source })?;
        Manifest::from_toml(&text).map_err(|message| RepositoryError::Manifest { path: path.to_path_buf(), message })
    }

    /// Parses manifest text; the error is one line (`line N: message`).
    pub fn from_toml(text: &str) -> Result<Manifest, String> {
        toml::from_str::<Manifest>(text).map_err(|err| {
            let message = err.message().trim().replace('\n', " ");
            match err.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {message}")
                }
                None => message,
            }
        })
    }

    /// The model's input row by feature name.
    pub fn input_order(&self) -> Vec<String> {
        match &self.model.input_order {
            Some(order) => order.clone(),
            None => self.features.iter().map(|f| f.name.clone()).collect(),
        }
    }

    /// The card as JSON (TOML datetimes become RFC 3339 strings).
    pub fn card_json(&self) -> serde_json::Value {
        toml_to_json(&toml::Value::Table(self.model.card.clone()))
    }
}

fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => J::Object(table.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[model]
task = "classification"
[[features]]
name = "a"
type = "number"
[[preprocess]]
op = "standard_scale"
features = ["a"]
mean = [1.0]
scale = [2.0]
[outputs]
labels = ["x", "y"]
probabilities = "probabilities"
"#;

    #[test]
    fn parses_a_minimal_manifest() {
        let manifest = Manifest::from_toml(MINIMAL).unwrap();
        assert_eq!(manifest.model.task, Task::Classification);
        assert_eq!(manifest.features[0].kind, FeatureType::Number);
        assert!(manifest.features[0].required);
        assert_eq!(manifest.preprocess[0].op_name(), "standard_scale");
        assert_eq!(manifest.monitoring.drift(DriftSettings::default()).window, 1000);
        assert_eq!(manifest.input_order(), vec!["a".to_string()]);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let text = MINIMAL.replace("scale = [2.0]", "scale = [2.0]\nwidth = 3");
        let err = Manifest::from_toml(&text).unwrap_err();
        assert!(err.contains("width"), "{err}");
        // toml reports an internally tagged table's error at the table's header line.
        assert!(err.starts_with("line 7:"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn unknown_ops_are_refused() {
        let text = MINIMAL.replace("standard_scale", "zscore");
        let err = Manifest::from_toml(&text).unwrap_err();
        assert!(err.contains("zscore"), "{err}");
    }
}
