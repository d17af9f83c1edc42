//! Cross-cutting layers: a request id on every request and response, one log line and metrics
//! per request, and the security headers every response carries.

use crate::error::REQUEST_ID;
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn incoming_id(req: &Request) -> Option<String> {
    let v = req.headers().get(&X_REQUEST_ID)?.to_str().ok()?;
    let ok =
        !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then(|| v.to_string())
}

pub async fn request_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = incoming_id(&req).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = req.method().clone();
    // The route template, never the raw path: paths may carry tokens.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let traceparent = state
        .observe
        .tracing()
        .then(|| {
            req.headers()
                .get("traceparent")?
                .to_str()
                .ok()
                .map(str::to_string)
        })
        .flatten();
    let started = std::time::SystemTime::now();
    let start = Instant::now();
    let (mut resp, internal) = crate::observe::INTERNAL_ERROR
        .scope(Default::default(), async {
            let resp = REQUEST_ID.scope(id.clone(), next.run(req)).await;
            let internal = crate::observe::INTERNAL_ERROR.with(|e| e.borrow_mut().take());
            (resp, internal)
        })
        .await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    // Stopping: the proxy is told to close this connection after the answer instead of keeping
    // it for another request, so none is left idle for the shutdown to close under it.
    if status != 101 && state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(cause) = internal {
        state
            .observe
            .internal_error(&cause, &id, method.as_str(), &route);
    }
    if state.observe.tracing() {
        state.observe.span(crate::observe::RequestSpan {
            traceparent,
            request_id: id.clone(),
            method: method.to_string(),
            route: route.clone(),
            status,
            start: started,
            end: std::time::SystemTime::now(),
        });
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let labels = [
        ("method", method.to_string()),
        ("route", route.clone()),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
    if status >= 500 {
        tracing::error!(request_id = %id, %method, route, status, latency_ms = elapsed.as_millis() as u64, "request");
    } else {
        tracing::info!(request_id = %id, %method, route, status, latency_ms = elapsed.as_millis() as u64, "request");
    }
    resp
}

/// Makes the client's address and user agent available to audit records written while the
/// request is served.
pub async fn client_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let ip = crate::session::client_ip(&state, req.headers(), peer).to_string();
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect::<String>());
    let Some(sync) = &state.cache_sync else {
        return etx_core::audit::CLIENT.scope((ip, ua), next.run(req)).await;
    };
    let before = sync.clears();
    let resp = etx_core::audit::CLIENT.scope((ip, ua), next.run(req)).await;
    // A logout or suspension answered here must already hold on every other instance when
    // the client's next request reaches one of them.
    let after = sync.clears();
    if after != before {
        sync.published_up_to(after).await;
    }
    resp
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
    frame-ancestors 'none'";

/// Swagger UI ships inline styles; its pages get a CSP that allows them and nothing more.
const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'";

pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let docs = req.uri().path().starts_with("/api/docs");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let csp = if docs { DOCS_CSP } else { CSP };
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !state.config.is_dev() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    resp
}

/// Answers 503 when a request takes longer than `limit` to produce its response. File uploads
/// are exempt: their length depends on the client's line, and the upload itself gives up on a
/// client that stops sending.
pub async fn request_timeout(
    State(limit): State<std::time::Duration>,
    req: Request,
    next: Next,
) -> Response {
    let upload = matches!(req.uri().path(), "/api/files" | "/files/upload");
    if req.method() == axum::http::Method::POST && upload {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
