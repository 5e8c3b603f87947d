//! Every metric inferd exports, named once, here (DESIGN §6). Handlers record through the typed helpers
//! below and never by string name, so a metric cannot be misspelt or get a label set it was not born with.

use std::sync::Mutex;

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::prediction_log::LogCounters;
use super::version::{LiveQuality, VersionMonitor, PREDICTION};
use crate::repository::manifest::Task;
use crate::runtime::InferenceTiming;

const VERSION: [&str; 2] = ["model", "version"];
const VERSION_STATE: [&str; 3] = ["model", "version", "state"];
const FEATURE: [&str; 3] = ["model", "version", "feature"];
const FEATURE_BIN: [&str; 4] = ["model", "version", "feature", "bin"];

/// Why a request can be refused before any work is done: the error codes `inferd_rejected_total` counts.
pub const REJECTION_REASONS: [&str; 5] = ["unauthorized", "overloaded", "queue_full", "timeout", "shutting_down"];

/// Latency buckets from 25 µs to ~13 s: a model server's answers range from microseconds (a logistic
/// regression) to seconds (a large batch), and p99 must be readable at both ends.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(25e-6, 2.0, 20).expect("static buckets")
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    inference_duration: HistogramVec,
    queue_duration: HistogramVec,
    batch_size: HistogramVec,
    predictions: IntCounterVec,
    confidence: HistogramVec,
    low_confidence: IntCounterVec,
    model_info: IntGaugeVec,
    feature_psi: GaugeVec,
    feature_js: GaugeVec,
    prediction_psi: GaugeVec,
    prediction_js: GaugeVec,
    drift_level: IntGaugeVec,
    window_observations: IntGaugeVec,
    drift_threshold: GaugeVec,
    window_size: IntGaugeVec,
    bin_total: IntCounterVec,
    reference_ratio: GaugeVec,
    feedback: IntCounterVec,
    feedback_evictions: IntCounter,
    live_accuracy: GaugeVec,
    live_f1: GaugeVec,
    live_mae: GaugeVec,
    live_pairs: IntGaugeVec,
    baseline: GaugeVec,
    log_records: IntCounterVec,
    model_loads: IntCounterVec,
    shadow_predictions: IntCounterVec,
    shadow_abs_diff: HistogramVec,
    shadow_dropped: IntCounterVec,
    rejected: IntCounterVec,
    /// Scrape-time updates of counters from cumulative totals must not interleave (they add differences).
    refresh: Mutex<()>,
}

