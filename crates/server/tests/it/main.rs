//! The integration suite: real HTTP against a server on 127.0.0.1:0, backed by SQLite (default)
//! or PostgreSQL (`TEST_DATABASE_URL`), with Redis where a test needs it. One binary, so the
//! crate is linked once.

mod support;

#[path = "../common/ports.rs"]
mod ports;

mod alerts;
mod audit;
mod auth;
mod avatar;
mod cli;
mod crash;
mod files;
mod hardening;
mod jobs;
mod market;
mod model;
mod observe;
mod ops;
mod payments;
mod pg_outage;
mod platform;
mod portfolio;
mod provider;
mod realtime;
mod redis_outage;
mod resting;
mod s3;
mod safeguards;
mod security;
mod session_cache;
mod shutdown;
mod trading;
mod transactions;
mod users;
mod wallet;
mod web;
mod xp;
