//! The `etx` server: the HTTP edge of the business core (`etx-core`): start-up, the JSON API,
//! the web UI, real-time delivery and the command line.

pub mod api;
pub mod cache_sync;
pub mod cli;
pub mod cookies;
pub mod error;
pub mod extract;
pub mod fanout;
pub mod letters;
pub mod middleware;
pub mod net;
pub mod observe;
pub mod realtime;
pub mod session;
pub mod socketio;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod views;
pub mod web;

pub use etx_core::Config;
pub use startup::Application;