/// Removes the series of `vec` labelled with this model and version, whatever their other labels.
fn remove_series<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    model: &str,
    version: &str,
) {
    use prometheus::core::Collector;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: std::collections::HashMap<&str, &str> =
                metric.get_label().iter().map(|l| (l.name(), l.value())).collect();
            if labels.get("model") == Some(&model) && labels.get("version") == Some(&version) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("metric registered once");
            metric
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("metric registered once");
            metric
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("metric registered once");
            metric
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let metric =
                HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("metric registered once");
            metric
        };
        let requests = counter(
            "inferd_requests_total",
            "HTTP requests answered, by model, version, endpoint and status code.",
            &["model", "version", "endpoint", "code"],
        );
        let request_duration = histogram(
            "inferd_request_duration_seconds",
            "Time from request to response, by model, version and endpoint.",
            &["model", "version", "endpoint"],
            latency_buckets(),
        );
        let inference_duration = histogram(
            "inferd_inference_duration_seconds",
            "Time spent running the model on a batch.",
            &["model", "version"],
            latency_buckets(),
        );
        let queue_duration = histogram(
            "inferd_queue_duration_seconds",
            "Time a batch waited for an inference worker.",
            &["model", "version"],
            latency_buckets(),
        );
        let batch_size = histogram(
            "inferd_batch_size",
            "Rows per model run.",
            &["model", "version"],
            exponential_buckets(1.0, 2.0, 13).expect("static buckets"),
        );
        let predictions = counter(
            "inferd_predictions_total",
            "Predictions answered, by label for classifiers (label=\"\" for regression).",
            &["model", "version", "label"],
        );
        let confidence = histogram(
            "inferd_prediction_confidence",
            "Probability of the predicted class.",
            &["model", "version"],
            vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0],
        );
        let low_confidence = counter(
            "inferd_low_confidence_total",
            "Classifications below the manifest's min_confidence, whatever the low-confidence policy did.",
            &["model", "version"],
        );
        let model_info = int_gauge(
            "inferd_model_info",
            "1 for each model version the server knows, with its state.",
            &VERSION_STATE,
        );
        let feature_psi = gauge(
            "inferd_feature_drift_psi",
            "Population stability index of a raw feature's drift window against the reference profile.",
            &FEATURE,
        );
        let feature_js = gauge(
            "inferd_feature_drift_js",
            "Jensen-Shannon distance (natural log) of a raw feature's drift window against the reference profile.",
            &FEATURE,
        );
        let prediction_psi = gauge(
            "inferd_prediction_drift_psi",
            "Population stability index of the predictions' drift window against the reference profile.",
            &VERSION,
        );
        let prediction_js = gauge(
            "inferd_prediction_drift_js",
            "Jensen-Shannon distance of the predictions' drift window against the reference profile.",
            &VERSION,
        );
        let drift_level = int_gauge(
            "inferd_drift_level",
            "Drift level by the manifest's PSI thresholds: 0 ok, 1 warning, 2 critical (feature=\"_prediction\" for \
             predictions); 0 until the window first fills.",
            &FEATURE,
        );
        let window_observations =
            int_gauge("inferd_drift_window_observations", "Observations the drift window holds now.", &FEATURE);
        let drift_threshold = gauge(
            "inferd_drift_threshold",
            "The manifest's PSI threshold of each severity (psi_warning, psi_critical).",
            &["model", "version", "severity"],
        );
        let window_size = int_gauge(
            "inferd_drift_window_size",
            "Observations a full drift window holds (the manifest's window).",
            &VERSION,
        );
        let bin_total = counter(
            "inferd_feature_bin_total",
            "Observations per reference bin (\"0\", \"1\", ... for numbers; categories, __other__, __missing__).",
            &FEATURE_BIN,
        );
        let reference_ratio = gauge(
            "inferd_feature_reference_ratio",
            "Share of the reference (training) data in each bin.",
            &FEATURE_BIN,
        );
        let feedback = counter(
            "inferd_feedback_total",
            "Ground-truth items received, by outcome (matched, unknown_id, invalid).",
            &["model", "version", "outcome"],
        );
        let feedback_evictions = IntCounter::new(
            "inferd_feedback_evictions_total",
            "Remembered predictions evicted (store full) before their feedback arrived.",
        )
        .expect("valid metric");
        registry.register(Box::new(feedback_evictions.clone())).expect("metric registered once");
        let live_accuracy =
            gauge("inferd_live_accuracy", "Accuracy over the last `window` matched feedback pairs.", &VERSION);
        let live_f1 = gauge("inferd_live_f1", "Macro-F1 over the last `window` matched feedback pairs.", &VERSION);
        let live_mae =
            gauge("inferd_live_mae", "Mean absolute error over the last `window` matched feedback pairs.", &VERSION);
        let live_pairs = int_gauge("inferd_live_pairs", "Matched feedback pairs in the live window.", &VERSION);
        let baseline = gauge(
            "inferd_model_baseline",
            "The model card's baseline metric (accuracy, f1, mae), for alerts on live quality.",
            &["model", "version", "metric"],
        );
        let log_records = counter(
            "inferd_prediction_log_records_total",
            "Prediction log records, by outcome (written, dropped).",
            &["outcome"],
        );
        let rejected = counter(
            "inferd_rejected_total",
            "Requests refused before any work, by reason (unauthorized, overloaded, queue_full, timeout, shutting_down).",
            &["reason"],
        );
        for reason in REJECTION_REASONS {
            rejected.with_label_values(&[reason]); // every reason reads 0 from the first scrape
        }
        let model_loads = counter(
            "inferd_model_loads_total",
            "Model version lifecycle events, by outcome (loaded, failed, unloaded).",
            &["model", "version", "outcome"],
        );
        let shadow_predictions = counter(
            "inferd_shadow_predictions_total",
            "Shadow predictions compared with the answered ones (version: the shadow's), by outcome (agree, disagree).",
            &["model", "version", "outcome"],
        );
        let shadow_abs_diff = histogram(
            "inferd_shadow_abs_diff",
            "Absolute difference between a shadow regression's value and the answered one.",
            &["model", "version"],
            exponential_buckets(1e-6, 10.0, 10).expect("static buckets"),
        );
        let shadow_dropped = counter(
            "inferd_shadow_dropped_total",
            "Requests a shadow version did not run because the shadow queue was full.",
            &VERSION,
        );
        Metrics {
            registry,
            model_loads,
            rejected,
            shadow_predictions,
            shadow_abs_diff,
            shadow_dropped,
            requests,
            request_duration,
            inference_duration,
            queue_duration,
            batch_size,
            predictions,
            confidence,
            low_confidence,
            model_info,
            feature_psi,
            feature_js,
            prediction_psi,
            prediction_js,
            drift_level,
            window_observations,
            drift_threshold,
            window_size,
            bin_total,
            reference_ratio,
            feedback,
            feedback_evictions,
            live_accuracy,
            live_f1,
            live_mae,
            live_pairs,
            baseline,
            log_records,
            refresh: Mutex::new(()),
        }
    }

    /// One answered HTTP request (`model`/`version` empty where the request named none that resolved);
    /// `code` is the status code's digits (`StatusCode::as_str`).
    pub fn record_request(&self, model: &str, version: &str, endpoint: &str, code: &str, seconds: f64) {
        self.requests.with_label_values(&[model, version, endpoint, code]).inc();
        self.request_duration.with_label_values(&[model, version, endpoint]).observe(seconds);
    }

    /// One request refused before any work was done (`reason` is the error code).
    pub fn record_rejected(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    /// One `/feedback` item: `outcome` is matched, unknown_id or invalid (model and version "" when unknown).
    pub fn record_feedback(&self, model: &str, version: &str, outcome: &str) {
        self.feedback.with_label_values(&[model, version, outcome]).inc();
    }

    pub fn record_feedback_evictions(&self, evicted: u64) {
        if evicted > 0 {
            self.feedback_evictions.inc_by(evicted);
        }
    }

    /// The prediction log's record counters.
    pub fn log_counters(&self) -> LogCounters {
        LogCounters {
            written: self.log_records.with_label_values(&["written"]),
            dropped: self.log_records.with_label_values(&["dropped"]),
        }
    }

    /// Marks a model version as known in `state` (`inferd_model_info` = 1).
    pub fn set_model_state(&self, model: &str, version: &str, state: &str) {
        self.model_info.with_label_values(&[model, version, state]).set(1);
    }

    /// One lifecycle event of a model version: `outcome` is loaded, failed or unloaded.
    pub fn record_model_load(&self, model: &str, version: &str, outcome: &str) {
        self.model_loads.with_label_values(&[model, version, outcome]).inc();
    }

    /// Removes every series of one model version (its answers, drift, live quality, request counts and
    /// state), so an unloaded version leaves nothing stale on `/metrics` and a reloaded one starts fresh.
    /// The lifecycle counter `inferd_model_loads_total` is kept: it counts events, not the version's state.
    pub fn remove_version(&self, model: &str, version: &str) {
        let _serial = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
        remove_series(&self.requests, model, version);
        remove_series(&self.request_duration, model, version);
        remove_series(&self.inference_duration, model, version);
        remove_series(&self.queue_duration, model, version);
        remove_series(&self.batch_size, model, version);
        remove_series(&self.predictions, model, version);
        remove_series(&self.confidence, model, version);
        remove_series(&self.low_confidence, model, version);
        remove_series(&self.model_info, model, version);
        remove_series(&self.feature_psi, model, version);
        remove_series(&self.feature_js, model, version);
        remove_series(&self.prediction_psi, model, version);
        remove_series(&self.prediction_js, model, version);
        remove_series(&self.drift_level, model, version);
        remove_series(&self.window_observations, model, version);
        remove_series(&self.drift_threshold, model, version);
        remove_series(&self.window_size, model, version);
        remove_series(&self.bin_total, model, version);
        remove_series(&self.reference_ratio, model, version);
        remove_series(&self.feedback, model, version);
        remove_series(&self.live_accuracy, model, version);
        remove_series(&self.live_f1, model, version);
        remove_series(&self.live_mae, model, version);
        remove_series(&self.live_pairs, model, version);
        remove_series(&self.baseline, model, version);
        remove_series(&self.shadow_predictions, model, version);
        remove_series(&self.shadow_abs_diff, model, version);
        remove_series(&self.shadow_dropped, model, version);
    }

    /// Shadow comparisons of one batch (`version`: the shadow's).
    pub fn record_shadow(&self, model: &str, version: &str, agree: u64, disagree: u64, abs_diffs: &[f64]) {
        self.shadow_predictions.with_label_values(&[model, version, "agree"]).inc_by(agree);
        self.shadow_predictions.with_label_values(&[model, version, "disagree"]).inc_by(disagree);
        if !abs_diffs.is_empty() {
            let histogram = self.shadow_abs_diff.with_label_values(&[model, version]);
            abs_diffs.iter().for_each(|d| histogram.observe(*d));
        }
    }

    pub fn record_shadow_dropped(&self, model: &str, version: &str) {
        self.shadow_dropped.with_label_values(&[model, version]).inc();
    }

    /// Drops one state of a version from `inferd_model_info` (a failed load that later succeeded).
    pub fn clear_model_state(&self, model: &str, version: &str, state: &str) {
        let _ = self.model_info.remove_label_values(&[model, version, state]);
    }

    /// The metric handles of one version's answers, resolved once (no label hashing per request).
    pub fn version_handles(&self, monitor: &VersionMonitor) -> VersionMetrics {
        let labels = [monitor.model.as_str(), monitor.version.as_str()];
        let predictions = |label: &str| self.predictions.with_label_values(&[labels[0], labels[1], label]);
        VersionMetrics {
            inference: self.inference_duration.with_label_values(&labels),
            queue: self.queue_duration.with_label_values(&labels),
            batch_size: self.batch_size.with_label_values(&labels),
            confidence: self.confidence.with_label_values(&labels),
            low_confidence: self.low_confidence.with_label_values(&labels),
            by_label: monitor.labels.iter().map(|label| predictions(label)).collect(),
            fallback: monitor.fallback_label.as_deref().map(predictions),
            values: (monitor.task == Task::Regression).then(|| predictions("")),
        }
    }

    /// Creates a loaded version's series: every bin counter at 0 (so `increase()` across replicas sees every
    /// bin from the start), reference ratios, thresholds, card baselines, drift levels at 0.
    pub fn register_version(&self, monitor: &VersionMonitor) {
        let (model, version) = (monitor.model.as_str(), monitor.version.as_str());
        for (name, labels, reference) in monitor.bins() {
            for (bin, share) in labels.iter().zip(reference) {
                self.bin_total.with_label_values(&[model, version, name, bin]);
                self.reference_ratio.with_label_values(&[model, version, name, bin]).set(share);
            }
            self.drift_level.with_label_values(&[model, version, name]).set(0);
            self.window_observations.with_label_values(&[model, version, name]).set(0);
        }
        if monitor.watches_drift() {
            let settings = monitor.drift_settings;
            self.drift_threshold.with_label_values(&[model, version, "warning"]).set(settings.psi_warning);
            self.drift_threshold.with_label_values(&[model, version, "critical"]).set(settings.psi_critical);
            self.window_size.with_label_values(&[model, version]).set(settings.window as i64);
        }
        if monitor.task == Task::Classification {
            self.low_confidence.with_label_values(&[model, version]);
        }
        monitor.set_metrics(self.version_handles(monitor));
        for (metric, value) in &monitor.baseline {
            self.baseline.with_label_values(&[model, version, metric]).set(*value);
        }
    }

    /// Scrape-time update of a version's drift and live-quality series from its monitor.
    pub fn refresh_version(&self, monitor: &VersionMonitor) {
        let _serial = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
        let (model, version) = (monitor.model.as_str(), monitor.version.as_str());
        for reading in monitor.drift_readings() {
            let name = reading.name;
            let (psi, js) = if name == PREDICTION {
                (
                    self.prediction_psi.with_label_values(&[model, version]),
                    self.prediction_js.with_label_values(&[model, version]),
                )
            } else {
                (
                    self.feature_psi.with_label_values(&[model, version, name]),
                    self.feature_js.with_label_values(&[model, version, name]),
                )
            };
            if let (Some(p), Some(j)) = (reading.psi, reading.js) {
                psi.set(p);
                js.set(j);
            }
            self.drift_level.with_label_values(&[model, version, name]).set(reading.level as i64);
            self.window_observations.with_label_values(&[model, version, name]).set(reading.observations as i64);
            for (bin, total) in reading.bin_labels.iter().zip(&reading.totals) {
                let counter = self.bin_total.with_label_values(&[model, version, name, bin]);
                let seen = counter.get();
                if *total > seen {
                    counter.inc_by(total - seen);
                }
            }
        }
        match monitor.live_quality() {
            Some(LiveQuality::Classification { pairs, accuracy, macro_f1 }) => {
                self.live_accuracy.with_label_values(&[model, version]).set(accuracy);
                self.live_f1.with_label_values(&[model, version]).set(macro_f1);
                self.live_pairs.with_label_values(&[model, version]).set(pairs as i64);
            }
            Some(LiveQuality::Regression { pairs, mae }) => {
                self.live_mae.with_label_values(&[model, version]).set(mae);
                self.live_pairs.with_label_values(&[model, version]).set(pairs as i64);
            }
            None => {}
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// One model version's answer metrics, resolved once at registration.
#[derive(Debug)]
pub struct VersionMetrics {
    inference: Histogram,
    queue: Histogram,
    batch_size: Histogram,
    confidence: Histogram,
    low_confidence: IntCounter,
    /// `inferd_predictions_total` per class index.
    by_label: Vec<IntCounter>,
    fallback: Option<IntCounter>,
    /// Regression answers (`label=""`).
    values: Option<IntCounter>,
}

impl VersionMetrics {
    /// One model run of `rows` rows.
    /// One request's queue time; and, from the one request of each batch that reports it, the batch's
    /// size and inference time.
    pub fn record_inference(&self, timing: &InferenceTiming) {
        self.queue.observe(timing.queue.as_secs_f64());
        if timing.reports_batch {
            self.inference.observe(timing.inference.as_secs_f64());
            self.batch_size.observe(timing.batch_rows as f64);
        }
    }

    /// Classifications answered: `per_class[i]` with label `i`, `fell_back` with the fallback label.
    pub fn record_classes(&self, per_class: &[u64], fell_back: u64) {
        for (counter, count) in self.by_label.iter().zip(per_class) {
            if *count > 0 {
                counter.inc_by(*count);
            }
        }
        if let (Some(counter), true) = (&self.fallback, fell_back > 0) {
            counter.inc_by(fell_back);
        }
    }

    /// The model's confidence in each classification, and how many were below `min_confidence`.
    pub fn record_confidences(&self, confidences: impl Iterator<Item = f32>, low: u64) {
        // Gathered locally, then added to the shared histogram once: one set of atomic updates per request
        // rather than per row, which the executor threads would otherwise contend on.
        let local = self.confidence.local();
        for confidence in confidences {
            local.observe(confidence as f64);
        }
        local.flush();
        if low > 0 {
            self.low_confidence.inc_by(low);
        }
    }

    /// `rows` regression answers.
    pub fn record_values(&self, rows: usize) {
        if let Some(values) = &self.values {
            values.inc_by(rows as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_the_contract_names() {
        let metrics = Metrics::new();
        metrics.record_request("m", "1", "/predict", "200", 0.001);
        let manifest = crate::repository::manifest::Manifest::from_toml(
            "[model]\ntask = \"classification\"\n[[features]]\nname = \"f\"\ntype = \"number\"\n\
             [outputs]\nlabels = [\"a\", \"b\"]\nprobabilities = \"p\"\n",
        )
        .unwrap();
        let monitor = VersionMonitor::new("m", "1", &manifest, None, crate::monitor::DriftSettings::default()).unwrap();
        let handles = metrics.version_handles(&monitor);
        let timing = crate::runtime::InferenceTiming {
            queue: std::time::Duration::from_micros(100),
            inference: std::time::Duration::from_micros(200),
            batch_rows: 3,
            reports_batch: true,
        };
        handles.record_inference(&timing);
        handles.record_classes(&[1, 0], 0);
        handles.record_confidences([0.9].into_iter(), 1);
        metrics.set_model_state("m", "1", "ready");
        let text = metrics.encode();
        for name in [
            "inferd_requests_total{code=\"200\",endpoint=\"/predict\",model=\"m\",version=\"1\"} 1",
            "inferd_request_duration_seconds_bucket",
            "inferd_inference_duration_seconds_bucket",
            "inferd_queue_duration_seconds_bucket",
            "inferd_batch_size_sum{model=\"m\",version=\"1\"} 3",
            "inferd_predictions_total{label=\"a\",model=\"m\",version=\"1\"} 1",
            "inferd_prediction_confidence_bucket",
            "inferd_low_confidence_total{model=\"m\",version=\"1\"} 1",
            "inferd_model_info{model=\"m\",state=\"ready\",version=\"1\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }

    #[test]
    fn removing_a_version_leaves_no_series_of_it() {
        let metrics = Metrics::new();
        let manifest = crate::repository::manifest::Manifest::from_toml(
            "[model]\ntask = \"classification\"\n[[features]]\nname = \"f\"\ntype = \"number\"\n\
             [outputs]\nlabels = [\"a\", \"b\"]\nprobabilities = \"p\"\n",
        )
        .unwrap();
        for version in ["1", "2"] {
            let monitor =
                VersionMonitor::new("m", version, &manifest, None, crate::monitor::DriftSettings::default()).unwrap();
            metrics.register_version(&monitor);
            metrics.set_model_state("m", version, "ready");
            metrics.record_request("m", version, "/predict", "200", 0.001);
            metrics.record_shadow("m", version, 1, 0, &[0.5]);
            metrics.version_handles(&monitor).record_classes(&[1, 0], 0);
        }
        metrics.record_model_load("m", "1", "unloaded");
        metrics.remove_version("m", "1");
        let text = metrics.encode();
        let left: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("version=\"1\"") && !l.starts_with("inferd_model_loads_total"))
            .collect();
        assert!(left.is_empty(), "series of the removed version: {left:?}");
        assert!(text.contains("inferd_requests_total{code=\"200\",endpoint=\"/predict\",model=\"m\",version=\"2\"} 1"));
        assert!(text.contains("inferd_model_loads_total{model=\"m\",outcome=\"unloaded\",version=\"1\"} 1"));
    }
}
