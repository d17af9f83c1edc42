//! The optional exports, each against a small receiver started here: request spans over
//! OTLP/HTTP (JSON) continuing the caller's trace, and internal errors to a Sentry envelope
//! endpoint with the request id, while the client still sees only the generic message.

use crate::support::*;
use axum::body::Bytes;
use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;

/// Every request the receiver gets: (path, headers, body).
type Got = (String, HeaderMap, Bytes);

async fn receiver() -> (String, mpsc::UnboundedReceiver<Got>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((uri.path().to_string(), headers, body));
                "{}"
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), rx)
}

/// The first request received whose body contains `needle`.
async fn received(rx: &mut mpsc::UnboundedReceiver<Got>, needle: &str) -> Got {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing with {needle} arrived"))
            .unwrap();
        if String::from_utf8_lossy(&got.2).contains(needle) {
            return got;
        }
    }
}

#[tokio::test]
async fn each_request_is_a_span_in_the_callers_trace() {
    let (url, mut rx) = receiver().await;
    let app = TestApp::spawn_with(|c| c.telemetry.otlp_endpoint = Some(url.clone())).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = app
        .client
        .get(app.url("/api/config"))
        .header("x-request-id", "trace-me-1")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (path, headers, body) = received(&mut rx, "trace-me-1").await;
    assert_eq!(path, "/v1/traces");
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_slice(&body).unwrap();
    let rs = &v["resourceSpans"][0];
    assert!(rs["resource"].to_string().contains("service.name"));
    let span = rs["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.to_string().contains("trace-me-1"))
        .unwrap();
    assert_eq!(span["traceId"], trace);
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(span["name"], "GET /api/config");
    assert_eq!(span["kind"], 2);
    let attrs = span["attributes"].to_string();
    assert!(
        attrs.contains(r#""key":"http.route","value":{"stringValue":"/api/config"}"#),
        "{attrs}"
    );
    assert!(attrs.contains(r#""intValue":"200""#), "{attrs}");
    let (start, end) = (
        span["startTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap(),
        span["endTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap(),
    );
    assert!(start > 1_700_000_000_000_000_000 && end >= start);
    // Without a traceparent a new trace starts.
    app.client
        .get(app.url("/health"))
        .header("x-request-id", "trace-me-2")
        .send()
        .await
        .unwrap();
    let (_, _, body) = received(&mut rx, "trace-me-2").await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    let span = v["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.to_string().contains("trace-me-2"))
        .unwrap()
        .clone();
    assert_ne!(span["traceId"], trace);
    assert_eq!(span["traceId"].as_str().unwrap().len(), 32);
    assert!(span.get("parentSpanId").is_none());
}

#[tokio::test]
async fn an_internal_error_is_reported_to_sentry_and_not_shown() {
    let (url, mut rx) = receiver().await;
    let dsn = url.replace("http://", "http://publickey@") + "/42";
    let app = TestApp::spawn_with(|c| c.telemetry.sentry_dsn = Some(dsn.clone())).await;
    let alice = app.register("alice").await;
    // Nothing else would make this route fail: its table is gone.
    app.exec("DROP TABLE notifications").await;
    let r = app.get("/api/notifications", Some(&alice.token)).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let shown = r.text().await.unwrap();
    assert!(!shown.contains("notifications\""), "{shown}");
    assert!(shown.contains("an internal error occurred"), "{shown}");

    let (path, headers, body) = received(&mut rx, &request_id).await;
    assert_eq!(path, "/api/42/envelope/");
    let auth = headers["x-sentry-auth"].to_str().unwrap();
    assert!(auth.contains("sentry_key=publickey"), "{auth}");
    let text = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let head: Value = serde_json::from_str(lines[0]).unwrap();
    let item: Value = serde_json::from_str(lines[1]).unwrap();
    let event: Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(head["event_id"], event["event_id"]);
    assert_eq!(item["type"], "event");
    assert_eq!(item["length"], lines[2].len());
    assert_eq!(event["level"], "error");
    assert_eq!(event["tags"]["request_id"], request_id.as_str());
    assert_eq!(event["tags"]["route"], "/api/notifications");
    let cause = event["exception"]["values"][0]["value"].as_str().unwrap();
    assert!(cause.contains("notifications"), "{cause}");
}
