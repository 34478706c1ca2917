//! State shared by every request: configuration, the model, admission and shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hark_protocol::Limits;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::config::Config;
use crate::model::LoadedModel;
use crate::origin::OriginPolicy;
use crate::session::resume::ResumeStore;

/// Everything the handlers share.
pub struct AppState {
    pub config: Config,
    /// The limits advertised in `ready`.
    pub limits: Limits,
    /// The bearer token clients must present, if any.
    pub token: Option<String>,
    /// Which browser pages may open WebSockets.
    pub origins: OriginPolicy,
    model: OnceLock<LoadedModel>,
    /// One permit per session slot (`max_sessions`).
    slots: Arc<Semaphore>,
    /// Dropped native sessions waiting to be resumed (they keep their slot).
    pub parked: ResumeStore,
    shutdown: watch::Sender<bool>,
    tracker: SessionTracker,
    /// Renders `/metrics`; `None` when no recorder is installed (unit tests).
    pub metrics: Option<PrometheusHandle>,
}

/// Why a connection is refused before its session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken.
    Busy,
    /// The model is still loading.
    Loading,
    /// The server is stopping.
    ShuttingDown,
}

/// The outcome of admission when a session starts.
#[derive(Debug)]
pub enum Admission {
    /// A slot is held for the session.
    Admitted(OwnedSemaphorePermit),
    /// No slot is free but resumable sessions hold some: the `start` message decides (a
    /// resume takes its own slot back; a new session takes the slot of the oldest parked one).
    Deferred,
}

impl AppState {
    pub fn new(config: Config, token: Option<String>, metrics: Option<PrometheusHandle>) -> Self {
        let limits = config.limits.clone();
        let slots = Arc::new(Semaphore::new(config.max_sessions));
        let (shutdown, _) = watch::channel(false);
        let origins = OriginPolicy::new(&config.allowed_origins, config.listen.is_loopback());
        Self {
            config,
            limits,
            token,
            origins,
            model: OnceLock::new(),
            slots,
            parked: ResumeStore::default(),
            shutdown,
            tracker: SessionTracker::default(),
            metrics,
        }
    }

    /// The model, once loaded.
    pub fn model(&self) -> Option<&LoadedModel> {
        self.model.get()
    }

    /// Publish the loaded model (once).
    pub fn set_model(&self, model: LoadedModel) {
        if self.model.set(model).is_err() {
            tracing::error!("the model was loaded twice; keeping the first");
        }
    }

    /// Whether a new connection may go on to start a session (it takes no slot yet).
    pub fn accepting(&self) -> Result<(), Refusal> {
        if self.is_shutting_down() {
            return Err(Refusal::ShuttingDown);
        }
        if self.model().is_none() {
            return Err(Refusal::Loading);
        }
        Ok(())
    }

    /// Whether a new connection may go on to start a session: refused at once when every
    /// slot is held by a started session, but it takes no slot (its `start` does).
    pub fn has_room(&self) -> Result<(), Refusal> {
        self.accepting()?;
        if self.slots.available_permits() == 0 && self.parked.is_empty() {
            return Err(Refusal::Busy);
        }
        Ok(())
    }

    /// Try to admit a session that starts. Never waits: a full server answers at once.
    pub fn admit(&self) -> Result<Admission, Refusal> {
        self.accepting()?;
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(Admission::Admitted(permit)),
            Err(_) if !self.parked.is_empty() => Ok(Admission::Deferred),
            Err(_) => Err(Refusal::Busy),
        }
    }

    /// A slot for a deferred admission: a free one, or the one of the oldest parked session
    /// (which is dropped).
    pub fn admit_deferred(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        self.parked.evict_oldest().ok_or(Refusal::Busy)
    }

    /// A slot for a session that cannot be resumed later (OpenAI endpoint): free, or taken
    /// from the oldest parked session.
    pub fn admit_now(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        match self.admit()? {
            Admission::Admitted(permit) => Ok(permit),
            Admission::Deferred => self.admit_deferred(),
        }
    }

    /// Slots in use (sessions running or parked).
    pub fn sessions_in_use(&self) -> usize {
        self.config.max_sessions - self.slots.available_permits()
    }

    /// Begin graceful shutdown: sessions finalise and close, new connections are refused.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once shutdown has begun.
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }

    /// Count a session task until the guard is dropped.
    pub fn track_session(&self) -> SessionGuard {
        self.tracker.enter()
    }

    /// Wait until every tracked session has ended, at most `limit`. Returns whether all did.
    pub async fn wait_sessions(&self, limit: Duration) -> bool {
        self.tracker.wait_idle(limit).await
    }
}

/// Counts live session tasks, so shutdown can wait for them.
#[derive(Debug, Default, Clone)]
struct SessionTracker {
    inner: Arc<TrackerInner>,
}

#[derive(Debug, Default)]
struct TrackerInner {
    live: AtomicUsize,
    idle: Notify,
}

/// Held by a session task while it runs.
#[derive(Debug)]
pub struct SessionGuard {
    inner: Arc<TrackerInner>,
}

impl SessionTracker {
    fn enter(&self) -> SessionGuard {
        self.inner.live.fetch_add(1, Ordering::SeqCst);
        SessionGuard {
            inner: self.inner.clone(),
        }
    }

    async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.inner.idle.notified();
                if self.inner.live.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.inner.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}
