//! The business core of ETX Processor: accounts and sessions, security, the wallet and its
//! ledger rules, deposits, withdrawals and AML review, the file workspace, audit, the mail
//! queue and the market book. It speaks to storage through `etx-db` and knows nothing of HTTP: the server turns
//! requests into calls here, and [`CoreError`] into responses.

pub mod accounts;
pub mod address;
pub mod alerts;
pub mod audit;
pub mod config;
pub mod deposits;
pub mod error;
pub mod events;
pub mod files;
pub mod jobs;
pub mod ledger;
pub mod mail;
pub mod market;
pub mod net;
pub mod portfolio;
pub mod processing;
pub mod providers;
pub mod ratelimit;
pub mod review;
pub mod rules;
pub mod security;
pub mod session;
pub mod stats;
pub mod time;
pub mod trading;
pub mod upkeep;
pub mod wallet;
pub mod withdrawals;
pub mod xp;

pub use config::Config;
pub use error::{CoreError, CoreResult};
pub use events::Events;
pub use session::{Auth, ClientInfo};

use std::ops::Deref;
use std::sync::Arc;

/// Everything the core's operations need, built once at start-up and shared by reference.
/// Cloning is cheap; background tasks hold a clone.
#[derive(Clone)]
pub struct Core(Arc<Parts>);

pub struct Parts {
    pub config: Config,
    pub db: etx_db::Db,
    pub hasher: etx_auth::PasswordHasher,
    pub tokens: etx_auth::TokenKeys,
    pub storage: etx_storage::ObjectStorage,
    pub limiter: ratelimit::RateLimiter,
    pub assets: ledger::Assets,
    pub transfer_limits: wallet::TransferLimits,
    pub transfers: wallet::group::GroupCommit,
    pub rules: rules::Rules,
    pub payments: providers::Payments,
    pub mailer: mail::Mailer,
    /// Seals 2FA secrets and peppers code hashes, with keys derived from the server secret.
    pub secret_box: etx_auth::totp::SecretBox,
    pub market: Arc<market::Market>,
    pub events: Arc<dyn Events>,
    /// Users with a password check of a signed-in change running now (at most one each).
    pub password_checks: session::InFlight,
    /// This instance's job workers: their identity and the signal that wakes them.
    pub workers: jobs::Workers,
    /// Open limit and stop orders by trigger price, for this instance's matcher.
    pub book: trading::book::OrderBook,
    /// Active price alerts by asset, for this instance's evaluator.
    pub alerts: alerts::Alerts,
    /// Staff settings per trading pair (halts, fee and spread overrides).
    pub pairs: trading::settings::PairSettings,
    /// The market-order committers.
    pub orders: trading::group::OrderCommit,
    /// Experience points waiting for the awarder.
    pub xp: xp::Xp,
    /// The statistics page's aggregates, shared for `[admin] stats_cache_ms`.
    pub stats: stats::StatsCache,
}

impl Core {
    pub fn new(parts: Parts) -> Self {
        Core(Arc::new(parts))
    }
}

impl Deref for Core {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}
