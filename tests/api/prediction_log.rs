//! The prediction log: one JSON line per answered prediction with its raw input and output, sampled,
//! rotated by size, and complete after shutdown — also when the real binary is stopped by SIGTERM under load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{fixtures, sample_input, spawn_app_with, TestApp};

async fn app_logging_to(path: PathBuf, adjust: impl FnOnce(&mut inferd::config::Settings)) -> TestApp {
    spawn_app_with(move |s| {
        s.monitoring.prediction_log.path = Some(path);
        adjust(s);
    })
    .await
}

/// Every line of the log file and of its rotated files.
fn log_lines(path: &Path) -> Vec<Value> {
    let mut files = vec![path.to_path_buf()];
    files.extend((1..100).map(|i| PathBuf::from(format!("{}.{i}", path.display()))).filter(|p| p.exists()));
    let mut lines = Vec::new();
    for file in files.iter().rev() {
        let text = std::fs::read_to_string(file).unwrap();
        lines.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).expect("each line is JSON")));
    }
    lines
}

#[tokio::test]
async fn each_answered_prediction_is_one_line_with_its_input_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log/predictions.jsonl");
    let mut app = app_logging_to(path.clone(), |_| {}).await;
    let cases = fixtures("wine")["cases"].clone();
    let inputs: Vec<Value> = cases.as_array().unwrap().iter().take(3).map(|c| c["input"].clone()).collect();
    let body = json!({"instances": inputs, "ids": ["w-1", "w-2", "w-3"]});
    let answer: Value = app.post_json("/models/wine/predict", &body).await.json().await.unwrap();
    let bad = json!({"instances": [{"alcohol": "strong"}]});
    assert_eq!(app.post_json("/models/wine/predict", &bad).await.status(), 400);
    app.stop().await.unwrap().unwrap();

    let lines = log_lines(&path);
    assert_eq!(lines.len(), 3, "one line per answered prediction, none for the refused request");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["id"], format!("w-{}", i + 1));
        assert_eq!(line["model"], "wine");
        assert_eq!(line["version"], "1");
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(line["latency_us"].as_u64().unwrap() > 0);
        // The raw input as read (missing values as null), the output as answered.
        assert_eq!(line["input"], cases[i]["input"], "line {i}");
        let mut answered = answer["predictions"][i].clone();
        answered.as_object_mut().unwrap().remove("id");
        assert_eq!(line["output"], answered);
    }
}

#[tokio::test]
async fn inputs_are_logged_by_name_on_one_line_whatever_the_body_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictions.jsonl");
    let mut app = app_logging_to(path.clone(), |_| {}).await;
    let described: Value = app.get("/models/wine").await.json().await.unwrap();
    let names: Vec<String> =
        described["features"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().into()).collect();
    let input = sample_input("wine");
    let positional: Vec<Value> = names.iter().map(|n| input[n].clone()).collect();
    // Pretty-printed (line breaks inside the record), a key written with an escape, and a positional record.
    let pretty = serde_json::to_string_pretty(&json!({"instances": [input, positional], "ids": ["a", "b"]}))
        .unwrap()
        .replacen("\"alcohol\"", "\"\\u0061lcohol\"", 1);
    assert!(pretty.contains("\\u0061lcohol"));
    let answer = app.post_raw("/models/wine/predict", Some("application/json"), pretty).await;
    assert_eq!(answer.status(), 200);
    app.stop().await.unwrap().unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2, "one line per record, whatever the body's layout:\n{text}");
    let lines = log_lines(&path);
    assert_eq!(lines[0]["id"], "a");
    assert_eq!(lines[0]["input"], input, "the named record, its values as read");
    assert_eq!(lines[1]["id"], "b");
    assert_eq!(lines[1]["input"], input, "the positional record, by feature name");
    assert_eq!(lines[0]["output"], lines[1]["output"]);
}

