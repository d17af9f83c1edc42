//! Operations: runtime configuration for clients, liveness, readiness and Prometheus metrics.

use crate::error::ErrorBody;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(config))
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct ClientConfig {
    pub app_name: &'static str,
    pub version: &'static str,
    /// `dev` or `production`.
    pub environment: &'static str,
    pub api_base: &'static str,
    pub csrf_header: &'static str,
    pub csrf_cookie: &'static str,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_days: i64,
    pub avatar_max_bytes: usize,
    pub password_min_length: u32,
    pub password_max_length: u32,
}

/// Settings a client needs before it starts (no secrets).
#[utoipa::path(get, path = "/api/config", tag = "ops",
    responses((status = 200, description = "Client configuration", body = ClientConfig)))]
async fn config(State(state): State<AppState>) -> Json<ClientConfig> {
    let c = &state.config;
    Json(ClientConfig {
        app_name: "ETX Processor",
        version: env!("CARGO_PKG_VERSION"),
        environment: if c.is_dev() { "dev" } else { "production" },
        api_base: "/api",
        csrf_header: "X-CSRF-Token",
        csrf_cookie: crate::cookies::CSRF,
        access_token_ttl_secs: c.auth.access_ttl_secs,
        refresh_token_ttl_days: c.auth.refresh_ttl_days,
        avatar_max_bytes: c.avatar.max_bytes,
        password_min_length: 8,
        password_max_length: 128,
    })
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
    pub version: &'static str,
    pub uptime_secs: u64,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)))]
async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: state.started.elapsed().as_secs(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    pub checks: Vec<Check>,
}

#[derive(Serialize, ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Readiness: 200 only while every dependency (database, Redis when configured, and the
/// Socket.IO adapter's subscriptions on it) answers.
#[utoipa::path(get, path = "/health/ready", tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is failing", body = Readiness),
    ))]
async fn ready(State(state): State<AppState>) -> Response {
    let mut checks = Vec::new();
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        checks.push(Check {
            name: "shutdown",
            ok: false,
            error: Some("shutting down; send new work elsewhere".into()),
        });
    }
    let db = tokio::time::timeout(std::time::Duration::from_secs(2), state.db.ping()).await;
    checks.push(match db {
        Ok(Ok(())) => Check {
            name: "database",
            ok: true,
            error: None,
        },
        Ok(Err(_)) => Check {
            name: "database",
            ok: false,
            error: Some("query failed".into()),
        },
        Err(_) => Check {
            name: "database",
            ok: false,
            error: Some("timed out".into()),
        },
    });
    if state.config.redis_url.is_some() {
        let r = tokio::time::timeout(std::time::Duration::from_secs(2), state.limiter.ping()).await;
        checks.push(Check {
            name: "redis",
            ok: matches!(r, Ok(Ok(()))),
            error: (!matches!(r, Ok(Ok(())))).then(|| "unreachable".into()),
        });
    }
    if let Some(ready) = state.realtime.adapter_ready() {
        checks.push(Check {
            name: "socketio_adapter",
            ok: ready,
            error: (!ready).then(|| "not connected and subscribed to Redis".into()),
        });
    }
    let stale = state.market.is_stale();
    checks.push(Check {
        name: "price_feed",
        ok: !stale,
        error: stale.then(|| {
            format!(
                "no tick for more than {} s",
                state.config.market.stale_after_secs
            )
        }),
    });
    let ok = checks.iter().all(|c| c.ok);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ok { "ready" } else { "not_ready" },
            checks,
        }),
    )
        .into_response()
}

/// Prometheus metrics in the text exposition format. With `metrics_token` set, only a request
/// bearing it is answered.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "Metrics", content_type = "text/plain"),
        (status = 401, description = "metrics_token is set and the request does not bear it", body = ErrorBody),
    ))]
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = state.config.metrics_token.as_deref() {
        let given = crate::session::bearer(&headers).unwrap_or_default();
        if !crate::session::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return crate::error::ApiError::Unauthorized("metrics need their bearer token".into())
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
