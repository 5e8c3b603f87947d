//! Everything inferd watches for one model version: a drift window per raw feature and one for the
//! predictions (against the version's `reference.json`), and the live-quality window of matched feedback.
//!
//! Requests call [`VersionMonitor::observe`] with their accepted records and the model's answers; `/feedback`
//! calls [`VersionMonitor::record_truth`]; `/metrics` reads [`VersionMonitor::drift_readings`] and
//! [`VersionMonitor::live_quality`] at scrape time. Bins are computed before the lock is taken, so the
//! critical section is a few ring-buffer writes per record; a std `Mutex` is enough, since nothing awaits
//! while holding it.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

use super::drift::{reference_shares, Binner, DriftWindows, MISSING_BIN, OTHER_BIN};
use super::metrics::VersionMetrics;
use super::prediction_log::LineTemplate;
use super::reference::{Profile, ReferenceProfile};
use super::DriftSettings;
use crate::preprocess::RecordBatch;
use crate::repository::manifest::{Manifest, Task};

/// The `feature` label of the prediction drift series.
pub const PREDICTION: &str = "_prediction";

/// One answer of the model, as monitoring sees it: the model's own class (argmax, before any fallback) and
/// its probability, or the predicted value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Predicted {
    Class { index: u32, confidence: f32 },
    Value(f32),
}

/// Ground truth for one prediction, checked against the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Truth {
    Class(u32),
    Value(f64),
}

/// One monitored variable: a raw feature (by its index in the record) or the predictions.
#[derive(Debug)]
struct Tracked {
    name: String,
    binner: Binner,
    bin_labels: Vec<String>,
}

#[derive(Debug)]
struct Drift {
    /// Monitored features with their index in the record; features without a reference profile are not.
    features: Vec<(usize, Tracked)>,
    prediction: Tracked,
    /// Bin of each class index (classification).
    class_bins: Vec<usize>,
    /// One window per monitored feature, in `features` order, then the prediction's.
    windows: Mutex<DriftWindows>,
}

/// What `/metrics` shows of one variable's drift.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReading<'a> {
    /// The feature's name, or [`PREDICTION`].
    pub name: &'a str,
    /// The `bin` label of each bin, in [`VersionMonitor::bins`] order.
    pub bin_labels: &'a [String],
    /// `None` until the first observation.
    pub psi: Option<f64>,
    pub js: Option<f64>,
    /// 0 ok, 1 warning, 2 critical (0 until the window first fills).
    pub level: u8,
    pub observations: usize,
    /// Observations ever made, per bin (same order).
    pub totals: Vec<u64>,
}

/// Live quality over the last `window` matched feedback pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LiveQuality {
    Classification { pairs: usize, accuracy: f64, macro_f1: f64 },
    Regression { pairs: usize, mae: f64 },
}

#[derive(Debug)]
enum LiveWindow {
    /// (predicted class, true class).
    Classes(VecDeque<(u32, u32)>),
    /// (predicted value, true value).
    Values(VecDeque<(f32, f64)>),
}

#[derive(Debug)]
pub struct VersionMonitor {
    pub model: String,
    pub version: String,
    pub task: Task,
    /// Class labels in probability-column order (classification).
    pub labels: Vec<String>,
    pub drift_settings: DriftSettings,
    pub min_confidence: f64,
    pub fallback_label: Option<String>,
    /// The card's `baseline` metrics (accuracy, f1, mae) that were given.
    pub baseline: Vec<(&'static str, f64)>,
    drift: Option<Drift>,
    live: Mutex<LiveWindow>,
    /// The constant parts of this version's prediction-log lines.
    pub log_template: LineTemplate,
    /// The version's answer metrics, once the server registers it (CLI commands never do).
    metrics: OnceLock<VersionMetrics>,
}

impl VersionMonitor {
    /// The monitor of one version; without a reference profile, drift is not watched (live quality still is).
    /// The error names the part of the reference profile that does not fit the manifest.
    pub fn new(
        model: &str,
        version: &str,
        manifest: &Manifest,
        reference: Option<&ReferenceProfile>,
        defaults: DriftSettings,
    ) -> Result<VersionMonitor, String> {
        let task = manifest.model.task;
        let labels = manifest.outputs.labels.clone();
        let drift_settings = manifest.monitoring.drift(defaults);
        let drift = match reference {
            Some(reference) => Some(Drift::new(manifest, reference, &labels, drift_settings.window)?),
            None => None,
        };
        let card = manifest.card_json();
        let baseline = ["accuracy", "f1", "mae"]
            .into_iter()
            .filter_map(|metric| card["baseline"][metric].as_f64().map(|v| (metric, v)))
            .collect();
        let live = match task {
            Task::Classification => LiveWindow::Classes(VecDeque::new()),
            Task::Regression => LiveWindow::Values(VecDeque::new()),
        };
        Ok(VersionMonitor {
            model: model.to_string(),
            version: version.to_string(),
            task,
            labels,
            drift_settings,
            min_confidence: manifest.monitoring.min_confidence,
            fallback_label: manifest.monitoring.fallback_label.clone(),
            baseline,
            drift,
            live: Mutex::new(live),
            metrics: OnceLock::new(),
            log_template: LineTemplate::new(model, version, &manifest.features),
        })
    }

