//! The `etx` server: configuration, start-up, the JSON API, the web UI and the command line.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod cookies;
pub mod error;
pub mod extract;
pub mod jobs;
pub mod mail;
pub mod market;
pub mod middleware;
pub mod net;
pub mod payments;
pub mod ratelimit;
pub mod realtime;
pub mod security;
pub mod session;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod views;
pub mod wallet;
pub mod web;

pub use config::Config;
pub use startup::Application;
