//! Everything a request handler may need, built once at start-up and shared by reference: the
//! business core, and what only the HTTP edge uses.

use crate::fanout::Fanout;
use metrics_exporter_prometheus::PrometheusHandle;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub core: etx_core::Core,
    pub metrics: PrometheusHandle,
    pub started: Instant,
    pub realtime: crate::realtime::Realtime,
    /// Writes each price update to the `/ws/prices` clients.
    pub fanout: Fanout,
    /// Shutting down: readiness answers 503 so that balancers send nothing new here.
    pub draining: std::sync::atomic::AtomicBool,
    /// With Redis: the session cache's clears shared with the other instances.
    pub cache_sync: Option<crate::cache_sync::CacheSync>,
    /// Request spans to an OTLP collector and internal errors to Sentry, when configured.
    pub observe: crate::observe::Observe,
}

/// A handle that does not keep the state alive, for callbacks stored inside the state itself
/// (the Socket.IO handlers): a strong one there would be a cycle, and nothing would ever be
/// dropped or closed.
#[derive(Clone)]
pub struct WeakState(std::sync::Weak<Inner>);

impl WeakState {
    pub fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(AppState)
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }

    pub fn downgrade(&self) -> WeakState {
        WeakState(Arc::downgrade(&self.0))
    }

    /// Cookies carry `Secure` everywhere but local development over plain HTTP.
    pub fn secure_cookies(&self) -> bool {
        !self.config.is_dev()
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Handlers reach the core's parts (`state.db`, `state.config`) through the state, and pass
/// `&state` wherever the core asks for `&Core`.
impl Deref for Inner {
    type Target = etx_core::Core;
    fn deref(&self) -> &etx_core::Core {
        &self.core
    }
}
