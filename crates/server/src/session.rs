//! Who is calling. A request is authenticated by a bearer token or the `access_token` cookie;
//! either way the session it names is looked up, so a revoked session or suspended user loses
//! access immediately. Cookie-authenticated unsafe requests must also pass the CSRF check.

use crate::cookies;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use std::net::{IpAddr, SocketAddr};

/// The caller's session, and whether it came by cookie (then unsafe requests pass CSRF).
#[derive(Debug, Clone)]
pub struct Auth {
    pub core: etx_core::Auth,
    pub via_cookie: bool,
}

/// Handlers read `auth.user`, `auth.role` and pass `&auth` wherever the core takes its `Auth`.
impl std::ops::Deref for Auth {
    type Target = etx_core::Auth;
    fn deref(&self) -> &etx_core::Auth {
        &self.core
    }
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn is_unsafe(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Double-submit check: the `X-CSRF-Token` header must equal the `csrf_token` cookie.
pub fn check_csrf(headers: &HeaderMap, submitted: Option<&str>) -> Result<(), ApiError> {
    let cookie = cookies::get(headers, cookies::CSRF);
    let sent = submitted.or_else(|| {
        headers
            .get(cookies::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
    });
    match (cookie, sent) {
        (_, None) | (None, _) => Err(ApiError::CsrfMissing),
        (Some(c), Some(s)) if constant_time_eq(c.as_bytes(), s.as_bytes()) => Ok(()),
        _ => Err(ApiError::CsrfInvalid),
    }
}

/// Login CSRF guard for the endpoints that set session cookies (register, login, second factor,
/// refresh): a browser request from another site must not sign the victim's browser into an
/// account. A request naming its origin must come from the public origin, a configured CORS
/// origin, or the host it was sent to; without `Origin`, `Sec-Fetch-Site` must not say another
/// site. Requests with neither header (non-browser clients) pass: only browsers attach cookies
/// on someone else's behalf.
pub fn refuse_cross_site(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = || ApiError::Forbidden("cross-site request refused".into());
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let allowed = |origin: &str| {
        let origin = origin.trim_end_matches('/');
        let same_host = host
            .zip(origin.split_once("://").map(|(_, authority)| authority))
            .is_some_and(|(host, authority)| host.eq_ignore_ascii_case(authority));
        let listed = state
            .config
            .public_url
            .iter()
            .chain(&state.config.http.cors_origins)
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin));
        origin != "null" && (same_host || listed)
    };
    let mut origins = headers.get_all(header::ORIGIN).iter().peekable();
    if origins.peek().is_some() {
        // Every one must pass: a second, forged Origin header must not hide behind a good one.
        return if origins.all(|o| o.to_str().is_ok_and(allowed)) {
            Ok(())
        } else {
            Err(refused())
        };
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("cross-site" | "same-site") => Err(refused()),
        _ => Ok(()),
    }
}

pub use etx_core::session::constant_time_eq;

/// Authenticates an access token against its live session.
pub async fn authenticate(
    state: &AppState,
    token: &str,
    via_cookie: bool,
) -> Result<Auth, ApiError> {
    let core = etx_core::session::authenticate(state, token).await?;
    Ok(Auth { core, via_cookie })
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(t) = bearer(&parts.headers) {
            return authenticate(state, t, false).await;
        }
        let Some(t) = cookies::get(&parts.headers, cookies::ACCESS) else {
            return Err(ApiError::Unauthorized("authentication required".into()));
        };
        if is_unsafe(&parts.method) {
            check_csrf(&parts.headers, None)?;
        }
        authenticate(state, t, true).await
    }
}

/// The caller's address: the socket peer, or, when the peer is a trusted proxy, the rightmost
/// `X-Forwarded-For` hop outside the trusted networks.
pub fn client_ip(state: &AppState, parts_headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
    let peer = peer.map(|p| p.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    crate::net::client_address(&state.config.http.trusted_proxies, parts_headers, peer)
}

/// Client address and user agent, extracted together for session records and audit.
#[derive(Debug, Clone)]
pub struct ClientInfo(pub etx_core::ClientInfo);

impl std::ops::Deref for ClientInfo {
    type Target = etx_core::ClientInfo;
    fn deref(&self) -> &etx_core::ClientInfo {
        &self.0
    }
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let ip = client_ip(state, &parts.headers, peer);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        Ok(ClientInfo(etx_core::ClientInfo { ip, user_agent }))
    }
}
