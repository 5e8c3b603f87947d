//! The `inferd` binary as a user runs it: `check` on the sample models, and `serve` refusing to start on a
//! broken repository with one line naming the file and the field.

use std::path::Path;
use std::process::Command;

fn inferd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_inferd"))
}

fn copy_version(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn check_passes_on_every_sample_model() {
    for model in ["models/breast_cancer/1", "models/wine/1", "models/diabetes/1", "tests/data/models/all_steps/1"] {
        let output = inferd().args(["check", model]).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{model}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("fixture cases match"), "{stdout}");
    }
}

#[test]
fn check_fails_on_a_fixture_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("breast_cancer/1");
    copy_version(Path::new("models/breast_cancer/1"), &version);
    let fixtures = std::fs::read_to_string(version.join("fixtures.json")).unwrap();
    let mut fixtures: serde_json::Value = serde_json::from_str(&fixtures).unwrap();
    let probabilities = fixtures["cases"][0]["output"]["probabilities"].as_object_mut().unwrap();
    for p in probabilities.values_mut() {
        *p = serde_json::json!(p.as_f64().unwrap() * 0.5 + 0.25);
    }
    std::fs::write(version.join("fixtures.json"), fixtures.to_string()).unwrap();
    let output = inferd().arg("check").arg(&version).output().unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("MISMATCH") && stdout.contains("case 0"), "{stdout}");
}

/// Runs `inferd serve` on a repository holding one broken copy of breast_cancer; returns stderr.
fn serve_broken(break_it: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("models/breast_cancer/1");
    copy_version(Path::new("models/breast_cancer/1"), &version);
    break_it(&version);
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[server]\nport = 0\n[models]\nrepository = \"models\"\n").unwrap();
    let output = inferd().current_dir(dir.path()).args(["serve", "--config", "config.toml"]).output().unwrap();
    assert!(!output.status.success(), "a broken repository must not serve");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let line = stderr.lines().find(|l| l.starts_with("inferd: ")).unwrap_or_else(|| panic!("{stderr}")).to_string();
    line
}

#[test]
fn serve_refuses_a_broken_manifest_naming_file_and_field() {
    let line = serve_broken(|v| {
        let manifest = std::fs::read_to_string(v.join("inferd.toml")).unwrap();
        std::fs::write(
            v.join("inferd.toml"),
            manifest.replacen("op = \"standard_scale\"", "op = \"standard_scale\"\nmean_ = 1", 1),
        )
        .unwrap();
    });
    assert!(line.contains("models/breast_cancer/1/inferd.toml"), "{line}");
    assert!(line.contains("mean_"), "{line}");

    let line = serve_broken(|v| {
        let manifest = std::fs::read_to_string(v.join("inferd.toml")).unwrap();
        let shortened = manifest.replacen("scale = [\n", "scale = [\n    1.0,\n", 1);
        std::fs::write(v.join("inferd.toml"), shortened).unwrap();
    });
    assert!(line.contains("inferd.toml") && line.contains("preprocess[0].scale"), "{line}");
}

#[test]
fn serve_refuses_a_broken_model_file_naming_it() {
    let line = serve_broken(|v| std::fs::write(v.join("model.onnx"), b"not an onnx file").unwrap());
    assert!(line.contains("models/breast_cancer/1/model.onnx"), "{line}");
    let line = serve_broken(|v| std::fs::remove_file(v.join("model.onnx")).unwrap());
    assert!(line.contains("model.onnx") && line.contains("not found"), "{line}");
}

