//! Unit tests of the core without HTTP: settings, rules, arithmetic and parsing through the
//! public API, and account operations on a core over SQLite (`support`).

mod accounts;
mod config;
mod deposits;
mod mail;
mod market;
mod net_time;
mod ratelimit;
mod security;
mod support;
mod wallet;
