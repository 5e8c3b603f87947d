//! API keys (DESIGN §9): each protect mode, 401 with `WWW-Authenticate`, the key id (never the key) in the
//! audit and prediction logs, and key rotation without a restart.

use std::path::{Path, PathBuf};

use inferd::config::{Protect, Settings};
use serde_json::{json, Value};

use crate::helpers::{assert_error, post_whole_body_then_read, sample_input, spawn_app_with, TestApp};

const ALICE: &str = "alice-key-0123456789abcdef";
const BOB: &str = "bob-key-fedcba9876543210";

fn key_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("keys.txt");
    std::fs::write(&path, text).unwrap();
    path
}

async fn app_with_keys(file: PathBuf, protect: Protect, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(move |s| {
        s.auth.api_keys_file = Some(file);
        s.auth.protect = protect;
        adjust(s);
    })
    .await
}

async fn get(app: &TestApp, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(format!("{}{path}", app.address));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn post(app: &TestApp, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app.client.post(format!("{}{path}", app.address)).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

fn one_instance() -> Value {
    json!({"instances": [sample_input("breast_cancer")]})
}

#[tokio::test]
async fn protect_all_refuses_strangers_everywhere_but_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_keys(key_file(dir.path(), &format!("alice:{ALICE}\n")), Protect::All, |_| {}).await;

    let missing = post(&app, "/predict", None, &one_instance()).await;
    assert_eq!(missing.headers()["www-authenticate"], r#"Bearer realm="inferd""#);
    let body = assert_error(missing, 401, "unauthorized").await;
    assert_eq!(body["error"]["field"], "Authorization");

    let wrong = post(&app, "/predict", Some("alice-key-0123456789abcdeX"), &one_instance()).await;
    assert_eq!(wrong.headers()["www-authenticate"], r#"Bearer realm="inferd", error="invalid_token""#);
    assert_error(wrong, 401, "unauthorized").await;
    let basic = app.client.post(format!("{}/predict", app.address)).basic_auth("alice", Some(ALICE));
    assert_eq!(basic.json(&one_instance()).send().await.unwrap().status(), 401, "only Bearer is accepted");

    assert_eq!(post(&app, "/predict", Some(ALICE), &one_instance()).await.status(), 200);
    for path in ["/health", "/openapi.json", "/models", "/models/wine", "/v2", "/v2/models/wine", "/admin/audit"] {
        assert_eq!(get(&app, path, None).await.status(), 401, "{path} needs a key");
        assert_eq!(get(&app, path, Some(ALICE)).await.status(), 200, "{path} with a key");
    }
    for path in ["/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/metrics"] {
        assert_eq!(get(&app, path, None).await.status(), 200, "{path} needs no key");
    }
    // KServe routes refuse the KServe way; an unknown route is a 404 whatever the key.
    let v2 = json!({"inputs": [{"name": "alcohol", "shape": [1], "datatype": "FP64", "data": [13.0]}]});
    let refused = post(&app, "/v2/models/wine/infer", None, &v2).await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    assert!(refused.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("API key"));
    assert_eq!(get(&app, "/no/such/route", None).await.status(), 404);

    let metrics = get(&app, "/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains(r#"inferd_rejected_total{reason="unauthorized"} 11"#), "{metrics}");
}

#[tokio::test]
async fn protect_admin_guards_only_admin_and_names_the_caller_in_both_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, log) = (dir.path().join("audit.jsonl"), dir.path().join("predictions.jsonl"));
    let keys = key_file(dir.path(), &format!("# operators\nalice:{ALICE}\nbob: {BOB}\n"));
    let (audit_path, log_path) = (audit.clone(), log.clone());
    let mut app = app_with_keys(keys, Protect::Admin, move |s| {
        s.audit.path = Some(audit_path);
        s.monitoring.prediction_log.path = Some(log_path);
    })
    .await;

    assert_eq!(
        post(&app, "/predict", None, &json!({"instances": [sample_input("breast_cancer")], "ids": ["anon"]}))
            .await
            .status(),
        200
    );
    let keyed = json!({"instances": [sample_input("breast_cancer")], "ids": ["from-bob"]});
    assert_eq!(post(&app, "/predict", Some(BOB), &keyed).await.status(), 200);
    assert_error(post(&app, "/admin/reload", None, &json!({})).await, 401, "unauthorized").await;
    assert_error(get(&app, "/admin/audit", Some("not-a-key-at-all-0000")).await, 401, "unauthorized").await;
    assert_eq!(post(&app, "/admin/reload", Some(ALICE), &json!({})).await.status(), 200);
    let routing = app.client.put(format!("{}/admin/models/wine/routing", app.address)).bearer_auth(BOB);
    assert_eq!(routing.json(&json!({"default": 1})).send().await.unwrap().status(), 200);
    app.stop().await.unwrap().unwrap();

    let audit_text = std::fs::read_to_string(&audit).unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap();
    for text in [&audit_text, &log_text] {
        assert!(!text.contains(ALICE) && !text.contains(BOB), "a key was written: {text}");
    }
    let events: Vec<Value> = audit_text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actor = |action: &str| events.iter().find(|e| e["action"] == action).map(|e| e["actor"].clone());
    assert_eq!(actor("reload"), Some(json!("alice")), "{events:?}");
    assert_eq!(actor("routing"), Some(json!("bob")), "{events:?}");
    let reload = events.iter().find(|e| e["action"] == "reload").unwrap();
    assert_eq!(reload["detail"]["api_keys"], json!({"count": 2}), "the key file was re-read");

    let lines: Vec<Value> = log_text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let key_of = |id: &str| lines.iter().find(|l| l["id"] == id).map(|l| l["key_id"].clone());
    assert_eq!(key_of("anon"), Some(Value::Null));
    assert_eq!(key_of("from-bob"), Some(json!("bob")));
}

#[tokio::test]
async fn keys_rotate_on_reload_without_a_restart_and_a_bad_file_keeps_the_old_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(dir.path(), &format!("alice:{ALICE}\n"));
    let app = app_with_keys(file.clone(), Protect::All, |_| {}).await;
    assert_eq!(get(&app, "/models", Some(ALICE)).await.status(), 200);
    assert_eq!(get(&app, "/models", Some(BOB)).await.status(), 401);

    // Rotate: bob in, alice out. The caller who reloads is still alice.
    std::fs::write(&file, format!("bob:{BOB}\n")).unwrap();
    let answer: Value = post(&app, "/admin/reload", Some(ALICE), &json!({})).await.json().await.unwrap();
    assert_eq!(answer["api_keys"], json!({"count": 1}));
    assert_eq!(get(&app, "/models", Some(BOB)).await.status(), 200);
    assert_eq!(get(&app, "/models", Some(ALICE)).await.status(), 401);

    // A broken or emptied file changes nothing: the keys held stay, and the answer says why.
    for broken in ["bob-without-a-colon\n", "", "bob:short\n"] {
        std::fs::write(&file, broken).unwrap();
        let answer: Value = post(&app, "/admin/reload", Some(BOB), &json!({})).await.json().await.unwrap();
        let error = answer["api_keys"]["error"].as_str().unwrap_or_else(|| panic!("{broken:?}: {answer}"));
        assert!(!error.contains(BOB), "{error}");
        assert_eq!(get(&app, "/models", Some(BOB)).await.status(), 200, "{broken:?}");
    }
}

#[tokio::test]
async fn keys_from_the_environment_and_protected_metrics() {
    let var = "INFERD_TEST_API_KEYS_ENV_AND_METRICS";
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var(var, format!("alice:{ALICE}, bob:{BOB}")) };
    let app = spawn_app_with(|s| {
        s.auth.api_keys_env = Some(var.into());
        s.auth.protect_metrics = true;
    })
    .await;
    assert_eq!(post(&app, "/predict", None, &one_instance()).await.status(), 200, "protect = none");
    assert_error(get(&app, "/metrics", None).await, 401, "unauthorized").await;
    assert_eq!(get(&app, "/metrics", Some(ALICE)).await.status(), 200);
    assert_eq!(get(&app, "/metrics", Some(BOB)).await.status(), 200);
    assert_eq!(get(&app, "/health/ready", None).await.status(), 200);
}