#[tokio::test]
async fn sampling_keeps_about_the_configured_share() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictions.jsonl");
    let mut app = app_logging_to(path.clone(), |s| s.monitoring.prediction_log.sample_rate = 0.25).await;
    // Records that differ, each with its own id: a sampled line must carry its own record and answer.
    let base = sample_input("breast_cancer");
    let mut records = std::collections::HashMap::new();
    let mut answers = std::collections::HashMap::new();
    for round in 0..4 {
        let ids: Vec<String> = (0..1000).map(|i| format!("r{round}-{i}")).collect();
        let instances: Vec<Value> = (0..1000)
            .map(|i| {
                let mut record = base.clone();
                record["mean radius"] = json!(10.0 + i as f64 / 100.0);
                record
            })
            .collect();
        let response = app.post_json("/predict", &json!({"instances": instances, "ids": ids})).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        for (i, id) in ids.iter().enumerate() {
            records.insert(id.clone(), instances[i].clone());
            answers.insert(id.clone(), answer["predictions"][i].clone());
        }
    }
    app.stop().await.unwrap().unwrap();
    let lines = log_lines(&path);
    assert!((800..1200).contains(&lines.len()), "{} of 4000 kept at 25%", lines.len());
    for line in &lines {
        let id = line["id"].as_str().unwrap();
        assert_eq!(line["input"], records[id], "{id}: its own record");
        assert_eq!(line["output"]["label"], answers[id]["label"], "{id}: its own answer");
    }
}

#[tokio::test]
async fn files_rotate_by_size_without_losing_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictions.jsonl");
    let mut app = app_logging_to(path.clone(), |s| {
        s.monitoring.prediction_log.max_bytes = 64 * 1024;
        s.monitoring.prediction_log.max_files = 50;
    })
    .await;
    let body = json!({"instances": vec![sample_input("breast_cancer"); 200]});
    for _ in 0..5 {
        assert_eq!(app.post_json("/predict", &body).await.status(), 200);
    }
    app.stop().await.unwrap().unwrap();
    assert!(dir.path().join("predictions.jsonl.3").exists(), "several rotations");
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        assert!(entry.unwrap().metadata().unwrap().len() <= 64 * 1024);
    }
    assert_eq!(log_lines(&path).len(), 1000);
}

/// The real binary under load, stopped by SIGTERM: every prediction answered 200 is in the log.
#[tokio::test]
async fn nothing_answered_is_lost_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("predictions.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("config.toml");
    let repository = std::fs::canonicalize("models").unwrap();
    std::fs::write(
        &config,
        format!(
            "[server]\nport = {port}\nshutdown_delay_s = 0.3\n[models]\nrepository = {:?}\ndefault = \"breast_cancer\"\n\
             [monitoring.prediction_log]\npath = {:?}\n",
            repository.display().to_string(),
            log.display().to_string()
        ),
    )
    .unwrap();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_inferd"))
        .args(["serve", "--config"])
        .arg(&config)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if client.get(format!("{base}/health/ready")).send().await.is_ok_and(|r| r.status() == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the server became ready");

    // Four clients send 100-row requests until the server stops answering.
    let body = json!({"instances": vec![sample_input("breast_cancer"); 100]});
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, url, body) = (client.clone(), format!("{base}/predict"), body.clone());
        clients.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            loop {
                match client.post(&url).json(&body).send().await {
                    Ok(response) if response.status() == 200 => {
                        let answer: Value = response.json().await.unwrap();
                        let predictions = answer["predictions"].as_array().unwrap();
                        answered.extend(predictions.iter().map(|p| p["id"].as_str().unwrap().to_string()));
                    }
                    _ => return answered,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit 0 after SIGTERM: {status}");
    let mut answered = std::collections::BTreeSet::new();
    for client in clients {
        answered.extend(client.await.unwrap());
    }
    assert!(!answered.is_empty());
    let logged: std::collections::BTreeSet<String> =
        log_lines(&log).iter().map(|line| line["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(logged, answered, "every prediction answered 200 is logged, by id, and nothing else");
}
