//! Building and running the server: load the model repository, bind, serve, and shut down gracefully.
//!
//! [`Application::build`] does everything that can fail at startup (configuration, models, the listener), so
//! tests start the real server on port 0 exactly as `inferd serve` does, then read [`Application::port`].

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::ApiKeys;
use crate::config::{Canary, Settings};
use crate::lifecycle::{AuditLog, Lifecycle, SYSTEM};
use crate::monitor::prediction_log::PredictionLog;
use crate::monitor::Metrics;
use crate::repository::ModelTable;
use crate::state::AppState;
use crate::tls::TlsListener;

pub struct Application {
    listener: TcpListener,
    /// HTTPS when `[server.tls]` is set.
    tls: Option<Arc<rustls::ServerConfig>>,
    state: AppState,
}

impl Application {
    /// Loads and warms up every configured model version, then binds the listener. Readiness is true once
    /// this returns.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let started = Instant::now();
        let keys = ApiKeys::load(&settings.auth)?;
        let tls = settings.server.tls.as_ref().map(crate::tls::server_config).transpose()?;
        let models_settings = settings.models.clone();
        let drift = settings.monitoring.drift_defaults();
        let table = tokio::task::spawn_blocking(move || ModelTable::load(&models_settings, drift))
            .await
            .context("model loading panicked")??;
        for version in table.models.values().flat_map(|entry| entry.versions.values()) {
            crate::lifecycle::accepts(&settings, version).map_err(anyhow::Error::msg)?;
        }
        check_routing(&settings, &table)?;
        let audit = AuditLog::open(&settings.audit)?;
        let metrics = Metrics::new();
        for entry in table.models.values() {
            for version in entry.versions.values() {
                metrics.set_model_state(&entry.name, &version.version_label, "ready");
                if settings.monitoring.enabled {
                    metrics.register_version(&version.monitor);
                }
            }
        }
        let prediction_log = match settings.monitoring.enabled {
            true => PredictionLog::start(&settings.monitoring.prediction_log, metrics.log_counters())?,
            false => None,
        };
        let addr = format!("{}:{}", settings.server.addr, settings.server.port);
        let listener = TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        for entry in table.models.values() {
            for version in entry.versions.values() {
                metrics.record_model_load(&entry.name, &version.version_label, "loaded");
                let detail = serde_json::json!({"elapsed_ms": version.load_time.as_millis() as u64, "at": "startup"});
                audit.record(SYSTEM, "load", Some(&entry.name), Some(version.version), detail);
            }
        }
        let state = AppState::new(settings, table, metrics, prediction_log, Lifecycle::new(audit), keys);
        state.set_ready();
        tracing::info!(
            addr = %listener.local_addr()?,
            models = state.models.load().models.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            https = tls.is_some(),
            "ready"
        );
        Ok(Application { listener, tls, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then drains (DESIGN §9): readiness answers 503 at once, requests are
    /// still served for `shutdown_delay_s`, then the listener closes and in-flight requests get
    /// `shutdown_timeout_s` to finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application { listener, tls, state } = self;
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let app = crate::api::router(state.clone());
        let closed = async {
            let _ = closed.await;
        };
        let mut server = match tls {
            None => tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(closed).into_future()),
            Some(config) => {
                let listener = TlsListener::new(listener, config)?;
                tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(closed).into_future())
            }
        };
        crate::lifecycle::spawn_watchers(state.clone());
        tokio::select! {
            result = &mut server => return result.context("server task failed")?.context("server failed"),
            () = shutdown => {}
        }
        let server_settings = &state.settings.server;
        state.start_draining();
        tracing::info!(delay_s = server_settings.shutdown_delay_s, "shutting down: readiness is off");
        tokio::time::sleep(Duration::from_secs_f64(server_settings.shutdown_delay_s)).await;
        let _ = close.send(());
        let served =
            match tokio::time::timeout(Duration::from_secs_f64(server_settings.shutdown_timeout_s), server).await {
                Ok(result) => result.context("server task failed").and_then(|r| r.context("server failed")),
                Err(_) => {
                    tracing::warn!("in-flight requests did not finish within shutdown_timeout_s");
                    Ok(())
                }
            };
        // Every answered request has queued its log records by now: write them all before exiting.
        let flushing = state.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(log) = &flushing.prediction_log {
                log.close();
            }
            flushing.lifecycle.audit.sync();
        })
        .await
        .context("flushing the prediction log panicked")?;
        served?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `[models.routing.NAME]` must name served models and loaded versions, with canary weights in [0, 1].
fn check_routing(settings: &Settings, table: &ModelTable) -> anyhow::Result<()> {
    for (name, routing) in &settings.models.routing {
        let field = format!("models.routing.{name}");
        let entry = table.models.get(name).with_context(|| format!("configuration: {field}: no model '{name}'"))?;
        let canary = routing.canary.map(|c| c.version);
        let refused = |message: String| anyhow::anyhow!("configuration: {field}.{message}");
        for (key, version) in [("default", routing.default), ("canary.version", canary), ("shadow", routing.shadow)] {
            if let Some(version) = version {
                entry.loaded_version(key, version).map_err(refused)?;
            }
        }
        if let Some(canary) = routing.canary {
            Canary::checked_weight(canary.weight).map_err(refused)?;
        }
    }
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits the process at once.
pub async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