#[tokio::test]
async fn a_protect_mode_without_keys_refuses_to_start() {
    for protect in [Protect::Admin, Protect::All] {
        let mut settings = Settings::default();
        settings.server.port = 0;
        settings.models.repository = PathBuf::from("models");
        settings.auth.protect = protect;
        let error = inferd::app::Application::build(settings).await.err().expect("refused").to_string();
        assert!(error.contains("needs API keys"), "{error}");
    }
    let mut settings = Settings::default();
    settings.auth.api_keys_env = Some("INFERD_TEST_NO_SUCH_VARIABLE".into());
    let error = inferd::app::Application::build(settings).await.err().expect("refused").to_string();
    assert!(error.contains("INFERD_TEST_NO_SUCH_VARIABLE"), "{error}");
}

/// A client that writes its whole (large) body before reading reads the 401, not a connection reset: the
/// refused body is read and thrown away.
#[tokio::test]
async fn a_refused_large_body_gets_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_keys(key_file(dir.path(), &format!("alice:{ALICE}\n")), Protect::All, |_| {}).await;
    // 7 MiB: under the 8 MiB body limit, well past what the socket buffers hold.
    let answers = post_whole_body_then_read(&app, "/predict", 7 << 20, 3).await;
    for answer in answers {
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("\"unauthorized\""), "{answer}");
    }
}

/// A repository poll re-reads a key file that changed (a rotated Kubernetes Secret), with no signal or call.
#[tokio::test]
async fn polls_take_a_changed_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(dir.path(), &format!("alice:{ALICE}\n"));
    let app = app_with_keys(file.clone(), Protect::All, |s| s.models.poll_interval_s = 0.1).await;
    assert_eq!(get(&app, "/models", Some(ALICE)).await.status(), 200);
    std::fs::write(&file, format!("bob:{BOB}\n")).unwrap();
    let started = std::time::Instant::now();
    while get(&app, "/models", Some(BOB)).await.status() != 200 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the poll did not take the new key file");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(get(&app, "/models", Some(ALICE)).await.status(), 401);
    let audit: Value = get(&app, "/admin/audit", Some(BOB)).await.json().await.unwrap();
    let reload = audit["events"].as_array().unwrap().iter().rev().find(|e| e["action"] == "reload").cloned();
    assert_eq!(
        reload.map(|e| (e["actor"].clone(), e["detail"]["api_keys"].clone())),
        Some((json!("system"), json!({"count": 1})))
    );
}
