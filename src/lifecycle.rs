//! Model lifecycle at runtime (DESIGN §8): rescans of the repository (every `poll_interval_s`, on SIGHUP and
//! on `POST /admin/reload`), the atomic swap of the model table, the metrics of versions that come and go,
//! and the audit log.
//!
//! A rescan loads new and changed versions on a blocking thread while the current table keeps serving, then
//! swaps the next table in with one `ArcSwap` store: a request holds the version it resolved until it is
//! answered, so none fails or changes version halfway. Rescans are serialised. A version that leaves the
//! table is freed when its last in-flight request lets go of it; its metric series are removed then, so
//! nothing stale stays on `/metrics`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde_json::{json, Value};

use crate::config::{AuditSettings, LowConfidencePolicy, Routing, Settings};
use crate::repository::{Change, ModelEntry, ModelTable, ModelVersion};
use crate::state::AppState;

/// The actor of events nobody asked for: startup, polling, SIGHUP.
pub const SYSTEM: &str = "system";

/// Events kept in memory for `GET /admin/audit`.
const AUDIT_MEMORY: usize = 10_000;

/// One JSON line per lifecycle event at `[audit] path`, and the last [`AUDIT_MEMORY`] in memory. Never a key,
/// never a payload: the actor is an API key's id (or `system`).
pub struct AuditLog {
    recent: Mutex<VecDeque<Value>>,
    file: Mutex<Option<(PathBuf, File)>>,
}