    /// The answer metrics, when the server has registered this version.
    pub fn metrics(&self) -> Option<&VersionMetrics> {
        self.metrics.get()
    }

    /// Set once, at registration; later calls keep the first handles.
    pub fn set_metrics(&self, metrics: VersionMetrics) {
        let _ = self.metrics.set(metrics);
    }

    /// Whether a reference profile is being compared with.
    pub fn watches_drift(&self) -> bool {
        self.drift.is_some()
    }

    /// Whether this answer is below the manifest's `min_confidence`.
    pub fn is_low_confidence(&self, predicted: Predicted) -> bool {
        matches!(predicted, Predicted::Class { confidence, .. } if (confidence as f64) < self.min_confidence)
    }

    /// Whether this answer is replaced by the manifest's `fallback_label`: under the fallback policy
    /// (`policy_falls_back`), for a low-confidence classification of a model that has such a label.
    pub fn falls_back(&self, predicted: Predicted, policy_falls_back: bool) -> bool {
        policy_falls_back && self.fallback_label.is_some() && self.is_low_confidence(predicted)
    }

    /// Every monitored variable (features, then [`PREDICTION`]) with its bin labels and reference shares:
    /// the series that exist from load.
    pub fn bins(&self) -> Vec<(&str, &[String], Vec<f64>)> {
        let Some(drift) = &self.drift else { return Vec::new() };
        let windows = drift.lock();
        drift
            .tracked()
            .enumerate()
            .map(|(v, tracked)| (tracked.name.as_str(), tracked.bin_labels.as_slice(), windows.reference(v).to_vec()))
            .collect()
    }

    /// Feeds accepted records and the model's answers (one per record) into the drift windows.
    pub fn observe(&self, batch: &RecordBatch, predicted: &[Predicted]) {
        let Some(drift) = &self.drift else { return };
        // Binning is a few comparisons per value: done under the lock, it needs no buffer. Record by record,
        // each record's bins written side by side into one ring slot.
        let rows = batch.len().min(predicted.len());
        let mut windows = drift.lock();
        let last = drift.features.len();
        for (r, answer) in predicted[..rows].iter().enumerate() {
            let record = batch.record(r);
            windows.observe(|slot| {
                for ((i, tracked), bin) in drift.features.iter().zip(slot.iter_mut()) {
                    *bin = tracked.binner.bin(&record[*i]) as u32;
                }
                slot[last] = match answer {
                    Predicted::Class { index, .. } => drift.class_bins.get(*index as usize).copied().unwrap_or(0),
                    Predicted::Value(v) => drift.prediction.binner.bin_number(*v as f64),
                } as u32;
            });
        }
    }

    /// PSI, JS, level and bin totals of every monitored variable, features first, then [`PREDICTION`].
    pub fn drift_readings(&self) -> Vec<DriftReading<'_>> {
        let Some(drift) = &self.drift else { return Vec::new() };
        let settings = self.drift_settings;
        let windows = drift.lock();
        drift
            .tracked()
            .enumerate()
            .map(|(v, tracked)| {
                let (psi, js, level) = windows.reading(v, settings.psi_warning, settings.psi_critical);
                DriftReading {
                    name: &tracked.name,
                    bin_labels: &tracked.bin_labels,
                    psi,
                    js,
                    level,
                    observations: windows.len(),
                    totals: windows.totals(v),
                }
            })
            .collect()
    }

