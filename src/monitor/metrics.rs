//! Every metric inferd exports, named once, here (DESIGN §6). Handlers record through the typed helpers
//! below and never by string name, so a metric cannot be misspelt or get a label set it was not born with.

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

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
    model_info: IntGaugeVec,
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
        let model_info = IntGaugeVec::new(
            Opts::new("inferd_model_info", "1 for each model version the server knows, with its state."),
            &["model", "version", "state"],
        )
        .expect("valid metric");
        registry.register(Box::new(model_info.clone())).expect("metric registered once");
        Metrics {
            registry,
            requests,
            request_duration,
            inference_duration,
            queue_duration,
            batch_size,
            predictions,
            confidence,
            model_info,
        }
    }

    /// One answered HTTP request (`model`/`version` empty where the request named none that resolved);
    /// `code` is the status code's digits (`StatusCode::as_str`).
    pub fn record_request(&self, model: &str, version: &str, endpoint: &str, code: &str, seconds: f64) {
        self.requests.with_label_values(&[model, version, endpoint, code]).inc();
        self.request_duration.with_label_values(&[model, version, endpoint]).observe(seconds);
    }

    /// One model run of `rows` rows.
    pub fn record_inference(&self, model: &str, version: &str, rows: usize, queue_s: f64, inference_s: f64) {
        self.queue_duration.with_label_values(&[model, version]).observe(queue_s);
        self.inference_duration.with_label_values(&[model, version]).observe(inference_s);
        self.batch_size.with_label_values(&[model, version]).observe(rows as f64);
    }

    /// One classification answer.
    pub fn record_class(&self, model: &str, version: &str, label: &str, confidence: f32) {
        self.predictions.with_label_values(&[model, version, label]).inc();
        self.confidence.with_label_values(&[model, version]).observe(confidence as f64);
    }

    /// One regression answer.
    pub fn record_value(&self, model: &str, version: &str) {
        self.predictions.with_label_values(&[model, version, ""]).inc();
    }

    /// Marks a model version as known in `state` (`inferd_model_info` = 1).
    pub fn set_model_state(&self, model: &str, version: &str, state: &str) {
        self.model_info.with_label_values(&[model, version, state]).set(1);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_the_contract_names() {
        let metrics = Metrics::new();
        metrics.record_request("m", "1", "/predict", "200", 0.001);
        metrics.record_inference("m", "1", 3, 0.0001, 0.0002);
        metrics.record_class("m", "1", "a", 0.9);
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
            "inferd_model_info{model=\"m\",state=\"ready\",version=\"1\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