impl AuditLog {
    pub fn open(settings: &AuditSettings) -> anyhow::Result<AuditLog> {
        let file = match &settings.path {
            Some(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("{}: cannot open the audit log", path.display()))?;
                Some((path.clone(), file))
            }
            None => None,
        };
        Ok(AuditLog { recent: Mutex::new(VecDeque::new()), file: Mutex::new(file) })
    }

    /// Records one event: `action` is load, load_failed, unload, routing or reload.
    pub fn record(&self, actor: &str, action: &str, model: Option<&str>, version: Option<u64>, detail: Value) {
        let time = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        let event = json!({
            "time": time,
            "actor": actor,
            "action": action,
            "model": model,
            "version": version,
            "detail": detail,
        });
        tracing::info!(target: "inferd::audit", %event, "audit");
        if let Some((path, file)) = &mut *self.file.lock().unwrap_or_else(|e| e.into_inner()) {
            let mut line = event.to_string();
            line.push('\n');
            // Lifecycle events are rare: each is written through at once, so a crash loses none.
            if let Err(error) = file.write_all(line.as_bytes()) {
                tracing::error!(path = %path.display(), %error, "audit log: write failed");
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == AUDIT_MEMORY {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// The last `limit` events, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Value> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().skip(recent.len().saturating_sub(limit)).cloned().collect()
    }

    /// Syncs the file to disk (at shutdown).
    pub fn sync(&self) {
        if let Some((path, file)) = &*self.file.lock().unwrap_or_else(|e| e.into_inner()) {
            if let Err(error) = file.sync_all() {
                tracing::error!(path = %path.display(), %error, "audit log: sync failed");
            }
        }
    }
}

/// Serialises rescans, and audits them.
pub struct Lifecycle {
    rescanning: tokio::sync::Mutex<()>,
    pub audit: AuditLog,
}

impl Lifecycle {
    pub fn new(audit: AuditLog) -> Lifecycle {
        Lifecycle { rescanning: tokio::sync::Mutex::new(()), audit }
    }
}

/// A version's answers need what the server's settings ask of every version (checked at startup too).
pub fn accepts(settings: &Settings, version: &ModelVersion) -> Result<(), String> {
    let monitor = &version.monitor;
    if settings.monitoring.low_confidence == LowConfidencePolicy::Fallback
        && monitor.min_confidence > 0.0
        && monitor.fallback_label.is_none()
    {
        return Err(format!(
            "{}: monitoring.fallback_label is required: [monitoring] low_confidence = \"fallback\" and \
             min_confidence = {}",
            version.dir.join("inferd.toml").display(),
            monitor.min_confidence
        ));
    }
    Ok(())
}

/// What asked for a rescan: a reload asked for is always audited, a poll only when it changed something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `POST /admin/reload` or SIGHUP.
    Asked,
    Poll,
}

/// What a reload did.
pub struct Reloaded {
    pub changes: Vec<Change>,
    /// The key file re-read (asked-for reloads always, polls when it changed): the keys held now, or why the
    /// old ones stay.
    pub api_keys: Option<Result<usize, String>>,
}

/// `{"count": n}` or `{"error": reason}`: never a key, never an id.
pub fn keys_json(keys: &Result<usize, String>) -> Value {
    match keys {
        Ok(count) => json!({"count": count}),
        Err(error) => json!({"error": error}),
    }
}

/// Rescans the repository and swaps the result in; a reload asked for (SIGHUP, `POST /admin/reload`) also
/// re-reads the API key file, and a poll re-reads it when it changed. Answers what changed; an unreadable repository changes nothing and is an error
/// (audited).
pub async fn reload(state: &AppState, actor: &str, trigger: Trigger) -> anyhow::Result<Reloaded> {
    let _serial = state.lifecycle.rescanning.lock().await;
    let api_keys = match trigger {
        Trigger::Asked => state.keys.has_file().then(|| state.keys.reload()),
        Trigger::Poll => state.keys.reload_if_changed(),
    };
    match &api_keys {
        Some(Ok(count)) => tracing::info!(count, "API key file read"),
        Some(Err(error)) => tracing::error!(%error, "API keys not reloaded: the keys held stay"),
        None => {}
    }
    let audit_reload = |mut detail: Value| {
        if let Some(keys) = &api_keys {
            detail["api_keys"] = keys_json(keys);
        }
        state.lifecycle.audit.record(actor, "reload", None, None, detail);
    };
    let current = state.models.load_full();
    let previous = current.clone();
    let scanning = state.clone();
    let rescan = tokio::task::spawn_blocking(move || {
        let settings = &scanning.settings;
        current.rescan(&settings.models, settings.monitoring.drift_defaults(), &|v| accepts(settings, v))
    })
    .await
    .context("rescan panicked")?;
    let (next, changes) = match rescan {
        Ok(rescanned) => rescanned,
        Err(error) => {
            let reason = error.to_string();
            audit_reload(json!({"error": reason}));
            anyhow::bail!("rescan failed: {reason}");
        }
    };
    apply(state, &previous, next, &changes, actor);
    if trigger == Trigger::Asked || !changes.is_empty() || api_keys.is_some() {
        let summary: Vec<String> = changes.iter().map(describe).collect();
        audit_reload(json!({"changes": summary}));
    }
    Ok(Reloaded { changes, api_keys })
}

/// Registers the metrics of loaded versions, swaps `next` in, and audits every change; versions that left
/// lose their series once their last request is answered.
fn apply(state: &AppState, previous: &Arc<ModelTable>, next: ModelTable, changes: &[Change], actor: &str) {
    let metrics = &state.metrics;
    let monitoring = state.monitoring();
    for change in changes {
        match change {
            Change::Loaded { model, version, replaced } => {
                let loaded = &next.models[model].versions[version];
                let label = loaded.version_label.as_str();
                if *replaced {
                    // The same version from changed files: its series start again from nothing.
                    metrics.remove_version(model, label);
                }
                metrics.clear_model_state(model, label, "failed");
                metrics.set_model_state(model, label, "ready");
                if monitoring {
                    metrics.register_version(&loaded.monitor);
                }
                metrics.record_model_load(model, label, "loaded");
                let detail = json!({
                    "replaced": replaced,
                    "elapsed_ms": loaded.load_time.as_millis() as u64,
                    "dir": loaded.dir.display().to_string(),
                });
                state.lifecycle.audit.record(actor, "load", Some(model), Some(*version), detail);
            }
            Change::Failed { model, version, reason } => {
                let label = version.to_string();
                metrics.set_model_state(model, &label, "failed");
                metrics.record_model_load(model, &label, "failed");
                state.lifecycle.audit.record(
                    actor,
                    "load_failed",
                    Some(model),
                    Some(*version),
                    json!({"reason": reason}),
                );
            }
            Change::Unloaded { model, version } => {
                metrics.record_model_load(model, &version.to_string(), "unloaded");
                state.lifecycle.audit.record(actor, "unload", Some(model), Some(*version), Value::Null);
            }
        }
    }
    // A failed version whose directory is gone (or that now loads) is no longer failed.
    for (model, failures) in &previous.failures {
        for version in failures.keys() {
            if !next.failures.get(model).is_some_and(|f| f.contains_key(version)) {
                metrics.clear_model_state(model, &version.to_string(), "failed");
            }
        }
    }
    let next = Arc::new(next);
    state.models.store(next.clone());
    for change in changes {
        let Change::Unloaded { model, version } = change else { continue };
        if let Some(gone) = previous.models.get(model).and_then(|entry| entry.versions.get(version)) {
            retire(state.clone(), gone);
        }
    }
    for change in changes {
        if let Change::Loaded { model, version, replaced: true } = change {
            if let Some(old) = previous.models.get(model).and_then(|entry| entry.versions.get(version)) {
                state.feedback.forget(&old.monitor);
            }
        }
    }
    if !changes.is_empty() {
        tracing::info!(changes = changes.len(), models = next.models.len(), "repository rescanned");
    }
}

fn describe(change: &Change) -> String {
    format!("{}/{} {}", change.model(), change.version(), change.action())
}

/// Waits (off the request path) until no request holds the version any more, then removes its series and
/// lets the feedback memory forget it, so its memory is freed.
fn retire(state: AppState, gone: &Arc<ModelVersion>) {
    let (model, label, monitor) = (gone.name.clone(), gone.version_label.clone(), gone.monitor.clone());
    let version: Weak<ModelVersion> = Arc::downgrade(gone);
    tokio::spawn(async move {
        // The table no longer holds it: once every request that resolved it is answered, only this task's
        // weak reference is left. Requests are bounded by request_timeout_ms, so this ends.
        let mut waited = Duration::ZERO;
        while version.strong_count() > 0 && waited < Duration::from_secs(600) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        // A request's metrics are recorded just after its answer: give the last one a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        state.metrics.remove_version(&model, &label);
        state.feedback.forget(&monitor);
    });
}

/// Sets a model's routing (serialised with rescans): swaps in a table that differs only in that model's
/// routing, and audits the change. `update` was checked against the table by the caller, and is checked
/// again here against the table it applies to.
pub async fn set_routing(
    state: &AppState,
    name: &str,
    update: impl FnOnce(&ModelEntry) -> Result<Routing, String>,
    actor: &str,
) -> Result<Routing, RoutingError> {
    let _serial = state.lifecycle.rescanning.lock().await;
    let current = state.models.load_full();
    let entry = current.models.get(name).ok_or(RoutingError::UnknownModel)?;
    let routing = update(entry).map_err(RoutingError::Invalid)?;
    let before = serde_json::to_value(&entry.routing).unwrap_or(Value::Null);
    let mut next = ModelTable::clone(&current);
    if let Some(entry) = next.models.get_mut(name) {
        entry.routing = routing.clone();
    }
    state.models.store(Arc::new(next));
    let after = serde_json::to_value(&routing).unwrap_or(Value::Null);
    state.lifecycle.audit.record(actor, "routing", Some(name), None, json!({"before": before, "after": after}));
    Ok(routing)
}

#[derive(Debug)]
pub enum RoutingError {
    UnknownModel,
    Invalid(String),
}

/// Rescans every `poll_interval_s` and on SIGHUP, until the server stops.
pub fn spawn_watchers(state: AppState) {
    let interval = state.settings.models.poll_interval_s;
    if interval > 0.0 {
        let polling = state.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(interval));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if polling.is_draining() {
                    return;
                }
                if let Err(error) = reload(&polling, SYSTEM, Trigger::Poll).await {
                    tracing::warn!(%error, "repository poll failed");
                }
            }
        });
    }
    #[cfg(unix)]
    {
        let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot install the SIGHUP handler: reload with POST /admin/reload");
                return;
            }
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: rescanning the model repository, re-reading the API key file");
                if let Err(error) = reload(&state, SYSTEM, Trigger::Asked).await {
                    tracing::warn!(%error, "reload on SIGHUP failed");
                }
            }
        });
    }
}
