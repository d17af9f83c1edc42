//! Health, readiness, metrics, client config, OpenAPI, security headers and error shape.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_ready_metrics_and_config() {
    let app = TestApp::spawn().await;
    let h: Value = app.get("/health", None).await.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    let r = app.get("/health/ready", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["checks"][0]["name"], "database");
    let m = app.get("/metrics", None).await.text().await.unwrap();
    assert!(m.contains("http_requests_total"), "{m}");
    let c: Value = app.get("/api/config", None).await.json().await.unwrap();
    assert_eq!(c["csrf_header"], "X-CSRF-Token");
    assert!(c.to_string().find("secret").is_none());
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.state.db.conn().clone().close().await.unwrap();
    let r = app.get("/health/ready", None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn openapi_lists_every_route_with_errors_and_docs_are_served() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"].as_str().unwrap().get(..3), Some("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/api/auth/register", "post"),
        ("/api/auth/signup", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/logout", "post"),
        ("/api/auth/refresh", "post"),
        ("/api/auth/me", "get"),
        ("/api/auth/me", "put"),
        ("/api/auth/change-password", "post"),
        ("/api/auth/sessions", "get"),
        ("/api/auth/sessions/{id}", "delete"),
        ("/api/csrf", "get"),
        ("/api/users", "get"),
        ("/api/users/{id}", "get"),
        ("/api/users/{id}", "put"),
        ("/api/users/{id}", "delete"),
        ("/api/users/avatar", "post"),
        ("/api/users/avatar", "delete"),
        ("/api/users/{id}/avatar", "get"),
        ("/api/users/search", "get"),
        ("/api/leaderboard", "get"),
        ("/api/wallet/balance", "get"),
        ("/api/transfers/p2p", "post"),
        ("/api/transfers/p2p/history", "get"),
        ("/api/admin/wallets/adjust", "post"),
        ("/api/admin/audit-logs", "get"),
        ("/api/transactions", "get"),
        ("/api/transactions/{id}", "get"),
        ("/api/transactions/summary", "get"),
        ("/api/transactions/export", "get"),
        ("/api/transactions/export", "post"),
        ("/api/config", "get"),
        ("/health", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
    ];
    for (p, m) in expected {
        let op = &paths.get(p).unwrap_or_else(|| panic!("{p} missing"))[m];
        assert!(op.is_object(), "{m} {p} missing");
        let responses = op["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{m} {p} has no responses");
    }
    // Every unsafe operation documents at least one error answer.
    for (p, item) in paths {
        for (m, op) in item.as_object().unwrap() {
            if matches!(m.as_str(), "post" | "put" | "delete") {
                let codes: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
                assert!(
                    codes.iter().any(|c| c.starts_with('4')),
                    "{m} {p} documents no 4xx"
                );
            }
        }
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let r = app.get("/api/docs/", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("swagger"), "docs page served from the binary");
}

#[tokio::test]
async fn security_headers_and_error_shape() {
    let app = TestApp::spawn().await;
    let r = app.get("/login", None).await;
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    assert!(
        h.get("strict-transport-security").is_none(),
        "no HSTS in local dev"
    );
    assert!(h.contains_key("x-request-id"));
    let r = app.get("/api/nothing-here", None).await;
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let (s, c, b) = error_code(r).await;
    assert_eq!((s, c.as_str()), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    assert_eq!(b["error"]["request_id"], rid);
}

#[tokio::test]
async fn production_mode_sends_hsts_and_secure_cookies() {
    let app = TestApp::spawn_with(|c| {
        c.env = etx_core::config::RunEnv::Production;
        c.public_url = Some("https://etx.example.com".into());
    })
    .await;
    let r = app.get("/api/csrf", None).await;
    assert!(
        r.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app =
        TestApp::spawn_with(|c| c.http.cors_origins = vec!["https://app.example.com".into()]).await;
    let pre = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/auth/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let ok = pre("https://app.example.com").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let bad = pre("https://evil.example.com").await.unwrap();
    assert!(bad.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn secrets_never_reach_responses() {
    let app = TestApp::spawn().await;
    let u = app.register("secretive").await;
    let me = app
        .get("/api/auth/me", Some(&u.token))
        .await
        .text()
        .await
        .unwrap();
    assert!(!me.contains("argon2") && !me.contains(PASSWORD) && !me.contains("password"));
    let admin = app.user_with_role("adm", "admin").await;
    let list = app
        .get("/api/users", Some(&admin.token))
        .await
        .text()
        .await
        .unwrap();
    assert!(!list.contains("argon2"));
}

/// Every 2xx answer other than 204 names its body: JSON answers a schema (so generated clients
/// get types, not `Any`), other answers their media type.
#[tokio::test]
async fn openapi_every_json_success_answer_has_a_schema() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let mut untyped = Vec::new();
    for (p, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            let Some(responses) = op.get("responses").and_then(Value::as_object) else {
                continue;
            };
            for (code, r) in responses {
                if !code.starts_with('2') || code == "204" {
                    continue;
                }
                let Some(content) = r.get("content").and_then(Value::as_object) else {
                    untyped.push(format!("{m} {p} {code}: no content"));
                    continue;
                };
                for (media, c) in content {
                    let json = media == "application/json" || media.ends_with("+json");
                    let schema = c.get("schema").and_then(Value::as_object);
                    if json && schema.is_none_or(|s| s.is_empty()) {
                        untyped.push(format!("{m} {p} {code}: {media} without a schema"));
                    }
                }
            }
        }
    }
    assert!(
        untyped.is_empty(),
        "JSON answers without a schema:\n{}",
        untyped.join("\n")
    );
}
