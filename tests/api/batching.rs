//! Dynamic batching is a pure performance choice: requests answered concurrently, gathered into shared
//! batches, get exactly (bit for bit: the same JSON) what the same requests get when each is sent alone.

use std::collections::HashMap;
use std::path::Path;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::helpers::{read_json, spawn_app_with, TestApp};

/// Families whose plans reduce over the class axis (softmax, L1 normalisation), where tract's own kernels
/// gave a row other bits at another place in a batch, and a few others.
const MODELS: [&str; 7] = [
    "mlp_classifier_multiclass",
    "logreg_multiclass",
    "linear_svc_calibrated_multiclass",
    "pytorch_mlp",
    "random_forest_classifier",
    "svc_rbf_multiclass",
    "mlp_regressor",
];

/// 30 requests per model of 1 to 3 fixture records each, with their own ids.
fn requests() -> Vec<(String, Value)> {
    let root = Path::new("tests/data/matrix");
    let mut requests = Vec::new();
    for model in MODELS {
        let fixtures = read_json(&root.join(model).join("1/fixtures.json"));
        let cases = fixtures["cases"].as_array().unwrap();
        let mut next = 0;
        for i in 0..30 {
            let rows = 1 + i % 3;
            let instances: Vec<Value> = (0..rows).map(|k| cases[(next + k) % cases.len()]["input"].clone()).collect();
            let ids: Vec<String> = (0..rows).map(|k| format!("{model}-{i}-{k}")).collect();
            next += rows;
            requests.push((format!("/models/{model}/predict"), json!({"instances": instances, "ids": ids})));
        }
    }
    requests
}

async fn answer(app: &TestApp, path: &str, body: &Value) -> Value {
    let response = app.post_json(path, body).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// Mean rows per model run of `model`, from `inferd_batch_size`.
async fn mean_batch_rows(app: &TestApp, model: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    let series = |name: &str| -> f64 {
        let prefix = format!("{name}{{model=\"{model}\",version=\"1\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{prefix} missing"))
            .parse()
            .unwrap()
    };
    series("inferd_batch_size_sum") / series("inferd_batch_size_count")
}

/// Every request alone first, then all of them again from 32 concurrent clients; answers compared.
async fn batched_equals_alone(max_delay_us: u64) -> f64 {
    let app = spawn_app_with(|s| {
        s.models.repository = "tests/data/matrix".into();
        s.models.default = None;
        s.batching.max_delay_us = max_delay_us;
    })
    .await;
    let requests = requests();
    let mut alone = HashMap::new();
    for (path, body) in &requests {
        alone.insert(body["ids"][0].as_str().unwrap().to_string(), answer(&app, path, body).await);
    }
    let before = mean_batch_rows(&app, MODELS[0]).await;
    assert_eq!(before, 2.0, "requests sent one at a time run alone (1, 2 and 3 rows)");

    let app = &app;
    let together: Vec<(String, Value)> = futures_util::stream::iter(&requests)
        .map(
            |(path, body)| async move { (body["ids"][0].as_str().unwrap().to_string(), answer(app, path, body).await) },
        )
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(together.len(), requests.len());
    for (id, answer) in &together {
        assert_eq!(answer, &alone[id], "request {id}: the batched answer differs from the answer alone");
    }
    // Over both passes: the first made 30 runs of 60 rows in all.
    mean_batch_rows(app, MODELS[0]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_that_wait_to_fill_answer_exactly_as_requests_alone() {
    // Batches wait up to 5 ms to fill: under 32 concurrent clients they hold several requests each.
    let mean = batched_equals_alone(5_000).await;
    assert!(mean > 2.5, "mean batch of {mean} rows over both passes: requests were not batched together");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_batching_answers_exactly_as_requests_alone() {
    batched_equals_alone(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after_at_once() {
    // Batches wait up to 300 ms to fill: the first request sits in a queue of at most 4 rows meanwhile.
    let app = spawn_app_with(|s| {
        s.batching.queue_capacity = 4;
        s.batching.max_delay_us = 300_000;
    })
    .await;
    let one = json!({"instances": [crate::helpers::sample_input("breast_cancer")]});
    let four = json!({"instances": vec![crate::helpers::sample_input("breast_cancer"); 4]});
    let (first, (second, waited)) = tokio::join!(app.post_json("/predict", &one), async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        (app.post_json("/predict", &four).await, started.elapsed())
    });
    assert_eq!(first.status(), 200, "the queued request is answered when its batch runs");
    assert_eq!(second.headers()["retry-after"], "1");
    assert!(waited < std::time::Duration::from_millis(150), "refused at once, not after waiting: {waited:?}");
    crate::helpers::assert_error(second, 503, "queue_full").await;
    // An empty queue takes a request of any size: no request is refused forever.
    let app2 = spawn_app_with(|s| s.batching.queue_capacity = 4).await;
    let eight = json!({"instances": vec![crate::helpers::sample_input("breast_cancer"); 8]});
    assert_eq!(app2.post_json("/predict", &eight).await.status(), 200);
}
