//! The only crate that speaks SQL: connection set-up for SQLite and PostgreSQL, the migration
//! runner and one repository module per table family. Timestamps are Unix microseconds (UTC).

pub mod adjustments;
pub mod alerts;
pub mod audit;
mod conn;
mod errors;
pub mod files;
pub mod jobs;
pub mod ledger;
pub mod mail;
pub mod market;
mod migrate;
pub mod notifications;
pub mod orders;
pub mod pairs;
pub mod payments;
pub mod platform;
pub mod portfolio;
pub mod security;
pub mod sessions;
mod sql;
pub mod stats;
pub mod suspense;
pub mod users;
pub mod xp;

pub use conn::{Batch, Db, DbKind};
pub use errors::{DbErrorKind, classify};
pub use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};

/// Current time in Unix microseconds, the unit every timestamp column uses.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
