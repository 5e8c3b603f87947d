//! Model lifecycle at runtime (DESIGN §8): new versions load on `POST /admin/reload` (and by polling) and
//! answer under their own version; broken ones change nothing, show as failed and are retried once their
//! files change; removed ones are unloaded and leave no series on `/metrics`; every event is audited.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{repository_with, sample_input, spawn_app_with, TestApp};

/// Publishes `models/breast_cancer/1`'s files as `version` of the repository's breast_cancer, the way a
/// deployment should: written beside it under a dot-name, then renamed into place at once.
fn publish(repository: &Path, version: u64, edit: impl FnOnce(&Path)) {
    let staging = repository.join("breast_cancer").join(format!(".staging-{version}"));
    std::fs::create_dir_all(&staging).unwrap();
    for entry in std::fs::read_dir("models/breast_cancer/1").unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), staging.join(entry.file_name())).unwrap();
    }
    edit(&staging);
    std::fs::rename(&staging, repository.join("breast_cancer").join(version.to_string())).unwrap();
}

async fn app_over(repository: &Path, adjust: impl FnOnce(&mut inferd::config::Settings)) -> TestApp {
    let repository = repository.to_path_buf();
    spawn_app_with(move |s| {
        s.models.repository = repository;
        adjust(s);
    })
    .await
}