#[test]
fn environment_variables_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "[server]\nport = 0\n[models]\nrepository = \"models\"\n").unwrap();
    let output = inferd()
        .current_dir(dir.path())
        .env("INFERD_MODELS__REPOSITORY", "elsewhere/repo")
        .args(["serve", "--config", "config.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("elsewhere/repo"), "{stderr}");

    let output = inferd()
        .current_dir(dir.path())
        .env("INFERD_SERVER__PROT", "9000")
        .args(["serve", "--config", "config.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("prot"), "a misspelt key is refused: {stderr}");
}

/// The real binary: ready on the bundled config, then SIGTERM → exit 0.
#[cfg(unix)]
#[test]
fn serve_is_ready_then_exits_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = inferd()
        .args(["serve", "--config", "config.toml"])
        .env("INFERD_SERVER__PORT", port.to_string())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{port}/health/ready");
    while inferd().args(["healthcheck", &url]).status().map(|s| !s.success()).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(30), "not ready within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let logs: Vec<String> = rx.try_iter().collect();
    assert!(logs.iter().any(|l| l.contains("stopped")), "{logs:?}");
}

/// `inferd profile` on each bundled model's training CSV writes exactly the reference.json that
/// tools/export.py wrote from the same training frame (numbers compared as parsed, all of them).
#[test]
fn profile_rebuilds_the_exporters_reference_profiles() {
    let dir = tempfile::tempdir().unwrap();
    for model in ["breast_cancer", "wine", "diabetes"] {
        let output = dir.path().join(format!("{model}.json"));
        let run = inferd()
            .args(["profile", "--model", model, "--input", &format!("tests/data/train/{model}.csv"), "--output"])
            .arg(&output)
            .output()
            .unwrap();
        assert!(run.status.success(), "{model}: {}", String::from_utf8_lossy(&run.stderr));
        let read = |path: &Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        let expected = read(&Path::new("models").join(model).join("1/reference.json"));
        assert_eq!(read(&output), expected, "{model}");
    }
}

#[test]
fn profile_refuses_data_without_a_feature_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("partial.csv");
    std::fs::write(&input, "alcohol,malic_acid\n13.0,1.5\n").unwrap();
    let run = inferd().args(["profile", "--model", "wine", "--output", "-", "--input"]).arg(&input).output().unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("no column for the feature 'ash'"), "{stderr}");
}

/// The real binary rescans its repository on SIGHUP: a version published while it runs is loaded and
/// audited (actor `system`), and the audit log is complete after SIGTERM.
#[cfg(unix)]
#[test]
fn sighup_loads_a_published_version_and_the_audit_log_records_it() {
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let repository = dir.path().join("models");
    copy_version(Path::new("models/breast_cancer/1"), &repository.join("breast_cancer/1"));
    let audit = dir.path().join("audit.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = inferd()
        .args(["serve", "--config", "config.toml"])
        .env("INFERD_SERVER__PORT", port.to_string())
        .env("INFERD_MODELS__REPOSITORY", &repository)
        .env("INFERD_MODELS__POLL_INTERVAL_S", "0")
        .env("INFERD_AUDIT__PATH", &audit)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{port}/health/ready");
    while inferd().args(["healthcheck", &url]).status().map(|s| !s.success()).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(30), "not ready within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    copy_version(Path::new("models/breast_cancer/1"), &repository.join("breast_cancer/.staging"));
    std::fs::rename(repository.join("breast_cancer/.staging"), repository.join("breast_cancer/2")).unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let events = || -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let loaded = |e: &serde_json::Value| e["action"] == "load" && e["version"] == 2;
    while !events().iter().any(loaded) {
        assert!(started.elapsed() < Duration::from_secs(30), "version 2 not loaded after SIGHUP: {:?}", events());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let events = events();
    let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["load", "load", "unload", "reload"], "{events:?}");
    assert!(events.iter().all(|e| e["actor"] == "system"), "{events:?}");
    assert_eq!(events[0]["detail"]["at"], "startup");
}

/// The status code of `GET path` on 127.0.0.1:`port`, with `Authorization: Bearer key` when given.
#[cfg(unix)]
fn status_of(port: u16, path: &str, key: Option<&str>) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(unix)]
#[test]
fn sighup_rotates_the_api_keys_of_the_real_binary() {
    use std::time::{Duration, Instant};

    const ALICE: &str = "alice-key-0123456789abcdef";
    const BOB: &str = "bob-key-fedcba9876543210";
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, format!("alice:{ALICE}\n")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = inferd()
        .args(["serve", "--config", "config.toml"])
        .env("INFERD_SERVER__PORT", port.to_string())
        .env("INFERD_MODELS__POLL_INTERVAL_S", "0")
        .env("INFERD_AUTH__PROTECT", "all")
        .env("INFERD_AUTH__API_KEYS_FILE", &keys)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while status_of(port, "/health/ready", None) != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(30), "not ready within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status_of(port, "/models", None), Some(401));
    assert_eq!(status_of(port, "/models", Some(ALICE)), Some(200));
    assert_eq!(status_of(port, "/models", Some(BOB)), Some(401));

    std::fs::write(&keys, format!("bob:{BOB}\n")).unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    while status_of(port, "/models", Some(BOB)) != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(30), "bob's key not taken after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status_of(port, "/models", Some(ALICE)), Some(401), "alice's key is revoked");
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