    /// Reads ground truth sent to `/feedback` for this model: a label of the model for classification, a
    /// finite number for regression.
    pub fn parse_truth(&self, label: Option<&str>, value: Option<f64>) -> Result<Truth, String> {
        match (self.task, label, value) {
            (Task::Classification, Some(label), None) => {
                self.labels.iter().position(|l| l == label).map(|i| Truth::Class(i as u32)).ok_or_else(|| {
                    format!("label '{label}' is not one of model '{}'s labels {:?}", self.model, self.labels)
                })
            }
            (Task::Classification, _, _) => {
                Err(format!("model '{}' is a classifier: feedback needs a \"label\"", self.model))
            }
            (Task::Regression, None, Some(value)) if value.is_finite() => Ok(Truth::Value(value)),
            (Task::Regression, _, _) => {
                Err(format!("model '{}' is a regressor: feedback needs a finite \"value\"", self.model))
            }
        }
    }

    /// Adds one matched (prediction, truth) pair to the live window of the last `window` pairs.
    pub fn record_truth(&self, predicted: Predicted, truth: Truth) {
        let capacity = self.drift_settings.window;
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match (&mut *live, predicted, truth) {
            (LiveWindow::Classes(pairs), Predicted::Class { index, .. }, Truth::Class(truth)) => {
                push_bounded(pairs, (index, truth), capacity)
            }
            (LiveWindow::Values(pairs), Predicted::Value(value), Truth::Value(truth)) => {
                push_bounded(pairs, (value, truth), capacity)
            }
            _ => {}
        }
    }

    /// Live accuracy and macro-F1, or MAE, over the live window (None before the first matched pair).
    /// Formulas are scikit-learn's: `accuracy_score`, `f1_score(average="macro")` over the labels present in
    /// the truths or the predictions, `mean_absolute_error`.
    pub fn live_quality(&self) -> Option<LiveQuality> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match &*live {
            LiveWindow::Classes(pairs) if !pairs.is_empty() => {
                let (accuracy, macro_f1) = classification_scores(pairs, self.labels.len());
                Some(LiveQuality::Classification { pairs: pairs.len(), accuracy, macro_f1 })
            }
            LiveWindow::Values(pairs) if !pairs.is_empty() => {
                let total: f64 = pairs.iter().map(|(p, t)| (t - *p as f64).abs()).sum();
                Some(LiveQuality::Regression { pairs: pairs.len(), mae: total / pairs.len() as f64 })
            }
            _ => None,
        }
    }
}

fn push_bounded<T>(ring: &mut VecDeque<T>, item: T, capacity: usize) {
    if ring.len() == capacity {
        ring.pop_front();
    }
    ring.push_back(item);
}

/// Accuracy and macro-F1 of (predicted, true) class pairs over `classes` classes.
fn classification_scores(pairs: &VecDeque<(u32, u32)>, classes: usize) -> (f64, f64) {
    // Per class: true positives, false positives, false negatives.
    let mut counts = vec![(0u64, 0u64, 0u64); classes];
    let mut correct = 0u64;
    for &(predicted, truth) in pairs {
        let (p, t) = (predicted as usize, truth as usize);
        if p >= classes || t >= classes {
            continue;
        }
        if p == t {
            correct += 1;
            counts[p].0 += 1;
        } else {
            counts[p].1 += 1;
            counts[t].2 += 1;
        }
    }
    // Present labels are those some truth or prediction names; F1 = 2tp / (2tp + fp + fn) for each.
    let f1s: Vec<f64> = counts
        .iter()
        .filter(|(tp, fp, fn_)| tp + fp + fn_ > 0)
        .map(|(tp, fp, fn_)| 2.0 * *tp as f64 / (2 * tp + fp + fn_) as f64)
        .collect();
    let macro_f1 = if f1s.is_empty() { 0.0 } else { f1s.iter().sum::<f64>() / f1s.len() as f64 };
    (correct as f64 / pairs.len() as f64, macro_f1)
}