async fn reload(app: &TestApp) -> Value {
    let response = app.client.post(format!("{}/admin/reload", app.address)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn predict_version(app: &TestApp) -> String {
    let response = app.post_json("/predict", &json!({"instances": [sample_input("breast_cancer")]})).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    answer["version"].as_str().unwrap().to_string()
}

async fn versions(app: &TestApp) -> Vec<Value> {
    let described: Value = app.get("/models/breast_cancer").await.json().await.unwrap();
    described["versions"].as_array().unwrap().clone()
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

/// Series of `/metrics` labelled with this version, other than the lifecycle counter (which counts events).
fn version_series(metrics: &str, version: &str) -> Vec<String> {
    let label = format!("version=\"{version}\"");
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label) && !l.starts_with("inferd_model_loads_total"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_published_version_loads_on_reload_and_answers_under_its_version() {
    let repository = repository_with("breast_cancer");
    let app = app_over(repository.path(), |_| {}).await;
    assert_eq!(predict_version(&app).await, "1");
    assert!(!version_series(&metrics(&app).await, "1").is_empty());

    publish(repository.path(), 2, |_| {});
    let answer = reload(&app).await;
    let changes = answer["changes"].as_array().unwrap();
    assert!(changes.contains(&json!({"model": "breast_cancer", "version": 2, "action": "loaded"})), "{answer}");
    assert!(changes.contains(&json!({"model": "breast_cancer", "version": 1, "action": "unloaded"})), "{answer}");
    assert_eq!(predict_version(&app).await, "2");
    assert_eq!(versions(&app).await, [json!({"version": 2, "state": "ready", "task": "classification"})]);

    // A rescan with nothing new changes nothing.
    assert_eq!(reload(&app).await["changes"], json!([]));

    // The unloaded version's series leave /metrics once its last request is answered.
    let mut left = Vec::new();
    for _ in 0..40 {
        left = version_series(&metrics(&app).await, "1");
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "stale series of the unloaded version: {left:?}");
    let text = metrics(&app).await;
    assert!(text.contains(r#"inferd_model_loads_total{model="breast_cancer",outcome="loaded",version="2"} 1"#));
    assert!(text.contains(r#"inferd_model_loads_total{model="breast_cancer",outcome="unloaded",version="1"} 1"#));
    assert!(!version_series(&text, "2").is_empty(), "the new version's series exist from its load");

    let audit: Value = app.get("/admin/audit?limit=4").await.json().await.unwrap();
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 4);
    let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
    // The second reload changed nothing, and is audited too: it was asked for.
    assert_eq!(actions, ["load", "unload", "reload", "reload"], "{audit}");
    assert_eq!(events[2]["detail"]["changes"], json!(["breast_cancer/2 loaded", "breast_cancer/1 unloaded"]));
    assert_eq!(events[0]["actor"], "anonymous");
    assert_eq!(events[0]["model"], "breast_cancer");
    assert_eq!(events[0]["version"], 2);
    assert!(events[0]["time"].as_str().unwrap().ends_with('Z'));
}

/// Breaks a staged version's files.
type Edit = fn(&Path);

#[tokio::test]
async fn a_broken_version_replaces_nothing_shows_why_and_is_retried_once_fixed() {
    let repository = repository_with("breast_cancer");
    let app = app_over(repository.path(), |_| {}).await;
    let broken: [(&str, Edit); 4] = [
        ("corrupt model", |dir| std::fs::write(dir.join("model.onnx"), b"\x08\x07 not a model").unwrap()),
        ("missing model", |dir| std::fs::remove_file(dir.join("model.onnx")).unwrap()),
        ("fixture mismatch", |dir| {
            let path = dir.join("fixtures.json");
            let mut fixtures: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let label = &mut fixtures["cases"][0]["output"]["label"];
            *label = json!(if label == "malignant" { "benign" } else { "malignant" });
            std::fs::write(&path, fixtures.to_string()).unwrap();
        }),
        ("half-copied", |dir| {
            let model = std::fs::read(dir.join("model.onnx")).unwrap();
            std::fs::write(dir.join("model.onnx"), &model[..model.len() / 2]).unwrap();
        }),
    ];
    for (version, (what, edit)) in (2..).zip(broken) {
        publish(repository.path(), version, edit);
        let answer = reload(&app).await;
        let change = &answer["changes"][0];
        assert_eq!(change["action"], "failed", "{what}: {answer}");
        assert_eq!(change["version"], version);
        assert!(!change["reason"].as_str().unwrap().is_empty());
        assert_eq!(predict_version(&app).await, "1", "{what}: the serving version still serves");
        assert_eq!(app.get("/health/ready").await.status(), 200);
        let listed = versions(&app).await;
        let failed = listed.iter().find(|v| v["version"] == version).unwrap();
        assert_eq!(failed["state"], "failed", "{what}: {listed:?}");
        assert!(failed["reason"].as_str().unwrap().len() > 10, "{what}: {failed}");
        // Unchanged files are not retried.
        assert_eq!(reload(&app).await["changes"], json!([]), "{what}");
        let state = format!(r#"inferd_model_info{{model="breast_cancer",state="failed",version="{version}"}} 1"#);
        assert!(metrics(&app).await.contains(&state), "{what}");
        std::fs::remove_dir_all(repository.path().join("breast_cancer").join(version.to_string())).unwrap();
        assert_eq!(reload(&app).await["changes"], json!([]), "{what}: removing a failed version unloads nothing");
        assert!(!metrics(&app).await.contains(&state), "{what}: a failed version that is gone is not failed");
    }
    let text = metrics(&app).await;
    assert!(text.contains(r#"inferd_model_loads_total{model="breast_cancer",outcome="failed",version="2"} 1"#));

    // A broken version fixed in place is retried and loads.
    publish(repository.path(), 9, |dir| std::fs::remove_file(dir.join("model.onnx")).unwrap());
    assert_eq!(reload(&app).await["changes"][0]["action"], "failed");
    std::fs::copy("models/breast_cancer/1/model.onnx", repository.path().join("breast_cancer/9/model.onnx")).unwrap();
    let answer = reload(&app).await;
    assert!(answer["changes"]
        .as_array()
        .unwrap()
        .contains(&json!({"model": "breast_cancer", "version": 9, "action": "loaded"})));
    assert_eq!(predict_version(&app).await, "9");
    let audit: Value = app.get("/admin/audit").await.json().await.unwrap();
    let failures = audit["events"].as_array().unwrap().iter().filter(|e| e["action"] == "load_failed").count();
    assert_eq!(failures, 5, "{audit}");
}

#[tokio::test]
async fn removing_a_version_unloads_it_and_pinned_requests_get_404() {
    let repository = repository_with("breast_cancer");
    publish(repository.path(), 2, |_| {});
    let app = app_over(repository.path(), |s| s.models.versions = inferd::config::VersionPolicy::All).await;
    let pinned = json!({"instances": [sample_input("breast_cancer")]});
    assert_eq!(app.post_json("/models/breast_cancer/versions/1/predict", &pinned).await.status(), 200);
    std::fs::remove_dir_all(repository.path().join("breast_cancer/1")).unwrap();
    let answer = reload(&app).await;
    assert_eq!(answer["changes"], json!([{"model": "breast_cancer", "version": 1, "action": "unloaded"}]));
    assert_eq!(app.post_json("/models/breast_cancer/versions/1/predict", &pinned).await.status(), 404);
    assert_eq!(predict_version(&app).await, "2");
}

#[tokio::test]
async fn the_repository_is_polled() {
    let repository = repository_with("breast_cancer");
    let app = app_over(repository.path(), |s| s.models.poll_interval_s = 0.2).await;
    publish(repository.path(), 2, |_| {});
    let mut served = String::new();
    for _ in 0..100 {
        served = predict_version(&app).await;
        if served == "2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served, "2", "a poll loaded the published version");
    let audit: Value = app.get("/admin/audit").await.json().await.unwrap();
    let load = audit["events"].as_array().unwrap().iter().find(|e| e["action"] == "load" && e["version"] == 2).cloned();
    assert_eq!(load.unwrap()["actor"], "system");
}

#[tokio::test]
async fn the_audit_limit_must_be_a_number() {
    let app = spawn_app_with(|_| {}).await;
    for query in ["limit=ten", "limit=-1", "limit=", "limit=1&limit=2", "limit=null&limit=null"] {
        let response = app.get(&format!("/admin/audit?{query}")).await;
        crate::helpers::assert_error(response, 400, "invalid_query").await;
    }
    let two: Value = app.get("/admin/audit?other=x&limit=2").await.json().await.unwrap();
    assert_eq!(two["events"].as_array().unwrap().len(), 2);
    let audit: Value = app.get("/admin/audit").await.json().await.unwrap();
    // Startup loads are audited too.
    assert!(audit["events"].as_array().unwrap().iter().any(|e| e["action"] == "load" && e["actor"] == "system"));
}

#[tokio::test]
async fn a_swap_under_load_fails_no_request_and_each_answer_is_its_versions() {
    let repository = repository_with("breast_cancer");
    let app = std::sync::Arc::new(app_over(repository.path(), |_| {}).await);
    // Version 2 answers differently from version 1: it flags every prediction under 0.999999 confidence.
    let input = sample_input("breast_cancer");
    let confident = {
        let answer: Value =
            app.post_json("/predict", &json!({"instances": [input.clone()]})).await.json().await.unwrap();
        answer["predictions"][0]["confidence"].as_f64().unwrap()
    };
    assert!(confident < 0.999999, "the sample must fall under version 2's bar");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (app, stop, input) = (app.clone(), stop.clone(), input.clone());
            tokio::spawn(async move {
                let (mut by_version, mut failed) = (std::collections::BTreeMap::<String, u64>::new(), Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let response = app.post_json("/predict", &json!({"instances": [input.clone()]})).await;
                    let status = response.status().as_u16();
                    let answer: Value = response.json().await.unwrap_or(Value::Null);
                    let version = answer["version"].as_str().unwrap_or("?").to_string();
                    let flagged = answer["predictions"][0]["low_confidence"] == true;
                    let right = match version.as_str() {
                        "1" => !flagged,
                        "2" => flagged,
                        _ => false,
                    };
                    if status != 200 || !right {
                        failed.push(format!("{status} {answer}"));
                    }
                    *by_version.entry(version).or_default() += 1;
                }
                (by_version, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(repository.path(), 2, |dir| {
        let path = dir.join("inferd.toml");
        let manifest = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, manifest.replace("min_confidence = 0.0", "min_confidence = 0.999999")).unwrap();
    });
    let answer = reload(&app).await;
    assert_eq!(answer["changes"][0]["action"], "loaded", "{answer}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = std::collections::BTreeMap::<String, u64>::new();
    for client in clients {
        let (by_version, failed) = client.await.unwrap();
        assert!(failed.is_empty(), "failed or wrong answers during the swap: {failed:?}");
        for (version, n) in by_version {
            *total.entry(version).or_default() += n;
        }
    }
    assert!(total.get("1").copied().unwrap_or(0) > 0 && total.get("2").copied().unwrap_or(0) > 0, "{total:?}");
    eprintln!("answers during the swap, by version: {total:?}, none failed");
}

/// Resident memory of this process (the server runs in it), in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test]
async fn memory_returns_after_many_loads_and_unloads() {
    let repository = repository_with("breast_cancer");
    let app = app_over(repository.path(), |_| {}).await;
    let cycle = |version: u64| {
        let app = &app;
        let path = repository.path().to_path_buf();
        async move {
            publish(&path, version, |_| {});
            let answer = reload(app).await;
            assert_eq!(answer["changes"][0]["action"], "loaded", "{answer}");
            std::fs::remove_dir_all(path.join("breast_cancer").join((version - 1).to_string())).unwrap();
            assert_eq!(predict_version(app).await, version.to_string());
        }
    };
    for version in 2..=6 {
        cycle(version).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = resident_bytes();
    for version in 7..=56 {
        cycle(version).await;
    }
    // Unloaded versions are freed once their last request is answered (checked every 50 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = resident_bytes();
    let grown = after.saturating_sub(before) as f64 / 1048576.0;
    eprintln!(
        "resident memory: {:.1} MiB before 50 load/unload cycles, {:.1} MiB after",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    // One loaded breast_cancer version holds several MiB (plan, drift windows, metrics): 50 kept would be
    // hundreds.
    assert!(grown < 24.0, "resident memory grew by {grown:.1} MiB over 50 load/unload cycles");
    let text = metrics(&app).await;
    for version in 1..56 {
        assert!(version_series(&text, &version.to_string()).is_empty(), "version {version} left series");
    }
}
