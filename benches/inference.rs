//! Where a prediction's time goes, piece by piece, for each bundled sample model:
//! - `preprocess`: one record's JSON text parsed into raw values and transformed into a model row;
//! - `tract/{model}/{batch}`: the optimised plan at batch 1, 8, 32 and 64 (per call; criterion also reports
//!   rows per second);
//! - `request/{model}`: one `/predict` request of one record through the whole router in process (body
//!   parsing, preprocessing, batching, inference, monitoring, JSON answer), no socket;
//! - `monitoring/{rows}/{side}`: the same for a `/predict` request of 1 and 32 `breast_cancer` records, with
//!   `[monitoring] enabled = false` ("off"), on ("on"), and on with the prediction log keeping 10% ("log10")
//!   or every record ("log100"): what monitoring costs a request, side by side in one run. No socket, so the
//!   share is larger than in a served request, whose kernel networking it does not include.
//!
//!     cargo bench --bench inference

use std::hint::black_box;

use axum::body::Body;
use axum::http::Request;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http_body_util::BodyExt;
use inferd::app::Application;
use inferd::config::Settings;
use inferd::monitor::DriftSettings;
use inferd::preprocess::RecordBatch;
use inferd::repository::ModelVersion;
use tower::ServiceExt;

const MODELS: [&str; 3] = ["breast_cancer", "wine", "diabetes"];

fn load(model: &str) -> (ModelVersion, Vec<String>) {
    let dir = std::path::Path::new("models").join(model).join("1");
    let version = ModelVersion::load_unchecked(model, 1, &dir, DriftSettings::default()).expect("sample model loads");
    let fixtures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fixtures.json")).unwrap()).unwrap();
    let records = fixtures["cases"].as_array().unwrap().iter().map(|c| c["input"].to_string()).collect();
    (version, records)
}

fn preprocess(c: &mut Criterion) {
    let mut group = c.benchmark_group("preprocess");
    group.throughput(Throughput::Elements(1));
    for model in MODELS {
        let (version, records) = load(model);
        group.bench_function(model, |b| {
            let mut i = 0;
            b.iter(|| {
                let mut batch = RecordBatch::new(version.pipeline.features().len());
                version.pipeline.parse_instance_json(&records[i % records.len()], &String::new, &mut batch).unwrap();
                i += 1;
                black_box(version.pipeline.transform(&batch).unwrap())
            })
        });
    }
    group.finish();
}

fn tract(c: &mut Criterion) {
    for model in MODELS {
        let (version, records) = load(model);
        let mut group = c.benchmark_group(format!("tract/{model}"));
        for rows in [1usize, 8, 32, 64] {
            let mut batch = RecordBatch::new(version.pipeline.features().len());
            for r in 0..rows {
                version.pipeline.parse_instance_json(&records[r % records.len()], &String::new, &mut batch).unwrap();
            }
            let input = version.pipeline.transform(&batch).unwrap();
            group.throughput(Throughput::Elements(rows as u64));
            group.bench_with_input(BenchmarkId::from_parameter(rows), &rows, |b, &rows| {
                b.iter(|| black_box(version.plan.run(&input, rows).unwrap()))
            });
        }
        group.finish();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// An in-process router over the bundled models, `adjust`ed.
fn router(runtime: &tokio::runtime::Runtime, adjust: impl FnOnce(&mut Settings)) -> axum::Router {
    let state = runtime.block_on(async {
        let mut settings = Settings::default();
        settings.server.port = 0;
        settings.models.repository = "models".into();
        settings.models.default = Some("breast_cancer".into());
        adjust(&mut settings);
        Application::build(settings).await.expect("the server builds").state()
    });
    inferd::api::router(state)
}

async fn post(router: &axum::Router, path: &str, body: &str) -> axum::body::Bytes {
    let request = Request::post(path).header("content-type", "application/json").body(Body::from(body.to_owned()));
    let response = router.clone().oneshot(request.unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

fn request(c: &mut Criterion) {
    let runtime = runtime();
    let router = router(&runtime, |_| {});
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Elements(1));
    for model in MODELS {
        let (_, records) = load(model);
        let body = format!("{{\"instances\": [{}]}}", records[0]);
        let path = format!("/models/{model}/predict");
        group.bench_function(model, |b| b.iter(|| black_box(runtime.block_on(post(&router, &path, &body)))));
    }
    group.finish();
}

fn monitoring(c: &mut Criterion) {
    let runtime = runtime();
    let log_dir = tempfile::tempdir().unwrap();
    let sides = [("off", false, 0.0), ("on", true, 0.0), ("log10", true, 0.1), ("log100", true, 1.0)];
    let routers: Vec<_> = sides
        .iter()
        .map(|&(side, enabled, rate)| {
            let router = router(&runtime, |s| {
                s.monitoring.enabled = enabled;
                if rate > 0.0 {
                    s.monitoring.prediction_log.path = Some(log_dir.path().join(format!("{side}.jsonl")));
                    s.monitoring.prediction_log.sample_rate = rate;
                }
            });
            (side, router)
        })
        .collect();
    let (_, records) = load("breast_cancer");
    for rows in [1usize, 32] {
        let instances: Vec<&str> = (0..rows).map(|r| records[r % records.len()].as_str()).collect();
        let body = format!("{{\"instances\": [{}]}}", instances.join(","));
        let mut group = c.benchmark_group(format!("monitoring/{rows}"));
        group.throughput(Throughput::Elements(rows as u64));
        for (side, router) in &routers {
            group.bench_function(*side, |b| b.iter(|| black_box(runtime.block_on(post(router, "/predict", &body)))));
        }
        group.finish();
    }
}

criterion_group!(benches, preprocess, tract, request, monitoring);
criterion_main!(benches);
