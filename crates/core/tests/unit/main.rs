//! Unit tests of the core without HTTP: settings, rules, arithmetic and parsing, through the
//! public API.

mod config;
mod mail;
mod market;
mod net_time;
mod ratelimit;
