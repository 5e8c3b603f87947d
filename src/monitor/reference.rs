//! The drift reference profile (`reference.json`, DESIGN §6): per raw feature and for the predictions, the
//! training data's bin shares. Parsed and checked at load; the drift windows compare live traffic with it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::repository::manifest::{FeatureType, Manifest};

#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceProfile {
    pub rows: u64,
    pub features: BTreeMap<String, Profile>,
    pub prediction: Profile,
}

/// Shares of one variable: numeric bins (interior `edges`) or categories plus a last "other" share; `missing`
/// is the share of missing values, and `ratios` plus `missing` sum to 1.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Profile {
    Number { edges: Vec<f64>, ratios: Vec<f64>, missing: f64 },
    Category { categories: Vec<String>, ratios: Vec<f64>, missing: f64 },
}

impl Profile {
    fn check(&self, what: &str) -> Result<(), String> {
        let (bins, ratios, missing) = match self {
            Profile::Number { edges, ratios, missing } => {
                if edges.windows(2).any(|w| w[0] >= w[1]) || edges.iter().any(|e| !e.is_finite()) {
                    return Err(format!("{what}.edges: must be finite and strictly increasing"));
                }
                (edges.len() + 1, ratios, missing)
            }
            Profile::Category { categories, ratios, missing } => (categories.len() + 1, ratios, missing),
        };
        if ratios.len() != bins {
            return Err(format!("{what}.ratios: expected {bins} shares, got {}", ratios.len()));
        }
        let total: f64 = ratios.iter().sum::<f64>() + missing;
        if ratios.iter().chain([missing]).any(|r| !(0.0..=1.0).contains(r)) || (total - 1.0).abs() > 1e-6 {
            return Err(format!("{what}: shares must lie in [0, 1] and sum to 1 (got {total})"));
        }
        Ok(())
    }
}

impl ReferenceProfile {
    /// Reads `reference.json` and checks it against the manifest's features.
    pub fn from_path(path: &Path, manifest: &Manifest) -> Result<ReferenceProfile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let profile: ReferenceProfile = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        profile.check(manifest)?;
        Ok(profile)
    }

    /// Checks the profile against the manifest's features; the error names the offending key.
    pub fn check(&self, manifest: &Manifest) -> Result<(), String> {
        let profile = self;
        for (name, feature) in &profile.features {
            let spec = manifest
                .features
                .iter()
                .find(|f| &f.name == name)
                .ok_or_else(|| format!("features.{name}: not a feature of the manifest"))?;
            let kind_matches = matches!(
                (feature, spec.kind),
                (Profile::Number { .. }, FeatureType::Number) | (Profile::Category { .. }, FeatureType::Category)
            );
            if !kind_matches {
                return Err(format!("features.{name}.kind: does not match the manifest's type"));
            }
            feature.check(&format!("features.{name}"))?;
        }
        profile.prediction.check("prediction")
    }
}
