//! `fixtures.json`: raw inputs with the outputs onnxruntime / scikit-learn gave for them, written by the
//! export tool. Replaying them through inferd's own pipeline and tract plan proves a version serves what it
//! was trained to, at load and in `inferd check`.

use std::path::Path;

use serde::Deserialize;

use super::{argmax, ModelVersion};
use crate::preprocess::RecordBatch;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixtures {
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    pub cases: Vec<FixtureCase>,
}

fn default_tolerance() -> f64 {
    1e-5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureCase {
    pub input: serde_json::Value,
    pub output: Expected,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Expected {
    Class { label: String, probabilities: serde_json::Map<String, serde_json::Value> },
    Value { value: f64 },
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct FixtureReport {
    pub cases: usize,
    /// Largest absolute difference over every compared number.
    pub max_abs_diff: f64,
    /// One line per case that differs beyond the tolerance.
    pub mismatches: Vec<String>,
}

impl Fixtures {
    pub fn from_path(path: &Path) -> Result<Fixtures, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    /// Runs every case through `version`'s pipeline and plan (blocking) and compares.
    pub fn replay(&self, version: &ModelVersion) -> FixtureReport {
        let mut report = FixtureReport { cases: self.cases.len(), ..FixtureReport::default() };
        for (i, case) in self.cases.iter().enumerate() {
            if let Err(message) = self.check_case(version, case, &mut report.max_abs_diff) {
                report.mismatches.push(format!("case {i}: {message}"));
            }
        }
        report
    }

    fn check_case(&self, version: &ModelVersion, case: &FixtureCase, max_diff: &mut f64) -> Result<(), String> {
        let pipeline = &version.pipeline;
        let mut batch = RecordBatch::new(pipeline.features().len());
        pipeline.parse_instance(&case.input, "input", &mut batch).map_err(|e| e.to_string())?;
        let rows = pipeline.transform(&batch).map_err(|e| e.to_string())?;
        let output = version.plan.run(&rows, 1).map_err(|e| e.to_string())?;
        let row = output.row(0);
        let tolerance = self.tolerance;
        let mut compare = |what: &str, got: f64, want: f64| {
            let diff = (got - want).abs();
            *max_diff = max_diff.max(diff);
            if diff <= tolerance * want.abs().max(1.0) {
                Ok(())
            } else {
                Err(format!("{what}: got {got}, expected {want}"))
            }
        };
        match &case.output {
            Expected::Class { label, probabilities } => {
                let labels = version.labels();
                if probabilities.len() != labels.len() {
                    return Err(format!(
                        "expected {} probabilities, the manifest has {} labels",
                        probabilities.len(),
                        labels.len()
                    ));
                }
                for (k, name) in labels.iter().enumerate() {
                    let want = probabilities
                        .get(name)
                        .and_then(|p| p.as_f64())
                        .ok_or_else(|| format!("no probability for label '{name}'"))?;
                    compare(&format!("probability of '{name}'"), row[k] as f64, want)?;
                }
                let got = &labels[argmax(row)];
                if got != label {
                    return Err(format!("label: got '{got}', expected '{label}'"));
                }
                Ok(())
            }
            Expected::Value { value } => compare("value", row[0] as f64, *value),
        }
    }
}
