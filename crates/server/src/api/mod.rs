//! The JSON API: one module per area, each with `router()`; this file assembles them and the
//! OpenAPI document generated from their annotations.

pub mod alerts;
pub mod audit;
pub mod auth;
mod export;
pub mod files;
pub mod jobs;
pub mod market;
pub mod notifications;
pub mod ops;
pub mod payments;
pub mod platform;
pub mod realtime;
pub mod security;
pub mod trading;
pub mod transactions;
pub mod users;
pub mod wallet;

use crate::state::AppState;
use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(title = "ETX Processor API", description = "Accounts, wallets, markets and processing."),
    modifiers(&Security),
    security(("bearer" = []), ("cookie" = [])),
    tags(
        (name = "auth", description = "Registration, login, tokens and the current user"),
        (name = "users", description = "Profiles, avatars and user administration"),
        (name = "wallet", description = "Balances and P2P transfers"),
        (name = "transactions", description = "History, summary and export"),
        (name = "notifications", description = "Your notifications"),
        (name = "files", description = "Your file workspace: folders, uploads, downloads"),
        (name = "jobs", description = "Processing jobs on your files: start, follow, cancel, retry"),
        (name = "etx", description = "Your connection to the external ETX/CTX platform"),
        (name = "trading", description = "Orders against the platform at live prices"),
        (name = "alerts", description = "Price alerts: above, below, or a move within a window"),
        (name = "market", description = "Live prices, 24-hour statistics, candles and the price stream"),
        (name = "admin", description = "Administration of money and users"),
        (name = "ops", description = "Configuration, health and metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        c.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("access_token"))),
        );
    }
}

/// All API routes plus the OpenAPI document describing them.
pub fn router(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(security::router())
        .merge(users::router(state))
        .merge(wallet::router())
        .merge(payments::router())
        .merge(transactions::router())
        .merge(audit::router())
        .merge(market::router())
        .merge(trading::router())
        .merge(alerts::router())
        .merge(realtime::router())
        .merge(notifications::router())
        .merge(files::router())
        .merge(jobs::router())
        .merge(platform::router())
        .merge(ops::router())
        .split_for_parts()
}
