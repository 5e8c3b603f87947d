//! The server's shared state: one `Arc<Shared>` behind a cheap-to-clone [`AppState`] handle.
//!
//! Everything in it is either immutable after startup, atomic, or swapped whole (`ArcSwap` of the model
//! table), so handlers never take a lock on the request path.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use crate::auth::ApiKeys;
use crate::config::Settings;
use crate::lifecycle::Lifecycle;
use crate::monitor::feedback::FeedbackStore;
use crate::monitor::prediction_log::PredictionLog;
use crate::monitor::Metrics;
use crate::repository::ModelTable;
use crate::runtime::InferencePool;

pub struct Shared {
    pub settings: Settings,
    /// Every served model version. Requests `load()` a snapshot and finish on it.
    pub models: ArcSwap<ModelTable>,
    pub pool: InferencePool,
    pub metrics: Metrics,
    /// Predictions waiting for ground truth (`POST /feedback`).
    pub feedback: FeedbackStore,
    /// The prediction log, when one is configured.
    pub prediction_log: Option<PredictionLog>,
    /// Permits for pending shadow runs ([`crate::shadow::SHADOW_QUEUE`]).
    pub shadow_slots: Arc<Semaphore>,
    /// Rescans of the repository, and the audit log.
    pub lifecycle: Lifecycle,
    /// The API keys accepted, and which paths need one.
    pub keys: ApiKeys,
    /// Permits for requests inside handlers (`max_in_flight`); none left → 429 at once.
    pub in_flight: Arc<Semaphore>,
    ready: AtomicBool,
    draining: AtomicBool,
    pub started: Instant,
}

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(
        settings: Settings,
        models: ModelTable,
        metrics: Metrics,
        prediction_log: Option<PredictionLog>,
        lifecycle: Lifecycle,
        keys: ApiKeys,
    ) -> AppState {
        let pool = InferencePool::start(&settings.batching);
        let in_flight = Arc::new(Semaphore::new(settings.server.max_in_flight));
        let feedback = FeedbackStore::new(settings.monitoring.feedback_capacity);
        AppState(Arc::new(Shared {
            settings,
            models: ArcSwap::from_pointee(models),
            pool,
            metrics,
            feedback,
            prediction_log,
            lifecycle,
            keys,
            shadow_slots: Arc::new(Semaphore::new(crate::shadow::SHADOW_QUEUE)),
            in_flight,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            started: Instant::now(),
        }))
    }
}

impl Shared {
    /// Whether requests feed metrics, drift windows, the feedback store and the prediction log.
    pub fn monitoring(&self) -> bool {
        self.settings.monitoring.enabled
    }

    /// Ready: every configured model loaded and warmed up, and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Shutdown has begun: readiness answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}
