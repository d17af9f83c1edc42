//! Everything a request handler may need, built once at start-up and shared by reference.

use crate::config::Config;
use crate::ratelimit::RateLimiter;
use etx_auth::{PasswordHasher, TokenKeys};
use etx_db::Db;
use etx_storage::ObjectStorage;
use metrics_exporter_prometheus::PrometheusHandle;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub hasher: PasswordHasher,
    pub tokens: TokenKeys,
    pub storage: ObjectStorage,
    pub limiter: RateLimiter,
    pub metrics: PrometheusHandle,
    pub started: Instant,
    pub assets: crate::wallet::Assets,
    pub transfer_limits: crate::wallet::TransferLimits,
    pub transfers: crate::wallet::group::GroupCommit,
    pub rules: crate::payments::Rules,
    pub payments: crate::payments::Payments,
    pub mailer: crate::mail::Mailer,
    /// Seals 2FA secrets and peppers code hashes, with keys derived from the server secret.
    pub secret_box: etx_auth::totp::SecretBox,
    pub market: std::sync::Arc<crate::market::Market>,
    pub realtime: crate::realtime::Realtime,
    /// Users with a password check of a signed-in change running now (at most one each).
    pub password_checks: crate::accounts::InFlight,
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