impl Drift {
    fn new(
        manifest: &Manifest,
        reference: &ReferenceProfile,
        labels: &[String],
        window: usize,
    ) -> Result<Drift, String> {
        let track = |name: &str, what: &str, profile: &Profile| -> Result<Tracked, String> {
            let binner = Binner::new(profile);
            let bin_labels = binner.bin_labels();
            if let Some(reserved) = bin_labels.iter().rev().skip(2).find(|l| *l == OTHER_BIN || *l == MISSING_BIN) {
                return Err(format!("{what}.categories: '{reserved}' is reserved for drift bins"));
            }
            Ok(Tracked { name: name.to_string(), bin_labels, binner })
        };
        let mut features = Vec::new();
        let mut references = Vec::new();
        for (i, spec) in manifest.features.iter().enumerate() {
            if let Some(profile) = reference.features.get(&spec.name) {
                features.push((i, track(&spec.name, &format!("features.{}", spec.name), profile)?));
                references.push(reference_shares(profile));
            }
        }
        let prediction = track(PREDICTION, "prediction", &reference.prediction)?;
        let class_bins = match (manifest.model.task, &reference.prediction) {
            (Task::Classification, Profile::Category { .. }) => {
                labels.iter().map(|l| prediction.binner.bin_category(l)).collect()
            }
            (Task::Regression, Profile::Number { .. }) => Vec::new(),
            _ => {
                return Err("prediction.kind: expected \"category\" for a classifier, \"number\" for a regressor".into())
            }
        };
        references.push(reference_shares(&reference.prediction));
        Ok(Drift { features, prediction, class_bins, windows: Mutex::new(DriftWindows::new(window, references)) })
    }

    /// Every monitored variable in window order: the features, then the prediction.
    fn tracked(&self) -> impl Iterator<Item = &Tracked> {
        self.features.iter().map(|(_, t)| t).chain([&self.prediction])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DriftWindows> {
        // A panic while holding the lock cannot leave a window half-written in a way that matters to a gauge.
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_and_accuracy_follow_scikit_learn() {
        // y_true = [0, 0, 1, 1, 2], y_pred = [0, 1, 1, 1, 0]: scikit-learn's accuracy_score gives 0.6 and
        // f1_score(average="macro") 0.43333333333333335 = (0.5 + 0.8 + 0) / 3.
        let pairs: VecDeque<(u32, u32)> = [(0, 0), (1, 0), (1, 1), (1, 1), (0, 2)].into_iter().collect();
        let (accuracy, f1) = classification_scores(&pairs, 3);
        assert!((accuracy - 0.6).abs() < 1e-12);
        assert!((f1 - 0.43333333333333335).abs() < 1e-12, "{f1}");
        // A class nobody predicted nor labelled does not count in the macro average.
        let pairs: VecDeque<(u32, u32)> = [(0, 0), (0, 0)].into_iter().collect();
        assert_eq!(classification_scores(&pairs, 3), (1.0, 1.0));
    }

    #[test]
    fn categories_spelled_like_drift_bins_are_refused() {
        let manifest = Manifest::from_toml(
            "[model]\ntask = \"classification\"\n[[features]]\nname = \"c\"\ntype = \"category\"\n\
             categories = [\"a\", \"__other__\"]\n[[preprocess]]\nop = \"one_hot\"\nfeatures = [\"c\"]\n\
             categories = [\"a\", \"__other__\"]\n[outputs]\nlabels = [\"x\", \"y\"]\nprobabilities = \"p\"\n",
        )
        .unwrap();
        let reference: ReferenceProfile = serde_json::from_value(serde_json::json!({
            "rows": 2,
            "features": {"c": {"kind": "category", "categories": ["a", "__other__"], "ratios": [0.5, 0.5, 0.0], "missing": 0.0}},
            "prediction": {"kind": "category", "categories": ["x", "y"], "ratios": [0.5, 0.5, 0.0], "missing": 0.0}
        }))
        .unwrap();
        let error = VersionMonitor::new("m", "1", &manifest, Some(&reference), DriftSettings::default()).unwrap_err();
        assert!(error.contains("features.c.categories") && error.contains("__other__"), "{error}");
    }
}
